"""JSON-RPC server base and clients, over loopback HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import aiohttp
import pytest
from aiohttp import web

from node.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    METHOD_NOT_SUPPORTED,
    PARSE_ERROR,
    SLOW_CONSUMER_CLOSE,
    InvalidParams,
    RpcContext,
    RpcError,
    RpcLimits,
    RpcServer,
)
from node.rpc_client import Params, RpcClient, RpcTransportError, SyncRpcClient, WsRpcClient

T = TypeVar("T")
SEEN = web.AppKey("seen", list[Any])
ORDER_REJECTED = 1001


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    """Run one test coroutine with a hard time bound."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def make_server(limits: RpcLimits | None = None, **kw: Any) -> RpcServer:
    server = RpcServer(limits=limits, **kw)
    seen: list[Any] = []
    server.app[SEEN] = seen  # what notifications did, for the tests

    @server.method("add")
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @server.method()
    async def echo(value: Any = None) -> Any:
        return value

    @server.method("typed")
    async def typed(
        name: str,
        price: float,
        flag: bool,
        sizes: list[int],
        side: Literal["buy", "sell"],
        meta: dict[str, str] | None = None,
    ) -> str:
        return f"{name}:{price}:{flag}:{sum(sizes)}:{side}:{meta}"

    @server.method("record")
    async def record(value: Any) -> None:
        seen.append(value)

    @server.method("place")
    async def place(size: int) -> str:
        if size <= 0:
            raise RpcError(ORDER_REJECTED, "order rejected", {"reason": "size must be positive"})
        return "ok"

    @server.method("boom")
    async def boom() -> None:
        raise ValueError("secret detail /etc/passwd")

    @server.method("not_json")
    async def not_json() -> Any:
        return object()

    @server.method("slow")
    async def slow(i: int) -> int:
        await asyncio.sleep(0.001)
        return i

    @server.method("whoami", context=True)
    async def whoami(ctx: RpcContext) -> str:
        return ctx.transport

    @server.method("varargs")
    async def varargs(*items: int) -> int:
        return sum(items)

    server.add_topic("ticks")
    server.add_topic(
        "book",
        accept=lambda p: _market(p),
        match=lambda flt, payload: payload["market"] == flt,
    )
    return server


def _market(params: Any) -> str:
    if not isinstance(params, dict) or not isinstance(params.get("market"), str):
        raise InvalidParams("expected {'market': <name>}")
    return str(params["market"])


@asynccontextmanager
async def serving(server: RpcServer | None = None) -> AsyncIterator[tuple[RpcServer, str]]:
    server = server or make_server()
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, f"http://127.0.0.1:{port}/"
    finally:
        await server.stop()


async def post_raw(
    url: str, body: bytes | str, content_type: str = "application/json"
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=body, headers={"Content-Type": content_type}
    ) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def error_of(reply: Any) -> tuple[Any, int, str]:
    assert reply["jsonrpc"] == "2.0" and "result" not in reply
    return reply["id"], reply["error"]["code"], reply["error"]["message"]


# -- params -------------------------------------------------------------------------------


def test_positional_and_named_params() -> None:
    async def main() -> None:
        async with serving() as (_, url), RpcClient(url) as c:
            assert await c.call("add", [2, 3]) == 5
            assert await c.call("add", {"a": 2, "b": 40}) == 42
            assert await c.call("add", [7]) == 7
            assert await c.call("add", {"a": 7}) == 7
            assert await c.call("echo") is None
            assert await c.call("varargs", [1, 2, 3]) == 6
            args = ["x", 2, True, [1, 2], "buy"]
            assert await c.call("typed", args) == "x:2:True:3:buy:None"
            assert await c.call("typed", [*args, {"k": "v"}]) == "x:2:True:3:buy:{'k': 'v'}"
            bad: list[tuple[Any, str]] = [
                ([], "missing a required argument: 'a'"),
                ([1, 2, 3], "too many positional arguments"),
                ({"a": 1, "c": 2}, "unexpected keyword argument 'c'"),
                (["1"], "'a' must be int, got str"),
                ([True], "'a' must be int, got bool"),
                ([1.5], "'a' must be int, got float"),
            ]
            for params, message in bad:
                with pytest.raises(RpcError) as exc:
                    await c.call("add", params)
                assert exc.value.code == INVALID_PARAMS
                assert message in exc.value.message, exc.value.message
            for params, message in [
                (["x", "2", True, [1], "buy"], "'price' must be float"),
                (["x", 2, 1, [1], "buy"], "'flag' must be bool"),
                (["x", 2, True, [1, "2"], "buy"], "'sizes' must be list[int]"),
                (["x", 2, True, [1], "hold"], "'side' must be"),
                (["x", 2, True, [1], "buy", {"k": 1}], "'meta' must be"),
            ]:
                with pytest.raises(RpcError) as exc:
                    await c.call("typed", params)
                assert exc.value.code == INVALID_PARAMS
                assert message in exc.value.message, exc.value.message
            with pytest.raises(RpcError) as exc:
                await c.call("varargs", [1, "x"])
            assert exc.value.code == INVALID_PARAMS

    run(main())


