"""The sequencer's core: intake → matching → STF → open batch → sealed batches (docs/sequencer.md).

:class:`Exchange` is synchronous, single-threaded and deterministic: it reads
no clock (every command takes ``now``), draws no randomness, and does I/O
only through its journal (the WAL) and its store (closed batches and
checkpoints). The same commands with the same ``now`` values always produce
the same books, fills, batches and roots, which is what recovery relies on:
every accepted command is appended to the journal after it ran, and
:meth:`Exchange.open` replays the journal after the last checkpoint through
the same methods. The asyncio API that acknowledges a command only once its
record is durable is :mod:`sequencer.service`.

Every fill is a trade step applied to the open batch's state view by the STF
itself (``state.transition.apply_step``) before the engine may count it; a
step the STF refuses changes nothing and never enters a batch.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from mypy_extensions import mypyc_attr

from sequencer.book import Engine
from sequencer.checkpoint import BookEntry, Checkpoint, CheckpointError, OpenBatchImage, TableEntry
from sequencer.intake import (
    CancelSubmission,
    IntakeError,
    OrderCommand,
    OrderSubmission,
    RecoveredSigner,
    WithdrawSubmission,
    cancel_signed,
    resolve_account,
    validate_cancel,
    validate_order,
    validate_withdraw,
)
from sequencer.journal import (
    CancelRecord,
    CloseRecord,
    Command,
    DeleverageRecord,
    FundingRecord,
    L1Record,
    LiquidateRecord,
    OracleRecord,
    OrderRecord,
    SettleRecord,
    WithdrawRecord,
    decode_command,
    encode_command,
)
from sequencer.open_batch import BatchLimits, ClosedBatch, OpenBatch, QueueMirror
from sequencer.orders import Depth, OpenOrder, Order, Reason, RemovedOrder, Status, Verdict
from sequencer.outcomes import (
    CancelOutcome,
    ExchangeConfig,
    FillRecord,
    L1Outcome,
    PlaceOutcome,
    StepOutcome,
    StepRef,
)
from sequencer.probe import Probe, account_risk, obviously_fine
from sequencer.store import BatchStore
from sequencer.wal import WalRecord, WriteAheadLog
from state.constants import (
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    KIND_PERP,
    SIZE_LIMIT,
    U64_LIMIT,
)
from state.context import ChainConfig, L1Deposit, L1Forced
from state.db import StateDB
from state.errors import Code
from state.layout import Account, OrderState, Prices
from state.margin import Risk
from state.nodestore import NodeStore, NodeStoreLike, OverlayStore
from state.risk_view import AccountRisk
from state.risk_view import account_risk as risk_summary
from state.signing import order_hash
from state.transition import apply_step
from state.trie import ROOT_META, TrieDB
from state.txs import (
    ForcedCancel,
    Oracle,
    SignedOrder,
    decode_forced_payload,
    decode_order_entry,
    decode_step,
    encode_cancel,
    encode_deleverage,
    encode_deposit,
    encode_forced,
    encode_funding,
    encode_liquidate,
    encode_settle,
    encode_trade,
    encode_withdraw,
)
from state.view import StateView

__all__ = [
    "CancelOutcome",
    "ClosedBatch",
    "Exchange",
    "ExchangeConfig",
    "FillRecord",
    "L1Outcome",
    "PlaceOutcome",
    "RecoveryError",
    "StepOutcome",
    "StepRef",
]

log = logging.getLogger(__name__)


_ACCEPT = Verdict.ACCEPT
_REJECT_MAKER = Verdict.REJECT_MAKER
_REJECT_TAKER = Verdict.REJECT_TAKER
_OK = Code.OK

_MARKET_CODES = frozenset({
    Code.UNKNOWN_MARKET, Code.BAD_AMOUNT, Code.LOT_SIZE, Code.BAD_PRICE, Code.TICK_SIZE,
    Code.PRICE_LIMIT, Code.MARKET_SETTLED, Code.MARKET_EXPIRED, Code.NO_PRICE, Code.STALE_ORACLE,
    Code.MARKET_MISMATCH, Code.SAME_SIDE, Code.SELF_TRADE, Code.POST_ONLY_TAKER,
})
"""Refusals of a fill that every maker would meet: the taker (or the market) is at fault."""


@mypyc_attr(native_class=False)
class RecoveryError(RuntimeError):
    """The on-disk state cannot be resumed safely (an operator must look)."""


class Journal(Protocol):
    """Where accepted commands go: :class:`sequencer.wal.WriteAheadLog` in production."""

    @property
    def next_seq(self) -> int:
        """The seq the next append gets."""
        ...

    def append(self, payload: bytes) -> int:
        """Buffer one record; returns its seq."""
        ...

    def sync(self) -> int:
        """Make every appended record durable."""
        ...

    def truncate_before(self, seq: int) -> int:
        """Drop records below ``seq`` (covered by a checkpoint)."""
        ...

    def replay(self, from_seq: int = 0) -> Iterator[WalRecord]:
        """Records with seq ≥ ``from_seq``, in order."""
        ...


class _Live:
    """An order the engine holds (or is placing): what posting it in a batch needs."""

    __slots__ = ("order", "entry", "digest", "owner", "published")

    def __init__(self, order: SignedOrder, entry: bytes, digest: bytes, owner: bytes, published: bool) -> None:
        self.order = order
        self.entry = entry
        self.digest = digest
        self.owner = owner
        self.published = published
        """Posted in an earlier batch's table (so a fallback proposer could fill it)."""


_T = TypeVar("_T")


class _Sealing:
    """A sealed batch whose root and bytes are being computed (docs/sequencer.md §4)."""

    __slots__ = ("batch", "deposits", "forced", "future", "result")

    def __init__(self, batch: OpenBatch, deposits: tuple[L1Deposit, ...], forced: tuple[L1Forced, ...]) -> None:
        self.batch = batch
        self.deposits = deposits
        self.forced = forced
        self.future: Future[tuple[bytes, bytes, bytes]] | None = None
        """Set when the work runs on the sealer (:meth:`Exchange.seal_in_background`)."""
        self.result: tuple[bytes, bytes, bytes] | None = None
        """(pre_root, post_root, encoded) when computed inline."""


SEAL_SLICE_LEAVES = 32
"""Leaves per trie commit when sealing on the event loop (a quarter to half a
millisecond of hashing per slice; docs/rpc.md §Latency)."""


def _hash_and_encode_in_slices(
    db: StateDB, batch: OpenBatch, leaves: dict[bytes, bytes], slice_leaves: int
) -> Generator[None, None, tuple[bytes, bytes, bytes]]:
    """:func:`_hash_and_encode` as steps for a :class:`SlicedSealer`: yields after each
    trie commit of ``slice_leaves`` leaves (in key order); its return value is
    (pre_root, post_root, encoded)."""
    pre_root = db.root
    post_root = pre_root
    keys = sorted(leaves)
    for start in range(0, len(keys), slice_leaves):
        if start:
            yield
        post_root = db.commit_leaves({key: leaves[key] for key in keys[start : start + slice_leaves]})
    return pre_root, post_root, batch.encode()


