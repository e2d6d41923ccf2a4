"""An independent liquidator's logic (the ``hfx liquidator`` process), docs/risk.md §5.

Given account data (as the RPC's ``hfx_getAccount`` returns it: index, owner,
collateral, positions) and the params and prices, :func:`find_liquidations`
lists what can be liquidated and how much (the same sizing as the sequencer's
monitor, :func:`sequencer.risk.liquidation_size`), and :func:`build_order`
signs the order a liquidate step fills: at the mark, exactly the size, on the
side that takes the position over — so it earns ``liquidator_bonus_bps`` of
the notional.

The network part is a protocol (:class:`LiquidatorClient`): ``get_accounts()``
returns account data, ``submit_liquidation(target, entry, size)`` sends the
liquidation. :func:`run_once` is one round over such a client; :func:`main`
is the ``hfx liquidator`` process over the sequencer's JSON-RPC
(:class:`sequencer.client.OperatorClient`: ``hfx_getAccounts``,
``hfx_getRiskState``, ``hfx_liquidate``).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sequencer.risk import liquidatable, liquidation_size, requirement_share, value
from state.constants import U64_LIMIT
from state.eip712 import address_of
from state.layout import Account, Params, Position, Prices
from state.signing import sign_order
from state.txs import OrderBody

log = logging.getLogger("hfx.liquidator")


def _int(v: object) -> int:
    """An integer from a JSON number, decimal string or 0x hex string."""
    if isinstance(v, bool):
        raise ValueError("not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 16) if v.lower().startswith(("0x", "-0x")) else int(v)
    raise ValueError(f"not an integer: {v!r}")


@dataclass(frozen=True, slots=True)
class AccountData:
    """An account as a liquidator sees it: its index and the account leaf's content."""

    index: int
    account: Account

    @staticmethod
    def from_json(obj: Mapping[str, object]) -> AccountData:
        """From ``{"index", "owner": "0x…", "collateral", "nonce"?, "positions": [{"market",
        "size", "cost", "fundingSnapshot"}]}`` (integers as numbers, decimal or hex strings;
        other fields, such as the margin figures, are ignored: they are recomputed)."""
        owner = obj.get("owner", "0x" + "00" * 20)
        assert isinstance(owner, str)  # noqa: S101 - schema
        raw = obj.get("positions", [])
        assert isinstance(raw, list)  # noqa: S101 - schema
        positions = tuple(
            Position(_int(p["market"]), _int(p["size"]), _int(p["cost"]),
                     _int(p.get("fundingSnapshot", 0)))
            for p in raw
        )
        acct = Account(bytes.fromhex(owner.removeprefix("0x")), _int(obj.get("nonce", 0)),
                       _int(obj["collateral"]), positions)
        return AccountData(_int(obj["index"]), acct)


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A liquidation to make: target, market, size, the mark, the side of the liquidator's
    order, and the bonus it earns (before the insurance fund cap)."""

    target: int
    market: int
    size: int
    mark: int
    is_buy: bool
    bonus: int


def find_liquidations(
    accounts: Iterable[AccountData], params: Params, prices: Prices, insurance_fund: int,
    *, exclude: int | None = None,
) -> list[Opportunity]:
    """The liquidatable accounts (E < LT, E + fund ≥ 0) with the position to take and its
    size, largest bonus first. Bankrupt accounts (ADL) and ``exclude`` are skipped."""
    out: list[Opportunity] = []
    bonus_bps = params.config.liquidator_bonus_bps
    for data in accounts:
        if data.index == exclude:
            continue
        norm, risk = value(data.account, params, prices)
        if not liquidatable(risk, norm) or risk.equity + insurance_fund < 0:
            continue
        p = max(norm.positions, key=lambda q: (
            requirement_share(q, params.markets[q.market], prices, params.config), -q.market))
        mp = prices.markets[p.market]
        if mp.settled or mp.mark == 0:
            continue
        size = liquidation_size(norm, p.market, params, prices)
        out.append(Opportunity(data.index, p.market, size, mp.mark, p.size > 0,
                               size * mp.mark * bonus_bps // 10_000))
    out.sort(key=lambda o: (-o.bonus, o.target))
    return out


def build_order(
    key: bytes, account: int, domain: bytes, opportunity: Opportunity, *, salt: int, expiry: int,
) -> bytes:
    """The signed 104-byte entry for ``opportunity``, from the liquidator's ``key`` and
    ``account``: at the mark, exactly the size. ``salt`` must make the digest new."""
    body = OrderBody(account, opportunity.market, opportunity.is_buy, 0, opportunity.mark,
                     opportunity.size, min(expiry, U64_LIMIT - 1), salt % U64_LIMIT)
    return sign_order(key, address_of(key), domain, body).encode()


class LiquidatorClient(Protocol):
    """The network side (the RPC client): account data in, liquidations out."""

    def get_accounts(self) -> Sequence[AccountData]:
        """Every account with positions."""
        ...

    def submit_liquidation(self, target: int, entry: bytes, size: int) -> object:
        """Send a liquidation of ``size`` of ``target`` into the signed order ``entry``;
        raises on refusal."""
        ...


def run_once(
    client: LiquidatorClient, key: bytes, account: int, domain: bytes, params: Params,
    prices: Prices, insurance_fund: int, now: int, *, salt: int, ttl: int = 60,
) -> list[Opportunity]:
    """One round: fetch accounts, liquidate every opportunity; returns those accepted.
    A refusal (someone was faster, prices moved) is logged and skipped."""
    done: list[Opportunity] = []
    for i, opp in enumerate(find_liquidations(client.get_accounts(), params, prices,
                                              insurance_fund, exclude=account)):
        entry = build_order(key, account, domain, opp, salt=salt + i, expiry=now + ttl)
        try:
            client.submit_liquidation(opp.target, entry, opp.size)
        except Exception as err:  # noqa: BLE001 - a refused liquidation is not fatal
            log.info("liquidation of %d refused: %s", opp.target, err)
            continue
        done.append(opp)
    return done


# ---------------------------------------------------------------- the process


class _Stop:
    """Set by SIGINT/SIGTERM or the time limit."""

    def __init__(self, max_seconds: float | None) -> None:
        self.requested = False
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def __call__(self, *_: object) -> None:
        self.requested = True

    def done(self) -> bool:
        """Whether the process should stop now."""
        return self.requested or (self.deadline is not None and time.monotonic() >= self.deadline)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The ``hfx liquidator`` command line."""
    p = argparse.ArgumentParser(
        prog="hfx liquidator",
        description="Poll the sequencer's accounts and prices over JSON-RPC and send the liquidations "
                    "that earn the bonus (the key is read from the environment).",
    )
    p.add_argument("--rpc", required=True, help="the sequencer's JSON-RPC URL, e.g. http://127.0.0.1:8546/")
    p.add_argument("--key-env", default="HFX_LIQUIDATOR_KEY",
                   help="environment variable holding the liquidator's private key (default %(default)s)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default %(default)s)")
    p.add_argument("--ttl", type=int, default=60, help="seconds the liquidation orders stay valid")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.interval <= 0 or args.ttl <= 0:
        p.error("--interval and --ttl must be positive")
    return args


