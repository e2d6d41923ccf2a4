"""The node's read-only JSON-RPC API (docs/node-rpc.md), served on :class:`node.rpc.RpcServer`.

Everything is answered from the node's own derivation of L1 (node/derive.py):
sync status, batches with their L1 status, accounts with margin, EIP-1186
proofs of any leaf against any derived batch's root, and withdrawal proofs
in the shape ``Bridge.claimWithdrawal`` takes. The derivation is owned by one
thread (:class:`DerivationThread`); every handler runs its read there, so a
read never sees a batch half-applied.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from l1_contracts.bindings import BatchStatus
from node.account_json import account_json
from node.batches import BatchRecord, Verdict
from node.derive import Derivation
from node.rpc import InvalidParams, RpcError, RpcServer
from proofs.state_proof import get_proof
from state.constants import KIND_CALL, KIND_PERP, KIND_PUT
from state.layout import (
    GLOBAL_KEY,
    PARAMS_KEY,
    PRICES_KEY,
    Account,
    Global,
    OrderState,
    Params,
    Prices,
    Withdrawal,
    account_index_key,
    account_key,
    decode_account_index,
    order_key,
    withdrawal_key,
)
from state.risk_view import account_risk

T = TypeVar("T")

NOT_FOUND = 1004
"""An unknown account, batch, withdrawal or order (``data.reason`` says which)."""
NOT_FINAL = 1010
"""A withdrawal proof was asked for a batch that is not final (or no final batch holds the record yet)."""
ROOT_MISMATCH = 1011
"""The batch's posted root is not the node's: the node will not prove anything against it."""

MAX_KEYS = 64
MAX_PAGE = 500
STATUS_NAMES = {BatchStatus.PENDING: "pending", BatchStatus.FINAL: "final", BatchStatus.REMOVED: "removed"}
KIND_NAMES = {KIND_PERP: "perp", KIND_CALL: "call", KIND_PUT: "put"}
NAMED_KEYS = {"global": GLOBAL_KEY, "params": PARAMS_KEY, "prices": PRICES_KEY}


class DerivationThread:
    """One thread that owns a :class:`Derivation` (SQLite and LMDB handles are per thread).

    ``call(fn)`` runs ``fn(derivation)`` there and returns its result;
    ``await run(fn)`` does the same from an event loop."""

    def __init__(self, opener: Callable[[], Derivation]) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="derivation")
        self.derivation: Derivation = self._pool.submit(opener).result()

    def call(self, fn: Callable[[Derivation], T]) -> T:
        """Run ``fn`` on the derivation's thread and wait for it."""
        return self._pool.submit(fn, self.derivation).result()

    async def run(self, fn: Callable[[Derivation], T]) -> T:
        """Run ``fn`` on the derivation's thread without blocking the event loop."""
        return await asyncio.wrap_future(self._pool.submit(fn, self.derivation))

    def close(self) -> None:
        """Close the derivation (on its thread) and stop the thread."""
        try:
            self._pool.submit(lambda: self.derivation.close()).result()
        finally:
            self._pool.shutdown(wait=True)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _bytes_param(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidParams(f"{name} must be 0x-hex", {"reason": "BAD_FIELD"})
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise InvalidParams(f"{name} is not hex", {"reason": "BAD_FIELD"}) from None
    if size is not None and len(raw) != size:
        raise InvalidParams(f"{name} must be {size} bytes", {"reason": "BAD_FIELD"})
    return raw


def _int_param(value: Any, name: str, low: int, high: int) -> int:
    """An integer given as a JSON number, a decimal string or a 0x string, within [low, high)."""
    if isinstance(value, bool):
        raise InvalidParams(f"{name} must be an integer", {"reason": "BAD_FIELD"})
    if isinstance(value, str):
        try:
            value = int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            raise InvalidParams(f"{name} must be an integer", {"reason": "BAD_FIELD"}) from None
    if not isinstance(value, int):
        raise InvalidParams(f"{name} must be an integer", {"reason": "BAD_FIELD"})
    if not low <= value < high:
        raise InvalidParams(f"{name} must be in [{low}, {high})", {"reason": "OUT_OF_RANGE"})
    return value


def _account_param(value: Any) -> tuple[bytes | None, int | None]:
    """An ``account`` parameter: an owner address (``0x`` + 40 hex digits) or an account index."""
    if isinstance(value, str) and value.startswith("0x"):
        return _bytes_param(value, "account", 20), None
    return None, _int_param(value, "account", 0, 1 << 32)


def _load_account(
    d: Derivation, root: bytes, account: int | str, owner: bytes | None, index: int | None
) -> tuple[int, Account]:
    """The account ``account`` names (by ``owner`` or ``index``, from ``_account_param``) at
    ``root``, with its index; UNKNOWN_ACCOUNT when there is none."""
    i = index
    if owner is not None:
        raw_index = d.db.get(account_index_key(owner), root)
        if raw_index is None:
            raise _not_found(f"account {account}", "UNKNOWN_ACCOUNT")
        i = decode_account_index(raw_index)
    raw = None if i is None else d.db.get(account_key(i), root)
    if i is None or raw is None:
        raise _not_found(f"account {account}", "UNKNOWN_ACCOUNT")
    return i, Account.decode(raw)


def _not_found(what: str, reason: str) -> RpcError:
    return RpcError(NOT_FOUND, f"{what} not found", {"reason": reason})


def batch_json(r: BatchRecord) -> dict[str, Any]:
    """A batch record as the API shows it."""
    return {
        "index": r.index,
        "parent": r.parent,
        "status": STATUS_NAMES.get(r.l1_status, str(int(r.l1_status))),
        "verdict": r.verdict.name,
        "proposer": r.proposer,
        "postedRoot": _hex(r.posted_root),
        "computedRoot": _hex(r.computed_root),
        "postedPreRoot": _hex(r.posted_pre_root),
        "preRoot": _hex(r.pre_root),
        "timestamp": r.data.timestamp,
        "steps": r.data.n_steps,
        "orders": r.data.n_orders,
        "refusedSteps": r.refused_steps,
        "depositStart": r.data.deposit_start,
        "depositEnd": r.data.deposit_end,
        "forcedStart": r.data.forced_start,
        "forcedEnd": r.data.forced_end,
        "deadline": r.deadline,
        "txHash": _hex(r.tx_hash) if r.tx_hash else None,
        "l1Block": r.block,
        "removedBlock": r.removed_block,
        "finalizedBlock": r.finalized_block,
        "note": r.note,
    }


class NodeApi:
    """The ``hfx_*`` read methods of ``hfx node`` on ``server``, over a :class:`DerivationThread`.

    ``info`` is static (chain id, addresses, genesis root); ``sync`` returns
    the follower's live status (its ``l1Block``, ``polls``, ``lastError``...)."""

    def __init__(self, server: RpcServer, derivation: DerivationThread, info: Mapping[str, Any],
                 sync: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.server = server
        self.derivation = derivation
        self.info = dict(info)
        self.sync = sync or dict
        for name, handler in (
            ("hfx_chainInfo", self.chain_info),
            ("hfx_syncStatus", self.sync_status),
            ("hfx_getBatch", self.get_batch),
            ("hfx_getBatches", self.get_batches),
            ("hfx_getAccount", self.get_account),
            ("hfx_getMarkets", self.get_markets),
            ("hfx_getOrderState", self.get_order_state),
            ("hfx_getWithdrawal", self.get_withdrawal),
            ("hfx_getProof", self.get_proof),
            ("hfx_getWithdrawalProof", self.get_withdrawal_proof),
        ):
            server.register(name, handler)

    # -------------------------------------------------------- selecting a batch

    @staticmethod
    def _select(d: Derivation, batch: int | str | None) -> BatchRecord:
        """The record named by ``batch``: ``"latest"``/None (the head), ``"final"`` (newest final), or an index."""
        if batch is None or batch == "latest":
            head = d.head
            if head is None:  # pragma: no cover - a derivation always has its genesis
                raise _not_found("head batch", "UNKNOWN_BATCH")
            return head
        if batch == "final":
            finals = d.records(0, status=BatchStatus.FINAL)
            return max(finals, key=lambda r: r.index)
        index = _int_param(batch, "batch", 0, 1 << 63)
        record = d.record(index)
        if record is None:
            raise _not_found(f"batch {index}", "UNKNOWN_BATCH")
        return record

    @staticmethod
    def _check_batch_param(batch: Any) -> None:
        if batch is None or batch in ("latest", "final"):
            return
        _int_param(batch, "batch", 0, 1 << 63)

    # -------------------------------------------------------- methods

    async def chain_info(self) -> dict[str, Any]:
        """The deployment this node follows: chain id, rollup, bridge, genesis root, oracle keys."""
        return dict(self.info)

    async def sync_status(self) -> dict[str, Any]:
        """How far the node has followed L1, its head batch and its newest final batch."""

        def read(d: Derivation) -> dict[str, Any]:
            head = self._select(d, "latest")
            final = self._select(d, "final")
            pending = d.records(final.index + 1, status=BatchStatus.PENDING)
            mismatched = [r.index for r in pending if r.verdict != Verdict.MATCH]
            progress = d.progress()
            return {
                "l1Block": None if progress is None else progress[0],
                "head": {"index": head.index, "root": _hex(head.computed_root),
                         "status": STATUS_NAMES[head.l1_status], "timestamp": head.data.timestamp},
                "final": {"index": final.index, "root": _hex(final.computed_root)},
                "pending": len(pending),
                "disputable": mismatched,
            }

        out = await self.derivation.run(read)
        out.update(self.sync())
        return out

    async def get_batch(self, index: int | str) -> dict[str, Any]:
        """One batch's record: roots (posted and computed), verdict, L1 status, queue ranges, deadline."""
        self._check_batch_param(index)
        return await self.derivation.run(lambda d: batch_json(self._select(d, index)))

    async def get_batches(self, from_index: int | str | None = None, limit: int | str = 20,
                          status: str | None = None) -> dict[str, Any]:
        """Batch records oldest first from ``from_index`` (default: the newest ``limit``), optionally of one
        status (``pending``, ``final``, ``removed``); ``next`` continues (null at the end)."""
        n = _int_param(limit, "limit", 1, MAX_PAGE + 1)
        start = None if from_index is None else _int_param(from_index, "from_index", 0, 1 << 63)
        by_name = {v: k for k, v in STATUS_NAMES.items()}
        if status is not None and status not in by_name:
            raise InvalidParams("status must be pending, final or removed", {"reason": "BAD_FIELD"})
        wanted = None if status is None else by_name[status]

        def read(d: Derivation) -> dict[str, Any]:
            if start is None:
                rows = d.records(0, status=wanted)[-n:]
                return {"batches": [batch_json(r) for r in rows], "next": None}
            rows = d.records(start, status=wanted)
            page, rest = rows[:n], rows[n:]
            return {"batches": [batch_json(r) for r in page], "next": rest[0].index if rest else None}

        return await self.derivation.run(read)

    async def get_account(self, account: int | str, batch: int | str | None = None) -> dict[str, Any]:
        """An account at a batch (default the head): collateral, nonce, positions, equity, margin, Greeks."""
        self._check_batch_param(batch)
        owner, index = _account_param(account)

        def read(d: Derivation) -> dict[str, Any]:
            record = self._select(d, batch)
            root = record.computed_root
            i, acct = _load_account(d, root, account, owner, index)
            params = Params.decode(_need(d.db.get(PARAMS_KEY, root)))
            prices = Prices.decode(_need(d.db.get(PRICES_KEY, root)))
            g = Global.decode(_need(d.db.get(GLOBAL_KEY, root)))
            return _account_json(i, acct, params, prices, g.l2_time, record)

        return await self.derivation.run(read)

    async def get_markets(self, batch: int | str | None = None) -> dict[str, Any]:
        """The risk/fee configuration, the markets and their prices at a batch (default the head)."""
        self._check_batch_param(batch)

        def read(d: Derivation) -> dict[str, Any]:
            record = self._select(d, batch)
            root = record.computed_root
            params = Params.decode(_need(d.db.get(PARAMS_KEY, root)))
            prices = Prices.decode(_need(d.db.get(PRICES_KEY, root)))
            c = params.config
            markets = []
            for i, (m, p) in enumerate(zip(params.markets, prices.markets, strict=False)):
                markets.append({
                    "market": i, "kind": KIND_NAMES.get(m.kind, str(m.kind)), "underlying": m.underlying,
                    "imBps": m.im_bps, "mmBps": m.mm_bps, "tick": m.tick, "lot": m.lot, "strike": m.strike,
                    "expiry": m.expiry, "mark": p.mark, "fundingIndex": p.funding_index, "iv": p.iv,
                    "settled": p.settled,
                })
            return {
                "batch": record.index,
                "config": {"takerFeeBps": c.taker_fee_bps, "makerRebateBps": c.maker_rebate_bps,
                           "liquidationPenaltyBps": c.liquidation_penalty_bps,
                           "liquidatorBonusBps": c.liquidator_bonus_bps, "syncBufferBps": c.sync_buffer_bps,
                           "fundingCapBps": c.funding_cap_bps, "maxOracleAge": c.max_oracle_age},
                "oracleTime": prices.oracle_time, "fundingTime": prices.funding_time,
                "indexPrices": list(prices.index), "markets": markets,
            }

        return await self.derivation.run(read)

    async def get_order_state(self, order_hash: str, batch: int | str | None = None) -> dict[str, Any]:
        """An order's on-chain fill and cancel state at a batch (absent orders: filled 0, not cancelled)."""
        self._check_batch_param(batch)
        digest = _bytes_param(order_hash, "order_hash", 32)

        def read(d: Derivation) -> dict[str, Any]:
            record = self._select(d, batch)
            raw = d.db.get(order_key(digest), record.computed_root)
            st = OrderState(0, False) if raw is None else OrderState.decode(raw)
            return {"orderHash": order_hash.lower(), "batch": record.index, "filled": st.filled,
                    "cancelled": st.cancelled, "known": raw is not None}

        return await self.derivation.run(read)

    async def get_withdrawal(self, withdrawal_id: int | str, batch: int | str | None = None) -> dict[str, Any]:
        """A withdrawal record (account, recipient, amount) at a batch (default the head)."""
        self._check_batch_param(batch)
        wid = _int_param(withdrawal_id, "withdrawal_id", 0, 1 << 64)

        def read(d: Derivation) -> dict[str, Any]:
            record = self._select(d, batch)
            raw = d.db.get(withdrawal_key(wid), record.computed_root)
            if raw is None:
                raise _not_found(f"withdrawal {wid}", "UNKNOWN_WITHDRAWAL")
            w = Withdrawal.decode(raw)
            return {"withdrawalId": wid, "batch": record.index, "account": w.account,
                    "recipient": _hex(w.recipient), "amount": w.amount}

        return await self.derivation.run(read)

    async def get_proof(self, keys: list[str] | None = None, account: int | str | None = None,
                        order_hash: str | None = None, withdrawal_id: int | str | None = None,
                        batch: int | str | None = None) -> dict[str, Any]:
        """EIP-1186 ``storageProof`` entries of leaves against a batch's computed root (default the head).

        ``keys``: 32-byte keys or ``global``/``params``/``prices``; ``account`` adds the account and
        owner-index leaves; ``order_hash`` the order state; ``withdrawal_id`` the record. At most 64."""
        self._check_batch_param(batch)
        wanted: list[bytes] = []
        for k in keys or []:
            wanted.append(NAMED_KEYS[k] if k in NAMED_KEYS else _bytes_param(k, "key", 32))
        if order_hash is not None:
            wanted.append(order_key(_bytes_param(order_hash, "order_hash", 32)))
        if withdrawal_id is not None:
            wanted.append(withdrawal_key(_int_param(withdrawal_id, "withdrawal_id", 0, 1 << 64)))
        owner, index = (None, None) if account is None else _account_param(account)
        if len(wanted) + (2 if account is not None else 0) > MAX_KEYS:
            raise InvalidParams(f"at most {MAX_KEYS} keys", {"reason": "TOO_MANY_KEYS"})
        if not wanted and account is None:
            raise InvalidParams("name at least one key, account, order or withdrawal", {"reason": "NO_KEYS"})

        def read(d: Derivation) -> dict[str, Any]:
            record = self._select(d, batch)
            root = record.computed_root
            extra: list[bytes] = []
            i: int | None = None
            if account is not None:
                i, acct = _load_account(d, root, account, owner, index)
                extra = [account_key(i), account_index_key(acct.owner)]
            out = get_proof(d.db, [*wanted, *extra], root)
            out.update(batch=record.index, status=STATUS_NAMES[record.l1_status],
                       postedRoot=_hex(record.posted_root))
            if i is not None:
                out["account"] = i
            return out

        return await self.derivation.run(read)

    async def get_withdrawal_proof(self, withdrawal_id: int | str, batch: int | str | None = None) -> dict[str, Any]:
        """Everything ``Bridge.claimWithdrawal(batch, id, account, recipient, amount, proof)`` takes, against
        a final batch (default: the newest final batch, which holds every record written up to it)."""
        self._check_batch_param(batch)
        wid = _int_param(withdrawal_id, "withdrawal_id", 0, 1 << 64)

        def read(d: Derivation) -> dict[str, Any]:
            record = self._select(d, "final" if batch is None else batch)
            key = withdrawal_key(wid)
            raw = d.db.get(key, record.computed_root)
            if record.l1_status != BatchStatus.FINAL:
                raise RpcError(NOT_FINAL, f"batch {record.index} is not final",
                               {"reason": "NOT_FINAL", "batch": record.index})
            if raw is None:
                head = d.head
                later = head is not None and d.db.get(key, head.computed_root) is not None
                if later:
                    raise RpcError(NOT_FINAL, f"withdrawal {wid} is not in a final batch yet",
                                   {"reason": "NOT_FINAL", "batch": record.index})
                raise _not_found(f"withdrawal {wid}", "UNKNOWN_WITHDRAWAL")
            if record.computed_root != record.posted_root:
                raise RpcError(ROOT_MISMATCH, f"batch {record.index}'s posted root is not the node's",
                               {"reason": "ROOT_MISMATCH", "batch": record.index})
            w = Withdrawal.decode(raw)
            nodes = d.db.prove(key, record.computed_root)
            return {
                "batch": record.index, "withdrawalId": wid, "account": w.account,
                "recipient": _hex(w.recipient), "amount": w.amount,
                "proof": _hex(b"".join(nodes)), "nodes": [_hex(n) for n in nodes],
                "root": _hex(record.computed_root), "key": _hex(key),
            }

        return await self.derivation.run(read)


def _need(raw: bytes | None) -> bytes:
    if raw is None:  # pragma: no cover - genesis writes every protocol leaf
        raise RpcError(-32603, "internal error")
    return raw


def _account_json(index: int, acct: Account, params: Params, prices: Prices, now: int,
                  record: BatchRecord) -> dict[str, Any]:
    doc = account_json(index, acct, account_risk(acct, params, prices, now), params.markets)
    doc.update({"batch": record.index, "batchStatus": STATUS_NAMES[record.l1_status], "l2Time": now})
    return doc