class _SlicedFuture(Future[_T]):
    """A :class:`SlicedSealer`'s future: asking for its result runs the work left first."""

    def __init__(self, sealer: SlicedSealer) -> None:
        super().__init__()
        self._sealer = sealer

    def result(self, timeout: float | None = None) -> _T:
        """Finish the work (and the work queued before it) here, then return its result."""
        self._sealer.finish(self)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Finish the work (and the work queued before it) here, then return its exception."""
        self._sealer.finish(self)
        return super().exception(timeout)


class SlicedSealer:
    """Runs sealing work in slices on the calling thread, one slice per ``schedule`` call.

    ``submit(fn, *args)`` takes a generator function (``_hash_and_encode_in_slices``):
    each step runs one slice, and ``schedule`` (the event loop's ``call_later``, see
    ``ExchangeService``) runs the next one later, so the loop serves the requests that
    arrived in between. The work runs one job at a time, in submission order. The
    returned futures' ``result`` runs what is left at once (a blocking collect, a
    checkpoint). ``schedule`` returns False when it cannot run the callback later (no
    running loop): the queued work then runs at once."""

    def __init__(self, schedule: Callable[[Callable[[], None]], bool]) -> None:
        self._schedule = schedule
        self._jobs: deque[tuple[Future[Any], Generator[None, None, Any]]] = deque()
        self._scheduled = False

    def submit(self, fn: Callable[..., Generator[None, None, _T]], /, *args: object, **kwargs: object) -> Future[_T]:
        """Queue ``fn(*args, **kwargs)``'s steps; its return value is the future's result."""
        future: _SlicedFuture[_T] = _SlicedFuture(self)
        self._jobs.append((future, fn(*args, **kwargs)))
        self._schedule_next()
        return future

    def finish(self, future: Future[Any]) -> None:
        """Run the queued work up to and including ``future``'s."""
        while not future.done() and self._jobs:
            self._step()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Run every queued job to its end."""
        while self._jobs:
            self._step()

    def _schedule_next(self) -> None:
        if self._jobs and not self._scheduled:
            self._scheduled = self._schedule(self._run_scheduled)
            if not self._scheduled:
                self.shutdown()

    def _run_scheduled(self) -> None:
        self._scheduled = False
        if self._jobs:
            self._step()
        self._schedule_next()

    def _step(self) -> None:
        """Run one slice of the oldest job; settle its future when it ends."""
        future, steps = self._jobs[0]
        try:
            next(steps)
            return
        except StopIteration as stop:
            future.set_result(stop.value)
        except Exception as exc:  # the collector raises it
            future.set_exception(exc)
        self._jobs.popleft()


def _hash_and_encode(db: StateDB, batch: OpenBatch, leaves: dict[bytes, bytes]) -> tuple[bytes, bytes, bytes]:
    """The closing work of a sealed batch: commit its dirty leaves (hashing every dirty
    trie node) and encode it; returns (pre_root, post_root, encoded). One at a time, in
    sealing order: the pre-root is the previous sealed batch's post-root."""
    pre_root = db.root
    post_root = db.commit_leaves(leaves) if leaves else pre_root
    return pre_root, post_root, batch.encode()


def _reducible(position: int, is_buy: bool, lot: int) -> int:
    cap = -position if is_buy else position
    return cap - cap % lot if cap > 0 else 0


def _constant_position(held: int) -> Callable[[int, int], int]:
    def position(account: int, market: int) -> int:
        return held

    return position


def _genesis_root(genesis: dict[bytes, bytes]) -> bytes:
    return TrieDB.in_memory().commit(genesis)


