"""The challenger's player: opens games on wrong roots and plays them to the end (docs/challenger.md §4).

Each :meth:`Player.tick`:

1. **resumes** (first tick, and whenever asked): every game this account
   opened is found on L1 (``GameCreated`` with it as challenger) and read
   back (``Rollup.game`` for the range, roots and clocks; ``RootsPosted`` for
   the roots of the round), so a restart loses no game and needs no local file;
2. **opens** a game on every batch the derivation marks challengeable
   (:attr:`node.batches.BatchRecord.challengeable`: pending, on the node's own
   pre-state, a posted root it disputes) that this account has not challenged
   yet and whose window is open, within the bond budget (``createGame``
   sending whatever the free bond lacks);
3. **moves** in every active game: the pure solver
   (:func:`challenger.solver.challenger_move`) decides from the game and the
   node's own roots (:class:`challenger.trace.BatchTrace`); at one step the
   witness is built from the node's own state
   (:meth:`node.derive.Derivation.step_witness`, from the batch's pre-root
   in the derivation's record), sent with ``OneStepProver.prove``, and the game
   settled with ``proveStep`` (the proof is skipped when a result for the
   claim is already recorded, e.g. after a restart between the two). A spent
   asserter clock is claimed with ``timeout``; a game whose batch another
   game removed is closed with ``cancelGame`` (the bond comes back).

Calls that fail on the transport are retried with backoff
(:class:`node.l1.RetryPolicy`); a revert is not retried within a tick (the
next tick reads the game again and decides afresh). The player must run
often enough that a move lands well within its clock (the devnet's clock is
two minutes; a tick takes a few L1 round trips).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from challenger.chain import Action, DisputeChain, Game, GameStatus, TrackedGame
from challenger.seat import GameSeat
from challenger.solver import (
    ChoosePart,
    ClaimTimeout,
    GameState,
    Move,
    Prove,
    Stuck,
    Wait,
    challenger_move,
    points_needed,
)
from challenger.trace import BatchTrace
from l1_contracts.bindings import BatchStatus
from node.derive import Derivation
from node.l1 import L1Error, RetryPolicy, error_code, is_transient
from proofs.onestep import prover_input

log = logging.getLogger(__name__)


REMOVED = int(BatchStatus.REMOVED)
DEFAULT_RETRY = RetryPolicy()


class Player(GameSeat):
    """Plays the challenger's side of every game this account opens."""

    def __init__(
        self,
        chain: DisputeChain,
        derivation: Derivation,
        *,
        budget: int,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(retry, sleep)
        self.chain = chain
        self.derivation = derivation
        self.budget = budget
        """The most wei of bond this player locks in games at once."""
        self.constants = self._call(chain.constants)
        self.challenged: set[int] = set()
        """Batches this account has opened a game on (whatever its outcome)."""
        self.skipped: dict[int, str] = {}
        """Challengeable batches not challenged, with why."""
        self._traces: dict[int, BatchTrace] = {}

    # -------------------------------------------------------- the loop

    def tick(self) -> list[Action]:
        """Pick up this account's games from L1, open games on new wrong roots, move in every active game.

        A move that fails is logged against its game and tried afresh next
        tick; it does not stop the other games."""
        self.resume()
        actions = self.open_games()
        actions.extend(self.move_in_every_game())
        return actions

    def resume(self) -> None:
        """Read back every game this account opened that is not tracked yet (active ones are
        tracked, finished ones counted): after a restart, and after a ``createGame`` whose
        receipt was lost."""
        for gid in self._call(self.chain.my_games):
            if gid in self.games or self._finished(gid):
                continue
            g = self._call(partial(self.chain.game, gid))
            self.challenged.add(g.batch)
            self.skipped.pop(g.batch, None)
            if g.status == GameStatus.ACTIVE:
                self.games[gid] = TrackedGame(g)
            else:
                self._record_outcome(g)

    # -------------------------------------------------------- opening games

    def locked(self) -> int:
        """Bond locked in this player's active games."""
        return len(self.games) * self.constants.challenger_bond

    def open_games(self) -> list[Action]:
        """Open a game on every challengeable batch not challenged yet (within the budget)."""
        actions: list[Action] = []
        now = self._call(self.chain.now)
        bond = self.constants.challenger_bond
        for rec in self.derivation.records(status=BatchStatus.PENDING):
            if not rec.challengeable or rec.index in self.challenged:
                continue
            if now >= rec.deadline:
                self.skipped[rec.index] = "challenge window closed"
                continue
            if self.locked() + bond > self.budget:
                self.skipped[rec.index] = "bond budget exhausted"
                continue
            if self._call(partial(self.chain.batch_status, rec.index)) != int(BatchStatus.PENDING):
                continue
            free = self._call(self.chain.free_bond)
            try:
                # not retried: a createGame that landed without its receipt reaching us
                # is found by the next tick's resume(), and a second one would lock a second bond
                gid = self.chain.create_game(rec.index, max(0, bond - free))
            except L1Error as exc:
                self.skipped[rec.index] = f"createGame refused: {error_code(exc)}"
                self.errors += 1
                continue
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.skipped[rec.index] = f"createGame not confirmed: {exc}"
                self.errors += 1
                continue
            self.skipped.pop(rec.index, None)
            self.challenged.add(rec.index)
            self.games[gid] = TrackedGame(self._call(partial(self.chain.game, gid)))
            log.info("opened game %d on batch %d (posted %s, ours %s)", gid, rec.index,
                     rec.posted_root.hex()[:12], rec.computed_root.hex()[:12])
            actions.append(Action(gid, rec.index, "createGame"))
        return actions

    # -------------------------------------------------------- one game

    def state_of(self, g: Game) -> GameState:
        """The solver's view of ``g`` (with the round's roots when posted)."""
        roots = None
        if g.roots_posted:
            roots = self._call(lambda: self.chain.round_roots(g.game, g.round))
        return GameState(
            g.lo, g.hi, g.lo_root, g.hi_root, g.turn, self.constants.k, roots, g.expiry(),
            self._call(self.chain.now),
        )

    def decide(self, g: Game) -> Move:
        """The solver's move in ``g`` against the node's own roots."""
        state = self.state_of(g)
        trace = self._traces.setdefault(g.batch, BatchTrace(self.derivation, g.batch))
        trace.prefetch(points_needed(state))
        return challenger_move(state, trace)

    def play(self, gid: int) -> Action | None:
        """Read game ``gid`` and make the move the solver decides (None when there is nothing to do)."""
        g = self._call(lambda: self.chain.game(gid))
        tracked = self.games[gid]
        tracked.game = g
        if g.status != GameStatus.ACTIVE:
            self._record_outcome(g)
            return Action(gid, g.batch, "finished", g.status.name)
        if self._call(lambda: self.chain.batch_status(g.batch)) == REMOVED:
            self._call(lambda: self.chain.cancel_game(gid))
            tracked.last_move = "cancelGame"
            return Action(gid, g.batch, "cancelGame", "batch removed by another game")
        rec = self.derivation.record(g.batch)
        if rec is None:
            tracked.note = "the derivation has not reached this batch yet"
            return None
        if not self.derivation.has_bytes(g.batch):
            raw = self._call(lambda: self.chain.batch_bytes(rec.tx_hash))
            if raw is None:
                tracked.note = "the batch's bytes are not available"
                return None
            self.derivation.restore_bytes(g.batch, raw)
        move = self.decide(g)
        if isinstance(move, Wait):
            return None
        if isinstance(move, Stuck):
            if tracked.note != move.reason:
                log.error("game %d: %s", gid, move.reason)
            tracked.note = move.reason
            return None
        if isinstance(move, ChoosePart):
            self._call(lambda: self.chain.choose_part(gid, move.roots, move.part))
            tracked.last_move = f"choosePart {move.part} -> [{move.lo}, {move.hi}]"
            return Action(gid, g.batch, "choosePart", f"part {move.part}: [{move.lo}, {move.hi}]")
        if isinstance(move, Prove):
            self._prove(g, move)
            tracked.last_move = f"proveStep {move.step_index}"
            return Action(gid, g.batch, "proveStep", f"step {move.step_index}")
        if isinstance(move, ClaimTimeout):
            self._call(lambda: self.chain.timeout(gid))
            tracked.last_move = "timeout"
            return Action(gid, g.batch, "timeout")
        return None

    def _prove(self, g: Game, move: Prove) -> None:
        if self._call(lambda: self.chain.step_result(g.game)) == bytes(32):
            witness = self.derivation.step_witness(g.batch, move.step_index)
            if witness.pre_root != move.pre_root or witness.post_root != move.expected_root:
                raise RuntimeError(f"game {g.game}: the witness does not match the trace")
            rec = self.derivation.record(g.batch)
            if rec is None:
                raise RuntimeError(f"game {g.game}: no record of batch {g.batch}")
            args = prover_input(witness)
            self._call(lambda: self.chain.prove(move.pre_root, move.step_index, rec.data, args))
        self._call(lambda: self.chain.prove_step(g.game))

    # -------------------------------------------------------- bookkeeping

    def _finished(self, gid: int) -> bool:
        o = self.outcomes
        return gid in o.won or gid in o.lost or gid in o.cancelled

    def _record_outcome(self, g: Game) -> None:
        self.games.pop(g.game, None)
        self._traces.pop(g.batch, None)
        if self._finished(g.game):
            return
        if g.status == GameStatus.CHALLENGER_WON:
            self.outcomes.won.append(g.game)
        elif g.status == GameStatus.ASSERTER_WON:
            self.outcomes.lost.append(g.game)
        elif g.status == GameStatus.CANCELLED:
            self.outcomes.cancelled.append(g.game)
        log.info("game %d on batch %d: %s", g.game, g.batch, g.status.name)

    def status(self) -> dict[str, Any]:
        """The bond budget, the games and their results, for monitoring."""
        now = self._call(self.chain.now)
        return {
            "address": self.chain.address,
            "budget": self.budget,
            "locked": self.locked(),
            "free_bond": self._call(self.chain.free_bond),
            "challenger_bond": self.constants.challenger_bond,
            "active": [
                {
                    "game": gid,
                    "batch": t.game.batch,
                    "range": [t.game.lo, t.game.hi],
                    "round": t.game.round,
                    "turn": t.game.turn.name.lower(),
                    "clock_left": max(0, t.game.expiry() - now),
                    "last_move": t.last_move,
                    "note": t.note,
                }
                for gid, t in sorted(self.games.items())
            ],
            "won": list(self.outcomes.won),
            "lost": list(self.outcomes.lost),
            "cancelled": list(self.outcomes.cancelled),
            "skipped": {str(i): why for i, why in sorted(self.skipped.items())},
            "errors": self.errors,
        }
