"""The L1 → L2 derivation core: posted batches in, the node's state and records out (docs/node.md).

:class:`Derivation` does no L1 I/O. It is handed, in L1 order, what the
follower (:mod:`node.follower`) read: each posted batch
(:class:`~node.batches.PostedBatch`: the ``BatchPosted`` fields and the bytes
of its transaction) with an :class:`~state.context.L1Queues` that holds the
bridge items of the batch's ranges, each removal (``BatchRemoved``) and each
finalisation (``BatchFinalized``). It

- applies every batch to the on-disk :class:`~state.db.StateDB` (LMDB) on top
  of its parent's *computed* root, with the batch's queues bounded by its own
  ``deposit_end`` / ``forced_end`` (docs/stf.md §3), and records the computed
  root next to the posted one (:class:`~node.batches.Verdict`);
- on a removal, marks the batch and every later one removed and moves the
  state's root pointer back to the parent's computed root (nodes are never
  deleted, so nothing is recomputed);
- keeps its records, the queue items each batch consumed and the follower's
  progress in one SQLite file (:mod:`node.derive_store`), so that a restart
  resumes where it stopped and a batch's replay context (the challenger's
  witnesses) is rebuilt from local data alone.

The records are the source of truth; the state's root pointer follows them.
Each step commits the trie first and the records second — one input at a
time, or many together inside :meth:`Derivation.grouped` (a node catching up:
a durable commit every few dozen batches instead of two fsyncs per batch) —
and :meth:`open` moves the pointer back to the head record's root, so a crash
between the two is repaired by applying the same events again. Order signers
are recovered before a batch's steps run, in a child process
(:class:`node.sigpool.RecoveryProcess`), the next batches' while the current one
runs (:meth:`Derivation.prefetch`). Every input is idempotent: a
batch already recorded with the same transaction, a removal already applied,
a finalisation already known change nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from l1_contracts.bindings import BatchData, BatchStatus
from node.batches import BatchRecord, PostedBatch, Verdict
from node.derive_store import RecordStore
from node.l1 import bindings
from node.queues import BoundedQueues
from node.sigpool import RecoveryProcess
from node.state_handle import has_root, open_state, reset_root
from proofs.witness import StepWitness, build_step_witness
from state.batch import Batch
from state.context import (
    BatchContext,
    ChainConfig,
    L1Deposit,
    L1Forced,
    L1Queues,
    OrderTable,
    SignatureJob,
)
from state.db import StateDB, TrieSource
from state.eip712 import recover_signer
from state.errors import Code
from state.nodestore import OverlayStore
from state.transition import apply_step
from state.trie import TrieDB
from state.view import StateView

GENESIS = 0
CHECKPOINTS_KEPT = 512
GROUP_BATCHES = 64
"""Inside :meth:`Derivation.grouped`, the most batches applied between two durable commits."""
GROUP_SECONDS = 2.0
"""Inside :meth:`Derivation.grouped`, the longest time between two durable commits."""


class DerivationError(RuntimeError):
    """L1 data that does not fit the records (a gap in the events, a conflicting batch)."""


class QueueItemMissing(DerivationError):
    """A bridge item a batch consumes could not be read: the batch cannot be derived yet."""


class BatchUnavailable(LookupError):
    """The bytes of a batch are not stored (it is final, or was never obtained)."""


class SignerRecovery(Protocol):
    """Recovers order signers ahead of a batch (:class:`node.sigpool.SignaturePool`)."""

    def submit(self, jobs: list[SignatureJob]) -> _Recovered: ...


class _Recovered(Protocol):
    def result(self) -> list[bytes | None]: ...


def _recover_pairs(pairs: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
    return [recover_signer(digest, signature) for digest, signature in pairs]


class _ThreadRecovered:
    """Signers of a list of jobs, recovered in chunks by a thread pool."""

    def __init__(self, parts: list[Future[list[bytes | None]]]) -> None:
        self._parts = parts

    def result(self) -> list[bytes | None]:
        """Block until every chunk is done; the signers in job order."""
        out: list[bytes | None] = []
        for part in self._parts:
            out.extend(part.result())
        return out


class ThreadRecovery:
    """Recovers a batch's order signers in a pool of threads (libsecp256k1 runs without the GIL).

    ``workers`` threads (default: one per core); with fewer than two jobs per
    worker, or one worker, the jobs are recovered in the calling thread. The
    recovered addresses are the same whatever the split."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers if workers is not None else os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, jobs: list[SignatureJob]) -> _ThreadRecovered:
        """Start recovering ``jobs``; ``result()`` gives their signers in order."""
        pairs = [(job.digest, job.signature) for job in jobs]
        if self.workers == 1 or len(pairs) < 2 * self.workers:
            done: Future[list[bytes | None]] = Future()
            done.set_result(_recover_pairs(pairs))
            return _ThreadRecovered([done])
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="hfx-recover")
            pool = self._pool
        size = -(-len(pairs) // self.workers)
        return _ThreadRecovered([pool.submit(_recover_pairs, pairs[i : i + size]) for i in range(0, len(pairs), size)])

    def close(self) -> None:
        """Stop the threads (a later :meth:`submit` starts them again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


_SHARED_RECOVERY = RecoveryProcess()
"""The recovery of every derivation opened without one (its process starts on first use).

Threads lose here: each recovery hands the GIL back and forth with the
deriving thread (docs/node.md §5)."""


@dataclass(frozen=True)
class _Prefetched:
    """A batch handed ahead (:meth:`Derivation.prefetch`): its bytes decoded, its signers being recovered."""

    raw: bytes
    batch: Batch
    orders: OrderTable
    jobs: list[SignatureJob]
    recovered: _Recovered
    accounts: int
    """The account count when the jobs were made (a later account's orders were not among them)."""


@dataclass
class _Group:
    """An open :meth:`Derivation.grouped` block: when its pending work was last made durable."""

    max_batches: int
    max_seconds: float
    pending: int = 0
    since: float = 0.0


class ItemQueues:
    """Queue items held in dicts, falling back to ``source`` for indices not held."""

    def __init__(
        self, deposits: Mapping[int, L1Deposit], forced: Mapping[int, L1Forced], source: L1Queues | None = None
    ) -> None:
        self.deposits = deposits
        self.forced_items = forced
        self.source = source

    def deposit(self, index: int) -> L1Deposit | None:
        """The deposit at ``index``."""
        hit = self.deposits.get(index)
        if hit is None and self.source is not None:
            return self.source.deposit(index)
        return hit

    def forced(self, index: int) -> L1Forced | None:
        """The forced transaction at ``index``."""
        hit = self.forced_items.get(index)
        if hit is None and self.source is not None:
            return self.source.forced(index)
        return hit


def commitment_of(raw: bytes, deposit_start: int, forced_start: int) -> BatchData:
    """The data commitment the rollup computes for ``raw`` (raises ``ValueError`` when it would refuse it)."""
    parsed = bindings.parse_batch(raw)
    return BatchData.of(parsed, deposit_start, forced_start)


def decode_posted(posted: PostedBatch, decoded: Batch | None = None) -> tuple[Batch | None, str]:
    """The batch carried by ``posted``, or None with the reason it is unusable.

    The bytes must decode and give exactly the posted commitment: on L1 both
    always hold (``postBatch`` parses its own calldata), so a failure means
    the bytes read are not the ones L1 parsed. ``decoded`` is
    ``Batch.decode(posted.raw)`` when the caller has it already."""
    if posted.raw is None:
        return None, "batch bytes unavailable"
    try:
        batch = Batch.decode(posted.raw) if decoded is None else decoded
        parsed = bindings.parsed_of(batch, len(posted.raw))
        data = BatchData.of(parsed, posted.data.deposit_start, posted.data.forced_start)
    except ValueError as exc:
        return None, f"undecodable batch: {exc}"
    if data != posted.data:
        return None, "batch bytes do not match the posted commitment"
    return batch, ""


class Derivation:
    """The node's derived L2: a :class:`StateDB` plus a record per posted batch.

    Not thread-safe; one instance per state directory."""

    def __init__(
        self,
        db: StateDB,
        store: RecordStore,
        chain: ChainConfig,
        *,
        recovery: SignerRecovery | None = None,
    ) -> None:
        self._base = db
        self._overlay = OverlayStore(db.trie.store)
        self._db = StateDB(TrieDB(self._overlay, db.root, close_store=False))
        self.store = store
        self.chain = chain
        self.recovery: SignerRecovery = _SHARED_RECOVERY if recovery is None else recovery
        self._contexts: OrderedDict[int, tuple[Batch, BatchContext]] = OrderedDict()
        self._prefetched: OrderedDict[tuple[int, bytes], _Prefetched] = OrderedDict()
        self._group: _Group | None = None
        head = self.head
        if head is None:
            raise DerivationError("no genesis record")
        if self._db.root != head.computed_root:
            self._db = reset_root(self._db, head.computed_root)
            self._flush_trie()

    # -------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        chain: ChainConfig,
        genesis_root: bytes,
        genesis: Mapping[bytes, bytes] | None = None,
        *,
        sync: bool = True,
        recovery: SignerRecovery | None = None,
    ) -> Derivation:
        """Open (creating if needed) the derivation in ``directory`` (``state/`` for LMDB, ``derive.sqlite``).

        A new directory needs the ``genesis`` leaves, whose root must be
        ``genesis_root`` (the rollup's batch 0)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        db = open_state(path / "state", genesis, sync=sync)
        store = RecordStore(path / "derive.sqlite")
        try:
            if store.get(GENESIS) is None:
                if db.is_empty:
                    raise DerivationError("an empty state needs the genesis leaves")
                if not has_root(db, genesis_root):
                    raise DerivationError(f"the state does not hold the rollup's genesis root {genesis_root.hex()}")
                store.put(genesis_record(genesis_root))
            elif store.get(GENESIS) != genesis_record(genesis_root):
                raise DerivationError("this directory derives another deployment")
            return cls(db, store, chain, recovery=recovery)
        except BaseException:
            store.close()
            db.close()
            raise

    def close(self) -> None:
        """Close the state and the records (work of an unfinished :meth:`grouped` block is lost)."""
        self._group = None
        self.store.close()
        self._base.close()

    # -------------------------------------------------------- grouped commits

    @contextmanager
    def grouped(self, max_batches: int = GROUP_BATCHES, max_seconds: float = GROUP_SECONDS) -> Iterator[None]:
        """Make the work done inside durable in a few commits instead of one per batch.

        Every input inside (batches, removals, finalisations, progress) joins
        one SQLite transaction and the trie nodes stay in memory; every
        ``max_batches`` batches or ``max_seconds`` seconds, and at the end of
        the block (also when it raises: what was applied is consistent), the
        trie is written and fsynced first, then the records are committed. A
        crash loses at most the work since the last commit: the records are at
        that commit, the state's root pointer too (or is moved back to the head
        by :meth:`open`), and the follower re-reads from the progress committed
        with them, re-deriving the same roots. A nested block joins the outer one."""
        if self._group is not None:
            yield
            return
        if max_batches < 1 or max_seconds <= 0:
            raise ValueError("max_batches and max_seconds must be positive")
        self.store.begin()
        self._group = _Group(max_batches, max_seconds, since=time.monotonic())
        try:
            yield
        finally:
            self._group = None
            self._end_group()

    def _end_group(self) -> None:
        try:
            self._flush_trie()
            self.store.commit()
        except BaseException:
            if self.store.in_transaction:
                self.store.rollback()
            self._realign()
            raise

    def _applied(self) -> None:
        """After a batch inside a group: commit when the group's bounds are reached."""
        group = self._group
        if group is None:
            return
        group.pending += 1
        if group.pending >= group.max_batches or time.monotonic() - group.since >= group.max_seconds:
            self._flush_trie()
            self.store.commit_outer()
            group.pending = 0
            group.since = time.monotonic()

    def _flush_trie(self) -> None:
        """Write the trie nodes and root pointer kept in memory to LMDB (one durable transaction)."""
        if self._overlay.nodes or self._overlay.meta:
            self._overlay.flush()

    def _persist_trie(self) -> None:
        """Outside a group, make a moved root pointer durable at once."""
        if self._group is None:
            self._flush_trie()

    def _realign(self) -> None:
        """Move the state's root pointer to the head record's root (after a failed commit)."""
        head = self.head
        if head is not None and self._db.root != head.computed_root:
            self._db = reset_root(_fresh(self._db), head.computed_root)
        self._persist_trie()

    # -------------------------------------------------------- reading

    @property
    def db(self) -> StateDB:
        """The state at the head's computed root (a new object after each rollback)."""
        return self._db

    @property
    def head(self) -> BatchRecord | None:
        """The canonical head's record (the latest batch not removed)."""
        index = self.store.head_index()
        return None if index is None else self.store.get(index)

    def record(self, index: int) -> BatchRecord | None:
        """Batch ``index``'s record."""
        return self.store.get(index)

    def records(self, start: int = 0, status: BatchStatus | None = None) -> list[BatchRecord]:
        """Records from ``start`` on (of one L1 status when given)."""
        return self.store.records(start, status=status)

    # -------------------------------------------------------- inputs from L1

    def apply(self, posted: PostedBatch, queues: L1Queues) -> BatchRecord:
        """Derive one posted batch (``queues`` must hold the items of its ranges).

        Returns its record; a batch already recorded from the same transaction
        is returned as it is. Raises :class:`DerivationError` when the batch
        does not follow the head, :class:`QueueItemMissing` when an item of its
        ranges cannot be read."""
        known = self.store.get(posted.index)
        if known is not None:
            if known.tx_hash == posted.tx_hash and known.data == posted.data:
                return known
            raise DerivationError(f"batch {posted.index} is already recorded from another transaction")
        head = self.head
        if head is None or posted.parent != head.index:
            raise DerivationError(
                f"batch {posted.index} follows {posted.parent} but the head is {None if head is None else head.index}"
            )
        deposits, forced = _collect(posted.data, queues)
        ahead = self._prefetched.pop((posted.index, posted.tx_hash), None)
        if ahead is not None and ahead.raw != posted.raw:
            ahead = None
        batch, note = decode_posted(posted, None if ahead is None else ahead.batch)
        pre = head.computed_root
        if self._db.root != pre:  # a commit whose record was not written (an earlier failure)
            self._db = reset_root(_fresh(self._db), pre)
            self._persist_trie()
        refused = 0
        if batch is None:
            verdict, computed = Verdict.UNDECODABLE, pre
        else:
            items = ItemQueues(deposits, forced, queues)
            # a prefetched order table has its entries decoded and their digests computed
            ctx = self._context(batch, posted.data, items, None if ahead is None else ahead.orders)
            if ahead is not None:
                ctx.orders.accept_recovered(ahead.jobs, ahead.recovered.result())
            if ahead is None or ahead.accounts != self._account_count():
                self._recover(ctx)  # (the STF recovers any signer still missing itself)
            try:
                result = self._db.apply_batch(batch, ctx)
            except BaseException:
                self._db = reset_root(_fresh(self._db), pre)
                self._persist_trie()
                raise
            computed = result.post_root
            refused = sum(1 for r in result.receipts if r.code != Code.OK)
            if posted.pre_root != pre:
                verdict = Verdict.BAD_PARENT
            else:
                verdict = Verdict.MATCH if computed == posted.post_root else Verdict.MISMATCH
        record = BatchRecord(
            index=posted.index, parent=posted.parent, proposer=posted.proposer,
            posted_pre_root=posted.pre_root, posted_root=posted.post_root, pre_root=pre,
            computed_root=computed, verdict=verdict, l1_status=BatchStatus.PENDING, data=posted.data,
            deadline=posted.deadline, tx_hash=posted.tx_hash, block=posted.block,
            refused_steps=refused, note=note,
        )
        if self._group is None:
            self._flush_trie()  # the trie is durable before the record that points at it
        with self.store.transaction():
            self.store.put_items(deposits, forced)
            self.store.put(record, posted.raw)
        self._applied()
        return record

    def prefetch(self, index: int, tx_hash: bytes, raw: bytes | None) -> bool:
        """Decode a batch that will be applied soon (one of the next few) and start recovering its
        order signers while the current one runs; returns whether it started.

        The signers are recovered for the accounts that exist now (an account's owner never
        changes); :meth:`apply` of the same ``(index, tx_hash)`` and bytes takes the decoded
        batch, its order table and the signers, and recovers any other signer itself, so the
        results are those of a batch applied without it. At most four batches are held. Bytes
        that do not decode are left to :meth:`apply` to judge."""
        key = (index, tx_hash)
        if raw is None or key in self._prefetched or self.store.get(index) is not None:
            return False
        try:
            batch = Batch.decode(raw)
            ctx = BatchContext.create(batch.timestamp, self.chain, ItemQueues({}, {}), list(batch.orders))
            jobs = ctx.orders.signature_jobs(self._db.view)
        except (ValueError, IndexError, KeyError):
            return False
        self._prefetched[key] = _Prefetched(
            raw, batch, ctx.orders, jobs, self.recovery.submit(jobs), self._account_count()
        )
        while len(self._prefetched) > 4:
            self._prefetched.popitem(last=False)
        return True

    def remove(self, index: int, block: int) -> list[int]:
        """``BatchRemoved(index)``: the batch and every later one are removed; the head returns
        to its parent. Returns the indices removed now (empty when already removed)."""
        rec = self.store.get(index)
        if rec is None:
            raise DerivationError(f"removal of unknown batch {index}")
        if rec.l1_status == BatchStatus.REMOVED:
            return []
        if rec.l1_status == BatchStatus.FINAL:
            raise DerivationError(f"removal of final batch {index}")
        parent = self.store.get(rec.parent)
        if parent is None:
            raise DerivationError(f"batch {index} has no recorded parent")
        gone = [r for r in self.store.records(index) if r.l1_status != BatchStatus.REMOVED]
        with self.store.transaction():
            for r in gone:
                self.store.put(replace(r, l1_status=BatchStatus.REMOVED, removed_block=block), keep_raw=True)
        for r in gone:
            self._contexts.pop(r.index, None)
        self._db = reset_root(self._db, parent.computed_root)
        self._persist_trie()
        return [r.index for r in gone]

    def finalize(self, index: int, block: int) -> bool:
        """``BatchFinalized(index)``: returns whether anything changed. The batch's bytes are dropped."""
        rec = self.store.get(index)
        if rec is None or rec.l1_status == BatchStatus.FINAL:
            return False
        if rec.l1_status == BatchStatus.REMOVED:
            raise DerivationError(f"finalisation of removed batch {index}")
        with self.store.transaction():
            self.store.put(replace(rec, l1_status=BatchStatus.FINAL, finalized_block=block))
        self._contexts.pop(index, None)
        return True

    def revert_to_block(self, block: int) -> None:
        """Undo everything learnt from L1 blocks after ``block`` (a reorganisation deeper than
        the follower's confirmation depth): batches posted later are forgotten, later removals
        and finalisations undone, and the state pointer follows the head."""
        with self.store.transaction():
            dropped = self.store.posted_after(block)
            self.store.delete(dropped)
            for rec in self.store.records(0):
                removed = rec.removed_block if rec.removed_block is not None and rec.removed_block <= block else None
                final = rec.finalized_block if rec.finalized_block is not None and rec.finalized_block <= block else None
                if (removed, final) == (rec.removed_block, rec.finalized_block):
                    continue
                status = BatchStatus.REMOVED if removed is not None else BatchStatus.FINAL if final is not None else BatchStatus.PENDING
                self.store.put(
                    replace(rec, l1_status=status, removed_block=removed, finalized_block=final), keep_raw=True
                )
            head = self.head
            if head is None:
                raise DerivationError("no genesis record")
            self.store.drop_items_from(head.data.deposit_end, head.data.forced_end)
            self.store.drop_checkpoints_after(block)
        self._contexts.clear()
        self._db = reset_root(self._db, head.computed_root)
        self._persist_trie()

    # -------------------------------------------------------- progress

    def progress(self) -> tuple[int, bytes] | None:
        """The last L1 block fully processed and its hash (None before the first)."""
        raw = self.store.get_meta("progress")
        if raw is None:
            return None
        return int.from_bytes(raw[:32], "big"), raw[32:]

    def set_progress(self, block: int, block_hash: bytes) -> None:
        """Record that every event up to ``block`` is processed."""
        with self.store.transaction():
            self.store.set_meta("progress", block.to_bytes(32, "big") + block_hash)
            self.store.add_checkpoint(block, block_hash, CHECKPOINTS_KEPT)

    # -------------------------------------------------------- replay (disputes)

    def has_bytes(self, index: int) -> bool:
        """Whether batch ``index``'s bytes are stored (they are while it is pending)."""
        return self.store.raw(index) is not None

    def restore_bytes(self, index: int, raw: bytes) -> None:
        """Store batch ``index``'s bytes again (read back from L1), checked against its commitment."""
        rec = self.store.get(index)
        if rec is None:
            raise BatchUnavailable(f"no record of batch {index}")
        if commitment_of(raw, rec.data.deposit_start, rec.data.forced_start) != rec.data:
            raise ValueError(f"these bytes are not batch {index}")
        self.store.set_raw(index, raw)

    def batch(self, index: int) -> Batch:
        """The decoded batch ``index`` (raises :class:`BatchUnavailable` when its bytes are not stored)."""
        return self.replay_inputs(index)[0]

    def replay_inputs(self, index: int, source: L1Queues | None = None) -> tuple[Batch, BatchContext]:
        """Batch ``index`` and its context, from local data (``source`` serves queue items not stored)."""
        hit = self._contexts.get(index)
        if hit is not None:
            self._contexts.move_to_end(index)
            return hit
        rec = self.store.get(index)
        raw = self.store.raw(index)
        if rec is None or raw is None:
            raise BatchUnavailable(f"the bytes of batch {index} are not stored")
        batch = Batch.decode(raw)
        d = rec.data
        items = ItemQueues(
            self.store.deposits(d.deposit_start, d.deposit_end),
            self.store.forced(d.forced_start, d.forced_end),
            source,
        )
        ctx = self._context(batch, d, items)
        self._contexts[index] = (batch, ctx)
        while len(self._contexts) > 8:
            self._contexts.popitem(last=False)
        return batch, ctx

    def roots_at(self, index: int, points: Iterable[int]) -> dict[int, bytes]:
        """The node's roots after the first ``p`` steps of batch ``index`` for each ``p`` in ``points``,
        in one replay from its pre-root (nothing persists)."""
        rec = self.store.get(index)
        if rec is None:
            raise BatchUnavailable(f"no record of batch {index}")
        wanted = sorted(set(points))
        batch, ctx = self.replay_inputs(index)
        if wanted and not 0 <= wanted[0] <= wanted[-1] <= len(batch.steps):
            raise IndexError("a point outside the batch")
        trie = self._db.trie
        view = StateView(TrieSource(trie, rec.pre_root))
        out: dict[int, bytes] = {}
        done = 0
        for p in wanted:
            for step in batch.steps[done:p]:
                apply_step(view, step, ctx)
            done = p
            dirty = view.dirty_leaves()
            out[p] = trie.root_of(dirty, root=rec.pre_root) if dirty else rec.pre_root
        return out

    def step_witness(self, index: int, step: int) -> StepWitness:
        """The one-step witness of step ``step`` of batch ``index`` from the node's own state."""
        rec = self.store.get(index)
        if rec is None:
            raise BatchUnavailable(f"no record of batch {index}")
        batch, ctx = self.replay_inputs(index)
        return build_step_witness(self._db, rec.pre_root, batch, ctx, step)

    # -------------------------------------------------------- internals

    def _context(
        self, batch: Batch, data: BatchData, items: L1Queues, orders: OrderTable | None = None
    ) -> BatchContext:
        queues = BoundedQueues(items, data.deposit_end, data.forced_end)
        if orders is None:
            return BatchContext.create(batch.timestamp, self.chain, queues, list(batch.orders))
        return BatchContext(batch.timestamp, self.chain, queues, orders)

    def _account_count(self) -> int:
        """Accounts in the state now (signers are recovered ahead for the accounts that exist)."""
        return self._db.view.global_().account_count

    def _recover(self, ctx: BatchContext) -> None:
        jobs = ctx.orders.signature_jobs(self._db.view)
        if jobs:
            ctx.orders.accept_recovered(jobs, self.recovery.submit(jobs).result())


