"""Success paths of every transaction kind, end to end through the STF."""

from state.constants import FLAG_POST_ONLY, FLAG_REDUCE_ONLY
from state.errors import Code
from state.txs import encode_funding, encode_settle, encode_trade
from tests.world import BTC_PERP, ETH, ETH_CALL, ETH_PERP, USDC, standard_world


def test_deposit_creates_account_and_credits():
    w = standard_world(("a",), 1_000 * USDC)
    assert w.account("a").collateral == 1_000 * USDC
    assert w.account("a").owner == w.address("a")
    r = w.deposit("a", 5 * USDC)
    assert r.code == Code.OK
    assert w.account("a").collateral == 1_005 * USDC
    g = w.global_()
    assert (g.next_deposit, g.account_count) == (2, 2)


def test_trade_moves_positions_charges_fee_pays_rebate():
    w = standard_world()
    orders = [
        w.order("maker", ETH_PERP, False, 3_000_000, 10, FLAG_POST_ONLY),
        w.order("taker", ETH_PERP, True, 3_001_000, 10),
    ]
    r = w.run([encode_trade(0, 1, 4)], orders)
    assert r[0].code == Code.OK, r
    maker, taker = w.account("maker"), w.account("taker")
    notional = 4 * 3_000_000
    assert maker.positions[0].size == -4 and taker.positions[0].size == 4
    assert taker.positions[0].cost == -notional and maker.positions[0].cost == notional
    fee, rebate = -(-notional * 5 // 10_000), notional * 1 // 10_000
    assert taker.collateral == 100_000 * USDC - fee
    assert maker.collateral == 100_000 * USDC + rebate
    assert w.global_().fee_pool == fee - rebate
    # the rest of the maker order fills in a later batch; the total is bounded
    r = w.run([encode_trade(0, 1, 6), encode_trade(0, 1, 1)], orders)
    assert [x.code for x in r] == [Code.OK, Code.ORDER_OVERFILL]


def test_reducing_trade_realises_pnl():
    w = standard_world(("maker", "taker", "other"))
    w.run([encode_trade(0, 1, 10)], [
        w.order("maker", ETH_PERP, False, 3_000_000, 10), w.order("taker", ETH_PERP, True, 3_000_000, 10)])
    w.set_prices({ETH_PERP: 3_100_000}, {ETH: 3_100_000})
    before = w.account("taker").collateral
    r = w.run([encode_trade(0, 1, 4)], [
        w.order("other", ETH_PERP, True, 3_100_000, 4), w.order("taker", ETH_PERP, False, 3_100_000, 4)])
    assert r[0].code == Code.OK
    taker = w.account("taker")
    fee = -(-4 * 3_100_000 * 5 // 10_000)
    assert taker.collateral == before + 4 * 100_000 - fee
    assert taker.positions[0].size == 6 and taker.positions[0].cost == -6 * 3_000_000


def test_flip_position_through_zero():
    w = standard_world(("maker", "taker"))
    w.run([encode_trade(0, 1, 3)], [
        w.order("maker", ETH_PERP, False, 3_000_000, 3), w.order("taker", ETH_PERP, True, 3_000_000, 3)])
    w.run([encode_trade(0, 1, 5)], [
        w.order("maker", ETH_PERP, True, 3_000_000, 5), w.order("taker", ETH_PERP, False, 3_000_000, 5)])
    assert w.account("taker").positions[0].size == -2
    assert w.account("taker").positions[0].cost == 2 * 3_000_000
    assert w.sizes_by_market() == {ETH_PERP: 0}


def test_reduce_only_cannot_grow_or_flip():
    w = standard_world()
    w.run([encode_trade(0, 1, 2)], [
        w.order("maker", ETH_PERP, False, 3_000_000, 2), w.order("taker", ETH_PERP, True, 3_000_000, 2)])
    grow = [w.order("maker", ETH_PERP, False, 3_000_000, 5), w.order("taker", ETH_PERP, True, 3_000_000, 5, FLAG_REDUCE_ONLY)]
    assert w.run([encode_trade(0, 1, 1)], grow)[0].code == Code.REDUCE_ONLY
    flip = [w.order("maker", ETH_PERP, True, 3_000_000, 5), w.order("taker", ETH_PERP, False, 3_000_000, 5, FLAG_REDUCE_ONLY)]
    assert w.run([encode_trade(0, 1, 3)], flip)[0].code == Code.REDUCE_ONLY
    assert w.run([encode_trade(0, 1, 2)], flip)[0].code == Code.OK
    assert w.account("taker").positions == ()


def test_cross_margin_across_markets_and_options():
    w = standard_world(("mm", "t"), 50_000 * USDC)
    steps = [encode_trade(0, 1, 5), encode_trade(2, 3, 2), encode_trade(4, 5, 10)]
    orders = [
        w.order("mm", ETH_PERP, False, 3_000_000, 5), w.order("t", ETH_PERP, True, 3_000_000, 5),
        w.order("mm", BTC_PERP, True, 6_000_000, 2), w.order("t", BTC_PERP, False, 6_000_000, 2),
        w.order("mm", ETH_CALL, False, 40_000, 10), w.order("t", ETH_CALL, True, 40_000, 10),
    ]
    assert [r.code for r in w.run(steps, orders)] == [Code.OK] * 3
    assert [p.market for p in w.account("t").positions] == [ETH_PERP, BTC_PERP, ETH_CALL]
    assert w.sizes_by_market() == {ETH_PERP: 0, BTC_PERP: 0, ETH_CALL: 0}


def test_funding_accrues_and_is_settled_on_touch():
    w = standard_world()
    w.run([encode_trade(0, 1, 10)], [
        w.order("maker", ETH_PERP, False, 3_000_000, 10), w.order("taker", ETH_PERP, True, 3_000_000, 10)])
    w.set_prices({ETH_PERP: 3_030_000}, {ETH: 3_000_000})  # mark 1% over index
    start = w.total_value()
    w.time += 3_600
    elapsed = w.time - w.prices().funding_time
    assert w.run1(encode_funding()).code == Code.OK
    idx = w.prices().markets[ETH_PERP].funding_index
    cap = 3_000_000 * 75 // 10_000  # premium 30_000 clamps to the 75 bps cap
    assert idx == cap * 10**9 * elapsed // 28_800
    assert w.run1(encode_funding()).code == Code.FUNDING_TOO_EARLY
    assert start - w.total_value() in (0, 1)  # rounding dust only ever favours the protocol
    long_owes = -(-10 * idx // 10**9)
    before = w.account("taker").collateral
    assert w.run([encode_trade(0, 1, 1)], [
        w.order("maker", ETH_PERP, False, 3_030_000, 1), w.order("taker", ETH_PERP, True, 3_030_000, 1)]
    )[0].code == Code.STALE_ORACLE
    w.set_prices({ETH_PERP: 3_030_000}, {ETH: 3_000_000})
    w.run([encode_trade(0, 1, 1)], [
        w.order("maker", ETH_PERP, False, 3_030_000, 1), w.order("taker", ETH_PERP, True, 3_030_000, 1)])
    fee = -(-3_030_000 * 5 // 10_000)
    assert w.account("taker").collateral == before - long_owes - fee
    assert w.account("taker").positions[0].funding_snapshot == idx



def test_option_settles_and_positions_close_lazily():
    w = standard_world()
    w.run([encode_trade(0, 1, 10)], [
        w.order("maker", ETH_CALL, False, 40_000, 10), w.order("taker", ETH_CALL, True, 40_000, 10)])
    expiry = w.markets[ETH_CALL].expiry
    w.time = expiry
    assert w.run1(encode_settle(ETH_CALL)).code == Code.STALE_ORACLE
    w.set_prices({}, {ETH: 3_500_000})
    value = w.total_value()
    assert w.run1(encode_settle(ETH_CALL)).code == Code.OK
    assert w.prices().markets[ETH_CALL].mark == 300_000
    assert w.total_value() == value
    # the long call is paid (3500 - 3200) per unit when its account is next touched
    before = w.account("taker").collateral
    w.deposit("taker", 1)
    assert w.account("taker").collateral == before + 1  # deposit does not normalise
    assert w.run1(encode_settle(ETH_CALL)).code == Code.MARKET_SETTLED
    assert ETH == 0
