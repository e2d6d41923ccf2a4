"""What the core's commands return, and its configuration (plain values)."""

from __future__ import annotations

from dataclasses import dataclass

from l1_contracts.config import MAX_BATCH_BYTES
from sequencer.orders import Reason, RemovedOrder, Status
from state.batch import MAX_ORDERS
from state.transition import Receipt

__all__ = [
    "CancelOutcome",
    "ExchangeConfig",
    "FillRecord",
    "L1Outcome",
    "PlaceOutcome",
    "StepOutcome",
    "StepRef",
]


@dataclass(frozen=True)
class ExchangeConfig:
    """Tunables of the core (the hard limits default to the protocol's)."""

    max_batch_bytes: int = MAX_BATCH_BYTES
    """A batch never exceeds this (the rollup contract's limit)."""
    max_batch_orders: int = MAX_ORDERS
    """Order-table entries per batch (u16 references)."""
    max_batch_steps: int = 0xFFFF
    """Steps per batch."""
    reserve_bytes: int = 4_096
    """A command that leaves less than this free in the open batch seals it: the next
    command always has room for one step of any kind (the largest, an oracle step
    with 80 prices and 16 signatures, is 2,091 bytes), and an order's fills rarely
    straddle two batches."""
    max_batch_age: int = 2
    """Seconds after which :meth:`Exchange.should_close` asks for a close."""
    checkpoint_every: int = 8
    """A full checkpoint every this many sealed batches (each batch is stored when sealed;
    recovery replays the WAL since the last checkpoint)."""
    wal_segment_bytes: int = 64 << 20
    """WAL segment size (docs/wal.md); checkpoints delete the segments they cover."""
    protection_bps: int = 500
    """Market-order protection band (docs/matching.md §3)."""
    cache_reset_batches: int = 16
    """Every this many sealed batches the decoded-leaf cache is dropped (bounds memory)."""


@dataclass(slots=True, unsafe_hash=True)
class StepRef:
    """Where a step went: batch index, step index within it, and its receipt."""

    batch: int
    step: int
    receipt: Receipt

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, batch: int, step: int, receipt: Receipt) -> None:
        self.batch = batch
        self.step = step
        self.receipt = receipt


@dataclass(slots=True)
class FillRecord:
    """One accepted fill: the trade step at ``(batch, step)``, at the maker's price."""

    maker: bytes
    taker: bytes
    maker_account: int
    taker_account: int
    market: int
    taker_is_buy: bool
    price: int
    size: int
    batch: int
    step: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, maker: bytes, taker: bytes, maker_account: int, taker_account: int, market: int,
        taker_is_buy: bool, price: int, size: int, batch: int, step: int,
    ) -> None:
        self.maker = maker
        self.taker = taker
        self.maker_account = maker_account
        self.taker_account = taker_account
        self.market = market
        self.taker_is_buy = taker_is_buy
        self.price = price
        self.size = size
        self.batch = batch
        self.step = step


@dataclass(slots=True)
class PlaceOutcome:
    """The result of placing an order (``order_hash``, its EIP-712 digest, is its id).

    ``status`` and ``reason`` are the engine's (docs/matching.md §2): RESTING,
    FILLED, CANCELLED (the remainder was cancelled) or REFUSED (nothing
    happened, e.g. POST_ONLY_WOULD_CROSS). ``removed`` lists makers taken off
    the book on the way. ``seq`` is the command's WAL record.
    """

    order_hash: bytes
    account: int
    market: int
    status: Status
    reason: Reason | None
    fills: tuple[FillRecord, ...]
    removed: tuple[RemovedOrder, ...]
    filled: int
    resting: int
    seq: int = 0

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, order_hash: bytes, account: int, market: int, status: Status,
        reason: Reason | None, fills: tuple[FillRecord, ...], removed: tuple[RemovedOrder, ...],
        filled: int, resting: int, seq: int = 0,
    ) -> None:
        self.order_hash = order_hash
        self.account = account
        self.market = market
        self.status = status
        self.reason = reason
        self.fills = fills
        self.removed = removed
        self.filled = filled
        self.resting = resting
        self.seq = seq


@dataclass(slots=True)
class CancelOutcome:
    """A cancel: the size taken off the book and, if one was posted, the cancel step."""

    order_hash: bytes
    account: int
    remaining: int
    step: StepRef | None
    seq: int = 0


@dataclass(slots=True)
class StepOutcome:
    """A command that became one step (withdraw, oracle, funding, settle, liquidate,
    deleverage); ``withdrawal_id`` for a withdrawal; orders it took off the book."""

    step: StepRef
    withdrawal_id: int | None = None
    removed: tuple[RemovedOrder, ...] = ()
    seq: int = 0


@dataclass(slots=True)
class L1Outcome:
    """The deposit and forced steps appended for newly handed L1 queue items."""

    deposits: tuple[StepRef, ...]
    forced: tuple[StepRef, ...]
    removed: tuple[RemovedOrder, ...] = ()
    seq: int = 0
