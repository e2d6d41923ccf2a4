"""A devnet oracle feeder: signed oracle steps for every market (docs/risk.md §4).

The feeder holds the oracle private keys (devnet keys: on a real network each
oracle signs on its own machine) and produces oracle steps
(:func:`state.signing.signed_oracle`) carrying, for every market, a mark and an
implied volatility, and for every underlying an index price. Prices come from a
:class:`RandomWalk` (seeded, integers, bounded moves) or a :class:`PriceFile`
(CSV or JSON rows of time → prices).

Marks: a perpetual's mark is its underlying's index plus a bounded random
premium; an option's mark is the Black-Scholes value (``state.black_scholes``,
zero rates) at the index, the market's strike, the time to expiry and the
walk's implied volatility, rounded to an integer and at least 1. The float
computation only chooses a price: what is signed and what the STF reads is an
integer (a step is deterministic for a seed on a given platform). An option
at or after its expiry gets no entry (a settled market refuses one); the index
keeps being published, and the settle step uses it.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from state.black_scholes import bs_price
from state.constants import BPS, KIND_CALL, KIND_PERP, ORACLE_UNDERLYING_BASE, PRICE_LIMIT
from state.keccak import keccak256
from state.layout import Market
from state.signing import signed_oracle
from state.txs import OracleEntry

log = logging.getLogger("hfx.oracle_feeder")

SECONDS_PER_YEAR = 365 * 86_400
IV_SCALE = 1_000_000
"""Implied volatilities are integers in millionths (600_000 = 60 %), as the risk view reads them."""


def devnet_oracle_keys(n: int = 3) -> list[bytes]:
    """Deterministic devnet oracle private keys (never use on a real network)."""
    return [keccak256(b"hfx-devnet-oracle-%d" % i) for i in range(n)]


@dataclass(frozen=True, slots=True)
class Quote:
    """One set of prices: per-underlying index, per-market mark and iv (all integers)."""

    index: dict[int, int]
    marks: dict[int, int]
    ivs: dict[int, int]


class PriceSource(Protocol):
    """Where prices come from: ``quote(now, markets)`` returns the prices to publish."""

    def quote(self, now: int, markets: Sequence[Market]) -> Quote:
        """The prices to publish at ``now``."""
        ...


def option_mark(market: Market, spot: int, iv: int, now: int) -> int:
    """An option's mark: Black-Scholes at ``spot`` (rounded, ≥ 1, below PRICE_LIMIT)."""
    years = max(0, market.expiry - now) / SECONDS_PER_YEAR
    price = bs_price(market.kind == KIND_CALL, float(spot), float(market.strike), years, iv / IV_SCALE)
    return min(max(1, round(price)), PRICE_LIMIT - 1)


@dataclass
class RandomWalk:
    """A seeded integer random walk of the underlyings' index prices.

    Each :meth:`quote` moves every index by a uniform whole number of basis
    points in ``[-max_move_bps, max_move_bps]`` (rounded toward zero), then
    clamps it to ``[floor, ceiling]``. A perpetual's mark is the index moved by
    a uniform premium in ``[-premium_bps, premium_bps]`` bps; an option's mark
    comes from :func:`option_mark` with ``ivs[market]`` (default
    ``default_iv``). Same seed and same calls, same prices.
    """

    spots: dict[int, int]
    seed: int = 0
    max_move_bps: int = 50
    premium_bps: int = 10
    floor: int = 1
    ceiling: int = PRICE_LIMIT - 1
    ivs: dict[int, int] = field(default_factory=dict)
    default_iv: int = 600_000
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling < PRICE_LIMIT:
            raise ValueError("need 1 <= floor <= ceiling < PRICE_LIMIT")
        self._rng = random.Random(self.seed)
        self.spots = {u: self._clamp(p) for u, p in sorted(self.spots.items())}

    def _clamp(self, price: int) -> int:
        return min(max(price, self.floor), self.ceiling)

    def _bps(self, price: int, bps: int) -> int:
        move = price * bps
        return move // BPS if move >= 0 else -((-move) // BPS)

    def step(self) -> dict[int, int]:
        """Advance every index one step; the new index prices."""
        for u in sorted(self.spots):
            r = self._rng.randint(-self.max_move_bps, self.max_move_bps)
            self.spots[u] = self._clamp(self.spots[u] + self._bps(self.spots[u], r))
        return dict(self.spots)

    def quote(self, now: int, markets: Sequence[Market]) -> Quote:
        """One step of the walk and the marks derived from it."""
        index = self.step()
        marks: dict[int, int] = {}
        ivs: dict[int, int] = {}
        for m, market in enumerate(markets):
            spot = index.get(market.underlying)
            if spot is None:
                continue
            if market.kind == KIND_PERP:
                r = self._rng.randint(-self.premium_bps, self.premium_bps)
                marks[m] = min(max(1, spot + self._bps(spot, r)), PRICE_LIMIT - 1)
                ivs[m] = 0
            elif now < market.expiry:
                iv = self.ivs.get(m, self.default_iv)
                marks[m] = option_mark(market, spot, iv, now)
                ivs[m] = iv
        return Quote(index, marks, ivs)


