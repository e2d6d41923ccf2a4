"""The batch being built: a growing order table, its steps, and the L1 queue mirror.

The STF reads a batch's order table through ``BatchContext.orders``
(docs/stf.md §3). While a batch is open its table grows: each order is posted
once per batch, when its first fill (or cancel, or liquidation) is accepted,
and referenced by its u16 position from then on. :class:`LiveOrderTable` is
that growing table. It answers the STF exactly as ``OrderTable`` over the
final entries would — the same entry at the same reference, the same digest,
the same signature verdict — so the closed batch replays to the same roots
(tested). Signatures the intake has already recovered are not recovered again
(docs/stf.md §5.2 allows recovering each order's signer once per batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sequencer.intake import IntakeError
from state.batch import ENTRY_LENGTH_BYTES, MAX_PACKED_ENTRY_SIZE, Batch, packed_entry_size
from state.context import (
    AccountReader,
    BatchContext,
    ChainConfig,
    L1Deposit,
    L1Forced,
    OrderTable,
    SignatureJob,
)
from state.eip712 import recover_signer
from state.signing import order_hash
from state.transition import Receipt
from state.txs import KIND_DEPOSIT, KIND_FORCED, SignedOrder

__all__ = ["BATCH_HEADER_BYTES", "ClosedBatch", "LiveOrderTable", "OpenBatch", "QueueMirror"]

T = TypeVar("T")

BATCH_HEADER_BYTES = 1 + 8 + 2 + 4
"""version, timestamp, n_orders, n_steps (docs/stf.md §5.1)."""
STEP_OVERHEAD = 2
"""The u16 length before each step."""
ENTRY_OVERHEAD_MAX = ENTRY_LENGTH_BYTES + MAX_PACKED_ENTRY_SIZE
"""The most bytes one order-table entry takes: its length byte and the escape form."""


class LiveOrderTable(OrderTable):
    """An order table that grows while its batch is open (and can drop its last entries)."""

    def __init__(self, domain: bytes) -> None:
        super().__init__((), domain)
        self._dom = domain
        self.entries: list[bytes] = []
        self._orders: list[SignedOrder] = []
        self._owners: list[bytes | None] = []
        self._digests: list[bytes | None] = []
        self._verdicts: list[bool | None] = []
        self.refs: dict[bytes, int] = {}
        """Order digest → reference, for entries whose digest is known."""

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, ref: int) -> SignedOrder | None:
        """The entry at ``ref``, or None when out of range."""
        return self._orders[ref] if 0 <= ref < len(self._orders) else None

    def digest_and_check(self, ref: int, order: SignedOrder, owner: bytes) -> tuple[bytes, bool]:
        """The order's digest with ``owner`` as trader and whether ``owner`` signed it."""
        verdict = self._verdicts[ref]
        digest = self._digests[ref]
        if self._owners[ref] == owner and digest is not None:
            if verdict is None:
                verdict = recover_signer(digest, order.signature) == owner
                self._verdicts[ref] = verdict
            return digest, verdict
        digest = order_hash(self._dom, owner, order.body)
        verdict = recover_signer(digest, order.signature) == owner
        self._owners[ref], self._digests[ref], self._verdicts[ref] = owner, digest, verdict
        return digest, verdict

    def signature_jobs(self, view: AccountReader) -> list[SignatureJob]:
        """None: the intake recovered the signers of the orders it posts; the few entries
        posted unverified (a cancel's or a liquidator's order) are recovered when used."""
        return []

    def append(
        self, order: SignedOrder, entry: bytes, digest: bytes | None = None,
        owner: bytes | None = None, verified: bool = False,
    ) -> int:
        """Post an entry; returns its reference. ``digest`` and ``owner`` are the order's
        EIP-712 digest and its account's owner when known; ``verified`` records that
        the intake already recovered ``owner`` from the signature over ``digest``."""
        ref = len(self.entries)
        self.entries.append(entry)
        self._orders.append(order)
        self._owners.append(owner)
        self._digests.append(digest)
        self._verdicts.append(True if verified and owner is not None and digest is not None else None)
        if digest is not None:
            self.refs[digest] = ref
        return ref

    def truncate(self, length: int) -> None:
        """Drop every entry from ``length`` on (entries posted for a refused step)."""
        if len(self.entries) <= length:
            return
        for digest in self._digests[length:]:
            if digest is not None and self.refs.get(digest, -1) >= length:
                del self.refs[digest]
        for column in (self.entries, self._orders, self._owners, self._digests, self._verdicts):
            del column[length:]

    def owner(self, ref: int) -> bytes | None:
        """The owner recorded with entry ``ref``, if known."""
        return self._owners[ref]

    def entry_info(self, ref: int) -> tuple[bytes, bytes | None, bytes | None, bool]:
        """``(entry, digest, owner, verified)`` of ``ref`` (for checkpoints)."""
        return self.entries[ref], self._digests[ref], self._owners[ref], self._verdicts[ref] is True


