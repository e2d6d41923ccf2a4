"""Liquidation and auto-deleveraging through the STF, with exact integers (docs/stf.md §7.7, §7.8).

Expected amounts are computed here from the pre-state with the formulas of the
spec written out (ceil for the penalty, floor for the bonus, ceil capped at the
deficit for a deleveraging share), not with the STF's own helpers. Every batch
is also a test vector (tests/vectors.py).

The cap of a deleveraging share at the deficit never binds: the closed notional
is part of the gross notional, so ⌈deficit × closed / gross⌉ ≤ deficit. Likewise
the fund always suffices to cover a closed-out target, since liquidation
requires equity + fund ≥ 0 (the ``min`` in both is defensive).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from state.constants import KIND_PERP
from state.errors import Code
from state.layout import Account, Market
from state.margin import assess, normalize
from state.txs import encode_deleverage, encode_liquidate, encode_trade
from tests.vectors import check_vector
from tests.world import (
    BTC,
    BTC_PERP,
    ETH,
    ETH_CALL,
    ETH_PERP,
    ETH_PUT,
    USDC,
    World,
    default_markets,
)

BPS = 10_000
PENALTY_BPS, BONUS_BPS = 150, 50  # tests.world.default_config
MM_BPS, BUFFER_BPS = 500, 100  # ETH-PERP maintenance, config sync buffer

LOT_PERP = 4
"""A perpetual on underlying 2 whose lot is 10 (LOT_SIZE refusals)."""
DARK_PERP = 5
"""A perpetual on underlying 3 that is never priced (NO_PRICE refusals)."""
OPEN_PRICE = 3_000_000
TARGET_DEPOSIT = 400 * USDC


def markets() -> list[Market]:
    """The default markets plus LOT_PERP and DARK_PERP."""
    return default_markets() + [
        Market(KIND_PERP, 2, 1000, 500, 1_000, 10, 0, 0, 2),
        Market(KIND_PERP, 3, 1000, 500, 1_000, 1, 0, 0, 2),
    ]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def publish(w: World, eth: int, btc: int = 6_000_000) -> None:
    """An oracle update one second later: ETH-PERP mark and ETH index at ``eth``."""
    marks = {ETH_PERP: eth, BTC_PERP: btc, ETH_CALL: 40_000, ETH_PUT: 30_000, LOT_PERP: 1_000_000}
    assert w.set_prices(marks, {ETH: eth, BTC: btc, 2: 1_000_000}).code == Code.OK


def opened(
    eth_size: int = 1000, btc_size: int = 0, deposit: int = TARGET_DEPOSIT, short: bool = False,
) -> World:
    """Accounts maker (1), target (2), liq (3), bull (4).

    The target deposits ``deposit`` (400 USDC) and buys (sells if ``short``) ``eth_size``
    ETH-PERP, and buys ``btc_size`` BTC-PERP, from the maker at the oracle price; bull buys
    500 ETH-PERP from the maker. The maker and bull are rich, the liquidator is flat."""
    w = World(markets=markets())
    for name, amount in (("maker", 10_000_000 * USDC), ("target", deposit),
                         ("liq", 100_000 * USDC), ("bull", 1_000_000 * USDC)):
        assert w.deposit(name, amount).code == Code.OK
    publish(w, OPEN_PRICE)
    orders = [
        w.order("maker", ETH_PERP, short, OPEN_PRICE, eth_size),
        w.order("target", ETH_PERP, not short, OPEN_PRICE, eth_size),
        w.order("maker", ETH_PERP, False, OPEN_PRICE, 500),
        w.order("bull", ETH_PERP, True, OPEN_PRICE, 500),
        w.order("maker", BTC_PERP, False, 6_000_000, max(btc_size, 1)),
        w.order("target", BTC_PERP, True, 6_000_000, max(btc_size, 1)),
    ]
    steps = [encode_trade(0, 1, eth_size), encode_trade(2, 3, 500)]
    if btc_size:
        steps.append(encode_trade(4, 5, btc_size))
    assert [r.code for r in w.run(steps, orders)] == [Code.OK] * len(steps)
    return w


def liquidatable() -> World:
    """opened() with ETH at 2 700 000: the target is below its liquidation threshold
    (equity 98.5 USDC, threshold 162 USDC) but solvent."""
    w = opened()
    publish(w, 2_700_000)
    return w


def bankrupt() -> World:
    """opened() with ETH at 2 500 000: the target's equity is −101.5 USDC, the fund empty."""
    w = opened()
    publish(w, 2_500_000)
    return w


