"""What the sequencer persists besides the state trie and the WAL (docs/sequencer.md §6).

A :class:`Checkpoint` is taken at a command boundary after a batch was sealed.
With the committed state at ``root`` it rebuilds everything the core holds in
memory: the open batch (its table and steps, re-applied on recovery), the
resting orders in priority order, the de-duplication memory, the L1 queue
items not yet consumed by a committed batch, the clocks and counters, and the
WAL position to replay from. :class:`ClosedBatch` records are stored next to
it until the publisher confirms them.

Binary layouts (big-endian), each framed by :func:`frame` (magic, body,
CRC-32): readable by nothing but this module, and checked on load.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from sequencer.open_batch import ClosedBatch
from state.context import L1Deposit, L1Forced
from state.errors import Code
from state.transition import Receipt

__all__ = [
    "BookEntry",
    "Checkpoint",
    "CheckpointError",
    "OpenBatchImage",
    "TableEntry",
    "decode_checkpoint",
    "decode_closed_batch",
    "encode_checkpoint",
    "encode_closed_batch",
]

CHECKPOINT_MAGIC = b"HFXCKPT1"
BATCH_MAGIC = b"HFXBTCH1"


class CheckpointError(ValueError):
    """A checkpoint or batch file that does not decode (damaged or foreign)."""


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One entry of the open batch's order table, with what the intake knew of it."""

    entry: bytes
    digest: bytes | None
    owner: bytes | None
    verified: bool


@dataclass(frozen=True, slots=True)
class OpenBatchImage:
    """The open batch at a checkpoint: re-applying ``steps`` over ``root`` rebuilds it."""

    timestamp: int
    opened_at: int
    deposit_start: int
    forced_start: int
    entries: tuple[TableEntry, ...]
    steps: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BookEntry:
    """A resting order: its entry, digest, owner, open size and whether it was ever posted."""

    entry: bytes
    digest: bytes
    owner: bytes
    remaining: int
    published: bool


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed, with the trie at ``root``, to resume at WAL record ``next_seq``."""

    next_seq: int
    next_batch: int
    root: bytes
    last_timestamp: int
    clock: int
    open_batch: OpenBatchImage | None = None
    deposit_base: int = 0
    deposits: tuple[L1Deposit, ...] = ()
    forced_base: int = 0
    forced: tuple[L1Forced, ...] = ()
    book: tuple[BookEntry, ...] = ()
    seen: tuple[tuple[bytes, int], ...] = field(default=())


# ============================================================================ primitives


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u(self, value: int, width: int) -> None:
        self.parts.append(value.to_bytes(width, "big"))

    def raw(self, data: bytes) -> None:
        self.parts.append(data)

    def blob(self, data: bytes) -> None:
        self.u(len(data), 4)
        self.parts.append(data)

    def opt(self, data: bytes | None, width: int) -> None:
        if data is None:
            self.u(0, 1)
        else:
            self.u(1, 1)
            if len(data) != width:
                raise ValueError("bad width")
            self.raw(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def raw(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise CheckpointError("truncated")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u(self, width: int) -> int:
        return int.from_bytes(self.raw(width), "big")

    def blob(self) -> bytes:
        return self.raw(self.u(4))

    def opt(self, width: int) -> bytes | None:
        return self.raw(width) if self.u(1) else None

    def end(self) -> None:
        if self.at != len(self.data):
            raise CheckpointError("trailing bytes")


def frame(magic: bytes, body: bytes) -> bytes:
    """``magic | body | crc32(magic ‖ body)``."""
    return magic + body + struct.pack(">I", zlib.crc32(magic + body))


def unframe(magic: bytes, data: bytes) -> bytes:
    """The body of a framed record; CheckpointError unless magic and CRC match."""
    if len(data) < len(magic) + 4 or not data.startswith(magic):
        raise CheckpointError("bad magic")
    body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
    if zlib.crc32(body) != crc:
        raise CheckpointError("bad crc")
    return body[len(magic) :]


def _put_queues(w: _Writer, deposits: tuple[L1Deposit, ...], forced: tuple[L1Forced, ...]) -> None:
    w.u(len(deposits), 4)
    for d in deposits:
        w.raw(d.owner)
        w.u(d.amount, 32)
    w.u(len(forced), 4)
    for f in forced:
        w.raw(f.sender)
        w.blob(f.payload)


def _get_queues(r: _Reader) -> tuple[tuple[L1Deposit, ...], tuple[L1Forced, ...]]:
    deposits = tuple(L1Deposit(r.raw(20), r.u(32)) for _ in range(r.u(4)))
    forced = tuple(L1Forced(r.raw(20), r.blob()) for _ in range(r.u(4)))
    return deposits, forced


# ============================================================================ checkpoint


def encode_checkpoint(c: Checkpoint) -> bytes:
    """The checkpoint's file bytes."""
    w = _Writer()
    w.u(c.next_seq, 8)
    w.u(c.next_batch, 8)
    w.raw(c.root)
    w.u(c.last_timestamp, 8)
    w.u(c.clock, 8)
    ob = c.open_batch
    w.u(0 if ob is None else 1, 1)
    if ob is not None:
        for value in (ob.timestamp, ob.opened_at, ob.deposit_start, ob.forced_start):
            w.u(value, 8)
        w.u(len(ob.entries), 4)
        for e in ob.entries:
            w.raw(e.entry)
            w.opt(e.digest, 32)
            w.opt(e.owner, 20)
            w.u(int(e.verified), 1)
        w.u(len(ob.steps), 4)
        for step in ob.steps:
            w.blob(step)
    w.u(c.deposit_base, 8)
    w.u(c.forced_base, 8)
    _put_queues(w, c.deposits, c.forced)
    w.u(len(c.book), 4)
    w.raw(b"".join(
        b.entry + b.digest + b.owner + b.remaining.to_bytes(8, "big") + (b"\x01" if b.published else b"\x00")
        for b in c.book
    ))
    w.u(len(c.seen), 4)
    w.raw(b"".join(digest + expiry.to_bytes(8, "big") for digest, expiry in c.seen))
    return frame(CHECKPOINT_MAGIC, w.getvalue())


