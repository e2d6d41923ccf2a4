"""The sequencer's matching engine: price-time priority order books (docs/matching.md).

:class:`Engine` holds one :class:`OrderBook` per market and is the entry point:
:meth:`Engine.place`, :meth:`Engine.cancel`, :meth:`Engine.expire` and the
queries. The engine is pure and deterministic: it reads no clock (``time`` is
an argument), draws no randomness and does no I/O; prices and sizes are
integers. Every candidate fill is first put to the STF through the
``check_fill`` callback, and only an accepted fill changes the book.

Layout of a book side: a dict from price to a :class:`_Level` (a FIFO deque of
entries with the level's aggregate size and live count) and a sorted list of
the level keys, arranged so that the best level is always the last key (bids
keyed by price, asks by minus the price). Cancelling marks the entry dead in
O(1); dead entries are skipped when they reach the head of their queue, and a
level is compacted when its dead entries exceed both 16 and its live ones.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping, Sequence

from sequencer.orders import (
    FLAG_FOK,
    FLAG_IOC,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    FLAGS_DEFINED,
    GTC,
    CheckFill,
    Depth,
    Fill,
    Level,
    MarketSpec,
    OpenOrder,
    Order,
    OrderId,
    PlaceResult,
    PositionOf,
    Reason,
    RemovedOrder,
    Status,
    Verdict,
)
from state.constants import BPS, PRICE_LIMIT, SIZE_LIMIT
from state.layout import Params

__all__ = ["Engine", "OrderBook", "flat_position"]

_ACCEPT = Verdict.ACCEPT
_REJECT_MAKER = Verdict.REJECT_MAKER
_IMMEDIATE = FLAG_IOC | FLAG_FOK
_COMPACT_MIN_DEAD = 16


def flat_position(account: int, market: int) -> int:
    """A position provider for which every account is flat (reduce-only orders are refused)."""
    return 0


def _reducible(position: int, is_buy: bool, lot: int) -> int:
    """How much an order on side ``is_buy`` can fill without growing |position|.

    A buy reduces a short (position < 0), a sell a long; the result is rounded
    down to the lot and is 0 when the order cannot reduce at all.
    """
    cap = -position if is_buy else position
    if cap <= 0:
        return 0
    return cap - cap % lot


# --------------------------------------------------------------------- storage


class _Entry:
    """A resting order: the order, its open size, and where it rests."""

    __slots__ = ("order", "remaining", "live", "level")

    def __init__(self, order: Order, remaining: int, level: _Level) -> None:
        self.order = order
        self.remaining = remaining
        self.live = True
        self.level = level


class _Level:
    """One price level: a FIFO of entries (dead ones included until skipped)."""

    __slots__ = ("price", "queue", "size", "count", "dead", "side")

    def __init__(self, price: int, side: _Side) -> None:
        self.price = price
        self.queue: deque[_Entry] = deque()
        self.size = 0
        self.count = 0
        self.dead = 0
        self.side = side


class _Side:
    """The levels of one side; ``keys`` ascending so that the best level is last."""

    __slots__ = ("is_bid", "keys", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.keys: list[int] = []
        self.levels: dict[int, _Level] = {}

    def best_price(self) -> int | None:
        """The best price, or None when the side is empty."""
        keys = self.keys
        if not keys:
            return None
        return keys[-1] if self.is_bid else -keys[-1]

    def prices(self, n: int | None = None) -> list[int]:
        """The prices, best first: all of them, or the best ``n``."""
        keys = self.keys if n is None else self.keys[max(len(self.keys) - max(n, 0), 0) :]
        if self.is_bid:
            return keys[::-1]
        return [-k for k in reversed(keys)]

    def level_for(self, price: int) -> _Level:
        """The level at ``price``, created when absent."""
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = _Level(price, self)
            key = price if self.is_bid else -price
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        return level

    def drop(self, level: _Level) -> None:
        """Remove an empty level."""
        price = level.price
        del self.levels[price]
        key = price if self.is_bid else -price
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]


class _Registry:
    """Indexes shared by the books of an engine: by id, by account, by expiry.

    The books add and remove entries in ``ids`` and ``accounts`` directly.
    """

    __slots__ = ("ids", "accounts", "expiries", "seq")

    def __init__(self) -> None:
        self.ids: dict[OrderId, _Entry] = {}
        self.accounts: dict[int, dict[OrderId, _Entry]] = {}
        self.expiries: list[tuple[int, int, _Entry]] = []
        self.seq = 0

    def push_expiry(self, expiry: int, entry: _Entry) -> None:
        """Schedule a resting entry for the expiry sweep (compacting stale items now and then)."""
        heap = self.expiries
        if len(heap) > 2 * len(self.ids) + 1024:
            heap[:] = [item for item in heap if item[2].live]
            heapq.heapify(heap)
        self.seq += 1
        heapq.heappush(heap, (expiry, self.seq, entry))


# --------------------------------------------------------------------- book


class OrderBook:
    """The book of one market: bids and asks in price-time priority.

    Books are created by :class:`Engine`, which validates orders before they
    reach a book; trade through the engine, query the book directly.
    """

    def __init__(self, market: int, spec: MarketSpec, registry: _Registry | None = None) -> None:
        self.market = market
        self.spec = spec
        self._bids = _Side(True)
        self._asks = _Side(False)
        self._registry = registry if registry is not None else _Registry()
        self._ids = self._registry.ids
        self._accounts = self._registry.accounts

    # ---------------------------------------------------------------- queries

    def best_bid(self) -> Level | None:
        """The best bid level, or None."""
        return self._top(self._bids)

    def best_ask(self) -> Level | None:
        """The best ask level, or None."""
        return self._top(self._asks)

    @staticmethod
    def _top(side: _Side) -> Level | None:
        price = side.best_price()
        if price is None:
            return None
        level = side.levels[price]
        return Level(price, level.size, level.count)

    def depth(self, n: int = 10) -> Depth:
        """The top ``n`` levels of each side, best first, with aggregate sizes."""
        return Depth(self._levels(self._bids, n), self._levels(self._asks, n))

    @staticmethod
    def _levels(side: _Side, n: int) -> tuple[Level, ...]:
        out = []
        for price in side.prices(n):
            level = side.levels[price]
            out.append(Level(price, level.size, level.count))
        return tuple(out)

    def orders(self, is_buy: bool) -> list[OpenOrder]:
        """Every resting order of one side, in priority order."""
        side = self._bids if is_buy else self._asks
        return [
            OpenOrder(entry.order, entry.remaining)
            for price in side.prices()
            for entry in side.levels[price].queue
            if entry.live
        ]

    # ---------------------------------------------------------------- removal

    def _discard(self, order: Order) -> None:
        """Unindex an order leaving the book (its expiry item is dropped lazily)."""
        oid = order.order_id
        del self._ids[oid]
        by_account = self._accounts[order.account]
        del by_account[oid]
        if not by_account:
            del self._accounts[order.account]

    def _pop_head(self, level: _Level, entry: _Entry) -> None:
        """Take the live head entry off its level."""
        level.queue.popleft()
        level.count -= 1
        level.size -= entry.remaining
        entry.live = False
        self._discard(entry.order)
        if not level.count:
            level.side.drop(level)

    def _drop_head(
        self, level: _Level, entry: _Entry, reason: Reason, removed: list[RemovedOrder]
    ) -> None:
        """Remove the live head entry without filling it, recording why."""
        order = entry.order
        removed.append(RemovedOrder(order.order_id, order.account, reason, entry.remaining))
        self._pop_head(level, entry)

    def _remove(self, entry: _Entry, reason: Reason) -> RemovedOrder:
        """Remove a live entry anywhere in its level (lazily, in O(1))."""
        level = entry.level
        order = entry.order
        record = RemovedOrder(order.order_id, order.account, reason, entry.remaining)
        entry.live = False
        level.count -= 1
        level.size -= entry.remaining
        self._discard(order)
        if not level.count:
            level.side.drop(level)
            return record
        level.dead += 1
        if level.dead > _COMPACT_MIN_DEAD and level.dead > level.count:
            level.queue = deque(e for e in level.queue if e.live)
            level.dead = 0
        return record

    def _best_live(
        self, side: _Side, time: int, removed: list[RemovedOrder], within: int | None = None
    ) -> int | None:
        """The best price of ``side`` after dropping expired orders met at its top.

        With ``within``, only prices at or better than ``within`` (for a taker
        with that limit) are looked at: None when no live order is there.
        """
        keys = side.keys
        while keys:
            price = keys[-1] if side.is_bid else -keys[-1]
            if within is not None and (price < within if side.is_bid else price > within):
                return None
            level = side.levels[price]
            queue = level.queue
            while level.count:
                entry = queue[0]
                if not entry.live:
                    queue.popleft()
                    level.dead -= 1
                elif entry.order.expiry <= time:
                    self._drop_head(level, entry, Reason.EXPIRED, removed)
                else:
                    return price
        return None

    # ---------------------------------------------------------------- placing

    def _place(
        self,
        order: Order,
        time: int,
        market_order: bool,
        check: CheckFill | None,
        position: PositionOf,
    ) -> PlaceResult:
        """Match a validated order, then rest, cancel or refuse its remainder."""
        is_buy = order.is_buy
        flags = order.flags
        if not flags & ~FLAG_POST_ONLY and not market_order:
            keys = (self._asks if is_buy else self._bids).keys
            if not keys or (-keys[-1] > order.price if is_buy else keys[-1] < order.price):
                self._rest(order, order.size)
                return PlaceResult(order.order_id, Status.RESTING, None, (), (), 0, order.size)
        removed: list[RemovedOrder] = []
        lot = self.spec.lot
        if flags & FLAG_REDUCE_ONLY and not _reducible(
            position(order.account, self.market), is_buy, lot
        ):
            return _refused(order, Reason.REDUCE_ONLY, removed)
        opposite = self._asks if is_buy else self._bids
        limit = order.price
        if flags & FLAG_POST_ONLY:
            if self._best_live(opposite, time, removed, limit) is not None:
                return _refused(order, Reason.POST_ONLY_WOULD_CROSS, removed)
        elif market_order:
            best = self._best_live(opposite, time, removed)
            if best is None:
                return _refused(order, Reason.NO_LIQUIDITY, removed)
            limit = self._protected_limit(order, best)
        if flags & FLAG_FOK and not self._fok_fillable(order, limit, time, position):
            return _refused(order, Reason.FOK_UNFILLABLE, removed)
        fills: list[Fill] = []
        remaining, stop = self._match(order, limit, time, check, position, fills, removed)
        return self._finish(order, remaining, stop, market_order, position, fills, removed)

    def _protected_limit(self, order: Order, best: int) -> int:
        """The worst price a market order may fill at: its own limit or the band around ``best``."""
        band = best * self.spec.protection_bps // BPS
        if order.is_buy:
            return min(order.price, best + band)
        return max(order.price, best - band)

    def _finish(
        self,
        order: Order,
        remaining: int,
        stop: Reason | None,
        market_order: bool,
        position: PositionOf,
        fills: list[Fill],
        removed: list[RemovedOrder],
    ) -> PlaceResult:
        """Decide the taker's final status once matching has stopped."""
        filled = order.size - remaining
        if not remaining:
            status, reason = Status.FILLED, None
        elif stop is not None:
            status, reason = Status.CANCELLED, stop
        elif market_order or order.flags & _IMMEDIATE:
            status, reason = Status.CANCELLED, Reason.IOC_REMAINDER
        elif order.flags & FLAG_REDUCE_ONLY and not _reducible(
            position(order.account, self.market), order.is_buy, self.spec.lot
        ):
            status, reason = Status.CANCELLED, Reason.REDUCE_ONLY
        else:
            self._rest(order, remaining)
            return PlaceResult(
                order.order_id,
                Status.RESTING,
                None,
                tuple(fills),
                tuple(removed),
                filled,
                remaining,
            )
        return PlaceResult(order.order_id, status, reason, tuple(fills), tuple(removed), filled, 0)

    def _rest(self, order: Order, remaining: int) -> None:
        """Append the order's remainder at the back of its price level."""
        side = self._bids if order.is_buy else self._asks
        level = side.levels.get(order.price)
        if level is None:
            level = side.level_for(order.price)
        entry = _Entry(order, remaining, level)
        level.queue.append(entry)
        level.size += remaining
        level.count += 1
        oid = order.order_id
        self._ids[oid] = entry
        by_account = self._accounts.get(order.account)
        if by_account is None:
            self._accounts[order.account] = {oid: entry}
        else:
            by_account[oid] = entry
        if order.expiry != GTC:
            self._registry.push_expiry(order.expiry, entry)

    def _fok_fillable(self, taker: Order, limit: int, time: int, position: PositionOf) -> bool:
        """Whether the book can fill all of ``taker`` within ``limit``, assuming every fill is accepted.

        Walks the makers the match would meet, without changing anything:
        expired and same-account makers are skipped (the match removes them),
        reduce-only makers count only up to what their (running) position allows.
        """
        need = taker.size
        lot = self.spec.lot
        if taker.flags & FLAG_REDUCE_ONLY:
            if _reducible(position(taker.account, self.market), taker.is_buy, lot) < need:
                return False
        side = self._asks if taker.is_buy else self._bids
        moved: dict[int, int] = {}
        for price in side.prices():
            if price > limit if taker.is_buy else price < limit:
                return False
            for entry in side.levels[price].queue:
                maker = entry.order
                if not entry.live or maker.expiry <= time or maker.account == taker.account:
                    continue
                take = min(need, entry.remaining)
                if maker.flags & FLAG_REDUCE_ONLY:
                    held = position(maker.account, self.market) + moved.get(maker.account, 0)
                    take = min(take, _reducible(held, maker.is_buy, lot))
                    moved[maker.account] = moved.get(maker.account, 0) + (
                        take if maker.is_buy else -take
                    )
                need -= take
                if not need:
                    return True
        return False

    def _match(
        self,
        taker: Order,
        limit: int,
        time: int,
        check: CheckFill | None,
        position: PositionOf,
        fills: list[Fill],
        removed: list[RemovedOrder],
    ) -> tuple[int, Reason | None]:
        """Fill ``taker`` against the opposite side up to ``limit``.

        Returns the unfilled size and, when matching was cut short, why
        (STF_REJECTED or REDUCE_ONLY); ``fills`` and ``removed`` are appended to.
        """
        remaining = taker.size
        is_buy = taker.is_buy
        side = self._asks if is_buy else self._bids
        keys, levels = side.keys, side.levels
        account, taker_id, market, lot = taker.account, taker.order_id, self.market, self.spec.lot
        taker_reduce_only = taker.flags & FLAG_REDUCE_ONLY
        while remaining and keys:
            if is_buy:
                price = -keys[-1]
                if price > limit:
                    break
            else:
                price = keys[-1]
                if price < limit:
                    break
            level = levels[price]
            queue = level.queue
            while remaining and level.count:
                entry = queue[0]
                if not entry.live:
                    queue.popleft()
                    level.dead -= 1
                    continue
                maker = entry.order
                if maker.expiry <= time:
                    self._drop_head(level, entry, Reason.EXPIRED, removed)
                    continue
                if maker.account == account:
                    self._drop_head(level, entry, Reason.SELF_TRADE, removed)
                    continue
                size = remaining if remaining < entry.remaining else entry.remaining
                if maker.flags & FLAG_REDUCE_ONLY:
                    cap = _reducible(position(maker.account, market), maker.is_buy, lot)
                    if not cap:
                        self._drop_head(level, entry, Reason.REDUCE_ONLY, removed)
                        continue
                    size = cap if cap < size else size
                if taker_reduce_only:
                    cap = _reducible(position(account, market), is_buy, lot)
                    if not cap:
                        return remaining, Reason.REDUCE_ONLY
                    size = cap if cap < size else size
                if check is not None:
                    verdict = check(maker, taker, price, size)
                    if verdict is not _ACCEPT:
                        if verdict is _REJECT_MAKER:
                            self._drop_head(level, entry, Reason.STF_REJECTED, removed)
                            continue
                        return remaining, Reason.STF_REJECTED
                fills.append(Fill(maker.order_id, taker_id, price, size))
                remaining -= size
                if size < entry.remaining:
                    entry.remaining -= size
                    level.size -= size
                else:
                    self._pop_head(level, entry)
        return remaining, None

    def _sweep_reduce_only(self, account: int, position: PositionOf) -> list[RemovedOrder]:
        """Remove the account's resting reduce-only orders here that can no longer reduce."""
        by_account = self._accounts.get(account, {})
        held = position(account, self.market)
        stale = [
            entry
            for entry in by_account.values()
            if entry.order.market == self.market
            and entry.order.flags & FLAG_REDUCE_ONLY
            and not _reducible(held, entry.order.is_buy, self.spec.lot)
        ]
        return [self._remove(entry, Reason.REDUCE_ONLY) for entry in stale]


