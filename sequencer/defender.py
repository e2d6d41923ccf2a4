"""The sequencer's defender: plays the asserter's side of every game against its own batches (docs/defender.md).

A challenger who disputes one of the proposer's batches opens a game on L1;
the asserter must answer every round before its clock runs out, or lose the
batch and its bond. Each :meth:`Defender.tick`:

1. **scans** games on L1 (``gameCount``, then ``game(g)`` for the ids not
   read yet) and keeps those whose asserter is the proposer's account; games
   already over are counted. A restart rescans from game 0, so nothing the
   defender needs lives only in memory;
2. **moves** in every active game: the pure solver's asserter rules
   (:func:`challenger.solver.asserter_move`) decide from the game and the
   sequencer's own roots of that batch (:class:`BatchRoots`): post the roots
   at the inner split points on our turn, claim ``timeout`` once the
   challenger's clock is spent, wait otherwise (the one-step proof is the
   challenger's to send; an honest root survives it).

The roots come from a :class:`RootSource`: :class:`StoreRoots` finds the
batch among the core's closed, unconfirmed batches (a batch under dispute is
pending on L1, so it is never confirmed away) and replays its first steps over
the state DB at its pre-root (trie nodes are never deleted), as
:meth:`node.derive.Derivation.roots_at` does for a node.

L1 calls that fail on the transport are retried with backoff; a revert (the
game moved meanwhile) is recorded against the game and the next tick decides
afresh. A failure in one game never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from challenger.chain import Action, Game, GameStatus, RollupConstants, TrackedGame
from challenger.seat import GameSeat
from challenger.solver import ClaimTimeout, GameState, PostRoots, Stuck, Wait, asserter_move
from challenger.web3_chain import Web3RollupAccount
from node.l1 import RetryPolicy
from proofs.game import split_points
from sequencer.open_batch import ClosedBatch
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced
from state.db import StateDB, TrieSource
from state.transition import apply_step
from state.view import StateView

__all__ = [
    "BatchClaim", "BatchRoots", "Defender", "DefenderChain", "RootSource",
    "StoreRoots", "UnknownBatch", "Web3DefenderChain", "replay_slices", "run_slices",
]

log = logging.getLogger("sequencer.defender")

T = TypeVar("T")


class UnknownBatch(LookupError):
    """The disputed batch is not one the sequencer has a record of (pre-root, post-root, steps)."""


@dataclass(frozen=True)
class BatchClaim:
    """What L1 records of a batch: the roots it claims and its number of steps."""

    index: int
    pre_root: bytes
    post_root: bytes
    n_steps: int


class DefenderChain(Protocol):
    """The L1 side of the defender: reads, and the asserter's two moves."""

    @property
    def address(self) -> str:
        """The proposer's account (checksummed)."""
        ...

    def constants(self) -> RollupConstants:
        """k, the challenger bond and the clock."""
        ...

    def now(self) -> int:
        """The latest block's time."""
        ...

    def game_count(self) -> int:
        """Games ever opened (ids are ``0 .. game_count - 1``)."""
        ...

    def game(self, gid: int) -> Game:
        """Game ``gid``."""
        ...

    def batch_claim(self, index: int) -> BatchClaim:
        """Batch ``index`` as the rollup records it."""
        ...

    def post_roots(self, gid: int, roots: Sequence[bytes]) -> None:
        """``postRoots``: the asserter's roots of the round."""
        ...

    def timeout(self, gid: int) -> None:
        """``timeout``: end a game whose running clock is spent."""
        ...


class Web3DefenderChain(Web3RollupAccount):
    """:class:`DefenderChain` over web3 and the contract bindings (``account``: an eth-account ``LocalAccount``)."""

    def game_count(self) -> int:
        """``gameCount``."""
        return int(self.rollup.game_count())

    def batch_claim(self, index: int) -> BatchClaim:
        """``batch(index)``: its pre-root (the parent's root), post-root and step count."""
        b = self.rollup.batch(index)
        return BatchClaim(index, bytes(b.pre_root), bytes(b.post_root), int(b.n_steps))

    def post_roots(self, gid: int, roots: Sequence[bytes]) -> None:
        """``postRoots``."""
        self.rollup.post_roots(gid, list(roots))


# ---------------------------------------------------------------- roots


class RootSource(Protocol):
    """The sequencer's own roots of one of its batches."""

    def roots_at(self, claim: BatchClaim, points: Sequence[int]) -> dict[int, bytes]:
        """The root after the first ``p`` steps of the batch ``claim`` names, for each ``p``;
        :class:`UnknownBatch` when the sequencer has no such batch."""
        ...


