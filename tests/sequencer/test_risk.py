"""The risk monitor against an in-memory Exchange: liquidation, ADL, funding, settlement."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from sequencer.risk import Action, InHouseLiquidator, RiskMonitor, adl_key, value
from state.arith import div_ceil, div_floor
from state.layout import Position
from tests.sequencer.harness import ETH_PERP, USDC, Desk
from tests.world import BTC_PERP, DAY, ETH, ETH_CALL, ETH_PUT, T0


def _monitor(desk: Desk, name: str = "liq", **kw: Any) -> RiskMonitor:
    liq = InHouseLiquidator(desk.key(name), desk.index[name])
    return RiskMonitor(liq, **kw).attach(desk.ex)


def _equity(desk: Desk, index: int) -> int:
    ex = desk.ex
    acct = ex.account(index)
    assert acct is not None
    return value(acct, ex.view.params(), ex.view.prices())[1].equity


def _expected_size(equity: int, held: int, mark: int) -> int:
    """Smallest size whose liquidation leaves E - penalty >= MM + buffer (5% + 1%, penalty 1.5%)."""
    for q in range(1, held + 1):
        rest = (held - q) * mark
        penalty = div_ceil(q * mark * 150, 10_000)
        if equity - penalty >= div_ceil(rest * 500, 10_000) + div_ceil(rest * 100, 10_000):
            return q
    return held


def test_price_drop_liquidates_before_equity_goes_negative() -> None:
    desk = Desk.create(traders=("maker", "liq"))
    ex = desk.ex
    desk.fund(["whale"], 10_000 * USDC)
    desk.place("maker", ETH_PERP, False, 3_000_000, 30_000)
    assert desk.place("whale", ETH_PERP, True, 3_000_000, 30_000).filled == 30_000
    monitor = _monitor(desk)
    whale, liq = desk.index["whale"], desk.index["liq"]

    desk.prices({ETH_PERP: 2_850_000})  # E 5,455 USDC >= LT 5,130: nothing to do
    assert monitor.actions == [] and monitor.failures == []

    mark = 2_830_000
    liq_before = ex.account(liq).collateral  # type: ignore[union-attr]
    fund_before = ex.view.global_().insurance_fund
    whale_collateral = ex.account(whale).collateral  # type: ignore[union-attr]
    equity = whale_collateral + 30_000 * (mark - 3_000_000)
    assert equity == 4_855 * USDC  # 10k - 45 fee - 5.1k loss: liquidatable (LT 5,094), positive
    desk.prices({ETH_PERP: mark})

    size = _expected_size(equity, 30_000, mark)
    assert 0 < size < 30_000  # a partial liquidation
    assert monitor.actions == [Action("liquidate", whale, liq, ETH_PERP, size, "OK")]
    notional = size * mark
    penalty = div_ceil(notional * 150, 10_000)
    bonus = div_floor(notional * 50, 10_000)
    assert ex.view.global_().insurance_fund == fund_before + penalty - bonus
    liq_acct = ex.account(liq)
    assert liq_acct is not None
    assert liq_acct.collateral == liq_before + bonus
    assert [(p.market, p.size, p.cost) for p in liq_acct.positions] == [(ETH_PERP, size, -notional)]
    after = _equity(desk, whale)
    assert after == equity - penalty and after > 0
    assert ex.account(whale).positions[0].size == 30_000 - size  # type: ignore[union-attr]
    risk = ex.risk(whale)
    assert risk is not None and not risk.liquidatable

    # The next update re-values nothing new and does nothing.
    desk.prices({ETH_PERP: mark})
    assert len(monitor.actions) == 1


def test_incremental_revaluation() -> None:
    desk = Desk.create(traders=("maker", "taker", "liq"))
    desk.place("maker", ETH_PERP, False, 3_000_000, 100)
    desk.place("taker", ETH_PERP, True, 3_000_000, 100)
    monitor = _monitor(desk)
    desk.prices()
    assert monitor.revalued == 2  # first tick: every account with positions
    desk.prices({ETH_PERP: 3_000_000, BTC_PERP: 6_100_000})  # only BTC moved
    assert monitor.revalued == 0
    desk.prices({ETH_PERP: 3_001_000})
    assert monitor.revalued == 2


def test_refused_liquidation_is_logged_and_retried_next_tick() -> None:
    desk = Desk.create(traders=("maker",))
    desk.fund(["liq"], 100 * USDC)  # far too little to take the position over
    desk.fund(["whale"], 10_000 * USDC)
    desk.place("maker", ETH_PERP, False, 3_000_000, 30_000)
    desk.place("whale", ETH_PERP, True, 3_000_000, 30_000)
    monitor = _monitor(desk)
    desk.prices({ETH_PERP: 2_830_000})
    assert monitor.actions == []
    assert [f.code for f in monitor.failures] == ["INSUFFICIENT_MARGIN"]
    desk.prices({ETH_PERP: 2_830_000})
    assert [f.code for f in monitor.failures] == ["INSUFFICIENT_MARGIN"] * 2


def test_crash_deleverages_by_profit_ratio() -> None:
    desk = Desk.create(traders=("a", "b", "liq"))
    ex = desk.ex
    desk.fund(["whale"], 12_000 * USDC)
    desk.place("a", ETH_PERP, False, 3_000_000, 10_000)
    desk.place("b", ETH_PERP, False, 3_050_000, 20_000)
    assert desk.place("whale", ETH_PERP, True, 3_050_000, 30_000).filled == 30_000
    monitor = _monitor(desk)
    whale, a, b = desk.index["whale"], desk.index["a"], desk.index["b"]
    assert ex.view.global_().insurance_fund == 0

    desk.prices({ETH_PERP: 2_500_000})  # a 16k loss on 12k: bankrupt, empty fund
    # b's short (sold at 3.05M) has profit ratio 0.55/3.05 > a's 0.5/3.0: b goes first.
    assert monitor.actions == [
        Action("deleverage", whale, b, ETH_PERP, 20_000, "OK"),
        Action("deleverage", whale, a, ETH_PERP, 10_000, "OK"),
    ]
    acct = ex.account(whale)
    assert acct is not None and acct.positions == () and acct.collateral == 0
    assert ex.account(a).positions == () and ex.account(b).positions == ()  # type: ignore[union-attr]


def test_adl_ranking_ties_broken_by_leverage() -> None:
    mark = 2_000
    p = Position(ETH_PERP, -10, 25_000, 0)  # sold 10 at 2,500: profit 5,000, ratio 1/5
    assert adl_key(p, mark, 1_000, 20_000)[0] == Fraction(1, 5)
    assert adl_key(p, mark, 1_000, 20_000) > adl_key(p, mark, 4_000, 20_000)  # 20x beats 5x
    assert adl_key(p, mark, -1, 20_000) > adl_key(p, mark, 1, 20_000)  # no equity: most levered
    q = Position(ETH_PERP, -10, 30_000, 0)  # ratio 1/3 beats any leverage at 1/5
    assert adl_key(q, mark, 10**9, 20_000) > adl_key(p, mark, 1, 20_000)


def test_funding_ticks_every_interval() -> None:
    desk = Desk.create(traders=("liq",))
    ex = desk.ex
    monitor = _monitor(desk, funding_interval=60)
    start = ex.view.prices()
    desk.now += 100
    desk.prices({ETH_PERP: 3_010_000})  # mark above index: longs pay
    prices = ex.view.prices()
    assert [a.kind for a in monitor.actions] == ["funding"]
    assert prices.funding_time == desk.now
    assert prices.markets[ETH_PERP].funding_index > start.markets[ETH_PERP].funding_index
    desk.prices({ETH_PERP: 3_010_000})  # one second later: not due
    assert [a.kind for a in monitor.actions] == ["funding"]
    desk.now += 60
    desk.prices({ETH_PERP: 3_010_000})
    assert [a.kind for a in monitor.actions] == ["funding", "funding"]


def test_expiry_settles_options() -> None:
    desk = Desk.create(traders=("liq",))
    ex = desk.ex
    monitor = _monitor(desk, funding_interval=10 * DAY)
    desk.now = T0 + 7 * DAY - 5
    desk.prices({ETH_PERP: 3_000_000}, {ETH: 3_300_000})  # before expiry: nothing
    assert monitor.actions == []
    desk.now = T0 + 7 * DAY + 10
    desk.prices({ETH_PERP: 3_000_000}, {ETH: 3_300_000})
    assert [(a.kind, a.market) for a in monitor.actions] == [("settle", ETH_CALL), ("settle", ETH_PUT)]
    prices = ex.view.prices()
    assert prices.markets[ETH_CALL].settled and prices.markets[ETH_CALL].mark == 100_000
    assert prices.markets[ETH_PUT].settled and prices.markets[ETH_PUT].mark == 0
    desk.prices({ETH_PERP: 3_000_000}, {ETH: 3_300_000})
    assert len(monitor.actions) == 2
