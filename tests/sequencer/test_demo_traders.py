"""Demo traders: the quoting rules, and a few seconds of trading against a real sequencer process core.

The sequencer runs in-process (``SequencerProcess``: durable core, JSON-RPC on
loopback, batcher, its constant-price devnet oracle) without an L1; the
traders' accounts are created by bridge deposits handed to the core as the
L1 watcher would. L1 funding itself runs in the devnet test (tests/test_devnet.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from eth_account import Account

from l1_contracts.deploy_cli import devnet_oracle_private_keys
from sequencer.demo_traders import DemoConfig, DemoTraders, maker_quotes, taker_order, trader_keys
from sequencer.oracle_feeder import devnet_oracle_keys
from sequencer.process import DevOracle, SequencerConfig, SequencerProcess
from state.constants import PRICE_LIMIT
from state.context import L1Deposit
from state.eip712 import address_of
from tests.world import default_config, default_markets


def test_maker_quotes_sit_on_ticks_around_the_mark() -> None:
    rng = random.Random(1)
    for mark in (3_000_000, 3_000_400, 1_500, 999):
        quotes = maker_quotes(mark, 1_000, 1, levels=3, spread_ticks=2, position=0, max_position=10, rng=rng)
        bids = sorted((q.price for q in quotes if q.is_buy), reverse=True)
        asks = sorted(q.price for q in quotes if not q.is_buy)
        assert all(p % 1_000 == 0 and 1_000 <= p < PRICE_LIMIT for p in bids + asks)
        assert all(p < mark for p in bids) and all(p > mark for p in asks)
        assert len(asks) == 3 and all(b - a == 2_000 for a, b in zip(asks, asks[1:], strict=False))
        assert all(1 <= q.size <= 5 for q in quotes)
    # inventory limits: long at the limit quotes no bids, short no asks
    long_q = maker_quotes(3_000_000, 1_000, 1, levels=2, spread_ticks=1, position=10, max_position=10, rng=rng)
    assert long_q and not any(q.is_buy for q in long_q)
    short_q = maker_quotes(3_000_000, 1_000, 1, levels=2, spread_ticks=1, position=-10, max_position=10, rng=rng)
    assert short_q and all(q.is_buy for q in short_q)
    assert maker_quotes(0, 1_000, 1, levels=2, spread_ticks=1, position=0, max_position=10, rng=rng) == []


def test_taker_orders_cross_and_reduce_large_positions() -> None:
    rng = random.Random(2)
    sides = set()
    for _ in range(50):
        q = taker_order(3_000_500, 1_000, 2, position=0, max_position=5, cross_ticks=3, rng=rng)
        assert q is not None and q.size % 2 == 0
        assert q.price == (3_003_000 if q.is_buy else 2_997_000)
        sides.add(q.is_buy)
    assert sides == {True, False}
    assert all(not taker_order(3_000_000, 1_000, 1, position=6, max_position=5, cross_ticks=1,
                               rng=rng).is_buy for _ in range(10))  # type: ignore[union-attr]
    buy = taker_order(2_000, 1_000, 1, position=-9, max_position=5, cross_ticks=3, rng=rng)
    assert buy is not None and buy.is_buy and buy.price == 5_000
    assert taker_order(2_000, 1_000, 1, position=9, max_position=5, cross_ticks=3, rng=rng) is None


def test_trader_and_oracle_keys_are_deterministic() -> None:
    assert trader_keys(3, seed=1) == trader_keys(3, seed=1)
    assert len(set(trader_keys(4, seed=1) + trader_keys(4, seed=2))) == 8
    assert devnet_oracle_private_keys(3) == devnet_oracle_keys(3)


def test_demo_traders_trade_against_a_sequencer(tmp_path: Path) -> None:
    keys = trader_keys(4, seed=7)
    oracle = devnet_oracle_private_keys(1)
    cfg = SequencerConfig(
        data_dir=tmp_path / "seq", rpc_host="127.0.0.1", rpc_port=0, genesis_time=int(time.time()) - 5,
        genesis_config=default_config(), markets=tuple(default_markets()), chain_id=31337,
        rollup="0x" + "42" * 20, oracle_keys=("0x" + address_of(oracle[0]).hex(),), max_batch_age=1,
        dev_oracle=DevOracle(tuple(oracle), 1.0, {0: 3_000_000, 1: 60_000_000}, {0: 3_000_000, 1: 60_000_000}, {}),
    )

    async def scenario() -> tuple[dict[str, int | float | None], list[dict[str, object]], list[object]]:
        process = SequencerProcess(cfg)
        port = await process.start()
        url = f"http://127.0.0.1:{port}/"
        try:
            assert process.service is not None
            owners = [bytes.fromhex(Account.from_key(k).address[2:]) for k in keys]
            await process.service.add_l1_items([L1Deposit(o, 10**12) for o in owners], [], deposit_start=0)
            traders = DemoTraders(url, keys, DemoConfig(makers=2, takers=2, seed=7, quote_interval=0.3,
                                                        take_interval=0.25, markets=(0, 1)))
            stop = asyncio.Event()
            assert await traders.wait_ready(20)
            asyncio.get_running_loop().call_later(6, stop.set)
            stats = await traders.run(stop)
            accounts = [await traders_rpc(url, "hfx_getAccount", [k]) for k in keys]
            open_orders = [await traders_rpc(url, "hfx_getOpenOrders", [k]) for k in keys[:2]]
            return stats.as_dict(), accounts, open_orders
        finally:
            await process.stop()

    summary, accounts, open_orders = asyncio.run(scenario())
    assert summary["fills"] and int(summary["fills"]) >= 3, summary  # type: ignore[arg-type]
    assert summary["orders"] and int(summary["orders"]) > int(summary["fills"])  # type: ignore[arg-type]
    assert set(summary["refused"]) <= {"POST_ONLY_WOULD_CROSS", "NO_LIQUIDITY"} | {  # type: ignore[arg-type]
        r for r in summary["refused"] if str(r).startswith("cancel:")}  # type: ignore[union-attr]
    # positions net out across the four traders, per market
    net: dict[int, int] = {}
    for acct in accounts:
        for p in acct["positions"]:  # type: ignore[attr-defined]
            net[int(p["market"])] = net.get(int(p["market"]), 0) + int(p["size"])
    assert net and all(v == 0 for v in net.values())
    assert open_orders == [[], []]  # the makers cancelled their quotes when stopped


async def traders_rpc(url: str, method: str, params: list[object]) -> object:
    from node.rpc_client import RpcClient

    async with RpcClient(url) as rpc:
        key = params[0]
        if isinstance(key, bytes):
            params = [Account.from_key(key).address.lower(), *params[1:]]
        return await rpc.call(method, params)