def test_method_not_found_and_params_shape() -> None:
    async def main() -> None:
        async with serving() as (_, url):
            status, reply = await post_raw(url, '{"jsonrpc":"2.0","id":1,"method":"nope"}')
            assert status == 200
            assert error_of(reply) == (1, METHOD_NOT_FOUND, "method not found: nope")
            _, reply = await post_raw(url, '{"jsonrpc":"2.0","id":"a","method":"add","params":3}')
            assert error_of(reply)[:2] == ("a", INVALID_PARAMS)

    run(main())


# -- malformed requests ----------------------------------------------------------------------


def test_parse_errors_and_invalid_requests() -> None:
    cases: list[tuple[str, int, str]] = [
        ('{"jsonrpc":"2.0","method":"add",', PARSE_ERROR, "parse error"),
        ("not json at all", PARSE_ERROR, "parse error"),
        ("", PARSE_ERROR, "parse error"),
        ("[" * 100_000 + "]" * 100_000, PARSE_ERROR, "parse error"),
        ('{"jsonrpc":"1.0","id":1,"method":"add"}', INVALID_REQUEST, '"jsonrpc" must be'),
        ('{"id":1,"method":"add"}', INVALID_REQUEST, '"jsonrpc" must be'),
        ('{"jsonrpc":2.0,"id":1,"method":"add"}', INVALID_REQUEST, '"jsonrpc" must be'),
        ('{"jsonrpc":"2.0","id":1,"method":123}', INVALID_REQUEST, '"method" must be a string'),
        ('{"jsonrpc":"2.0","id":1}', INVALID_REQUEST, '"method" must be a string'),
        ('{"jsonrpc":"2.0","id":1.5,"method":"add"}', INVALID_REQUEST, "id must be"),
        ('{"jsonrpc":"2.0","id":true,"method":"add"}', INVALID_REQUEST, "id must be"),
        ('{"jsonrpc":"2.0","id":{},"method":"add"}', INVALID_REQUEST, "id must be"),
        ('{"jsonrpc":"2.0","id":[1],"method":"add"}', INVALID_REQUEST, "id must be"),
        ("42", INVALID_REQUEST, "expected a JSON object"),
        ('"call"', INVALID_REQUEST, "expected a JSON object"),
        ("[]", INVALID_REQUEST, "empty batch"),
    ]

    async def main() -> None:
        async with serving() as (_, url):
            for body, code, message in cases:
                status, reply = await post_raw(url, body)
                assert status == 200, body
                got_id, got_code, got_message = error_of(reply)
                assert got_code == code, (body, reply)
                assert message in got_message, (body, got_message)
                # the id is echoed whenever it could be read and is valid
                valid_id = '"id":1,' in body or body.endswith('"id":1}')
                expected_id = 1 if code == INVALID_REQUEST and valid_id else None
                assert got_id == expected_id, (body, reply)
            _, reply = await post_raw(url, b"\xff\xfe not utf-8")
            assert error_of(reply)[1] == PARSE_ERROR
            # the server is still serving after all of that
            async with RpcClient(url) as c:
                assert await c.call("add", [1, 1]) == 2

    run(main())


def test_content_type_and_http_method() -> None:
    async def main() -> None:
        async with serving() as (_, url):
            status, reply = await post_raw(url, '{"jsonrpc":"2.0","id":1,"method":"echo"}',
                                           content_type="text/plain")
            assert status == 415 and error_of(reply)[1] == INVALID_REQUEST
            async with aiohttp.ClientSession() as session, session.get(url) as resp:
                assert resp.status == 405

    run(main())


