"""The asyncio face of the core: a command is acknowledged only once it is durable.

Each method runs the synchronous core (:class:`sequencer.exchange.Exchange`)
— commands are executed one at a time, on the event loop, at once (an order
once its signer is recovered, below: so an order may run after a command that
arrived just after it) — and then awaits the WAL's group commit
(``WriteAheadLog.wait_durable``) of the command's record before returning
(DESIGN §8: "an acknowledged order is never lost by a crash"). Concurrent
callers share fsyncs. A refused request raises :class:`IntakeError` at once:
it changed nothing, so there is nothing to make durable.

Time: each call may pass ``now``; otherwise the service's ``clock`` (by
default the wall clock in whole seconds) is read here, never inside the core.

Two pieces of work leave the event loop (docs/rpc.md §Latency):

* **Signer recovery** (``recover_signers``, off by default): an order's signer
  is recovered in a :class:`SignerPool` process before the order reaches the
  core, so it overlaps with the core on another CPU. Measured on two shared
  CPUs it did not raise throughput (docs/sequencer.md §10), and an order then
  runs when its signer is back, possibly after a command that arrived just
  after it; it is for machines with a CPU to spare. The core
  gets it as a :class:`~sequencer.intake.SignerHint` that it uses only for
  exactly the digest and signature it checks, so every refusal is the same.
* **Batch closing work** (``seal_in_background``): the trie commit and the
  encoding of a sealed batch run on one sealing thread while the next batch
  takes commands (``Exchange.seal_in_background``); the batch is stored — WAL
  synced first — once that work is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection

from sequencer.exchange import (
    CancelOutcome,
    ClosedBatch,
    Exchange,
    ExchangeConfig,
    L1Outcome,
    PlaceOutcome,
    StepOutcome,
)
from sequencer.intake import (
    CancelSubmission,
    OrderSubmission,
    SignerHint,
    WithdrawSubmission,
    order_signing_input,
    signing_digest,
)
from state.context import ChainConfig, L1Deposit, L1Forced
from state.eip712 import recover_signer

__all__ = ["ExchangeService", "SignerPool", "quiet_gc", "serve_signers", "wall_clock"]

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


SIGNER_REQUEST = 32 + 65
"""One recovery request to the signer process: digest, signature."""
SIGNER_QUEUE = 64
"""Default :attr:`SignerPool.max_queued`."""
SIGNER_REPLY = 21
"""One reply: 1 (recovered) or 0 (invalid), then the 20-byte signer."""


def serve_signers(conn: Connection) -> None:
    """(the signer process) Answer batches of (digest, signature) with their recovered
    signers (``state.eip712.recover_signer``) until the pipe closes. The first message,
    empty, says the process is ready."""
    try:
        conn.send_bytes(b"")
        while True:
            data = conn.recv_bytes()
            out = bytearray()
            for i in range(0, len(data) - SIGNER_REQUEST + 1, SIGNER_REQUEST):
                signer = recover_signer(data[i:i + 32], data[i + 32:i + SIGNER_REQUEST])
                out += b"\x00" * SIGNER_REPLY if signer is None else b"\x01" + signer
            conn.send_bytes(out)
    except (EOFError, OSError, KeyboardInterrupt):
        return


_Waiting = list[tuple[bytes, bytes, "asyncio.Future[SignerHint | None]"]]


class SignerPool:
    """Order signers recovered in a separate process, in batches.

    A thread would hold the GIL for the Python around each recovery and wait
    for the busy event loop to give it back; a process does not. The event
    loop sends every request waiting as one message and reads the answers
    with ``add_reader`` (no thread in this process); while one batch is out,
    the next one gathers. :meth:`recover` resolves to the
    :class:`~sequencer.intake.SignerHint` — or to None, at once, while the
    process is starting or if it is gone: the core then recovers the signer
    itself."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=serve_signers, args=(child,), name="hfx-signers", daemon=True)
        self._process.start()
        child.close()
        self._loop = loop
        self._queued: _Waiting = []
        self._sent: _Waiting | None = None
        self._broken = False
        self._ready = False
        self.answered = 0
        """Requests the process has answered."""
        self.max_queued = SIGNER_QUEUE
        """Requests gathered while a batch is out; more are recovered by the core itself,
        so that the event loop never waits for the process with work at hand."""
        loop.add_reader(self._conn.fileno(), self._on_reply)

    @property
    def ready(self) -> bool:
        """Whether the process is up and answering."""
        return self._ready and not self._broken

    def recover(self, digest: bytes, signature: bytes) -> asyncio.Future[SignerHint | None]:
        """A future of ``recover_signer(digest, signature)`` as a hint."""
        future: asyncio.Future[SignerHint | None] = self._loop.create_future()
        if (not self._ready or self._broken or len(digest) != 32 or len(signature) != 65
                or (self._sent is not None and len(self._queued) >= self.max_queued)):
            future.set_result(None)
            return future
        self._queued.append((digest, signature, future))
        if self._sent is None and len(self._queued) == 1:
            self._loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        if self._sent is not None or not self._queued or self._broken:
            return
        batch, self._queued = self._queued, []
        self._sent = batch
        try:
            self._conn.send_bytes(b"".join(d + s for d, s, _ in batch))
        except OSError:
            self._fail()

    def _on_reply(self) -> None:
        try:
            data = self._conn.recv_bytes()
        except (EOFError, OSError):
            self._fail()
            return
        if not self._ready:  # the process's first message
            self._ready = True
            return
        batch, self._sent = self._sent or [], None
        self.answered += len(batch)
        for i, (digest, signature, future) in enumerate(batch):
            reply = data[i * SIGNER_REPLY:(i + 1) * SIGNER_REPLY]
            if not future.done():
                signer = reply[1:] if reply[:1] == b"\x01" else None
                future.set_result(SignerHint(digest, signature, signer) if len(reply) == SIGNER_REPLY else None)
        self._send()

    def _fail(self) -> None:
        """The process is gone: every waiting request goes to the core without a hint."""
        self._broken = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._conn.fileno())
        waiting = (self._sent or []) + self._queued
        self._sent, self._queued = None, []
        for _, _, future in waiting:
            if not future.done():
                future.set_result(None)

    def close(self) -> None:
        """Stop the process (requests still waiting get no hint)."""
        if not self._broken:
            self._fail()
        self._conn.close()
        self._process.join(5)
        if self._process.is_alive():  # pragma: no cover - it exits when the pipe closes
            self._process.kill()
            self._process.join()


