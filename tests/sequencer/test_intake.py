"""Intake: parsing, EIP-712 signatures (eth-account compatible), and every named refusal.

Every refusal must raise IntakeError with its stable code and leave the core
exactly as it was (root, open batch, books, pending state, de-duplication
memory, clock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account as EthAccount

from sequencer.intake import (
    CancelSubmission,
    IntakeError,
    OrderSubmission,
    WithdrawSubmission,
    parse_cancel,
    parse_order,
    parse_withdraw,
)
from sequencer.orders import FLAG_FOK, FLAG_IOC, FLAG_POST_ONLY, FLAG_REDUCE_ONLY, Status
from sequencer.typed_data import cancel_typed_data, order_typed_data, withdraw_typed_data
from state.constants import KIND_PERP
from state.eip712 import SECP256K1_N, order_digest
from state.layout import Market
from state.txs import OrderBody
from tests.sequencer.harness import NEVER, T0, USDC, Desk
from tests.world import ETH, ETH_CALL, ETH_PERP, World, default_markets


@pytest.fixture
def desk() -> Desk:
    return Desk.create()


def refused(desk: Desk, code: str, call: Callable[[], object]) -> IntakeError:
    """``call`` raises IntakeError(code) and changes nothing."""
    before = desk.state()
    with pytest.raises(IntakeError) as info:
        call()
    assert info.value.code == code, info.value
    assert desk.state() == before
    return info.value


def sub_with(desk: Desk, name: str, body: OrderBody, **changes: Any) -> OrderSubmission:
    """A correctly signed order whose fields then get ``changes`` (the signature stays)."""
    sub = OrderSubmission.from_entry(desk.entry(name, body))
    fields = {f: getattr(sub, f) for f in OrderSubmission.__dataclass_fields__}
    fields.update(changes, entry=None)
    return OrderSubmission(**fields)


def signed_fields(desk: Desk, name: str, **fields: int) -> OrderSubmission:
    """An order signed over arbitrary field values (the field form, by trader address)."""
    f = {"market": ETH_PERP, "is_buy": True, "price": 3_000_000, "size": 1, "flags": 0,
         "expiry": NEVER, "salt": next(desk.salts)}
    f.update(fields)
    digest = order_digest(
        desk.world.domain, desk.address(name), f["market"], bool(f["is_buy"]), f["price"] % (1 << 64),
        f["size"] % (1 << 64), f["flags"] % 256, f["expiry"] % (1 << 64), f["salt"] % (1 << 64),
    )
    from state.eip712 import sign_digest

    return OrderSubmission(
        None, desk.address(name), f["market"], bool(f["is_buy"]), f["price"], f["size"], f["flags"],
        f["expiry"], f["salt"], sign_digest(desk.key(name), digest),
    )


# ============================================================================ parsing


def test_parse_order_entry_and_fields(desk: Desk) -> None:
    body = desk.body("maker", ETH_PERP, False, 3_001_000, 7)
    entry = desk.entry("maker", body)
    a = parse_order({"entry": "0x" + entry.hex(), "marketOrder": False})
    assert (a.account, a.price, a.size, a.salt, a.signature) == (body.account, 3_001_000, 7, body.salt, entry[39:])
    b = parse_order({
        "trader": "0x" + desk.address("maker").hex(), "market": 0, "isBuy": False, "price": "3001000",
        "size": 7, "flags": 0, "expiry": hex(NEVER), "salt": body.salt, "signature": "0x" + entry[39:].hex(),
    })
    assert b.trader == desk.address("maker") and b.account is None and b.expiry == NEVER
    assert desk.ex.place_order(b, desk.now).account == body.account


@pytest.mark.parametrize("params", [
    {},
    {"entry": "0x1234"},
    {"entry": "nothex"},
    {"entry": "0x" + "00" * 5 + "02" + "00" * 98},  # is_buy = 2
    {"trader": "0x" + "11" * 20, "market": 0, "isBuy": 1, "price": 1, "size": 1, "expiry": 1,
     "salt": 1, "signature": "0x" + "00" * 65},  # isBuy not a boolean
    {"trader": "0x" + "11" * 20, "market": 0, "isBuy": True, "price": -1, "size": 1, "expiry": 1,
     "salt": 1, "signature": "0x" + "00" * 65},
    {"trader": "0x" + "11" * 20, "market": 0, "isBuy": True, "price": True, "size": 1, "expiry": 1,
     "salt": 1, "signature": "0x" + "00" * 65},
    {"trader": "0x" + "11" * 20, "market": 0, "isBuy": True, "price": 1, "size": 1, "expiry": 1,
     "salt": 1, "signature": "0x" + "00" * 64},
    {"trader": "0x11", "market": 0, "isBuy": True, "price": 1, "size": 1, "expiry": 1, "salt": 1,
     "signature": "0x" + "00" * 65},
    {"market": 0, "isBuy": True, "price": 1, "size": 1, "expiry": 1, "salt": 1,
     "signature": "0x" + "00" * 65},  # no trader
    {"trader": "0x" + "11" * 20, "market": 0, "isBuy": True, "price": "1.5", "size": 1,
     "expiry": 1, "salt": 1, "signature": "0x" + "00" * 65},
])
def test_parse_order_bad_fields(params: dict[str, object]) -> None:
    with pytest.raises(IntakeError) as info:
        parse_order(params)
    assert info.value.code == "BAD_FIELD"


def test_parse_cancel_and_withdraw() -> None:
    c = parse_cancel({"orderHash": "0x" + "ab" * 32, "signature": "0x" + "01" * 65})
    assert c.entry is None and c.order_hash == b"\xab" * 32
    w = parse_withdraw({"account": 3, "recipient": "0x" + "22" * 20, "amount": "5", "nonce": 0,
                        "signature": "0x" + "01" * 65})
    assert (w.account, w.amount, w.nonce) == (3, 5, 0)
    for bad in ({"orderHash": "0x00", "signature": "0x" + "01" * 65}, {"signature": "0x" + "01" * 65}):
        with pytest.raises(IntakeError, match="BAD_FIELD"):
            parse_cancel(bad)
    with pytest.raises(IntakeError, match="BAD_FIELD"):
        parse_withdraw({"account": 3, "recipient": "0x22", "amount": 5, "nonce": 0, "signature": "0x" + "01" * 65})


# ============================================================================ eth-account


def test_eth_account_typed_data_order_cancel_withdraw(desk: Desk) -> None:
    """A trader signing the documented typed data with eth-account gets accepted."""
    key = desk.key("maker")
    trader = desk.address("maker")
    chain = desk.world.chain
    typed = order_typed_data(chain, trader, ETH_PERP, False, 3_005_000, 3, FLAG_POST_ONLY, NEVER, 424242)
    signed = EthAccount.sign_typed_data(key, full_message=typed)
    params = {"trader": "0x" + trader.hex(), "market": 0, "isBuy": False, "price": 3_005_000, "size": 3,
              "flags": FLAG_POST_ONLY, "expiry": str(NEVER), "salt": 424242,
              "signature": "0x" + bytes(signed.signature).hex()}
    outcome = desk.ex.place_order(parse_order(params), desk.now)
    assert outcome.status is Status.RESTING and outcome.resting == 3
    digest = outcome.order_hash
    assert bytes(signed.message_hash) == digest
    # the same order as a 104-byte entry is a duplicate
    body = OrderBody(desk.index["maker"], ETH_PERP, False, FLAG_POST_ONLY, 3_005_000, 3, NEVER, 424242)
    refused(desk, "DUPLICATE_ORDER", lambda: desk.ex.place_order(
        OrderSubmission.from_entry(body.encode() + bytes(signed.signature)), desk.now))
    # cancel, signed with eth-account
    csig = EthAccount.sign_typed_data(key, full_message=cancel_typed_data(chain, trader, digest)).signature
    cancelled = desk.ex.cancel_order(parse_cancel({"orderHash": "0x" + digest.hex(), "signature": "0x" + bytes(csig).hex()}), desk.now)
    assert cancelled.remaining == 3 and desk.ex.order(digest) is None
    # withdraw, signed with eth-account
    wsig = EthAccount.sign_typed_data(key, full_message=withdraw_typed_data(chain, trader, trader, 5 * USDC, 0)).signature
    out = desk.ex.withdraw(parse_withdraw({"trader": "0x" + trader.hex(), "recipient": "0x" + trader.hex(),
                                          "amount": 5 * USDC, "nonce": 0, "signature": "0x" + bytes(wsig).hex()}), desk.now)
    assert out.withdrawal_id == 0 and desk.ex.account(desk.index["maker"]).nonce == 1  # type: ignore[union-attr]


# ============================================================================ order refusals


def test_order_refusals_by_field(desk: Desk) -> None:
    ok = desk.body("maker", ETH_PERP, False, 3_001_000, 5)
    ex, now = desk.ex, desk.now
    cases: list[tuple[str, OrderSubmission]] = [
        ("UNKNOWN_MARKET", signed_fields(desk, "maker", market=9)),
        ("BAD_FLAGS", signed_fields(desk, "maker", flags=0x10)),
        ("BAD_FLAGS", signed_fields(desk, "maker", flags=FLAG_POST_ONLY | FLAG_IOC)),
        ("BAD_FLAGS", signed_fields(desk, "maker", flags=FLAG_POST_ONLY | FLAG_FOK)),
        ("BAD_FIELD", signed_fields(desk, "maker", flags=256)),
        ("BAD_PRICE", signed_fields(desk, "maker", price=0)),
        ("BAD_PRICE", signed_fields(desk, "maker", price=1 << 48)),
        ("BAD_PRICE", signed_fields(desk, "maker", price=(1 << 64) - 1000)),
        ("BAD_SIZE", signed_fields(desk, "maker", size=0)),
        ("BAD_SIZE", signed_fields(desk, "maker", size=1 << 40)),
        ("BAD_FIELD", signed_fields(desk, "maker", expiry=1 << 64)),
        ("BAD_FIELD", signed_fields(desk, "maker", salt=1 << 64)),
        ("TICK_SIZE", signed_fields(desk, "maker", price=3_000_500)),
        ("ORDER_EXPIRED", signed_fields(desk, "maker", expiry=now)),
        ("UNKNOWN_ACCOUNT", signed_fields(desk, "nobody")),
        ("BAD_SIGNATURE", sub_with(desk, "maker", ok, price=3_002_000)),
        ("BAD_SIGNATURE", sub_with(desk, "maker", ok, account=desk.index["taker"])),
        ("BAD_FIELD", sub_with(desk, "maker", ok, account=1 << 32)),
        ("BAD_FIELD", sub_with(desk, "maker", ok, trader=desk.address("taker"))),
        ("BAD_FIELD", sub_with(desk, "maker", ok, signature=b"\x00" * 64)),
        ("BAD_FLAGS", OrderSubmission.from_entry(desk.entry("maker", desk.body("maker", 0, True, 3_000_000, 1, FLAG_POST_ONLY)), market_order=True)),
    ]
    for code, sub in cases:
        refused(desk, code, lambda sub=sub: ex.place_order(sub, now))  # type: ignore[misc]


def test_bad_signatures_low_s_and_wrong_signer(desk: Desk) -> None:
    body = desk.body("maker", ETH_PERP, False, 3_001_000, 5)
    entry = desk.entry("maker", body)
    r, s, v = entry[39:71], int.from_bytes(entry[71:103], "big"), entry[103]
    twin = body.encode() + r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v ^ 1])
    refused(desk, "BAD_SIGNATURE", lambda: desk.ex.place_order(OrderSubmission.from_entry(twin), desk.now))
    wrong = desk.entry("taker", body)  # signed by someone else over the maker's account
    refused(desk, "BAD_SIGNATURE", lambda: desk.ex.place_order(OrderSubmission.from_entry(wrong), desk.now))
    garbage = body.encode() + b"\xff" * 65
    refused(desk, "BAD_SIGNATURE", lambda: desk.ex.place_order(OrderSubmission.from_entry(garbage), desk.now))
    assert desk.ex.place_order(OrderSubmission.from_entry(entry), desk.now).status is Status.RESTING


def test_lot_size() -> None:
    markets = default_markets()
    markets[0] = Market(KIND_PERP, ETH, 1000, 500, 1_000, 10, 0, 0, 3)
    desk = Desk.create(world=World(markets=markets))
    refused(desk, "LOT_SIZE", lambda: desk.place("maker", ETH_PERP, True, 2_999_000, 15))
    assert desk.place("maker", ETH_PERP, True, 2_999_000, 20).status is Status.RESTING


def test_duplicates(desk: Desk) -> None:
    ex = desk.ex
    resting = desk.order("maker", ETH_PERP, False, 3_001_000, 5)
    assert ex.place_order(resting, desk.now).status is Status.RESTING
    refused(desk, "DUPLICATE_ORDER", lambda: ex.place_order(resting, desk.now))
    ioc = desk.order("taker", ETH_PERP, True, 2_000_000, 5, flags=FLAG_IOC)  # crosses nothing
    assert ex.place_order(ioc, desk.now).status is Status.CANCELLED
    refused(desk, "DUPLICATE_ORDER", lambda: ex.place_order(ioc, desk.now))
    taker = desk.order("taker", ETH_PERP, True, 3_001_000, 5)
    assert ex.place_order(taker, desk.now).status is Status.FILLED
    refused(desk, "DUPLICATE_ORDER", lambda: ex.place_order(taker, desk.now))
    refused(desk, "DUPLICATE_ORDER", lambda: ex.place_order(resting, desk.now))  # filled maker
    ex.close_batch(desk.now)  # still refused once the fills are committed
    refused(desk, "DUPLICATE_ORDER", lambda: ex.place_order(taker, desk.now))
    # an engine refusal (post-only crossing) is not remembered: the same order may come back
    ex.place_order(desk.order("maker", ETH_PERP, False, 3_001_000, 5), desk.now)
    cross = desk.order("taker", ETH_PERP, True, 3_001_000, 1, flags=FLAG_POST_ONLY)
    assert ex.place_order(cross, desk.now).status is Status.REFUSED
    assert ex.place_order(cross, desk.now).status is Status.REFUSED


def test_margin_precheck(desk: Desk) -> None:
    desk.fund(["poor"], 100 * USDC)  # 100 USDC: 10% of ~1 ETH of notional
    # 0.5 ETH at 3000 = 1500 USDC notional, IM 150 USDC > 100
    refused(desk, "INSUFFICIENT_MARGIN", lambda: desk.place("poor", ETH_PERP, True, 3_000_000, 500))
    refused(desk, "INSUFFICIENT_MARGIN", lambda: desk.place("poor", ETH_PERP, False, 3_001_000, 500, flags=FLAG_POST_ONLY))
    # a buy far above the mark loses its equity at once
    refused(desk, "INSUFFICIENT_MARGIN", lambda: desk.place("poor", ETH_PERP, True, 3_400_000, 300))
    assert desk.place("poor", ETH_PERP, True, 2_999_000, 200).status is Status.RESTING
    # options: writing 1000 calls needs ~250 USDC of margin; buying them needs none
    refused(desk, "INSUFFICIENT_MARGIN", lambda: desk.place("poor", ETH_CALL, False, 40_000, 1000))
    assert desk.place("poor", ETH_CALL, True, 40_000, 1000).status is Status.RESTING
    # reduce-only with no position: the engine refuses it (an outcome, not an intake error)
    assert desk.place("poor", ETH_PERP, False, 3_001_000, 1, flags=FLAG_REDUCE_ONLY).status is Status.REFUSED


def test_market_state_refusals() -> None:
    desk = Desk.create(prices=False)
    refused(desk, "NO_PRICE", lambda: desk.place("maker", ETH_PERP, False, 3_001_000, 1))
    desk.prices()
    desk.now += 61  # max_oracle_age is 60 s; freshness is judged at the batch's time
    assert desk.place("maker", ETH_PERP, False, 3_002_000, 1).status is Status.RESTING
    desk.ex.close_batch(desk.now)
    refused(desk, "STALE_ORACLE", lambda: desk.place("maker", ETH_PERP, False, 3_001_000, 1))
    desk.prices()
    assert desk.place("maker", ETH_CALL, False, 40_000, 1).status is Status.RESTING
    desk.now = T0 + 7 * 86_400
    refused(desk, "MARKET_EXPIRED", lambda: desk.place("maker", ETH_CALL, False, 40_000, 1))


def test_option_settled_refused() -> None:
    desk = Desk.create()
    desk.now = T0 + 7 * 86_400 + 5
    desk.prices()
    desk.ex.settle(ETH_CALL, desk.now)
    assert desk.ex.view.prices().markets[ETH_CALL].settled
    refused(desk, "MARKET_SETTLED", lambda: desk.place("maker", ETH_CALL, False, 40_000, 1))


# ============================================================================ withdrawals


def test_withdraw_refusals(desk: Desk) -> None:
    ex, now = desk.ex, desk.now
    first = desk.withdrawal("maker", 10 * USDC, 0)
    assert ex.withdraw(first, now).withdrawal_id == 0
    refused(desk, "NONCE_REPLAYED", lambda: ex.withdraw(first, now))
    refused(desk, "BAD_NONCE", lambda: ex.withdraw(desk.withdrawal("maker", 1, 5), now))
    refused(desk, "BAD_AMOUNT", lambda: ex.withdraw(desk.withdrawal("maker", 0, 1), now))
    refused(desk, "BAD_AMOUNT", lambda: ex.withdraw(desk.withdrawal("maker", 1 << 63, 1), now))
    refused(desk, "BAD_RECIPIENT", lambda: ex.withdraw(desk.withdrawal("maker", 1, 1, b"\x00" * 20), now))
    refused(desk, "INSUFFICIENT_COLLATERAL", lambda: ex.withdraw(desk.withdrawal("maker", 10**12 * USDC, 1), now))
    forged = desk.withdrawal("maker", 1, 1)
    bad = WithdrawSubmission(forged.account, None, forged.recipient, 2, 1, forged.signature)
    refused(desk, "BAD_SIGNATURE", lambda: ex.withdraw(bad, now))
    refused(desk, "UNKNOWN_ACCOUNT", lambda: ex.withdraw(
        WithdrawSubmission(77, None, forged.recipient, 1, 0, forged.signature), now))
    refused(desk, "BAD_FIELD", lambda: ex.withdraw(
        WithdrawSubmission(forged.account, None, forged.recipient, 1, 1 << 64, forged.signature), now))
    # with a position, margin must hold after the withdrawal
    ex.place_order(desk.order("maker", ETH_PERP, False, 3_000_000, 30_000), now)  # 90k USDC notional
    ex.place_order(desk.order("taker", ETH_PERP, True, 3_000_000, 30_000), now)
    refused(desk, "INSUFFICIENT_MARGIN", lambda: ex.withdraw(desk.withdrawal("taker", 95_000 * USDC, 0), now))


# ============================================================================ cancel refusals


def test_cancel_refusals(desk: Desk) -> None:
    ex, now = desk.ex, desk.now
    unknown = desk.cancel("maker", b"\x01" * 32)
    refused(desk, "UNKNOWN_ORDER", lambda: ex.cancel_order(unknown, now))
    out = desk.place("maker", ETH_PERP, False, 3_001_000, 5)
    wrong = desk.cancel("taker", out.order_hash)  # signed by someone else
    refused(desk, "BAD_SIGNATURE", lambda: ex.cancel_order(wrong, now))
    refused(desk, "BAD_FIELD", lambda: ex.cancel_order(CancelSubmission(b"\x01", b"\x00" * 65), now))
    # partly filled, so the cancel is a posted step and the STF checks its signature
    desk.place("taker", ETH_PERP, True, 3_001_000, 2)
    refused(desk, "BAD_SIGNATURE", lambda: ex.cancel_order(wrong, now))
    ok = desk.cancel("maker", out.order_hash)
    assert ex.cancel_order(ok, now).step is not None
    refused(desk, "ALREADY_CANCELLED", lambda: ex.cancel_order(ok, now))
    # a filled order that no longer rests cannot be cancelled
    gone = desk.place("maker", ETH_PERP, False, 3_001_000, 1)
    desk.place("taker", ETH_PERP, True, 3_001_000, 1)
    refused(desk, "ORDER_NOT_OPEN", lambda: ex.cancel_order(desk.cancel("maker", gone.order_hash), now))
    # an entry whose digest is not the named order
    entry = desk.entry("maker", desk.body("maker", ETH_PERP, False, 3_001_000, 1))
    refused(desk, "BAD_FIELD", lambda: ex.cancel_order(desk.cancel("maker", b"\x02" * 32, entry), now))


def test_oracle_and_step_refusals(desk: Desk) -> None:
    ex, now = desk.ex, desk.now
    refused(desk, "BAD_FIELD", lambda: ex.submit_oracle(b"\x06", now))
    future = desk.world.oracle_step({ETH_PERP: 3_000_000}, timestamp=now + 5)
    refused(desk, "ORACLE_FUTURE", lambda: ex.submit_oracle(future, now))
    old = desk.world.oracle_step({ETH_PERP: 3_000_000}, timestamp=now - 5)
    refused(desk, "ORACLE_NOT_MONOTONIC", lambda: ex.submit_oracle(old, now))
    unsigned = desk.world.oracle_step({ETH_PERP: 3_000_000}, timestamp=now + 1, signers=[b"\x07" * 32])
    refused(desk, "ORACLE_QUORUM", lambda: ex.submit_oracle(unsigned, now + 1))
    refused(desk, "NOT_OPTION", lambda: ex.settle(ETH_PERP, now))
    refused(desk, "NOT_EXPIRED", lambda: ex.settle(ETH_CALL, now))
    refused(desk, "BAD_FIELD", lambda: ex.settle(300, now))
    refused(desk, "NO_POSITION", lambda: ex.liquidate(
        desk.index["maker"], desk.entry("taker", desk.body("taker", ETH_PERP, True, 3_000_000, 1)), 1, now))
    refused(desk, "BAD_FIELD", lambda: ex.liquidate(1, b"\x00" * 10, 1, now))
    refused(desk, "NO_POSITION", lambda: ex.deleverage(1, 2, ETH_PERP, 1, now))
    ex.funding(now)
    refused(desk, "FUNDING_TOO_EARLY", lambda: ex.funding(now))


def test_l1_queue_refusals(desk: Desk) -> None:
    from state.context import L1Deposit

    item = L1Deposit(desk.address("x"), USDC)
    refused(desk, "QUEUE_GAP", lambda: desk.ex.add_l1_items([item], [], desk.now, deposit_start=50))
    assert len(desk.ex.add_l1_items([item], [], desk.now, deposit_start=2).deposits) == 1
    other = L1Deposit(desk.address("y"), USDC)
    refused(desk, "QUEUE_MISMATCH", lambda: desk.ex.add_l1_items([other], [], desk.now, deposit_start=2))
    # items already consumed by committed batches are ignored (handing them again is a no-op)
    before = desk.state()
    assert desk.ex.add_l1_items([other], [], desk.now, deposit_start=0).deposits == ()
    assert desk.state() == before
