"""The L1 publisher: posts closed batches to ``Rollup.postBatch`` in order and sees them to finality.

Input: any object with ``index`` (0-based, local to this sequencer),
``encoded`` (the batch bytes of docs/stf.md §5.1), ``post_root`` and
``step_count`` (:class:`PostableBatch`), handed over by :meth:`Publisher.submit`
in index order. Local batch ``i`` follows local batch ``i - 1`` on the
rollup's chain; local batch 0 follows ``base_batch`` (the genesis by default).

A batch moves through :class:`BatchState`: ``queued`` → ``sent`` (a
transaction is in the pool) → ``posted`` (in a block, its ``BatchPosted`` log
checked: our parent, our root, our data commitment) → ``confirmed`` (``depth``
blocks on top) → ``final`` (the rollup says FINAL; the publisher calls
``finalize`` itself once the challenge window has passed). ``failed`` halts
publishing until :meth:`Publisher.rewind`: the rollup refused the batch for a
reason retrying cannot cure (a reason code such as ``DEPOSIT_QUEUE_SHORT``),
a dispute removed it, or it landed on the wrong parent.

Each :meth:`Publisher.tick` reconciles with the chain first, then sends:

- receipts of the transactions in flight are read; the inclusion blocks of
  every batch fewer than ``horizon`` blocks deep are re-read (one batched
  request) and a block hash that changed means an L1 reorg took the batch
  out: it goes back to ``sent`` if its transaction is back in the pool, else
  to ``queued`` and is posted again (the later ones follow, in order);
- the newest included batch is read on the rollup: still canonical means all
  of ours below it are (the rollup's chain is a chain);
- before every post the rollup's head must be our parent; when the chain
  already holds our next batches (a restart that lost track of a
  transaction) they are adopted from the chain, never posted twice; any other
  head (another proposer) blocks posting and is reported;
- one ``postBatch`` is in flight at a time: a batch's root is only correct on
  its parent, and ``postBatch`` takes no expected parent.

Transactions: gas from ``eth_estimateGas`` (+ ``gas_margin_percent``), which
also surfaces the contract's refusal code before anything is sent; EIP-1559
fees from the node (:class:`node.l1.FeePolicy`); the proposer bond is topped
up in the same call (``value`` = bond − free bond); a transaction still
pending after ``bump_after_blocks`` blocks is replaced at the same nonce with
fees raised ``bump_percent`` %, and re-broadcast if the pool lost it.

Persistence: a small JSON file (atomically replaced) with, per unfinished
batch, its digest, root, state, the nonce and every hash sent for it, and
where it was included; final batches are folded into an anchor (the last
final batch's id and queue ends). It is written before every broadcast. The
batch bytes are not persisted: after a restart the sequencer core submits its
unfinished batches again (:meth:`Publisher.missing`). See docs/l1-runtime.md.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from node.l1 import Fees, L1Client, SendError, bindings, error_code
from node.l1_watch import write_atomic
from state.keccak import keccak256

log = logging.getLogger(__name__)

STATE_VERSION = 1

BATCH_STATUS = keccak256(b"batchStatus(uint256)")[:4]

RETRYABLE = frozenset({"TIMESTAMP_IN_FUTURE", "NO_FREE_BOND"})
"""Refusals that can pass later (L1 time catches up; the bond is topped up again)."""


class PostableBatch(Protocol):
    """A batch the sequencer core closed: what the publisher needs of it
    (:class:`sequencer.open_batch.ClosedBatch` has these attributes)."""

    @property
    def index(self) -> int:
        """0-based, local to this sequencer; consecutive."""
        ...

    @property
    def encoded(self) -> bytes:
        """The batch bytes (docs/stf.md §5.1)."""
        ...

    @property
    def post_root(self) -> bytes:
        """The state root after its last step."""
        ...

    @property
    def step_count(self) -> int:
        """Its number of steps."""
        ...


class BatchState(StrEnum):
    """Where one batch stands."""

    QUEUED = "queued"
    SENT = "sent"
    POSTED = "posted"
    CONFIRMED = "confirmed"
    FINAL = "final"
    FAILED = "failed"


INCLUDED = frozenset({BatchState.POSTED, BatchState.CONFIRMED, BatchState.FINAL})


@dataclass
class SentTx:
    """One nonce's transaction(s): the original and its fee-bumped replacements."""

    nonce: int
    hashes: list[str]
    """Every hash sent at this nonce, oldest first (any one of them may be mined)."""
    max_fee: int
    tip: int
    gas: int
    value: int
    sent_block: int
    """Head when last (re)sent: the clock of the bump policy."""

    @property
    def fees(self) -> Fees:
        """Its current fees."""
        return Fees(self.max_fee, self.tip)


