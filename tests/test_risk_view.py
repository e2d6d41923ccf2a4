"""The risk view agrees with the STF's integers and with Black-Scholes."""

import math

from state.black_scholes import bs_greeks
from state.risk_view import account_risk
from state.txs import encode_trade
from tests.world import ETH, ETH_CALL, ETH_PERP, ETH_PUT, USDC, standard_world


def test_summary_matches_margin_and_greeks():
    w = standard_world(("mm", "t"), 50_000 * USDC)
    orders = [
        w.order("mm", ETH_PERP, False, 3_000_000, 5), w.order("t", ETH_PERP, True, 3_000_000, 5),
        w.order("mm", ETH_CALL, True, 40_000, 10), w.order("t", ETH_CALL, False, 40_000, 10),
        w.order("mm", ETH_PUT, False, 30_000, 4), w.order("t", ETH_PUT, True, 30_000, 4),
    ]
    assert all(r.code == 0 for r in w.run([encode_trade(0, 1, 5), encode_trade(2, 3, 10), encode_trade(4, 5, 4)], orders))
    view = w.view()
    acct = w.account("t")
    risk = account_risk(acct, view.params(), view.prices(), w.time)
    # integers: equity = collateral + Σ (size × mark + cost)
    assert risk.equity == acct.collateral + sum(p.size * view.prices().markets[p.market].mark + p.cost for p in acct.positions)
    assert risk.liquidation_threshold == risk.maintenance_margin + risk.sync_buffer
    assert risk.initial_margin > risk.maintenance_margin > 0
    assert not risk.liquidatable and risk.margin_ratio > 1
    # Greeks: a long perp of 5 has delta 5; the short call and long put follow Black-Scholes
    years = (w.markets[ETH_CALL].expiry - w.time) / (365 * 86_400)
    call = bs_greeks(True, 3_000_000.0, 3_200_000.0, years, 0.6)
    put = bs_greeks(False, 3_000_000.0, 2_800_000.0, years, 0.65)
    expected = 5 - 10 * call.delta + 4 * put.delta
    assert math.isclose(risk.net_delta[ETH], expected, rel_tol=1e-12)
    by_market = {p.market: p for p in risk.positions}
    assert by_market[ETH_PERP].entry_price == 3_000_000
    assert math.isclose(by_market[ETH_CALL].vega, -10 * call.vega, rel_tol=1e-12)
    assert by_market[ETH_CALL].gamma < 0 < by_market[ETH_PUT].gamma


def test_empty_account_is_never_liquidatable():
    w = standard_world(("a",))
    view = w.view()
    risk = account_risk(w.account("a"), view.params(), view.prices(), w.time)
    assert risk.margin_ratio == float("inf") and not risk.liquidatable
    assert risk.free_collateral == risk.equity == 100_000 * USDC
