"""The dispute game's solver: pure decisions over a game's state and a trace of roots (docs/challenger.md §3).

No I/O, no clock: the caller passes the game as L1 shows it (:class:`GameState`)
and its own roots (:class:`Trace`: the root after each number of steps of the
batch, ``trace[0]`` being the batch's pre-root), and gets back one
:data:`Move` for a sender to carry out.

Rules (docs/l1.md §4, DESIGN §6):

- **challenger**: with the asserter's roots of the round posted, name the
  first part whose end root differs from the trace (the end of the last part
  is ``hi_root``); so the new ``lo_root`` is one the trace agrees with and the
  new ``hi_root`` one it disputes. At one step, prove step ``lo`` from
  ``lo_root``: the prover's root is the trace's, which differs from ``hi_root``;
- **asserter**: post the trace's roots at the inner split points of
  ``[lo, hi]`` (the contract fixes the points: :func:`proofs.game.split_points`);
- **both**: claim the win (``timeout``) once the other side's running clock is
  spent; wait while it runs.

A state these rules never lead to (the trace disagrees with the agreed
``lo_root``, or agrees with the disputed ``hi_root``) yields :class:`Stuck`
rather than a move that cannot win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from l1_contracts.bindings import Side as Side  # whose clock runs (re-exported for the players)
from proofs.game import split_points


class Trace(Protocol):
    """Roots of one batch by step count: ``trace[i]`` is the root after the first ``i`` steps."""

    def __getitem__(self, steps: int, /) -> bytes:
        """The root after ``steps`` steps."""
        ...


@dataclass(frozen=True)
class GameState:
    """One game as L1 shows it, plus what the solver needs to decide."""

    lo: int
    """Agreed step count."""
    hi: int
    """Disputed step count."""
    lo_root: bytes
    hi_root: bytes
    turn: Side
    k: int
    """The deployment's dissection arity."""
    roots: tuple[bytes, ...] | None = None
    """The asserter's roots of the current round, once posted (None before)."""
    expiry: int | None = None
    """When the running clock runs out (a move at that second is still allowed)."""
    now: int | None = None
    """The L1 time the decision is for (None: clocks are not considered)."""

    def __post_init__(self) -> None:
        if not 0 <= self.lo < self.hi:
            raise ValueError("a game needs lo < hi")
        if self.k < 2:
            raise ValueError("k must be at least 2")

    @property
    def at_one_step(self) -> bool:
        """The one-step proof is due."""
        return self.hi - self.lo == 1

    @property
    def clock_spent(self) -> bool:
        """The running clock has run out (``timeout`` is allowed)."""
        return self.now is not None and self.expiry is not None and self.now > self.expiry


# ---------------------------------------------------------------- moves


@dataclass(frozen=True)
class Wait:
    """Nothing to do now."""

    reason: str


@dataclass(frozen=True)
class PostRoots:
    """Asserter: post these roots (after the inner split points 1..p−1)."""

    roots: tuple[bytes, ...]


@dataclass(frozen=True)
class ChoosePart:
    """Challenger: name ``part`` of the posted ``roots``; the game moves to ``[lo, hi]``."""

    part: int
    roots: tuple[bytes, ...]
    lo: int
    hi: int


@dataclass(frozen=True)
class Prove:
    """Challenger at one step: prove step ``step_index`` from ``pre_root`` (then settle with ``proveStep``)."""

    step_index: int
    pre_root: bytes
    expected_root: bytes
    """The trace's root after the step: what the prover will record."""
    disputed_root: bytes
    """The asserter's root after the step (different)."""


@dataclass(frozen=True)
class ClaimTimeout:
    """The other side's clock is spent: end the game with ``timeout``."""


@dataclass(frozen=True)
class Stuck:
    """The game is in a state honest play never reaches from this trace; no move can win."""

    reason: str


Move = Wait | PostRoots | ChoosePart | Prove | ClaimTimeout | Stuck


# ---------------------------------------------------------------- helpers


def asserter_roots(lo: int, hi: int, k: int, trace: Trace) -> tuple[bytes, ...]:
    """The asserter's move on ``[lo, hi]``: the trace at the inner split points."""
    return tuple(trace[p] for p in split_points(lo, hi, k)[1:-1])