def _collect(data: BatchData, queues: L1Queues) -> tuple[dict[int, L1Deposit], dict[int, L1Forced]]:
    deposits: dict[int, L1Deposit] = {}
    for i in range(data.deposit_start, data.deposit_end):
        d = queues.deposit(i)
        if d is None:
            raise QueueItemMissing(f"deposit {i} is not readable")
        deposits[i] = d
    forced: dict[int, L1Forced] = {}
    for i in range(data.forced_start, data.forced_end):
        f = queues.forced(i)
        if f is None:
            raise QueueItemMissing(f"forced item {i} is not readable")
        forced[i] = f
    return deposits, forced


def _fresh(db: StateDB) -> StateDB:
    """``db`` with its uncommitted leaves dropped (a new object at the committed root)."""
    db.view.clear_dirty()
    return StateDB(db.trie)


def genesis_record(genesis_root: bytes) -> BatchRecord:
    """The record of batch 0 (final, root = the genesis root)."""
    zero = b"\x00" * 32
    return BatchRecord(
        index=GENESIS, parent=GENESIS, proposer="", posted_pre_root=zero, posted_root=genesis_root,
        pre_root=zero, computed_root=genesis_root, verdict=Verdict.MATCH, l1_status=BatchStatus.FINAL,
        data=BatchData(zero, zero, 0, 0, 0, 0, 0, 0, 0), deadline=0, tx_hash=zero, block=-1,
    )