class QueueMirror:
    """The L1 bridge's deposit and forced queues, as far as they were handed to the core.

    Indices are absolute queue positions; items before ``*_base`` were consumed
    by committed batches and dropped.
    """

    def __init__(
        self, deposit_base: int = 0, deposits: Sequence[L1Deposit] = (),
        forced_base: int = 0, forced: Sequence[L1Forced] = (),
    ) -> None:
        self.deposit_base = deposit_base
        self.deposits = list(deposits)
        self.forced_base = forced_base
        self.forced_items = list(forced)

    @property
    def deposit_end(self) -> int:
        """One past the last deposit handed over."""
        return self.deposit_base + len(self.deposits)

    @property
    def forced_end(self) -> int:
        """One past the last forced item handed over."""
        return self.forced_base + len(self.forced_items)

    def deposit(self, index: int) -> L1Deposit | None:
        """The deposit at absolute ``index``, or None."""
        i = index - self.deposit_base
        return self.deposits[i] if 0 <= i < len(self.deposits) else None

    def forced(self, index: int) -> L1Forced | None:
        """The forced item at absolute ``index``, or None."""
        i = index - self.forced_base
        return self.forced_items[i] if 0 <= i < len(self.forced_items) else None

    def deposit_range(self, start: int, count: int) -> tuple[L1Deposit, ...]:
        """Deposits ``[start, start + count)``."""
        i = start - self.deposit_base
        return tuple(self.deposits[i : i + count])

    def forced_range(self, start: int, count: int) -> tuple[L1Forced, ...]:
        """Forced items ``[start, start + count)``."""
        i = start - self.forced_base
        return tuple(self.forced_items[i : i + count])

    def new_deposits(self, items: Sequence[L1Deposit], start: int | None) -> tuple[list[L1Deposit], int]:
        """The items not handed over before, and the position of the first (see :func:`_new_items`)."""
        return _new_items(items, start, self.deposit_base, self.deposits)

    def new_forced(self, items: Sequence[L1Forced], start: int | None) -> tuple[list[L1Forced], int]:
        """Like :meth:`new_deposits`, for the forced queue."""
        return _new_items(items, start, self.forced_base, self.forced_items)

    def prune(self, deposit_base: int, forced_base: int) -> None:
        """Forget items below the given positions (consumed by committed batches)."""
        drop = min(max(deposit_base - self.deposit_base, 0), len(self.deposits))
        del self.deposits[:drop]
        self.deposit_base += drop
        drop = min(max(forced_base - self.forced_base, 0), len(self.forced_items))
        del self.forced_items[:drop]
        self.forced_base += drop


