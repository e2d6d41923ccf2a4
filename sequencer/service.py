"""The asyncio face of the core: a command is acknowledged only once it is durable.

Each method runs the synchronous core (:class:`sequencer.exchange.Exchange`)
— commands are executed one at a time, on the event loop, at once, in arrival
order — and then awaits the WAL's group commit
(``WriteAheadLog.wait_durable``) of the command's record before returning
(DESIGN §8: "an acknowledged order is never lost by a crash"). Concurrent
callers share fsyncs. A refused request raises :class:`IntakeError` at once:
it changed nothing, so there is nothing to make durable.

Signer recovery runs ahead under load (``recover_ahead``, docs/sequencer.md
§10): once ``RECOVER_AHEAD_FROM`` orders are in flight, an order's digest is
computed on arrival and its signature recovered in a helper process
(:class:`sequencer.recovery.AheadRecovery`) while the loop executes the
commands before it. Commands still execute one at a time in arrival
order: while any order waits for its signer, the commands behind it wait in
turn (a command whose caller is cancelled before its turn never runs). With
nothing waiting, a command runs at once, as before.

Time: each call may pass ``now``; otherwise the service's ``clock`` (by
default the wall clock in whole seconds) is read here, never inside the core.

Batch closing work is spread out (``seal_in_background``, docs/rpc.md
§Latency): the trie commit of a sealed batch runs on the event loop in slices
of ``SEAL_SLICE_LEAVES`` leaves, ``SEAL_SLICE_GAP`` apart, while the next batch
takes commands (``Exchange.seal_in_background`` with a
:class:`sequencer.exchange.SlicedSealer`); the batch is stored — WAL synced
first — once that work is done. (A sealing thread held the GIL for 5 ms at a
time against the loop: the trie hashing is Python.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from sequencer.exchange import (
    CancelOutcome,
    ClosedBatch,
    Exchange,
    ExchangeConfig,
    L1Outcome,
    PlaceOutcome,
    SlicedSealer,
    StepOutcome,
)
from sequencer.intake import (
    CancelSubmission,
    OrderSubmission,
    RecoveredSigner,
    WithdrawSubmission,
    prepare_recovery,
)
from sequencer.recovery import AheadRecovery
from state.context import ChainConfig, L1Deposit, L1Forced

__all__ = ["ExchangeService", "quiet_gc", "wall_clock"]

SEAL_SLICE_GAP = 0.001
"""Seconds between two slices of a seal's trie commit on the event loop: the loop
spends at most about a third of its time hashing (docs/rpc.md §Latency)."""

GC_THRESHOLDS = (50_000, 20, 100)
"""Allocations before a young collection, and young (middle) collections before the next older one."""


def quiet_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Keep the cyclic garbage collector's pauses off the acknowledgment path.

    Every full collection walks every tracked object — the recovered books,
    caches and trie nodes — on the event loop (measured: 37–190 ms pauses with
    a 10,000-order book, the largest single stall behind the RPC p99). After
    recovery, the objects alive are frozen (``gc.freeze``: never scanned
    again) and young collections run every ``thresholds[0]`` allocations
    instead of 700; the core's own objects are freed by reference counting, so
    little cyclic garbage waits longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


RECOVER_AHEAD_FROM = 16
"""Orders in flight (placed, not yet acknowledged) from which a new order's signer is
recovered in the helper process; below, the loop has time to spare and recovers it
itself, which answers sooner (docs/sequencer.md §10)."""

_T = TypeVar("_T")


class _Turn:
    """A command waiting for its turn: what to run, the signer it needs, the caller's future."""

    __slots__ = ("run", "slot", "done")

    def __init__(
        self, run: Callable[[], Any], slot: RecoveredSigner | None, done: asyncio.Future[Any]
    ) -> None:
        self.run = run
        self.slot = slot
        self.done = done


def wall_clock() -> int:
    """Unix time in whole seconds (the STF's unit)."""
    return int(time.time())