class Exchange:
    """The sequencer's in-process core. See the module docstring and docs/sequencer.md.

    Build one with :meth:`open` (durable: state DB, WAL, store under one
    directory, recovered on open) or :meth:`in_memory` (no durability; tests
    and benchmarks of the logic alone).
    """

    def __init__(
        self,
        db: StateDB,
        chain: ChainConfig,
        *,
        config: ExchangeConfig | None = None,
        journal: Journal | None = None,
        store: BatchStore | None = None,
    ) -> None:
        self.db = db
        self.chain = chain
        self.config = config or ExchangeConfig()
        self._journal = journal
        self._store = store
        c = self.config
        self._limits = BatchLimits(c.max_batch_bytes, c.max_batch_orders, c.max_batch_steps)
        view = db.view
        self._params = view.params()
        g = view.global_()
        self.engine = Engine.from_params(
            self._params, protection_bps=c.protection_bps, check_fill=self._check_fill,
            position=self._position,
        )
        self._probe = Probe(chain)
        self._queues = QueueMirror(g.next_deposit, (), g.next_forced, ())
        self._open: OpenBatch | None = None
        self._sealed: list[ClosedBatch] = []
        self._pending: dict[int, ClosedBatch] = {}
        self._live: dict[bytes, _Live] = {}
        self._seen: dict[bytes, int] = {}
        self._seen_heap: list[tuple[int, bytes]] = []
        self._next_batch = 0
        self._last_ts = g.l2_time
        self._clock = 0
        self._now = 0
        self._seq = 0
        self._replaying: int | None = None
        self._fills: list[FillRecord] = []
        self._since_reset = 0
        self._since_checkpoint = 0
        self._risk_cache: dict[int, tuple[Account, Prices, Risk | None]] = {}
        self._sealer: Executor | SlicedSealer | None = None
        """Where sealed batches are hashed and encoded (:meth:`seal_in_background`); None: inline."""
        self._hashing: deque[_Sealing] = deque()
        """Sealed batches whose closing work is not collected yet, oldest first."""
        self._sealed_here = False
        """The running command sealed a batch."""
        self._pending_nodes: OverlayStore | None = None
        """Trie nodes committed since the last checkpoint, not yet on disk (:meth:`open`)."""
        self._disk_nodes: NodeStoreLike | None = None
        self.oracle_hooks: list[Callable[[Exchange, StepOutcome], None]] = []
        """Called after each applied oracle update (not during replay): the risk monitor."""
        self.batch_hooks: list[Callable[[ClosedBatch], None]] = []
        """Called with each closed batch once it is stored, the WAL records behind it
        durable (not during replay): the publisher's feed."""

    # ================================================================ construction

    @classmethod
    def in_memory(
        cls, chain: ChainConfig, genesis: dict[bytes, bytes], *, config: ExchangeConfig | None = None,
        journal: Journal | None = None,
    ) -> Exchange:
        """A core over an in-memory state initialised with ``genesis`` (no store)."""
        db = StateDB.in_memory()
        db.initialize(genesis)
        return cls(db, chain, config=config, journal=journal)

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], chain: ChainConfig, genesis: dict[bytes, bytes],
        *, config: ExchangeConfig | None = None, sync: bool = True,
    ) -> Exchange:
        """Open (creating from ``genesis`` if new) and recover the sequencer at ``directory``.

        ``directory/state`` is the state DB (LMDB, written at each checkpoint:
        trie commits in between stay in memory), ``directory/wal`` the
        write-ahead log, ``directory/store`` the checkpoint and the closed
        batches. Recovery resumes the checkpoint (state at its root, open
        batch, books, de-duplication memory, queues) and replays every WAL
        record after it through the same methods. ``sync=False`` skips the
        state DB's and store's fsyncs (tests); the WAL always syncs.
        """
        base = Path(directory)
        segment_bytes = (config or ExchangeConfig()).wal_segment_bytes
        wal = WriteAheadLog(base / "wal", segment_bytes=segment_bytes)  # first: its lock keeps a second sequencer out
        try:
            store = BatchStore(base / "store", sync=sync)
            checkpoint = store.load_checkpoint()
            nodes = NodeStore(base / "state", sync=sync)
        except BaseException:
            wal.close()
            raise
        # Trie commits stay in memory until a checkpoint needs their root on disk (_persist).
        pending = OverlayStore(nodes)
        if checkpoint is None:
            if nodes.get_meta(ROOT_META) is None:
                db = StateDB(TrieDB(pending))
                db.initialize(genesis)
            else:  # crashed after genesis, before the first checkpoint
                db = StateDB(TrieDB(pending, _genesis_root(genesis)))
        else:
            db = StateDB(TrieDB(pending, checkpoint.root))
        if wal.damage is not None and not wal.damage.at_tail:
            log.error("sequencer WAL damaged beyond its tail: %s", wal.damage)
        ex = cls(db, chain, config=config, journal=wal, store=store)
        ex._pending_nodes, ex._disk_nodes = pending, nodes
        if checkpoint is None:
            checkpoint = ex._snapshot(wal.next_seq)
            ex._write_state()
            store.commit([], checkpoint)
        else:
            if wal.next_seq < checkpoint.next_seq:
                ex.close()
                raise RecoveryError(
                    f"the WAL ends at {wal.next_seq - 1} but the checkpoint covers records "
                    f"up to {checkpoint.next_seq - 1}: the WAL directory was lost or replaced"
                )
            ex._restore(checkpoint)
        for index in store.indices():
            try:
                ex._pending[index] = store.load(index)
            except CheckpointError:
                if index < checkpoint.next_batch:  # fsynced before the checkpoint: real damage
                    ex.close()
                    raise RecoveryError(f"stored batch {index} is damaged") from None
                # not yet fsynced when the machine went down: the replay seals it again
        try:
            ex._replay(wal.replay(checkpoint.next_seq))
        except BaseException:
            ex.close()
            raise
        unsealed = [i for i in store.indices() if i >= ex._next_batch]
        if unsealed:
            ex.close()
            raise RecoveryError(f"stored batches {unsealed} were not sealed again by the replay")
        return ex

    @classmethod
    def recover(
        cls, directory: str | os.PathLike[str], chain: ChainConfig, genesis: dict[bytes, bytes],
        *, config: ExchangeConfig | None = None, sync: bool = True,
    ) -> Exchange:
        """Same as :meth:`open` (the name for what a restart does)."""
        return cls.open(directory, chain, genesis, config=config, sync=sync)

    @property
    def wal(self) -> WriteAheadLog | None:
        """The journal when it is a :class:`WriteAheadLog` (what the async API awaits)."""
        return self._journal if isinstance(self._journal, WriteAheadLog) else None

    def close(self) -> None:
        """Flush and close the WAL and the state DB (an open batch stays in the WAL)."""
        for job in self._hashing:  # the trie is not closed under a running commit
            if job.future is not None:
                job.future.exception()
        self._hashing.clear()
        if isinstance(self._journal, WriteAheadLog):
            self._journal.close()
        self.db.close()
        if self._disk_nodes is not None:  # commits since the last checkpoint are not needed
            self._disk_nodes.close()

    # ================================================================ commands

    def place_order(
        self, sub: OrderSubmission, now: int, recovered: RecoveredSigner | None = None
    ) -> PlaceOutcome:
        """Validate, match and execute an order; every fill is an STF trade step.

        Raises :class:`IntakeError` (nothing changed) for a refused request.
        An order the engine refuses (e.g. POST_ONLY_WOULD_CROSS) is an outcome
        with status REFUSED, not an error. ``recovered``: its signer, recovered
        ahead (``intake.prepare_recovery``; used only if it matches).
        """
        self._begin(now)
        try:
            outcome, record = self._place(sub, recovered)
        except IntakeError:
            self._abort()
            raise
        outcome.seq = self._commit(record)
        return outcome

    def cancel_order(self, sub: CancelSubmission, now: int) -> CancelOutcome:
        """Cancel an order: take it off the book and, if it was ever posted in a batch,
        post the trader's signed cancel step (docs/sequencer.md §5)."""
        self._begin(now)
        try:
            outcome, record = self._cancel(sub)
        except IntakeError:
            self._abort()
            raise
        outcome.seq = self._commit(record)
        return outcome

    def withdraw(self, sub: WithdrawSubmission, now: int) -> StepOutcome:
        """Append a signed withdraw step (nonce, signature and margin checked by the STF)."""
        self._begin(now)
        try:
            view = self.db.view
            index, _ = validate_withdraw(sub, view)
            withdrawal_id = view.global_().withdrawal_count
            step = encode_withdraw(index, sub.recipient, sub.amount, sub.nonce, sub.signature)
            ref = self._apply(step)
        except IntakeError:
            self._abort()
            raise
        outcome = StepOutcome(ref, withdrawal_id)
        outcome.seq = self._commit(
            WithdrawRecord(self._now, index, sub.recipient, sub.amount, sub.nonce, sub.signature)
        )
        return outcome

    def add_l1_items(
        self, deposits: Sequence[L1Deposit], forced: Sequence[L1Forced], now: int, *,
        deposit_start: int | None = None, forced_start: int | None = None,
    ) -> L1Outcome:
        """Hand over L1 bridge queue items; each new one becomes a deposit or forced step now.

        ``*_start`` is the absolute queue position of the first item (default:
        right after the last item handed over). Items already handed over are
        skipped (they must be identical); a gap is refused (``QUEUE_GAP``).
        Deposit and forced steps are kept whatever their receipt: they consume
        their queue item (docs/stf.md §6).
        """
        self._begin(now)
        try:
            new_d, d_start = self._queues.new_deposits(deposits, deposit_start)
            new_f, f_start = self._queues.new_forced(forced, forced_start)
        except IntakeError:
            self._abort()
            raise
        if not new_d and not new_f:
            return L1Outcome((), ())
        self._queues.deposits.extend(new_d)
        self._queues.forced_items.extend(new_f)
        d_refs = tuple(self._apply(encode_deposit(), keep_refused=True) for _ in new_d)
        f_refs = []
        removed: list[RemovedOrder] = []
        for item in new_f:
            ref = self._apply(encode_forced(), keep_refused=True)
            f_refs.append(ref)
            payload = decode_forced_payload(item.payload)
            if ref.receipt.code is _OK and isinstance(payload, ForcedCancel):
                removed.extend(self._forced_cancel(payload))
        outcome = L1Outcome(d_refs, tuple(f_refs), tuple(removed))
        outcome.seq = self._commit(
            L1Record(self._now, d_start, tuple(new_d), f_start, tuple(new_f))
        )
        return outcome

    def submit_oracle(self, step: bytes, now: int) -> StepOutcome:
        """Apply a signed oracle step, then run :attr:`oracle_hooks`.

        An update newer than the open batch's time closes that batch first, so
        the update lands in a batch whose time is not before it (docs/stf.md
        §7.5 refuses updates from the future).
        """
        self._begin(now)
        try:
            tx = decode_step(step)
            if not isinstance(tx, Oracle):
                raise IntakeError("BAD_FIELD", "not an oracle step")
            if tx.timestamp > self._now:
                raise IntakeError("ORACLE_FUTURE", "the update's timestamp is ahead of the clock")
            if self._open is not None and tx.timestamp > self._open.timestamp:
                code = self._probe.oracle(self.db.view, step, max(self._now, self._open.timestamp))
                if code is not _OK:
                    raise IntakeError(code.name, f"the STF refuses the update ({code.name})")
                self._seal()
            ref = self._apply(step)
        except IntakeError:
            self._abort()
            raise
        outcome = StepOutcome(ref)
        outcome.seq = self._commit(OracleRecord(self._now, step))
        if self._replaying is None:
            for hook in self.oracle_hooks:
                hook(self, outcome)
        return outcome

    def funding(self, now: int) -> StepOutcome:
        """Append a funding step (accrues every perpetual's index up to the batch time)."""
        return self._simple(now, encode_funding(), FundingRecord)

    def settle(self, market: int, now: int) -> StepOutcome:
        """Append a settle step for an expired option; resting orders in it are removed."""
        if not 0 <= market < 256:
            raise IntakeError("BAD_FIELD", "market is a u8")
        return self._simple(now, encode_settle(market), lambda t: SettleRecord(t, market), market)

    def liquidate(self, target: int, entry: bytes, size: int, now: int) -> StepOutcome:
        """Liquidate ``size`` of ``target``'s position into a liquidator's signed order entry."""
        self._begin(now)
        try:
            ref, removed = self._liquidate(target, entry, size)
        except IntakeError:
            self._abort()
            raise
        outcome = StepOutcome(ref, None, removed)
        outcome.seq = self._commit(LiquidateRecord(self._now, target, entry, size))
        return outcome

    def deleverage(self, target: int, counterparty: int, market: int, size: int, now: int) -> StepOutcome:
        """Append an auto-deleveraging step (the counterparty is the caller's choice)."""
        if not (0 <= target < 1 << 32 and 0 <= counterparty < 1 << 32 and 0 <= market < 256
                and 0 <= size < U64_LIMIT):
            raise IntakeError("BAD_FIELD", "target/counterparty u32, market u8, size u64")
        self._begin(now)
        try:
            ref = self._apply(encode_deleverage(target, counterparty, market, size))
        except IntakeError:
            self._abort()
            raise
        removed = self._sweep([(target, market), (counterparty, market)])
        outcome = StepOutcome(ref, None, removed)
        outcome.seq = self._commit(
            DeleverageRecord(self._now, target, counterparty, market, size)
        )
        return outcome

    def close_batch(self, now: int, *, wait: bool = True) -> ClosedBatch | None:
        """Close the open batch (None if nothing is open) and sweep expired orders.

        The batch is sealed (one ``StateDB.commit``) and stored once the WAL
        records behind it are durable; every ``checkpoint_every`` batches a
        checkpoint follows and the WAL is truncated before it. With a sealer
        (:meth:`seal_in_background`) and ``wait=False`` the closing work
        runs there and None is returned at once: the batch is stored when
        :meth:`collect_sealed` (or the next command) finds it done.
        """
        self._begin(now)
        if wait and self._hashing:  # batches sealed earlier are stored too before this returns
            self._collect(block=True)
        removed = list(self.engine.expire(self._now))
        removed.extend(self._remove_dead_markets())
        for r in removed:
            self._live.pop(cast(bytes, r.order_id), None)  # expired or untradable: nothing to remember
        if self._open is None and not removed:
            if self._sealed:
                self.collect_sealed()
            return None
        self._prune_seen()
        index = self._seal() if self._open is not None else None
        if index is not None and wait:
            self._collect(block=True)
        closed = next((c for c in self._sealed if c.index == index), None)
        self._commit(CloseRecord(self._now))
        return closed

    def should_close(self, now: int, max_age: float | None = None) -> bool:
        """Whether the batcher should close the open batch now (age or size); ``max_age``
        replaces the config's ``max_batch_age`` (the batching model's interval)."""
        b = self._open
        if b is None:
            return False
        c = self.config
        age = c.max_batch_age if max_age is None else max_age
        return now - b.opened_at >= age or b.nbytes >= c.max_batch_bytes - c.reserve_bytes

    # ================================================================ publisher side

    def pending_batches(self) -> list[ClosedBatch]:
        """Closed batches not yet confirmed by the publisher, oldest first (those whose
        closing work is done)."""
        self._collect(block=False)
        return [self._pending[i] for i in sorted(self._pending)]

    def confirm_published(self, upto: int) -> None:
        """The publisher no longer needs batches with index ≤ ``upto``: forget them."""
        for index in [i for i in self._pending if i <= upto]:
            del self._pending[index]
        if self._store is not None:
            self._store.confirm(upto)

    # ================================================================ queries

    @property
    def view(self) -> StateView:
        """The state including the open batch's steps (not yet committed)."""
        return self.db.view

    @property
    def root(self) -> bytes:
        """The committed root: the post-state root of the last sealed batch whose closing
        work is done (with a sealer, the batch sealed just before may still be
        hashing; ``close_batch`` waits for it)."""
        self._collect(block=False)
        return self.db.root

    @property
    def open_batch(self) -> OpenBatch | None:
        """The batch being built (read only), or None."""
        return self._open

    @property
    def next_batch_index(self) -> int:
        """The index the next sealed batch gets."""
        return self._next_batch

    @property
    def clock(self) -> int:
        """The latest ``now`` of an accepted command."""
        return self._clock

    def account(self, index: int) -> Account | None:
        """Account ``index`` as of the open batch."""
        return self.db.view.account(index)

    def account_index(self, owner: bytes) -> int | None:
        """The account index of ``owner``, if it has one."""
        return self.db.view.account_index(owner)

    def risk(self, index: int, now: int | None = None) -> AccountRisk | None:
        """Equity, margin and Greeks of account ``index`` (floats allowed: display only)."""
        acct = self.db.view.account(index)
        if acct is None:
            return None
        view = self.db.view
        return risk_summary(acct, view.params(), view.prices(), self._clock if now is None else now)

    def order(self, order_hash: bytes) -> OpenOrder | None:
        """A resting order by its digest."""
        return self.engine.order(order_hash)

    def known(self, order_hash: bytes) -> str | None:
        """Why an order with this digest would be refused as already seen, or None:
        ``DUPLICATE_ORDER`` (resting, filled, or gone without a trace) or ``ORDER_CANCELLED``."""
        return self._known(order_hash)

    def order_state(self, order_hash: bytes) -> OrderState:
        """An order's on-chain fill/cancel state as of the open batch."""
        return self.db.view.order_state(order_hash)

    def open_orders(self, account: int, market: int | None = None) -> list[OpenOrder]:
        """The account's resting orders, oldest first."""
        return self.engine.open_orders(account, market)

    def depth(self, market: int, n: int = 10) -> Depth:
        """The top ``n`` levels of ``market``'s book."""
        return self.engine.depth(market, n)

    # ================================================================ command plumbing

    def _begin(self, now: int) -> None:
        """Start a command: its effective time never runs behind an accepted command's."""
        self._now = now if now > self._clock else self._clock
        self._sealed_here = False

    def _commit(self, record: Command) -> int:
        """The command ran: log it (unless replaying), store what it sealed.

        A batch left nearly full is sealed here, so that the next command finds
        room for any single step: a command that may still be refused never has
        to close a batch to make room (a refusal changes nothing).
        """
        self._clock = self._now
        b = self._open
        if b is not None and b.nearly_full(self._limits, self.config.reserve_bytes):
            self._seal()
        if self._replaying is not None:
            seq = self._replaying
        elif self._journal is not None:
            seq = self._journal.append(encode_command(record))
        else:
            self._seq += 1
            seq = self._seq
        if self._hashing:
            self._collect(block=False)
        if self._sealed:
            self._persist(seq + 1, force=False)
        return seq

    def _abort(self) -> None:
        """A command was refused: keep nothing of it (a batch it sealed is checkpointed)."""
        self._release_if_empty()
        if self._sealed_here:  # not in the WAL: a checkpoint must record that seal now
            self._collect(block=True)
        if self._sealed_here and self._sealed:
            if self._replaying is not None:
                next_seq = self._replaying + 1
            elif self._journal is not None:
                next_seq = self._journal.next_seq
            else:
                next_seq = self._seq + 1
            self._persist(next_seq, force=True)

    def _simple(
        self, now: int, step: bytes, record: Callable[[int], Command], settled: int | None = None
    ) -> StepOutcome:
        self._begin(now)
        try:
            ref = self._apply(step)
        except IntakeError:
            self._abort()
            raise
        removed: tuple[RemovedOrder, ...] = ()
        if settled is not None:
            removed = tuple(self._remove_market(settled))
        outcome = StepOutcome(ref, None, removed)
        outcome.seq = self._commit(record(self._now))
        return outcome

    def _replay(self, records: Iterable[WalRecord]) -> int:
        """Re-run journal records through the command methods; returns how many."""
        count = 0
        for record in records:
            cmd = decode_command(record.payload)
            self._replaying = record.seq
            try:
                self._dispatch(cmd)
            except IntakeError as refusal:
                # the same command on the same state was accepted when it was logged
                raise RecoveryError(
                    f"replayed WAL record {record.seq} was refused ({refusal}): the code that "
                    "wrote the log and the code replaying it disagree"
                ) from refusal
            finally:
                self._replaying = None
            count += 1
        return count

    def _dispatch(self, cmd: Command) -> None:
        now = cmd.now
        if isinstance(cmd, OrderRecord):
            self.place_order(OrderSubmission.from_entry(cmd.entry, market_order=cmd.market_order), now)
        elif isinstance(cmd, CancelRecord):
            self.cancel_order(CancelSubmission(cmd.order_hash, cmd.signature, cmd.entry), now)
        elif isinstance(cmd, WithdrawRecord):
            self.withdraw(
                WithdrawSubmission(cmd.account, None, cmd.recipient, cmd.amount, cmd.nonce, cmd.signature),
                now,
            )
        elif isinstance(cmd, L1Record):
            self.add_l1_items(
                cmd.deposits, cmd.forced, now, deposit_start=cmd.deposit_start,
                forced_start=cmd.forced_start,
            )
        elif isinstance(cmd, OracleRecord):
            self.submit_oracle(cmd.step, now)
        elif isinstance(cmd, FundingRecord):
            self.funding(now)
        elif isinstance(cmd, SettleRecord):
            self.settle(cmd.market, now)
        elif isinstance(cmd, LiquidateRecord):
            self.liquidate(cmd.target, cmd.entry, cmd.size, now)
        elif isinstance(cmd, DeleverageRecord):
            self.deleverage(cmd.target, cmd.counterparty, cmd.market, cmd.size, now)
        else:
            self.close_batch(now)

    # ================================================================ batches

    def _open_new(self) -> OpenBatch:
        g = self.db.view.global_()
        timestamp = self._now if self._now > self._last_ts else self._last_ts
        batch = OpenBatch(
            self._next_batch, timestamp, self._now, self.db.root, g.next_deposit, g.next_forced,
            self.chain, self._queues,
        )
        self._open = batch
        return batch

    def _batch_for(self, step_len: int, new_orders: int) -> OpenBatch:
        """The open batch with room for one more step and ``new_orders`` entries
        (sealing the current one if it is full, opening one if none is open)."""
        b = self._open
        if b is not None:
            if b.fits(step_len, new_orders, self._limits):
                return b
            self._seal()
        return self._open_new()

    def _release_if_empty(self) -> None:
        """Forget an open batch that got no step (its time was chosen for nothing)."""
        if self._open is not None and not self._open.steps:
            self._open = None

    def _apply(self, step: bytes, keep_refused: bool = False) -> StepRef:
        """Apply one step to the open batch; a refusal raises IntakeError (nothing kept)
        unless ``keep_refused`` (deposit and forced steps)."""
        b = self._batch_for(len(step), 0)
        receipt = apply_step(self.db.view, step, b.ctx)
        if receipt.code is not _OK and not keep_refused:
            self._release_if_empty()
            raise IntakeError(receipt.code.name, f"the STF refused the step ({receipt.code.name})")
        return StepRef(b.index, b.add_step(step, receipt), receipt)

    def _seal(self) -> int:
        """Seal the open batch; returns its index.

        The cheap part runs here: the batch is detached (the next command opens
        the next one), its dirty leaves encoded, the queues and the book's
        bookkeeping updated. The closing work — the trie commit (hashing) and
        the batch encoding — runs inline, or on the sealer
        (:meth:`seal_in_background`), where it overlaps with the next batch's
        commands (in slices on the loop, or on a thread): the leaf cache keeps every leaf the sealed batch wrote, and
        the leaves it did not write are the same at its pre- and post-root.
        :meth:`_collect` turns finished work into :class:`ClosedBatch` records,
        in sealing order.
        """
        b = self._open
        if b is None or not b.steps:  # pragma: no cover - callers check
            raise RuntimeError("no open batch to seal")
        self._open = None
        self._sealed_here = True
        view = self.db.view
        leaves = view.dirty_leaves()
        view.clear_dirty()
        q = self._queues
        job = _Sealing(
            b, q.deposit_range(b.deposit_start, b.deposit_count),
            q.forced_range(b.forced_start, b.forced_count),
        )
        q.prune(b.deposit_start + b.deposit_count, b.forced_start + b.forced_count)
        for digest in b.table.refs:
            live = self._live.get(digest)
            if live is not None:
                live.published = True
        self._last_ts = b.timestamp
        self._next_batch = b.index + 1
        self._since_reset += 1
        reset = self._since_reset >= self.config.cache_reset_batches
        if self._sealer is None or self._replaying is not None or reset:
            self._collect(block=True)  # one commit at a time, in order
            job.result = _hash_and_encode(self.db, b, leaves)
            self._hashing.append(job)
            self._collect(block=True)
        else:
            job.future = self._submit(b, leaves)
            self._hashing.append(job)
        if reset:  # nothing is being committed: drop the leaf cache
            self._since_reset = 0
            self.db = StateDB(self.db.trie)  # same committed state, empty leaf cache
            self._risk_cache.clear()
        return b.index

    def _submit(self, batch: OpenBatch, leaves: dict[bytes, bytes]) -> Future[tuple[bytes, bytes, bytes]]:
        """Hand a sealed batch's closing work to the sealer."""
        sealer = self._sealer
        if sealer is None:  # pragma: no cover - callers check
            raise RuntimeError("no sealer")
        if isinstance(sealer, SlicedSealer):
            return sealer.submit(_hash_and_encode_in_slices, self.db, batch, leaves, SEAL_SLICE_LEAVES)
        return sealer.submit(_hash_and_encode, self.db, batch, leaves)

    def _collect(self, block: bool) -> None:
        """Record the sealed batches whose closing work is done, oldest first (``block``:
        wait for all of them)."""
        hashing = self._hashing
        while hashing:
            job = hashing[0]
            if job.future is not None:
                if not block and not job.future.done():
                    return
                pre_root, post_root, encoded = job.future.result()
            elif job.result is not None:
                pre_root, post_root, encoded = job.result
            else:  # pragma: no cover - every job has one or the other
                raise RuntimeError("sealed batch without its closing work")
            hashing.popleft()
            b = job.batch
            closed = ClosedBatch(
                b.index, encoded, pre_root, post_root, len(b.steps), len(b.table), b.timestamp,
                b.deposit_start, b.deposit_count, b.forced_start, b.forced_count, tuple(b.receipts),
                job.deposits, job.forced,
            )
            self._sealed.append(closed)
            if self._store is None or closed.index > self._store.confirmed:
                self._pending[closed.index] = closed
            nxt = self._open
            if nxt is not None and nxt.index == closed.index + 1:
                nxt.pre_root = post_root  # opened while this root was being computed

    # ================================================================ sealer

    def seal_in_background(self, executor: Executor | SlicedSealer | None) -> None:
        """Run the closing work of sealed batches (trie commit, encoding) on ``executor``
        — a :class:`SlicedSealer` (in slices between other work on this thread; what
        ``ExchangeService`` uses) or an executor with one worker thread, so that commits
        run one at a time in order — or inline (None). Recovery's replay always seals
        inline."""
        self._collect(block=True)
        self._sealer = executor

    @property
    def sealing(self) -> Future[tuple[bytes, bytes, bytes]] | None:
        """The closing work of the newest sealed batch, while it runs on the sealer."""
        return self._hashing[-1].future if self._hashing else None

    def collect_sealed(self, *, block: bool = False) -> int:
        """Between commands: store the sealed batches whose closing work is done (the WAL
        synced first, a checkpoint when due, then the batch hooks); returns how many."""
        self._collect(block)
        count = len(self._sealed)
        if count:
            if self._journal is not None:
                next_seq = self._journal.next_seq
            else:
                next_seq = self._seq + 1
            self._persist(next_seq, force=False)
        return count

    def _write_state(self) -> None:
        """Write the trie nodes committed since the last checkpoint to the on-disk state DB,
        in one transaction, so that the checkpoint about to be written names a durable root.

        Between checkpoints the sealed batches' nodes stay in memory: recovery resumes at
        the checkpoint's root and seals those batches again from the WAL, so writing
        (and fsyncing) them once per batch would buy nothing."""
        pending = self._pending_nodes
        if pending is not None and (pending.nodes or pending.meta):
            pending.flush()

    def _persist(self, next_seq: int, force: bool) -> None:
        """Store the batches sealed by the command that just ran, and every
        ``checkpoint_every`` batches (or when ``force``) a checkpoint resuming at WAL
        record ``next_seq``.

        The WAL is synced first: a stored batch is never ahead of the records that
        make it. A batch sealed by a refused command (which is not in the WAL) is
        always followed by a checkpoint (``force``).
        """
        sealed, self._sealed = self._sealed, []
        if self._store is not None and self._journal is not None:
            if self._replaying is not None:
                self._check_resealed(sealed)
            self._journal.sync()
            self._since_checkpoint += len(sealed)
            every = self.config.checkpoint_every
            due = self._since_checkpoint >= every
            if due and self._hashing and self._since_checkpoint < 2 * every:
                due = False  # at the next store, once the batch being hashed is done
            if force or due:
                self._since_checkpoint = 0
                if self._hashing:  # the checkpoint names the last sealed batch's root
                    self._collect(block=True)
                    sealed.extend(self._sealed)
                    self._sealed = []
                self._write_state()
                self._store.commit(sealed, self._snapshot(next_seq))
                self._journal.truncate_before(next_seq)
            else:
                self._store.put_batches(sealed)
        if self._replaying is None:
            for closed in sealed:
                for hook in self.batch_hooks:
                    hook(closed)

    def _check_resealed(self, sealed: Sequence[ClosedBatch]) -> None:
        """During replay: a batch stored before the crash must come out identical."""
        if self._store is None:  # pragma: no cover - only with a store
            return
        for closed in sealed:
            if closed.index <= self._store.confirmed:
                continue
            try:
                stored = self._store.get(closed.index)
            except CheckpointError:
                stored = None  # torn by a machine crash before it was fsynced
            if stored is not None and (stored.encoded, stored.post_root) != (closed.encoded, closed.post_root):
                raise RecoveryError(f"replay sealed batch {closed.index} differently from the stored one")

    def _snapshot(self, next_seq: int) -> Checkpoint:
        image = None
        b = self._open
        if b is not None:
            entries = tuple(TableEntry(*b.table.entry_info(i)) for i in range(len(b.table)))
            image = OpenBatchImage(
                b.timestamp, b.opened_at, b.deposit_start, b.forced_start, entries, tuple(b.steps)
            )
        book = []
        for market in self.engine.markets:
            for is_buy in (True, False):
                for oo in self.engine.book(market).orders(is_buy):
                    live = self._live[cast(bytes, oo.order.order_id)]
                    book.append(BookEntry(live.entry, live.digest, live.owner, oo.remaining, live.published))
        q = self._queues
        return Checkpoint(
            next_seq, self._next_batch, self.db.root, self._last_ts, self._clock, image,
            q.deposit_base, tuple(q.deposits), q.forced_base, tuple(q.forced_items), tuple(book),
            tuple(self._seen.items()),
        )

    def _restore(self, ck: Checkpoint) -> None:
        """Rebuild the in-memory core from a checkpoint (the state DB is at ``ck.root``)."""
        self._next_batch = ck.next_batch
        self._last_ts = ck.last_timestamp
        self._clock = self._now = ck.clock
        self._queues = QueueMirror(ck.deposit_base, ck.deposits, ck.forced_base, ck.forced)
        ob = ck.open_batch
        if ob is not None:
            b = OpenBatch(
                self._next_batch, ob.timestamp, ob.opened_at, self.db.root, ob.deposit_start,
                ob.forced_start, self.chain, self._queues,
            )
            for e in ob.entries:
                order = decode_order_entry(e.entry)
                if order is None:
                    raise CheckpointError("malformed order entry in the open batch")
                b.post(order, e.entry, e.digest, e.owner, e.verified)
            for step in ob.steps:
                b.add_step(step, apply_step(self.db.view, step, b.ctx))
            self._open = b
        for digest, expiry in ck.seen:
            self._remember(digest, expiry)
        engine = self.engine
        engine.check_fill = None
        try:
            for be in ck.book:
                order = decode_order_entry(be.entry)
                if order is None:
                    raise CheckpointError("malformed resting order")
                body = order.body
                # restored orders rest as they did: a reduce-only one is not re-checked
                held = -SIZE_LIMIT if body.is_buy else SIZE_LIMIT
                engine.position = _constant_position(held)
                result = engine.place(
                    Order(be.digest, body.account, body.market, body.is_buy, body.price,
                          be.remaining, body.flags, body.expiry),
                    0,
                )
                if result.status is not Status.RESTING:
                    raise CheckpointError(f"resting order did not rest again: {result.reason}")
                self._live[be.digest] = _Live(order, be.entry, be.digest, be.owner, be.published)
        finally:
            engine.check_fill = self._check_fill
            engine.position = self._position

    # ================================================================ orders

    def _position(self, account: int, market: int) -> int:
        acct = self.db.view.account(account)
        if acct is not None:
            for p in acct.positions:
                if p.market == market:
                    return p.size
        return 0

    def _known(self, digest: bytes) -> str | None:
        if digest in self._live or digest in self._seen:
            return "DUPLICATE_ORDER"
        state = self.db.view.order_state(digest)
        if state.cancelled:
            return "ORDER_CANCELLED"
        if state.filled:
            return "DUPLICATE_ORDER"
        return None

    def _remember(self, digest: bytes, expiry: int) -> None:
        """De-duplicate an order that left without a trace in the state (until it expires)."""
        self._seen[digest] = expiry
        heapq.heappush(self._seen_heap, (expiry, digest))

    def _prune_seen(self) -> None:
        heap, seen, now = self._seen_heap, self._seen, self._now
        while heap and heap[0][0] <= now:
            expiry, digest = heapq.heappop(heap)
            if seen.get(digest) == expiry:
                del seen[digest]

    def _published(self, live: _Live) -> bool:
        return live.published or (self._open is not None and live.digest in self._open.table.refs)

    def _precheck(self, cmd: OrderCommand) -> None:
        """The margin pre-check: the order must not obviously fail (docs/sequencer.md §2)."""
        body = cmd.order.body
        view = self.db.view
        time = self._open.timestamp if self._open is not None else max(self._now, self._last_ts)
        size = body.size
        if body.flags & FLAG_REDUCE_ONLY:
            cap = _reducible(
                self._position(body.account, body.market), body.is_buy,
                self._params.markets[body.market].lot,
            )
            if not cap:
                return  # the engine refuses it (REDUCE_ONLY)
            size = min(size, cap)
        else:
            account = view.account(body.account)
            if account is not None:
                prices = view.prices()
                cached = self._risk_cache.get(body.account)
                if cached is not None and cached[0] is account and cached[1] is prices:
                    risk = cached[2]
                else:
                    risk = account_risk(account, self._params, prices)
                    self._risk_cache[body.account] = (account, prices, risk)
                if risk is not None and obviously_fine(account, risk, self._params, prices, body, time):
                    return
        code = self._probe.order(
            view, time, cmd.order, cmd.digest, cmd.owner, size, bool(body.flags & FLAG_POST_ONLY)
        )
        if code is not _OK:
            raise IntakeError(code.name, f"the order would fail the STF ({code.name})")

    def _place(
        self, sub: OrderSubmission, recovered: RecoveredSigner | None
    ) -> tuple[PlaceOutcome, OrderRecord]:
        cmd = validate_order(sub, self.db.view, self.chain.domain, self._now, self._known, recovered)
        self._precheck(cmd)
        digest = cmd.digest
        body = cmd.order.body
        self._live[digest] = _Live(cmd.order, cmd.entry, digest, cmd.owner, False)
        self._fills = []
        result = self.engine.place(
            Order(digest, body.account, body.market, body.is_buy, body.price, body.size,
                  body.flags, body.expiry),
            self._now,
            market_order=cmd.market_order,
        )
        self._settle_removed(result.removed)
        live, ids = self._live, self.engine.order
        for fill in self._fills:  # makers filled entirely have left the book
            if fill.maker in live and ids(fill.maker) is None:
                del live[fill.maker]
        status = result.status
        if status is not Status.RESTING:
            del self._live[digest]
            if status is Status.CANCELLED and not result.filled:
                self._remember(digest, body.expiry)
        outcome = PlaceOutcome(
            digest, body.account, body.market, status, result.reason, tuple(self._fills),
            result.removed, result.filled, result.resting,
        )
        self._fills = []
        return outcome, OrderRecord(self._now, cmd.entry, cmd.market_order)

    def _settle_removed(self, removed: Iterable[RemovedOrder]) -> None:
        """Bookkeeping for makers the engine took off the book."""
        for r in removed:
            live = self._live.pop(cast(bytes, r.order_id), None)
            if live is not None and r.reason is not Reason.EXPIRED and not self._published(live):
                self._remember(live.digest, live.order.body.expiry)

    def _check_fill(self, maker: Order, taker: Order, price: int, size: int) -> Verdict:
        """The engine's verdict callback: apply the fill as a trade step (docs/matching.md §7)."""
        mk = self._live[cast(bytes, maker.order_id)]
        tk = self._live[cast(bytes, taker.order_id)]
        b = self._open
        if b is None:
            b = self._batch_for(13, 2)
        else:
            refs = b.table.refs
            b = self._batch_for(13, (mk.digest not in refs) + (tk.digest not in refs))
        table = b.table
        mark = len(table)
        refs = table.refs
        m_ref = refs.get(mk.digest)
        if m_ref is None:
            m_ref = b.post(mk.order, mk.entry, mk.digest, mk.owner, True)
        t_ref = refs.get(tk.digest)
        if t_ref is None:
            t_ref = b.post(tk.order, tk.entry, tk.digest, tk.owner, True)
        step = encode_trade(m_ref, t_ref, size)
        receipt = apply_step(self.db.view, step, b.ctx)
        if receipt.code is _OK:
            index = b.add_step(step, receipt)
            self._fills.append(FillRecord(
                mk.digest, tk.digest, maker.account, taker.account, maker.market, taker.is_buy,
                price, size, b.index, index,
            ))
            return _ACCEPT
        b.unpost(mark)
        self._release_if_empty()
        if receipt.code in _MARKET_CODES:
            return _REJECT_TAKER
        verdict = self._probe.order(self.db.view, b.timestamp, mk.order, mk.digest, mk.owner, size, True)
        return _REJECT_TAKER if verdict is _OK else _REJECT_MAKER

    # ================================================================ cancels

    def _held(self, digest: bytes) -> tuple[int, bytes, SignedOrder | None] | None:
        live = self._live.get(digest)
        if live is not None:
            return live.order.body.account, live.owner, live.order
        b = self._open
        if b is not None:
            ref = b.table.refs.get(digest)
            owner = None if ref is None else b.table.owner(ref)
            order = None if ref is None else b.table.get(ref)
            if owner is not None and order is not None:
                return order.body.account, owner, order
        return None

    def _cancel(self, sub: CancelSubmission) -> tuple[CancelOutcome, CancelRecord]:
        view = self.db.view
        domain = self.chain.domain
        cmd = validate_cancel(sub, view, domain, self._held)
        digest = cmd.order_hash
        live = self._live.get(digest)
        b = self._open
        in_table = b is not None and digest in b.table.refs
        state = view.order_state(digest)
        if state.cancelled:
            raise IntakeError("ALREADY_CANCELLED", "the order is already cancelled")
        if live is not None:
            published = live.published or in_table
        else:
            order = cmd.order
            if not (in_table or state.filled) or (order is not None and state.filled >= order.body.size):
                raise IntakeError("ORDER_NOT_OPEN", "the order is neither resting nor partly filled")
            published = True
        step_ref = None
        if published:
            order = cmd.order if cmd.order is not None else live.order if live is not None else None
            if order is None:  # pragma: no cover - validate_cancel resolves it
                raise IntakeError("UNKNOWN_ORDER", "order entry needed")
            step_ref = self._post_cancel(digest, order, cmd.owner, cmd.signature, live is not None)
        elif not cancel_signed(cmd, domain):
            raise IntakeError("BAD_SIGNATURE", "the cancel signature does not recover to the owner")
        remaining = 0
        if live is not None:
            removed = self.engine.cancel(digest)
            remaining = removed.remaining if removed is not None else 0
            del self._live[digest]
            if not published:
                self._remember(digest, live.order.body.expiry)
        outcome = CancelOutcome(digest, cmd.account, remaining, step_ref)
        return outcome, CancelRecord(self._now, digest, sub.signature, sub.entry)

    def _post_cancel(
        self, digest: bytes, order: SignedOrder, owner: bytes, signature: bytes, verified: bool
    ) -> StepRef:
        b = self._open
        new = 1 if b is None or digest not in b.table.refs else 0
        b = self._batch_for(68, new)
        mark = len(b.table)
        ref = b.table.refs.get(digest)
        if ref is None:
            ref = b.post(order, order.encode(), digest, owner, verified)
        step = encode_cancel(ref, signature)
        receipt = apply_step(self.db.view, step, b.ctx)
        if receipt.code is not _OK:
            b.unpost(mark)
            self._release_if_empty()
            raise IntakeError(receipt.code.name, f"the STF refused the cancel ({receipt.code.name})")
        return StepRef(b.index, b.add_step(step, receipt), receipt)

    # ================================================================ L1, risk, markets

    def _forced_cancel(self, payload: ForcedCancel) -> list[RemovedOrder]:
        account = self.db.view.account(payload.order.account)
        if account is None:  # pragma: no cover - the step was OK
            return []
        digest = order_hash(self.chain.domain, account.owner, payload.order)
        if digest not in self._live:
            return []
        removed = self.engine.cancel(digest)
        del self._live[digest]
        return [] if removed is None else [removed]

    def _liquidate(self, target: int, entry: bytes, size: int) -> tuple[StepRef, tuple[RemovedOrder, ...]]:
        order = decode_order_entry(entry)
        if order is None or not 0 <= target < 1 << 32 or not 0 <= size < U64_LIMIT:
            raise IntakeError("BAD_FIELD", "entry of 104 bytes, target u32, size u64")
        index, account = resolve_account(self.db.view, order.body.account, None)
        digest = order_hash(self.chain.domain, account.owner, order.body)
        b = self._open
        new = 1 if b is None or digest not in b.table.refs else 0
        b = self._batch_for(15, new)
        mark = len(b.table)
        ref = b.table.refs.get(digest)
        if ref is None:
            ref = b.post(order, entry, digest, account.owner, False)
        step = encode_liquidate(target, ref, size)
        receipt = apply_step(self.db.view, step, b.ctx)
        if receipt.code is not _OK:
            b.unpost(mark)
            self._release_if_empty()
            raise IntakeError(receipt.code.name, f"the STF refused the liquidation ({receipt.code.name})")
        step_ref = StepRef(b.index, b.add_step(step, receipt), receipt)
        market = order.body.market
        return step_ref, self._sweep([(target, market), (index, market)])

    def _sweep(self, pairs: Iterable[tuple[int, int]]) -> tuple[RemovedOrder, ...]:
        """Take off the book reduce-only orders that a position change made useless."""
        removed: list[RemovedOrder] = []
        for account, market in pairs:
            if market in self.engine.markets:
                removed.extend(self.engine.sweep_reduce_only(account, market))
        self._settle_removed(removed)
        return tuple(removed)

    def _remove_market(self, market: int) -> list[RemovedOrder]:
        """Off-book every resting order of a market that can no longer trade."""
        if market not in self.engine.markets:
            return []
        book = self.engine.book(market)
        removed = []
        for is_buy in (True, False):
            for oo in book.orders(is_buy):
                r = self.engine.cancel(oo.order.order_id)
                if r is not None:
                    removed.append(r)
                    self._live.pop(cast(bytes, oo.order.order_id), None)
        return removed

    def _remove_dead_markets(self) -> list[RemovedOrder]:
        prices = self.db.view.prices()
        removed: list[RemovedOrder] = []
        for market_id, market in enumerate(self._params.markets):
            dead = prices.markets[market_id].settled or (
                market.kind != KIND_PERP and self._now >= market.expiry
            )
            if dead and len(self.engine.book(market_id).orders(True)) + len(
                self.engine.book(market_id).orders(False)
            ):
                removed.extend(self._remove_market(market_id))
        return removed
