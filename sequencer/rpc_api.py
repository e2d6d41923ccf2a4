"""The sequencer's trader-facing JSON-RPC API (docs/rpc.md).

:class:`SequencerApi` registers the ``hfx_`` methods and the ``book``,
``fills`` and ``batches`` subscription topics on a :class:`node.rpc.RpcServer`
and serves them from an :class:`sequencer.service.ExchangeService`. Writes
(place, cancel, withdraw) return once the command is durable (the service's
WAL group commit). Every refusal is a JSON-RPC error with an application code
(:data:`ORDER_REJECTED` …) whose ``data.reason`` is the intake's code; a
refused request changes nothing. Malformed parameters are ``-32602``.

Integers are JSON numbers (some exceed 2^53: JavaScript clients should parse
with BigInt); bytes are ``0x`` hex; addresses are lowercase hex.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from node.account_json import account_json
from node.rpc import InvalidParams, RpcError, RpcServer
from proofs.state_proof import get_proof
from sequencer.intake import IntakeError, hex_bytes, parse_cancel, parse_order, parse_withdraw
from sequencer.open_batch import ClosedBatch
from sequencer.orders import GTC, OpenOrder, RemovedOrder
from sequencer.outcomes import FillRecord, PlaceOutcome, StepRef
from sequencer.publisher import PublisherStatus
from sequencer.service import ExchangeService
from sequencer.typed_data import (
    cancel_typed_data,
    domain_data,
    order_typed_data,
    withdraw_typed_data,
)
from state.constants import KIND_CALL, KIND_PERP, KIND_PUT
from state.layout import (
    GLOBAL_KEY,
    PARAMS_KEY,
    PRICES_KEY,
    account_index_key,
    account_key,
    order_key,
    withdrawal_key,
)
from state.txs import decode_order_entry

__all__ = [
    "CANCEL_REJECTED",
    "LIQUIDATION_REJECTED",
    "NOT_FOUND",
    "ORACLE_REJECTED",
    "ORDER_REJECTED",
    "SequencerApi",
    "WITHDRAW_REJECTED",
]

ORDER_REJECTED = 1001
"""hfx_placeOrder refused by the intake; ``data.reason`` is the IntakeError code."""
CANCEL_REJECTED = 1002
"""hfx_cancelOrder refused."""
WITHDRAW_REJECTED = 1003
"""hfx_withdraw refused."""
NOT_FOUND = 1004
"""A query named an account, market or order the sequencer does not know."""
ORACLE_REJECTED = 1005
"""hfx_submitOracle refused (the STF's oracle codes, ``ORACLE_FUTURE``, ...)."""
LIQUIDATION_REJECTED = 1006
"""hfx_liquidate refused (``NOT_LIQUIDATABLE``, ``INSUFFICIENT_MARGIN``, ...)."""
MAX_ORACLE_STEP = 4_096
"""Largest oracle step accepted (80 prices and 16 signatures take 2,091 bytes)."""
ORDER_ENTRY_BYTES = 104

KIND_NAMES = {KIND_PERP: "perp", KIND_CALL: "call", KIND_PUT: "put"}
MAX_DEPTH = 100
MAX_PAGE = 500
BOOK_DEPTH = 20
"""Levels per side in each ``book`` push."""

ZERO_ADDRESS = "0x" + "00" * 20


_P = TypeVar("_P")
_O = TypeVar("_O")


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _rejected(code: int, name: str, exc: IntakeError) -> RpcError:
    return RpcError(code, f"{name}: {exc.code}: {exc.message}", {"reason": exc.code, "message": exc.message})


def _parsed(parse: Callable[[dict[str, object]], _P], value: Any, what: str) -> _P:
    """``parse`` of the JSON object ``value``; a malformed field is ``InvalidParams``."""
    try:
        return parse(_params_dict(value, what))
    except IntakeError as exc:
        raise InvalidParams(f"{what}: {exc.message}", {"reason": exc.code}) from None


def _params_dict(value: Any, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise InvalidParams(f"{what} must be a JSON object")
    return value


def _int_param(value: Any, name: str, lo: int = 0, hi: int = 1 << 64) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            n = value
        elif isinstance(value, str):
            n = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        else:
            raise ValueError
    except ValueError:
        raise InvalidParams(f"{name} must be an integer (a JSON number, a decimal or a 0x-hex string)") from None
    if not lo <= n < hi:
        raise InvalidParams(f"{name} must be in [{lo}, {hi})")
    return n


def entry_market(entry: bytes) -> int:
    """The market of a 104-byte order-table entry (docs/stf.md §5.2); -1 when malformed."""
    order = decode_order_entry(entry)
    return -1 if order is None else order.body.market


def _page(limit: int | None, default: int, hi: int) -> int:
    if limit is None:
        return default
    return _int_param(limit, "limit", 1, hi + 1)


def fill_json(fill: FillRecord, fill_id: int) -> dict[str, Any]:
    """A fill as the API shows it (``id`` is this process's fill counter)."""
    return {
        "id": fill_id,
        "maker": _hex(fill.maker),
        "taker": _hex(fill.taker),
        "makerAccount": fill.maker_account,
        "takerAccount": fill.taker_account,
        "market": fill.market,
        "takerIsBuy": fill.taker_is_buy,
        "price": fill.price,
        "size": fill.size,
        "batch": fill.batch,
        "step": fill.step,
    }


def _removed_json(r: RemovedOrder) -> dict[str, Any]:
    oid = r.order_id
    return {
        "orderHash": _hex(oid) if isinstance(oid, bytes) else str(oid),
        "account": r.account,
        "reason": r.reason.name,
        "remaining": r.remaining,
    }


def _step_json(ref: StepRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"batch": ref.batch, "step": ref.step, "code": ref.receipt.code.name}


def _open_order_json(o: OpenOrder) -> dict[str, Any]:
    order = o.order
    oid = order.order_id
    return {
        "orderHash": _hex(oid) if isinstance(oid, bytes) else str(oid),
        "account": order.account,
        "market": order.market,
        "isBuy": order.is_buy,
        "price": order.price,
        "size": order.size,
        "remaining": o.remaining,
        "flags": order.flags,
        "expiry": order.expiry,
    }


def batch_json(b: ClosedBatch) -> dict[str, Any]:
    """A closed batch's summary (its bytes are on L1 once posted)."""
    return {
        "index": b.index,
        "preRoot": _hex(b.pre_root),
        "postRoot": _hex(b.post_root),
        "timestamp": b.timestamp,
        "steps": b.step_count,
        "orders": b.order_count,
        "bytes": len(b.encoded),
        "depositStart": b.deposit_start,
        "depositCount": b.deposit_count,
        "forcedStart": b.forced_start,
        "forcedCount": b.forced_count,
    }


@dataclass
class _FillLog:
    """Recent fills in memory (this process's history, bounded), by id and by account."""

    limit: int
    next_id: int = 0

    def __post_init__(self) -> None:
        self.all: collections.deque[tuple[int, FillRecord]] = collections.deque(maxlen=self.limit)
        self.by_account: dict[int, collections.deque[tuple[int, FillRecord]]] = {}

    def add(self, fill: FillRecord) -> int:
        fid = self.next_id
        self.next_id += 1
        item = (fid, fill)
        self.all.append(item)
        for acct in {fill.maker_account, fill.taker_account}:
            q = self.by_account.get(acct)
            if q is None:
                q = self.by_account[acct] = collections.deque(maxlen=self.limit)
            q.append(item)
        return fid

    def page(self, account: int | None, before: int | None, limit: int) -> list[tuple[int, FillRecord]]:
        source = self.all if account is None else self.by_account.get(account, collections.deque())
        out: list[tuple[int, FillRecord]] = []
        for item in reversed(source):  # newest first
            if before is not None and item[0] >= before:
                continue
            out.append(item)
            if len(out) == limit:
                break
        return out


class SequencerApi:
    """The ``hfx_`` methods and topics of a sequencer, served by ``server``.

    ``publisher_status`` (optional) returns the L1 publisher's latest
    :class:`PublisherStatus` (the process caches one per publisher tick);
    ``extra_status`` adds fields to ``hfx_syncStatus`` (the L1 watcher's).
    """

    def __init__(
        self,
        service: ExchangeService,
        server: RpcServer,
        *,
        publisher_status: Callable[[], PublisherStatus | None] | None = None,
        extra_status: Callable[[], dict[str, Any]] | None = None,
        fill_history: int = 100_000,
        batch_history: int = 10_000,
    ) -> None:
        self.service = service
        self.server = server
        self.publisher_status = publisher_status
        self.extra_status = extra_status
        self.fills = _FillLog(fill_history)
        self.batches: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self._batch_history = batch_history
        self.counts: collections.Counter[str] = collections.Counter()
        """Events for the metrics: ``orders:<STATUS>``, ``refused:<method>``, ``fills``, ``batches``."""
        for b in service.core.pending_batches():
            self._remember_batch(b)
        service.core.batch_hooks.append(self._on_batch)
        self._register()

    # ------------------------------------------------------------------ registration

    def _register(self) -> None:
        s = self.server
        for name, handler in (
            ("hfx_placeOrder", self.place_order),
            ("hfx_cancelOrder", self.cancel_order),
            ("hfx_withdraw", self.withdraw),
            ("hfx_getAccount", self.get_account),
            ("hfx_getOrderBook", self.get_order_book),
            ("hfx_getOpenOrders", self.get_open_orders),
            ("hfx_getFills", self.get_fills),
            ("hfx_getOrder", self.get_order),
            ("hfx_getMarkets", self.get_markets),
            ("hfx_getBatches", self.get_batches),
            ("hfx_syncStatus", self.sync_status),
            ("hfx_getProof", self.get_proof),
            ("hfx_chainInfo", self.chain_info),
            ("hfx_submitOracle", self.submit_oracle),
            ("hfx_liquidate", self.liquidate),
            ("hfx_getAccounts", self.get_accounts),
            ("hfx_getRiskState", self.get_risk_state),
        ):
            s.register(name, handler)
        s.add_topic("book", accept=self._accept_book, match=lambda market, p: bool(p["market"] == market))
        s.add_topic("fills", accept=self._accept_fills, match=self._match_fill)
        s.add_topic("batches")

    def _accept_book(self, params: Any) -> int:
        if isinstance(params, dict):
            params = params.get("market")
        return self._market(params)

    def _accept_fills(self, params: Any) -> int | None:
        if params is None:
            return None
        if isinstance(params, dict):
            if "account" not in params:
                raise InvalidParams('fills params: {"account": index or address} or none')
            params = params["account"]
        return self._account_index(params)

    @staticmethod
    def _match_fill(account: int | None, fill: Any) -> bool:
        return account is None or account in (fill["makerAccount"], fill["takerAccount"])

    # ------------------------------------------------------------------ argument helpers

    def _market(self, value: Any) -> int:
        market = _int_param(value, "market", 0, 256)
        if market >= len(self.service.core.engine.markets):
            raise RpcError(NOT_FOUND, f"unknown market {market}", {"reason": "UNKNOWN_MARKET"})
        return market

    def _account_index(self, value: Any) -> int:
        core = self.service.core
        if isinstance(value, str) and value.lower().startswith("0x") and len(value) == 42:
            try:
                owner = hex_bytes(value, 20, "account")
            except IntakeError as exc:
                raise InvalidParams(exc.message) from None
            index = core.account_index(owner)
            if index is None:
                raise RpcError(NOT_FOUND, f"no account for {value.lower()}", {"reason": "UNKNOWN_ACCOUNT"})
            return index
        index = _int_param(value, "account", 0, 1 << 32)
        if core.account(index) is None:
            raise RpcError(NOT_FOUND, f"no account {index}", {"reason": "UNKNOWN_ACCOUNT"})
        return index

    # ------------------------------------------------------------------ writes

    async def _refusable(self, call: Awaitable[_O], method: str, code: int, what: str) -> _O:
        """Await a command; a refusal is counted (``refused:<method>``) and becomes the
        method's ``<what> rejected`` error with the refusal's code."""
        try:
            return await call
        except IntakeError as exc:
            self.counts[f"refused:{method}"] += 1
            raise _rejected(code, f"{what} rejected", exc) from None

    async def place_order(self, order: dict[str, Any]) -> dict[str, Any]:
        """Place a signed order (docs/sequencer.md §2); durable when this returns."""
        sub = _parsed(parse_order, order, "order")
        out = await self._refusable(self.service.place_order(sub), "placeOrder", ORDER_REJECTED, "order")
        self.counts[f"orders:{out.status.name}"] += 1
        result = self._place_json(out)
        self._after_orders({out.market})
        return result

    def _place_json(self, out: PlaceOutcome) -> dict[str, Any]:
        fills = []
        for f in out.fills:
            fid = self.fills.add(f)
            fj = fill_json(f, fid)
            fills.append(fj)
            self.counts["fills"] += 1
            self.server.publish("fills", fj)
        return {
            "orderHash": _hex(out.order_hash),
            "account": out.account,
            "market": out.market,
            "status": out.status.name,
            "reason": None if out.reason is None else out.reason.name,
            "filled": out.filled,
            "resting": out.resting,
            "fills": fills,
            "removed": [_removed_json(r) for r in out.removed],
        }

    async def cancel_order(self, cancel: dict[str, Any]) -> dict[str, Any]:
        """Cancel an order with a signed ``Cancel`` (docs/sequencer.md §5)."""
        sub = _parsed(parse_cancel, cancel, "cancel")
        out = await self._refusable(self.service.cancel_order(sub), "cancelOrder", CANCEL_REJECTED, "cancel")
        self.counts["cancels"] += 1
        held = self.service.core.order(out.order_hash)
        markets = {held.order.market} if held is not None else set(range(len(self.service.core.engine.markets)))
        self._after_orders(markets if out.remaining else set())
        return {
            "orderHash": _hex(out.order_hash),
            "account": out.account,
            "remaining": out.remaining,
            "step": _step_json(out.step),
        }

    async def withdraw(self, withdrawal: dict[str, Any]) -> dict[str, Any]:
        """Withdraw collateral with a signed ``Withdraw``; claimable on L1 once its batch is final."""
        sub = _parsed(parse_withdraw, withdrawal, "withdrawal")
        out = await self._refusable(self.service.withdraw(sub), "withdraw", WITHDRAW_REJECTED, "withdrawal")
        self.counts["withdrawals"] += 1
        return {"withdrawalId": out.withdrawal_id, "step": _step_json(out.step)}

    async def submit_oracle(self, update: dict[str, Any]) -> dict[str, Any]:
        """Apply a signed oracle step (``{"step": "0x…"}``); the risk monitor runs on it."""
        params = _params_dict(update, "update")
        try:
            step = hex_bytes(params.get("step"), None, "step")
        except IntakeError as exc:
            raise InvalidParams(f"update: {exc.message}", {"reason": exc.code}) from None
        if not 0 < len(step) <= MAX_ORACLE_STEP:
            raise InvalidParams(f"update: step must be 1..{MAX_ORACLE_STEP} bytes", {"reason": "BAD_FIELD"})
        out = await self._refusable(
            self.service.submit_oracle(step), "submitOracle", ORACLE_REJECTED, "oracle update"
        )
        self.counts["oracle"] += 1
        return {"step": _step_json(out.step)}

    async def liquidate(self, liquidation: dict[str, Any]) -> dict[str, Any]:
        """Liquidate ``target`` into the liquidator's signed order ``entry`` (``size`` units)."""
        params = _params_dict(liquidation, "liquidation")
        try:
            entry = hex_bytes(params.get("entry"), ORDER_ENTRY_BYTES, "entry")
        except IntakeError as exc:
            raise InvalidParams(f"liquidation: {exc.message}", {"reason": exc.code}) from None
        target = _int_param(params.get("target"), "target", 1, 1 << 32)
        size = _int_param(params.get("size"), "size", 1, 1 << 64)
        out = await self._refusable(
            self.service.liquidate(target, entry, size), "liquidate", LIQUIDATION_REJECTED, "liquidation"
        )
        self.counts["liquidations"] += 1
        market = entry_market(entry)
        self._after_orders({market} if market >= 0 else set())
        return {"step": _step_json(out.step), "removed": [_removed_json(r) for r in out.removed]}

    # ------------------------------------------------------------------ pushes

    def _after_orders(self, markets: set[int]) -> None:
        if not markets or self.server.subscription_count("book") == 0:
            return
        for m in sorted(markets):
            self.server.publish("book", self._book(m, BOOK_DEPTH))

    def _remember_batch(self, b: ClosedBatch) -> dict[str, Any]:
        summary = batch_json(b)
        self.batches[b.index] = summary
        while len(self.batches) > self._batch_history:
            self.batches.popitem(last=False)
        return summary

    def _on_batch(self, b: ClosedBatch) -> None:
        summary = self._remember_batch(b)
        self.counts["batches"] += 1
        self.server.publish("batches", {**summary, "l1": None})
        # closing a batch sweeps expired orders: refresh every book that has watchers
        self._after_orders(set(range(len(self.service.core.engine.markets))))

    # ------------------------------------------------------------------ reads

    def _book(self, market: int, n: int) -> dict[str, Any]:
        d = self.service.core.depth(market, n)
        return {
            "market": market,
            "bids": [[lv.price, lv.size, lv.count] for lv in d.bids],
            "asks": [[lv.price, lv.size, lv.count] for lv in d.asks],
            "clock": self.service.core.clock,
        }

    async def get_order_book(self, market: int | str, depth: int = 20) -> dict[str, Any]:
        """The top ``depth`` price levels per side: ``[price, size, orders]``, best first."""
        m = self._market(market)
        n = _int_param(depth, "depth", 1, MAX_DEPTH + 1)
        return self._book(m, n)

    async def get_account(self, account: int | str) -> dict[str, Any]:
        """Collateral, positions, equity, margin requirements, margin ratio and Greeks of an account."""
        core = self.service.core
        index = self._account_index(account)
        acct = core.account(index)
        risk = core.risk(index)
        if acct is None or risk is None:
            raise RpcError(NOT_FOUND, f"no account {index}", {"reason": "UNKNOWN_ACCOUNT"})
        return account_json(index, acct, risk, core.view.params().markets)

    async def get_accounts(self, from_index: int | str = 1, limit: int | str | None = None,
                           with_positions: bool = True) -> dict[str, Any]:
        """Accounts by index from ``from_index`` (only those with positions by default): the
        account leaf's content, for liquidators; ``next`` continues the scan (null at the end)."""
        core = self.service.core
        start = _int_param(from_index, "from_index", 1, 1 << 32)
        n = 100 if limit is None else _int_param(limit, "limit", 1, MAX_PAGE + 1)
        if not isinstance(with_positions, bool):
            raise InvalidParams("with_positions must be a boolean")
        count = core.view.global_().account_count
        out: list[dict[str, Any]] = []
        index = start
        while index < count and len(out) < n:
            acct = core.account(index)
            if acct is not None and (acct.positions or not with_positions):
                out.append({
                    "index": index, "owner": _hex(acct.owner), "nonce": acct.nonce,
                    "collateral": acct.collateral,
                    "positions": [
                        {"market": p.market, "size": p.size, "cost": p.cost,
                         "fundingSnapshot": p.funding_snapshot}
                        for p in acct.positions
                    ],
                })
            index += 1
        return {"accounts": out, "next": index if index < count else None, "accountCount": count}

    async def get_risk_state(self) -> dict[str, Any]:
        """The params and prices leaves (encoded as in the state, docs/stf.md §4), the insurance
        fund and the clock: what a liquidator values accounts with (``state.layout`` decodes them)."""
        view = self.service.core.view
        return {
            "params": _hex(view.params().encode()),
            "prices": _hex(view.prices().encode()),
            "insuranceFund": view.global_().insurance_fund,
            "clock": self.service.core.clock,
        }

    async def get_open_orders(self, account: int | str, market: int | str | None = None) -> list[dict[str, Any]]:
        """The account's resting orders, oldest first (optionally of one market)."""
        index = self._account_index(account)
        m = None if market is None else self._market(market)
        return [_open_order_json(o) for o in self.service.core.open_orders(index, m)]

    async def get_fills(
        self, account: int | str | None = None, limit: int | None = None, before: int | None = None
    ) -> dict[str, Any]:
        """Recent fills, newest first; page with ``before`` = the last page's ``next``."""
        index = None if account is None else self._account_index(account)
        n = _page(limit, 100, MAX_PAGE)
        start = None if before is None else _int_param(before, "before")
        page = self.fills.page(index, start, n)
        return {
            "fills": [fill_json(f, fid) for fid, f in page],
            "next": page[-1][0] if len(page) == n and page[-1][0] > 0 else None,
        }

    async def get_order(self, order_hash: str) -> dict[str, Any]:
        """One order by its digest: resting (with its fields), filled, cancelled or closed."""
        try:
            digest = hex_bytes(order_hash, 32, "orderHash")
        except IntakeError as exc:
            raise InvalidParams(exc.message) from None
        core = self.service.core
        state = core.order_state(digest)
        held = core.order(digest)
        out: dict[str, Any] = {
            "orderHash": _hex(digest), "filled": state.filled, "cancelled": state.cancelled,
            "order": None if held is None else _open_order_json(held),
        }
        if held is not None:
            out["status"] = "OPEN"
        elif state.cancelled:
            out["status"] = "CANCELLED"
        elif core.known(digest) is not None:
            out["status"] = "FILLED" if state.filled else "CLOSED"
        elif state.filled:
            out["status"] = "FILLED"
        else:
            raise RpcError(NOT_FOUND, f"unknown order {_hex(digest)}", {"reason": "UNKNOWN_ORDER"})
        return out

    async def get_markets(self) -> dict[str, Any]:
        """Market parameters, the fee/risk configuration and the current prices."""
        view = self.service.core.view
        params = view.params()
        prices = view.prices()
        c = params.config
        markets = []
        for i, m in enumerate(params.markets):
            mp = prices.markets[i] if i < len(prices.markets) else None
            markets.append({
                "market": i, "kind": KIND_NAMES.get(m.kind, str(m.kind)), "underlying": m.underlying,
                "imBps": m.im_bps, "mmBps": m.mm_bps, "tick": m.tick, "lot": m.lot,
                "strike": m.strike, "expiry": m.expiry, "sizeDecimals": m.size_decimals,
                "mark": None if mp is None else mp.mark,
                "indexPrice": prices.index[m.underlying] if m.underlying < len(prices.index) else None,
                "fundingIndex": None if mp is None else mp.funding_index,
                "iv": None if mp is None else mp.iv,
                "settled": False if mp is None else mp.settled,
            })
        return {
            "config": {
                "takerFeeBps": c.taker_fee_bps, "makerRebateBps": c.maker_rebate_bps,
                "liquidationPenaltyBps": c.liquidation_penalty_bps,
                "liquidatorBonusBps": c.liquidator_bonus_bps, "syncBufferBps": c.sync_buffer_bps,
                "fundingCapBps": c.funding_cap_bps, "maxOracleAge": c.max_oracle_age,
            },
            "oracleTime": prices.oracle_time,
            "fundingTime": prices.funding_time,
            "markets": markets,
        }

    def _l1_json(self, status: PublisherStatus | None, index: int) -> dict[str, Any] | None:
        if status is None:
            return None
        for r in status.batches:
            if r.index == index:
                inc = r.inclusion
                return {
                    "state": str(r.state), "batchId": r.batch_id,
                    "txHash": None if inc is None else inc.tx_hash,
                    "block": None if inc is None else inc.block,
                    "confirmations": r.confirmations, "error": r.error or None,
                }
        if index <= status.anchor.index:
            return {"state": "final", "batchId": None, "txHash": None, "block": None,
                    "confirmations": None, "error": None}
        return {"state": "unsubmitted", "batchId": None, "txHash": None, "block": None,
                "confirmations": None, "error": None}

    async def get_batches(self, from_index: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """Closed batches (oldest first from ``from_index``, else the newest ``limit``) with L1 status."""
        n = _page(limit, 20, MAX_PAGE)
        indices = list(self.batches)
        if from_index is None:
            chosen = indices[-n:]
        else:
            start = _int_param(from_index, "from_index")
            chosen = [i for i in indices if i >= start][:n]
        status = self.publisher_status() if self.publisher_status is not None else None
        return {
            "batches": [{**self.batches[i], "l1": self._l1_json(status, i)} for i in chosen],
            "nextBatchIndex": self.service.core.next_batch_index,
        }

    async def sync_status(self) -> dict[str, Any]:
        """Where the sequencer is: clock, open batch, committed root, L1 queues and publishing."""
        core = self.service.core
        ob = core.open_batch
        g = core.view.global_()
        out: dict[str, Any] = {
            "clock": core.clock,
            "committedRoot": _hex(core.root),
            "nextBatchIndex": core.next_batch_index,
            "pendingBatches": len(core.pending_batches()),
            "openBatch": None if ob is None else {
                "index": ob.index, "timestamp": ob.timestamp, "openedAt": ob.opened_at,
                "steps": len(ob.steps), "orders": len(ob.table.entries), "bytes": ob.nbytes,
            },
            "l2Time": g.l2_time,
            "nextDeposit": g.next_deposit,
            "nextForced": g.next_forced,
            "accounts": g.account_count,
            "publisher": None,
        }
        status = self.publisher_status() if self.publisher_status is not None else None
        if status is not None:
            out["publisher"] = {
                "l1Head": status.head, "halted": status.halted, "blocked": status.blocked,
                "finalIndex": status.anchor.index, "finalBatchId": status.anchor.batch_id,
                "unfinished": len(status.batches),
            }
        if self.extra_status is not None:
            out.update(self.extra_status())
        return out

    async def get_proof(
        self, keys: list[str] | None = None, account: int | str | None = None,
        order_hash: str | None = None, withdrawal_id: int | None = None,
    ) -> dict[str, Any]:
        """EIP-1186-shaped proofs (the ``storageProof`` of ``eth_getProof``) against the last
        committed root: raw 32-byte leaf keys, and/or an account's leaves (record and
        owner index), an order's state, a withdrawal record. ``"global"``, ``"params"``,
        ``"prices"`` name the singleton leaves."""
        named = {"global": GLOBAL_KEY, "params": PARAMS_KEY, "prices": PRICES_KEY}
        wanted: list[bytes] = []
        for k in keys or []:
            if not isinstance(k, str):
                raise InvalidParams("keys must be 0x-hex 32-byte strings or global/params/prices")
            if k in named:
                wanted.append(named[k])
                continue
            try:
                wanted.append(hex_bytes(k, 32, "key"))
            except IntakeError as exc:
                raise InvalidParams(exc.message) from None
        core = self.service.core
        acct_index: int | None = None
        if account is not None:
            acct_index = self._account_index(account)
            acct = core.account(acct_index)
            if acct is None:
                raise RpcError(NOT_FOUND, f"no account {acct_index}", {"reason": "UNKNOWN_ACCOUNT"})
            wanted += [account_key(acct_index), account_index_key(acct.owner)]
        if order_hash is not None:
            try:
                wanted.append(order_key(hex_bytes(order_hash, 32, "order_hash")))
            except IntakeError as exc:
                raise InvalidParams(exc.message) from None
        if withdrawal_id is not None:
            wanted.append(withdrawal_key(_int_param(withdrawal_id, "withdrawal_id")))
        if not wanted:
            raise InvalidParams("give keys, account, order_hash or withdrawal_id")
        if len(wanted) > 64:
            raise InvalidParams("at most 64 keys per call")
        proof = get_proof(core.db, wanted)
        proof["batchIndex"] = core.next_batch_index - 1
        proof["account"] = acct_index
        return proof

    async def chain_info(self) -> dict[str, Any]:
        """Chain id, rollup address, the EIP-712 domain and one template per signed type."""
        chain = self.service.core.chain
        zero = b"\x00" * 20
        templates = {
            "order": order_typed_data(chain, zero, 0, True, 0, 0, 0, GTC, 0),
            "cancel": cancel_typed_data(chain, zero, b"\x00" * 32),
            "withdraw": withdraw_typed_data(chain, zero, zero, 0, 0),
        }
        return {
            "chainId": chain.chain_id,
            "rollup": _hex(chain.rollup),
            "domain": domain_data(chain),
            "domainSeparator": _hex(chain.domain),
            "typedData": copy.deepcopy(templates),
            "gtc": GTC,
            "markets": len(self.service.core.engine.markets),
        }
