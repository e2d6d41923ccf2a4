"""The L1 follower: rollup events to a confirmation depth, fed in order to the derivation.

Each :meth:`Follower.poll` reads ``BatchPosted``, ``BatchRemoved`` and
``BatchFinalized`` logs of the rollup in the blocks after the last one
processed, up to the safe head (``head − depth``) and at most ``max_blocks``
blocks at a time, in (block, log index) order. For a posted batch it reads the
bytes from its transaction's calldata and the bridge items of its ranges (one
JSON-RPC batch per range, through a :class:`~node.queues.CachedQueues`), then
hands everything to :class:`~node.derive.Derivation`; after the last event of
the range it records the range's last block and hash as the progress. A poll's
work is made durable in grouped commits (:meth:`~node.derive.Derivation.grouped`):
a node catching up commits every ``group_batches`` batches or ``group_seconds``
seconds and at the end of the poll, not once per batch.

Guarantees (docs/node.md §4):

- **Confirmations.** Nothing from the last ``depth`` blocks is processed, so a
  reorganisation no deeper than ``depth`` never reaches the derivation.
- **Deeper reorganisations are undone and re-read.** The hash of the last
  processed block is checked at every poll; when it is no longer canonical the
  follower finds the newest checkpoint (the last block of one of the latest
  512 polls) that still is, rolls the derivation back to it
  (:meth:`~node.derive.Derivation.revert_to_block`: later batches forgotten,
  later removals and finalisations undone, the state pointer moved back) and
  reads again from there. A reorganisation below every checkpoint raises
  :class:`DeepReorgError`.
- **Restarts.** Progress is stored with the records (in the same commit); events
  after it are read again and the derivation ignores the ones it already has
  (idempotent), so a crash at any point — also inside a grouped commit, which
  loses the work since the group's last commit — loses nothing that L1 cannot
  give again and applies nothing twice.
- **Transient failures** (connection, timeouts, HTTP 5xx/429) are retried by
  :class:`node.l1.L1Client`'s provider; :meth:`Follower.run` also backs off and
  retries a whole poll on them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from node.batches import PostedBatch, Verdict
from node.derive import GROUP_BATCHES, GROUP_SECONDS, Derivation, QueueItemMissing
from node.l1 import L1Client, RetryPolicy, is_transient
from node.queues import BridgeReader, CachedQueues
from node.rollup_events import (
    BATCH_TOPICS,
    BatchFinalizedLog,
    BatchLog,
    BatchPostedLog,
    BatchRemovedLog,
    decode_batch_log,
    post_batch_bytes,
)

log = logging.getLogger(__name__)

FOREVER = RetryPolicy(attempts=1_000_000, max_delay=30.0)
"""The loop's backoff on transient failures: up to 30 s between polls, never giving up."""
PREFETCH_AHEAD = 2
"""Posted batches whose signers are recovered ahead of the one being derived."""


class DeepReorgError(RuntimeError):
    """L1 reorganised below every block the follower kept a checkpoint of."""


@dataclass
class PollReport:
    """What one poll did."""

    from_block: int
    to_block: int
    posted: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    finalized: list[int] = field(default_factory=list)
    reverted_to: int | None = None
    """The block the derivation was rolled back to, when a reorganisation was found."""

    @property
    def idle(self) -> bool:
        """Nothing new below the safe head."""
        return self.to_block < self.from_block


def handle_event(
    derivation: Derivation, queues: CachedQueues, event: BatchLog, batch_bytes: Callable[[bytes], bytes | None]
) -> list[int]:
    """Feed one decoded rollup event to ``derivation``; returns the batches it changed.

    For a posted batch, ``batch_bytes(tx_hash)`` gives the bytes of its
    transaction (None when they cannot be had: the batch is recorded
    UNDECODABLE) and the bridge items of its ranges are fetched into
    ``queues`` first."""
    if isinstance(event, BatchRemovedLog):
        return derivation.remove(event.index, event.block)
    if isinstance(event, BatchFinalizedLog):
        return [event.index] if derivation.finalize(event.index, event.block) else []
    d = event.data
    known = derivation.record(event.index)
    if known is not None and known.tx_hash == event.tx_hash:
        return []
    try:
        queues.prefetch((d.deposit_start, d.deposit_end), (d.forced_start, d.forced_end))
    except LookupError as exc:
        raise QueueItemMissing(f"batch {event.index}: {exc}") from exc
    posted = PostedBatch(
        event.index, event.parent, event.proposer, event.pre_root, event.post_root, d,
        event.deadline, batch_bytes(event.tx_hash), event.tx_hash, event.block,
    )
    record = derivation.apply(posted, queues)
    if record.verdict != Verdict.MATCH:
        log.warning(
            "batch %d: %s (posted %s, computed %s) %s", record.index, record.verdict.name,
            record.posted_root.hex()[:12], record.computed_root.hex()[:12], record.note,
        )
    return [event.index]


