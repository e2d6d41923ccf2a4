"""Throughput of the sequencer's intake, in process: signed orders in, durable acks out.

Every order goes the whole way: EIP-712 digest and signer recovery,
validation and the margin pre-check, matching, an STF trade step per fill,
the WAL append and its group commit (the asyncio API acknowledges an order
only after the fsync covering it), and — as batches fill up — sealing,
the state DB commit and the checkpoint. Signing happens before timing.

The mix, over two perpetual markets: twenty market makers quote post-only
orders 1–10 ticks either side of a slowly drifting mid with a 30-second
expiry (so the book holds a steady few thousand orders), and twenty takers
send IOC orders crossing up to four ticks through the mid (about 30% of
orders; most fill one or two makers). Two hundred and fifty-six client tasks submit
concurrently. The clock is logical (one second per 500 orders). The garbage
collector is set as ``hfx sequencer`` sets it once recovered
(:func:`sequencer.service.quiet_gc`), and restored afterwards.

The service runs as ``hfx sequencer`` runs it: order signers are recovered
ahead in a helper process (``sequencer/recovery.py``), warmed up before timing.

``python -m sequencer.intake_bench [n] [--profile] [--inline]`` prints orders/s, the
``recover_signer`` rate measured in the same run, and their ratio; with
``--profile`` it also prints where the time goes; ``--inline`` recovers every
signer on the event loop instead (``ExchangeService(recover_ahead=False)``).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import random
import sys
import tempfile
import time
from dataclasses import dataclass

from sequencer.exchange import ExchangeConfig
from sequencer.intake import OrderSubmission
from sequencer.service import ExchangeService, quiet_gc
from state.constants import FLAG_IOC, FLAG_POST_ONLY, KIND_PERP, ORACLE_UNDERLYING_BASE
from state.context import ChainConfig, L1Deposit
from state.eip712 import address_of, recover_signer
from state.genesis import genesis_leaves
from state.keccak import keccak256
from state.layout import Config, Market
from state.signing import order_hash, sign_order, signed_oracle
from state.txs import OracleEntry, OrderBody

__all__ = ["BenchResult", "bench_intake_orders", "ecrecover_rate"]

T0 = 1_800_000_000
MAKERS = 20
TAKERS = 20
CLIENTS = 256
TICK = 1_000
MID = (3_000_000, 6_000_000)
ORDERS_PER_SECOND = 500


@dataclass(frozen=True)
class BenchResult:
    """One run's figures."""

    orders: int
    seconds: float
    orders_per_s: float
    fills: int
    batches: int
    fsyncs: int


def _genesis() -> tuple[dict[bytes, bytes], ChainConfig, bytes]:
    config = Config(
        taker_fee_bps=5, maker_rebate_bps=1, liquidation_penalty_bps=150, liquidator_bonus_bps=50,
        sync_buffer_bps=100, funding_cap_bps=75, max_oracle_age=3_600,
    )
    markets = [
        Market(KIND_PERP, 0, 1000, 500, TICK, 1, 0, 0, 3),
        Market(KIND_PERP, 1, 1000, 500, TICK, 1, 0, 0, 4),
    ]
    oracle_key = keccak256(b"bench-oracle")
    chain = ChainConfig(31337, b"\x42" * 20, frozenset({address_of(oracle_key)}), 1)
    return genesis_leaves(config, markets, T0), chain, oracle_key


def _orders(n: int, chain: ChainConfig, rng: random.Random) -> list[tuple[int, OrderSubmission]]:
    """``n`` signed orders with their logical submission times."""
    keys = [keccak256(b"bench-trader-%d" % i) for i in range(MAKERS + TAKERS)]
    owners = [address_of(k) for k in keys]
    mids = list(MID)
    out = []
    for i in range(n):
        now = T0 + 10 + i // ORDERS_PER_SECOND
        market = rng.randrange(2)
        if rng.random() < 0.02:
            mids[market] += TICK * rng.choice((-1, 1))
        mid = mids[market]
        if rng.random() < 0.7:
            who = rng.randrange(MAKERS)
            is_buy = rng.random() < 0.5
            offset = TICK * rng.randint(1, 10)
            price = mid - offset if is_buy else mid + offset
            body = OrderBody(who + 1, market, is_buy, FLAG_POST_ONLY, price, rng.randint(1, 20), now + 30, i)
        else:
            who = MAKERS + rng.randrange(TAKERS)
            is_buy = rng.random() < 0.5
            through = TICK * rng.randint(1, 4)
            price = mid + through if is_buy else mid - through
            body = OrderBody(who + 1, market, is_buy, FLAG_IOC, price, rng.randint(1, 15), now + 30, i)
        signed = sign_order(keys[who], owners[who], chain.domain, body)
        out.append((now, OrderSubmission.from_entry(signed.encode())))
    return out


async def _run(svc: ExchangeService, orders: list[tuple[int, OrderSubmission]]) -> int:
    fills = 0
    it = iter(orders)

    async def client() -> None:
        nonlocal fills
        for now, sub in it:
            outcome = await svc.place_order(sub, now=now)
            fills += len(outcome.fills)
            if svc.core.should_close(now):
                svc.core.close_batch(now)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return fills