class ExchangeService:
    """Durable, acknowledged commands over an :class:`Exchange` that has a WAL."""

    def __init__(
        self, core: Exchange, clock: Callable[[], int] = wall_clock, *,
        recover_signers: bool = False, seal_in_background: bool = True,
    ) -> None:
        """Serve ``core``. ``recover_signers``: recover order signers in a
        :class:`SignerPool` process; ``seal_in_background``: close batches on a
        sealing thread (module docstring)."""
        self.core = core
        self.clock = clock
        self._batcher: asyncio.Task[None] | None = None
        self.max_batch_age: float | None = None
        """The batcher's age limit in seconds (None: the core's ``max_batch_age``); the
        process sets it from the batching model (``[batcher] adaptive``)."""
        self._recover_signers = recover_signers
        self._sealer: ThreadPoolExecutor | None = None
        if seal_in_background:
            self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfx-seal")
            core.seal_in_background(self._sealer)
        self.signers: SignerPool | None = None
        """The signer process, once started."""
        self._watched: Future[tuple[bytes, bytes, bytes]] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        if recover_signers:
            with contextlib.suppress(RuntimeError):  # no running loop: started at the first order
                self.signers = SignerPool(asyncio.get_running_loop())

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], chain: ChainConfig, genesis: dict[bytes, bytes],
        *, config: ExchangeConfig | None = None, clock: Callable[[], int] = wall_clock,
        sync: bool = True,
    ) -> ExchangeService:
        """Recover the core at ``directory`` (see :meth:`Exchange.open`) and serve it."""
        return cls(Exchange.open(directory, chain, genesis, config=config, sync=sync), clock)

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
        """Store a batch sealed on the sealing thread as soon as its closing work is done,
        even if no command follows."""
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

    async def _signer_hint(self, sub: OrderSubmission) -> SignerHint | None:
        """The order's signer, recovered in the signer process (None: the core recovers it)."""
        if not self._recover_signers:
            return None
        signing = order_signing_input(sub, self.core.view)
        if signing is None:
            return None
        digest = signing_digest(self.core.chain.domain, signing[0], signing[1])
        if digest is None:
            return None
        if self.signers is None:
            self.signers = SignerPool(asyncio.get_running_loop())
        return await self.signers.recover(digest, sub.signature)

    # ---------------------------------------------------------------- commands

    async def place_order(self, sub: OrderSubmission, *, now: int | None = None) -> PlaceOutcome:
        """Place an order; returns once the order and its fills are durable. Its signer is
        recovered off the event loop first (``recover_signers``)."""
        hint = await self._signer_hint(sub)
        outcome = self.core.place_order(sub, self._now(now), hint)
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
            await asyncio.to_thread(self._sealer.shutdown)  # lets the running work finish
            self.core.collect_sealed(block=True)
            self.core.seal_in_background(None)
        for task in list(self._watchers):
            task.cancel()
        if self.signers is not None:
            self.signers.close()
            self.signers = None
        wal = self.core.wal
        if wal is not None:
            await wal.aclose()
        self.core.close()
