"""A naive reference matching engine: one flat list of resting orders.

It implements the semantics of docs/matching.md as directly as possible:
every decision rescans and re-sorts the list, nothing is indexed, nothing is
deleted lazily. The property tests drive it and :class:`sequencer.book.Engine`
with the same operations and compare everything they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sequencer.orders import (
    FLAG_FOK,
    FLAG_IOC,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    FLAGS_DEFINED,
    CheckFill,
    Fill,
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


@dataclass
class _Resting:
    order: Order
    remaining: int
    seq: int


def _reducible(position: int, is_buy: bool, lot: int) -> int:
    cap = -position if is_buy else position
    return max(cap, 0) // lot * lot


class ModelEngine:
    """The reference: same constructor and commands as ``Engine``, list-based."""

    def __init__(
        self,
        markets: Mapping[int, MarketSpec],
        check_fill: CheckFill | None,
        position: PositionOf,
    ) -> None:
        self.specs = dict(markets)
        self.check_fill = check_fill
        self.position = position
        self.resting: list[_Resting] = []
        self.seq = 0

    # ------------------------------------------------------------ queries

    def side(self, market: int, is_buy: bool) -> list[_Resting]:
        """Resting orders of one side, best first, then oldest first."""
        mine = [r for r in self.resting if r.order.market == market and r.order.is_buy == is_buy]
        return sorted(mine, key=lambda r: (-r.order.price if is_buy else r.order.price, r.seq))

    def orders(self, market: int, is_buy: bool) -> list[OpenOrder]:
        """Resting orders of one side as the engine reports them."""
        return [OpenOrder(r.order, r.remaining) for r in self.side(market, is_buy)]

    # ------------------------------------------------------------ commands

    def _remove(self, r: _Resting, reason: Reason, removed: list[RemovedOrder]) -> None:
        self.resting.remove(r)
        removed.append(RemovedOrder(r.order.order_id, r.order.account, reason, r.remaining))

    def cancel(self, order_id: OrderId) -> RemovedOrder | None:
        out: list[RemovedOrder] = []
        for r in self.resting:
            if r.order.order_id == order_id:
                self._remove(r, Reason.CANCELLED, out)
                return out[0]
        return None

    def expire(self, time: int) -> tuple[RemovedOrder, ...]:
        due = sorted(
            (r for r in self.resting if r.order.expiry <= time),
            key=lambda r: (r.order.expiry, r.seq),
        )
        out: list[RemovedOrder] = []
        for r in due:
            self._remove(r, Reason.EXPIRED, out)
        return tuple(out)

    def _static_reason(self, order: Order, time: int, market_order: bool) -> Reason | None:
        if any(r.order.order_id == order.order_id for r in self.resting):
            return Reason.DUPLICATE_ID
        spec = self.specs.get(order.market)
        if spec is None:
            return Reason.UNKNOWN_MARKET
        f = order.flags
        if f & ~FLAGS_DEFINED or (
            f & FLAG_POST_ONLY and (market_order or f & (FLAG_IOC | FLAG_FOK))
        ):
            return Reason.BAD_FLAGS
        checks = [
            (not 0 < order.price < PRICE_LIMIT, Reason.BAD_PRICE),
            (order.price % spec.tick != 0, Reason.TICK_SIZE),
            (not 0 < order.size < SIZE_LIMIT, Reason.BAD_SIZE),
            (order.size % spec.lot != 0, Reason.LOT_SIZE),
            (order.expiry <= time, Reason.EXPIRED),
        ]
        return next((reason for failed, reason in checks if failed), None)

    def _top_live(
        self, order: Order, time: int, removed: list[RemovedOrder], within: int | None = None
    ) -> int | None:
        for r in self.side(order.market, not order.is_buy):
            if within is not None and (
                (r.order.price > within) if order.is_buy else (r.order.price < within)
            ):
                return None
            if r.order.expiry > time:
                return r.order.price
            self._remove(r, Reason.EXPIRED, removed)
        return None

    def _fok_ok(self, order: Order, limit: int, time: int) -> bool:
        lot = self.specs[order.market].lot
        if order.flags & FLAG_REDUCE_ONLY:
            if (
                _reducible(self.position(order.account, order.market), order.is_buy, lot)
                < order.size
            ):
                return False
        need = order.size
        moved: dict[int, int] = {}
        for r in self.side(order.market, not order.is_buy):
            m = r.order
            if (m.price > limit) if order.is_buy else (m.price < limit):
                break
            if m.expiry <= time or m.account == order.account:
                continue
            take = min(need, r.remaining)
            if m.flags & FLAG_REDUCE_ONLY:
                held = self.position(m.account, m.market) + moved.get(m.account, 0)
                take = min(take, _reducible(held, m.is_buy, lot))
                moved[m.account] = moved.get(m.account, 0) + (take if m.is_buy else -take)
            need -= take
            if need == 0:
                return True
        return False

    def place(self, order: Order, time: int, *, market_order: bool = False) -> PlaceResult:
        removed: list[RemovedOrder] = []

        def refused(reason: Reason) -> PlaceResult:
            return PlaceResult(order.order_id, Status.REFUSED, reason, (), tuple(removed), 0, 0)

        reason = self._static_reason(order, time, market_order)
        if reason is not None:
            return refused(reason)
        spec = self.specs[order.market]
        if order.flags & FLAG_REDUCE_ONLY and not _reducible(
            self.position(order.account, order.market), order.is_buy, spec.lot
        ):
            return refused(Reason.REDUCE_ONLY)
        limit = order.price
        if order.flags & FLAG_POST_ONLY:
            if self._top_live(order, time, removed, limit) is not None:
                return refused(Reason.POST_ONLY_WOULD_CROSS)
        elif market_order:
            top = self._top_live(order, time, removed)
            if top is None:
                return refused(Reason.NO_LIQUIDITY)
            band = top * spec.protection_bps // BPS
            limit = min(limit, top + band) if order.is_buy else max(limit, top - band)
        if order.flags & FLAG_FOK and not self._fok_ok(order, limit, time):
            return refused(Reason.FOK_UNFILLABLE)
        fills: list[Fill] = []
        remaining, stop = self._match(order, limit, time, fills, removed)
        return self._finish(order, remaining, stop, market_order, fills, removed)

    def _match(
        self, order: Order, limit: int, time: int, fills: list[Fill], removed: list[RemovedOrder]
    ) -> tuple[int, Reason | None]:
        lot = self.specs[order.market].lot
        remaining = order.size
        while remaining:
            candidates = [
                r
                for r in self.side(order.market, not order.is_buy)
                if ((r.order.price <= limit) if order.is_buy else (r.order.price >= limit))
            ]
            if not candidates:
                break
            r = candidates[0]
            m = r.order
            if m.expiry <= time:
                self._remove(r, Reason.EXPIRED, removed)
                continue
            if m.account == order.account:
                self._remove(r, Reason.SELF_TRADE, removed)
                continue
            size = min(remaining, r.remaining)
            if m.flags & FLAG_REDUCE_ONLY:
                cap = _reducible(self.position(m.account, m.market), m.is_buy, lot)
                if cap == 0:
                    self._remove(r, Reason.REDUCE_ONLY, removed)
                    continue
                size = min(size, cap)
            if order.flags & FLAG_REDUCE_ONLY:
                cap = _reducible(self.position(order.account, order.market), order.is_buy, lot)
                if cap == 0:
                    return remaining, Reason.REDUCE_ONLY
                size = min(size, cap)
            verdict = Verdict.ACCEPT
            if self.check_fill is not None:
                verdict = self.check_fill(m, order, m.price, size)
            if verdict is Verdict.REJECT_MAKER:
                self._remove(r, Reason.STF_REJECTED, removed)
                continue
            if verdict is Verdict.REJECT_TAKER:
                return remaining, Reason.STF_REJECTED
            fills.append(Fill(m.order_id, order.order_id, m.price, size))
            remaining -= size
            r.remaining -= size
            if r.remaining == 0:
                self.resting.remove(r)
        return remaining, None

    def _finish(
        self,
        order: Order,
        remaining: int,
        stop: Reason | None,
        market_order: bool,
        fills: list[Fill],
        removed: list[RemovedOrder],
    ) -> PlaceResult:
        filled = order.size - remaining
        lot = self.specs[order.market].lot
        status, reason, resting = Status.CANCELLED, stop, 0
        if remaining == 0:
            status, reason = Status.FILLED, None
        elif stop is not None:
            pass
        elif market_order or order.flags & (FLAG_IOC | FLAG_FOK):
            reason = Reason.IOC_REMAINDER
        elif order.flags & FLAG_REDUCE_ONLY and not _reducible(
            self.position(order.account, order.market), order.is_buy, lot
        ):
            reason = Reason.REDUCE_ONLY
        else:
            self.seq += 1
            self.resting.append(_Resting(order, remaining, self.seq))
            status, resting = Status.RESTING, remaining
        return PlaceResult(
            order.order_id, status, reason, tuple(fills), tuple(removed), filled, resting
        )


class FakeStf:
    """Stands in for the STF: positions per (account, market) and scripted verdicts.

    Verdicts are taken from ``verdicts`` in call order, cycling (all ACCEPT
    when empty); an accepted fill moves both accounts' positions, as the STF
    applying the trade would. Every call is recorded in ``calls``.
    """

    def __init__(
        self,
        positions: Mapping[tuple[int, int], int] | None = None,
        verdicts: tuple[Verdict, ...] = (),
    ) -> None:
        self.positions = dict(positions or {})
        self.verdicts = verdicts
        self.calls: list[tuple[OrderId, OrderId, int, int]] = []

    def position(self, account: int, market: int) -> int:
        """The account's signed position in ``market``."""
        return self.positions.get((account, market), 0)

    def check_fill(self, maker: Order, taker: Order, price: int, size: int) -> Verdict:
        """Record the call, pick the next verdict, apply the fill when accepted."""
        verdict = (
            self.verdicts[len(self.calls) % len(self.verdicts)] if self.verdicts else Verdict.ACCEPT
        )
        self.calls.append((maker.order_id, taker.order_id, price, size))
        if verdict is Verdict.ACCEPT:
            signed = size if taker.is_buy else -size
            key_t, key_m = (taker.account, taker.market), (maker.account, maker.market)
            self.positions[key_t] = self.positions.get(key_t, 0) + signed
            self.positions[key_m] = self.positions.get(key_m, 0) - signed
        return verdict