class _RangeQueues:
    """The L1 queue items one closed batch consumed, at their absolute queue positions."""

    def __init__(self, batch: ClosedBatch) -> None:
        self._batch = batch

    def deposit(self, index: int) -> L1Deposit | None:
        """The deposit at queue position ``index`` if this batch consumed it."""
        i = index - self._batch.deposit_start
        return self._batch.deposits[i] if 0 <= i < len(self._batch.deposits) else None

    def forced(self, index: int) -> L1Forced | None:
        """The forced item at queue position ``index`` if this batch consumed it."""
        i = index - self._batch.forced_start
        return self._batch.forced[i] if 0 <= i < len(self._batch.forced) else None


REPLAY_SLICE = 256
"""Steps replayed between two pauses of :func:`replay_slices` (a few ms of STF work)."""


def replay_slices(
    db: StateDB, chain: ChainConfig, batch: ClosedBatch, points: Iterable[int], *, slice_steps: int = REPLAY_SLICE,
) -> Generator[None, None, dict[int, bytes]]:
    """The roots after the first ``p`` steps of ``batch`` for each ``p`` in ``points``, in one
    replay from its pre-root over ``db``'s trie (nothing persists), as a generator that
    pauses (yields) every ``slice_steps`` steps and returns the roots.

    The sequencer drives it on its event loop with a pause between slices, so that a long
    batch never holds up commands for more than a slice; the view reads the trie at the
    batch's fixed pre-root, which commits in between do not change."""
    wanted = sorted(set(points))
    decoded = Batch.decode(batch.encoded)
    if wanted and not 0 <= wanted[0] <= wanted[-1] <= len(decoded.steps):
        raise IndexError(f"a point outside batch {batch.index} ({len(decoded.steps)} steps)")
    ctx = BatchContext.create(decoded.timestamp, chain, _RangeQueues(batch), list(decoded.orders))
    trie = db.trie
    view = StateView(TrieSource(trie, batch.pre_root))
    out: dict[int, bytes] = {}
    done = 0
    for p in wanted:
        while done < p:
            end = min(p, done + slice_steps)
            for step in decoded.steps[done:end]:
                apply_step(view, step, ctx)
            done = end
            yield
        dirty = view.dirty_leaves()
        out[p] = trie.root_of(dirty, root=batch.pre_root) if dirty else batch.pre_root
    return out


def run_slices(work: Generator[None, None, T]) -> T:
    """Drive a sliced computation to its end without pausing."""
    while True:
        try:
            next(work)
        except StopIteration as stop:
            result: T = stop.value
            return result


class StoreRoots:
    """Roots from the sequencer core's own records: its closed, unconfirmed batches and its state DB.

    ``batches()`` lists the closed batches (``Exchange.pending_batches``), ``db()``
    gives the state DB (its trie keeps every committed root readable). In the
    process both are read on the event loop (the core is not thread-safe): see
    :class:`sequencer.process.SequencerProcess`."""

    def __init__(self, batches: Callable[[], Sequence[ClosedBatch]], db: Callable[[], StateDB],
                 chain: ChainConfig) -> None:
        self._batches = batches
        self._db = db
        self.chain = chain

    def find(self, claim: BatchClaim) -> ClosedBatch:
        """The closed batch with the claim's pre-root, post-root and step count."""
        for b in self._batches():
            if (b.post_root == claim.post_root and b.pre_root == claim.pre_root
                    and b.step_count == claim.n_steps):
                return b
        raise UnknownBatch(
            f"L1 batch {claim.index} (post-root 0x{claim.post_root.hex()[:16]}…) is not among this "
            "sequencer's unconfirmed batches"
        )

    def roots_at(self, claim: BatchClaim, points: Sequence[int]) -> dict[int, bytes]:
        """See :meth:`RootSource.roots_at`."""
        return run_slices(self.slices(claim, points))

    def slices(self, claim: BatchClaim, points: Sequence[int]) -> Generator[None, None, dict[int, bytes]]:
        """:meth:`roots_at` as :func:`replay_slices` (the batch is found at the first slice)."""
        return (yield from replay_slices(self._db(), self.chain, self.find(claim), points))


class BatchRoots:
    """``trace[i]``: the sequencer's root after the first ``i`` steps of one L1 batch (cached)."""

    def __init__(self, source: RootSource, claim: BatchClaim) -> None:
        self.source = source
        self.claim = claim
        self._roots: dict[int, bytes] = {}
        self.replays = 0

    def prefetch(self, points: Iterable[int]) -> None:
        """Compute the roots at ``points`` not known yet, in one replay."""
        missing = sorted({p for p in points if p not in self._roots})
        if missing:
            self.replays += 1
            self._roots.update(self.source.roots_at(self.claim, missing))

    def __getitem__(self, steps: int) -> bytes:
        """The root after ``steps`` steps."""
        if steps not in self._roots:
            self.prefetch([steps])
        return self._roots[steps]


# ---------------------------------------------------------------- the defender