class ExchangeService:
    """Durable, acknowledged commands over an :class:`Exchange` that has a WAL."""

    def __init__(
        self, core: Exchange, clock: Callable[[], int] = wall_clock, *,
        seal_in_background: bool = True, recover_ahead: bool = True,
    ) -> None:
        """Serve ``core``. ``seal_in_background``: spread the closing work of batches over
        the event loop in slices (module docstring); otherwise it runs inline.
        ``recover_ahead``: recover order signers in a helper process (module docstring)."""
        self.core = core
        self._turns: deque[_Turn] = deque()
        self._orders_in_flight = 0
        self.recover_ahead_from = RECOVER_AHEAD_FROM
        """Orders in flight from which signers are recovered ahead (0: always)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recovery = AheadRecovery(self._take_turns) if recover_ahead else None
        self.clock = clock
        self._batcher: asyncio.Task[None] | None = None
        self.max_batch_age: float | None = None
        """The batcher's age limit in seconds (None: the core's ``max_batch_age``); the
        process sets it from the batching model (``[batcher] adaptive``)."""
        self._sealer: SlicedSealer | None = None
        if seal_in_background:
            self._sealer = SlicedSealer(self._after_gap)
            core.seal_in_background(self._sealer)
        self._watched: Future[tuple[bytes, bytes, bytes]] | None = None
        self._watchers: set[asyncio.Task[None]] = set()

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], chain: ChainConfig, genesis: dict[bytes, bytes],
        *, config: ExchangeConfig | None = None, clock: Callable[[], int] = wall_clock,
        sync: bool = True, recover_ahead: bool = True,
    ) -> ExchangeService:
        """Recover the core at ``directory`` (see :meth:`Exchange.open`) and serve it."""
        core = Exchange.open(directory, chain, genesis, config=config, sync=sync)
        return cls(core, clock, recover_ahead=recover_ahead)

    @staticmethod
    def _after_gap(callback: Callable[[], None]) -> bool:
        """Run ``callback`` ``SEAL_SLICE_GAP`` seconds from now on the running event loop;
        False if there is none."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_later(SEAL_SLICE_GAP, callback)
        return True

    def _now(self, now: int | None) -> int:
        return self.clock() if now is None else now

    async def _durable(self, seq: int) -> None:
        """Return once WAL record ``seq`` is durable (the WAL's group commit)."""
        if self.core.sealing is not self._watched:
            self._watch_sealing()
        wal = self.core.wal
        if wal is not None and seq > wal.durable_seq:
            await wal.wait_durable(seq)

    def _watch_sealing(self) -> None:
        """Store a batch sealed in slices as soon as its closing work is done, even if no
        command follows."""
        future = self.core.sealing
        self._watched = future
        if future is None:
            return
        task = asyncio.get_running_loop().create_task(self._store_when_sealed(future))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _store_when_sealed(self, future: Future[tuple[bytes, bytes, bytes]]) -> None:
        with contextlib.suppress(Exception):  # a failure is raised by the next collect
            await asyncio.wrap_future(future)
        self.core.collect_sealed()

    async def warm_up(self) -> None:
        """Start the signer recovery process now and wait until it answers, so that the
        first orders do not wait for it (until it does, signers are recovered inline)."""
        if self._recovery is not None:
            await self._recovery.warm_up()

    # ---------------------------------------------------------------- turns

    async def _in_order(self, run: Callable[[], _T], slot: RecoveredSigner | None = None) -> _T:
        """Run ``run()`` now, or in its turn if commands are waiting or ``slot`` is not ready."""
        if not self._turns and (slot is None or slot.ready):
            return run()
        loop = self._loop
        if loop is None or not loop.is_running():  # get_running_loop makes a syscall (getpid)
            loop = self._loop = asyncio.get_running_loop()
        done: asyncio.Future[_T] = loop.create_future()
        self._turns.append(_Turn(run, slot, done))
        return await done

    def _take_turns(self) -> None:
        """Run the waiting commands, in order, up to the first whose signer is not ready."""
        turns = self._turns
        while turns:
            turn = turns[0]
            if turn.slot is not None and not turn.slot.ready:
                return
            turns.popleft()
            if turn.done.cancelled():
                continue
            try:
                result = turn.run()
            except Exception as exc:  # the caller's own error, raised to the caller
                turn.done.set_exception(exc)
            else:
                turn.done.set_result(result)

    # ---------------------------------------------------------------- commands

    async def place_order(self, sub: OrderSubmission, *, now: int | None = None) -> PlaceOutcome:
        """Place an order; returns once the order and its fills are durable."""
        at = self._now(now)
        slot = None
        if self._recovery is not None and (self._orders_in_flight >= self.recover_ahead_from or self._turns):
            slot = prepare_recovery(sub, self.core.view, self.core.chain.domain)
            if slot is not None:
                self._recovery.submit(slot)
        core = self.core
        self._orders_in_flight += 1
        try:
            outcome = await self._in_order(lambda: core.place_order(sub, at, slot), slot)
            await self._durable(outcome.seq)
        finally:
            self._orders_in_flight -= 1
        return outcome

    async def cancel_order(self, sub: CancelSubmission, *, now: int | None = None) -> CancelOutcome:
        """Cancel an order (docs/sequencer.md §5)."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.cancel_order(sub, at))
        await self._durable(outcome.seq)
        return outcome

    async def withdraw(self, sub: WithdrawSubmission, *, now: int | None = None) -> StepOutcome:
        """Withdraw collateral (a withdraw step; claimable on L1 once its batch is final)."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.withdraw(sub, at))
        await self._durable(outcome.seq)
        return outcome

    async def add_l1_items(
        self, deposits: Sequence[L1Deposit], forced: Sequence[L1Forced], *,
        deposit_start: int | None = None, forced_start: int | None = None, now: int | None = None,
    ) -> L1Outcome:
        """Hand over L1 queue items (from the L1 watcher)."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.add_l1_items(
            deposits, forced, at, deposit_start=deposit_start, forced_start=forced_start
        ))
        await self._durable(outcome.seq)
        return outcome

    async def submit_oracle(self, step: bytes, *, now: int | None = None) -> StepOutcome:
        """Apply a signed oracle update (the core's oracle hooks run before this returns)."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.submit_oracle(step, at))
        await self._durable(outcome.seq)
        return outcome

    async def funding(self, *, now: int | None = None) -> StepOutcome:
        """Append a funding step."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.funding(at))
        await self._durable(outcome.seq)
        return outcome

    async def settle(self, market: int, *, now: int | None = None) -> StepOutcome:
        """Settle an expired option market."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.settle(market, at))
        await self._durable(outcome.seq)
        return outcome

    async def liquidate(self, target: int, entry: bytes, size: int, *, now: int | None = None) -> StepOutcome:
        """Liquidate into a liquidator's signed order (the risk monitor's call)."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.liquidate(target, entry, size, at))
        await self._durable(outcome.seq)
        return outcome

    async def deleverage(
        self, target: int, counterparty: int, market: int, size: int, *, now: int | None = None
    ) -> StepOutcome:
        """Auto-deleverage ``target`` against ``counterparty``."""
        at = self._now(now)
        outcome = await self._in_order(lambda: self.core.deleverage(target, counterparty, market, size, at))
        await self._durable(outcome.seq)
        return outcome

    async def close_batch(self, *, now: int | None = None) -> ClosedBatch | None:
        """Close the open batch now; returns once it is sealed and stored."""
        closed = self.core.close_batch(self._now(now))
        self._watch_sealing()
        return closed

    # ---------------------------------------------------------------- batcher

    def start_batcher(self, interval: float = 0.05) -> None:
        """Close batches by age or size (``Exchange.should_close``) every ``interval`` seconds."""
        if self._batcher is None:
            self._batcher = asyncio.get_running_loop().create_task(self._batch_loop(interval))

    async def _batch_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            if self.core.should_close(now, self.max_batch_age):
                self.core.close_batch(now, wait=False)
                self._watch_sealing()

    async def aclose(self) -> None:
        """Stop the batcher, let pending flushes finish, close the WAL and the state DB."""
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher
            self._batcher = None
        if self._recovery is not None:
            self._recovery.close()  # every slot ready: the commands waiting run now
            self._take_turns()
        if self._sealer is not None:
            self._sealer.shutdown()  # runs the slices left
            self.core.collect_sealed(block=True)
            self.core.seal_in_background(None)
        for task in list(self._watchers):
            task.cancel()
        wal = self.core.wal
        if wal is not None:
            await wal.aclose()
        self.core.close()