def test_request_size_limit() -> None:
    limits = RpcLimits(max_request_bytes=10_000)

    async def main() -> None:
        async with serving(make_server(limits)) as (_, url):
            big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["x" * 20_000]})
            status, reply = await post_raw(url, big)
            assert status == 413
            _, code, message = error_of(reply)
            assert code == LIMIT_EXCEEDED and "10000 bytes" in message
            assert reply["error"]["data"] == {"limit": 10_000}

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
                for _ in range(30):
                    yield b" " * 1000

            async with aiohttp.ClientSession() as session, session.post(
                url, data=chunks(), headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == 413
                assert (await resp.json())["error"]["code"] == LIMIT_EXCEEDED
            # just under the limit is fine
            async with RpcClient(url) as c:
                assert await c.call("echo", ["y" * 9_000]) == "y" * 9_000
            # over WebSocket: an oversized message closes that connection (1009) only
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(url)
                await ws.send_str(big)
                msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 1009
            async with WsRpcClient(url) as w:
                assert await w.call("add", [1, 2]) == 3

    run(main())


# -- batches and notifications -----------------------------------------------------------------


def test_batches() -> None:
    async def main() -> None:
        async with serving(make_server(RpcLimits(max_batch=5))) as (server, url):
            body = json.dumps([
                {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]},
                {"jsonrpc": "2.0", "method": "record", "params": ["n1"]},
                {"jsonrpc": "2.0", "id": "two", "method": "nope"},
                {"jsonrpc": "2.0", "id": 3, "method": "place", "params": {"size": 0}},
                5,
            ])
            status, reply = await post_raw(url, body)
            assert status == 200 and isinstance(reply, list) and len(reply) == 4
            assert reply[0] == {"jsonrpc": "2.0", "id": 1, "result": 3}
            assert error_of(reply[1])[:2] == ("two", METHOD_NOT_FOUND)
            assert error_of(reply[2])[:2] == (3, ORDER_REJECTED)
            assert error_of(reply[3])[:2] == (None, INVALID_REQUEST)
            assert server.app[SEEN] == ["n1"]
            # the spec's example: a batch of non-objects
            _, reply = await post_raw(url, "[1,2,3]")
            assert [error_of(r)[1] for r in reply] == [INVALID_REQUEST] * 3
            # a batch of notifications only: no body at all
            status, reply = await post_raw(url, json.dumps(
                [{"jsonrpc": "2.0", "method": "record", "params": [i]} for i in range(3)]))
            assert status == 204 and reply is None
            assert server.app[SEEN] == ["n1", 0, 1, 2]
            # too many calls
            _, reply = await post_raw(url, json.dumps(
                [{"jsonrpc": "2.0", "id": i, "method": "echo"} for i in range(6)]))
            assert error_of(reply)[:2] == (None, LIMIT_EXCEEDED)
            async with RpcClient(url) as c:
                out = await c.batch([("add", [1, 1]), ("place", [-1]), ("echo", {"value": "v"})])
                assert out[0] == 2 and out[2] == "v"
                assert isinstance(out[1], RpcError) and out[1].code == ORDER_REJECTED
                assert out[1].data == {"reason": "size must be positive"}

    run(main())


def test_notifications_get_no_reply() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            for body in (
                '{"jsonrpc":"2.0","method":"record","params":["a"]}',
                '{"jsonrpc":"2.0","method":"nope"}',
                '{"jsonrpc":"2.0","method":"boom"}',
                '{"jsonrpc":"2.0","method":"add","params":["x"]}',
            ):
                status, reply = await post_raw(url, body)
                assert (status, reply) == (204, None), body
            async with RpcClient(url) as c:
                await c.notify("record", ["b"])
            assert server.app[SEEN] == ["a", "b"]
            # a request with "id": null is a call, not a notification
            _, reply = await post_raw(url, '{"jsonrpc":"2.0","id":null,"method":"add","params":[1]}')
            assert reply == {"jsonrpc": "2.0", "id": None, "result": 1}

    run(main())


# -- application and internal errors ----------------------------------------------------------