class Follower:
    """Follows one rollup deployment into one :class:`Derivation`."""

    def __init__(
        self,
        l1: L1Client,
        rollup: str,
        derivation: Derivation,
        queues: CachedQueues,
        *,
        start_block: int,
        depth: int | None = None,
        max_blocks: int = 2_000,
        group_batches: int = GROUP_BATCHES,
        group_seconds: float = GROUP_SECONDS,
    ) -> None:
        if max_blocks < 1:
            raise ValueError("max_blocks must be positive")
        if group_batches < 1 or group_seconds <= 0:
            raise ValueError("group_batches and group_seconds must be positive")
        self.group_batches = group_batches
        self.group_seconds = group_seconds
        self.l1 = l1
        self.rollup = l1.w3.to_checksum_address(rollup)
        self.derivation = derivation
        self.queues = queues
        self.start_block = start_block
        self.depth = l1.depth if depth is None else depth
        self.max_blocks = max_blocks
        self.polls = 0
        self.last_error = ""

    @staticmethod
    def over_bridge(
        l1: L1Client, rollup: str, bridge: str, derivation: Derivation, *, start_block: int,
        depth: int | None = None, max_blocks: int = 2_000, group_batches: int = GROUP_BATCHES,
        group_seconds: float = GROUP_SECONDS,
    ) -> Follower:
        """A follower reading queue items from ``bridge`` with raw calls."""
        queues = CachedQueues(BridgeReader(l1, bridge))
        return Follower(l1, rollup, derivation, queues, start_block=start_block, depth=depth, max_blocks=max_blocks,
                        group_batches=group_batches, group_seconds=group_seconds)

    # -------------------------------------------------------- one poll

    def position(self) -> tuple[int, bytes]:
        """The last block processed and its hash (``start_block − 1`` and empty before the first poll)."""
        return self.derivation.progress() or (self.start_block - 1, b"")

    def catch_up(self, max_polls: int = 10_000) -> int:
        """Poll until a poll finds nothing new (the confirmed L1 head is reached); returns the
        polls made. Raises ``RuntimeError`` if L1 keeps moving for ``max_polls`` polls."""
        for polls in range(1, max_polls + 1):
            if self.poll().idle:
                return polls
        raise RuntimeError(f"not caught up after {max_polls} polls")

    def poll(self) -> PollReport:
        """Process the next range of confirmed blocks (at most ``max_blocks``)."""
        self.polls += 1
        reverted = self._check_reorg()
        done, _ = self.position()
        safe = self.l1.safe_head(self.depth)
        start = done + 1
        end = min(safe, done + self.max_blocks)
        report = PollReport(start, end, reverted_to=reverted)
        if end < start:
            return report
        end_hash = self.l1.block_hash(end)
        if end_hash is None:
            report.to_block = start - 1
            return report
        logs = self.l1.get_logs(self.rollup, [list(BATCH_TOPICS)], start, end)
        logs.sort(key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"])))
        events = [e for e in map(decode_batch_log, logs) if e is not None]
        fetched: dict[bytes, bytes | None] = {}

        def batch_bytes(tx_hash: bytes) -> bytes | None:
            return fetched.pop(tx_hash) if tx_hash in fetched else self._batch_bytes(tx_hash)

        with self.derivation.grouped(self.group_batches, self.group_seconds):
            for k, event in enumerate(events):
                self._prefetch_next(events, k, fetched)
                changed = handle_event(self.derivation, self.queues, event, batch_bytes)
                if isinstance(event, BatchPostedLog):
                    report.posted.extend(changed)
                elif isinstance(event, BatchRemovedLog):
                    report.removed.extend(changed)
                else:
                    report.finalized.extend(changed)
            self.derivation.set_progress(end, end_hash)
        return report

    def _prefetch_next(self, events: list[BatchLog], k: int, fetched: dict[bytes, bytes | None]) -> None:
        """Before event ``k`` is handled, read the bytes of the next ``PREFETCH_AHEAD`` posted batches
        after it and let the derivation recover their signers meanwhile
        (:meth:`~node.derive.Derivation.prefetch`; two ahead hides the recovery process's turnaround)."""
        posted = (e for e in events[k + 1 :] if isinstance(e, BatchPostedLog))
        for event in islice(posted, PREFETCH_AHEAD):
            known = self.derivation.record(event.index)
            if known is not None and known.tx_hash == event.tx_hash:
                continue
            if event.tx_hash not in fetched:
                fetched[event.tx_hash] = self._batch_bytes(event.tx_hash)
            self.derivation.prefetch(event.index, event.tx_hash, fetched[event.tx_hash])

    def _batch_bytes(self, tx_hash: bytes) -> bytes | None:
        tx = self.l1.transaction(tx_hash)
        return None if tx is None else post_batch_bytes(tx, self.rollup)

    def _check_reorg(self) -> int | None:
        """Roll back when the last processed block left the canonical chain; returns the block rolled back to."""
        done, done_hash = self.position()
        if not done_hash:
            return None
        if self.l1.block_hash(done) == done_hash:
            return None
        points = self.derivation.store.checkpoints()
        canonical = self.l1.block_hashes([b for b, _ in points])
        for block, block_hash in points:
            if canonical.get(block) == block_hash:
                log.warning("L1 reorganised below block %d: rolling back to block %d", done, block)
                self.derivation.revert_to_block(block)
                self.queues.clear()
                self.derivation.set_progress(block, block_hash)
                return block
        raise DeepReorgError(f"L1 reorganised below every checkpoint (last processed block {done})")

    # -------------------------------------------------------- the loop

    def run(
        self,
        stop: Callable[[], bool],
        interval: float = 1.0,
        retry: RetryPolicy = FOREVER,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Poll until ``stop()``: at once while behind, every ``interval`` seconds once caught up.

        Transient L1 failures and missing queue items back off and retry;
        anything else (a :class:`DeepReorgError`, a derivation conflict) stops the loop."""
        delays = retry.delays()
        while not stop():
            try:
                report = self.poll()
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, QueueItemMissing)):
                    raise
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("follower: %s; retrying in %.1fs", self.last_error, delay)
                sleep(delay)
                continue
            delays = retry.delays()
            self.last_error = ""
            if report.idle:
                sleep(interval)

    def status(self) -> dict[str, Any]:
        """Progress and the derivation's head, for monitoring."""
        done, _ = self.position()
        head = self.derivation.head
        return {
            "l1_block": done,
            "depth": self.depth,
            "polls": self.polls,
            "head": None if head is None else head.index,
            "head_root": None if head is None else "0x" + head.computed_root.hex(),
            "last_error": self.last_error,
        }
