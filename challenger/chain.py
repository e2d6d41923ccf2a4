"""What the challenger's player needs from L1, as one interface (:class:`DisputeChain`).

The player (:mod:`challenger.player`) talks to L1 only through this protocol:
:class:`challenger.web3_chain.Web3DisputeChain` implements it over web3 and the
contract bindings, and the tests implement it over titanoboa. Each write
returns once its transaction is included and raises
``node.l1.L1Error`` (with the contract's reason code) when it reverts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from l1_contracts.bindings import BatchData, GameInfo, Side
from l1_contracts.bindings import GameStatus as GameStatus  # re-exported for the players
from proofs.onestep import ProverInput


class Game(GameInfo):
    """``Rollup.game(g)`` (:class:`l1_contracts.bindings.GameInfo`) with what the players ask of it."""

    @property
    def roots_posted(self) -> bool:
        """The asserter's roots of this round are posted (the challenger must choose)."""
        return self.roots_hash != bytes(32)

    @staticmethod
    def of(info: Any) -> Game:
        """From ``bindings.GameInfo`` or anything with the same attributes."""
        return Game(
            int(info.game), int(info.batch), str(info.asserter), str(info.challenger),
            GameStatus(int(info.status)), Side(int(info.turn)), int(info.lo), int(info.hi),
            bytes(info.lo_root), bytes(info.hi_root), bytes(info.roots_hash),
            int(info.asserter_clock), int(info.challenger_clock), int(info.last_move), int(info.round),
        )


@dataclass(frozen=True)
class RollupConstants:
    """The deployment constants the player needs."""

    k: int
    challenger_bond: int
    clock: int


class DisputeChain(Protocol):
    """The L1 side of the challenger: reads and the moves it sends."""

    @property
    def address(self) -> str:
        """The challenger's account (checksummed)."""
        ...

    def constants(self) -> RollupConstants:
        """k, the challenger bond and the clock."""
        ...

    def now(self) -> int:
        """The latest block's time."""
        ...

    def free_bond(self) -> int:
        """The challenger's bond not locked in games."""
        ...

    def batch_status(self, index: int) -> int:
        """``Rollup.batchStatus(index)`` (1 pending, 2 final, 4 removed)."""
        ...

    def my_games(self) -> list[int]:
        """Every game this account opened (``GameCreated`` with it as challenger), oldest first."""
        ...

    def game(self, gid: int) -> Game:
        """Game ``gid``."""
        ...

    def round_roots(self, gid: int, round_: int) -> tuple[bytes, ...] | None:
        """The asserter's roots of round ``round_`` of ``gid`` (``RootsPosted``), None when not posted."""
        ...

    def batch_bytes(self, tx_hash: bytes) -> bytes | None:
        """The batch bytes of a ``postBatch`` transaction (when the node's copy is gone)."""
        ...

    def create_game(self, batch: int, value: int) -> int:
        """``createGame(batch)`` sending ``value`` wei of bond; returns the game id."""
        ...

    def choose_part(self, gid: int, roots: tuple[bytes, ...], part: int) -> None:
        """``choosePart``."""
        ...

    def prove(self, pre_root: bytes, step_index: int, data: BatchData, args: ProverInput) -> None:
        """``OneStepProver.prove`` (or ``prove_long_step``) with this deployment's context."""
        ...

    def step_result(self, gid: int) -> bytes:
        """The root the prover recorded for ``gid``'s one-step claim (zero when none)."""
        ...

    def prove_step(self, gid: int) -> None:
        """``proveStep``: settle the one-step game with the recorded result."""
        ...

    def timeout(self, gid: int) -> None:
        """``timeout``: end a game whose running clock is spent."""
        ...

    def cancel_game(self, gid: int) -> None:
        """``cancelGame``: close a game whose batch was removed (the bond is released)."""
        ...


@dataclass
class TrackedGame:
    """One of this account's games, as last read (by a player or a defender)."""

    game: Game
    last_move: str = ""
    note: str = ""


@dataclass
class Action:
    """What a tick did in one game (for logs and tests)."""

    game: int
    batch: int
    move: str
    detail: str = ""


@dataclass
class Outcomes:
    """Finished games by result, from this account's side."""

    won: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