def test_application_and_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving() as (_, url), RpcClient(url) as c:
            with pytest.raises(RpcError) as exc:
                await c.call("place", {"size": -5})
            assert (exc.value.code, exc.value.message) == (ORDER_REJECTED, "order rejected")
            assert exc.value.data == {"reason": "size must be positive"}
            for method in ("boom", "not_json"):
                with pytest.raises(RpcError) as exc:
                    await c.call(method)
                assert (exc.value.code, exc.value.message) == (INTERNAL_ERROR, "internal error")
                assert exc.value.data is None
            _, reply = await post_raw(url, '{"jsonrpc":"2.0","id":9,"method":"boom"}')
            assert "secret" not in json.dumps(reply) and "Traceback" not in json.dumps(reply)
            assert await c.call("place", [1]) == "ok"

    with caplog.at_level(logging.ERROR, logger="node.rpc"):
        run(main())
    assert any("boom" in r.getMessage() and r.exc_info for r in caplog.records)


def test_registration_rules() -> None:
    server = RpcServer()

    def not_async() -> None:
        return None

    async def handler() -> None:
        return None

    with pytest.raises(TypeError):
        server.register("x", not_async)  # type: ignore[arg-type]
    server.register("x", handler)
    with pytest.raises(ValueError):
        server.register("x", handler)
    with pytest.raises(ValueError):
        server.register("rpc.internal", handler)
    with pytest.raises(ValueError):
        server.register("hfx_subscribe", handler)
    server.add_topic("t")
    with pytest.raises(ValueError):
        server.add_topic("t")
    assert server.methods() == ["hfx_subscribe", "hfx_unsubscribe", "x"]
    with pytest.raises(KeyError):
        server.publish("unknown", 1)


def test_context_handlers_and_ws_calls() -> None:
    async def main() -> None:
        async with serving() as (_, url):
            async with RpcClient(url) as c:
                assert await c.call("whoami") == "http"
            async with WsRpcClient(url) as w:
                assert await w.call("whoami") == "ws"
                assert await w.call("add", {"a": 1, "b": 2}) == 3
                with pytest.raises(RpcError) as exc:
                    await w.call("boom")
                assert exc.value.code == INTERNAL_ERROR
                await w.notify("record", ["ws"])
                assert await w.call("echo", ["after"]) == "after"
            async with aiohttp.ClientSession() as session, session.ws_connect(url + "ws") as ws:
                await ws.send_str("{broken")
                assert error_of(await ws.receive_json(timeout=5))[1] == PARSE_ERROR
                await ws.send_str(json.dumps([
                    {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 1]},
                    {"jsonrpc": "2.0", "method": "record", "params": ["x"]},
                    {"jsonrpc": "2.0", "id": 2, "method": "nope"},
                ]))
                reply = await ws.receive_json(timeout=5)
                assert reply[0]["result"] == 2 and error_of(reply[1])[1] == METHOD_NOT_FOUND
                await ws.send_bytes(b'{"jsonrpc":"2.0","id":3,"method":"echo","params":[3]}')
                assert (await ws.receive_json(timeout=5))["result"] == 3

    run(main())


# -- subscriptions ----------------------------------------------------------------------------


def test_subscriptions() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "hfx_subscribe",
                                    "params": ["ticks"]})
                reply = await ws.receive_json(timeout=5)
                sid = reply["result"]
                assert isinstance(sid, str) and sid.startswith("0x")
                assert server.publish("ticks", {"price": 1}) == 1
                assert await ws.receive_json(timeout=5) == {
                    "jsonrpc": "2.0",
                    "method": "hfx_subscription",
                    "params": {"subscription": sid, "result": {"price": 1}},
                }
            assert server.subscription_count() == 0  # gone with its connection

            async with WsRpcClient(url) as w:
                ticks = await w.subscribe("ticks")
                eth = await w.subscribe("book", {"market": "ETH"})
                btc = await w.subscribe("book", {"market": "BTC"})
                assert server.subscription_count() == 3
                for i in range(20):
                    server.publish("ticks", i)
                    server.publish("book", {"market": "ETH" if i % 2 else "BTC", "i": i})
                assert [await ticks.get(5) for _ in range(20)] == list(range(20))
                assert [(await eth.get(5))["i"] for _ in range(10)] == list(range(1, 20, 2))
                assert [(await btc.get(5))["i"] for _ in range(10)] == list(range(0, 20, 2))
                assert await ticks.unsubscribe() is True
                assert await w.call("hfx_unsubscribe", [ticks.id]) is False
                assert await w.call("hfx_unsubscribe", {"subscription": "0xnope"}) is False
                assert server.publish("ticks", "late") == 0
                with pytest.raises(TimeoutError):
                    await ticks.get(0.05)
                cases: list[tuple[Params, int]] = [
                    (["nope"], INVALID_PARAMS),
                    (["book"], INVALID_PARAMS),
                    (["book", {"market": 1}], INVALID_PARAMS),
                    (["ticks", {"x": 1}], INVALID_PARAMS),
                    ([5], INVALID_PARAMS),
                    ([], INVALID_PARAMS),
                    ({"topic": "ticks", "extra": 1}, INVALID_PARAMS),
                ]
                for params, code in cases:
                    with pytest.raises(RpcError) as exc:
                        await w.call("hfx_subscribe", params)
                    assert exc.value.code == code, params
                named = await w.call("hfx_subscribe", {"topic": "ticks"})
                assert isinstance(named, str)
            async with RpcClient(url) as c:
                with pytest.raises(RpcError) as exc:
                    await c.call("hfx_subscribe", ["ticks"])
                assert exc.value.code == METHOD_NOT_SUPPORTED

    run(main())


