"""What both sides of the dispute games share: the games one account plays, and how it moves.

:class:`challenger.player.Player` (the challenger) and
:class:`sequencer.defender.Defender` (the asserter) each track their games,
count their L1 errors, retry calls that fail on the transport, and move in
every active game once a tick, where one game's failure never stops the
others. Each decides its moves itself (:meth:`GameSeat.play`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from challenger.chain import Action, Outcomes, TrackedGame
from node.l1 import L1Error, RetryPolicy, error_code, is_transient

__all__ = ["GameSeat"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class GameSeat:
    """One account's seat in the games: the games, their outcomes, errors, retried calls."""

    def __init__(self, retry: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> None:
        self.retry = retry
        self._sleep = sleep
        self.games: dict[int, TrackedGame] = {}
        self.outcomes = Outcomes()
        self.errors = 0
        """L1 calls that failed (retried or not) and moves that failed."""

    def play(self, gid: int) -> Action | None:
        """Make this side's move in game ``gid`` if it has one (each side decides)."""
        raise NotImplementedError

    def move_in_every_game(self, *reported: type[Exception]) -> list[Action]:
        """:meth:`play` every tracked game, in id order; the moves made.

        A move that fails is noted against its game (and tried afresh next
        tick) without stopping the others: an L1 revert, a transport failure,
        one of the ``reported`` exceptions (noted by its message), or any other
        error (logged with its traceback)."""
        actions: list[Action] = []
        for gid in sorted(self.games):
            try:
                action = self.play(gid)
            except L1Error as exc:
                self._failed(gid, f"L1 refused the move: {error_code(exc)}")
                continue
            except Exception as exc:
                if isinstance(exc, reported):
                    self._failed(gid, str(exc))
                elif is_transient(exc):
                    self._failed(gid, f"L1 unreachable: {exc}")
                else:
                    log.exception("game %d: move failed", gid)
                    self._failed(gid, f"{type(exc).__name__}: {exc}")
                continue
            if action is not None:
                actions.append(action)
        return actions

    def _failed(self, gid: int, note: str) -> None:
        """Count a failed move and note it against its game (logged once while it repeats)."""
        self.errors += 1
        tracked = self.games.get(gid)
        if tracked is not None and tracked.note == note:
            return  # logged already: the same failure tick after tick
        if tracked is not None:
            tracked.note = note
        log.warning("game %d: %s", gid, note)

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried with backoff on transport failures."""
        return self.retry.call(fn, sleep=self._sleep, on_retry=self._on_retry)

    def _on_retry(self, exc: Exception, delay: float) -> None:
        self.errors += 1
        log.warning("L1 call failed (%s); retrying in %.2fs", exc, delay)
