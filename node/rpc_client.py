"""JSON-RPC 2.0 clients for ``node.rpc`` servers (and any JSON-RPC 2.0 server).

- ``RpcClient``: calls, notifications and batches over HTTP POST;
- ``WsRpcClient``: calls and subscriptions over one WebSocket;
- ``SyncRpcClient``: a blocking wrapper of ``RpcClient`` for scripts.

Error responses raise ``RpcError`` (code, message, data). A failure to talk to
the server at all (refused connection, timeout, a reply that is not JSON-RPC,
a closed WebSocket) raises ``RpcTransportError``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from node.rpc import INTERNAL_ERROR, NOTIFICATION_METHOD, SUBSCRIBE, UNSUBSCRIBE, RpcError

Params = list[Any] | dict[str, Any] | None

__all__ = [
    "Params",
    "RpcClient",
    "RpcError",
    "RpcTransportError",
    "Subscription",
    "SyncRpcClient",
    "WsRpcClient",
]


class RpcTransportError(Exception):
    """The server could not be reached, or did not answer in JSON-RPC 2.0."""


def _request(method: str, params: Params, id_: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    if id_ is not None:
        out["id"] = id_
    return out


def _outcome(reply: Any) -> Any:
    """The result of one response object, or the ``RpcError`` it carries (returned, not raised)."""
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
        raise RpcTransportError(f"not a JSON-RPC 2.0 response: {str(reply)[:200]}")
    if "error" in reply:
        err = reply["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            raise RpcTransportError(f"malformed error object: {str(err)[:200]}")
        return RpcError(err["code"], str(err.get("message", "")), err.get("data"))
    if "result" not in reply:
        raise RpcTransportError("response has neither result nor error")
    return reply["result"]


def _unwrap(reply: Any) -> Any:
    outcome = _outcome(reply)
    if isinstance(outcome, RpcError):
        raise outcome
    return outcome


class RpcClient:
    """JSON-RPC over HTTP POST. Use as ``async with RpcClient(url) as c: await c.call(...)``."""

    def __init__(
        self, url: str, *, timeout: float = 30.0, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None
        self._ids = itertools.count(1)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _post(self, body: Any) -> Any:
        """POST ``body``; the decoded reply, or None for an empty (204) reply."""
        try:
            async with self._get_session().post(self.url, json=body) as resp:
                text = await resp.text()
                if resp.status == 204 or (not text and resp.status == 200):
                    return None
                try:
                    return json.loads(text)
                except ValueError:
                    raise RpcTransportError(f"HTTP {resp.status}: {text[:200]!r}") from None
        except aiohttp.ClientError as exc:
            raise RpcTransportError(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise RpcTransportError("request timed out") from exc

    async def call(self, method: str, params: Params = None) -> Any:
        """Call ``method`` and return its result; raises ``RpcError`` on an error response."""
        return _unwrap(await self._post(_request(method, params, next(self._ids))))

    async def notify(self, method: str, params: Params = None) -> None:
        """Send a notification (no reply is expected, errors are not reported)."""
        await self._post(_request(method, params, None))

    async def batch(self, calls: Sequence[tuple[str, Params]]) -> list[Any]:
        """Send several calls in one request; each item is a result or an ``RpcError``."""
        ids = [next(self._ids) for _ in calls]
        replies = await self._post([_request(m, p, i) for (m, p), i in zip(calls, ids, strict=True)])
        if isinstance(replies, dict):  # the whole batch was refused
            _unwrap(replies)
            raise RpcTransportError("unexpected single reply to a batch")
        if not isinstance(replies, list):
            raise RpcTransportError("batch reply is not an array")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        return [
            _outcome(by_id[i]) if i in by_id else RpcError(INTERNAL_ERROR, "no reply for this call")
            for i in ids
        ]

    async def close(self) -> None:
        """Close the HTTP session (if this client created it)."""
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_CLOSED = object()


class Subscription:
    """Pushed results of one ``hfx_subscribe``; iterate it or ``await get()``."""

    def __init__(self, client: WsRpcClient, sid: str, topic: str) -> None:
        self.id = sid
        self.topic = topic
        self._client = client
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    async def get(self, timeout: float | None = None) -> Any:
        """The next pushed result.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``RpcTransportError``
        once the connection is closed and every earlier push has been read.
        """
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            raise RpcTransportError(f"connection closed ({self._client.close_code})")
        return item

    def pending(self) -> int:
        """How many pushed results are waiting to be read."""
        return self._queue.qsize()

    async def unsubscribe(self) -> bool:
        """Stop the pushes; True if the server still knew the subscription."""
        self._client._subs.pop(self.id, None)
        return bool(await self._client.call(UNSUBSCRIBE, [self.id]))

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.get()
            except RpcTransportError:
                return


class WsRpcClient:
    """JSON-RPC over one WebSocket, with subscriptions.

    ``async with WsRpcClient(url) as ws: sub = await ws.subscribe("fills")``.
    Pushed results wait in an unbounded per-subscription queue until read.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        max_msg_size: int = 16 << 20,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_msg_size = max_msg_size
        self.close_code: int | None = None
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._subs: dict[str, Subscription] = {}
        self._early: dict[str, list[Any]] = {}

    async def connect(self) -> WsRpcClient:
        """Open the WebSocket (done by ``async with``)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            self._ws = await asyncio.wait_for(
                self._session.ws_connect(self.url, max_msg_size=self.max_msg_size), self.timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self.close()
            raise RpcTransportError(f"cannot connect to {self.url}: {exc}") from exc
        self._reader = asyncio.ensure_future(self._read_loop(self._ws))
        return self

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._ws is None or self._ws.closed

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                try:
                    self._deliver(json.loads(msg.data))
                except ValueError:
                    continue
        finally:
            self.close_code = ws.close_code
            self._fail_all()

    def _deliver(self, message: Any) -> None:
        if isinstance(message, list):
            for item in message:
                self._deliver(item)
            return
        if not isinstance(message, dict):
            return
        if message.get("method") == NOTIFICATION_METHOD:
            params = message.get("params") or {}
            sid = params.get("subscription")
            sub = self._subs.get(sid) if isinstance(sid, str) else None
            if sub is not None:
                sub._queue.put_nowait(params.get("result"))
            elif isinstance(sid, str) and len(self._early) < 1024:
                # a push that overtook our handling of the subscribe reply
                self._early.setdefault(sid, []).append(params.get("result"))
            return
        id_ = message.get("id")
        fut = self._waiting.pop(id_, None) if isinstance(id_, int) else None
        if fut is not None and not fut.done():
            fut.set_result(message)

    def _fail_all(self) -> None:
        error = RpcTransportError(f"connection closed ({self.close_code})")
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(error)
        self._waiting.clear()
        for sub in self._subs.values():
            sub._queue.put_nowait(_CLOSED)

    async def _send(self, body: Any) -> None:
        if self._ws is None or self._ws.closed:
            raise RpcTransportError("not connected")
        try:
            await self._ws.send_str(json.dumps(body))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise RpcTransportError(str(exc)) from exc

    async def call(self, method: str, params: Params = None) -> Any:
        """Call ``method`` and return its result; raises ``RpcError`` on an error response."""
        id_ = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[id_] = fut
        try:
            await self._send(_request(method, params, id_))
            reply = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError as exc:
            raise RpcTransportError(f"{method}: no reply in {self.timeout}s") from exc
        finally:
            self._waiting.pop(id_, None)
        return _unwrap(reply)

    async def notify(self, method: str, params: Params = None) -> None:
        """Send a notification."""
        await self._send(_request(method, params, None))

    async def subscribe(self, topic: str, params: Any = None) -> Subscription:
        """``hfx_subscribe(topic, params)``; the returned ``Subscription`` yields pushes."""
        sid = await self.call(SUBSCRIBE, [topic] if params is None else [topic, params])
        if not isinstance(sid, str):
            raise RpcTransportError(f"bad subscription id {sid!r}")
        sub = Subscription(self, sid, topic)
        for result in self._early.pop(sid, []):
            sub._queue.put_nowait(result)
        self._subs[sid] = sub
        if self.closed:
            sub._queue.put_nowait(_CLOSED)
        return sub

    async def close(self) -> None:
        """Close the WebSocket and the session (if this client created it)."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WsRpcClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SyncRpcClient:
    """Blocking JSON-RPC over HTTP for scripts: ``SyncRpcClient(url).call("hfx_markets")``.

    Runs a private event loop; do not use it from inside a running event loop.
    """

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = RpcClient(url, timeout=timeout)

    def call(self, method: str, params: Params = None) -> Any:
        """Call ``method`` and return its result; raises ``RpcError`` on an error response."""
        return self._loop.run_until_complete(self._client.call(method, params))

    def notify(self, method: str, params: Params = None) -> None:
        """Send a notification."""
        self._loop.run_until_complete(self._client.notify(method, params))

    def batch(self, calls: Sequence[tuple[str, Params]]) -> list[Any]:
        """Several calls in one request; each item is a result or an ``RpcError``."""
        return self._loop.run_until_complete(self._client.batch(calls))

    def close(self) -> None:
        """Close the session and the private loop. Idempotent."""
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()

    def __enter__(self) -> SyncRpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