def test_subscription_limit() -> None:
    async def main() -> None:
        async with serving(make_server(RpcLimits(max_subscriptions=3))) as (_, url):
            async with WsRpcClient(url) as w:
                for _ in range(3):
                    await w.subscribe("ticks")
                with pytest.raises(RpcError) as exc:
                    await w.subscribe("ticks")
                assert exc.value.code == LIMIT_EXCEEDED

    run(main())


def test_slow_consumer_is_dropped_without_blocking_the_publisher() -> None:
    limits = RpcLimits(ws_queue=16, ws_compress=False, close_timeout=8.0)

    async def main() -> None:
        async with serving(make_server(limits)) as (server, url):
            async with WsRpcClient(url) as fast, aiohttp.ClientSession() as session:
                slow = await session.ws_connect(url, max_msg_size=0)
                await slow.send_json({"jsonrpc": "2.0", "id": 1, "method": "hfx_subscribe",
                                      "params": ["ticks"]})
                assert "result" in await slow.receive_json(timeout=5)
                sub = await fast.subscribe("ticks")
                blob = "z" * 100_000
                received: list[int] = []

                async def drain() -> None:
                    while len(received) < 300:
                        received.append((await sub.get(10))["i"])

                reader = asyncio.ensure_future(drain())
                worst = 0.0
                for i in range(300):  # ~30 MB toward a client that never reads
                    start = time.perf_counter()
                    server.publish("ticks", {"i": i, "blob": blob})
                    worst = max(worst, time.perf_counter() - start)
                    await asyncio.sleep(0.001)
                await reader
                assert received == list(range(300))  # the fast consumer lost nothing
                assert worst < 0.1  # publish never waited on the slow socket
                assert server.subscription_count() == 1
                assert server.metrics.value("hfx_rpc_slow_consumers_dropped_total") == 1
                while True:  # the slow client finds its connection closed with 4008
                    msg = await slow.receive(timeout=10)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                assert slow.close_code == SLOW_CONSUMER_CLOSE
                await slow.close()

    run(main(), timeout=40)


def test_concurrent_clients() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            async def http_client(k: int) -> list[int]:
                async with RpcClient(url) as c:
                    return [await c.call("slow", [k * 100 + i]) for i in range(15)]

            async def ws_client(k: int) -> list[int]:
                async with WsRpcClient(url) as w:
                    sub = await w.subscribe("ticks")
                    results = await asyncio.gather(*(w.call("slow", [k * 100 + i])
                                                     for i in range(15)))
                    first = await sub.get(5)
                    assert isinstance(first, int)
                    return list(results)

            async def ticker() -> None:
                for i in range(50):
                    server.publish("ticks", i)
                    await asyncio.sleep(0.01)

            tick = asyncio.ensure_future(ticker())
            outs = await asyncio.gather(*(http_client(k) for k in range(10)),
                                        *(ws_client(k) for k in range(10, 20)))
            await tick
            for k, out in enumerate(outs):
                assert out == [k * 100 + i for i in range(15)]
            assert server.metrics.value("hfx_rpc_requests_total", "slow", "http") == 150
            assert server.metrics.value("hfx_rpc_requests_total", "slow", "ws") == 150

    run(main())


# -- health, metrics, lifetime ------------------------------------------------------------------


