"""Every refusal of the STF, one case at a time (docs/stf.md §6, §7).

Each case builds a small world and a batch whose steps must all be refused with
exactly one code; the test checks that every leaf is byte-identical afterwards,
except that a deposit or forced step that found its queue item consumed it
(next_deposit / next_forced and l2_time in the global leaf, nothing else). Each
case is also a test vector (tests/vectors.py); the accepted variants of the
same steps are vectors too (``test_accepted``). NOT_LIQUIDATABLE,
DELEVERAGE_REQUIRED and NOT_BANKRUPT are tested at their exact boundaries in
tests/test_stf_liquidation.py; every other code but OK has a case here.

States no sequence of steps reaches in a test's time (a collateral, nonce,
counter or pool at its bound) are written into the world's leaves directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from coincurve import PublicKey

from state.constants import (
    AMOUNT_LIMIT,
    COLLATERAL_LIMIT,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    FUNDING_INDEX_LIMIT,
    KIND_PERP,
    ORACLE_UNDERLYING_BASE,
    POOL_LIMIT,
    PRICE_LIMIT,
    SIZE_LIMIT,
    U64_LIMIT,
)
from state.context import L1Deposit
from state.eip712 import (
    SECP256K1_N,
    address_of,
    oracle_digest,
    recover_signer,
    sign_digest,
    withdraw_digest,
)
from state.errors import Code
from state.keccak import keccak256
from state.layout import GLOBAL_KEY, PRICES_KEY, Account, Global, Market, account_key
from state.signing import sign_order, signed_cancel, signed_withdraw
from state.txs import (
    KIND_DEPOSIT,
    KIND_FORCED,
    OracleEntry,
    OrderBody,
    decode_order_entry,
    encode_deleverage,
    encode_deposit,
    encode_forced,
    encode_forced_cancel,
    encode_forced_withdraw,
    encode_funding,
    encode_liquidate,
    encode_oracle,
    encode_oracle_entries,
    encode_settle,
    encode_trade,
)
from tests.test_stf_liquidation import (
    DARK_PERP,
    LOT_PERP,
    bankrupt,
    liquidatable,
    markets,
    opened,
    publish,
)
from tests.vectors import check_vector
from tests.world import (
    BTC,
    BTC_PERP,
    ETH,
    ETH_CALL,
    ETH_PERP,
    NEVER,
    USDC,
    World,
    default_markets,
    standard_world,
)

RECIPIENT = b"\x77" * 20
ZERO = b"\x00" * 20
EXPIRY = default_markets()[ETH_CALL].expiry
ACCOUNT_INDEX_MAX = (1 << 32) - 1
GARBAGE_SIG = b"\x3c" * 64 + b"\x1b"
"""r = s = 0x3c3c…, in range and low, v = 27: recovers (if at all) to a random address."""


@dataclass
class Case:
    """A world and a batch whose every step must be refused with the same code."""

    world: World
    steps: list[bytes]
    orders: list[bytes] = field(default_factory=list)
    time: int | None = None


CASES: list[tuple[str, Code, Callable[[], Case]]] = []


def case(name: str, code: Code) -> Callable[[Callable[[], Case]], Callable[[], Case]]:
    """Register a case builder under vector name ``name``."""

    def register(build: Callable[[], Case]) -> Callable[[], Case]:
        CASES.append((name, code, build))
        return build

    return register


def on(make: Callable[[], World], build: Callable[[World], Case]) -> Callable[[], Case]:
    """A case builder: ``build`` applied to a fresh ``make()`` world."""
    return lambda: build(make())


def assert_refused(name: str, c: Case, code: Code) -> None:
    """Run ``c`` as vector ``name``: every step refused with ``code``, nothing else changed."""
    w = c.world
    before = dict(w.leaves)
    g0 = w.global_()
    receipts = check_vector(name, w, c.steps, c.orders, c.time)
    assert [(r.kind, r.code) for r in receipts] == [(s[0] if s else 0, code) for s in c.steps]
    after = dict(w.leaves)
    consumed = code != Code.QUEUE_EMPTY
    deposits = sum(1 for s in c.steps if s == bytes([KIND_DEPOSIT])) if consumed else 0
    forced = sum(1 for s in c.steps if s == bytes([KIND_FORCED])) if consumed else 0
    if deposits or forced:
        expected = replace(
            g0, next_deposit=g0.next_deposit + deposits, next_forced=g0.next_forced + forced,
            l2_time=w.time,
        )
        assert Global.decode(after.pop(GLOBAL_KEY)) == expected
        del before[GLOBAL_KEY]
    assert after == before


# ---------------------------------------------------------------------------- helpers


def high_s(sig: bytes) -> bytes:
    """The malleated twin (r, n − s, v flipped) of a low-s signature."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


def resign(step: bytes, sig: bytes) -> bytes:
    """Replace the trailing 65-byte signature of a withdraw/cancel step or an order entry."""
    return step[:-65] + sig


def patch_global(w: World, **changes: int) -> None:
    w.leaves[GLOBAL_KEY] = replace(w.global_(), **changes).encode()


def patch_account(w: World, name: str, *, nonce: int | None = None, collateral: int | None = None) -> None:
    a = w.account(name)
    a = Account(a.owner, a.nonce if nonce is None else nonce,
                a.collateral if collateral is None else collateral, a.positions)
    w.leaves[account_key(w.index[name])] = a.encode()


def entry(w: World, body: OrderBody, signer: str, owner: str | None = None) -> bytes:
    """An order-table entry for ``body`` signed by ``signer``'s key as ``owner``'s order."""
    return sign_order(w.key(signer), w.address(owner or signer), w.domain, body).encode()


def traded() -> World:
    """standard_world() after the taker bought 10 ETH-PERP from the maker at 3 000 000."""
    w = standard_world()
    orders = [w.order("maker", ETH_PERP, False, 3_000_000, 10), w.order("taker", ETH_PERP, True, 3_000_000, 10)]
    assert w.run1(encode_trade(0, 1, 10), orders).code == Code.OK
    return w


