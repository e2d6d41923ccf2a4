"""JSON-RPC 2.0 server base over HTTP POST and WebSocket (aiohttp).

An ``RpcServer`` holds a method registry and a set of subscription topics and
serves them on one port:

- ``POST /``           JSON-RPC over HTTP (``Content-Type: application/json``);
- ``GET /`` or ``/ws`` JSON-RPC over WebSocket, with subscriptions;
- ``GET /health``      ``{"status": "ok", ...}`` (503 when the health check fails);
- ``GET /metrics``     Prometheus text exposition of the request counters.

Handlers are coroutine functions whose signature is the method's parameters:
positional params (a JSON array) bind in order, named params (a JSON object)
by name, and simple annotations (``str``, ``int``, ``float``, ``bool``,
``list[...]``, ``dict[...]``, ``Literal``, unions, ``None``) are checked before
the call. A handler raises ``RpcError`` (or ``InvalidParams``) for a domain
error; any other exception is logged and answered with -32603 and no detail.
docs/rpc-base.md describes the protocol, the error codes and the limits.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import re
import secrets
import socket
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors, numbered as in EIP-1474.
METHOD_NOT_SUPPORTED = -32004
LIMIT_EXCEEDED = -32005

SUBSCRIBE = "hfx_subscribe"
UNSUBSCRIBE = "hfx_unsubscribe"
NOTIFICATION_METHOD = "hfx_subscription"
SLOW_CONSUMER_CLOSE = 4008  # WebSocket close code sent to a dropped slow consumer

JsonValue = Any
Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)


class RpcError(Exception):
    """A JSON-RPC error: ``code``, a human-readable ``message``, optional ``data``.

    Handlers raise it for named domain errors; the client raises it for every
    error response.
    """

    def __init__(self, code: int, message: str, data: JsonValue = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, JsonValue]:
        """The ``error`` member of a response."""
        out: dict[str, JsonValue] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


class InvalidParams(RpcError):
    """-32602: the params do not fit the method."""

    def __init__(self, message: str, data: JsonValue = None) -> None:
        super().__init__(INVALID_PARAMS, f"invalid params: {message}", data)


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Bounds that protect the server from any one client."""

    max_request_bytes: int = 1 << 20  # one HTTP body or one WebSocket message
    max_batch: int = 100  # calls in one batch
    max_json_depth: int = 64  # nesting of arrays/objects in one message
    ws_queue: int = 256  # outbound messages buffered per WebSocket before it is dropped
    max_subscriptions: int = 64  # per WebSocket connection
    ws_heartbeat: float | None = 30.0  # ping interval; a peer that never pongs is closed
    ws_compress: bool = True
    close_timeout: float = 2.0  # seconds to wait for a closing handshake


@dataclass(frozen=True, slots=True)
class RpcContext:
    """Who is calling: passed to handlers registered with ``context=True``."""

    transport: Literal["http", "ws"]
    remote: str | None
    connection: WsConnection | None = None