# ---------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Snapshot:
    """What a liquidation or deleveraging may change, read from the world."""

    accounts: dict[str, Account]
    equity: dict[str, int]
    fund: int
    fee_pool: int
    total: int


def snapshot(w: World, names: tuple[str, ...] = ("maker", "target", "liq", "bull")) -> Snapshot:
    """Accounts (as stored), their equity at the current marks, pools and Σ value."""
    view = w.view()
    params, prices = view.params(), view.prices()
    accounts = {n: w.account(n) for n in names}
    equity = {
        n: assess(normalize(a, params.markets, prices), params.markets, prices, params.config).equity
        for n, a in accounts.items()
    }
    g = w.global_()
    return Snapshot(accounts, equity, g.insurance_fund, g.fee_pool, w.total_value())


def balanced(w: World) -> None:
    """The sizes in each market sum to zero."""
    assert all(total == 0 for total in w.sizes_by_market().values()), w.sizes_by_market()


def size_of(a: Account, market: int) -> int:
    p = a.position(market)
    return 0 if p is None else p.size


def cost_of(a: Account, market: int) -> int:
    p = a.position(market)
    return 0 if p is None else p.cost


def mark(w: World, market: int = ETH_PERP) -> int:
    return w.prices().markets[market].mark


def liquidate(name: str | None, w: World, size: int) -> Code:
    """The liquidator takes over ``size`` of the target's ETH-PERP position at the mark
    through its own order; the batch is vector ``name`` unless that is None."""
    order = w.order("liq", ETH_PERP, size_of(w.account("target"), ETH_PERP) > 0, mark(w), size)
    step = encode_liquidate(w.index["target"], 0, size)
    if name is None:
        return w.run1(step, [order]).code
    (receipt,) = check_vector(name, w, [step], [order])
    return receipt.code


def deleverage(name: str, w: World, counterparty: str, market: int, size: int) -> Code:
    step = encode_deleverage(w.index["target"], w.index[counterparty], market, size)
    (receipt,) = check_vector(name, w, [step])
    return receipt.code


