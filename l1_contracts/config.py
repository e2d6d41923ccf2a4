"""Per-deployment constants of the L1 contracts (docs/l1.md §Constants).

Everything here is fixed when the rollup is deployed (constructor arguments,
immutable afterwards). Three presets: :data:`MAINNET` (the values a public
deployment starts from), :data:`DEVNET` (minutes instead of days) and
:data:`TEST` (what the contract tests use).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ETHER = 10**18
MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

MAX_K = 16
"""Largest dissection arity the dispute game accepts."""

MAX_ORACLE_KEYS = 16
"""Largest oracle key set."""

MAX_BATCH_BYTES = 120_000
"""Largest batch ``postBatch`` accepts (an L1 transaction stays under 128 KiB)."""

BPS = 10_000


@dataclass(frozen=True)
class RollupConfig:
    """The rollup's constructor constants (all times in seconds, bonds in wei)."""

    challenge_window: int
    """How long after posting a batch can be challenged."""
    proposer_bond: int
    """Locked per pending batch; lost to the challenger who proves it wrong."""
    challenger_bond: int
    """Locked per game; lost to the asserter if the challenge fails."""
    k: int
    """Dissection arity: the asserter posts k-1 roots per round."""
    clock: int
    """Each side's chess clock per game."""
    forced_inclusion_delay: int
    """A queued deposit or forced transaction older than this must be in the next batch."""
    fallback_period: int
    """Without a batch for this long, anyone with a bond may propose."""
    burn_bps: int
    """Share of a lost bond that is burnt rather than paid to the winner."""

    def __post_init__(self) -> None:
        if not 2 <= self.k <= MAX_K:
            raise ValueError(f"k must be in [2, {MAX_K}]")
        if not 0 <= self.burn_bps < BPS:
            raise ValueError("burn_bps must be in [0, 10000)")
        if min(self.challenge_window, self.clock, self.forced_inclusion_delay) <= 0:
            raise ValueError("window, clock and forced-inclusion delay must be positive")
        if self.proposer_bond <= 0 or self.challenger_bond <= 0:
            raise ValueError("bonds must be positive")
        if self.fallback_period < 0:
            raise ValueError("fallback_period must be >= 0")

    def with_(self, **changes: int) -> RollupConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def max_game_duration(self) -> int:
        """The longest a game can last: both clocks spent, then one ``timeout`` call."""
        return 2 * self.clock

    def max_finality_delay(self) -> int:
        """Longest time from posting to finality when every game is played out."""
        return self.challenge_window + self.max_game_duration()


MAINNET = RollupConfig(
    challenge_window=7 * DAY,
    proposer_bond=10 * ETHER,
    challenger_bond=2 * ETHER,
    k=8,
    clock=3 * DAY + 12 * HOUR,
    forced_inclusion_delay=DAY,
    fallback_period=7 * DAY,
    burn_bps=2_500,
)

DEVNET = RollupConfig(
    challenge_window=5 * MINUTE,
    proposer_bond=ETHER,
    challenger_bond=ETHER // 2,
    k=8,
    clock=2 * MINUTE,
    forced_inclusion_delay=10 * MINUTE,
    fallback_period=30 * MINUTE,
    burn_bps=2_500,
)

TEST = RollupConfig(
    challenge_window=HOUR,
    proposer_bond=ETHER,
    challenger_bond=ETHER // 2,
    k=8,
    clock=10 * MINUTE,
    forced_inclusion_delay=30 * MINUTE,
    fallback_period=2 * HOUR,
    burn_bps=2_500,
)