def settled(w: World) -> World:
    """Move ``w`` to the ETH call's expiry, publish the ETH index and settle the call."""
    w.time = EXPIRY
    assert w.set_prices({}, {ETH: 3_500_000}).code == Code.OK
    assert w.run1(encode_settle(ETH_CALL)).code == Code.OK
    return w


def lot_world() -> World:
    """A world with LOT_PERP (lot 10) and the DARK_PERP (never priced), maker and taker funded."""
    w = World(markets=markets())
    for name in ("maker", "taker"):
        w.deposit(name, 100_000 * USDC)
    publish(w, 3_000_000)
    return w


def stale(w: World) -> int:
    """A batch time one second past the oracle's maximum age."""
    return w.prices().oracle_time + w.config.max_oracle_age + 1


# ---------------------------------------------------------------------------- encodings


@case("encoding_invalid", Code.INVALID_ENCODING)
def _() -> Case:
    w = standard_world()
    withdraw = signed_withdraw(w.key("maker"), w.address("maker"), w.domain, 1, RECIPIENT, 1, 0)
    one_entry = encode_oracle(w.time, [OracleEntry(0, 1, 0)], [])
    return Case(w, [
        b"\x01\x00",  # deposit: 1 byte
        withdraw[:-1], withdraw + b"\x00",  # withdraw: 106
        encode_trade(0, 1, 1)[:-1],  # trade: 13
        b"\x04" + b"\x00" * 68,  # cancel: 68
        b"\x05" + b"\x00" * 9,  # oracle: shorter than 11
        b"\x05" + w.time.to_bytes(8, "big") + b"\x01\x00",  # oracle: n = 1 without its entry
        one_entry[:-1], one_entry + b"\x00",  # oracle: m = 0 but wrong length
        b"\x06\x00",  # funding: 1
        encode_liquidate(1, 0, 1) + b"\x00",  # liquidate: 15
        encode_deleverage(1, 2, 0, 1)[:-1],  # deleverage: 18
        b"\x09",  # settle: 2
        b"\x0a\x00",  # forced: 1
    ])


@case("encoding_unknown_kind", Code.UNKNOWN_KIND)
def _() -> Case:
    return Case(standard_world(), [b"", b"\x00", b"\x0b", b"\xff" * 13])


# ---------------------------------------------------------------------------- deposit


@case("deposit_queue_empty", Code.QUEUE_EMPTY)
def _() -> Case:
    return Case(standard_world(("a",)), [encode_deposit()])


@case("deposit_bad_amount", Code.BAD_AMOUNT)
def _() -> Case:
    w = standard_world(("a",))
    w.queues.deposits += [L1Deposit(w.address("b"), 0), L1Deposit(w.address("a"), AMOUNT_LIMIT)]
    return Case(w, [encode_deposit(), encode_deposit()])


@case("deposit_collateral_overflow", Code.OVERFLOW)
def _() -> Case:
    w = standard_world(("a",))
    patch_account(w, "a", collateral=COLLATERAL_LIMIT - 10)
    w.queues.deposits.append(L1Deposit(w.address("a"), 10))
    return Case(w, [encode_deposit()])


@case("deposit_account_limit", Code.ACCOUNT_LIMIT)
def _() -> Case:
    """Account indices are in [1, 2³² − 1) so that account_count fits its u32 field."""
    w = standard_world(("a",))
    patch_global(w, account_count=ACCOUNT_INDEX_MAX - 1)
    assert w.deposit("b", 5).code == Code.OK  # the last index
    assert w.index["b"] == ACCOUNT_INDEX_MAX - 1 and w.global_().account_count == ACCOUNT_INDEX_MAX
    w.queues.deposits.append(L1Deposit(w.address("c"), 5))
    return Case(w, [encode_deposit()])


# ---------------------------------------------------------------------------- withdraw


def withdraw(
    w: World, name: str = "taker", amount: int = USDC, *, nonce: int | None = None,
    recipient: bytes = RECIPIENT, key: str | None = None, account: int | None = None,
) -> bytes:
    """A withdraw step of ``name``'s account, signed by ``key`` (default the owner)."""
    return signed_withdraw(
        w.key(key or name), w.address(name), w.domain,
        w.index[name] if account is None else account, recipient, amount,
        w.account(name).nonce if nonce is None else nonce,
    )


CASES += [
    ("withdraw_unknown_account", Code.UNKNOWN_ACCOUNT,
     on(standard_world, lambda w: Case(w, [withdraw(w, account=9)]))),
    ("withdraw_bad_nonce", Code.BAD_NONCE,
     on(standard_world, lambda w: Case(w, [withdraw(w, nonce=1)]))),
    ("withdraw_bad_recipient", Code.BAD_RECIPIENT,
     on(standard_world, lambda w: Case(w, [withdraw(w, recipient=ZERO)]))),
    ("withdraw_bad_amount", Code.BAD_AMOUNT,
     on(standard_world, lambda w: Case(w, [withdraw(w, amount=0), withdraw(w, amount=AMOUNT_LIMIT)]))),
    ("withdraw_insufficient_collateral", Code.INSUFFICIENT_COLLATERAL,
     on(standard_world, lambda w: Case(w, [withdraw(w, amount=100_000 * USDC + 1)]))),
]


@case("withdraw_bad_signature", Code.BAD_SIGNATURE)
def _() -> Case:
    w = standard_world()
    good = withdraw(w)
    return Case(w, [withdraw(w, key="maker"), resign(good, high_s(good[-65:])), resign(good, GARBAGE_SIG)])


@case("withdraw_overflow", Code.OVERFLOW)
def _() -> Case:
    w = standard_world()
    patch_account(w, "taker", nonce=U64_LIMIT - 1)  # nonce + 1 does not fit
    patch_global(w, withdrawal_count=U64_LIMIT - 1)  # nor does withdrawal_count + 1
    return Case(w, [withdraw(w, "taker"), withdraw(w, "maker")])


