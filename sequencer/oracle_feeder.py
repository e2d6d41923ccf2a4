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
With ``--publish-file`` it is also a public feed: every signed update is
written first to a JSON file (:class:`Publisher`), whatever the sequencer
answers, so that anyone — a fallback proposer when the operator is gone
(``hfx node --propose --oracle-file``) — may post it. With ``--l1-clock`` its
timestamps are the latest L1 block's time, so an update is never ahead of a
batch posted after it.
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
from state.txs import Oracle, OracleEntry, decode_step

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


# ---------------------------------------------------------------- the public feed


class Publisher:
    """Writes signed oracle updates to a JSON file, atomically: the feed a fallback proposer reads.

    The file is ``{"version": 1, "updates": [{"timestamp": t, "step": "0x05…"}, …]}``,
    oldest first, holding the last ``keep`` updates: ``step`` is the exact bytes
    of the oracle step (docs/stf.md §5.3, the signatures included) and
    ``timestamp`` its own timestamp (``node.fallback.OracleFeed`` reads it).
    Several updates are kept because a batch can include only one no later
    than its own timestamp (the L1 block's time). A crash leaves the previous
    file or the new one, never a part (``node.l1_watch.write_atomic``).
    """

    def __init__(self, path: str | Path, keep: int = 64) -> None:
        if keep < 1:
            raise ValueError("a feed keeps at least one update")
        self.path = Path(path)
        self.keep = keep
        self.updates: list[tuple[int, bytes]] = []

    def publish(self, step: bytes) -> None:
        """Add the oracle step ``step`` (timestamps must increase) and rewrite the file."""
        from node.l1_watch import write_atomic

        tx = decode_step(step)
        if not isinstance(tx, Oracle):
            raise ValueError("not an oracle step")
        timestamp = tx.timestamp
        if self.updates and timestamp <= self.updates[-1][0]:
            raise ValueError("oracle timestamps must increase")
        self.updates = [*self.updates, (timestamp, step)][-self.keep:]
        doc = {"version": 1, "updates": [{"timestamp": t, "step": "0x" + s.hex()} for t, s in self.updates]}
        write_atomic(self.path, json.dumps(doc, indent=1))


class L1Clock:
    """A clock reading the latest L1 block's timestamp over JSON-RPC (``eth_getBlockByNumber``).

    Stamping updates with L1's time keeps them no later than a batch posted after them (a batch's
    timestamp is its L1 block's); ``close()`` releases the connection."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        from node.rpc_client import SyncRpcClient

        self.rpc = SyncRpcClient(url, timeout=timeout)

    def __call__(self) -> float:
        """The latest L1 block's timestamp."""
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        return float(int(block["timestamp"], 16))

    def close(self) -> None:
        """Close the JSON-RPC connection."""
        self.rpc.close()


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
        description="Sign oracle prices (a seeded random walk or a price file) with oracle keys, submit them "
                    "to the sequencer over JSON-RPC (hfx_submitOracle) and/or publish them to a JSON file.",
    )
    p.add_argument("--rpc", default=None,
                   help="the sequencer's JSON-RPC URL (without it: only --publish-file, with --deployment/--genesis)")
    p.add_argument("--deployment", type=Path, default=None,
                   help="deployment JSON (hfx deploy): the signing domain, instead of asking the sequencer")
    p.add_argument("--genesis", type=Path, default=None,
                   help="genesis leaves JSON (hfx deploy): the markets, instead of asking the sequencer")
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
    p.add_argument("--publish-file", type=Path, default=None,
                   help="also write every signed update to this JSON file, atomically (a public feed, "
                        "docs/risk.md §4); kept up to date even when the sequencer does not answer")
    p.add_argument("--publish-keep", type=int, default=64, help="updates kept in the published file")
    p.add_argument("--l1-clock", metavar="URL", default=None,
                   help="timestamp updates with the latest block time of this L1 JSON-RPC (default: wall clock)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error("--interval must be positive")
    if args.publish_keep < 1:
        p.error("--publish-keep must be >= 1")
    if (args.deployment is None) != (args.genesis is None):
        p.error("--deployment and --genesis go together")
    if args.rpc is None and args.publish_file is None:
        p.error("nothing to feed: give --rpc (a sequencer), --publish-file, or both")
    if args.rpc is None and args.deployment is None:
        p.error("without --rpc, the domain and the markets come from --deployment and --genesis")
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


def _feeder_from_files(deployment: Path, genesis: Path, keys: list[bytes], source: PriceSource) -> OracleFeeder | str:
    """A feeder whose domain comes from the deployment file and markets from the genesis leaves
    (the markets are fixed at genesis), or why the files cannot be used."""
    from node.deployment import DeploymentFileError, DeploymentInfo, load_genesis
    from state.layout import PARAMS_KEY, Params

    try:
        info = DeploymentInfo.load(deployment)
        leaves = load_genesis(genesis)
    except DeploymentFileError as exc:
        return str(exc)
    raw = leaves.get(PARAMS_KEY)
    if raw is None:
        return f"{genesis}: no params leaf (markets)"
    try:
        params = Params.decode(raw)
    except (ValueError, IndexError) as exc:
        return f"{genesis}: the params leaf does not decode ({exc})"
    return OracleFeeder(keys, info.chain().domain, params.markets, source)


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
    feeder: OracleFeeder | None = None
    if args.deployment is not None:
        made = _feeder_from_files(args.deployment, args.genesis, keys, source)
        if isinstance(made, str):
            print(f"error: {made}", file=sys.stderr)
            return 2
        feeder = made
    stopping = [False]

    def request_stop(*_: object) -> None:
        stopping[0] = True

    publisher = None if args.publish_file is None else Publisher(args.publish_file, args.publish_keep)
    l1 = None if args.l1_clock is None else L1Clock(args.l1_clock)
    clock: Callable[[], float] = _time.time if l1 is None else l1
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if args.max_seconds is None else _time.monotonic() + args.max_seconds
    client = None if args.rpc is None else OperatorClient(args.rpc, timeout=10)
    sent = accepted = published = 0
    try:
        while not stopping[0] and (deadline is None or _time.monotonic() < deadline) and (
                args.iterations is None or sent < args.iterations):
            try:
                if feeder is None:
                    assert client is not None  # noqa: S101 - parse_args: no files without --rpc
                    domain = bytes.fromhex(client.chain_info()["domainSeparator"][2:])
                    params = Params.decode(bytes.fromhex(client.risk_state()["params"][2:]))
                    feeder = OracleFeeder(keys, domain, params.markets, source)
                now = int(clock())
                if now > feeder.last_timestamp:
                    sent += 1
                    step = feeder.next_update(now)
                    if publisher is not None:
                        try:
                            publisher.publish(step)
                            published += 1
                        except OSError as exc:
                            log.warning("oracle update not published: %s", exc)
                    if client is None:
                        log.info("oracle update published", extra={"time": now})
                    else:
                        result = client.submit_oracle(step)
                        accepted += 1
                        log.info("oracle update", extra={"time": now, "step": result.get("step")})
            except RpcError as exc:
                log.warning("oracle update refused: %s", exc)
            except (RpcTransportError, OSError) as exc:
                log.warning("sequencer or L1 unreachable: %s", exc)
            end = _time.monotonic() + args.interval
            while not stopping[0] and _time.monotonic() < end:
                _time.sleep(min(0.05, max(0.0, end - _time.monotonic())))
    finally:
        if client is not None:
            client.close()
        if l1 is not None:
            l1.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("oracle feeder stopped", extra={"sent": sent, "accepted": accepted, "published": published})
    return 0
