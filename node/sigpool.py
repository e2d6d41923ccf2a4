"""Parallel secp256k1 signature recovery in worker processes.

Recovering order signers is the largest cost of applying a batch. A batch's
order table is known before its steps run, so every signer can be recovered
ahead of time, on every core, while the previous batch is applied. The STF is
unchanged: it only reads the recovered addresses (``OrderTable.accept_recovered``)
instead of recovering them itself, with identical results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

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