@dataclass
class PriceFile:
    """Prices from a file: the latest row at or before ``now`` is published.

    CSV: a header ``time`` then columns ``index<u>`` (underlying u's index),
    ``mark<m>`` and ``iv<m>`` (market m); empty cells are left out. JSON: a list
    of ``{"time": t, "index": {"0": p}, "marks": {"0": p}, "ivs": {"2": v}}``.
    Options without a mark in the row get the Black-Scholes mark from the index.
    """

    rows: list[tuple[int, Quote]]

    @staticmethod
    def load(path: str | Path) -> PriceFile:
        """Read a ``.json`` or ``.csv`` price file."""
        p = Path(path)
        rows: list[tuple[int, Quote]] = []
        if p.suffix == ".json":
            for row in json.loads(p.read_text()):
                rows.append((int(row["time"]), Quote(
                    {int(k): int(v) for k, v in row.get("index", {}).items()},
                    {int(k): int(v) for k, v in row.get("marks", {}).items()},
                    {int(k): int(v) for k, v in row.get("ivs", {}).items()},
                )))
        else:
            with p.open(newline="") as f:
                for rec in csv.DictReader(f):
                    q = Quote({}, {}, {})
                    for name, cell in rec.items():
                        if not cell or name == "time":
                            continue
                        for prefix, target in (("index", q.index), ("mark", q.marks), ("iv", q.ivs)):
                            if name.startswith(prefix) and name[len(prefix):].isdigit():
                                target[int(name[len(prefix):])] = int(cell)
                    rows.append((int(rec["time"]), q))
        rows.sort(key=lambda r: r[0])
        return PriceFile(rows)

    def quote(self, now: int, markets: Sequence[Market]) -> Quote:
        """The latest row at or before ``now`` (the first row before the file starts)."""
        if not self.rows:
            return Quote({}, {}, {})
        chosen = self.rows[0][1]
        for t, q in self.rows:
            if t > now:
                break
            chosen = q
        marks = {m: p for m, p in chosen.marks.items()
                 if m < len(markets) and (markets[m].kind == KIND_PERP or now < markets[m].expiry)}
        ivs = dict(chosen.ivs)
        for m, market in enumerate(markets):
            spot = chosen.index.get(market.underlying)
            if market.kind != KIND_PERP and m not in marks and spot and now < market.expiry:
                marks[m] = option_mark(market, spot, ivs.get(m, 600_000), now)
        return Quote(dict(chosen.index), marks, ivs)


@dataclass
class OracleFeeder:
    """Signs oracle steps for ``markets`` from ``source`` with ``keys``.

    Every step is signed by all the feeder's keys (at least the threshold, at
    most the key-set size, docs/stf.md §7.5): give it the keys of the oracle key
    set, and no more of them than the set holds.
    """

    keys: Sequence[bytes]
    domain: bytes
    markets: Sequence[Market]
    source: PriceSource
    last_timestamp: int = 0

    def entries(self, now: int) -> list[OracleEntry]:
        """The entries for ``now``: markets by id, then underlyings (ids 64 + u), ascending."""
        q = self.source.quote(now, self.markets)
        out = [OracleEntry(m, q.marks[m], q.ivs.get(m, 0) if self.markets[m].kind != KIND_PERP else 0)
               for m in sorted(q.marks) if 0 < q.marks[m] < PRICE_LIMIT]
        out += [OracleEntry(ORACLE_UNDERLYING_BASE + u, p, 0)
                for u, p in sorted(q.index.items()) if 0 < p < PRICE_LIMIT]
        return out

    def next_update(self, now: int) -> bytes:
        """The signed oracle step timestamped ``now`` (must be after the previous one)."""
        if now <= self.last_timestamp:
            raise ValueError("oracle timestamps must increase")
        self.last_timestamp = now
        return signed_oracle(self.keys, self.domain, now, self.entries(now))


class OracleSink(Protocol):
    """Anything that takes an oracle step: an Exchange (``submit_oracle``) or an RPC client."""

    def submit_oracle(self, step: bytes, now: int) -> object:
        """Submit one signed oracle step."""
        ...


def run_feeder(
    feeder: OracleFeeder, sink: OracleSink, *, interval: float = 1.0,
    clock: Callable[[], float] = _time.time, sleep: Callable[[float], None] = _time.sleep,
    iterations: int | None = None,
) -> int:
    """Submit an update every ``interval`` seconds (``iterations`` times, or forever).

    A refused update is logged and the loop goes on. Returns the number accepted.
    """
    accepted = 0
    done = 0
    while iterations is None or done < iterations:
        now = int(clock())
        if now > feeder.last_timestamp:
            try:
                sink.submit_oracle(feeder.next_update(now), now)
                accepted += 1
            except Exception as err:  # noqa: BLE001 - a feeder must survive a refusal
                log.warning("oracle update refused: %s", err)
        done += 1
        if iterations is None or done < iterations:
            sleep(interval)
    return accepted
