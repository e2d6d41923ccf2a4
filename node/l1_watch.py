"""Follow the bridge's deposit and forced-transaction queues on L1, to a confirmation depth.

:class:`QueueWatcher` scans ``Deposited`` and ``ForcedQueued`` logs in
bounded block ranges up to the safe head (``head - depth``) and returns the
new queue items in L1 order, each with its queue index, L1 time, block and
transaction. Items in the last ``depth`` blocks are never reported, so a
reorganisation no deeper than ``depth`` cannot retract a reported item (the
queues are append-only: an item below the safe head never changes).

Every scan is checked twice against the chain: the items' indices must run
on from the cursor without a gap, and ``depositCount``/``forcedCount`` read at
the scanned block's hash must equal the next indices (a node that lost logs
is caught, not trusted). The cursor (last scanned block, its hash, the next
index of each queue) is resumable from a JSON file; when the block it names
is no longer canonical, the chain reorganised deeper than ``depth`` and
:class:`DeepReorgError` stops the watcher instead of guessing.

The event layouts are those of ``Bridge.vy`` (docs/l1.md §7), decoded here
without compiling the contract.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode

from node.l1 import L1Client
from state.context import L1Deposit, L1Forced
from state.keccak import keccak256

DEPOSITED_TOPIC = keccak256(b"Deposited(uint256,address,uint256,uint256)")
FORCED_QUEUED_TOPIC = keccak256(b"ForcedQueued(uint256,address,bytes,uint256)")
DEPOSIT_COUNT = keccak256(b"depositCount()")[:4]
FORCED_COUNT = keccak256(b"forcedCount()")[:4]


class DeepReorgError(RuntimeError):
    """The block the cursor names left the canonical chain: a reorg deeper than the depth."""


class QueueGapError(RuntimeError):
    """The logs and the bridge's counters disagree (missing or extra queue events)."""


@dataclass(frozen=True)
class QueuedDeposit:
    """One deposit-queue item, as the STF reads it, with where it sits on L1."""

    index: int
    item: L1Deposit
    time: int
    """The L1 block time it was queued at (the forced-inclusion clock starts here)."""
    block: int
    tx_hash: bytes


@dataclass(frozen=True)
class QueuedForced:
    """One forced-queue item, as the STF reads it, with where it sits on L1."""

    index: int
    item: L1Forced
    time: int
    """The L1 block time it was queued at (the forced-inclusion clock starts here)."""
    block: int
    tx_hash: bytes


QueueItem = QueuedDeposit | QueuedForced