def _prepare(
    directory: str, n: int, seed: int, recover_ahead: bool = True
) -> tuple[ExchangeService, list[tuple[int, OrderSubmission]]]:
    genesis, chain, oracle_key = _genesis()
    config = ExchangeConfig(max_batch_age=1)
    svc = ExchangeService.open(directory, chain, genesis, config=config, recover_ahead=recover_ahead)
    owners = [address_of(keccak256(b"bench-trader-%d" % i)) for i in range(MAKERS + TAKERS)]
    svc.core.add_l1_items([L1Deposit(o, 10_000_000 * 1_000_000) for o in owners], [], T0 + 1)
    entries = [OracleEntry(0, MID[0], 0), OracleEntry(1, MID[1], 0),
               OracleEntry(ORACLE_UNDERLYING_BASE, MID[0], 0), OracleEntry(ORACLE_UNDERLYING_BASE + 1, MID[1], 0)]
    svc.core.submit_oracle(signed_oracle([oracle_key], chain.domain, T0 + 2, entries), T0 + 2)
    return svc, _orders(n, chain, random.Random(seed))


def bench_intake_orders(n: int = 20_000, seed: int = 7) -> float:
    """Orders per second through the whole intake path (see the module docstring)."""
    return run_bench(n, seed).orders_per_s


def run_bench(
    n: int = 20_000, seed: int = 7, profiler: cProfile.Profile | None = None, recover_ahead: bool = True
) -> BenchResult:
    """One timed run over a fresh on-disk sequencer in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="hfx-intake-bench-") as directory:
        svc, orders = _prepare(directory, n, seed, recover_ahead)
        wal = svc.core.wal
        fsyncs0 = wal.stats.fsyncs if wal is not None else 0
        batches0 = svc.core.next_batch_index
        loop = asyncio.new_event_loop()
        loop.run_until_complete(svc.warm_up())
        thresholds = gc.get_threshold()
        quiet_gc()
        try:
            if profiler is not None:
                profiler.enable()
            start = time.perf_counter()
            fills = loop.run_until_complete(_run(svc, orders))
            elapsed = time.perf_counter() - start
            if profiler is not None:
                profiler.disable()
            loop.run_until_complete(svc.aclose())
        finally:
            loop.close()
            gc.unfreeze()
            gc.set_threshold(*thresholds)
        fsyncs = (wal.stats.fsyncs - fsyncs0) if wal is not None else 0
        return BenchResult(
            n, elapsed, n / elapsed, fills, svc.core.next_batch_index - batches0, fsyncs
        )


STAGES = (
    ("signature recovery", "eip712.py", "recover_signer"),
    ("order digest", "signing.py", "order_hash"),
    ("duplicate check (order-state trie read)", "exchange.py", "_known"),
    ("margin pre-check", "exchange.py", "_precheck"),
    ("matching engine (incl. STF fills)", "book.py", "place"),
    ("  STF trade steps", "exchange.py", "_check_fill"),
    ("WAL append", "wal.py", "append"),
    ("sealing: StateDB.commit + batch encode", "exchange.py", "_seal"),
    ("storing: WAL sync, batch file, checkpoints", "exchange.py", "_persist"),
)
"""Where the time goes: (label, file suffix, function name), cumulative times."""


def breakdown(profiler: cProfile.Profile, seconds: float) -> list[tuple[str, float]]:
    """Share of the run's wall time spent (cumulatively) in each stage of :data:`STAGES`."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(seconds, 1e-9)
    out = []
    for label, file, name in STAGES:
        cum = sum(
            row[3] for (path, _, func), row in stats.items() if func == name and path.endswith(file)
        )
        out.append((label, cum / total))
    return out


def ecrecover_rate(n: int = 5_000) -> float:
    """``state.eip712.recover_signer`` calls per second over ``n`` valid order signatures."""
    _, chain, _ = _genesis()
    key = keccak256(b"bench-trader-0")
    owner = address_of(key)
    pairs = []
    for i in range(n):
        body = OrderBody(1, 0, True, 0, MID[0], 1, T0 + 100, i)
        signed = sign_order(key, owner, chain.domain, body)
        pairs.append((order_hash(chain.domain, owner, body), signed.signature))
    start = time.perf_counter()
    for digest, signature in pairs:
        recover_signer(digest, signature)
    return n / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    """Print the figures (``--profile``: and the top functions by own time)."""
    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if args else 20_000
    ahead = "--inline" not in argv
    recover_before = ecrecover_rate()
    result = run_bench(n, recover_ahead=ahead)
    recover_after = ecrecover_rate()
    recover = (recover_before + recover_after) / 2
    print(f"intake: {result.orders_per_s:,.0f} orders/s ({result.orders} orders, {result.fills} fills, "
          f"{result.batches} batches, {result.fsyncs} WAL fsyncs, {result.seconds:.2f} s)")
    print(f"recover_signer: {recover:,.0f} /s (before {recover_before:,.0f}, after {recover_after:,.0f})")
    print(f"ratio: {result.orders_per_s / recover:.2f} x the ecrecover rate")
    if "--profile" in argv:
        profiler = cProfile.Profile()
        profiled = run_bench(n, profiler=profiler, recover_ahead=ahead)
        print("where the time goes (a second run, under cProfile, which inflates Python code "
              "against C: shares of its wall time, cumulative):")
        for label, share in breakdown(profiler, profiled.seconds):
            print(f"  {label:45s} {share:6.1%}")
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())


if __name__ == "__main__":
    main(sys.argv[1:])