@dataclass
class Inclusion:
    """Where a batch sits on L1 (from its receipt and ``BatchPosted`` log)."""

    tx_hash: str
    block: int
    block_hash: str
    batch_id: int
    """The rollup's index of the batch."""
    parent: int
    deadline: int
    """End of the challenge window (L1 time)."""
    deposit_end: int
    forced_end: int
    gas_used: int
    gas_price: int
    """Effective gas price paid (wei)."""


@dataclass
class BatchRecord:
    """The publisher's record of one local batch."""

    index: int
    digest: str
    """keccak256 of the batch bytes (hex): the identity a re-submission must match."""
    post_root: str
    step_count: int
    state: BatchState = BatchState.QUEUED
    tx: SentTx | None = None
    inclusion: Inclusion | None = None
    finalize_tx: SentTx | None = None
    posts: int = 0
    """postBatch transactions built for it (1 normally; one more per re-post after a reorg)."""
    reorgs: int = 0
    """Times an L1 reorg took it out of the chain."""
    confirmations: int = 0
    error: str = ""

    @property
    def batch_id(self) -> int | None:
        """The rollup's index, once included."""
        return self.inclusion.batch_id if self.inclusion else None

    def to_json(self) -> dict[str, Any]:
        """A JSON object."""
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> BatchRecord:
        """Inverse of :meth:`to_json`."""
        raw = dict(raw)
        raw["state"] = BatchState(raw["state"])
        for key, cls in (("tx", SentTx), ("finalize_tx", SentTx), ("inclusion", Inclusion)):
            if raw.get(key) is not None:
                raw[key] = cls(**raw[key])
        return BatchRecord(**raw)


@dataclass
class Anchor:
    """The batch local batch ``index + 1`` follows: the last final one (or ``base_batch``)."""

    index: int
    batch_id: int
    deposit_end: int
    forced_end: int


@dataclass(frozen=True)
class PublisherConfig:
    """Policies of a :class:`Publisher`."""

    depth: int | None = None
    """Confirmation depth (default: the L1 client's)."""
    horizon: int = 64
    """Receipts are re-checked for reorgs until a batch is this many blocks deep."""
    gas_margin_percent: int = 25
    bump_after_blocks: int = 3
    """A transaction pending this many blocks is replaced with higher fees."""
    lost_after_blocks: int = 6
    """Our nonce was used but none of our hashes has a receipt for this long: the batch is re-posted."""
    auto_finalize: bool = True
    finalize_gas: int = 100_000
    """Gas limit of a ``finalize`` (56,000–63,000 measured on anvil, cold storage)."""
    max_finalize_per_tick: int = 8
    max_posts_per_tick: int = 8
    max_adopt: int = 1_000
    """At most this many of our batches are looked up on the chain when adopting."""


@dataclass(frozen=True)
class PublisherStatus:
    """A snapshot for monitoring and RPC."""

    head: int
    halted: str | None
    """Why publishing stopped for good (until :meth:`Publisher.rewind`), if it did."""
    blocked: str | None
    """Why nothing could be posted in the last tick although batches wait (clears itself)."""
    anchor: Anchor
    batches: tuple[BatchRecord, ...]

    def state_of(self, index: int) -> BatchState | None:
        """The state of local batch ``index`` (FINAL when folded into the anchor)."""
        for r in self.batches:
            if r.index == index:
                return r.state
        return BatchState.FINAL if index <= self.anchor.index else None