def expect_liquidation(before: Snapshot, w: World, size: int) -> tuple[int, int, int]:
    """Check a liquidation of ``size`` of the target's ETH-PERP position at the mark.

    Returns (penalty, cover, bonus)."""
    after = snapshot(w)
    m = mark(w)
    t0, t1 = before.accounts["target"], after.accounts["target"]
    l0, l1 = before.accounts["liq"], after.accounts["liq"]
    s0, c0 = size_of(t0, ETH_PERP), cost_of(t0, ETH_PERP)
    closing = -size if s0 > 0 else size  # the target's fill
    notional = size * m
    penalty = ceil_div(notional * PENALTY_BPS, BPS)
    cost_part = c0 * size // abs(s0)
    collateral = t0.collateral - closing * m + cost_part - penalty
    fund = before.fund + penalty
    cover = 0
    if size == abs(s0) and len(t0.positions) == 1 and collateral < 0:
        cover = min(-collateral, fund)
    fund -= cover
    bonus = min(notional * BONUS_BPS // BPS, fund)
    # the target sells at the mark, pays the penalty, is covered when closed out negative
    assert size_of(t1, ETH_PERP) == s0 + closing
    assert cost_of(t1, ETH_PERP) == c0 - cost_part
    assert t1.collateral == collateral + cover
    # the liquidator takes the other side at the mark and receives the bonus
    assert size_of(l1, ETH_PERP) == size_of(l0, ETH_PERP) - closing
    assert cost_of(l1, ETH_PERP) == cost_of(l0, ETH_PERP) + closing * m
    assert l1.collateral == l0.collateral + bonus
    # the rest of the penalty stays in the fund
    assert after.fund == before.fund + penalty - cover - bonus
    assert after.fee_pool == before.fee_pool
    assert after.accounts["maker"] == before.accounts["maker"]
    assert after.total == before.total
    balanced(w)
    return penalty, cover, bonus


# ---------------------------------------------------------------------------- liquidation


def test_partial_liquidation_at_the_mark() -> None:
    w = opened()
    publish(w, 2_700_001)
    before = snapshot(w)
    assert before.equity["target"] == TARGET_DEPOSIT - 1_500_000 + 1000 * (2_700_001 - OPEN_PRICE)
    assert liquidate("liquidate_partial", w, 333) == Code.OK
    penalty, cover, bonus = expect_liquidation(before, w, 333)
    # N = 333 × 2 700 001 = 899 100 333: penalty ⌈13 486 504.995⌉, bonus ⌊4 495 501.665⌋
    assert (penalty, cover, bonus) == (13_486_505, 0, 4_495_501)
    assert w.global_().insurance_fund == 8_991_004
    target = w.account("target")
    assert target.positions[0].size == 667 and target.positions[0].cost == -2_001_000_000
    assert target.collateral == 398_500_000 + 899_100_333 - 999_000_000 - 13_486_505
    assert snapshot(w).equity["target"] == before.equity["target"] - penalty


def test_short_position_liquidated_by_a_selling_order() -> None:
    w = opened(short=True)
    publish(w, 3_300_001)  # equity 98.499 USDC < threshold 198.00006 USDC
    before = snapshot(w)
    assert before.equity["target"] == TARGET_DEPOSIT - 1_500_000 - 1000 * (3_300_001 - OPEN_PRICE)
    assert liquidate("liquidate_short", w, 500) == Code.OK
    penalty, cover, bonus = expect_liquidation(before, w, 500)
    assert (penalty, cover, bonus) == (24_750_008, 0, 8_250_002)
    assert w.account("target").positions[0].size == -500
    assert w.account("liq").positions[0].size == -500


def test_liquidation_in_two_parts_then_closed_out() -> None:
    w = liquidatable()
    before = snapshot(w)
    assert liquidate("liquidate_first_part", w, 400) == Code.OK
    expect_liquidation(before, w, 400)
    before = snapshot(w)
    assert liquidate("liquidate_rest", w, 600) == Code.OK
    expect_liquidation(before, w, 600)
    assert w.account("target").positions == ()
    assert w.account("liq").positions[0].size == 1000


def _after_partial() -> tuple[World, int, int]:
    """The target liquidated for 333 at 2 700 001: (world, fund, collateral)."""
    w = opened()
    publish(w, 2_700_001)
    assert liquidate(None, w, 333) == Code.OK
    return w, w.global_().insurance_fund, w.account("target").collateral


def _price_for_equity(collateral: int, size: int, cost: int, equity: int) -> int:
    """The largest mark at which a single long position has equity ≤ ``equity``."""
    return (equity - collateral - cost) // size


def test_close_out_with_negative_collateral_is_covered_by_the_fund() -> None:
    w, fund, collateral = _after_partial()
    # equity about +1 USDC: closing everything leaves the penalty unpaid
    price = _price_for_equity(collateral, 667, -2_001_000_000, 1 * USDC)
    publish(w, price)
    before = snapshot(w)
    equity = before.equity["target"]
    assert equity == collateral + 667 * price - 2_001_000_000 and 0 < equity <= 1 * USDC
    assert liquidate("liquidate_close_out_covered", w, 667) == Code.OK
    penalty, cover, bonus = expect_liquidation(before, w, 667)
    assert cover == penalty - equity > 0
    assert bonus == 667 * price * BONUS_BPS // BPS  # not capped: the fund has enough
    target = w.account("target")
    assert target.positions == () and target.collateral == 0
    assert w.global_().insurance_fund == fund + equity - bonus


def test_deleverage_required_exactly_when_equity_plus_fund_is_negative() -> None:
    w, fund, collateral = _after_partial()
    # the largest mark at which equity + fund < 0, then one unit more
    bankrupt_at = _price_for_equity(collateral, 667, -2_001_000_000, -fund - 1)
    publish(w, bankrupt_at)
    equity = snapshot(w).equity["target"]
    assert equity + fund < 0 <= equity + 667 + fund
    assert liquidate("liquidate_deleverage_required", w, 667) == Code.DELEVERAGE_REQUIRED
    before = snapshot(w)
    assert deleverage("deleverage_at_bankruptcy_boundary", w, "maker", ETH_PERP, 1) == Code.OK
    expect_deleverage(before, w, "maker", ETH_PERP, 1)
    # (a separate world for the other side of the boundary)
    w, fund, collateral = _after_partial()
    publish(w, bankrupt_at + 1)
    before = snapshot(w)
    equity = before.equity["target"]
    assert 0 <= equity + fund < 667
    assert deleverage("deleverage_not_bankrupt_boundary", w, "maker", ETH_PERP, 667) \
        == Code.NOT_BANKRUPT
    assert liquidate("liquidate_bonus_capped_by_fund", w, 667) == Code.OK
    penalty, cover, bonus = expect_liquidation(before, w, 667)
    # everything left in the fund after covering the target goes to the liquidator
    assert bonus == fund + equity < 667 * bankrupt_at * BONUS_BPS // BPS
    assert w.global_().insurance_fund == 0
    assert w.account("target").collateral == 0


def _liquidation_threshold(size: int, price: int) -> int:
    notional = size * price
    return ceil_div(notional * MM_BPS, BPS) + ceil_div(notional * BUFFER_BPS, BPS)


@pytest.mark.parametrize(("size", "deposit", "boundary"), [
    # at 2 767 127: equity 165 861 373 < threshold 165 861 593;
    # at 2 767 128: equity 165 862 372 ≥ threshold 165 861 653
    (999, TARGET_DEPOSIT, 2_767_127),
    # at 2 767 500 the equity is exactly the threshold, 166 050 000: not liquidatable
    (1000, 400_050_000, 2_767_499),
])
def test_liquidatable_exactly_below_the_threshold(size: int, deposit: int, boundary: int) -> None:
    collateral = deposit - ceil_div(size * OPEN_PRICE * 5, BPS)
    cost = -size * OPEN_PRICE

    def equity(price: int) -> int:
        return collateral + size * price + cost

    lo, hi = 1, OPEN_PRICE  # liquidatable at lo, not at hi
    assert equity(lo) < _liquidation_threshold(size, lo) and equity(hi) >= _liquidation_threshold(size, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if equity(mid) < _liquidation_threshold(size, mid) else (lo, mid)
    assert (lo, hi) == (boundary, boundary + 1)
    if size == 1000:
        assert equity(hi) == _liquidation_threshold(size, hi) == 166_050_000

    w = opened(eth_size=size, deposit=deposit)
    publish(w, hi)
    assert snapshot(w).equity["target"] == equity(hi)
    tag = "exact" if size == 1000 else "rounded"
    assert liquidate(f"liquidate_not_liquidatable_{tag}", w, 100) == Code.NOT_LIQUIDATABLE
    publish(w, lo)
    before = snapshot(w)
    assert liquidate(f"liquidate_below_threshold_{tag}", w, 100) == Code.OK
    expect_liquidation(before, w, 100)


def test_zero_equity_and_empty_fund_is_liquidated_not_deleveraged() -> None:
    """E + fund = 0 allows liquidation (and refuses deleveraging); E + fund = −1000 the reverse."""
    zero = OPEN_PRICE - (TARGET_DEPOSIT - 1_500_000) // 1000  # 2 601 500: equity exactly 0
    w = opened()
    publish(w, zero)
    before = snapshot(w)
    assert before.equity["target"] == 0 and before.fund == 0
    assert deleverage("deleverage_zero_equity", w, "maker", ETH_PERP, 1000) == Code.NOT_BANKRUPT
    assert liquidate("liquidate_zero_equity", w, 1000) == Code.OK
    penalty, cover, bonus = expect_liquidation(before, w, 1000)
    assert cover == penalty and bonus == 0  # the fund pays the penalty back: nothing left
    assert w.account("target").collateral == 0 and w.global_().insurance_fund == 0

    w = opened()
    publish(w, zero - 1)
    before = snapshot(w)
    assert before.equity["target"] == -1000
    assert liquidate("liquidate_equity_minus_1000", w, 1000) == Code.DELEVERAGE_REQUIRED
    assert deleverage("deleverage_equity_minus_1000", w, "maker", ETH_PERP, 1000) == Code.OK
    assert expect_deleverage(before, w, "maker", ETH_PERP, 1000) == 1000


# ---------------------------------------------------------------------------- deleveraging


def expect_deleverage(before: Snapshot, w: World, counterparty: str, market: int, size: int) -> int:
    """Check a deleveraging of ``size`` of the target's long in ``market``; returns the share."""
    after = snapshot(w)
    prices = w.prices()
    t0, t1 = before.accounts["target"], after.accounts["target"]
    k0, k1 = before.accounts[counterparty], after.accounts[counterparty]
    m = prices.markets[market].mark
    deficit = -(before.equity["target"] + before.fund)
    gross = sum(abs(p.size) * prices.markets[p.market].mark for p in t0.positions)
    share = min(ceil_div(deficit * size * m, gross), deficit)
    s0, c0 = size_of(t0, market), cost_of(t0, market)
    closing = -size if s0 > 0 else size  # the target's fill; the counterparty's is −closing
    part = c0 * size // abs(s0)
    assert size_of(t1, market) == s0 + closing and cost_of(t1, market) == c0 - part
    assert t1.collateral == t0.collateral - closing * m + part + before.fund + share
    ks0, kc0 = size_of(k0, market), cost_of(k0, market)
    kpart = kc0 * size // abs(ks0)
    assert size_of(k1, market) == ks0 - closing and cost_of(k1, market) == kc0 - kpart
    assert k1.collateral == k0.collateral + closing * m + kpart - share
    assert after.equity["target"] == before.equity["target"] + before.fund + share
    assert after.equity[counterparty] == before.equity[counterparty] - share
    assert after.fund == 0 and after.fee_pool == before.fee_pool
    assert after.total == before.total
    balanced(w)
    return share


def test_deleverage_fund_first_then_shares_until_zero_equity() -> None:
    w = opened(btc_size=100)
    publish(w, 2_700_001)
    assert liquidate(None, w, 333) == Code.OK
    publish(w, 2_400_000, 5_900_000)
    before = snapshot(w)
    fund = before.fund
    assert fund > 0 and before.equity["target"] + fund < 0
    # the ETH long (667 × 2.4M) is most of the gross notional (plus 100 × 5.9M of BTC)
    assert deleverage("deleverage_partial", w, "maker", ETH_PERP, 300) == Code.OK
    share = expect_deleverage(before, w, "maker", ETH_PERP, 300)
    deficit = -(before.equity["target"] + fund)
    assert share == ceil_div(deficit * 300 * 2_400_000, 667 * 2_400_000 + 100 * 5_900_000)
    assert 0 < share < deficit
    before = snapshot(w)
    assert before.fund == 0 and before.equity["target"] == -(deficit - share)
    assert deleverage("deleverage_rest_of_market", w, "maker", ETH_PERP, 367) == Code.OK
    expect_deleverage(before, w, "maker", ETH_PERP, 367)
    before = snapshot(w)
    assert deleverage("deleverage_last_position", w, "maker", BTC_PERP, 100) == Code.OK
    share = expect_deleverage(before, w, "maker", BTC_PERP, 100)
    assert share == -before.equity["target"]  # the last share is the whole remaining deficit
    target = w.account("target")
    assert target.positions == () and target.collateral == 0
    assert snapshot(w).equity["target"] == 0


def test_deleverage_closing_everything_takes_the_whole_deficit() -> None:
    w = bankrupt()
    before = snapshot(w)
    assert before.fund == 0
    assert before.equity["target"] == TARGET_DEPOSIT - 1_500_000 + 1000 * (2_500_000 - OPEN_PRICE)
    assert deleverage("deleverage_full_no_fund", w, "maker", ETH_PERP, 1000) == Code.OK
    share = expect_deleverage(before, w, "maker", ETH_PERP, 1000)
    assert share == 101_500_000
    assert w.account("target").collateral == 0 and w.account("target").positions == ()


def test_not_bankrupt_when_the_fund_covers() -> None:
    w, fund, collateral = _after_partial()
    price = _price_for_equity(collateral, 667, -2_001_000_000, -fund // 2)
    publish(w, price)
    equity = snapshot(w).equity["target"]
    assert equity < 0 <= equity + fund
    assert deleverage("deleverage_not_bankrupt", w, "maker", ETH_PERP, 100) == Code.NOT_BANKRUPT


def test_deleverage_short_target_against_two_longs() -> None:
    w = opened(short=True)  # the maker ends long 500, bull long 500
    publish(w, 3_600_000)
    before = snapshot(w)
    assert before.equity["target"] == TARGET_DEPOSIT - 1_500_000 - 600_000_000
    assert deleverage("deleverage_short_partial", w, "bull", ETH_PERP, 500) == Code.OK
    assert expect_deleverage(before, w, "bull", ETH_PERP, 500) == 201_500_000 // 2
    before = snapshot(w)
    assert deleverage("deleverage_short_rest", w, "maker", ETH_PERP, 500) == Code.OK
    assert expect_deleverage(before, w, "maker", ETH_PERP, 500) == 201_500_000 // 2
    assert w.account("target").positions == () and w.account("target").collateral == 0