@case("withdraw_insufficient_margin", Code.INSUFFICIENT_MARGIN)
def _() -> Case:
    w = traded()  # the taker's 10 ETH-PERP need 3 USDC of initial margin: leave 1 unit less
    return Case(w, [withdraw(w, amount=w.account("taker").collateral - 3 * USDC + 1)])


@case("withdraw_stale_oracle", Code.STALE_ORACLE)
def _() -> Case:
    w = traded()
    return Case(w, [withdraw(w)], time=stale(w))


# ---------------------------------------------------------------------------- trade

MAKER: dict[str, Any] = {"name": "maker", "market": ETH_PERP, "is_buy": False, "price": 3_000_000, "size": 10,
         "flags": FLAG_POST_ONLY}
TAKER: dict[str, Any] = {"name": "taker", "market": ETH_PERP, "is_buy": True, "price": 3_001_000, "size": 10}


def trade(
    w: World | None = None, size: int = 1, maker: dict[str, Any] | None = None,
    taker: dict[str, Any] | None = None, time: int | None = None,
) -> Case:
    """Maker sells 10 ETH-PERP at 3 000 000 (post-only), taker buys up to 3 001 000,
    each with ``maker``/``taker`` overriding those order fields; one trade of ``size``."""
    w = w or standard_world()
    orders = [w.order(**(MAKER | (maker or {}))), w.order(**(TAKER | (taker or {})))]
    return Case(w, [encode_trade(0, 1, size)], orders, time)


CASES += [
    ("trade_bad_flags", Code.BAD_FLAGS, lambda: trade(maker={"flags": 0x10 | FLAG_POST_ONLY})),
    ("trade_market_mismatch", Code.MARKET_MISMATCH, lambda: trade(taker={"market": BTC_PERP})),
    ("trade_same_side", Code.SAME_SIDE, lambda: trade(taker={"is_buy": False})),
    ("trade_self_trade", Code.SELF_TRADE, lambda: trade(taker={"name": "maker"})),
    ("trade_post_only_taker", Code.POST_ONLY_TAKER, lambda: trade(taker={"flags": FLAG_POST_ONLY})),
    ("trade_unknown_market", Code.UNKNOWN_MARKET, lambda: trade(maker={"market": 9}, taker={"market": 9})),
    ("trade_tick_size", Code.TICK_SIZE, lambda: trade(maker={"price": 3_000_500})),
    ("trade_order_overfill", Code.ORDER_OVERFILL, lambda: trade(size=11)),
    ("trade_reduce_only", Code.REDUCE_ONLY, lambda: trade(taker={"flags": FLAG_REDUCE_ONLY})),
    ("trade_order_expired", Code.ORDER_EXPIRED, on(standard_world, lambda w: trade(w, maker={"expiry": w.time}))),
    ("trade_insufficient_margin", Code.INSUFFICIENT_MARGIN, lambda: initial_margin_trade(1)),
    ("trade_reducing_below_threshold", Code.INSUFFICIENT_MARGIN, lambda: reducing_trade(352_839_999)),
    ("trade_maker_insufficient_margin", Code.INSUFFICIENT_MARGIN, lambda: maker_margin_trade(1)),
    ("trade_stale_oracle", Code.STALE_ORACLE, on(standard_world, lambda w: trade(w, time=stale(w)))),
    ("trade_market_settled", Code.MARKET_SETTLED,
     lambda: trade(settled(standard_world()), maker={"market": ETH_CALL, "price": 40_000},
                   taker={"market": ETH_CALL, "price": 40_000})),
    ("trade_market_expired", Code.MARKET_EXPIRED,
     lambda: trade(maker={"market": ETH_CALL, "price": 40_000}, taker={"market": ETH_CALL, "price": 40_000},
                   time=EXPIRY)),
    ("trade_lot_size", Code.LOT_SIZE,
     lambda: trade(lot_world(), size=5, maker={"market": LOT_PERP}, taker={"market": LOT_PERP})),
]


def initial_margin_trade(shortfall: int) -> Case:
    """The taker buys 100 ETH-PERP at 3 000 000 with a deposit that leaves its equity
    ``shortfall`` below the initial requirement (30 USDC) once the 0.15 USDC fee is paid."""
    w = standard_world(("maker",))
    w.deposit("taker", 30_150_000 - shortfall)
    return trade(w, size=100, maker={"size": 100}, taker={"size": 100, "price": 3_000_000})


def maker_margin_trade(shortfall: int) -> Case:
    """The maker sells 100 ETH-PERP at 3 000 000 with a deposit that leaves its equity
    ``shortfall`` below the initial requirement (30 USDC) once the 0.03 USDC rebate is paid."""
    w = standard_world(("taker",))
    w.deposit("maker", 29_970_000 - shortfall)
    return trade(w, size=100, maker={"size": 100}, taker={"size": 100, "price": 3_000_000})


def reducing_trade(deposit: int) -> Case:
    """The target (long 1000 ETH-PERP from 3 000 000, ``deposit`` collateral) sells 100 at
    the 2 800 000 mark. It is below its initial margin before and after, so the sale is
    allowed iff its equity after the 0.14 USDC fee is ≥ its liquidation threshold
    (900 × 2.8 × (5% + 1%) = 151.2 USDC): iff deposit ≥ 352.84 USDC."""
    w = opened(deposit=deposit)
    publish(w, 2_800_000)
    orders = [w.order("maker", ETH_PERP, True, 2_800_000, 100, FLAG_POST_ONLY),
              w.order("target", ETH_PERP, False, 2_800_000, 100)]
    return Case(w, [encode_trade(0, 1, 100)], orders)


@case("trade_bad_order_ref", Code.BAD_ORDER_REF)
def _() -> Case:
    c = trade()
    malformed = bytearray(c.orders[1])
    malformed[5] = 2  # is_buy ∉ {0, 1}
    c.orders.append(bytes(malformed))
    c.steps = [encode_trade(0, 0, 1), encode_trade(0, 3, 1), encode_trade(0, 2, 1)]
    return c