def main(argv: list[str]) -> int:
    """``hfx liquidator``: poll, liquidate, repeat until SIGINT/SIGTERM or ``--max-seconds``."""
    from node.rpc import RpcError
    from node.rpc_client import RpcTransportError
    from sequencer.client import OperatorClient
    from sequencer.logs import setup_json_logging

    args = parse_args(argv)
    setup_json_logging(args.log_level)
    raw_key = os.environ.get(args.key_env)
    if not raw_key:
        print(f"error: environment variable {args.key_env} is not set", file=sys.stderr)
        return 2
    try:
        key = bytes.fromhex(raw_key.removeprefix("0x"))
        if len(key) != 32:
            raise ValueError
    except ValueError:
        print(f"error: {args.key_env} is not a 32-byte hex private key", file=sys.stderr)
        return 2
    stop = _Stop(args.max_seconds)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    client = OperatorClient(args.rpc, timeout=10)
    owner = "0x" + address_of(key).hex()
    domain: bytes | None = None
    account: int | None = None
    salt = secrets.randbits(40)
    done = 0
    try:
        while not stop.done():
            try:
                if domain is None:
                    domain = bytes.fromhex(client.chain_info()["domainSeparator"][2:])
                if account is None:
                    account = int(client.call("hfx_getAccount", [owner])["index"])
                    log.info("liquidator ready", extra={"account": account, "owner": owner})
                state = client.risk_state()
                params = Params.decode(bytes.fromhex(state["params"][2:]))
                prices = Prices.decode(bytes.fromhex(state["prices"][2:]))
                accepted = run_once(
                    client, key, account, domain, params, prices, int(state["insuranceFund"]),
                    int(state["clock"]), salt=salt, ttl=args.ttl,
                )
                salt += 1_000
                for opp in accepted:
                    done += 1
                    log.info("liquidated", extra={"target": opp.target, "market": opp.market,
                                                  "size": opp.size, "bonus": opp.bonus})
            except (RpcError, RpcTransportError) as exc:
                # no account yet (deposit not credited), the sequencer restarting, ...
                log.warning("poll failed: %s", exc)
            stop_wait(stop, args.interval)
    finally:
        client.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("liquidator stopped", extra={"liquidations": done})
    return 0


def stop_wait(stop: _Stop, seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when asked to stop."""
    end = time.monotonic() + seconds
    while not stop.done() and time.monotonic() < end:
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
