"""Tests of the matching engine (sequencer/book.py, docs/matching.md)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from sequencer.book import Engine, OrderBook
from sequencer.book_bench import bench_match_ops
from sequencer.orders import (
    FLAG_FOK,
    FLAG_IOC,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    GTC,
    Depth,
    Fill,
    Level,
    MarketSpec,
    OpenOrder,
    Order,
    OrderId,
    PlaceResult,
    Reason,
    RemovedOrder,
    Status,
    Verdict,
)
from state.layout import Config, Market, Params
from state.txs import OrderBody
from tests.sequencer.model import FakeStf, ModelEngine

PO, RO, IOC, FOK = FLAG_POST_ONLY, FLAG_REDUCE_ONLY, FLAG_IOC, FLAG_FOK
SPECS = {0: MarketSpec(tick=10, lot=5, protection_bps=100), 1: MarketSpec(tick=1, lot=1)}
T = 1_000  # the time every test places at unless it says otherwise

A = Verdict.ACCEPT
RM = Verdict.REJECT_MAKER
RT = Verdict.REJECT_TAKER


def engine(stf: FakeStf | None = None) -> tuple[Engine, FakeStf]:
    """An engine over SPECS wired to a fake STF."""
    stf = stf or FakeStf()
    return Engine(SPECS, check_fill=stf.check_fill, position=stf.position), stf


def buy(oid: int, price: int, size: int, account: int = 1, **kw: int) -> Order:
    """A buy in market 0 (tick 10, lot 5)."""
    return Order(oid, account, 0, True, price, size, kw.get("flags", 0), kw.get("expiry", GTC))


def sell(oid: int, price: int, size: int, account: int = 2, **kw: int) -> Order:
    """A sell in market 0 (tick 10, lot 5)."""
    return Order(oid, account, 0, False, price, size, kw.get("flags", 0), kw.get("expiry", GTC))


def ids(e: Engine, is_buy: bool, market: int = 0) -> list[tuple[object, int]]:
    """(order id, remaining) of one side, in priority order."""
    return [(o.order.order_id, o.remaining) for o in e.book(market).orders(is_buy)]


# ------------------------------------------------------------------ limit, priority


def test_limit_orders_rest_and_aggregate() -> None:
    e, _ = engine()
    for oid, price in ((1, 1000), (2, 1000), (3, 990)):
        r = e.place(buy(oid, price, 10), T)
        assert (r.status, r.reason, r.filled, r.resting, r.fills) == (
            Status.RESTING,
            None,
            0,
            10,
            (),
        )
    e.place(sell(4, 1020, 5), T)
    assert e.best_bid(0) == Level(1000, 20, 2)
    assert e.best_ask(0) == Level(1020, 5, 1)
    depth = e.depth(0, 1)
    assert depth.bids == (Level(1000, 20, 2),) and depth.asks == (Level(1020, 5, 1),)
    assert e.depth(0).bids == (Level(1000, 20, 2), Level(990, 10, 1))
    assert e.depth(0, 2).bids == e.depth(0, 3).bids == e.depth(0).bids
    assert e.depth(0, 0) == Depth((), ())
    assert e.best_bid(1) is None and e.best_ask(1) is None
    assert len(e) == 4


def test_price_then_time_priority_and_maker_price() -> None:
    e, _ = engine()
    e.place(sell(1, 1010, 5), T)
    e.place(sell(2, 1000, 5), T)
    e.place(sell(3, 1000, 5, account=3), T)
    e.place(sell(4, 990, 5), T)
    r = e.place(buy(5, 1010, 20), T)
    assert r.status is Status.FILLED and r.filled == 20
    assert r.fills == (
        Fill(4, 5, 990, 5),
        Fill(2, 5, 1000, 5),
        Fill(3, 5, 1000, 5),
        Fill(1, 5, 1010, 5),
    )
    assert len(e) == 0


def test_partial_fills_on_both_sides() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 15), T)
    r = e.place(buy(2, 1000, 5), T)
    assert r.status is Status.FILLED
    assert ids(e, False) == [(1, 10)]
    r = e.place(buy(3, 1010, 25), T)
    assert (r.status, r.filled, r.resting) == (Status.RESTING, 10, 15)
    assert r.fills == (Fill(1, 3, 1000, 10),)
    assert ids(e, True) == [(3, 15)] and ids(e, False) == []
    assert e.order(3) == OpenOrder(buy(3, 1010, 25), 15)


def test_sell_taker_walks_bids_down() -> None:
    e, _ = engine()
    e.place(buy(1, 1000, 5), T)
    e.place(buy(2, 990, 5), T)
    e.place(buy(3, 980, 5), T)
    r = e.place(sell(4, 990, 15), T)
    assert r.fills == (Fill(1, 4, 1000, 5), Fill(2, 4, 990, 5))
    assert (r.status, r.resting) == (Status.RESTING, 5)
    assert e.best_ask(0) == Level(990, 5, 1) and e.best_bid(0) == Level(980, 5, 1)


# ------------------------------------------------------------------ IOC, FOK, market


def test_ioc_never_rests() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5), T)
    r = e.place(buy(2, 1000, 10, flags=IOC), T)
    assert (r.status, r.reason, r.filled, r.resting) == (
        Status.CANCELLED,
        Reason.IOC_REMAINDER,
        5,
        0,
    )
    r = e.place(buy(3, 1000, 10, flags=IOC), T)
    assert (r.status, r.reason, r.filled) == (Status.CANCELLED, Reason.IOC_REMAINDER, 0)
    assert len(e) == 0


def test_fok_all_or_nothing() -> None:
    e, stf = engine()
    e.place(sell(1, 1000, 5), T)
    e.place(sell(2, 1010, 5), T)
    e.place(sell(3, 1020, 5), T)
    r = e.place(buy(4, 1010, 15, flags=FOK), T)
    assert (r.status, r.reason, r.fills) == (Status.REFUSED, Reason.FOK_UNFILLABLE, ())
    assert stf.calls == [] and ids(e, False) == [(1, 5), (2, 5), (3, 5)]
    r = e.place(buy(5, 1020, 15, flags=FOK), T)
    assert r.status is Status.FILLED and [f.maker_id for f in r.fills] == [1, 2, 3]


def test_fok_counts_neither_own_nor_expired_makers() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5, account=1), T)
    e.place(sell(2, 1000, 5, expiry=T + 5), T)
    e.place(sell(3, 1000, 5), T)
    r = e.place(buy(4, 1000, 10, account=1, flags=FOK), T + 5)
    assert r.reason is Reason.FOK_UNFILLABLE and r.removed == ()
    assert ids(e, False) == [(1, 5), (2, 5), (3, 5)]
    r = e.place(buy(5, 1000, 5, account=1, flags=FOK), T + 5)
    assert r.status is Status.FILLED and r.fills == (Fill(3, 5, 1000, 5),)
    assert [(x.order_id, x.reason) for x in r.removed] == [
        (1, Reason.SELF_TRADE),
        (2, Reason.EXPIRED),
    ]


def test_fok_counts_reduce_only_makers_up_to_their_position() -> None:
    e, _ = engine(FakeStf({(2, 0): 5}))
    e.place(sell(1, 1000, 10, flags=RO), T)
    e.place(sell(2, 1010, 10, flags=RO), T)
    assert e.place(buy(3, 1010, 10, flags=FOK), T).reason is Reason.FOK_UNFILLABLE
    r = e.place(buy(4, 1010, 5, flags=FOK), T)
    assert r.status is Status.FILLED and r.fills == (Fill(1, 4, 1000, 5),)


def test_fok_refused_when_stf_rejects_after_precheck_keeps_accepted_fills() -> None:
    e, _ = engine(FakeStf(verdicts=(A, RM)))
    e.place(sell(1, 1000, 5), T)
    e.place(sell(2, 1000, 5), T)
    r = e.place(buy(3, 1000, 10, flags=FOK), T)
    assert (r.status, r.reason, r.filled) == (Status.CANCELLED, Reason.IOC_REMAINDER, 5)
    assert r.removed == (RemovedOrder(2, 2, Reason.STF_REJECTED, 5),)


def test_market_order_is_bounded_by_the_protection_band() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5), T)
    e.place(sell(2, 1010, 5), T)  # within 1% of 1000
    e.place(sell(3, 1020, 5), T)  # beyond it
    r = e.place(buy(4, 10_000, 15), T, market_order=True)
    assert [f.price for f in r.fills] == [1000, 1010]
    assert (r.status, r.reason, r.filled) == (Status.CANCELLED, Reason.IOC_REMAINDER, 10)
    assert ids(e, False) == [(3, 5)]


def test_market_order_respects_its_signed_price_and_needs_liquidity() -> None:
    e, _ = engine()
    r = e.place(buy(1, 10_000, 5), T, market_order=True)
    assert (r.status, r.reason) == (Status.REFUSED, Reason.NO_LIQUIDITY)
    e.place(buy(2, 1000, 5), T)
    e.place(buy(3, 990, 5), T)
    r = e.place(sell(4, 1000, 10), T, market_order=True)
    assert r.fills == (Fill(2, 4, 1000, 5),) and r.reason is Reason.IOC_REMAINDER
    assert ids(e, True) == [(3, 5)]


def test_market_fok() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5), T)
    e.place(sell(2, 1020, 5), T)
    r = e.place(buy(3, 10_000, 10, flags=FOK), T, market_order=True)
    assert r.reason is Reason.FOK_UNFILLABLE
    assert e.place(buy(4, 10_000, 5, flags=FOK), T, market_order=True).status is Status.FILLED


# ------------------------------------------------------------------ post-only


def test_post_only_refused_if_it_would_cross() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5), T)
    r = e.place(buy(2, 1000, 5, flags=PO), T)
    assert (r.status, r.reason) == (Status.REFUSED, Reason.POST_ONLY_WOULD_CROSS)
    r = e.place(buy(3, 990, 5, flags=PO), T)
    assert r.status is Status.RESTING
    r = e.place(sell(4, 990, 5, account=3, flags=PO), T)
    assert r.reason is Reason.POST_ONLY_WOULD_CROSS
    assert ids(e, True) == [(3, 5)] and ids(e, False) == [(1, 5)]


def test_post_only_drops_expired_orders_it_would_have_crossed() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5, expiry=T + 1), T)
    r = e.place(buy(2, 1000, 5, flags=PO), T + 1)
    assert r.status is Status.RESTING
    assert r.removed == (RemovedOrder(1, 2, Reason.EXPIRED, 5),)


def test_post_only_leaves_non_crossing_expired_orders_alone() -> None:
    e, _ = engine()
    e.place(sell(1, 1010, 5, expiry=T + 1), T)
    r = e.place(buy(2, 1000, 5, flags=PO), T + 1)
    assert (r.status, r.removed) == (Status.RESTING, ())
    assert ids(e, False) == [(1, 5)]


def test_post_only_maker_is_filled_normally() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5, flags=PO), T)
    assert e.place(buy(2, 1000, 5), T).fills == (Fill(1, 2, 1000, 5),)


# ------------------------------------------------------------------ reduce-only


def test_reduce_only_refused_when_it_cannot_reduce() -> None:
    e, _ = engine(FakeStf({(1, 0): 10, (3, 0): -10}))
    assert e.place(sell(1, 1000, 5, account=4, flags=RO), T).reason is Reason.REDUCE_ONLY
    assert e.place(buy(2, 1000, 5, account=1, flags=RO), T).reason is Reason.REDUCE_ONLY
    assert e.place(sell(3, 1000, 5, account=3, flags=RO), T).reason is Reason.REDUCE_ONLY
    assert e.place(sell(4, 1000, 5, account=1, flags=RO), T).status is Status.RESTING


def test_reduce_only_taker_is_capped_at_its_position() -> None:
    e, stf = engine(FakeStf({(1, 0): -10}))
    e.place(sell(1, 1000, 25), T)
    r = e.place(buy(2, 1000, 20, account=1, flags=RO), T)
    assert r.fills == (Fill(1, 2, 1000, 10),)
    assert (r.status, r.reason, r.filled) == (Status.CANCELLED, Reason.REDUCE_ONLY, 10)
    assert stf.position(1, 0) == 0 and ids(e, False) == [(1, 15)]


def test_reduce_only_limit_remainder_rests_while_it_can_reduce() -> None:
    e, _ = engine(FakeStf({(1, 0): -20}))
    e.place(sell(1, 1000, 5), T)
    r = e.place(buy(2, 1000, 10, account=1, flags=RO), T)
    assert (r.status, r.filled, r.resting) == (Status.RESTING, 5, 5)


def test_resting_reduce_only_maker_capped_then_removed() -> None:
    e, stf = engine(FakeStf({(2, 0): 10}))
    e.place(sell(1, 1000, 20, flags=RO), T)
    e.place(sell(2, 1000, 20, account=3), T)
    r = e.place(buy(3, 1000, 25), T)
    assert r.fills == (Fill(1, 3, 1000, 10), Fill(2, 3, 1000, 15))
    assert r.removed == (RemovedOrder(1, 2, Reason.REDUCE_ONLY, 10),)
    assert stf.position(2, 0) == 0


def test_sweep_reduce_only() -> None:
    e, stf = engine(FakeStf({(2, 0): 10}))
    e.place(sell(1, 1000, 10, flags=RO), T)
    e.place(sell(2, 1010, 10), T)
    assert e.sweep_reduce_only(2, 0) == ()
    stf.positions[(2, 0)] = 0
    assert e.sweep_reduce_only(2, 0) == (RemovedOrder(1, 2, Reason.REDUCE_ONLY, 10),)
    assert ids(e, False) == [(2, 10)]


# ------------------------------------------------------------------ expiry


def test_expiry_bounds() -> None:
    e, _ = engine()
    assert e.place(buy(1, 1000, 5, expiry=T), T).reason is Reason.EXPIRED
    assert e.place(buy(2, 1000, 5, expiry=T + 1), T).status is Status.RESTING
    r = e.place(sell(3, 1000, 5), T)  # fillable while time < expiry
    assert r.fills == (Fill(2, 3, 1000, 5),)


def test_expired_makers_dropped_lazily_when_met() -> None:
    e, _ = engine()
    e.place(sell(1, 1000, 5, expiry=T + 10), T)
    e.place(sell(2, 1010, 5), T)
    assert e.best_ask(0) == Level(1000, 5, 1)  # still there until met
    r = e.place(buy(3, 1010, 5), T + 10)
    assert r.removed == (RemovedOrder(1, 2, Reason.EXPIRED, 5),)
    assert r.fills == (Fill(2, 3, 1010, 5),)


def test_expire_sweep() -> None:
    e, _ = engine()
    e.place(buy(1, 1000, 5, expiry=T + 20), T)
    e.place(buy(2, 990, 5, expiry=T + 10), T)
    e.place(buy(3, 980, 5), T)
    e.place(sell(4, 1010, 5, expiry=T + 10), T)
    e.cancel(4)
    assert e.expire(T + 9) == ()
    assert e.expire(T + 10) == (RemovedOrder(2, 1, Reason.EXPIRED, 5),)
    assert e.expire(T + 100) == (RemovedOrder(1, 1, Reason.EXPIRED, 5),)
    assert ids(e, True) == [(3, 5)]


# ------------------------------------------------------------------ self-trade


def test_self_trade_cancels_the_resting_order() -> None:
    e, stf = engine()
    e.place(sell(1, 1000, 5, account=1), T)
    e.place(sell(2, 1000, 5, account=2), T)
    r = e.place(buy(3, 1000, 10, account=1), T)
    assert r.removed == (RemovedOrder(1, 1, Reason.SELF_TRADE, 5),)
    assert r.fills == (Fill(2, 3, 1000, 5),)
    assert (r.status, r.resting) == (Status.RESTING, 5)
    assert all(call[0] != 1 for call in stf.calls)


# ------------------------------------------------------------------ refusals


def test_static_refusals() -> None:
    e, _ = engine()
    cases = [
        (buy(1, 1005, 5), Reason.TICK_SIZE),
        (buy(2, 1000, 7), Reason.LOT_SIZE),
        (buy(3, 0, 5), Reason.BAD_PRICE),
        (buy(4, 1 << 48, 5), Reason.BAD_PRICE),
        (buy(5, 1000, 0), Reason.BAD_SIZE),
        (buy(6, 1000, 1 << 40), Reason.BAD_SIZE),
        (buy(7, 1000, 5, flags=0x10), Reason.BAD_FLAGS),
        (buy(8, 1000, 5, flags=PO | IOC), Reason.BAD_FLAGS),
        (buy(9, 1000, 5, flags=PO | FOK), Reason.BAD_FLAGS),
        (Order(10, 1, 7, True, 1000, 5), Reason.UNKNOWN_MARKET),
    ]
    for order, reason in cases:
        r = e.place(order, T)
        assert (r.status, r.reason, r.filled, r.fills) == (Status.REFUSED, reason, 0, ())
    assert e.place(buy(11, 1000, 5, flags=PO), T, market_order=True).reason is Reason.BAD_FLAGS
    assert e.place(buy(12, 1000, 5), T).status is Status.RESTING
    assert e.place(sell(12, 1100, 5), T).reason is Reason.DUPLICATE_ID
    assert len(e) == 1


def test_engine_rejects_bad_market_specs() -> None:
    for spec in (MarketSpec(0, 1), MarketSpec(1, 0), MarketSpec(1, 1, -1)):
        try:
            Engine({0: spec})
        except ValueError:
            continue
        raise AssertionError(f"{spec} accepted")


# ------------------------------------------------------------------ cancel, queries


def test_cancel() -> None:
    e, _ = engine()
    e.place(buy(1, 1000, 5), T)
    e.place(buy(2, 1000, 10), T)
    e.place(buy(3, 1000, 15), T)
    assert e.cancel(2) == RemovedOrder(2, 1, Reason.CANCELLED, 10)
    assert e.cancel(2) is None and e.cancel(99) is None
    assert e.best_bid(0) == Level(1000, 20, 2)
    r = e.place(sell(4, 1000, 20), T)
    assert r.fills == (Fill(1, 4, 1000, 5), Fill(3, 4, 1000, 15))
    assert e.best_bid(0) is None
    e.place(buy(2, 1000, 5), T)  # an id can be reused once it left the book
    assert e.cancel(2) is not None and len(e) == 0


def test_many_cancels_in_one_level_keep_fifo_order() -> None:
    e, _ = engine()
    left = list(range(100))
    for oid in left:
        e.place(sell(oid, 1000, 5, account=2 + oid % 3), T)
    for oid in range(1, 99):
        if oid % 7:
            e.cancel(oid)
            left.remove(oid)
            assert [i for i, _ in ids(e, False)] == left
    assert e.best_ask(0) == Level(1000, 5 * len(left), len(left))
    r = e.place(buy(500, 1000, 5 * len(left)), T)
    assert [f.maker_id for f in r.fills] == left


def test_expire_after_many_stale_expiry_items() -> None:
    e, _ = engine()
    for oid in range(3):
        e.place(buy(oid, 900, 5, expiry=T + 50 + oid), T)
    for oid in range(100, 1300):
        e.place(sell(oid, 1100, 5, expiry=T + 10), T)
        e.cancel(oid)
    e.place(buy(3, 900, 5, expiry=T + 60), T)
    assert [r.order_id for r in e.expire(T + 100)] == [0, 1, 2, 3]
    assert len(e) == 0


def test_open_orders_and_lookup() -> None:
    e, _ = engine()
    e.place(buy(1, 1000, 5), T)
    e.place(Order(2, 1, 1, False, 77, 3), T)
    e.place(sell(3, 1100, 5), T)
    assert [o.order.order_id for o in e.open_orders(1)] == [1, 2]
    assert [o.order.order_id for o in e.open_orders(1, market=1)] == [2]
    assert e.open_orders(9) == []
    assert e.order(2) == OpenOrder(Order(2, 1, 1, False, 77, 3), 3)
    assert e.order(4) is None
    assert e.markets == (0, 1)


def test_bytes_ids_and_from_body() -> None:
    e, _ = engine()
    body = OrderBody(
        account=1, market=0, is_buy=True, flags=0, price=1000, size=5, expiry=GTC, salt=9
    )
    order = Order.from_body(b"\x01" * 32, body)
    assert e.place(order, T).status is Status.RESTING
    assert e.order(b"\x01" * 32) == OpenOrder(order, 5)


def test_from_params() -> None:
    market = Market(
        kind=1,
        underlying=0,
        im_bps=500,
        mm_bps=300,
        tick=10,
        lot=5,
        strike=0,
        expiry=0,
        size_decimals=3,
    )
    params = Params(Config(5, 2, 100, 50, 100, 10, 60), (market,))
    e = Engine.from_params(params)
    assert e.markets == (0,)
    assert e.place(buy(1, 1005, 5), T).reason is Reason.TICK_SIZE
    assert e.place(buy(2, 1000, 5), T).status is Status.RESTING


# ------------------------------------------------------------------ verdict protocol


def test_reject_maker_removes_it_and_matching_continues() -> None:
    e, stf = engine(FakeStf(verdicts=(RM, A)))
    e.place(sell(1, 1000, 5), T)
    e.place(sell(2, 1000, 5, account=3), T)
    r = e.place(buy(3, 1000, 5), T)
    assert stf.calls == [(1, 3, 1000, 5), (2, 3, 1000, 5)]
    assert r.removed == (RemovedOrder(1, 2, Reason.STF_REJECTED, 5),)
    assert r.fills == (Fill(2, 3, 1000, 5),) and r.status is Status.FILLED
    assert len(e) == 0


def test_reject_taker_stops_and_remainder_does_not_rest() -> None:
    e, stf = engine(FakeStf(verdicts=(A, RT)))
    e.place(sell(1, 1000, 5), T)
    e.place(sell(2, 1000, 5, account=3), T)
    r = e.place(buy(3, 1000, 15), T)
    assert r.fills == (Fill(1, 3, 1000, 5),)
    assert (r.status, r.reason, r.filled, r.resting) == (
        Status.CANCELLED,
        Reason.STF_REJECTED,
        5,
        0,
    )
    assert ids(e, False) == [(2, 5)] and ids(e, True) == []
    assert stf.positions == {(1, 0): 5, (2, 0): -5}


def test_rejected_fills_do_not_change_the_book() -> None:
    e, _ = engine(FakeStf(verdicts=(RT,)))
    e.place(sell(1, 1000, 5), T)
    r = e.place(buy(2, 1000, 5), T)
    assert (r.status, r.reason, r.filled, r.fills) == (Status.CANCELLED, Reason.STF_REJECTED, 0, ())
    assert ids(e, False) == [(1, 5)] and e.best_ask(0) == Level(1000, 5, 1)


def test_without_a_callback_every_fill_is_accepted() -> None:
    e = Engine(SPECS)
    e.place(sell(1, 1000, 5), T)
    assert e.place(buy(2, 1000, 5), T).fills == (Fill(1, 2, 1000, 5),)
    assert e.place(buy(3, 1000, 5, flags=RO), T).reason is Reason.REDUCE_ONLY


def test_results_are_values() -> None:
    """Equal fields, equal and equally hashed results (their __init__ is written out)."""
    fill, removed = Fill(1, b"t", 1000, 5), RemovedOrder(2, 3, Reason.EXPIRED, 10)
    result = PlaceResult(7, Status.CANCELLED, Reason.IOC_REMAINDER, (fill,), (removed,), 5, 0)
    assert fill == Fill(1, b"t", 1000, 5) and hash(fill) == hash(Fill(1, b"t", 1000, 5))
    assert removed == RemovedOrder(2, 3, Reason.EXPIRED, 10)
    assert result == PlaceResult(
        7, Status.CANCELLED, Reason.IOC_REMAINDER, (fill,), (removed,), 5, 0
    )
    assert hash(result) == hash(PlaceResult(7, Status.CANCELLED, Reason.IOC_REMAINDER, (fill,), (removed,), 5, 0))
    assert result != PlaceResult(7, Status.CANCELLED, Reason.IOC_REMAINDER, (fill,), (removed,), 4, 0)


def test_bench_smoke() -> None:
    assert bench_match_ops(2_000, repeat=1) > 0


# ------------------------------------------------------------------ property test


@dataclass(frozen=True)
class PlaceOp:
    """Place an order; ``variant`` 0 makes it a market order, 19 puts it off the grid."""

    account: int
    market: int
    is_buy: bool
    ticks: int
    lots: int
    flags: int
    expires_in: int | None
    variant: int

    def order(self, oid: int, now: int) -> Order:
        """The order this op places at ``now``."""
        spec = SPECS.get(self.market, MarketSpec(10, 5))
        price, size = self.ticks * spec.tick, self.lots * spec.lot
        if self.variant == 19:
            price, size = price + 1, size + 1
        expiry = GTC if self.expires_in is None else now + self.expires_in
        return Order(oid, self.account, self.market, self.is_buy, price, size, self.flags, expiry)


@dataclass(frozen=True)
class CancelOp:
    """Cancel the order placed by op number ``target`` (if it rests)."""

    target: int


@dataclass(frozen=True)
class TimeOp:
    """Advance the clock, then sweep expiries if ``sweep``."""

    dt: int
    sweep: bool


_FLAGS = (0,) * 8 + (
    PO,
    PO,
    RO,
    RO,
    IOC,
    IOC,
    FOK,
    FOK,
    IOC | RO,
    FOK | RO,
    PO | RO,
    IOC | FOK,
    PO | IOC,
    0x20,
)
_place = st.builds(
    PlaceOp,
    account=st.sampled_from((1, 2, 3, 4)),
    market=st.sampled_from((0,) * 12 + (1, 1, 1, 5)),  # 5 is unknown
    is_buy=st.booleans(),
    ticks=st.sampled_from((100, 99, 101, 98, 102)),
    lots=st.sampled_from((1, 2, 3, 4, 5, 6)),
    flags=st.sampled_from(_FLAGS),
    expires_in=st.sampled_from((None,) * 6 + (0, 1, 2, 5)),
    variant=st.integers(1, 20).map(lambda v: v % 20),
)
_ops = st.lists(
    st.one_of(
        _place,
        _place,
        _place,
        st.builds(CancelOp, st.integers(0, 80)),
        st.builds(TimeOp, st.integers(0, 3), st.booleans()),
    ),
    min_size=15,
    max_size=80,
)
_positions = st.dictionaries(
    st.tuples(st.integers(1, 4), st.sampled_from((0, 1))),
    st.integers(-4, 4).map(lambda n: 5 * n),
    max_size=6,
)
_verdicts = st.lists(st.sampled_from((A, A, A, A, RM, RT)), max_size=8)


class Ledger:
    """Per-order accounting of what the engine reported, to check sizes are conserved."""

    def __init__(self) -> None:
        self.orders: dict[OrderId, Order] = {}
        self.rested: dict[OrderId, int] = {}
        self.filled: dict[OrderId, int] = {}
        self.removed: dict[OrderId, int] = {}

    def placed(self, order: Order, result: PlaceResult) -> None:
        """Record a place result and check its fills."""
        assert result.filled == sum(f.size for f in result.fills)
        assert result.filled + result.resting <= order.size
        assert (result.resting > 0) == (result.status is Status.RESTING)
        for fill in result.fills:
            maker = self.orders[fill.maker_id]
            assert fill.price == maker.price and maker.is_buy != order.is_buy
            assert fill.price <= order.price if order.is_buy else fill.price >= order.price
            self.filled[fill.maker_id] = self.filled.get(fill.maker_id, 0) + fill.size
        self.gone(result.removed)
        if result.status is not Status.REFUSED:
            self.orders[order.order_id] = order
            self.filled[order.order_id] = result.filled
            self.rested[order.order_id] = result.resting

    def gone(self, removed: tuple[RemovedOrder, ...] | list[RemovedOrder]) -> None:
        """Record makers removed without filling."""
        for r in removed:
            self.removed[r.order_id] = self.removed.get(r.order_id, 0) + r.remaining

    def check(self, e: Engine) -> None:
        """Every order that rested: its fills plus what rests or was removed make its size."""
        for oid, rested in self.rested.items():
            if not rested:
                continue
            still = e.order(oid)
            open_size = self.orders[oid].size - self.filled[oid]
            if still is None:
                assert self.removed.get(oid, 0) == open_size
            else:
                assert still.remaining == open_size and oid not in self.removed


def _check_book(e: Engine) -> None:
    """Invariants of each book: never crossed, levels aggregate their orders."""
    for market in SPECS:
        book = e.book(market)
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid.price < ask.price
        depth = book.depth(1000)
        for is_buy, levels in ((True, depth.bids), (False, depth.asks)):
            resting = book.orders(is_buy)
            assert sum(level.count for level in levels) == len(resting)
            for level in levels:
                here = [o.remaining for o in resting if o.order.price == level.price]
                assert here and (level.size, level.count) == (sum(here), len(here))
            for o in resting:
                assert e.order(o.order.order_id) == o
        _check_storage(book)


def _check_storage(book: OrderBook) -> None:
    """The private layout: sorted keys match the levels; dead entries are counted."""
    for side in (book._bids, book._asks):
        assert side.keys == sorted(side.keys) and len(set(side.keys)) == len(side.keys)
        assert sorted(side.levels) == sorted(k if side.is_bid else -k for k in side.keys)
        for level in side.levels.values():
            dead = sum(not entry.live for entry in level.queue)
            assert level.count > 0 and level.dead == dead == len(level.queue) - level.count
            assert all(entry.level is level for entry in level.queue if entry.live)


def run_both(
    ops: list[PlaceOp | CancelOp | TimeOp],
    positions: dict[tuple[int, int], int],
    verdicts: list[Verdict],
    note: Callable[[str], object] = event,
) -> None:
    """Drive the engine and the reference model with ``ops``; compare everything after each op.

    ``note`` is told what happened (statuses, reasons, fill counts).
    """
    stf_e, stf_m = FakeStf(positions, tuple(verdicts)), FakeStf(positions, tuple(verdicts))
    e = Engine(SPECS, check_fill=stf_e.check_fill, position=stf_e.position)
    m = ModelEngine(SPECS, stf_m.check_fill, stf_m.position)
    now, ledger = T, Ledger()
    for oid, op in enumerate(ops):
        if isinstance(op, PlaceOp):
            order = op.order(oid, now)
            got = e.place(order, now, market_order=op.variant == 0)
            assert got == m.place(order, now, market_order=op.variant == 0)
            ledger.placed(order, got)
            note(f"{got.status.name} {got.reason.name if got.reason else ''}")
            note(f"fills {min(len(got.fills), 3)}")
            for r in got.removed:
                note(f"removed {r.reason.name}")
        elif isinstance(op, CancelOp):
            cancelled = e.cancel(op.target)
            assert cancelled == m.cancel(op.target)
            ledger.gone([] if cancelled is None else [cancelled])
        else:
            now += op.dt
            if op.sweep:
                swept = e.expire(now)
                assert swept == m.expire(now)
                ledger.gone(swept)
        assert stf_e.calls == stf_m.calls and stf_e.positions == stf_m.positions
        for market in SPECS:
            for is_buy in (True, False):
                assert e.book(market).orders(is_buy) == m.orders(market, is_buy)
        for account in range(1, 5):
            mine = [r for r in m.resting if r.order.account == account]
            assert sorted(o.order.order_id for o in e.open_orders(account)) == sorted(
                r.order.order_id for r in mine
            )
        _check_book(e)
        ledger.check(e)


@settings(max_examples=settings().max_examples)
@given(ops=_ops, positions=_positions, verdicts=_verdicts)
def test_engine_matches_reference_model(
    ops: list[PlaceOp | CancelOp | TimeOp],
    positions: dict[tuple[int, int], int],
    verdicts: list[Verdict],
) -> None:
    run_both(ops, positions, verdicts)


def _random_ops(rng: random.Random, n: int) -> list[PlaceOp | CancelOp | TimeOp]:
    """Long sequences with deep levels and many cancels (queue compaction, stale ids)."""
    ops: list[PlaceOp | CancelOp | TimeOp] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.35:
            ops.append(CancelOp(rng.randrange(max(i, 1))))
        elif roll < 0.4:
            ops.append(TimeOp(rng.randrange(3), rng.random() < 0.5))
        else:
            is_buy = rng.random() < 0.5
            crossing = rng.random() < 0.3
            reach = rng.randrange(4) if crossing else -rng.randrange(1, 4)
            ticks = 100 + reach if is_buy else 100 - reach
            lots = rng.randrange(1, 25 if crossing else 7)
            ops.append(
                PlaceOp(
                    rng.choice((1, 2, 3, 4)),
                    rng.choice((0, 0, 0, 1)),
                    is_buy,
                    ticks,
                    lots,
                    rng.choice(_FLAGS),
                    rng.choice((None,) * 6 + (0, 1, 2, 5)),
                    rng.randrange(20),
                )
            )
    return ops


def test_engine_matches_reference_model_on_long_runs() -> None:
    seen: Counter[str] = Counter()
    for seed in range(4):
        rng = random.Random(seed)
        positions = {(a, mk): 5 * rng.randrange(-20, 21) for a in range(1, 5) for mk in (0, 1)}
        verdicts = [A] * 9 + [RM, RT]
        rng.shuffle(verdicts)
        run_both(_random_ops(rng, 600), positions, verdicts, lambda what: seen.update([what]))
    covered = (
        "fills 3",
        "FILLED ",
        "RESTING ",
        "CANCELLED IOC_REMAINDER",
        "CANCELLED REDUCE_ONLY",
        "CANCELLED STF_REJECTED",
        "REFUSED NO_LIQUIDITY",
        "REFUSED POST_ONLY_WOULD_CROSS",
        "REFUSED FOK_UNFILLABLE",
        "REFUSED REDUCE_ONLY",
        "removed EXPIRED",
        "removed SELF_TRADE",
        "removed REDUCE_ONLY",
        "removed STF_REJECTED",
    )
    assert [what for what in covered if not seen[what]] == []
