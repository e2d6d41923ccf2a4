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

:func:`main` is the ``hfx oracle-feeder`` process: it signs updates with devnet
oracle keys (or keys from the environment) and submits them to the sequencer
over JSON-RPC (``hfx_submitOracle``, :class:`sequencer.client.OperatorClient`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import signal
import sys
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


# ---------------------------------------------------------------- the process


def _spot(text: str) -> tuple[int, int]:
    underlying, _, price = text.partition("=")
    try:
        return int(underlying), int(price)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected UNDERLYING=PRICE, got {text!r}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The ``hfx oracle-feeder`` command line."""
    p = argparse.ArgumentParser(
        prog="hfx oracle-feeder",
        description="Sign oracle prices (a seeded random walk or a price file) with devnet oracle keys "
                    "and submit them to the sequencer over JSON-RPC (hfx_submitOracle).",
    )
    p.add_argument("--rpc", required=True, help="the sequencer's JSON-RPC URL")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--devnet-keys", type=int, metavar="N",
                      help="sign with the first N devnet oracle keys (devnet_oracle_keys)")
    keys.add_argument("--keys-env", metavar="VAR",
                      help="environment variable holding comma-separated oracle private keys")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--spot", type=_spot, action="append", metavar="U=PRICE",
                     help="random walk from this index price of underlying U (repeatable)")
    src.add_argument("--price-file", type=Path, help="CSV or JSON price file (docs/risk.md §4)")
    p.add_argument("--seed", type=int, default=0, help="random walk seed")
    p.add_argument("--max-move-bps", type=int, default=50, help="random walk: largest move per update")
    p.add_argument("--premium-bps", type=int, default=10, help="random walk: largest perpetual premium")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default %(default)s)")
    p.add_argument("--iterations", type=int, default=None, help="stop after this many updates")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error("--interval must be positive")
    if args.devnet_keys is not None and not 1 <= args.devnet_keys <= 16:
        p.error("--devnet-keys must be in [1, 16]")
    if args.max_move_bps < 0 or args.premium_bps < 0:
        p.error("--max-move-bps and --premium-bps must be >= 0")
    return args


def _keys(args: argparse.Namespace) -> list[bytes] | str:
    """The signing keys, or why they cannot be read."""
    if args.devnet_keys is not None:
        return devnet_oracle_keys(args.devnet_keys)
    raw = os.environ.get(args.keys_env)
    if not raw:
        return f"environment variable {args.keys_env} is not set"
    try:
        keys = [bytes.fromhex(k.strip().removeprefix("0x")) for k in raw.split(",") if k.strip()]
    except ValueError:
        return f"{args.keys_env} holds a key that is not hex"
    if not keys or any(len(k) != 32 for k in keys):
        return f"{args.keys_env} must hold 32-byte private keys"
    return keys


def main(argv: list[str]) -> int:
    """``hfx oracle-feeder``: submit signed updates until SIGINT/SIGTERM, ``--iterations`` or ``--max-seconds``."""
    from node.rpc import RpcError
    from node.rpc_client import RpcTransportError
    from sequencer.client import OperatorClient
    from sequencer.logs import setup_json_logging
    from state.layout import Params

    args = parse_args(argv)
    setup_json_logging(args.log_level)
    keys = _keys(args)
    if isinstance(keys, str):
        print(f"error: {keys}", file=sys.stderr)
        return 2
    source: PriceSource
    if args.price_file is not None:
        try:
            source = PriceFile.load(args.price_file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"error: {args.price_file}: {exc}", file=sys.stderr)
            return 2
    else:
        source = RandomWalk(dict(args.spot), seed=args.seed, max_move_bps=args.max_move_bps,
                            premium_bps=args.premium_bps)
    stopping = [False]

    def request_stop(*_: object) -> None:
        stopping[0] = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if args.max_seconds is None else _time.monotonic() + args.max_seconds
    client = OperatorClient(args.rpc, timeout=10)
    feeder: OracleFeeder | None = None
    sent = accepted = 0
    try:
        while not stopping[0] and (deadline is None or _time.monotonic() < deadline) and (
                args.iterations is None or sent < args.iterations):
            try:
                if feeder is None:
                    domain = bytes.fromhex(client.chain_info()["domainSeparator"][2:])
                    params = Params.decode(bytes.fromhex(client.risk_state()["params"][2:]))
                    feeder = OracleFeeder(keys, domain, params.markets, source)
                now = int(_time.time())
                if now > feeder.last_timestamp:
                    sent += 1
                    result = client.submit_oracle(feeder.next_update(now))
                    accepted += 1
                    log.info("oracle update", extra={"time": now, "step": result.get("step")})
            except RpcError as exc:
                log.warning("oracle update refused: %s", exc)
            except RpcTransportError as exc:
                log.warning("sequencer unreachable: %s", exc)
            end = _time.monotonic() + args.interval
            while not stopping[0] and _time.monotonic() < end:
                _time.sleep(min(0.05, max(0.0, end - _time.monotonic())))
    finally:
        client.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("oracle feeder stopped", extra={"sent": sent, "accepted": accepted})
    return 0