class Defender(GameSeat):
    """Answers every game against the proposer's batches with the honest asserter's moves."""

    def __init__(
        self, chain: DefenderChain, roots: RootSource, *, retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(retry or RetryPolicy(), sleep)
        self.chain = chain
        self.roots = roots
        self.me = chain.address.lower()
        self.constants: RollupConstants | None = None
        self._scanned = 0
        """Games below this id have been read (ours tracked or counted, others skipped)."""
        self._traces: dict[int, BatchRoots] = {}

    # -------------------------------------------------------- the loop

    def tick(self) -> list[Action]:
        """Scan new games, then move in every active game of ours."""
        if self.constants is None:
            self.constants = self._call(self.chain.constants)
        self.scan()
        return self.move_in_every_game(UnknownBatch)

    def scan(self) -> None:
        """Read the games opened since the last scan; track ours (all of them after a restart)."""
        count = self._call(self.chain.game_count)
        while self._scanned < count:
            gid = self._scanned
            g = self._call(partial(self.chain.game, gid))
            if g.asserter.lower() == self.me:
                if g.status == GameStatus.ACTIVE:
                    self.games[gid] = TrackedGame(g)
                    log.info("game %d against our batch %d: tracking", gid, g.batch)
                else:
                    self._record(g)
            self._scanned += 1

    def play(self, gid: int) -> Action | None:
        """Read game ``gid`` and make the asserter's move (None when there is nothing to do)."""
        assert self.constants is not None  # noqa: S101 - set by tick()
        g = self._call(lambda: self.chain.game(gid))
        tracked = self.games[gid]
        tracked.game = g
        if g.status != GameStatus.ACTIVE:
            self._record(g)
            return Action(gid, g.batch, "finished", g.status.name)
        trace = self._trace(g.batch)
        state = GameState(g.lo, g.hi, g.lo_root, g.hi_root, g.turn, self.constants.k, None,
                          g.expiry(), self._call(self.chain.now))
        trace.prefetch([*split_points(g.lo, g.hi, self.constants.k), g.lo, g.hi])
        if trace[g.lo] != g.lo_root or trace[g.hi] != g.hi_root:
            move: Any = Stuck(f"the game's roots at [{g.lo}, {g.hi}] are not ours")
        else:
            move = asserter_move(state, trace)
        if isinstance(move, Wait):
            return None
        if isinstance(move, Stuck):
            if tracked.note != move.reason:
                log.error("game %d: %s", gid, move.reason)
            tracked.note = move.reason
            return None
        if isinstance(move, PostRoots):
            roots = move.roots
            self._call(lambda: self.chain.post_roots(gid, roots))
            tracked.last_move, tracked.note = f"postRoots [{g.lo}, {g.hi}]", ""
            log.info("game %d: posted %d roots on [%d, %d]", gid, len(roots), g.lo, g.hi)
            return Action(gid, g.batch, "postRoots", f"[{g.lo}, {g.hi}]")
        if isinstance(move, ClaimTimeout):
            self._call(lambda: self.chain.timeout(gid))
            tracked.last_move, tracked.note = "timeout", ""
            log.info("game %d: the challenger's clock is spent; timeout claimed", gid)
            return Action(gid, g.batch, "timeout")
        return None

    def _trace(self, batch: int) -> BatchRoots:
        trace = self._traces.get(batch)
        if trace is None:
            claim = self._call(lambda: self.chain.batch_claim(batch))
            trace = self._traces[batch] = BatchRoots(self.roots, claim)
        return trace

    # -------------------------------------------------------- bookkeeping

    def _record(self, g: Game) -> None:
        self.games.pop(g.game, None)
        if not any(t.game.batch == g.batch for t in self.games.values()):
            self._traces.pop(g.batch, None)
        o = self.outcomes
        if g.game in o.won or g.game in o.lost or g.game in o.cancelled:
            return
        if g.status == GameStatus.ASSERTER_WON:
            o.won.append(g.game)
        elif g.status == GameStatus.CHALLENGER_WON:
            o.lost.append(g.game)
        elif g.status == GameStatus.CANCELLED:
            o.cancelled.append(g.game)
        log.info("game %d on our batch %d: %s", g.game, g.batch, g.status.name)

    def status(self) -> dict[str, Any]:
        """Active games (range, turn, last move, note) and results, for monitoring."""
        return {
            "active": [
                {"game": gid, "batch": t.game.batch, "range": [t.game.lo, t.game.hi],
                 "round": t.game.round, "turn": t.game.turn.name.lower(), "lastMove": t.last_move,
                 "note": t.note}
                for gid, t in sorted(self.games.items())
            ],
            "won": list(self.outcomes.won),
            "lost": list(self.outcomes.lost),
            "cancelled": list(self.outcomes.cancelled),
            "errors": self.errors,
        }