@dataclass(frozen=True)
class WatchCursor:
    """Where a watcher stands: everything up to and including ``block`` is reported."""

    block: int
    """The last scanned block (``start_block - 1`` before the first scan)."""
    block_hash: str
    """Its hash, hex (empty before the first scan)."""
    next_deposit: int = 0
    next_forced: int = 0

    @staticmethod
    def start(start_block: int) -> WatchCursor:
        """The cursor of a watcher that has scanned nothing and starts at ``start_block``."""
        return WatchCursor(start_block - 1, "", 0, 0)

    def to_json(self) -> str:
        """The cursor as JSON."""
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> WatchCursor:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        return WatchCursor(int(raw["block"]), str(raw["block_hash"]), int(raw["next_deposit"]), int(raw["next_forced"]))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temporary file, fsync, rename)."""
        write_atomic(Path(path), self.to_json())

    @staticmethod
    def load(path: str | os.PathLike[str]) -> WatchCursor | None:
        """The cursor saved at ``path``, or None when there is none."""
        p = Path(path)
        return WatchCursor.from_json(p.read_text()) if p.exists() else None


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def decode_queue_log(log: Any) -> QueueItem | None:
    """A ``Deposited`` or ``ForcedQueued`` log as a queue item (None for other logs)."""
    topics = [bytes(t) for t in log["topics"]]
    if len(topics) != 3:
        return None
    index = int.from_bytes(topics[1], "big")
    who = topics[2][12:]
    data = bytes(log["data"])
    block, tx_hash = int(log["blockNumber"]), bytes(log["transactionHash"])
    if topics[0] == DEPOSITED_TOPIC:
        amount, t = decode(["uint256", "uint256"], data)
        return QueuedDeposit(index, L1Deposit(who, int(amount)), int(t), block, tx_hash)
    if topics[0] == FORCED_QUEUED_TOPIC:
        payload, t = decode(["bytes", "uint256"], data)
        return QueuedForced(index, L1Forced(who, bytes(payload)), int(t), block, tx_hash)
    return None


class QueueWatcher:
    """Reports the bridge's new queue items once they are ``depth`` blocks deep.

    ``start_block`` is the bridge's deployment block
    (:attr:`l1_contracts.deploy.Deployment.block`); ``depth`` defaults to the
    client's. With ``cursor_path``, the cursor is loaded from it when present
    and written by :meth:`commit`. Delivery is at least once: items returned
    by :meth:`poll` but not yet committed are returned again after a restart,
    so consumers key them by (queue, index)."""

    def __init__(
        self,
        l1: L1Client,
        bridge: str,
        *,
        start_block: int = 0,
        depth: int | None = None,
        cursor: WatchCursor | None = None,
        cursor_path: str | os.PathLike[str] | None = None,
        max_blocks: int = 50_000,
    ) -> None:
        self.l1 = l1
        self.bridge = l1.w3.to_checksum_address(bridge)
        self.depth = l1.depth if depth is None else depth
        self.cursor_path = Path(cursor_path) if cursor_path is not None else None
        loaded = WatchCursor.load(self.cursor_path) if self.cursor_path is not None else None
        self._cursor = cursor or loaded or WatchCursor.start(start_block)
        self.max_blocks = max_blocks

    @property
    def cursor(self) -> WatchCursor:
        """The position after the last :meth:`poll`."""
        return self._cursor

    def commit(self) -> None:
        """Persist the cursor (call once the items polled so far are handled)."""
        if self.cursor_path is not None:
            self._cursor.save(self.cursor_path)

    def counts(self, block: int | bytes | str = "latest") -> tuple[int, int]:
        """(``depositCount``, ``forcedCount``) at ``block`` (a number, a hash or a tag)."""
        dep = self.l1.call({"to": self.bridge, "data": DEPOSIT_COUNT}, block)
        frc = self.l1.call({"to": self.bridge, "data": FORCED_COUNT}, block)
        return int.from_bytes(dep[:32], "big"), int.from_bytes(frc[:32], "big")

    def poll(self) -> list[QueueItem]:
        """The items queued since the cursor, up to the safe head, in L1 order; advances the cursor.

        Raises :class:`DeepReorgError` when the cursor's block is no longer
        canonical and :class:`QueueGapError` when the logs and the counters
        disagree (the cursor does not move then)."""
        c = self._cursor
        if c.block_hash:
            now = self.l1.block_hash(c.block)
            if now is None or now.hex() != c.block_hash:
                raise DeepReorgError(
                    f"block {c.block} ({c.block_hash[:10]}…) left the canonical chain: "
                    f"a reorg deeper than {self.depth} blocks"
                )
        safe = self.l1.safe_head(self.depth)
        if safe <= c.block:
            return []
        to = min(safe, c.block + self.max_blocks)
        to_hash = self.l1.block_hash(to)
        if to_hash is None:
            return []
        logs = self.l1.get_logs(
            self.bridge, [[DEPOSITED_TOPIC, FORCED_QUEUED_TOPIC]], c.block + 1, to
        )
        logs.sort(key=lambda lg: (int(lg["blockNumber"]), int(lg["logIndex"])))
        items: list[QueueItem] = []
        next_dep, next_frc = c.next_deposit, c.next_forced
        for log in logs:
            item = decode_queue_log(log)
            if item is None:
                continue
            expected = next_dep if isinstance(item, QueuedDeposit) else next_frc
            if item.index != expected:
                raise QueueGapError(f"{type(item).__name__} {item.index} where {expected} was next")
            if isinstance(item, QueuedDeposit):
                next_dep += 1
            else:
                next_frc += 1
            items.append(item)
        counts = self.counts(to_hash)
        if counts != (next_dep, next_frc):
            raise QueueGapError(
                f"bridge counters at block {to} are {counts}, the logs give {(next_dep, next_frc)}"
            )
        self._cursor = WatchCursor(to, to_hash.hex(), next_dep, next_frc)
        return items

    def follow(
        self, interval: float = 1.0, stop: Callable[[], bool] | None = None
    ) -> Iterator[QueueItem]:
        """Poll for ever (until ``stop()``), yielding items; commits after each poll's items are taken."""
        while stop is None or not stop():
            items = self.poll()
            yield from items
            self.commit()
            if not items:
                time.sleep(interval)
