"""``hfx demo-traders``: devnet market makers and takers over the sequencer's JSON-RPC.

::

    HFX_FUNDER_KEY=0x… hfx demo-traders --rpc http://127.0.0.1:8546/ \\
        --l1-rpc http://127.0.0.1:8545 --deployment deployment.json --funder-key-env HFX_FUNDER_KEY

Each trader has a deterministic devnet key (:func:`trader_keys`). First, on
L1, the funder (the deployment's token minter) sends each trader gas money
and mints it collateral, and the trader approves the bridge and deposits —
the sequencer's queue watcher credits the deposit, which creates the L2
account. Then, over JSON-RPC with :class:`sequencer.client.AsyncTraderClient`:

- **market makers** keep ``levels`` post-only bids and asks around each
  market's oracle mark (``spread_ticks`` ticks apart), and re-quote — cancel
  and replace — when the mark moves, when a quote was filled, or when the
  quotes are ``refresh`` seconds old; a maker past ``max_position`` lots in a
  market stops quoting the side that would add to it;
- **takers** send immediate-or-cancel orders that cross the spread by
  ``cross_ticks`` ticks, at exponentially distributed intervals (mean
  ``take_interval``), mostly on perpetuals, leaning towards reducing their
  position once it is large.

With the defaults, two makers and two takers send some 10–30 orders and
cancels per trade: the order-to-trade ratio of a quoted electronic market is
of that order or higher. SIGINT or SIGTERM stops them; makers cancel their
quotes on the way out. The quoting rules are pure functions
(:func:`maker_quotes`, :func:`taker_order`), tested on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account

from node.rpc import RpcError
from node.rpc_client import RpcClient, RpcTransportError
from sequencer.client import FLAG_IOC, FLAG_POST_ONLY, AsyncTraderClient
from state.constants import PRICE_LIMIT
from state.keccak import keccak256

__all__ = [
    "DemoConfig", "DemoTraders", "Quote", "fund_on_l1", "main", "maker_quotes", "taker_order",
    "trader_keys",
]

log = logging.getLogger("hfx.demo_traders")

NOT_FOUND = 1004


def trader_keys(count: int, seed: int = 0) -> list[bytes]:
    """Deterministic devnet trader keys: ``keccak256("hfx-demo-trader-<seed>-<i>")`` (public: devnets only)."""
    return [keccak256(b"hfx-demo-trader-%d-%d" % (seed, i)) for i in range(count)]


@dataclass(frozen=True)
class Quote:
    """One order a strategy wants: side, limit price, size (lots × lot)."""

    is_buy: bool
    price: int
    size: int


def maker_quotes(
    mark: int, tick: int, lot: int, *, levels: int, spread_ticks: int, position: int,
    max_position: int, rng: random.Random, max_lots: int = 5,
) -> list[Quote]:
    """A maker's ladder around ``mark``: ``levels`` bids and asks, ``spread_ticks`` ticks apart.

    Prices are multiples of ``tick`` in [tick, PRICE_LIMIT); the best bid is
    below and the best ask above the mark (rounded to the tick), so one
    maker's quotes never cross each other. Sizes are 1..``max_lots`` lots. At
    ``position >= max_position`` lots long no bids are quoted (short: no asks).
    """
    if mark <= 0 or tick <= 0 or lot <= 0 or levels <= 0 or spread_ticks <= 0:
        return []
    best_bid = (mark - 1) // tick * tick  # the largest multiple of tick below the mark
    best_ask = mark // tick * tick + tick  # the smallest above it
    out: list[Quote] = []
    for i in range(levels):
        bid = best_bid - i * spread_ticks * tick
        ask = best_ask + i * spread_ticks * tick
        if position < max_position * lot and bid >= tick:
            out.append(Quote(True, bid, rng.randint(1, max_lots) * lot))
        if position > -max_position * lot and ask < PRICE_LIMIT:
            out.append(Quote(False, ask, rng.randint(1, max_lots) * lot))
    return out


def taker_order(
    mark: int, tick: int, lot: int, *, position: int, max_position: int, cross_ticks: int,
    rng: random.Random, max_lots: int = 3,
) -> Quote | None:
    """An IOC order crossing the spread: a buy up to ``cross_ticks`` ticks above the mark, or a sell below.

    The side is a coin flip, except that a position of more than
    ``max_position`` lots is always reduced. ``None`` when no valid price exists."""
    if mark <= 0 or tick <= 0 or lot <= 0:
        return None
    if position > max_position * lot:
        is_buy = False
    elif position < -max_position * lot:
        is_buy = True
    else:
        is_buy = rng.random() < 0.5
    base = mark // tick * tick
    price = base + cross_ticks * tick if is_buy else base - cross_ticks * tick
    if price < tick or price >= PRICE_LIMIT:
        return None
    return Quote(is_buy, price, rng.randint(1, max_lots) * lot)


# ---------------------------------------------------------------- L1 funding

_TOKEN_ABI = [
    {"type": "function", "name": "mint", "stateMutability": "nonpayable", "outputs": [],
     "inputs": [{"name": "receiver", "type": "address"}, {"name": "amount", "type": "uint256"}]},
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "outputs": [{"name": "", "type": "bool"}],
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}]},
]
_BRIDGE_ABI = [
    {"type": "function", "name": "deposit", "stateMutability": "nonpayable",
     "outputs": [{"name": "", "type": "uint256"}], "inputs": [{"name": "amount", "type": "uint256"}]},
]


class FundingError(RuntimeError):
    """The traders could not be funded on L1 (no L1, a funder that is not the minter, a revert)."""


def fund_on_l1(
    l1_url: str, token: str, bridge: str, funder_key: str, keys: Sequence[bytes], amount: int,
    *, gas_money: int = 10**17, timeout: float = 60.0,
) -> list[str]:
    """Mint ``amount`` collateral to each trader, give it gas money, approve and deposit on the bridge.

    Transactions of one round are sent back to back and their receipts
    awaited together (two rounds: the funder's, then the traders'). Returns
    the deposit transaction hashes. Raises :class:`FundingError`."""
    from eth_account import Account
    from web3 import Web3

    w3: Any = Web3(Web3.HTTPProvider(l1_url, request_kwargs={"timeout": 30}))
    try:
        funder = Account.from_key(funder_key)
        chain_id = w3.eth.chain_id
        base = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    except Exception as exc:
        raise FundingError(f"L1 at {l1_url}: {exc}") from None
    fees = {"maxFeePerGas": 4 * base + 10**9, "maxPriorityFeePerGas": 10**9, "chainId": chain_id}
    token_c = w3.eth.contract(address=Web3.to_checksum_address(token), abi=_TOKEN_ABI)
    bridge_c = w3.eth.contract(address=Web3.to_checksum_address(bridge), abi=_BRIDGE_ABI)
    traders = [Account.from_key(k) for k in keys]

    def send(account: Any, nonce: int, tx: dict[str, Any]) -> Any:
        signed = account.sign_transaction({**fees, "nonce": nonce, "value": 0, **tx})
        return w3.eth.send_raw_transaction(signed.raw_transaction)

    def wait(hashes: list[Any], what: str) -> None:
        for h in hashes:
            receipt = w3.eth.wait_for_transaction_receipt(h, timeout=timeout)
            if receipt["status"] != 1:
                raise FundingError(f"{what}: transaction 0x{bytes(h).hex()} reverted")

    try:
        nonce = w3.eth.get_transaction_count(funder.address, "pending")
        hashes = []
        for t in traders:
            mint = token_c.functions.mint(t.address, amount).build_transaction(
                {"from": funder.address, "gas": 200_000, "nonce": nonce, **fees})
            hashes.append(send(funder, nonce, {"to": mint["to"], "data": mint["data"], "gas": 200_000}))
            nonce += 1
            if w3.eth.get_balance(t.address) < gas_money // 2:
                hashes.append(send(funder, nonce, {"to": t.address, "value": gas_money, "gas": 21_000}))
                nonce += 1
        wait(hashes, "minting (is the funder the token's minter?)")
        hashes = []
        for t in traders:
            n = w3.eth.get_transaction_count(t.address, "pending")
            approve = token_c.functions.approve(bridge_c.address, amount).build_transaction(
                {"from": t.address, "gas": 100_000, "nonce": n, **fees})
            hashes.append(send(t, n, {"to": approve["to"], "data": approve["data"], "gas": 100_000}))
            dep = bridge_c.functions.deposit(amount).build_transaction(
                {"from": t.address, "gas": 400_000, "nonce": n + 1, **fees})
            hashes.append(send(t, n + 1, {"to": dep["to"], "data": dep["data"], "gas": 400_000}))
        wait(hashes, "approve and deposit")
    except FundingError:
        raise
    except Exception as exc:
        raise FundingError(f"funding on {l1_url}: {exc}") from None
    return ["0x" + bytes(h).hex() for h in hashes[1::2]]


# ---------------------------------------------------------------- the traders


@dataclass(frozen=True)
class DemoConfig:
    """Strategy parameters (see the module docstring)."""

    makers: int = 2
    takers: int = 2
    seed: int = 0
    levels: int = 2
    spread_ticks: int = 1
    cross_ticks: int = 3
    quote_interval: float = 1.0
    refresh: float = 20.0
    take_interval: float = 1.5
    max_position: int = 20
    expiry_seconds: int = 60
    markets: tuple[int, ...] | None = None
    """Markets to trade; ``None``: every market with an oracle mark (takers prefer perpetuals)."""


@dataclass
class Stats:
    """What the traders did."""

    orders: int = 0
    cancels: int = 0
    fills: int = 0
    filled_size: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)

    def ratio(self) -> float | None:
        """Orders and cancels per fill (None before the first fill)."""
        return None if self.fills == 0 else (self.orders + self.cancels) / self.fills

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        ratio = self.ratio()
        return {"orders": self.orders, "cancels": self.cancels, "fills": self.fills,
                "filled_size": self.filled_size, "refused": dict(self.refused),
                "order_to_trade": None if ratio is None else round(ratio, 1)}


@dataclass
class _MarketView:
    kind: str
    tick: int
    lot: int
    mark: int
    settled: bool
    expiry: int


class DemoTraders:
    """Makers and takers over one sequencer; ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, url: str, keys: Sequence[bytes], config: DemoConfig) -> None:
        if len(keys) < config.makers + config.takers:
            raise ValueError("need a key per maker and per taker")
        self.url = url
        self.keys = list(keys)
        self.config = config
        self.stats = Stats()
        self.markets: dict[int, _MarketView] = {}
        self.clients: list[AsyncTraderClient] = []
        self._rng = random.Random(config.seed)

    async def wait_ready(self, timeout: float = 120.0, stop: asyncio.Event | None = None) -> bool:
        """Wait until every trader's account exists and some market has a mark."""
        rpc = RpcClient(self.url)
        deadline = time.monotonic() + timeout
        addresses = [str(Account.from_key(k).address).lower() for k in self.keys]
        try:
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                try:
                    for a in addresses:
                        await rpc.call("hfx_getAccount", [a])
                    await self._refresh_markets(rpc)
                    if any(m.mark > 0 for m in self.markets.values()):
                        return True
                except RpcError as exc:
                    if exc.code != NOT_FOUND:
                        raise
                except RpcTransportError:
                    pass
                await asyncio.sleep(0.5)
        finally:
            await rpc.close()
        return False

    async def _refresh_markets(self, rpc: RpcClient) -> None:
        result = await rpc.call("hfx_getMarkets")
        self.markets = {
            int(m["market"]): _MarketView(str(m["kind"]), int(m["tick"]), int(m["lot"]),
                                          int(m["mark"] or 0), bool(m["settled"]), int(m["expiry"]))
            for m in result["markets"]
        }

    def _tradable(self, now: int) -> list[int]:
        wanted = self.config.markets
        return [i for i, m in sorted(self.markets.items())
                if m.mark > 0 and not m.settled and (m.kind == "perp" or now < m.expiry - 60)
                and (wanted is None or i in wanted)]

    async def run(self, stop: asyncio.Event) -> Stats:
        """Trade until ``stop`` is set; makers cancel their quotes before returning."""
        rpc = RpcClient(self.url)
        info = await rpc.call("hfx_chainInfo")
        self.clients = [await AsyncTraderClient.connect(self.url, k, info) for k in self.keys]
        makers = self.clients[: self.config.makers]
        takers = self.clients[self.config.makers: self.config.makers + self.config.takers]
        tasks = [asyncio.create_task(self._market_loop(rpc, stop))]
        tasks += [asyncio.create_task(self._maker(c, i, stop)) for i, c in enumerate(makers)]
        tasks += [asyncio.create_task(self._taker(c, i, stop)) for i, c in enumerate(takers)]
        tasks.append(asyncio.create_task(self._report(stop)))
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(self._cancel_all(c) for c in makers)), 10)
            for c in self.clients:
                await c.aclose()
            await rpc.close()
        log.info("demo traders stopped", extra=self.stats.as_dict())
        return self.stats

    async def _market_loop(self, rpc: RpcClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(RpcError, RpcTransportError):
                await self._refresh_markets(rpc)
            await asyncio.sleep(0.5)

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(10)
            log.info("demo traders", extra=self.stats.as_dict())

    async def _place(self, client: AsyncTraderClient, q: Quote, market: int, flags: int) -> dict[str, Any] | None:
        expiry = int(time.time()) + self.config.expiry_seconds
        try:
            out = await client.place_order(market, q.is_buy, q.price, q.size, flags=flags, expiry=expiry)
        except RpcError as exc:
            reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
            self.stats.refused[str(reason or exc.code)] += 1
            return None
        self.stats.orders += 1
        if out.get("status") == "REFUSED":
            self.stats.refused[str(out.get("reason"))] += 1
        fills = out.get("fills") or []
        self.stats.fills += len(fills)
        self.stats.filled_size += sum(int(f["size"]) for f in fills)
        return out

    async def _cancel_all(self, client: AsyncTraderClient, market: int | None = None) -> None:
        orders = await client.call("hfx_getOpenOrders", [client.address, market])
        for o in orders:
            try:
                await client.cancel(o["orderHash"])
                self.stats.cancels += 1
            except RpcError as exc:  # filled or expired meanwhile
                reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
                self.stats.refused["cancel:" + str(reason or exc.code)] += 1

    async def _position(self, client: AsyncTraderClient) -> dict[int, int]:
        acct = await client.account()
        return {int(p["market"]): int(p["size"]) for p in acct.get("positions", [])}

    async def _maker(self, client: AsyncTraderClient, index: int, stop: asyncio.Event) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 1000 + index)
        quoted: dict[int, tuple[int, float, int]] = {}  # market -> (mark, time, orders placed)
        while not stop.is_set():
            try:
                positions = await self._position(client)
                for m in self._tradable(int(time.time())):
                    view = self.markets[m]
                    resting = await client.call("hfx_getOpenOrders", [client.address, m])
                    last = quoted.get(m)
                    fresh = (last is not None and last[0] == view.mark and len(resting) == last[2]
                             and time.monotonic() - last[1] < cfg.refresh)
                    if fresh:
                        continue
                    for o in resting:
                        with contextlib.suppress(RpcError):
                            await client.cancel(o["orderHash"])
                            self.stats.cancels += 1
                    placed = 0
                    for q in maker_quotes(view.mark, view.tick, view.lot, levels=cfg.levels,
                                          spread_ticks=cfg.spread_ticks, position=positions.get(m, 0),
                                          max_position=cfg.max_position, rng=rng):
                        out = await self._place(client, q, m, FLAG_POST_ONLY)
                        if out is not None and out.get("status") == "RESTING":
                            placed += 1
                    quoted[m] = (view.mark, time.monotonic(), placed)
            except (RpcError, RpcTransportError) as exc:
                log.warning("maker %d: %s", index, exc)
            await asyncio.sleep(cfg.quote_interval * rng.uniform(0.7, 1.3))

    async def _taker(self, client: AsyncTraderClient, index: int, stop: asyncio.Event) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 1000 + 500 + index)
        while not stop.is_set():
            await asyncio.sleep(rng.expovariate(1.0 / cfg.take_interval))
            markets = self._tradable(int(time.time()))
            if not markets:
                continue
            weights = [4.0 if self.markets[m].kind == "perp" else 1.0 for m in markets]
            m = rng.choices(markets, weights)[0]
            view = self.markets[m]
            try:
                position = (await self._position(client)).get(m, 0)
                q = taker_order(view.mark, view.tick, view.lot, position=position,
                                max_position=cfg.max_position, cross_ticks=cfg.cross_ticks, rng=rng)
                if q is not None:
                    await self._place(client, q, m, FLAG_IOC)
            except (RpcError, RpcTransportError) as exc:
                log.warning("taker %d: %s", index, exc)