@case("trade_unknown_account", Code.UNKNOWN_ACCOUNT)
def _() -> Case:
    c = trade()
    c.orders[1] = entry(c.world, OrderBody(9, ETH_PERP, True, 0, 3_001_000, 10, NEVER, 99), "taker")
    return c


@case("trade_bad_signature", Code.BAD_SIGNATURE)
def _() -> Case:
    c = trade()
    w, good = c.world, c.orders[1]
    body = w.body("taker", ETH_PERP, True, 3_001_000, 10)
    c.orders += [entry(w, body, "maker", "taker"), resign(good, high_s(good[-65:])), resign(good, GARBAGE_SIG)]
    c.steps = [encode_trade(0, 2, 1), encode_trade(0, 3, 1), encode_trade(0, 4, 1)]
    return c


@case("trade_bad_amount", Code.BAD_AMOUNT)
def _() -> Case:
    c = trade()
    c.steps = [encode_trade(0, 1, 0), encode_trade(0, 1, SIZE_LIMIT)]
    return c


@case("trade_bad_price", Code.BAD_PRICE)
def _() -> Case:
    c = trade(maker={"price": 0})
    c.orders.append(c.world.order(**(MAKER | {"price": PRICE_LIMIT})))
    c.steps.append(encode_trade(2, 1, 1))
    return c


@case("trade_price_limit", Code.PRICE_LIMIT)
def _() -> Case:
    c = trade(taker={"price": 2_999_000})  # buying taker below the maker's price
    w = c.world
    c.orders += [w.order(**(MAKER | {"is_buy": True})), w.order(**(TAKER | {"is_buy": False}))]
    c.steps.append(encode_trade(2, 3, 1))  # selling taker above the maker's price
    return c


@case("trade_order_cancelled", Code.ORDER_CANCELLED)
def _() -> Case:
    c = trade()
    w = c.world
    body = w.body("maker", ETH_PERP, False, 3_000_000, 10, FLAG_POST_ONLY)
    c.orders[0] = entry(w, body, "maker")
    assert w.run1(signed_cancel(w.key("maker"), w.address("maker"), w.domain, 0, body), c.orders).code == Code.OK
    return c


@case("trade_no_mark", Code.NO_PRICE)
def _() -> Case:
    w = World()
    for name in ("maker", "taker"):
        w.deposit(name, 100_000 * USDC)
    return trade(w)


@case("trade_option_no_index", Code.NO_PRICE)
def _() -> Case:
    w = World()
    for name in ("maker", "taker"):
        w.deposit(name, 100_000 * USDC)
    assert w.set_prices({ETH_CALL: 40_000}).code == Code.OK  # a mark but no ETH index
    return trade(w, maker={"market": ETH_CALL, "price": 40_000}, taker={"market": ETH_CALL, "price": 40_000})


@case("trade_too_many_positions", Code.TOO_MANY_POSITIONS)
def _() -> Case:
    w = World(markets=[Market(KIND_PERP, i % 16, 1000, 500, 1_000, 1, 0, 0, 3) for i in range(17)])
    for name in ("maker", "taker"):
        w.deposit(name, 100_000 * USDC)
    assert w.set_prices({i: 1_000_000 for i in range(17)}, {u: 1_000_000 for u in range(16)}).code == Code.OK
    orders = [w.order(n, m, n == "taker", 1_000_000, 1) for m in range(17) for n in ("maker", "taker")]
    assert [r.code for r in w.run([encode_trade(2 * m, 2 * m + 1, 1) for m in range(16)], orders)] == [Code.OK] * 16
    assert len(w.account("taker").positions) == 16
    return Case(w, [encode_trade(32, 33, 1)], orders)


@case("trade_fee_pool_overflow", Code.OVERFLOW)
def _() -> Case:
    c = trade()  # fee 1 500 − rebate 300 for 1 unit at 3 000 000: exactly reaches the bound
    patch_global(c.world, fee_pool=POOL_LIMIT - 1_200)
    return c


# ---------------------------------------------------------------------------- cancel


def cancel(w: World, body: OrderBody, ref: int = 0, key: str = "maker") -> bytes:
    return signed_cancel(w.key(key), w.address("maker"), w.domain, ref, body)


def cancel_case(key: str = "maker", ref: int = 0, account: int | None = None) -> Case:
    """A cancel of the maker's order table entry 0, signed by ``key``."""
    w = standard_world()
    body = w.body("maker", ETH_PERP, False, 3_000_000, 10)
    if account is not None:
        body = replace(body, account=account)
    return Case(w, [cancel(w, body, ref, key)], [entry(w, body, "maker")])


CASES += [
    ("cancel_bad_order_ref", Code.BAD_ORDER_REF, lambda: cancel_case(ref=1)),
    ("cancel_unknown_account", Code.UNKNOWN_ACCOUNT, lambda: cancel_case(account=9)),
]


@case("cancel_bad_signature", Code.BAD_SIGNATURE)
def _() -> Case:
    c = cancel_case()
    good = c.steps[0]
    order = decode_order_entry(c.orders[0])
    assert order is not None
    c.steps = [cancel(c.world, order.body, key="taker"), resign(good, high_s(good[-65:])), resign(good, GARBAGE_SIG)]
    return c


@case("cancel_already_cancelled", Code.ALREADY_CANCELLED)
def _() -> Case:
    c = cancel_case()
    assert c.world.run1(c.steps[0], c.orders).code == Code.OK
    return c


# ---------------------------------------------------------------------------- oracle


def oracle(w: World, entries: Sequence[OracleEntry], sigs: Sequence[bytes], timestamp: int | None = None) -> bytes:
    """An oracle step with exactly these entries and signatures."""
    return encode_oracle(w.time if timestamp is None else timestamp, tuple(entries), list(sigs))


def oracle_sig(w: World, key: bytes, entries: Sequence[OracleEntry], timestamp: int | None = None) -> bytes:
    ts = w.time if timestamp is None else timestamp
    return sign_digest(key, oracle_digest(w.domain, ts, keccak256(encode_oracle_entries(tuple(entries)))))


