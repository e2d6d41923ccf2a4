"""Value types of the matching engine (docs/matching.md).

Everything here is an immutable value: the order the engine is asked to place,
the verdict the STF gives on a candidate fill, and the results the engine
returns (fills, removed orders, the taker's final status, book snapshots).
Prices and sizes are integers in the units of docs/stf.md §1.2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from state.constants import (
    FLAG_FOK,
    FLAG_IOC,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    FLAGS_DEFINED,
    U64_LIMIT,
)
from state.txs import OrderBody

__all__ = [
    "FLAG_FOK",
    "FLAG_IOC",
    "FLAG_POST_ONLY",
    "FLAG_REDUCE_ONLY",
    "FLAGS_DEFINED",
    "GTC",
    "CheckFill",
    "Depth",
    "Fill",
    "Level",
    "MarketSpec",
    "OpenOrder",
    "Order",
    "OrderId",
    "PlaceResult",
    "PositionOf",
    "Reason",
    "RemovedOrder",
    "Status",
    "Verdict",
]

GTC = U64_LIMIT - 1
"""Expiry meaning good-till-cancelled (2**64 - 1, docs/stf.md §5.2)."""

OrderId: TypeAlias = int | bytes
"""An order's identity, chosen by the caller (typically its EIP-712 digest)."""


@dataclass(slots=True, unsafe_hash=True)
class Order:
    """An order as signed (docs/stf.md §5.2), identified by ``order_id``.

    ``flags`` is the signed flags byte: bit 0 post-only, bit 1 reduce-only,
    bit 2 IOC, bit 3 FOK. ``expiry`` is a time in seconds; the order is
    fillable while ``time < expiry``; :data:`GTC` means good-till-cancelled.
    """

    order_id: OrderId
    account: int
    market: int
    is_buy: bool
    price: int
    size: int
    flags: int = 0
    expiry: int = GTC

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, order_id: OrderId, account: int, market: int, is_buy: bool, price: int, size: int,
        flags: int = 0, expiry: int = GTC,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.market = market
        self.is_buy = is_buy
        self.price = price
        self.size = size
        self.flags = flags
        self.expiry = expiry

    @staticmethod
    def from_body(order_id: OrderId, body: OrderBody) -> Order:
        """The order of a decoded order body (``state.txs.OrderBody``)."""
        return Order(
            order_id,
            body.account,
            body.market,
            body.is_buy,
            body.price,
            body.size,
            body.flags,
            body.expiry,
        )


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """Matching parameters of one market.

    ``tick`` and ``lot`` are the market's parameters (docs/stf.md §4.2).
    ``protection_bps`` bounds market orders: a market buy fills at most
    ``protection_bps`` basis points above the best ask at arrival, a market
    sell at most that far below the best bid.
    """

    tick: int
    lot: int
    protection_bps: int = 500


class Verdict(Enum):
    """The STF's answer on one candidate fill."""

    ACCEPT = "accept"
    """The fill is applied; the engine updates the book."""
    REJECT_MAKER = "reject_maker"
    """The maker order is removed from the book; matching continues."""
    REJECT_TAKER = "reject_taker"
    """Matching stops; the taker's remainder is cancelled."""


CheckFill: TypeAlias = Callable[[Order, Order, int, int], Verdict]
"""``check_fill(maker, taker, price, size)``: the STF's verdict on a fill."""

PositionOf: TypeAlias = Callable[[int, int], int]
"""``position(account, market)``: the account's signed position size, including
every fill the engine has had accepted so far."""


class Status(Enum):
    """The final status of a placed order."""

    FILLED = "filled"
    """Completely filled."""
    RESTING = "resting"
    """Rests in the book (``filled`` > 0 when partially filled first)."""
    CANCELLED = "cancelled"
    """The remainder was cancelled (``filled`` may be > 0); see the reason."""
    REFUSED = "refused"
    """Refused before any fill; see the reason."""


class Reason(Enum):
    """Why an order was refused, its remainder cancelled, or a maker removed."""

    # Refusals of a new order (nothing was filled).
    DUPLICATE_ID = "duplicate_id"
    UNKNOWN_MARKET = "unknown_market"
    BAD_FLAGS = "bad_flags"
    BAD_PRICE = "bad_price"
    TICK_SIZE = "tick_size"
    BAD_SIZE = "bad_size"
    LOT_SIZE = "lot_size"
    EXPIRED = "expired"
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    FOK_UNFILLABLE = "fok_unfillable"
    NO_LIQUIDITY = "no_liquidity"
    REDUCE_ONLY = "reduce_only"
    # A taker's remainder that does not rest.
    IOC_REMAINDER = "ioc_remainder"
    STF_REJECTED = "stf_rejected"
    # Makers removed from the book (EXPIRED, REDUCE_ONLY and STF_REJECTED too).
    SELF_TRADE = "self_trade"
    CANCELLED = "cancelled"


@dataclass(slots=True, unsafe_hash=True)
class Fill:
    """One fill: ``size`` at the maker's ``price``."""

    maker_id: OrderId
    taker_id: OrderId
    price: int
    size: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, maker_id: OrderId, taker_id: OrderId, price: int, size: int) -> None:
        self.maker_id = maker_id
        self.taker_id = taker_id
        self.price = price
        self.size = size


@dataclass(slots=True, unsafe_hash=True)
class RemovedOrder:
    """A resting order taken out of the book without filling, and why."""

    order_id: OrderId
    account: int
    reason: Reason
    remaining: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, order_id: OrderId, account: int, reason: Reason, remaining: int) -> None:
        self.order_id = order_id
        self.account = account
        self.reason = reason
        self.remaining = remaining


@dataclass(slots=True, unsafe_hash=True)
class PlaceResult:
    """The outcome of placing one order.

    ``fills`` are in execution order; ``removed`` lists the makers taken out of
    the book on the way (self-trade, expiry, reduce-only, STF rejection).
    ``filled`` is the taker's total filled size and ``resting`` the size left
    in the book (non-zero only when ``status`` is RESTING).
    """

    order_id: OrderId
    status: Status
    reason: Reason | None
    fills: tuple[Fill, ...]
    removed: tuple[RemovedOrder, ...]
    filled: int
    resting: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, order_id: OrderId, status: Status, reason: Reason | None, fills: tuple[Fill, ...],
        removed: tuple[RemovedOrder, ...], filled: int, resting: int,
    ) -> None:
        self.order_id = order_id
        self.status = status
        self.reason = reason
        self.fills = fills
        self.removed = removed
        self.filled = filled
        self.resting = resting


@dataclass(frozen=True, slots=True)
class Level:
    """One price level: total resting size and number of orders."""

    price: int
    size: int
    count: int


@dataclass(frozen=True, slots=True)
class Depth:
    """The top levels of a book, best first on each side."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A resting order and the size still open."""

    order: Order
    remaining: int
