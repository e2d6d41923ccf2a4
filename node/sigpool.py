"""Parallel secp256k1 signature recovery in worker processes.

Recovering order signers is the largest cost of applying a batch. A batch's
order table is known before its steps run, so every signer can be recovered
ahead of time, on every core, while the previous batch is applied. The STF is
unchanged: it only reads the recovered addresses (``OrderTable.accept_recovered``)
instead of recovering them itself, with identical results.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import Connection

from state.context import SignatureJob
from state.eip712 import recover_signer


def _recover_chunk(pairs: list[tuple[bytes, bytes]]) -> list[bytes | None]:
    return [recover_signer(digest, sig) for digest, sig in pairs]


class RecoveryFuture:
    """Recovered signers of a list of jobs, as they arrive from the workers."""

    def __init__(self, jobs: Sequence[SignatureJob], parts: list[Future[list[bytes | None]]]) -> None:
        self.jobs = list(jobs)
        self._parts = parts

    def result(self) -> list[bytes | None]:
        """Block until every chunk is done; the signers in job order."""
        signers: list[bytes | None] = []
        for part in self._parts:
            signers.extend(part.result())
        return signers


class SignaturePool:
    """A pool of worker processes that recover signers, in chunks."""

    def __init__(self, workers: int | None = None, chunk: int = 256) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.chunk = chunk
        self._pool = ProcessPoolExecutor(max_workers=self.workers)

    def submit(self, jobs: Sequence[SignatureJob]) -> RecoveryFuture:
        """Start recovering ``jobs``; returns at once."""
        pairs = [(job.digest, job.signature) for job in jobs]
        size = max(1, min(self.chunk, -(-len(pairs) // self.workers)))
        parts = [
            self._pool.submit(_recover_chunk, pairs[i : i + size]) for i in range(0, len(pairs), size)
        ]
        return RecoveryFuture(jobs, parts)

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SignaturePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ one process, one pipe

_JOB = 32 + 65
"""A job on the wire: digest ‖ signature."""
_NOBODY = b"\x00" * 21
"""A result on the wire: 0x01 ‖ address, or 21 zero bytes for no signer."""


def serve_stdio() -> None:
    """The recovery process's main: jobs framed on stdin, signers framed on stdout.

    It ignores Ctrl-C (sent to the whole process group): it stops when its
    parent closes the pipe or exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(Connection(0, writable=False), Connection(1, readable=False))


def _serve(requests: Connection, answers: Connection) -> None:
    """Read jobs, answer with signers, in order, until the pipe closes."""
    while True:
        try:
            request = requests.recv_bytes()
        except (EOFError, OSError):
            return
        out = []
        for i in range(0, len(request), _JOB):
            signer = recover_signer(request[i : i + 32], request[i + 32 : i + _JOB])
            out.append(_NOBODY if signer is None else b"\x01" + signer)
        answers.send_bytes(b"".join(out))