def signed(w: World, entries: Sequence[OracleEntry], timestamp: int | None = None) -> bytes:
    """An oracle step signed by the first oracle key."""
    return oracle(w, entries, [oracle_sig(w, w.oracle_keys[0], entries, timestamp)], timestamp)


ETH_AT = OracleEntry(ETH_PERP, 3_010_000, 0)


@case("oracle_not_monotonic", Code.ORACLE_NOT_MONOTONIC)
def _() -> Case:
    w = standard_world()
    ts = w.prices().oracle_time
    return Case(w, [signed(w, [ETH_AT], ts)], time=ts + 5)


@case("oracle_future", Code.ORACLE_FUTURE)
def _() -> Case:
    w = standard_world()
    return Case(w, [signed(w, [ETH_AT], w.time + 1)], time=w.time)


@case("oracle_bad_price", Code.BAD_PRICE)
def _() -> Case:
    w = standard_world()
    w.time += 1
    idx = ORACLE_UNDERLYING_BASE
    bad = [
        [OracleEntry(ETH_PERP, 0, 0)],  # price 0
        [OracleEntry(ETH_PERP, PRICE_LIMIT, 0)],  # price ≥ 2⁴⁸
        [ETH_AT, ETH_AT],  # ids not strictly increasing
        [OracleEntry(BTC_PERP, 1, 0), ETH_AT],  # decreasing
        [OracleEntry(len(w.markets), 1, 0)],  # id of no market (< 64)
        [OracleEntry(idx + 16, 1, 0)],  # past the underlyings
        [OracleEntry(255, 1, 0)],
        [OracleEntry(idx + ETH, 3_000_000, 1)],  # iv on an index entry
    ]
    return Case(w, [signed(w, entries) for entries in bad])


@case("oracle_market_settled", Code.MARKET_SETTLED)
def _() -> Case:
    w = settled(standard_world())
    w.time += 1
    return Case(w, [signed(w, [OracleEntry(ETH_CALL, 300_000, 0)])])


def quorum_world() -> World:
    """Traders funded and priced, with an oracle threshold of 2."""
    w = World(oracle_threshold=2)
    for name in ("maker", "taker"):
        w.deposit(name, 100_000 * USDC)
    w.time += 1
    assert w.run1(w.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000}, signers=w.oracle_keys[:2])).code == Code.OK
    w.time += 1
    return w


@case("oracle_quorum", Code.ORACLE_QUORUM)
def _() -> Case:
    w = quorum_world()
    entries = [ETH_AT]
    a, b = (oracle_sig(w, k, entries) for k in w.oracle_keys[:2])
    outsiders = [oracle_sig(w, keccak256(b"outsider-%d" % i), entries) for i in range(2)]
    reencoded = a[:64] + bytes([a[64] - 27])  # v ∈ {0, 1}: the same signer again
    assert recover_signer(oracle_digest(w.domain, w.time, keccak256(encode_oracle_entries(entries))), reencoded) \
        == address_of(w.oracle_keys[0])
    return Case(w, [
        oracle(w, entries, [a]),  # one signer of the two needed
        oracle(w, entries, [a, *outsiders]),  # keys outside the set do not count
        oracle(w, entries, [a, a]),  # the same signer twice …
        oracle(w, entries, [reencoded, a]),  # … however its signature is encoded
        oracle(w, entries, [a, high_s(a)]),  # the malleated twin does not recover
        oracle(w, entries, [GARBAGE_SIG, a]),
        oracle(w, entries, []),
        oracle(w, [OracleEntry(ETH_PERP, 3_010_001, 0)], [a, b]),  # signatures over other entries
    ])


@case("oracle_too_many_signatures", Code.ORACLE_QUORUM)
def _() -> Case:
    """One signature more than the 3 oracle keys (§7.5 step 1), however good the step
    is otherwise, and whatever its other checks would say: nothing is recovered."""
    w = quorum_world()
    assert len(w.chain.oracle_keys) == 3
    entries = [ETH_AT]
    a, b, c = (oracle_sig(w, k, entries) for k in w.oracle_keys)
    stale_ts = w.prices().oracle_time
    stale = [oracle_sig(w, k, entries, stale_ts) for k in w.oracle_keys]
    bad_price = [OracleEntry(ETH_PERP, 0, 0)]
    return Case(w, [
        oracle(w, entries, [b, b, GARBAGE_SIG, c]),  # a quorum among 4 signatures
        oracle(w, entries, [a, b, c, a]),  # every key, then a repeat
        oracle(w, entries, [a, b, c, GARBAGE_SIG]),
        oracle(w, entries, [*stale, stale[0]], stale_ts),  # not monotonic: counted first
        oracle(w, bad_price, [oracle_sig(w, k, bad_price) for k in (*w.oracle_keys, w.oracle_keys[0])]),
        oracle(w, entries, [a, b, *[GARBAGE_SIG] * 253]),  # 255, the most a step encodes
    ])


# ---------------------------------------------------------------------------- funding


@case("funding_too_early", Code.FUNDING_TOO_EARLY)
def _() -> Case:
    w = standard_world()
    assert w.run1(encode_funding()).code == Code.OK
    return Case(w, [encode_funding()])