def decode_checkpoint(data: bytes) -> Checkpoint:
    """Inverse of :func:`encode_checkpoint` (CheckpointError on damage)."""
    r = _Reader(unframe(CHECKPOINT_MAGIC, data))
    next_seq, next_batch, root = r.u(8), r.u(8), r.raw(32)
    last_timestamp, clock = r.u(8), r.u(8)
    open_batch = None
    if r.u(1):
        timestamp, opened_at, deposit_start, forced_start = r.u(8), r.u(8), r.u(8), r.u(8)
        entries = tuple(
            TableEntry(r.raw(104), r.opt(32), r.opt(20), bool(r.u(1))) for _ in range(r.u(4))
        )
        steps = tuple(r.blob() for _ in range(r.u(4)))
        open_batch = OpenBatchImage(timestamp, opened_at, deposit_start, forced_start, entries, steps)
    deposit_base, forced_base = r.u(8), r.u(8)
    deposits, forced = _get_queues(r)
    book = tuple(
        BookEntry(r.raw(104), r.raw(32), r.raw(20), r.u(8), bool(r.u(1))) for _ in range(r.u(4))
    )
    seen = tuple((r.raw(32), r.u(8)) for _ in range(r.u(4)))
    r.end()
    return Checkpoint(
        next_seq, next_batch, root, last_timestamp, clock, open_batch, deposit_base, deposits,
        forced_base, forced, book, seen,
    )


# ============================================================================ closed batch


def encode_closed_batch(b: ClosedBatch) -> bytes:
    """A closed batch's file bytes."""
    w = _Writer()
    w.u(b.index, 8)
    w.raw(b.pre_root)
    w.raw(b.post_root)
    for value in (b.step_count, b.order_count, b.timestamp, b.deposit_start, b.deposit_count,
                  b.forced_start, b.forced_count):
        w.u(value, 8)
    w.u(len(b.receipts), 4)
    for receipt in b.receipts:
        w.u(receipt.kind, 1)
        w.u(int(receipt.code), 1)
    _put_queues(w, b.deposits, b.forced)
    w.blob(b.encoded)
    return frame(BATCH_MAGIC, w.getvalue())


def decode_closed_batch(data: bytes) -> ClosedBatch:
    """Inverse of :func:`encode_closed_batch` (CheckpointError on damage)."""
    r = _Reader(unframe(BATCH_MAGIC, data))
    index, pre_root, post_root = r.u(8), r.raw(32), r.raw(32)
    step_count, order_count, timestamp = r.u(8), r.u(8), r.u(8)
    deposit_start, deposit_count, forced_start, forced_count = r.u(8), r.u(8), r.u(8), r.u(8)
    receipts = tuple(Receipt(r.u(1), Code(r.u(1))) for _ in range(r.u(4)))
    deposits, forced = _get_queues(r)
    encoded = r.blob()
    r.end()
    return ClosedBatch(
        index, encoded, pre_root, post_root, step_count, order_count, timestamp, deposit_start,
        deposit_count, forced_start, forced_count, receipts, deposits, forced,
    )