def start_recovery_child() -> tuple[subprocess.Popen[bytes], Connection, Connection]:
    """Start a recovery process (:func:`serve_stdio`): ``(process, requests, answers)``.

    It runs ``python -c``, so nothing of this process's ``__main__`` is
    imported there; requests are ``digest ‖ signature`` jobs (97 bytes each)
    sent with ``requests.send_bytes``, and each request's answer, read with
    ``answers.recv_bytes``, is 21 bytes a job: ``0x01 ‖ signer``, or zeros for none."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from node.sigpool import serve_stdio; serve_stdio()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    if process.stdin is None or process.stdout is None:
        raise OSError("no pipes to the recovery process")
    requests = Connection(os.dup(process.stdin.fileno()), readable=False)
    answers = Connection(os.dup(process.stdout.fileno()), writable=False)
    process.stdin.close()
    process.stdout.close()
    return process, requests, answers


def stop_recovery_child(process: subprocess.Popen[bytes] | None, *pipes: Connection | None) -> None:
    """Close the pipes to a recovery process (it exits when its input closes) and reap it,
    killing it if it has not exited within 5 seconds."""
    for conn in pipes:
        if conn is not None:
            conn.close()
    if process is not None:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def decode_answer(raw: bytes) -> list[bytes | None]:
    """The signers in one answer of a recovery process, in job order."""
    return [raw[i + 1 : i + 21] if raw[i] else None for i in range(0, len(raw), 21)]


class _PipeAnswer:
    """The signers of one request to a :class:`RecoveryProcess`; ``result()`` reads them in turn."""

    def __init__(self, owner: RecoveryProcess, ticket: int, jobs: Sequence[SignatureJob]) -> None:
        self._owner = owner
        self._ticket = ticket
        self._jobs = jobs
        self._signers: list[bytes | None] | None = None

    def result(self) -> list[bytes | None]:
        """Block until the process has answered (recovering here if it is gone)."""
        if self._signers is None:
            raw = self._owner._answer(self._ticket)
            if raw is None:
                self._signers = [recover_signer(j.digest, j.signature) for j in self._jobs]
            else:
                self._signers = decode_answer(raw)
        return self._signers


class RecoveryProcess:
    """Recovers signers in one child process, over a pipe, with no helper thread in this one.

    A :class:`SignaturePool` hands work to its processes through threads that
    need this process's GIL: while the deriving thread runs the STF they wait
    their turn, and the batch's recoveries arrive late. Here :meth:`submit`
    writes the jobs to the pipe at once (a batch's ~6 kB fits its buffer) and
    ``result()`` reads the answer when it is needed, so the child recovers the
    next batch's signers on the other core while this one applies the
    current batch. Requests of fewer than ``inline_below`` jobs are recovered
    in the caller (a round trip costs more). Answers are read in order of
    requests; thread-safe. If the child dies, the signers are recovered in
    the caller, with the same results."""

    def __init__(self, inline_below: int = 8) -> None:
        self.inline_below = inline_below
        self._lock = threading.Lock()
        self._send: Connection | None = None
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._next = 0
        self._read = 0
        self._answers: dict[int, bytes | None] = {}
        self._atexit = False

    def submit(self, jobs: Sequence[SignatureJob]) -> RecoveryFuture | _PipeAnswer:
        """Start recovering ``jobs``; ``result()`` gives their signers in order."""
        if len(jobs) < self.inline_below:
            done: Future[list[bytes | None]] = Future()
            done.set_result([recover_signer(j.digest, j.signature) for j in jobs])
            return RecoveryFuture(jobs, [done])
        request = b"".join(j.digest + j.signature for j in jobs)
        with self._lock:
            ticket = self._next
            self._next += 1
            try:
                if len(request) != _JOB * len(jobs):
                    raise ValueError("a job's digest or signature has the wrong length")
                self._sender().send_bytes(request)
            except (OSError, ValueError):
                self._answers[ticket] = None
        return _PipeAnswer(self, ticket, list(jobs))

    def _sender(self) -> Connection:
        """The pipe to the child, starting it first if needed."""
        if self._send is None or self._conn is None:
            self._process, self._send, self._conn = start_recovery_child()
            if not self._atexit:
                atexit.register(self.close)
                self._atexit = True
        return self._send

    def _answer(self, ticket: int) -> bytes | None:
        """The raw answer to request ``ticket`` (None: recover it in the caller)."""
        with self._lock:
            while ticket not in self._answers:
                read = self._read
                if read in self._answers:  # a request that never reached the pipe
                    self._read += 1
                    continue
                try:
                    if self._conn is None:
                        raise EOFError
                    self._answers[read] = self._conn.recv_bytes()
                    self._read += 1
                except (EOFError, OSError):  # every request still out went to the lost child
                    for lost in range(read, self._next):
                        self._answers.setdefault(lost, None)
                    self._read = self._next
                    self._drop()
            return self._answers.pop(ticket)

    def _drop(self) -> None:
        """Forget the child (it stopped answering, or is closed): later requests start a new one."""
        process, send, conn = self._process, self._send, self._conn
        self._send, self._conn, self._process = None, None, None
        stop_recovery_child(process, send, conn)

    def close(self) -> None:
        """Stop the child (a later :meth:`submit` starts another)."""
        with self._lock:
            for lost in range(self._read, self._next):
                self._answers.setdefault(lost, None)
            self._read = self._next
            self._drop()
