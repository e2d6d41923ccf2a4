"""Throughput of the matching engine on a deterministic, realistic mix of operations.

The mix, over four markets: market makers quoting both sides within twenty
ticks of a drifting mid (a fifth of them post-only, a tenth with an expiry),
cancels of earlier quotes (mostly the oldest outstanding one, else the
newest; some were already filled or expired), and takers
crossing the spread (limit, IOC, FOK and market orders). An "op" is one place
or one cancel; expiry sweeps run once per simulated second and are timed but
not counted. Every fill goes through an accept-all ``check_fill`` callback.

Run ``python -m sequencer.book_bench [n_ops]`` to print ops/s.
"""

from __future__ import annotations

import random
import sys
import time as _time
from collections import deque
from dataclasses import dataclass

from sequencer.book import Engine
from sequencer.orders import (
    FLAG_FOK,
    FLAG_IOC,
    FLAG_POST_ONLY,
    GTC,
    MarketSpec,
    Order,
    OrderId,
    Verdict,
)

MARKETS = 4
TICK = 10
LOT = 5
MAKERS = 20
TAKERS = 200
OPS_PER_SECOND = 200
QUOTES = 4_000
"""Outstanding quotes (across all markets) above which makers cancel before quoting again."""


@dataclass(frozen=True, slots=True)
class _Op:
    """One scripted operation: a place (``order`` set) or a cancel (``cancel_id`` set)."""

    time: int
    order: Order | None = None
    cancel_id: OrderId | None = None
    market_order: bool = False


def _accept(maker: Order, taker: Order, price: int, size: int) -> Verdict:
    return Verdict.ACCEPT


def _maker_quote(rng: random.Random, oid: int, market: int, mid: int, now: int) -> Order:
    is_buy = rng.random() < 0.5
    offset = rng.randint(1, 20) * TICK
    price = mid - offset if is_buy else mid + offset
    flags = FLAG_POST_ONLY if rng.random() < 0.2 else 0
    expiry = now + rng.randint(5, 300) if rng.random() < 0.1 else GTC
    size = rng.randint(1, 10) * LOT
    return Order(oid, rng.randrange(MAKERS), market, is_buy, price, size, flags, expiry)


def _taker(rng: random.Random, oid: int, market: int, mid: int) -> tuple[Order, bool]:
    is_buy = rng.random() < 0.5
    reach = rng.randint(0, 8) * TICK
    price = mid + reach if is_buy else mid - reach
    roll = rng.random()
    flags = FLAG_IOC if roll < 0.4 else FLAG_FOK if roll < 0.5 else 0
    market_order = 0.5 <= roll < 0.6
    size = rng.randint(1, 30) * LOT
    account = MAKERS + rng.randrange(TAKERS)
    return Order(oid, account, market, is_buy, price, size, flags, GTC), market_order


def make_ops(n_ops: int, seed: int = 1) -> list[_Op]:
    """The deterministic mix: 13% takers, the rest quotes and cancels in about equal numbers."""
    rng = random.Random(seed)
    mids = [100_000 * TICK] * MARKETS
    quoted: deque[int] = deque()
    ops: list[_Op] = []
    for i in range(n_ops):
        now = 1_000 + i // OPS_PER_SECOND
        market = rng.randrange(MARKETS)
        if rng.random() < 0.05:
            mids[market] += rng.choice((-TICK, TICK))
        roll = rng.random()
        if roll >= 0.87:
            order, market_order = _taker(rng, i, market, mids[market])
            ops.append(_Op(now, order, market_order=market_order))
        elif quoted and (roll < 0.3 or len(quoted) > QUOTES):
            stale = rng.random() < 0.7
            ops.append(_Op(now, cancel_id=quoted.popleft() if stale else quoted.pop()))
        else:
            quoted.append(i)
            ops.append(_Op(now, _maker_quote(rng, i, market, mids[market], now)))
    return ops


def run_ops(engine: Engine, ops: list[_Op]) -> None:
    """Apply ``ops`` to ``engine``, sweeping expiries when the clock moves."""
    place, cancel, expire = engine.place, engine.cancel, engine.expire
    clock = -1
    for op in ops:
        if op.time != clock:
            clock = op.time
            expire(clock)
        if op.order is not None:
            place(op.order, clock, market_order=op.market_order)
        elif op.cancel_id is not None:
            cancel(op.cancel_id)


def new_engine() -> Engine:
    """An engine with the benchmark's markets and an accept-all verdict callback."""
    specs = {m: MarketSpec(TICK, LOT) for m in range(MARKETS)}
    return Engine(specs, check_fill=_accept)


def bench_match_ops(n_ops: int = 200_000, *, repeat: int = 3) -> float:
    """Ops per second (places and cancels) of the engine alone on :func:`make_ops`.

    The script is built once, then run ``repeat`` times on fresh engines; the
    best run is reported, as timeit does, so that other load on the machine
    disturbs the figure less.
    """
    ops = make_ops(n_ops)
    best = float("inf")
    for _ in range(max(repeat, 1)):
        engine = new_engine()
        start = _time.perf_counter()
        run_ops(engine, ops)
        best = min(best, _time.perf_counter() - start)
    return n_ops / best


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"match_ops_per_s {bench_match_ops(n):,.0f}")
