"""RPC latency benchmark: ``python -m sequencer.rpc_bench [n_orders] [rate] [--default-gc] [--inline]``.

:func:`bench_rpc` starts a durable sequencer (temporary directory, two funded
traders, fresh prices) behind the JSON-RPC server in this process, and a
separate client process on loopback that offers ``rate`` orders per second
(open loop: order ``i`` is sent at ``i / rate`` s whatever the replies, over
up to 64 concurrent HTTP connections). Orders alternate a resting ask and a
buy that fills it, pre-signed before the clock starts. Before the clock starts
the client opens its connections, and its collector is quieted like the
server's (:func:`sequencer.service.quiet_gc`), so that what is measured is the
server's. It reports the acknowledged throughput and the acknowledgment
latency (send to reply, the WAL fsync included) percentiles.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from node.rpc import RpcServer
from sequencer.exchange import Exchange
from sequencer.rpc_api import SequencerApi
from sequencer.service import ExchangeService, quiet_gc
from state.constants import KIND_PERP, ORACLE_UNDERLYING_BASE
from state.context import ChainConfig, L1Deposit
from state.eip712 import address_of
from state.genesis import genesis_leaves
from state.keccak import keccak256
from state.layout import Config, Market
from state.signing import sign_order, signed_oracle
from state.txs import OracleEntry, OrderBody

__all__ = ["bench_rpc"]

PRICE = 3_000_000
NEVER = (1 << 64) - 1
ORACLE_KEY = keccak256(b"bench-oracle")
TRADER_KEYS = (keccak256(b"bench-maker"), keccak256(b"bench-taker"))


def _chain() -> ChainConfig:
    return ChainConfig(31337, b"\x42" * 20, frozenset({address_of(ORACLE_KEY)}), 1)


def _signed_orders(n: int, accounts: tuple[int, int]) -> list[str]:
    """``n`` order entries (hex): an ask of the maker, then the taker's buy that fills it."""
    domain = _chain().domain
    out = []
    for i in range(n):
        side = i % 2
        body = OrderBody(accounts[side], 0, side == 1, 0, PRICE, 1, NEVER, i + 1)
        key = TRADER_KEYS[side]
        out.append("0x" + sign_order(key, address_of(key), domain, body).encode().hex())
    return out


CONNECTIONS = 64
"""Concurrent HTTP connections of the client (requests beyond them wait for one)."""


async def _open_connections(session: aiohttp.ClientSession, url: str) -> None:
    """Open the client's connections before the clock starts (``CONNECTIONS`` concurrent
    ``hfx_syncStatus`` reads), as a long-running client holds them: otherwise the first
    orders each pay a TCP handshake and the server's per-connection setup, and those
    slow replies make the client open still more connections (20–50 of the first 100
    orders measured over 10 ms)."""
    body = {"jsonrpc": "2.0", "id": 0, "method": "hfx_syncStatus", "params": []}

    async def one() -> None:
        async with session.post(url, json=body) as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(CONNECTIONS)))


def _client(url: str, entries: list[str], rate: float, conn: Connection) -> None:
    """(client process) Offer the orders at ``rate``/s; send back latencies (s) and errors.

    The client's collector is quieted too (:func:`quiet_gc`): with the default
    thresholds a full collection of the client's own objects (the pre-signed
    entries, aiohttp's per-request objects, 5,000 tasks) stalled its loop for
    ~45 ms mid-run, which the benchmark reported as acknowledgment latency."""

    async def run() -> tuple[list[float], int, float]:
        latencies: list[float] = []
        errors = 0
        limit = asyncio.Semaphore(CONNECTIONS)
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int, entry: str) -> None:
                nonlocal errors
                body = {"jsonrpc": "2.0", "id": i, "method": "hfx_placeOrder", "params": [{"entry": entry}]}
                async with limit:
                    t0 = time.perf_counter()
                    async with session.post(url, json=body) as resp:
                        reply = await resp.json()
                    latencies.append(time.perf_counter() - t0)
                if "error" in reply:
                    errors += 1

            await _open_connections(session, url)
            quiet_gc()
            start = time.perf_counter()
            tasks = []
            for i, entry in enumerate(entries):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, entry)))
            await asyncio.gather(*tasks)
            return latencies, errors, time.perf_counter() - start

    conn.send(asyncio.run(run()))
    conn.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _serve_and_measure(
    n_orders: int, rate: float, directory: str, tune_gc: bool, recover_ahead: bool
) -> dict[str, Any]:
    now = int(time.time())
    config = Config(5, 1, 150, 50, 100, 75, 60)
    markets = [Market(KIND_PERP, 0, 1000, 500, 1000, 1, 0, 0, 3)]
    chain = _chain()
    core = Exchange.open(directory, chain, genesis_leaves(config, markets, now - 10))
    service = ExchangeService(core, recover_ahead=recover_ahead)
    owners = [address_of(k) for k in TRADER_KEYS]
    await service.add_l1_items([L1Deposit(o, 10**15) for o in owners], [])
    step = signed_oracle([ORACLE_KEY], chain.domain, now,
                         [OracleEntry(0, PRICE, 0), OracleEntry(ORACLE_UNDERLYING_BASE, PRICE, 0)])
    await service.submit_oracle(step, now=now)
    accounts = tuple(core.account_index(o) for o in owners)
    if None in accounts:
        raise RuntimeError("deposits not credited")
    entries = _signed_orders(n_orders, (int(accounts[0] or 0), int(accounts[1] or 0)))
    server = RpcServer()
    SequencerApi(service, server)
    service.start_batcher()
    await service.warm_up()
    port = await server.start("127.0.0.1", 0)
    if tune_gc:
        quiet_gc()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_client, args=(f"http://127.0.0.1:{port}/", entries, rate, child))
    proc.start()
    try:
        while not parent.poll():
            await asyncio.sleep(0.05)
        latencies, errors, elapsed = parent.recv()
    finally:
        await asyncio.to_thread(proc.join, 30)
        await server.stop()
        await service.aclose()
    return {
        "n_orders": n_orders,
        "offered_rate": rate,
        "errors": errors,
        "rpc_orders_per_s": round(len(latencies) / elapsed, 1),
        "rpc_ack_p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "rpc_ack_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "rpc_ack_max_ms": round(max(latencies) * 1000, 2),
    }


def bench_rpc(
    n_orders: int = 5_000, rate: float = 1_000.0, *, tune_gc: bool = True, recover_ahead: bool = True
) -> dict[str, Any]:
    """Offer ``n_orders`` at ``rate``/s from another process; throughput and ack latency.

    ``tune_gc`` applies :func:`sequencer.service.quiet_gc` once the server is up, as
    ``hfx sequencer`` does."""
    thresholds = gc.get_threshold()
    try:
        with tempfile.TemporaryDirectory() as directory:
            return asyncio.run(_serve_and_measure(n_orders, rate, directory, tune_gc, recover_ahead))
    finally:  # leave the calling process's collector as it was
        gc.unfreeze()
        gc.set_threshold(*thresholds)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    r = float(sys.argv[2]) if len(sys.argv) > 2 else 1_000.0
    print(bench_rpc(n, r, tune_gc="--default-gc" not in sys.argv, recover_ahead="--inline" not in sys.argv))
