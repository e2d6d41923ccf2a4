"""The asyncio face of the core: a command is acknowledged only once it is durable.

Each method runs the synchronous core (:class:`sequencer.exchange.Exchange`)
— commands are executed one at a time, on the event loop, at once, in arrival
order — and then awaits the WAL's group commit
(``WriteAheadLog.wait_durable``) of the command's record before returning
(DESIGN §8: "an acknowledged order is never lost by a crash"). Concurrent
callers share fsyncs. A refused request raises :class:`IntakeError` at once:
it changed nothing, so there is nothing to make durable.

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
from collections.abc import Callable, Sequence
from concurrent.futures import Future

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
    WithdrawSubmission,
)
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


def wall_clock() -> int:
    """Unix time in whole seconds (the STF's unit)."""
    return int(time.time())


class ExchangeService:
    """Durable, acknowledged commands over an :class:`Exchange` that has a WAL."""

    def __init__(
        self, core: Exchange, clock: Callable[[], int] = wall_clock, *,
        seal_in_background: bool = True,
    ) -> None:
        """Serve ``core``. ``seal_in_background``: spread the closing work of batches over
        the event loop in slices (module docstring); otherwise it runs inline."""
        self.core = core
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
        sync: bool = True,
    ) -> ExchangeService:
        """Recover the core at ``directory`` (see :meth:`Exchange.open`) and serve it."""
        return cls(Exchange.open(directory, chain, genesis, config=config, sync=sync), clock)

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

    # ---------------------------------------------------------------- commands

    async def place_order(self, sub: OrderSubmission, *, now: int | None = None) -> PlaceOutcome:
        """Place an order; returns once the order and its fills are durable."""
        outcome = self.core.place_order(sub, self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def cancel_order(self, sub: CancelSubmission, *, now: int | None = None) -> CancelOutcome:
        """Cancel an order (docs/sequencer.md §5)."""
        outcome = self.core.cancel_order(sub, self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def withdraw(self, sub: WithdrawSubmission, *, now: int | None = None) -> StepOutcome:
        """Withdraw collateral (a withdraw step; claimable on L1 once its batch is final)."""
        outcome = self.core.withdraw(sub, self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def add_l1_items(
        self, deposits: Sequence[L1Deposit], forced: Sequence[L1Forced], *,
        deposit_start: int | None = None, forced_start: int | None = None, now: int | None = None,
    ) -> L1Outcome:
        """Hand over L1 queue items (from the L1 watcher)."""
        outcome = self.core.add_l1_items(
            deposits, forced, self._now(now), deposit_start=deposit_start, forced_start=forced_start
        )
        await self._durable(outcome.seq)
        return outcome

    async def submit_oracle(self, step: bytes, *, now: int | None = None) -> StepOutcome:
        """Apply a signed oracle update (the core's oracle hooks run before this returns)."""
        outcome = self.core.submit_oracle(step, self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def funding(self, *, now: int | None = None) -> StepOutcome:
        """Append a funding step."""
        outcome = self.core.funding(self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def settle(self, market: int, *, now: int | None = None) -> StepOutcome:
        """Settle an expired option market."""
        outcome = self.core.settle(market, self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def liquidate(self, target: int, entry: bytes, size: int, *, now: int | None = None) -> StepOutcome:
        """Liquidate into a liquidator's signed order (the risk monitor's call)."""
        outcome = self.core.liquidate(target, entry, size, self._now(now))
        await self._durable(outcome.seq)
        return outcome

    async def deleverage(
        self, target: int, counterparty: int, market: int, size: int, *, now: int | None = None
    ) -> StepOutcome:
        """Auto-deleverage ``target`` against ``counterparty``."""
        outcome = self.core.deleverage(target, counterparty, market, size, self._now(now))
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