def test_health_and_metrics() -> None:
    healthy = {"ok": True}

    async def health() -> Mapping[str, Any]:
        if not healthy["ok"]:
            raise RuntimeError("l1 unreachable")
        return {"l1_block": 12}

    async def main() -> None:
        async with serving(make_server(health=health)) as (_, url):
            async with RpcClient(url) as c:
                await c.call("add", [1])
                await c.call("add", [2])
                with pytest.raises(RpcError):
                    await c.call("nope")
                with pytest.raises(RpcError):
                    await c.call("place", [0])
            await post_raw(url, "{")
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "health") as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"status": "ok", "l1_block": 12}
                healthy["ok"] = False
                async with session.get(url + "health") as resp:
                    assert resp.status == 503
                    assert await resp.json() == {"status": "unhealthy"}
                async with session.get(url + "metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    text = await resp.text()
        lines = text.splitlines()
        assert "# TYPE hfx_rpc_requests_total counter" in lines
        assert "# TYPE hfx_rpc_ws_connections gauge" in lines
        assert 'hfx_rpc_requests_total{method="add",transport="http"} 2' in lines
        assert 'hfx_rpc_requests_total{method="<unknown>",transport="http"} 1' in lines
        assert 'hfx_rpc_errors_total{code="-32601"} 1' in lines
        assert f'hfx_rpc_errors_total{{code="{ORDER_REJECTED}"}} 1' in lines
        assert 'hfx_rpc_errors_total{code="-32700"} 1' in lines
        assert "hfx_rpc_subscriptions 0" in lines
        for line in lines:  # every sample line is `name{labels} number`
            if not line.startswith("#"):
                float(line.rsplit(" ", 1)[1])

    run(main())


def test_metric_label_escaping() -> None:
    server = RpcServer()
    server.metrics.counter("x_total", "X.", ("label",))
    server.metrics.inc("x_total", 'a"b\\c\nd', amount=2.5)
    assert 'x_total{label="a\\"b\\\\c\\nd"} 2.5' in server.metrics.render().splitlines()


def test_ephemeral_ports_and_graceful_shutdown() -> None:
    async def main() -> None:
        one, two = make_server(), make_server()
        port_one = await one.start()
        port_two = await two.start("127.0.0.1", 0)
        assert port_one > 0 and port_two > 0 and port_one != port_two
        url = f"http://127.0.0.1:{port_one}/"
        w = await WsRpcClient(url).connect()
        sub = await w.subscribe("ticks")
        one.publish("ticks", "before")
        await one.stop()
        await two.stop()
        assert await sub.get(5) == "before"  # queued pushes are still readable
        with pytest.raises(RpcTransportError):
            await sub.get(5)
        assert w.close_code == 1001
        with pytest.raises(RpcTransportError):
            await w.call("add", [1])
        await w.close()
        async with RpcClient(url, timeout=5) as c:
            with pytest.raises(RpcTransportError):
                await c.call("add", [1])
        # a stopped server can start again
        port = await one.start()
        async with RpcClient(f"http://127.0.0.1:{port}/") as c:
            assert await c.call("add", [4]) == 4
        await one.stop()

    run(main())


def test_transport_errors_in_client() -> None:
    async def main() -> None:
        async with serving() as (_, url):
            async with RpcClient(url + "health") as c:  # not a JSON-RPC endpoint
                with pytest.raises(RpcTransportError):
                    await c.call("add", [1])
        with pytest.raises(RpcTransportError):
            await WsRpcClient("http://127.0.0.1:9/", timeout=2).connect()

    run(main())


class _Background:
    """A server on its own event loop in a thread, for the blocking client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = make_server()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self._run(self.server.start)

    def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def close(self) -> None:
        self._run(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_sync_client() -> None:
    bg = _Background()
    try:
        with SyncRpcClient(f"http://127.0.0.1:{bg.port}/", timeout=5) as c:
            assert c.call("add", [20, 22]) == 42
            assert c.call("add", {"a": 1}) == 1
            c.notify("record", ["sync"])
            assert c.batch([("echo", ["a"]), ("nope", None)])[0] == "a"
            with pytest.raises(RpcError) as exc:
                c.call("place", [0])
            assert exc.value.code == ORDER_REJECTED
        assert bg.server.app[SEEN] == ["sync"]
    finally:
        bg.close()