# -- metrics -------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters and gauges rendered in the Prometheus text format (version 0.0.4)."""

    def __init__(self) -> None:
        self._meta: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        self._values: dict[str, dict[tuple[str, ...], float]] = {}
        self._callbacks: dict[str, Callable[[], float]] = {}

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        """Declare a counter (idempotent)."""
        self._declare(name, "counter", help_text, tuple(labels))

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        callback: Callable[[], float] | None = None,
    ) -> None:
        """Declare a gauge; with ``callback`` (no labels) it is read at every scrape."""
        self._declare(name, "gauge", help_text, tuple(labels))
        if callback is not None:
            self._callbacks[name] = callback

    def _declare(self, name: str, kind: str, help_text: str, labels: tuple[str, ...]) -> None:
        if name not in self._meta:
            self._meta[name] = (kind, help_text, labels)
            self._values[name] = {}

    def inc(self, name: str, *label_values: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the series of ``name`` with these label values."""
        series = self._values[name]
        series[label_values] = series.get(label_values, 0.0) + amount

    def set(self, name: str, value: float, *label_values: str) -> None:
        """Set a gauge series."""
        self._values[name][label_values] = value

    def value(self, name: str, *label_values: str) -> float:
        """The current value of one series (0 if never touched)."""
        if name in self._callbacks:
            return float(self._callbacks[name]())
        return self._values[name].get(label_values, 0.0)

    def render(self) -> str:
        """The text exposition of every metric."""
        lines: list[str] = []
        for name, (kind, help_text, labels) in self._meta.items():
            lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2)}")
            lines.append(f"# TYPE {name} {kind}")
            series = dict(self._values[name])
            if name in self._callbacks:
                series = {(): float(self._callbacks[name]())}
            for label_values, value in sorted(series.items()):
                pairs = ",".join(
                    f'{key}="{_escape(v)}"' for key, v in zip(labels, label_values, strict=True)
                )
                text = repr(value) if value != int(value) else str(int(value))
                lines.append(f"{name}{{{pairs}}} {text}" if pairs else f"{name} {text}")
        return "\n".join(lines) + "\n"


# -- JSON nesting guard ------------------------------------------------------------------

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects in ``text`` nest deeper than ``limit``.

    The C JSON decoder recurses per level; with a raised interpreter recursion
    limit a deeply nested document can overflow the C stack, so depth is
    bounded before decoding. Cheap for ordinary requests (few brackets).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    depths = itertools.accumulate(map(_BRACKET_DELTA.__getitem__, brackets))
    return max(depths, default=0) > limit


# -- parameter binding -------------------------------------------------------------------


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a simple annotation; unknown annotations pass."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list:
        return isinstance(value, list) and (not args or all(_type_ok(v, args[0]) for v in value))
    if hint is dict or origin is dict:
        return isinstance(value, dict) and (
            len(args) < 2 or all(_type_ok(v, args[1]) for v in value.values())
        )
    return True


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


@dataclass(frozen=True, slots=True)
class _Method:
    name: str
    handler: Handler
    signature: inspect.Signature
    hints: dict[str, Any]
    context: bool

    def bind(self, params: list[Any] | dict[str, Any] | None) -> inspect.BoundArguments:
        try:
            if isinstance(params, dict):
                bound = self.signature.bind(**params)
            else:
                bound = self.signature.bind(*(params or []))
        except TypeError as exc:
            raise InvalidParams(str(exc)) from None
        for pname, value in bound.arguments.items():
            param = self.signature.parameters[pname]
            hint = self.hints.get(pname, inspect.Parameter.empty)
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                bad = next((v for v in value if not _type_ok(v, hint)), _MISSING)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                bad = next((v for v in value.values() if not _type_ok(v, hint)), _MISSING)
            else:
                bad = _MISSING if _type_ok(value, hint) else value
            if bad is not _MISSING:
                raise InvalidParams(
                    f"{pname!r} must be {_hint_name(hint)}, got {_json_type(bad)}"
                )
        return bound


_MISSING = object()


def _make_method(name: str, handler: Handler, context: bool) -> _Method:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"handler for {name!r} must be an async function")
    signature = inspect.signature(handler)
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolvable annotations: bind by name/arity only
        hints = {}
    if context:
        params = list(signature.parameters.values())
        if not params:
            raise TypeError(f"handler for {name!r} takes no context argument")
        signature = signature.replace(parameters=params[1:])
    hints.pop("return", None)
    return _Method(name, handler, signature, hints, context)


# -- subscriptions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Topic:
    name: str
    accept: Callable[[Any], Any] | None
    match: Callable[[Any, Any], bool] | None


@dataclass(slots=True)
class _Subscription:
    id: str
    topic: str
    filter: Any
    connection: WsConnection
    active: bool = False


class WsConnection:
    """One WebSocket client: its outbound queue and its subscriptions."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, queue_size: int) -> None:
        self.ws = ws
        self.remote = request.remote
        self.transport = request.transport
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.subscriptions: dict[str, _Subscription] = {}
        self.dropped = False
        self.writer: asyncio.Task[None] | None = None

    async def _write_loop(self) -> None:
        while True:
            message = await self.queue.get()
            await self.ws.send_str(message)

    def offer(self, message: str) -> bool:
        """Queue a push without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True


# -- the server -------------------------------------------------------------------------


def _error(id_: JsonValue, code: int, message: str, data: JsonValue = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": RpcError(code, message, data).to_json()}


def _valid_id(id_: Any) -> bool:
    return id_ is None or isinstance(id_, str) or (isinstance(id_, int) and not isinstance(id_, bool))


class RpcServer:
    """A JSON-RPC 2.0 server: register methods and topics, ``start``, ``publish``, ``stop``."""

    def __init__(
        self,
        *,
        limits: RpcLimits | None = None,
        health: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
        json_default: Callable[[Any], Any] | None = None,
        metric_prefix: str = "hfx_rpc",
    ) -> None:
        self.limits = limits or RpcLimits()
        self._health = health
        self._json_default = json_default
        self._methods: dict[str, _Method] = {}
        self._topics: dict[str, _Topic] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._by_topic: dict[str, dict[str, _Subscription]] = {}
        self._connections: set[WsConnection] = set()
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.port: int | None = None
        p = metric_prefix
        self._m_requests = f"{p}_requests_total"
        self._m_errors = f"{p}_errors_total"
        self._m_pushes = f"{p}_notifications_sent_total"
        self._m_dropped = f"{p}_slow_consumers_dropped_total"
        self.metrics = Metrics()
        self.metrics.counter(self._m_requests, "JSON-RPC calls by method and transport.",
                             ("method", "transport"))
        self.metrics.counter(self._m_errors, "JSON-RPC error responses by code.", ("code",))
        self.metrics.counter(self._m_pushes, "Subscription notifications queued.")
        self.metrics.counter(self._m_dropped, "WebSocket clients dropped for a full queue.")
        self.metrics.gauge(f"{p}_ws_connections", "Open WebSocket connections.",
                           callback=lambda: len(self._connections))
        self.metrics.gauge(f"{p}_subscriptions", "Active subscriptions.",
                           callback=lambda: len(self._subscriptions))
        self.app = web.Application(client_max_size=self.limits.max_request_bytes)
        self.app.router.add_post("/", self._http_rpc)
        self.app.router.add_get("/", self._ws_rpc)
        self.app.router.add_get("/ws", self._ws_rpc)
        self.app.router.add_get("/health", self._http_health)
        self.app.router.add_get("/metrics", self._http_metrics)

    # -- registry ---------------------------------------------------------------------

    def register(self, name: str, handler: Handler, *, context: bool = False) -> None:
        """Serve ``handler`` as method ``name``.

        With ``context=True`` the handler's first argument is an ``RpcContext``
        and the remaining parameters are the method's params.
        """
        if not isinstance(name, str) or not name or name.startswith("rpc."):
            raise ValueError(f"invalid method name {name!r}")
        if name in self._methods or name in (SUBSCRIBE, UNSUBSCRIBE):
            raise ValueError(f"method {name!r} is already registered")
        self._methods[name] = _make_method(name, handler, context)

    def method(self, name: str | None = None, *, context: bool = False) -> Callable[[H], H]:
        """Decorator form of ``register``; the name defaults to the function's name."""

        def wrap(handler: H) -> H:
            self.register(name or handler.__name__, handler, context=context)
            return handler

        return wrap

    def methods(self) -> list[str]:
        """The registered method names (subscription methods included)."""
        return sorted([*self._methods, SUBSCRIBE, UNSUBSCRIBE])

    def add_topic(
        self,
        name: str,
        *,
        accept: Callable[[Any], Any] | None = None,
        match: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        """Allow ``hfx_subscribe(name, params)``.

        ``accept(params)`` validates the subscribe params (raise ``RpcError`` to
        refuse) and returns the subscription's filter; ``match(filter, payload)``
        decides whether a published payload goes to that subscription. Without
        them, params must be absent/null and every payload goes to everyone.
        """
        if name in self._topics:
            raise ValueError(f"topic {name!r} is already registered")
        self._topics[name] = _Topic(name, accept, match)
        self._by_topic[name] = {}

    # -- publishing --------------------------------------------------------------------

    def publish(self, topic: str, payload: JsonValue) -> int:
        """Push ``payload`` to every matching subscription of ``topic``; returns how many.

        Never blocks: a connection whose outbound queue is full is dropped (closed
        with code 4008) instead. Call it from the event loop's thread.
        """
        if topic not in self._topics:
            raise KeyError(f"unknown topic {topic!r}")
        match = self._topics[topic].match
        result: str | None = None
        sent = 0
        for sub in list(self._by_topic[topic].values()):
            if not sub.active or sub.connection.dropped:
                continue
            if match is not None:
                try:
                    wanted = match(sub.filter, payload)
                except Exception:
                    log.exception("match function of topic %s failed", topic)
                    continue
                if not wanted:
                    continue
            if result is None:
                result = self._dumps(payload)
            message = (
                '{"jsonrpc":"2.0","method":"' + NOTIFICATION_METHOD + '","params":'
                '{"subscription":"' + sub.id + '","result":' + result + "}}"
            )
            if sub.connection.offer(message):
                sent += 1
            else:
                self._drop(sub.connection)
        self.metrics.inc(self._m_pushes, amount=sent)
        return sent

    def subscription_count(self, topic: str | None = None) -> int:
        """Active subscriptions, for one topic or all."""
        if topic is None:
            return len(self._subscriptions)
        return len(self._by_topic.get(topic, ()))

    def _drop(self, conn: WsConnection) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        self.metrics.inc(self._m_dropped)
        log.warning("dropping slow WebSocket consumer %s", conn.remote)
        self._forget(conn)
        if conn.writer is not None:
            conn.writer.cancel()
        while not conn.queue.empty():  # free the memory; wakes a reply waiting for room
            conn.queue.get_nowait()
        task = asyncio.ensure_future(
            self._close_ws(conn, SLOW_CONSUMER_CLOSE, b"slow consumer: outbound queue full")
        )
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _forget(self, conn: WsConnection) -> None:
        for sid, sub in conn.subscriptions.items():
            self._subscriptions.pop(sid, None)
            self._by_topic[sub.topic].pop(sid, None)
        conn.subscriptions.clear()

    async def _close_ws(self, conn: WsConnection, code: int, message: bytes) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code=code, message=message),
                                   self.limits.close_timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if conn.dropped and conn.transport is not None:
                # The close frame waits behind data the peer has not read; give it
                # close_timeout to arrive, then free the buffers whatever happens.
                asyncio.get_running_loop().call_later(self.limits.close_timeout,
                                                      conn.transport.abort)

    # -- dispatch -----------------------------------------------------------------------

    def _dumps(self, value: JsonValue) -> str:
        return json.dumps(value, separators=(",", ":"), default=self._json_default,
                          allow_nan=False)

    async def dispatch(self, raw: str | bytes, ctx: RpcContext) -> str | None:
        """Answer one raw JSON-RPC message (a call or a batch); None when no reply is due."""
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            if _nesting_exceeds(text, self.limits.max_json_depth):
                self.metrics.inc(self._m_errors, str(PARSE_ERROR))
                return self._dumps(_error(None, PARSE_ERROR, "parse error: JSON nested deeper "
                                          f"than {self.limits.max_json_depth} levels"))
            message = json.loads(text)
        except (ValueError, RecursionError):
            self.metrics.inc(self._m_errors, str(PARSE_ERROR))
            return self._dumps(_error(None, PARSE_ERROR, "parse error: invalid JSON"))
        if isinstance(message, list):
            if not message:
                return self._dumps(self._count(_error(None, INVALID_REQUEST,
                                                      "invalid request: empty batch")))
            if len(message) > self.limits.max_batch:
                return self._dumps(self._count(_error(
                    None, LIMIT_EXCEEDED,
                    f"batch of {len(message)} calls exceeds the limit of {self.limits.max_batch}",
                )))
            replies = []
            for call in message:  # in order: a batch's calls may depend on each other
                reply = await self._call(call, ctx)
                if reply is not None:
                    replies.append(reply)
            return self._encode_reply(replies) if replies else None
        reply = await self._call(message, ctx)
        return None if reply is None else self._encode_reply(reply)

    def _encode_reply(self, reply: dict[str, Any] | list[dict[str, Any]]) -> str:
        try:
            return self._dumps(reply)
        except (TypeError, ValueError):
            # A handler returned something that is not JSON: answer each such call -32603.
            items = reply if isinstance(reply, list) else [reply]
            fixed = []
            for item in items:
                try:
                    self._dumps(item)
                    fixed.append(item)
                except (TypeError, ValueError):
                    log.error("result of a call with id %r is not JSON-serialisable", item["id"])
                    fixed.append(self._count(_error(item["id"], INTERNAL_ERROR, "internal error")))
            return self._dumps(fixed if isinstance(reply, list) else fixed[0])

    def _count(self, reply: dict[str, Any]) -> dict[str, Any]:
        self.metrics.inc(self._m_errors, str(reply["error"]["code"]))
        return reply

    async def _call(self, call: Any, ctx: RpcContext) -> dict[str, Any] | None:
        if not isinstance(call, dict):
            return self._count(_error(None, INVALID_REQUEST,
                                      "invalid request: expected a JSON object"))
        id_ = call.get("id")
        if not _valid_id(id_):
            return self._count(_error(None, INVALID_REQUEST,
                                      "invalid request: id must be a string, an integer or null"))
        if call.get("jsonrpc") != "2.0":
            return self._count(_error(id_, INVALID_REQUEST,
                                      'invalid request: "jsonrpc" must be exactly "2.0"'))
        name = call.get("method")
        if not isinstance(name, str):
            return self._count(_error(id_, INVALID_REQUEST,
                                      'invalid request: "method" must be a string'))
        notification = "id" not in call
        known = name in self._methods or name in (SUBSCRIBE, UNSUBSCRIBE)
        self.metrics.inc(self._m_requests, name if known else "<unknown>", ctx.transport)
        try:
            params = call.get("params")
            if params is not None and not isinstance(params, list | dict):
                raise InvalidParams("params must be an array or an object")
            result = await self._invoke(name, params, ctx)
        except RpcError as exc:
            self.metrics.inc(self._m_errors, str(exc.code))
            return None if notification else {"jsonrpc": "2.0", "id": id_, "error": exc.to_json()}
        except Exception:
            log.exception("JSON-RPC method %s failed", name)
            self.metrics.inc(self._m_errors, str(INTERNAL_ERROR))
            return None if notification else _error(id_, INTERNAL_ERROR, "internal error")
        return None if notification else {"jsonrpc": "2.0", "id": id_, "result": result}

    async def _invoke(self, name: str, params: list[Any] | dict[str, Any] | None,
                      ctx: RpcContext) -> Any:
        if name == SUBSCRIBE:
            return self._subscribe(ctx, *self._sub_args(params, ("topic", "params"), 1))
        if name == UNSUBSCRIBE:
            return self._unsubscribe(ctx, *self._sub_args(params, ("subscription",), 1))
        method = self._methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:100]}")
        bound = method.bind(params)
        if method.context:
            return await method.handler(ctx, *bound.args, **bound.kwargs)
        return await method.handler(*bound.args, **bound.kwargs)

    @staticmethod
    def _sub_args(params: list[Any] | dict[str, Any] | None, names: tuple[str, ...],
                  required: int) -> list[Any]:
        if isinstance(params, dict):
            unknown = set(params) - set(names)
            if unknown:
                raise InvalidParams(f"unexpected {sorted(unknown)}")
            values = [params.get(n) for n in names]
            count = sum(1 for n in names if n in params)
        else:
            values = list(params or [])
            count = len(values)
            if count > len(names):
                raise InvalidParams(f"at most {len(names)} params")
            values += [None] * (len(names) - count)
        if count < required or any(v is None for v in values[:required]):
            raise InvalidParams(f"missing {names[0]!r}")
        return values

    def _subscribe(self, ctx: RpcContext, topic: Any, params: Any) -> str:
        conn = ctx.connection
        if conn is None:
            raise RpcError(METHOD_NOT_SUPPORTED, "subscriptions need a WebSocket connection")
        if not isinstance(topic, str):
            raise InvalidParams("topic must be a string")
        spec = self._topics.get(topic)
        if spec is None:
            raise InvalidParams(f"unknown topic {topic[:100]!r}",
                                {"topics": sorted(self._topics)})
        if len(conn.subscriptions) >= self.limits.max_subscriptions:
            raise RpcError(LIMIT_EXCEEDED, f"at most {self.limits.max_subscriptions} "
                                           "subscriptions per connection")
        if spec.accept is not None:
            flt = spec.accept(params)
        elif params is not None:
            raise InvalidParams(f"topic {topic!r} takes no params")
        else:
            flt = None
        sid = "0x" + secrets.token_hex(16)
        sub = _Subscription(sid, topic, flt, conn)
        conn.subscriptions[sid] = sub
        self._subscriptions[sid] = sub
        self._by_topic[topic][sid] = sub
        return sid

    def _unsubscribe(self, ctx: RpcContext, sid: Any, *_: Any) -> bool:
        conn = ctx.connection
        if conn is None:
            raise RpcError(METHOD_NOT_SUPPORTED, "subscriptions need a WebSocket connection")
        if not isinstance(sid, str):
            raise InvalidParams("subscription id must be a string")
        sub = conn.subscriptions.pop(sid, None)
        if sub is None:
            return False
        del self._subscriptions[sid]
        del self._by_topic[sub.topic][sid]
        return True

    # -- HTTP -----------------------------------------------------------------------------

    def _json_response(self, body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json")

    async def _http_rpc(self, request: web.Request) -> web.StreamResponse:
        limit = self.limits.max_request_bytes
        too_large = _error(None, LIMIT_EXCEEDED, f"request exceeds {limit} bytes",
                           {"limit": limit})
        if request.content_type != "application/json":
            return self._json_response(self._dumps(self._count(_error(
                None, INVALID_REQUEST, "Content-Type must be application/json"))), 415)
        if request.content_length is not None and request.content_length > limit:
            return self._json_response(self._dumps(self._count(too_large)), 413)
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > limit:
                return self._json_response(self._dumps(self._count(too_large)), 413)
        ctx = RpcContext("http", request.remote)
        reply = await self.dispatch(bytes(body), ctx)
        if reply is None:
            return web.Response(status=204)
        return self._json_response(reply)

    async def _http_health(self, request: web.Request) -> web.Response:
        extra: Mapping[str, Any] = {}
        if self._health is not None:
            try:
                extra = await self._health()
            except Exception as exc:
                log.warning("health check failed: %s", exc)
                return self._json_response(self._dumps({"status": "unhealthy"}), 503)
        body = {"status": "ok", **extra}
        return self._json_response(self._dumps(body), 200 if body["status"] == "ok" else 503)

    async def _http_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    # -- WebSocket --------------------------------------------------------------------------

    async def _ws_rpc(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.limits.max_request_bytes,
            heartbeat=self.limits.ws_heartbeat,
            compress=self.limits.ws_compress,
            timeout=self.limits.close_timeout,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=405, text="POST JSON-RPC here, or open a WebSocket\n")
        await ws.prepare(request)
        if self._stopping:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return ws
        conn = WsConnection(ws, request, self.limits.ws_queue)
        conn.writer = asyncio.ensure_future(conn._write_loop())
        self._connections.add(conn)
        ctx = RpcContext("ws", request.remote, conn)
        try:
            async for msg in ws:
                if conn.dropped:
                    break
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    if msg.type == WSMsgType.ERROR:
                        log.info("WebSocket %s: %s", request.remote, ws.exception())
                    break
                before = set(conn.subscriptions)
                reply = await self.dispatch(msg.data, ctx)
                if reply is not None and not conn.dropped:
                    await conn.queue.put(reply)
                # A subscription's pushes start only after its id has been sent.
                for sid in set(conn.subscriptions) - before:
                    conn.subscriptions[sid].active = True
        finally:
            self._connections.discard(conn)
            self._forget(conn)
            if not conn.dropped:
                await self._drain(conn)
            if conn.writer is not None:
                conn.writer.cancel()
            if not ws.closed:
                await self._close_ws(conn, WSCloseCode.OK, b"")
        return ws

    async def _drain(self, conn: WsConnection) -> None:
        """Give the writer a moment to send queued replies before the socket closes."""
        if conn.writer is None or conn.writer.done() or conn.ws.closed:
            return
        try:
            async with asyncio.timeout(self.limits.close_timeout):
                while not conn.queue.empty() and not conn.writer.done():
                    await asyncio.sleep(0.005)
        except TimeoutError:
            pass

    # -- lifetime -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (port 0 picks a free one); returns the bound port."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        self._stopping = False
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.limits.close_timeout)
        await runner.setup()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(sock.getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close every WebSocket (code 1001), finish in-flight HTTP calls, stop listening."""
        self._stopping = True
        closing = [
            self._close_ws(c, WSCloseCode.GOING_AWAY, b"server shutting down")
            for c in list(self._connections)
        ]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.port = None

    async def __aenter__(self) -> RpcServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