def first_disputed_part(state: GameState, trace: Trace) -> int | None:
    """The first part whose end root the trace disputes (None when it agrees with all, ``hi_root`` included)."""
    if state.roots is None:
        raise ValueError("no roots posted in this round")
    points = split_points(state.lo, state.hi, state.k)
    ends = (*state.roots, state.hi_root)
    for j, end in enumerate(ends):
        if trace[points[j + 1]] != end:
            return j
    return None


def points_needed(state: GameState) -> list[int]:
    """The step counts whose roots the solver reads for ``state`` (to compute them in one replay)."""
    if state.roots is not None and not state.at_one_step:
        return split_points(state.lo, state.hi, state.k)
    return [state.lo, state.hi]


def rounds_bound(n_steps: int, k: int) -> int:
    """⌈log_k n⌉: the most dissection rounds a game on ``n_steps`` steps takes."""
    rounds, span = 0, 1
    while span < n_steps:
        span *= k
        rounds += 1
    return rounds


def _clock(state: GameState, me: Side) -> Move | None:
    if not state.clock_spent:
        return None
    if state.turn == me:
        return Stuck("our clock is spent: the game is lost")
    return ClaimTimeout()


# ---------------------------------------------------------------- decisions


def challenger_move(state: GameState, trace: Trace) -> Move:
    """The honest challenger's move."""
    timed = _clock(state, Side.CHALLENGER)
    if timed is not None:
        return timed
    if state.turn == Side.ASSERTER:
        return Wait("the asserter is to post roots")
    if trace[state.lo] != state.lo_root:
        return Stuck(f"the agreed root after {state.lo} steps is not ours")
    if state.at_one_step:
        ours = trace[state.hi]
        if ours == state.hi_root:
            return Stuck(f"we agree with the asserted root after {state.hi} steps")
        return Prove(state.lo, state.lo_root, ours, state.hi_root)
    if state.roots is None:
        return Stuck("the challenger's turn without posted roots")
    points = split_points(state.lo, state.hi, state.k)
    if len(state.roots) != len(points) - 2:
        return Stuck(f"{len(state.roots)} roots posted for {len(points) - 1} parts")
    part = first_disputed_part(state, trace)
    if part is None:
        return Stuck("we agree with every posted root and with the asserted one")
    return ChoosePart(part, state.roots, points[part], points[part + 1])


def asserter_move(state: GameState, trace: Trace) -> Move:
    """The honest asserter's move (the sequencer's defender)."""
    timed = _clock(state, Side.ASSERTER)
    if timed is not None:
        return timed
    if state.turn == Side.CHALLENGER:
        if state.at_one_step:
            return Wait("the challenger is to prove the step")
        return Wait("the challenger is to choose a part")
    return PostRoots(asserter_roots(state.lo, state.hi, state.k, trace))


def check_choice(state: GameState, trace: Trace, part: int) -> str | None:
    """Why a challenger's ``part`` breaks the honest rules against ``trace`` (None when it keeps them).

    An honest choice agrees with its new ``lo_root`` and disputes its new ``hi_root``."""
    if state.roots is None:
        return "no roots posted"
    points = split_points(state.lo, state.hi, state.k)
    if not 0 <= part < len(points) - 1:
        return "no such part"
    ends = (*state.roots, state.hi_root)
    start = state.lo_root if part == 0 else ends[part - 1]
    if trace[points[part]] != start:
        return "the new lo_root is disputed"
    if trace[points[part + 1]] == ends[part]:
        return "the new hi_root is agreed"
    return None


def new_range(state: GameState, part: int) -> GameState:
    """The game after the challenger names ``part`` (what the contract does), for simulations."""
    if state.roots is None:
        raise ValueError("no roots posted")
    points = split_points(state.lo, state.hi, state.k)
    ends: Sequence[bytes] = (*state.roots, state.hi_root)
    lo, hi = points[part], points[part + 1]
    lo_root = state.lo_root if part == 0 else ends[part - 1]
    turn = Side.CHALLENGER if hi - lo == 1 else Side.ASSERTER
    return GameState(lo, hi, lo_root, ends[part], turn, state.k)