def _new_items(items: Sequence[T], start: int | None, base: int, known: Sequence[T]) -> tuple[list[T], int]:
    """Items from absolute position ``start`` (default: after the known ones) minus those
    already known, which must be equal (``QUEUE_MISMATCH``); a gap is ``QUEUE_GAP``."""
    end = base + len(known)
    if start is None:
        start = end
    if start > end:
        raise IntakeError("QUEUE_GAP", f"queue items from {end} to {start} are missing")
    if start < base and start + len(items) > base:
        raise IntakeError("QUEUE_MISMATCH", "items overlap the consumed ones")
    for at in range(max(start, base), min(end, start + len(items))):
        if items[at - start] != known[at - base]:
            raise IntakeError("QUEUE_MISMATCH", f"queue item {at} differs from the one handed before")
    skip = max(0, end - start)
    return list(items[skip:]), start + skip


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Hard bounds of one batch (the rollup contract's and the format's)."""

    max_bytes: int
    max_orders: int
    max_steps: int


class OpenBatch:
    """The batch being built: time fixed at opening, a growing table, steps, receipts."""

    def __init__(
        self, index: int, timestamp: int, opened_at: int, pre_root: bytes,
        deposit_start: int, forced_start: int, chain: ChainConfig, queues: QueueMirror,
    ) -> None:
        self.index = index
        self.timestamp = timestamp
        self.opened_at = opened_at
        self.pre_root = pre_root
        self.deposit_start = deposit_start
        self.forced_start = forced_start
        self.table = LiveOrderTable(chain.domain)
        self.ctx = BatchContext(timestamp, chain, queues, self.table)
        self.steps: list[bytes] = []
        self.receipts: list[Receipt] = []
        self.nbytes = BATCH_HEADER_BYTES
        self.deposit_count = 0
        self.forced_count = 0

    def fits(self, step_len: int, new_orders: int, limits: BatchLimits) -> bool:
        """Whether one more step (and ``new_orders`` entries, counted at their largest
        packed size) stay within ``limits``."""
        return (
            self.nbytes + STEP_OVERHEAD + step_len + ENTRY_OVERHEAD_MAX * new_orders
            <= limits.max_bytes
            and len(self.table) + new_orders <= limits.max_orders
            and len(self.steps) < limits.max_steps
        )

    def nearly_full(self, limits: BatchLimits, reserve_bytes: int) -> bool:
        """Whether less than ``reserve_bytes`` (or one entry, or one step) is left."""
        return (
            self.nbytes > limits.max_bytes - reserve_bytes
            or len(self.table) >= limits.max_orders - 1
            or len(self.steps) >= limits.max_steps - 1
        )

    def post(
        self, order: SignedOrder, entry: bytes, digest: bytes | None = None,
        owner: bytes | None = None, verified: bool = False,
    ) -> int:
        """Add an order entry; returns its reference."""
        self.nbytes += ENTRY_LENGTH_BYTES + packed_entry_size(entry)
        return self.table.append(order, entry, digest, owner, verified)

    def unpost(self, length: int) -> None:
        """Drop the entries posted from ``length`` on."""
        self.nbytes -= sum(ENTRY_LENGTH_BYTES + packed_entry_size(e) for e in self.table.entries[length:])
        self.table.truncate(length)

    def add_step(self, step: bytes, receipt: Receipt) -> int:
        """Append an applied step and its receipt; returns its index in the batch."""
        self.steps.append(step)
        self.receipts.append(receipt)
        self.nbytes += STEP_OVERHEAD + len(step)
        if step[:1] == bytes([KIND_DEPOSIT]):
            self.deposit_count += 1
        elif step[:1] == bytes([KIND_FORCED]):
            self.forced_count += 1
        return len(self.steps) - 1

    def encode(self) -> bytes:
        """The batch bytes (docs/stf.md §5.1)."""
        return Batch(self.timestamp, tuple(self.table.entries), tuple(self.steps)).encode()


@dataclass(frozen=True)
class ClosedBatch:
    """A sealed batch: what the publisher posts (``encoded``, ``post_root``, ``step_count``)
    and what a verifier needs to replay it (the L1 items it consumed).

    ``index`` is the sequencer's own 0-based numbering of its batches (the
    rollup contract numbers batches its own way).
    """

    index: int
    encoded: bytes
    pre_root: bytes
    post_root: bytes
    step_count: int
    order_count: int
    timestamp: int
    deposit_start: int
    deposit_count: int
    forced_start: int
    forced_count: int
    receipts: tuple[Receipt, ...]
    deposits: tuple[L1Deposit, ...]
    forced: tuple[L1Forced, ...]

    @property
    def deposit_end(self) -> int:
        """One past the last deposit this batch consumes."""
        return self.deposit_start + self.deposit_count

    @property
    def forced_end(self) -> int:
        """One past the last forced item this batch consumes."""
        return self.forced_start + self.forced_count
