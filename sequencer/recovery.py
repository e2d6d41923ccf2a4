"""Order signers recovered in a helper process, ahead of the core (docs/sequencer.md §10).

The one secp256k1 recovery of each order is the largest single cost of
intake, and the only one that needs no state: given the order's EIP-712
digest (``intake.prepare_recovery``), it can run on the other core while the
event loop executes the orders before it. :class:`AheadRecovery` sends the
digests and signatures that arrive during one turn of the event loop to a
recovery process (``node.sigpool.start_recovery_child``) in requests of up to
``CHUNK`` jobs, and reads each answer when the pipe is readable
(``loop.add_reader``): no thread of this process is involved, so nothing
waits for the GIL.

The answers only fill in :class:`sequencer.intake.RecoveredSigner` slots; the
core checks that a slot matches the order it validates, so a wrong or missing
answer can make an order slower, never accepted wrongly. If the process dies
or cannot be started, the jobs it held are recovered here, with the same
results, and the next request starts a new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection

from node.sigpool import decode_answer, start_recovery_child, stop_recovery_child
from sequencer.intake import RecoveredSigner
from state.eip712 import recover_signer

__all__ = ["AheadRecovery"]

CHUNK = 16
"""Jobs per request, at most: the process answers each request as soon as it is done, so the
loop executes the first orders of a burst while the rest are recovered."""

MAX_IN_FLIGHT = 1024
"""Jobs sent and not yet answered, at most (more wait here): bounds the pipes' contents, so
that neither side ever blocks writing while the other does."""


class AheadRecovery:
    """Recovers :class:`RecoveredSigner` slots in a child process, in order of submission.

    ``on_ready`` is called (on the event loop) each time slots become ready.
    Use from one event loop; :meth:`close` stops the process."""

    def __init__(
        self, on_ready: Callable[[], None], chunk: int = CHUNK, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self.on_ready = on_ready
        self.chunk = chunk
        self.max_in_flight = max_in_flight
        self._waiting: list[RecoveredSigner] = []
        self._sent: deque[list[RecoveredSigner]] = deque()
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._answers: Connection | None = None
        self._warm = False
        self.started = 0
        """Recovery processes started so far."""
        self.answered = 0
        """Jobs the processes answered (the rest were recovered here)."""

    @property
    def warm(self) -> bool:
        """Whether a process is up and answering (until then, jobs are recovered here)."""
        return self._warm

    async def warm_up(self, timeout: float = 10.0) -> bool:
        """Start the process, if none is running, and wait until it answers (at most
        ``timeout`` seconds); whether it did."""
        self._leave_stopped_loop()
        if self._requests is None:
            try:
                self._start()
            except OSError:
                return False
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._warm and self._requests is not None:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return self._warm

    def submit(self, slot: RecoveredSigner) -> None:
        """Recover ``slot.signature`` over ``slot.digest``: at once, here, while the process
        starts (``slot.ready`` on return), else in the process (``on_ready`` follows)."""
        self._leave_stopped_loop()
        if not self._warm:
            if self._requests is None:
                with contextlib.suppress(OSError):
                    self._start()
            self._recover_here([slot])
            return
        self._waiting.append(slot)
        if not self._flush_scheduled:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
            self._flush_scheduled = True

    def _leave_stopped_loop(self) -> None:
        """Called from an event loop other than the one reading the answers (which has
        stopped): stop that process, so that the next one is read by this loop."""
        if self._loop is not None and not self._loop.is_running():
            self.close()

    def _flush(self) -> None:
        """Send the waiting jobs (as many as the in-flight bound allows), ``chunk`` a request."""
        self._flush_scheduled = False
        waiting = self._waiting
        sent = 0
        try:
            while sent < len(waiting) and self._in_flight < self.max_in_flight:
                jobs = waiting[sent : sent + min(self.chunk, self.max_in_flight - self._in_flight)]
                requests = self._requests
                if requests is None:
                    raise BrokenPipeError("no recovery process")
                requests.send_bytes(b"".join([s.digest + s.signature for s in jobs]))
                sent += len(jobs)
                self._sent.append(jobs)
                self._in_flight += len(jobs)
        except OSError:  # no process (or a broken pipe): everything is recovered here
            self._recover_here(waiting[sent:])
            del waiting[:]
            self._lost()
            return
        del waiting[:sent]

    def _start(self) -> Connection:
        """Start a recovery process and watch its answers (on the running loop). Its first
        request is empty: the answer says it is up (until then, :meth:`submit` recovers here)."""
        process, requests, answers = start_recovery_child()
        self._process, self._requests, self._answers = process, requests, answers
        self.started += 1
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(answers.fileno(), self._on_answer)
        requests.send_bytes(b"")
        self._sent.append([])
        return requests

    def _on_answer(self) -> None:
        """An answer is readable: fill in the oldest request's slots."""
        answers = self._answers
        if answers is None:
            return
        try:
            raw = answers.recv_bytes()
        except (EOFError, OSError):
            self._lost()
            return
        jobs = self._sent.popleft()
        signers = decode_answer(raw)
        if len(signers) != len(jobs):  # not our child's answer: trust none of what it holds
            self._sent.appendleft(jobs)
            self._lost()
            return
        if not jobs:
            self._warm = True
        self.answered += len(jobs)
        for slot, signer in zip(jobs, signers, strict=True):
            slot.signer = signer
            slot.ready = True
        self._in_flight -= len(jobs)
        if self._waiting:
            self._flush()
        self.on_ready()

    def _lost(self) -> None:
        """The process stopped answering: recover everything not yet answered here, forget it
        (the next :meth:`submit` starts another)."""
        self.close()
        self.on_ready()

    @staticmethod
    def _recover_here(jobs: list[RecoveredSigner]) -> None:
        for slot in jobs:
            slot.signer = recover_signer(slot.digest, slot.signature)
            slot.ready = True

    def _drop(self) -> None:
        answers, process = self._answers, self._process
        if answers is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(answers.fileno())
        requests = self._requests
        self._process, self._requests, self._answers = None, None, None
        self._warm = False
        stop_recovery_child(process, requests, answers)

    def close(self) -> None:
        """Recover what is still out here and stop the process (a later :meth:`submit`
        starts another)."""
        self._recover_here(self._waiting)
        self._waiting = []
        while self._sent:
            self._recover_here(self._sent.popleft())
        self._in_flight = 0
        self._drop()