@case("funding_index_overflow", Code.OVERFLOW)
def _() -> Case:
    w = standard_world()
    assert w.set_prices({ETH_PERP: 3_030_000}, {ETH: 3_000_000}).code == Code.OK  # premium > 0
    prices = w.prices()
    marks = list(prices.markets)
    time = w.time + 1
    accrual = (3_000_000 * 75 // 10_000) * 10**9 * (time - prices.funding_time) // 28_800  # capped
    marks[ETH_PERP] = replace(marks[ETH_PERP], funding_index=FUNDING_INDEX_LIMIT - accrual)
    w.leaves[PRICES_KEY] = replace(prices, markets=tuple(marks)).encode()
    return Case(w, [encode_funding()], time=time)


# ---------------------------------------------------------------------------- settle

CASES += [
    ("settle_unknown_market", Code.UNKNOWN_MARKET, lambda: Case(standard_world(), [encode_settle(4)])),
    ("settle_not_option", Code.NOT_OPTION, lambda: Case(standard_world(), [encode_settle(ETH_PERP)])),
    ("settle_market_settled", Code.MARKET_SETTLED,
     lambda: Case(settled(standard_world()), [encode_settle(ETH_CALL)])),
    ("settle_not_expired", Code.NOT_EXPIRED,
     lambda: Case(standard_world(), [encode_settle(ETH_CALL)], time=EXPIRY - 1)),
]


@case("settle_stale_oracle", Code.STALE_ORACLE)
def _() -> Case:
    """The last oracle update is one second before expiry."""
    w = standard_world()
    w.time = EXPIRY - 2
    assert w.set_prices({}, {ETH: 3_500_000}).code == Code.OK
    assert w.prices().oracle_time == EXPIRY - 1
    return Case(w, [encode_settle(ETH_CALL)], time=EXPIRY)


@case("settle_no_index", Code.NO_PRICE)
def _() -> Case:
    w = World()
    w.time = EXPIRY
    assert w.set_prices({ETH_CALL: 1}).code == Code.OK  # a mark after expiry, no ETH index
    return Case(w, [encode_settle(ETH_CALL)])


# ---------------------------------------------------------------------------- liquidate


def liq(
    w: World | None = None, size: int = 100, target: int = 2, order: dict[str, Any] | None = None,
    time: int | None = None,
) -> Case:
    """liquidatable(): liq's order buys 100 ETH-PERP at the mark; liquidate ``size`` of target."""
    w = w or liquidatable()
    fields: dict[str, Any] = {"name": "liq", "market": ETH_PERP, "is_buy": True, "price": 2_700_000, "size": 100}
    return Case(w, [encode_liquidate(target, 0, size)], [w.order(**(fields | (order or {})))], time)


CASES += [
    ("liquidate_unknown_account", Code.UNKNOWN_ACCOUNT, lambda: liq(target=99)),
    ("liquidate_bad_flags", Code.BAD_FLAGS, lambda: liq(order={"flags": 0x80})),
    ("liquidate_same_account", Code.SAME_ACCOUNT, lambda: liq(order={"name": "target"})),
    ("liquidate_unknown_market", Code.UNKNOWN_MARKET, lambda: liq(order={"market": 9})),
    ("liquidate_market_settled", Code.MARKET_SETTLED,
     lambda: liq(settled(liquidatable()), order={"market": ETH_CALL})),
    ("liquidate_no_price", Code.NO_PRICE, lambda: liq(order={"market": DARK_PERP})),
    ("liquidate_stale_oracle", Code.STALE_ORACLE, on(liquidatable, lambda w: liq(w, time=stale(w)))),
    ("liquidate_bad_amount", Code.BAD_AMOUNT, lambda: liq(size=0)),
    ("liquidate_lot_size", Code.LOT_SIZE, lambda: liq(size=5, order={"market": LOT_PERP})),
    ("liquidate_order_expired", Code.ORDER_EXPIRED, on(liquidatable, lambda w: liq(w, order={"expiry": w.time}))),
    ("liquidate_order_overfill", Code.ORDER_OVERFILL, lambda: liq(size=100, order={"size": 99})),
    ("liquidate_price_limit", Code.PRICE_LIMIT, lambda: liq(order={"price": 2_699_999})),
    ("liquidate_wrong_direction", Code.WRONG_DIRECTION, lambda: liq(order={"is_buy": False})),
    ("liquidate_reduce_only", Code.REDUCE_ONLY, lambda: liq(order={"flags": FLAG_REDUCE_ONLY})),
]


@case("liquidate_bad_order_ref", Code.BAD_ORDER_REF)
def _() -> Case:
    c = liq()
    c.steps = [encode_liquidate(2, 1, 100)]
    return c


@case("liquidate_bad_signature", Code.BAD_SIGNATURE)
def _() -> Case:
    c = liq()
    w = c.world
    c.orders = [entry(w, w.body("liq", ETH_PERP, True, 2_700_000, 100), "bull", "liq")]
    return c


@case("liquidate_order_cancelled", Code.ORDER_CANCELLED)
def _() -> Case:
    c = liq()
    w = c.world
    body = w.body("liq", ETH_PERP, True, 2_700_000, 100)
    c.orders = [entry(w, body, "liq")]
    step = signed_cancel(w.key("liq"), w.address("liq"), w.domain, 0, body)
    assert w.run1(step, c.orders).code == Code.OK
    return c


@case("liquidate_no_position", Code.NO_POSITION)
def _() -> Case:
    c = liq()
    w = c.world
    c.orders += [w.order("liq", BTC_PERP, True, 6_000_000, 100), w.order("liq", ETH_PERP, True, 2_700_000, 1001)]
    c.steps = [encode_liquidate(2, 1, 100), encode_liquidate(2, 2, 1001)]  # no BTC; more than held
    return c


@case("liquidate_insufficient_margin", Code.INSUFFICIENT_MARGIN)
def _() -> Case:
    w = liquidatable()
    w.deposit("poor", USDC)
    return liq(w, order={"name": "poor"})


@case("liquidate_fund_overflow", Code.OVERFLOW)
def _() -> Case:
    c = liq()  # penalty 4 050 000 − bonus 1 350 000 for 100 at 2 700 000: exactly the bound
    patch_global(c.world, insurance_fund=POOL_LIMIT - 2_700_000)
    return c


# ---------------------------------------------------------------------------- deleverage


def dl(target: int = 2, counterparty: int = 1, market: int = ETH_PERP, size: int = 100) -> Case:
    """bankrupt(): deleverage ``size`` of account ``target`` against ``counterparty``."""
    return Case(bankrupt(), [encode_deleverage(target, counterparty, market, size)])


CASES += [
    ("deleverage_same_account", Code.SAME_ACCOUNT, lambda: dl(counterparty=2)),
    ("deleverage_unknown_account", Code.UNKNOWN_ACCOUNT, lambda: dl(counterparty=99)),
    ("deleverage_unknown_market", Code.UNKNOWN_MARKET, lambda: dl(market=9)),
    ("deleverage_no_price", Code.NO_PRICE, lambda: dl(market=DARK_PERP)),
    ("deleverage_bad_amount", Code.BAD_AMOUNT, lambda: dl(size=0)),
    ("deleverage_lot_size", Code.LOT_SIZE, lambda: dl(market=LOT_PERP, size=5)),
    ("deleverage_wrong_direction", Code.WRONG_DIRECTION, lambda: dl(counterparty=4)),  # bull is long too
]


@case("deleverage_market_settled", Code.MARKET_SETTLED)
def _() -> Case:
    c = dl(market=ETH_CALL)
    settled(c.world)
    return c


@case("deleverage_stale_oracle", Code.STALE_ORACLE)
def _() -> Case:
    c = dl()
    c.time = stale(c.world)
    return c


@case("deleverage_no_position", Code.NO_POSITION)
def _() -> Case:
    c = dl(counterparty=3)  # liq holds nothing
    w = c.world
    w.deposit("bear", 100_000 * USDC)
    orders = [w.order("bear", ETH_PERP, False, 2_500_000, 50), w.order("bull", ETH_PERP, True, 2_500_000, 50)]
    assert w.run1(encode_trade(0, 1, 50), orders).code == Code.OK
    c.steps += [
        encode_deleverage(2, w.index["bear"], ETH_PERP, 51),  # more than the counterparty holds
        encode_deleverage(2, 1, ETH_PERP, 1001),  # more than the target holds
    ]
    return c


# ---------------------------------------------------------------------------- forced


def forced(w: World, *items: tuple[str, bytes]) -> Case:
    """Queue (sender, payload) items and consume each with a forced step."""
    for sender, payload in items:
        w.force(sender, payload)
    return Case(w, [encode_forced()] * len(items))


def fw(w: World, name: str = "taker", amount: int = USDC, recipient: bytes = RECIPIENT,
       account: int | None = None) -> bytes:
    return encode_forced_withdraw(w.index[name] if account is None else account, recipient, amount)


def taker_body(w: World, flags: int = 0, account: int | None = None) -> OrderBody:
    """A taker's order body (not in any order table), with these flags and account."""
    body = w.body("taker", ETH_PERP, True, 3_000_000, 10, flags)
    return body if account is None else replace(body, account=account)


CASES += [
    ("forced_queue_empty", Code.QUEUE_EMPTY, lambda: Case(standard_world(), [encode_forced()])),
    ("forced_withdraw_unknown_account", Code.UNKNOWN_ACCOUNT,
     on(standard_world, lambda w: forced(w, ("taker", fw(w, account=9))))),
    ("forced_withdraw_not_owner", Code.NOT_OWNER,
     on(standard_world, lambda w: forced(w, ("maker", fw(w))))),
    ("forced_withdraw_bad_recipient", Code.BAD_RECIPIENT,
     on(standard_world, lambda w: forced(w, ("taker", fw(w, recipient=ZERO))))),
    ("forced_withdraw_bad_amount", Code.BAD_AMOUNT,
     on(standard_world, lambda w: forced(w, ("taker", fw(w, amount=0)), ("taker", fw(w, amount=AMOUNT_LIMIT))))),
    ("forced_withdraw_insufficient_collateral", Code.INSUFFICIENT_COLLATERAL,
     on(standard_world, lambda w: forced(w, ("taker", fw(w, amount=100_000 * USDC + 1))))),
    ("forced_withdraw_insufficient_margin", Code.INSUFFICIENT_MARGIN,
     on(traded, lambda w: forced(w, ("taker", fw(w, amount=w.account("taker").collateral - 3 * USDC + 1))))),
    ("forced_cancel_bad_flags", Code.BAD_FLAGS,
     on(standard_world, lambda w: forced(w, ("taker", encode_forced_cancel(taker_body(w, flags=0x10)))))),
    ("forced_cancel_unknown_account", Code.UNKNOWN_ACCOUNT,
     on(standard_world, lambda w: forced(w, ("taker", encode_forced_cancel(taker_body(w, account=9)))))),
    ("forced_cancel_not_owner", Code.NOT_OWNER,
     on(standard_world, lambda w: forced(w, ("maker", encode_forced_cancel(taker_body(w)))))),
]


@case("forced_invalid_encoding", Code.INVALID_ENCODING)
def _() -> Case:
    w = standard_world()
    body = taker_body(w).encode()
    return forced(
        w, ("taker", b""), ("taker", b"\x03" + fw(w)[1:]), ("taker", fw(w)[:-1]),
        ("taker", b"\x04" + body[:5] + b"\x02" + body[6:]),  # is_buy = 2
        ("taker", encode_forced_cancel(taker_body(w)) + b"\x00"),
    )


@case("forced_withdraw_stale_oracle", Code.STALE_ORACLE)
def _() -> Case:
    w = traded()
    c = forced(w, ("taker", fw(w)))
    c.time = stale(w)
    return c


@case("forced_cancel_already_cancelled", Code.ALREADY_CANCELLED)
def _() -> Case:
    w = standard_world()
    body = taker_body(w)
    w.force("taker", encode_forced_cancel(body))
    assert w.run1(encode_forced()).code == Code.OK
    return forced(w, ("taker", encode_forced_cancel(body)))


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize(("name", "code", "build"), CASES, ids=[c[0] for c in CASES])
def test_refused(name: str, code: Code, build: Callable[[], Case]) -> None:
    assert_refused(name, build(), code)


def test_every_refusal_code_has_a_case() -> None:
    names = [n for n, _, _ in CASES]
    assert len(names) == len(set(names))
    covered = {code for _, code, _ in CASES}
    covered |= {Code.NOT_LIQUIDATABLE, Code.DELEVERAGE_REQUIRED, Code.NOT_BANKRUPT}  # test_stf_liquidation
    assert covered == set(Code) - {Code.OK}


def test_signature_variants_are_what_they_claim() -> None:
    w = standard_world()
    step = withdraw(w)
    digest_owner = w.address("taker")
    digest = withdraw_digest(w.domain, digest_owner, RECIPIENT, USDC, 0)
    good = step[-65:]
    assert recover_signer(digest, good) == digest_owner
    assert recover_signer(digest, withdraw(w, key="maker")[-65:]) == w.address("maker")
    twin = high_s(good)
    raw = PublicKey.from_signature_and_message(twin[:64] + bytes([twin[64] - 27]), digest, hasher=None)
    assert keccak256(raw.format(compressed=False)[1:])[12:] == digest_owner  # valid ECDSA …
    assert recover_signer(digest, twin) is None  # … refused as high-s
    assert recover_signer(digest, GARBAGE_SIG) != digest_owner


@pytest.mark.parametrize(("extra", "code"), [(0, Code.OK), (1, Code.ORACLE_QUORUM)])
def test_oracle_signature_count_boundary(extra: int, code: Code) -> None:
    """The same update, signed by every oracle key, is accepted with as many
    signatures as keys and refused, changing nothing, with one more."""
    w = quorum_world()
    sigs = [oracle_sig(w, k, [ETH_AT]) for k in w.oracle_keys] + [GARBAGE_SIG] * extra
    assert len(sigs) == len(w.chain.oracle_keys) + extra
    before = dict(w.leaves)
    assert w.run1(oracle(w, [ETH_AT], sigs)).code == code
    assert (w.leaves == before) == (code != Code.OK)


# ---------------------------------------------------------------------------- accepted baselines


def _ok_trade() -> Case:
    """N = 3 × 3 001 000: fee ⌈4 501.5⌉, rebate ⌊900.3⌋."""
    return trade(size=3, maker={"price": 3_001_000})


def _ok_trade_partial_close() -> Case:
    """The taker buys 1 at 3 000 000 and 2 at 3 001 000 (cost −9 002 000), then sells 1:
    the cost released is ⌊−9 002 000 / 3⌋ = −3 000 667, rounded down."""
    w = standard_world()
    orders = [
        w.order("maker", ETH_PERP, False, 3_000_000, 1), w.order("maker", ETH_PERP, False, 3_001_000, 2),
        w.order("taker", ETH_PERP, True, 3_001_000, 3),
        w.order("maker", ETH_PERP, True, 3_000_000, 1), w.order("taker", ETH_PERP, False, 3_000_000, 1),
    ]
    return Case(w, [encode_trade(0, 2, 1), encode_trade(1, 2, 2), encode_trade(3, 4, 1)], orders)


def _ok_trade_at_initial_margin() -> Case:
    return initial_margin_trade(0)


def _ok_trade_reducing_to_threshold() -> Case:
    return reducing_trade(352_840_000)


def _ok_trade_maker_at_initial_margin() -> Case:
    return maker_margin_trade(0)


def _ok_deposit() -> Case:
    w = standard_world(("a",))
    w.queues.deposits += [L1Deposit(w.address("b"), 7), L1Deposit(w.address("a"), AMOUNT_LIMIT - 1)]
    return Case(w, [encode_deposit(), encode_deposit()])


def _ok_withdraw() -> Case:
    w = traded()
    return Case(w, [withdraw(w, amount=w.account("taker").collateral - 3 * USDC)])


def _ok_cancel() -> Case:
    return cancel_case()


def _ok_oracle() -> Case:
    """As many signatures as oracle keys (3; one more is refused, §7.5 step 1), a
    repeated one among them: two distinct signers meet the threshold of 2."""
    w = quorum_world()
    entries = [ETH_AT, OracleEntry(ETH_CALL, 41_000, 610_000), OracleEntry(ORACLE_UNDERLYING_BASE + ETH, 3_005_000, 0)]
    sigs = [oracle_sig(w, k, entries) for k in w.oracle_keys[1:]]
    assert len(w.chain.oracle_keys) == 3
    return Case(w, [oracle(w, entries, [sigs[0], sigs[0], sigs[1]])])


def _ok_funding() -> Case:
    w = standard_world()
    assert w.set_prices({ETH_PERP: 3_030_000, BTC_PERP: 5_990_000}, {ETH: 3_000_000, BTC: 6_000_000}).code == Code.OK
    return Case(w, [encode_funding()], time=w.time + 3_600)


def _ok_settle() -> Case:
    """Settle the call, then a withdrawal normalises the taker: its long call is paid."""
    w = traded()
    orders = [w.order("maker", ETH_CALL, False, 40_000, 5), w.order("taker", ETH_CALL, True, 40_000, 5)]
    assert w.run1(encode_trade(0, 1, 5), orders).code == Code.OK
    w.time = EXPIRY - 1
    assert w.set_prices({}, {ETH: 3_500_000}).code == Code.OK  # at expiry exactly
    return Case(w, [encode_settle(ETH_CALL), withdraw(w)])


def _ok_forced() -> Case:
    w = traded()
    cancel = encode_forced_cancel(w.body("maker", ETH_PERP, False, 3_000_000, 1))
    return forced(w, ("taker", fw(w, amount=5 * USDC)), ("maker", cancel))


@pytest.mark.parametrize("build", [
    _ok_deposit, _ok_withdraw, _ok_trade, _ok_trade_partial_close, _ok_trade_at_initial_margin,
    _ok_trade_maker_at_initial_margin, _ok_trade_reducing_to_threshold,
    _ok_cancel, _ok_oracle, _ok_funding, _ok_settle, _ok_forced,
], ids=lambda f: f.__name__[1:])
def test_accepted(build: Callable[[], Case]) -> None:
    """The refused steps' well-formed variants are accepted (and are vectors)."""
    c = build()
    before = dict(c.world.leaves)
    receipts = check_vector(build.__name__[1:], c.world, c.steps, c.orders, c.time)
    assert [r.code for r in receipts] == [Code.OK] * len(c.steps)
    assert c.world.leaves != before
