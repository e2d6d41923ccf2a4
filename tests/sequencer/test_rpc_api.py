"""The sequencer's JSON-RPC API over loopback HTTP and WebSocket (docs/rpc.md).

The service runs in a background thread's event loop (a durable core in a
temporary directory, the test world's clock); the tests talk to it with the
blocking clients, a plain HTTP POST and, for subscriptions, a WebSocket client.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account import Account

from node.rpc import RpcError, RpcServer
from node.rpc_client import SyncRpcClient, WsRpcClient
from sequencer.client import FLAG_POST_ONLY, OperatorClient, TraderClient
from sequencer.liquidator import build_order, find_liquidations
from sequencer.rpc_api import (
    CANCEL_REJECTED,
    LIQUIDATION_REJECTED,
    NOT_FOUND,
    ORACLE_REJECTED,
    ORDER_REJECTED,
    WITHDRAW_REJECTED,
    SequencerApi,
)
from sequencer.service import ExchangeService
from state.layout import Params, Prices, account_key
from tests.sequencer.harness import BTC_PERP, ETH_PERP, IVS, PRICES, SPOTS, USDC, Desk
from tests.world import ETH

T = TypeVar("T")
PRICE = 3_000_000


class Served:
    """A Desk's exchange behind an RpcServer on a loop in a background thread."""

    def __init__(self, directory: Path) -> None:
        self.desk = Desk.create(directory, traders=("maker", "taker", "poor"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = ExchangeService(self.desk.ex, clock=lambda: self.desk.now)
        self.server = RpcServer()
        self.api = SequencerApi(self.service, self.server)
        port = self.run(self.server.start("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{port}/"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self.rpc = SyncRpcClient(self.url, timeout=10)
        self.info: dict[str, Any] = self.rpc.call("hfx_chainInfo")
        self.clients: list[TraderClient] = []

    def run(self, coro: Awaitable[T], timeout: float = 20.0) -> T:
        async def wrap() -> T:
            return await coro
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def trader(self, name: str) -> TraderClient:
        client = TraderClient(self.url, self.desk.key(name), self.info, timeout=10)
        self.clients.append(client)
        return client

    def close(self) -> None:
        self.rpc.close()
        for client in self.clients:
            client.close()
        self.run(self.server.stop())
        self.run(self.service.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path / "seq")
    try:
        yield s
    finally:
        s.close()


def refused(code: int, fn: Any, *args: Any, **kw: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value
    return info.value


def post_raw(url: str, body: bytes) -> Any:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------------------ writes


def test_place_cross_cancel_and_queries(served: Served) -> None:
    maker, taker = served.trader("maker"), served.trader("taker")
    rest = maker.place_order(ETH_PERP, False, PRICE, 10)
    assert rest["status"] == "RESTING" and rest["resting"] == 10 and rest["fills"] == []
    book = served.rpc.call("hfx_getOrderBook", [ETH_PERP, 5])
    assert book["asks"] == [[PRICE, 10, 1]] and book["bids"] == []
    opens = served.rpc.call("hfx_getOpenOrders", [maker.address])
    assert [o["orderHash"] for o in opens] == [rest["orderHash"]]
    assert served.rpc.call("hfx_getOrder", [rest["orderHash"]])["status"] == "OPEN"

    hit = taker.place_order(ETH_PERP, True, PRICE, 4)
    assert hit["status"] == "FILLED" and hit["filled"] == 4
    (fill,) = hit["fills"]
    assert fill["price"] == PRICE and fill["size"] == 4 and fill["maker"] == rest["orderHash"]
    assert fill["takerAccount"] == served.desk.index["taker"]

    acct = taker.account()
    assert acct["owner"] == taker.address and acct["positions"][0]["size"] == 4
    assert acct["equity"] > 0 and acct["initialMargin"] > 0 and acct["marginRatio"] > 1
    assert acct["greeks"]["0"]["delta"] == pytest.approx(4.0)
    by_index = served.rpc.call("hfx_getAccount", {"account": served.desk.index["taker"]})
    assert by_index["index"] == acct["index"]

    fills = served.rpc.call("hfx_getFills", {"account": maker.address})
    assert [f["id"] for f in fills["fills"]] == [fill["id"]] and fills["next"] is None
    assert served.rpc.call("hfx_getFills", [])["fills"][0]["size"] == 4

    cancelled = maker.cancel(rest["orderHash"])
    assert cancelled["remaining"] == 6 and cancelled["step"]["code"] == "OK"  # posted: a cancel step
    assert served.rpc.call("hfx_getOrder", [rest["orderHash"]])["status"] == "CANCELLED"
    assert served.rpc.call("hfx_getOrderBook", [ETH_PERP])["asks"] == []
    assert served.rpc.call("hfx_getOpenOrders", [maker.address, ETH_PERP]) == []


def test_fills_pagination(served: Served) -> None:
    maker, taker = served.trader("maker"), served.trader("taker")
    maker.place_order(ETH_PERP, False, PRICE, 10)
    for _ in range(5):
        taker.place_order(ETH_PERP, True, PRICE, 1)
    first = served.rpc.call("hfx_getFills", {"account": taker.address, "limit": 2})
    ids = [f["id"] for f in first["fills"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2
    second = served.rpc.call("hfx_getFills", {"account": taker.address, "limit": 2, "before": first["next"]})
    third = served.rpc.call("hfx_getFills", {"account": taker.address, "limit": 2, "before": second["next"]})
    got = ids + [f["id"] for f in second["fills"]] + [f["id"] for f in third["fills"]]
    assert got == sorted(got, reverse=True) and len(set(got)) == 5 and third["next"] is None


def test_order_refusals_change_nothing(served: Served) -> None:
    maker, poor = served.trader("maker"), served.trader("poor")
    maker.place_order(ETH_PERP, False, PRICE, 10)
    before = served.desk.state()
    e = refused(ORDER_REJECTED, maker.place_order, ETH_PERP, True, PRICE + 1, 1)  # off tick
    assert e.data["reason"] == "TICK_SIZE" and "TICK_SIZE" in e.message
    e = refused(ORDER_REJECTED, maker.place_order, 99, True, PRICE, 1)
    assert e.data["reason"] == "UNKNOWN_MARKET"
    e = refused(ORDER_REJECTED, poor.place_order, ETH_PERP, True, PRICE, 10**9)
    assert e.data["reason"] == "INSUFFICIENT_MARGIN"
    stranger = TraderClient(served.url, b"\x07" * 32, served.info)
    e = refused(ORDER_REJECTED, stranger.place_order, ETH_PERP, True, PRICE, 1)
    assert e.data["reason"] == "UNKNOWN_ACCOUNT"
    good = maker.signer.order(ETH_PERP, True, PRICE - 1000, 1)
    forged = {**good, "signature": maker.signer.order(ETH_PERP, True, PRICE - 1000, 2)["signature"]}
    e = refused(ORDER_REJECTED, served.rpc.call, "hfx_placeOrder", [forged])
    assert e.data["reason"] == "BAD_SIGNATURE"
    served.rpc.call("hfx_placeOrder", [good])
    after_good = served.desk.state()
    e = refused(ORDER_REJECTED, served.rpc.call, "hfx_placeOrder", [good])
    assert e.data["reason"] == "DUPLICATE_ORDER"
    assert served.desk.state() == after_good != before
    # a post-only order that would cross is an outcome, not an error
    out = maker.place_order(ETH_PERP, True, PRICE, 1, flags=FLAG_POST_ONLY)
    assert out["status"] == "REFUSED" and out["reason"] == "POST_ONLY_WOULD_CROSS"
    stranger.close()


def test_cancel_and_withdraw(served: Served) -> None:
    maker, taker = served.trader("maker"), served.trader("taker")
    rest = maker.place_order(BTC_PERP, True, 5_000_000, 1)
    before = served.desk.state()
    e = refused(CANCEL_REJECTED, taker.cancel, rest["orderHash"])  # not the owner's signature
    assert e.data["reason"] == "BAD_SIGNATURE"
    e = refused(CANCEL_REJECTED, maker.cancel, "0x" + "ab" * 32)
    assert e.data["reason"] == "UNKNOWN_ORDER"
    assert served.desk.state() == before
    out = maker.cancel(rest["orderHash"])
    assert out["remaining"] == 1 and out["step"] is None  # never posted: off the book only
    e = refused(CANCEL_REJECTED, maker.cancel, rest["orderHash"])
    assert e.data["reason"] in ("ORDER_NOT_OPEN", "ALREADY_CANCELLED", "UNKNOWN_ORDER")
    assert served.rpc.call("hfx_getOrder", [rest["orderHash"]])["status"] == "CLOSED"

    nonce = maker.account()["nonce"]
    w = maker.withdraw(1_000 * USDC)
    assert w["withdrawalId"] is not None and w["step"]["code"] == "OK"
    assert maker.account()["nonce"] == nonce + 1
    before = served.desk.state()
    e = refused(WITHDRAW_REJECTED, maker.withdraw, 1 * USDC, nonce)
    assert e.data["reason"] == "NONCE_REPLAYED"
    e = refused(WITHDRAW_REJECTED, maker.withdraw, 2**62)
    assert e.data["reason"] in ("INSUFFICIENT_COLLATERAL", "BAD_AMOUNT", "INSUFFICIENT_MARGIN")
    e = refused(WITHDRAW_REJECTED, maker.withdraw, 1 * USDC, nonce + 5)
    assert e.data["reason"] == "BAD_NONCE"
    assert served.desk.state() == before


def test_oracle_updates_and_liquidations_over_rpc(served: Served) -> None:
    """hfx_submitOracle moves the price; hfx_getAccounts/hfx_getRiskState show the account
    below its threshold; hfx_liquidate with the liquidator's signed order takes it over."""
    desk, op = served.desk, OperatorClient(served.url, timeout=10)
    try:
        maker, taker = served.trader("maker"), served.trader("taker")
        size = 300_000  # about 9x the taker's collateral at 3,000,000
        maker.place_order(ETH_PERP, False, PRICE, size)
        assert taker.place_order(ETH_PERP, True, PRICE, size)["filled"] == size
        accounts = op.get_accounts()
        assert {a.index for a in accounts} == {desk.index["maker"], desk.index["taker"]}
        taker_data = next(a for a in accounts if a.index == desk.index["taker"])
        assert taker_data.account == desk.ex.account(desk.index["taker"])
        everyone = served.rpc.call("hfx_getAccounts", {"with_positions": False, "limit": 2})
        assert [a["index"] for a in everyone["accounts"]] == [1, 2] and everyone["next"] == 3
        for bad in ({"limit": 0}, {"limit": 501}, {"from_index": 0}, {"with_positions": "yes"}):
            refused(-32602, served.rpc.call, "hfx_getAccounts", bad)

        # a refused oracle update changes nothing
        before = desk.state()
        stale = desk.world.oracle_step(PRICES, SPOTS, IVS, timestamp=desk.now - 100)
        e = refused(ORACLE_REJECTED, op.submit_oracle, stale)
        assert e.data["reason"] in ("ORACLE_NOT_MONOTONIC", "STALE_ORACLE")
        e = refused(ORACLE_REJECTED, op.submit_oracle, stale[:-1] + bytes([stale[-1] ^ 1]))
        refused(-32602, served.rpc.call, "hfx_submitOracle", [{"step": "0x"}])
        refused(-32602, served.rpc.call, "hfx_submitOracle", [{"step": "zz"}])
        refused(-32602, served.rpc.call, "hfx_submitOracle", [{}])
        assert desk.state() == before

        # healthy: nothing to liquidate, and a liquidation is refused
        state = op.risk_state()
        params = Params.decode(bytes.fromhex(state["params"][2:]))
        prices = Prices.decode(bytes.fromhex(state["prices"][2:]))
        assert params == desk.ex.view.params() and state["clock"] == desk.ex.clock
        assert find_liquidations(op.get_accounts(), params, prices, state["insuranceFund"]) == []

        desk.now += 1
        crash = {**PRICES, ETH_PERP: 2_820_000}
        out = op.submit_oracle(desk.world.oracle_step(crash, {**SPOTS, ETH: 2_820_000}, IVS, timestamp=desk.now))
        assert out["step"]["code"] == "OK"
        assert served.rpc.call("hfx_getMarkets")["markets"][ETH_PERP]["mark"] == 2_820_000
        state = op.risk_state()
        prices = Prices.decode(bytes.fromhex(state["prices"][2:]))
        liquidator = desk.index["poor"]
        (opp,) = find_liquidations(op.get_accounts(), params, prices, state["insuranceFund"], exclude=liquidator)
        assert opp.target == desk.index["taker"] and opp.is_buy and 0 < opp.size <= size
        assert served.rpc.call("hfx_getAccount", [opp.target])["liquidatable"] is True

        entry = build_order(desk.key("poor"), liquidator, desk.world.domain, opp, salt=1, expiry=desk.now + 60)
        before = desk.state()
        e = refused(LIQUIDATION_REJECTED, op.submit_liquidation, desk.index["maker"], entry, opp.size)
        assert e.data["reason"] in ("NOT_LIQUIDATABLE", "WRONG_DIRECTION")
        refused(-32602, served.rpc.call, "hfx_liquidate", [{"target": opp.target, "entry": "0x12", "size": 1}])
        refused(-32602, served.rpc.call, "hfx_liquidate", [{"target": 0, "entry": "0x" + entry.hex(), "size": 1}])
        assert desk.state() == before
        done = op.submit_liquidation(opp.target, entry, opp.size)
        assert done["step"]["code"] == "OK"
        after = served.rpc.call("hfx_getAccount", [opp.target])
        assert after["positions"][0]["size"] == size - opp.size and after["liquidatable"] is False
        assert served.rpc.call("hfx_getAccount", [liquidator])["positions"][0]["size"] == opp.size
    finally:
        op.close()


# ------------------------------------------------------------------------------ reads


def test_read_methods_and_their_refusals(served: Served) -> None:
    rpc = served.rpc
    markets = rpc.call("hfx_getMarkets")
    assert markets["markets"][ETH_PERP]["kind"] == "perp" and markets["markets"][ETH_PERP]["mark"] == PRICE
    assert markets["config"]["takerFeeBps"] >= 0
    e = refused(NOT_FOUND, rpc.call, "hfx_getOrderBook", [99])
    assert e.data["reason"] == "UNKNOWN_MARKET"
    refused(-32602, rpc.call, "hfx_getOrderBook", [ETH_PERP, 0])
    refused(-32602, rpc.call, "hfx_getOrderBook", ["eth"])
    e = refused(NOT_FOUND, rpc.call, "hfx_getAccount", ["0x" + "11" * 20])
    assert e.data["reason"] == "UNKNOWN_ACCOUNT"
    refused(NOT_FOUND, rpc.call, "hfx_getAccount", [12345])
    refused(-32602, rpc.call, "hfx_getAccount", [-1])
    refused(-32602, rpc.call, "hfx_getAccount", [])
    refused(-32602, rpc.call, "hfx_getOpenOrders", [True])
    e = refused(NOT_FOUND, rpc.call, "hfx_getOrder", ["0x" + "22" * 32])
    assert e.data["reason"] == "UNKNOWN_ORDER"
    refused(-32602, rpc.call, "hfx_getOrder", ["0x1234"])
    refused(-32602, rpc.call, "hfx_getFills", {"limit": 0})
    refused(-32602, rpc.call, "hfx_getBatches", {"limit": 10_000})

    status = rpc.call("hfx_syncStatus")
    assert status["openBatch"] is not None and status["publisher"] is None
    closed = served.run(served.service.close_batch())
    assert closed is not None
    batches = rpc.call("hfx_getBatches")
    assert batches["batches"][-1]["postRoot"] == "0x" + closed.post_root.hex()
    assert batches["batches"][-1]["l1"] is None and batches["nextBatchIndex"] == closed.index + 1
    assert rpc.call("hfx_getBatches", {"from_index": closed.index, "limit": 1})["batches"][0]["index"] == closed.index
    assert rpc.call("hfx_syncStatus")["committedRoot"] == "0x" + closed.post_root.hex()

    index = served.desk.index["maker"]
    proof = rpc.call("hfx_getProof", {"account": index, "keys": ["params"]})
    assert proof["stateRoot"] == "0x" + closed.post_root.hex() and proof["account"] == index
    keys = [p["key"] for p in proof["storageProof"]]
    assert "0x" + account_key(index).hex() in keys and len(keys) == 3
    assert all(p["value"] != "0x" and p["proof"] for p in proof["storageProof"])
    absent = rpc.call("hfx_getProof", [["0x" + "00" * 32]])["storageProof"][0]
    assert absent["value"] in ("0x", "0x0", "0x00") and absent["proof"]
    refused(-32602, rpc.call, "hfx_getProof", [])
    refused(-32602, rpc.call, "hfx_getProof", [["0x12"]])

    info = rpc.call("hfx_chainInfo")
    assert info["chainId"] == served.desk.world.chain.chain_id
    assert info["domain"]["verifyingContract"] == "0x" + served.desk.world.chain.rollup.hex()
    assert set(info["typedData"]) == {"order", "cancel", "withdraw"}


# ------------------------------------------------------------------------------ malformed


def test_malformed_requests_change_nothing(served: Served) -> None:
    maker = served.trader("maker")
    maker.place_order(ETH_PERP, False, PRICE, 10)
    before = served.desk.state()
    good = maker.signer.order(ETH_PERP, True, PRICE, 1)
    bad_orders: list[Any] = [
        [{**good, "signature": "0x1234"}],
        [{**good, "price": "three"}],
        [{k: v for k, v in good.items() if k != "size"}],
        [{**good, "isBuy": "yes"}],
        [{**good, "trader": "0xabc"}],
        ["not an object"],
        [],
        [good, good],
        {"order": good, "extra": 1},
    ]
    for params in bad_orders:
        e = refused(-32602, served.rpc.call, "hfx_placeOrder", params)
        assert e.message
    refused(-32602, served.rpc.call, "hfx_cancelOrder", [{"orderHash": "0x12", "signature": "0x"}])
    refused(-32602, served.rpc.call, "hfx_withdraw", [{"amount": 1}])
    for body in (b"{", b"[]", b'{"jsonrpc":"2.0","id":1,"method":"hfx_placeOrder","params":7}',
                 b'{"jsonrpc":"1.0","id":1,"method":"hfx_placeOrder","params":[]}',
                 b'{"jsonrpc":"2.0","id":1,"method":"hfx_nope"}'):
        reply = post_raw(served.url, body)
        assert reply["error"]["code"] in (-32700, -32600, -32601, -32602)
    assert served.desk.state() == before


def test_plain_eth_account_trader(served: Served) -> None:
    """A trader with only eth-account and an HTTP POST: chainInfo's typed data is signable as is."""
    info = post_raw(served.url, b'{"jsonrpc":"2.0","id":1,"method":"hfx_chainInfo"}')["result"]
    acct = Account.from_key(served.desk.key("taker"))
    typed = info["typedData"]["order"]
    typed["message"] = {
        "trader": acct.address, "market": 0, "isBuy": True, "price": PRICE - 1000, "size": 3,
        "flags": 0, "expiry": 2**64 - 1, "salt": 424242,
    }
    sig = acct.sign_typed_data(full_message=typed).signature
    order = {**typed["message"], "signature": "0x" + bytes(sig).hex()}
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "hfx_placeOrder", "params": [order]})
    reply = post_raw(served.url, body.encode())
    assert reply["id"] == 7 and reply["result"]["status"] == "RESTING", reply
    assert reply["result"]["resting"] == 3


# ------------------------------------------------------------------------------ subscriptions


def test_book_fills_and_batches_subscriptions(served: Served) -> None:
    maker, taker = served.trader("maker"), served.trader("taker")
    maker_index = served.desk.index["maker"]

    async def scenario() -> None:
        async with WsRpcClient(served.ws_url) as ws:
            book = await ws.subscribe("book", {"market": ETH_PERP})
            other_book = await ws.subscribe("book", {"market": BTC_PERP})
            mine = await ws.subscribe("fills", {"account": maker_index})
            everyone = await ws.subscribe("fills")
            batches = await ws.subscribe("batches")
            with pytest.raises(RpcError) as info:
                await ws.subscribe("book", {"market": 99})
            assert info.value.code == NOT_FOUND
            with pytest.raises(RpcError) as info:
                await ws.subscribe("fills", {"who": 1})
            assert info.value.code == -32602

            loop = asyncio.get_running_loop()
            rest = await loop.run_in_executor(None, maker.place_order, ETH_PERP, False, PRICE, 10)
            snap = await book.get(timeout=5)
            assert snap["market"] == ETH_PERP and snap["asks"] == [[PRICE, 10, 1]]
            await loop.run_in_executor(None, taker.place_order, ETH_PERP, True, PRICE, 4)
            snap = await book.get(timeout=5)
            assert snap["asks"] == [[PRICE, 6, 1]]
            f1 = await mine.get(timeout=5)
            f2 = await everyone.get(timeout=5)
            assert f1 == f2 and f1["maker"] == rest["orderHash"] and f1["size"] == 4
            closed = await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(served.service.close_batch(), served.loop)
            )
            assert closed is not None
            pushed = await batches.get(timeout=5)
            assert pushed["index"] == closed.index and pushed["postRoot"] == "0x" + closed.post_root.hex()
            assert other_book.pending() <= 1  # only the batch-close refresh, never ETH updates
            while other_book.pending():
                assert (await other_book.get(timeout=1))["market"] == BTC_PERP

    asyncio.run(asyncio.wait_for(scenario(), 30))