# ---------------------------------------------------------------- the process


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The ``hfx demo-traders`` command line."""
    p = argparse.ArgumentParser(prog="hfx demo-traders",
                                description="devnet market makers and takers over the sequencer's JSON-RPC")
    p.add_argument("--rpc", required=True, help="the sequencer's JSON-RPC URL")
    p.add_argument("--l1-rpc", help="L1 JSON-RPC URL: fund and deposit first (with --deployment)")
    p.add_argument("--deployment", help="deployment JSON (token and bridge addresses)")
    p.add_argument("--funder-key-env", default="HFX_FUNDER_KEY",
                   help="environment variable with the token minter's key (mints collateral, pays gas)")
    p.add_argument("--deposit", type=int, default=1_000_000 * 10**6, help="collateral units per trader")
    p.add_argument("--makers", type=int, default=2)
    p.add_argument("--takers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="trader keys and strategy randomness")
    p.add_argument("--levels", type=int, default=2, help="quotes per side per market")
    p.add_argument("--quote-interval", type=float, default=1.0, help="seconds between a maker's re-quote checks")
    p.add_argument("--take-interval", type=float, default=1.5, help="mean seconds between a taker's orders")
    p.add_argument("--markets", help="comma-separated market ids (default: every market with a mark)")
    p.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for the accounts")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(list(argv))
    if args.makers < 0 or args.takers < 0 or args.makers + args.takers == 0:
        p.error("need at least one maker or taker")
    if args.levels < 1 or args.quote_interval <= 0 or args.take_interval <= 0:
        p.error("--levels, --quote-interval and --take-interval must be positive")
    if not 0 < args.deposit < 2**63:
        p.error("--deposit must be in [1, 2**63)")
    if (args.l1_rpc is None) != (args.deployment is None):
        p.error("--l1-rpc and --deployment go together")
    if args.markets:
        try:
            args.markets = tuple(int(x) for x in args.markets.split(","))
        except ValueError:
            p.error("--markets: comma-separated integers")
    return args


async def _run(args: argparse.Namespace, keys: list[bytes]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.max_seconds is not None:
        loop.call_later(args.max_seconds, stop.set)
    config = DemoConfig(makers=args.makers, takers=args.takers, seed=args.seed, levels=args.levels,
                        quote_interval=args.quote_interval, take_interval=args.take_interval,
                        markets=args.markets or None)
    traders = DemoTraders(args.rpc, keys, config)
    log.info("waiting for the traders' accounts and oracle prices")
    if not await traders.wait_ready(args.ready_timeout, stop):
        if stop.is_set():
            return 0
        print("error: the traders' accounts or the oracle prices did not appear on the sequencer",
              file=sys.stderr)
        return 1
    log.info("trading", extra={"makers": args.makers, "takers": args.takers})
    await traders.run(stop)
    return 0


def main(argv: Sequence[str]) -> int:
    """Fund (with ``--l1-rpc``), then trade until SIGINT/SIGTERM or ``--max-seconds``."""
    from sequencer.logs import setup_json_logging

    args = parse_args(argv)
    setup_json_logging(args.log_level)
    keys = trader_keys(args.makers + args.takers, args.seed)
    if args.l1_rpc is not None:
        from l1_contracts.deploy import Deployment

        funder = os.environ.get(args.funder_key_env)
        if not funder:
            print(f"error: set the funder's private key in ${args.funder_key_env}", file=sys.stderr)
            return 2
        try:
            with open(args.deployment) as handle:
                d = Deployment.from_json(handle.read())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"error: {args.deployment}: {exc}", file=sys.stderr)
            return 2
        try:
            fund_on_l1(args.l1_rpc, d.token, d.bridge, funder, keys, args.deposit)
        except FundingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        log.info("deposited on L1", extra={"traders": len(keys), "amount": args.deposit})
    return asyncio.run(_run(args, keys))