def _refused(order: Order, reason: Reason, removed: Sequence[RemovedOrder] = ()) -> PlaceResult:
    """The result of an order refused before any fill."""
    return PlaceResult(order.order_id, Status.REFUSED, reason, (), tuple(removed), 0, 0)


def _invalid(order: Order, spec: MarketSpec, time: int, market_order: bool) -> Reason | None:
    """The first static reason to refuse ``order`` in a market with ``spec``, or None."""
    flags = order.flags
    if flags & ~FLAGS_DEFINED or (flags & FLAG_POST_ONLY and (market_order or flags & _IMMEDIATE)):
        return Reason.BAD_FLAGS
    price, size = order.price, order.size
    if not 0 < price < PRICE_LIMIT:
        return Reason.BAD_PRICE
    if price % spec.tick:
        return Reason.TICK_SIZE
    if not 0 < size < SIZE_LIMIT:
        return Reason.BAD_SIZE
    if size % spec.lot:
        return Reason.LOT_SIZE
    if order.expiry <= time:
        return Reason.EXPIRED
    return None


# --------------------------------------------------------------------- engine


class Engine:
    """The books of every market, with order validation and the shared indexes.

    ``check_fill(maker, taker, price, size)`` is asked about every candidate
    fill before it is applied (None accepts every fill). ``position(account,
    market)`` gives an account's signed position, including every fill
    accepted so far; it is consulted only for reduce-only orders. Both are
    plain attributes and may be replaced between calls.
    """

    def __init__(
        self,
        markets: Mapping[int, MarketSpec],
        *,
        check_fill: CheckFill | None = None,
        position: PositionOf = flat_position,
    ) -> None:
        for market, spec in markets.items():
            if spec.tick <= 0 or spec.lot <= 0 or spec.protection_bps < 0:
                raise ValueError(
                    f"market {market}: tick and lot must be positive, protection_bps >= 0"
                )
        self._registry = _Registry()
        self._ids = self._registry.ids
        self._books = {m: OrderBook(m, spec, self._registry) for m, spec in markets.items()}
        self.check_fill = check_fill
        self.position = position

    @staticmethod
    def from_params(
        params: Params,
        *,
        protection_bps: int = 500,
        check_fill: CheckFill | None = None,
        position: PositionOf = flat_position,
    ) -> Engine:
        """An engine for the markets of the STF's params leaf (market id = index)."""
        markets = {
            i: MarketSpec(m.tick, m.lot, protection_bps) for i, m in enumerate(params.markets)
        }
        return Engine(markets, check_fill=check_fill, position=position)

    # ---------------------------------------------------------------- commands

    def place(self, order: Order, time: int, *, market_order: bool = False) -> PlaceResult:
        """Place ``order`` at ``time``: validate, match, then rest or cancel the remainder.

        ``market_order`` makes it a market order: immediate-or-cancel, filling
        no worse than its own price nor than the market's protection band
        around the best opposite price at arrival.
        """
        if order.order_id in self._ids:
            return _refused(order, Reason.DUPLICATE_ID)
        book = self._books.get(order.market)
        if book is None:
            return _refused(order, Reason.UNKNOWN_MARKET)
        reason = _invalid(order, book.spec, time, market_order)
        if reason is not None:
            return _refused(order, reason)
        return book._place(order, time, market_order, self.check_fill, self.position)

    def cancel(self, order_id: OrderId) -> RemovedOrder | None:
        """Cancel a resting order; None when no such order rests."""
        entry = self._ids.get(order_id)
        if entry is None:
            return None
        return self._books[entry.order.market]._remove(entry, Reason.CANCELLED)

    def expire(self, time: int) -> tuple[RemovedOrder, ...]:
        """Remove every resting order with ``expiry <= time``, earliest expiry first."""
        heap = self._registry.expiries
        out = []
        while heap and heap[0][0] <= time:
            entry = heapq.heappop(heap)[2]
            if entry.live:
                out.append(self._books[entry.order.market]._remove(entry, Reason.EXPIRED))
        return tuple(out)

    def sweep_reduce_only(self, account: int, market: int) -> tuple[RemovedOrder, ...]:
        """Remove the account's resting reduce-only orders in ``market`` that can no longer reduce.

        Such orders are also removed lazily when matching meets them; call this
        after the account's position changed outside the engine (liquidation,
        deleveraging, settlement) to take them out of the book at once.
        """
        return tuple(self._books[market]._sweep_reduce_only(account, self.position))

    # ---------------------------------------------------------------- queries

    @property
    def markets(self) -> tuple[int, ...]:
        """The market ids, ascending."""
        return tuple(sorted(self._books))

    def book(self, market: int) -> OrderBook:
        """The book of ``market`` (KeyError when unknown)."""
        return self._books[market]

    def best_bid(self, market: int) -> Level | None:
        """The best bid of ``market``, or None."""
        return self._books[market].best_bid()

    def best_ask(self, market: int) -> Level | None:
        """The best ask of ``market``, or None."""
        return self._books[market].best_ask()

    def depth(self, market: int, n: int = 10) -> Depth:
        """The top ``n`` levels of each side of ``market``."""
        return self._books[market].depth(n)

    def order(self, order_id: OrderId) -> OpenOrder | None:
        """A resting order by id, or None."""
        entry = self._registry.ids.get(order_id)
        return None if entry is None else OpenOrder(entry.order, entry.remaining)

    def open_orders(self, account: int, market: int | None = None) -> list[OpenOrder]:
        """The account's resting orders (optionally in one market), oldest first."""
        entries = self._registry.accounts.get(account, {}).values()
        return [
            OpenOrder(e.order, e.remaining)
            for e in entries
            if market is None or e.order.market == market
        ]

    def __len__(self) -> int:
        """The number of resting orders across all markets."""
        return len(self._registry.ids)