class Publisher:
    """Posts batches to the rollup for ``account`` (an eth-account ``LocalAccount``).

    ``state_path`` (optional) is the JSON file of :meth:`save`; an existing
    file is loaded and must belong to the same chain, rollup and proposer.
    ``base_batch`` is the rollup batch local batch 0 follows (read when there
    is no state file); ``start_block`` (the rollup's deployment block) bounds
    log scans when batches are looked up on the chain."""

    def __init__(
        self,
        l1: L1Client,
        rollup: str,
        account: Any,
        *,
        state_path: str | os.PathLike[str] | None = None,
        base_batch: int = 0,
        start_block: int = 0,
        config: PublisherConfig = PublisherConfig(),
    ) -> None:
        self.l1 = l1
        self.account = account
        self.address = str(account.address)
        self.config = config
        self.depth = l1.depth if config.depth is None else config.depth
        self.rollup: Any = bindings.RollupClient(l1.w3, rollup)
        self._event: Any = self.rollup.contract.events.BatchPosted()
        self._topic = bytes.fromhex(str(self._event.topic).removeprefix("0x"))
        self.state_path = Path(state_path) if state_path is not None else None
        self.records: list[BatchRecord] = []
        self.halted: str | None = None
        self.blocked: str | None = None
        self._bytes: dict[int, bytes] = {}
        self._lock = threading.RLock()
        self._head = 0
        self._bond: int | None = None
        self._anchor_is_final = False
        self.start_block = start_block
        loaded = self._load()
        if not loaded:
            info = self.rollup.batch(base_batch)
            self.anchor = Anchor(-1, base_batch, int(info.deposit_end), int(info.forced_end))

    # -------------------------------------------------------- persistence

    def _identity(self) -> dict[str, Any]:
        return {"chain_id": self.l1.chain_id, "rollup": self.rollup.address, "proposer": self.address}

    def _load(self) -> bool:
        if self.state_path is None or not self.state_path.exists():
            return False
        raw = json.loads(self.state_path.read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path}: unknown state version {raw.get('version')}")
        for key, value in self._identity().items():
            if raw[key] != value:
                raise ValueError(f"{self.state_path}: {key} is {raw[key]}, this publisher's is {value}")
        self.anchor = Anchor(**raw["anchor"])
        self.records = [BatchRecord.from_json(r) for r in raw["records"]]
        self.halted = raw.get("halted")
        return True

    def save(self) -> None:
        """Write the state file (no-op without ``state_path``)."""
        if self.state_path is None:
            return
        doc = {
            "version": STATE_VERSION, **self._identity(), "anchor": asdict(self.anchor),
            "halted": self.halted, "records": [r.to_json() for r in self.records],
        }
        write_atomic(self.state_path, json.dumps(doc, indent=1, sort_keys=True))

    # -------------------------------------------------------- input

    def submit(self, batch: PostableBatch) -> None:
        """Hand over a closed batch (in index order; re-submitting a known one restores its bytes).

        Raises ValueError for a gap, a batch the rollup cannot parse, or
        bytes that differ from those already recorded under the index."""
        with self._lock:
            digest = keccak256(batch.encoded).hex()
            if batch.index <= self.anchor.index:
                return  # final already
            nxt = self.anchor.index + 1 + len(self.records)
            if batch.index < nxt:
                rec = self._record(batch.index)
                if rec.digest != digest:
                    raise ValueError(f"batch {batch.index} differs from the one being published")
                self._bytes[batch.index] = batch.encoded
                return
            if batch.index > nxt:
                raise ValueError(f"batch {batch.index} submitted before batch {nxt}")
            try:
                parsed = bindings.parse_batch(batch.encoded)
            except ValueError as exc:
                raise ValueError(f"batch {batch.index}: {exc}") from exc
            if len(parsed.steps) != batch.step_count:
                raise ValueError(f"batch {batch.index}: {len(parsed.steps)} steps, step_count {batch.step_count}")
            if len(batch.post_root) != 32 or not any(batch.post_root):
                raise ValueError(f"batch {batch.index}: bad post root")
            self.records.append(BatchRecord(batch.index, digest, batch.post_root.hex(), batch.step_count))
            self._bytes[batch.index] = batch.encoded

    def rewind(self, index: int) -> None:
        """Forget local batches ``index`` and later, none of which is on L1 or in flight, and clear a halt.

        For the sequencer core after a refusal: it rebuilds those batches and
        submits them again (new bytes under the same indices)."""
        with self._lock:
            start = index - self.anchor.index - 1
            if start < 0:
                raise ValueError(f"batch {index} is final")
            dropped = self.records[start:]
            busy = [r.index for r in dropped if r.state not in (BatchState.QUEUED, BatchState.FAILED)]
            if busy:
                raise ValueError(f"batches {busy} are on L1 or in flight")
            del self.records[start:]
            for r in dropped:
                self._bytes.pop(r.index, None)
            if not any(r.state == BatchState.FAILED for r in self.records):
                self.halted = None
            self.save()

    def missing(self) -> list[int]:
        """Unfinished batches whose bytes this process does not hold (submit them again)."""
        return [r.index for r in self.records if r.state != BatchState.FINAL and r.index not in self._bytes]

    def _record(self, index: int) -> BatchRecord:
        return self.records[index - self.anchor.index - 1]

    # -------------------------------------------------------- status

    def status(self) -> PublisherStatus:
        """A copy of every record plus the anchor and head."""
        with self._lock:
            return PublisherStatus(
                self._head, self.halted, self.blocked, copy.copy(self.anchor),
                tuple(copy.deepcopy(r) for r in self.records),
            )

    def state_of(self, index: int) -> BatchState | None:
        """The state of local batch ``index``."""
        return self.status().state_of(index)

    # -------------------------------------------------------- the loop

    def run(self, stop: Callable[[], bool], interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds until ``stop()``; transient L1 errors are logged and retried."""
        while not stop():
            try:
                self.tick()
            except Exception:
                log.exception("publisher tick failed; retrying")
            time.sleep(interval)

    def tick(self) -> PublisherStatus:
        """Reconcile with L1, finalize what can be, post what is next; returns the status."""
        with self._lock:
            latest = self.l1.block("latest")
            self._head = head = int(latest["number"])
            now = int(latest["timestamp"])
            self.blocked = None
            self._check_sent(head)
            self._check_included(head)
            self._check_canonical()
            self._finality(head, now)
            for _ in range(self.config.max_posts_per_tick):
                if self.halted or not self._post_next(head):
                    break
                self._check_sent(head)  # automining nodes include it at once
            self._compact()
            self.save()
        return self.status()

    # -------------------------------------------------------- reconciliation

    def _check_sent(self, head: int) -> None:
        for r in self.records:
            if r.state != BatchState.SENT or r.tx is None:
                continue
            outcome, receipt = self._follow(r.tx, head, functools.partial(self._post_fields, r))
            if outcome == "mined":
                if int(receipt["status"]) == 1:
                    self._on_included(r, receipt, head)
                else:
                    self._on_reverted(r, receipt)
            elif outcome == "dropped":
                self._requeue(r, "its transaction was dropped")

    def _follow(self, tx: SentTx, head: int, fields: Callable[[], dict[str, Any] | None]) -> tuple[str, Any]:
        """("mined", receipt) | ("pending", None) | ("dropped", None); bumps or re-broadcasts a stuck one."""
        for h in reversed(tx.hashes):
            receipt = self.l1.receipt(bytes.fromhex(h))
            if receipt is not None:
                return "mined", receipt
        if self.l1.nonce(self.address, "latest") > tx.nonce:
            # the nonce is used but no hash of ours shows a receipt (yet)
            if head - tx.sent_block >= self.config.lost_after_blocks:
                return "dropped", None
            return "pending", None
        known = any(self.l1.transaction(bytes.fromhex(h)) is not None for h in tx.hashes)
        stuck = head - tx.sent_block >= self.config.bump_after_blocks
        if known and not stuck:
            return "pending", None
        f = fields()
        if f is None:
            return "pending", None  # bytes unknown in this process: wait for a re-submission
        fees = tx.fees
        if stuck:
            policy = self.l1.fee_policy
            fees = policy.cap(fees.bumped(policy.bump_percent).at_least(self.l1.suggest_fees()))
            if fees == tx.fees and known:
                return "pending", None  # at the fee cap: keep waiting
        self._broadcast(tx, f, fees, head)
        return "pending", None

    def _check_included(self, head: int, *, full: bool = False) -> None:
        """Re-check where included batches sit: every inclusion block fewer than ``horizon`` deep
        (all with ``full``) must still be canonical; one batched request for all of them."""
        live = [
            (r, r.inclusion) for r in self.records
            if r.state in (BatchState.POSTED, BatchState.CONFIRMED) and r.inclusion is not None
        ]
        recent = {r.index for r, inc in live if full or head - inc.block + 1 <= self.config.horizon}
        canon = self.l1.block_hashes(inc.block for r, inc in live if r.index in recent)
        for r, inc in live:
            h = canon.get(inc.block)
            if r.index not in recent or (h is not None and h.hex() == inc.block_hash):
                self._set_depth(r, inc, head)
                continue
            # its block left the chain: where is the transaction now?
            r.reorgs += 1
            r.inclusion = None
            r.confirmations = 0
            log.warning("batch %d (rollup %d) left the L1 chain (reorg)", r.index, inc.batch_id)
            tx_hash = bytes.fromhex(inc.tx_hash)
            receipt = self.l1.receipt(tx_hash)
            if receipt is not None and self.l1.block_hash(int(receipt["blockNumber"])) == bytes(receipt["blockHash"]):
                if int(receipt["status"]) == 1:  # re-mined in another block
                    self._on_included(r, receipt, head)
                else:
                    self._on_reverted(r, receipt)
            elif self.l1.transaction(tx_hash) is not None and r.tx is not None:
                r.state = BatchState.SENT  # back in the pool: it may be mined again
                r.tx.sent_block = head
            else:
                self._requeue(r, "")

    def _set_depth(self, r: BatchRecord, inc: Inclusion, head: int) -> None:
        r.confirmations = self.l1.confirmations(inc.block, head)
        if r.state != BatchState.FINAL:
            r.state = BatchState.CONFIRMED if head - inc.block >= self.depth else BatchState.POSTED

    def _check_canonical(self) -> None:
        """The newest included batch still canonical ⇒ every earlier one of ours is."""
        included = [(r, r.inclusion) for r in self.records if r.inclusion is not None and r.state in INCLUDED]
        if not included:
            return
        try:
            status = self._batch_status(included[-1][1].batch_id)
        except Exception as exc:
            if error_code(exc) != "NO_BATCH":
                raise
            # the rollup no longer has it: an L1 reorg deeper than the horizon
            self._check_included(self._head, full=True)
            return
        if status != bindings.BatchStatus.REMOVED:
            return
        for r, inc in reversed(included):
            if self._batch_status(inc.batch_id) != bindings.BatchStatus.REMOVED:
                break
            r.state, r.error = BatchState.FAILED, "REMOVED"
        self._halt("a batch of ours was removed from the rollup (a lost dispute)")

    def _batch_status(self, batch_id: int) -> int:
        """``Rollup.batchStatus`` (PENDING, FINAL, or REMOVED when off the canonical chain)."""
        raw = self.l1.call({"to": self.rollup.address, "data": BATCH_STATUS + batch_id.to_bytes(32, "big")})
        return int.from_bytes(raw[:32], "big")

    def _parent(self, r: BatchRecord) -> Anchor | None:
        """What ``r`` follows: the previous record's inclusion, or the anchor; None if not on chain."""
        i = r.index - self.anchor.index - 1
        if i == 0:
            return self.anchor
        prev = self.records[i - 1]
        inc = prev.inclusion
        if inc is None or prev.state not in INCLUDED:
            return None
        return Anchor(prev.index, inc.batch_id, inc.deposit_end, inc.forced_end)

    def _expected_data_hash(self, r: BatchRecord, parent: Anchor) -> bytes | None:
        data = self._bytes.get(r.index)
        if data is None:
            return None
        parsed = bindings.parse_batch(data)
        return bytes(bindings.BatchData.of(parsed, parent.deposit_end, parent.forced_end).data_hash())

    def _on_included(self, r: BatchRecord, receipt: Any, head: int) -> None:
        ev = self._batch_posted(receipt)
        if ev is None:
            self._fail(r, "NO_EVENT", "included without a BatchPosted log")
            return
        self._adopt(r, ev, receipt, head)

    def _adopt(self, r: BatchRecord, ev: Any, receipt: Any, head: int) -> None:
        """Record ``ev`` (a decoded BatchPosted) as ``r``'s inclusion after checking it is ours."""
        a = ev["args"]
        parent = self._parent(r)
        data = bindings.BatchData.from_abi(a["data"])
        want = self._expected_data_hash(r, parent) if parent else None
        if parent is None or int(a["parent"]) != parent.batch_id:
            self._fail(r, "WRONG_PARENT", f"posted on rollup batch {a['parent']}, not on our previous batch")
            return
        if bytes(a["post_root"]).hex() != r.post_root or (want is not None and bytes(a["data_hash"]) != want):
            self._fail(r, "MISMATCH", f"rollup batch {a['index']} is not our batch {r.index}")
            return
        r.inclusion = inc = Inclusion(
            tx_hash=bytes(receipt["transactionHash"]).hex(), block=int(receipt["blockNumber"]),
            block_hash=bytes(receipt["blockHash"]).hex(), batch_id=int(a["index"]),
            parent=int(a["parent"]), deadline=int(a["deadline"]), deposit_end=int(data.deposit_end),
            forced_end=int(data.forced_end), gas_used=int(receipt["gasUsed"]),
            gas_price=int(receipt.get("effectiveGasPrice", 0) or 0),
        )
        if r.tx is None or inc.tx_hash not in r.tx.hashes:
            r.tx = self._tx_from_chain(bytes(receipt["transactionHash"]), head) or r.tx
        r.state, r.error = BatchState.POSTED, ""
        self._set_depth(r, inc, head)
        log.info("batch %d posted as rollup batch %d (block %d)", r.index, inc.batch_id, inc.block)

    def _tx_from_chain(self, tx_hash: bytes, head: int) -> SentTx | None:
        """A record of a transaction found on the chain (adopted), so a reorg can find it in the pool."""
        tx = self.l1.transaction(tx_hash)
        if tx is None:
            return None
        return SentTx(
            int(tx["nonce"]), [tx_hash.hex()], int(tx.get("maxFeePerGas", 0) or 0),
            int(tx.get("maxPriorityFeePerGas", 0) or 0), int(tx["gas"]), int(tx["value"]), head,
        )

    def _batch_posted(self, receipt: Any) -> Any:
        for lg in receipt["logs"]:
            topics = lg["topics"]
            if (
                lg["address"].lower() == self.rollup.address.lower()
                and topics and bytes(topics[0]) == self._topic
            ):
                return self._event.process_log(lg)
        return None

    def _on_reverted(self, r: BatchRecord, receipt: Any) -> None:
        code = "REVERTED"
        f = self._post_fields(r)
        if f is not None:
            try:
                self.l1.call({**f, "from": self.address}, int(receipt["blockNumber"]) - 1)
            except Exception as exc:  # any failure leaves the generic code
                code = error_code(exc) or code
        if code in RETRYABLE:
            self._requeue(r, code)
        else:
            self._fail(r, code, "postBatch reverted")

    def _requeue(self, r: BatchRecord, why: str) -> None:
        r.state, r.tx, r.inclusion, r.confirmations, r.error = BatchState.QUEUED, None, None, 0, why

    def _fail(self, r: BatchRecord, code: str, message: str) -> None:
        r.state, r.error = BatchState.FAILED, code
        self._halt(f"batch {r.index}: {code}: {message}")

    def _halt(self, why: str) -> None:
        if self.halted is None:
            log.error("publisher halted: %s", why)
            self.halted = why

    # -------------------------------------------------------- posting

    def _post_fields(self, r: BatchRecord) -> dict[str, Any] | None:
        data = self._bytes.get(r.index)
        if data is None:
            return None
        calldata = self.rollup.contract.encode_abi(
            "postBatch", args=[data, bytes.fromhex(r.post_root), r.step_count]
        )
        value = r.tx.value if r.tx is not None else 0
        return {"to": self.rollup.address, "data": calldata, "value": value}

    def _post_next(self, head: int) -> bool:
        """Send the next queued batch (or adopt it from the chain); False when there is nothing to do."""
        if any(r.state == BatchState.SENT for r in self.records):
            return False
        r = next((r for r in self.records if r.state == BatchState.QUEUED), None)
        if r is None or r.index not in self._bytes:
            return False
        parent = self._parent(r)
        if parent is None:
            return False
        chain_head = self.rollup.head()
        if chain_head != parent.batch_id:
            return self._adopt_from_chain(r, parent, chain_head, head)
        bond = self._proposer_bond()
        value = max(bond - self.rollup.free_bond(self.address), 0)
        f = self._post_fields(r)
        if f is None:
            return False
        f["value"] = value
        try:
            gas = self.l1.estimate_gas({**f, "from": self.address})
        except Exception as exc:
            code = error_code(exc)
            if not code:
                raise
            if code in RETRYABLE:
                r.error = code
                return False
            self._fail(r, code, "postBatch would revert")
            return False
        gas = gas * (100 + self.config.gas_margin_percent) // 100
        fees = self.l1.suggest_fees()
        r.tx = SentTx(self.l1.nonce(self.address, "pending"), [], fees.max_fee_per_gas,
                      fees.max_priority_fee_per_gas, gas, value, head)
        r.state, r.error = BatchState.SENT, ""
        r.posts += 1
        self._broadcast(r.tx, f, fees, head)
        return True

    def _proposer_bond(self) -> int:
        if self._bond is None:
            self._bond = int(self.rollup.constant("PROPOSER_BOND"))
        return self._bond

    def _broadcast(self, tx: SentTx, fields: dict[str, Any], fees: Fees, head: int) -> None:
        """Sign ``fields`` at ``tx.nonce`` with ``fees``; persist the hash, then send."""
        full = {
            **fields, "value": tx.value, "gas": tx.gas, "nonce": tx.nonce,
            "chainId": self.l1.chain_id, "type": 2, **fees.as_tx(),
        }
        signed = self.account.sign_transaction(full)
        h = bytes(signed.hash).hex()
        tx.max_fee, tx.tip, tx.sent_block = fees.max_fee_per_gas, fees.max_priority_fee_per_gas, head
        if h not in tx.hashes:
            tx.hashes.append(h)
        self.save()  # before the broadcast: a crash after it must know the hash
        try:
            self.l1.send_raw(bytes(signed.raw_transaction), bytes(signed.hash))
        except SendError as exc:
            log.warning("send at nonce %d refused: %s", tx.nonce, exc)
            if exc.kind == SendError.FUNDS:
                self._halt(f"the proposer cannot pay for its transactions: {exc}")

    def _adopt_from_chain(self, r: BatchRecord, parent: Anchor, chain_head: int, head: int) -> bool:
        """The rollup's head is not our parent: adopt our batches already on it, else report and wait."""
        segment: list[Any] = []
        at = chain_head
        while at != parent.batch_id and len(segment) <= self.config.max_adopt:
            info = self.rollup.batch(at)
            if at == 0 or info.status == bindings.BatchStatus.REMOVED:
                break
            segment.append(info)
            at = int(info.parent)
        if at != parent.batch_id or not segment:
            # never post on a foreign head; wait (a reorg may undo it) and report
            self.blocked = f"the rollup's head {chain_head} does not descend from our batch {parent.batch_id}"
            return False
        segment.reverse()
        start = self.records.index(r)
        adopted = 0
        for info, rec in zip(segment, self.records[start:], strict=False):
            if rec.state != BatchState.QUEUED or rec.index not in self._bytes:
                break
            p = self._parent(rec)
            if p is None or bytes(info.post_root).hex() != rec.post_root or bytes(info.data_hash) != self._expected_data_hash(rec, p):
                break
            ev = self._posted_event(info.index)
            if ev is None:
                break
            receipt = self.l1.receipt(bytes(ev["transactionHash"]))
            if receipt is None:
                break
            self._adopt(rec, ev, receipt, head)
            adopted += 1
        if adopted < len(segment):
            self.blocked = f"rollup batches after {parent.batch_id} are not ours (another proposer?)"
        return adopted > 0

    def _posted_event(self, batch_id: int) -> Any:
        topic_index = batch_id.to_bytes(32, "big")
        start = self._scan_from()
        logs = self.l1.get_logs(self.rollup.address, [self._topic, topic_index], start, self._head)
        return self._event.process_log(logs[-1]) if logs else None

    def _scan_from(self) -> int:
        blocks = [r.inclusion.block for r in self.records if r.inclusion is not None]
        return max(blocks + [self.start_block])

    # -------------------------------------------------------- finality

    def _finality(self, head: int, now: int) -> None:
        sent = 0
        # the parent is final, or its finalize is in flight (ours: it executes first, by nonce)
        parent_ready = self._anchor_final()
        for r in self.records:
            if r.state == BatchState.FINAL:
                parent_ready = True
                continue
            inc = r.inclusion
            if r.state != BatchState.CONFIRMED or inc is None or now < inc.deadline:
                return
            if self._batch_status(inc.batch_id) == bindings.BatchStatus.FINAL:
                r.state, r.finalize_tx = BatchState.FINAL, None
                parent_ready = True
                continue
            if not self.config.auto_finalize:
                return
            if r.finalize_tx is not None:
                outcome, receipt = self._follow(
                    r.finalize_tx, head, functools.partial(self._finalize_fields, inc.batch_id)
                )
                if outcome == "pending" or (outcome == "mined" and int(receipt["status"]) == 1):
                    parent_ready = True
                    continue
                r.finalize_tx = None  # reverted or dropped: try again
            if not parent_ready or sent >= self.config.max_finalize_per_tick:
                return
            if int(self.rollup.batch(inc.batch_id).open_games) > 0:
                return  # a dispute is open: finality waits for its outcome
            fees = self.l1.suggest_fees()
            r.finalize_tx = SentTx(self.l1.nonce(self.address, "pending"), [], fees.max_fee_per_gas,
                                   fees.max_priority_fee_per_gas, self.config.finalize_gas, 0, head)
            self._broadcast(r.finalize_tx, self._finalize_fields(inc.batch_id), fees, head)
            sent += 1

    def _anchor_final(self) -> bool:
        if not self._anchor_is_final:
            status = self.rollup.batch(self.anchor.batch_id).status
            self._anchor_is_final = status == bindings.BatchStatus.FINAL
        return self._anchor_is_final

    def _finalize_fields(self, batch_id: int) -> dict[str, Any]:
        data = self.rollup.contract.encode_abi("finalize", args=[batch_id])
        return {"to": self.rollup.address, "data": data, "value": 0}

    def _compact(self) -> None:
        """Fold leading FINAL records into the anchor (the state file stays small)."""
        while self.records and self.records[0].state == BatchState.FINAL:
            r = self.records.pop(0)
            inc = r.inclusion
            if inc is not None:  # a FINAL record always has one
                self.anchor = Anchor(r.index, inc.batch_id, inc.deposit_end, inc.forced_end)
                self._anchor_is_final = True
            self._bytes.pop(r.index, None)


__all__ = [
    "Anchor", "BatchRecord", "BatchState", "Inclusion", "PostableBatch", "Publisher",
    "PublisherConfig", "PublisherStatus", "SentTx",
]
