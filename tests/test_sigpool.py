"""Ahead-of-time signer recovery gives exactly the receipts and state of lazy recovery."""

import subprocess

import pytest

from node.sigpool import RecoveryProcess, SignaturePool
from state.context import BatchContext, SignatureJob
from state.eip712 import address_of, recover_signer, sign_digest
from state.transition import apply_step
from state.txs import encode_trade
from state.view import StateView
from tests.world import ETH_PERP, DictSource, standard_world


@pytest.mark.parametrize("make", [
    lambda: SignaturePool(workers=2, chunk=1), lambda: RecoveryProcess(inline_below=1),
], ids=["pool", "process"])
def test_recovery_ahead_matches_lazy_recovery(make):
    w = standard_world(("a", "b", "c"))
    orders = [
        w.order("a", ETH_PERP, False, 3_000_000, 10), w.order("b", ETH_PERP, True, 3_000_000, 4),
        w.order("c", ETH_PERP, True, 3_000_000, 4),
    ]
    forged = bytearray(orders[2])
    forged[-10] ^= 1  # c's signature no longer recovers to c
    orders.append(bytes(forged))
    steps = [encode_trade(0, 1, 4), encode_trade(0, 3, 2), encode_trade(0, 2, 4)]

    lazy_view = StateView(DictSource(dict(w.leaves)))
    lazy_ctx = BatchContext.create(w.time, w.chain, w.queues, orders)
    lazy = [apply_step(lazy_view, s, lazy_ctx) for s in steps]

    view = StateView(DictSource(dict(w.leaves)))
    ctx = BatchContext.create(w.time, w.chain, w.queues, orders)
    jobs = ctx.orders.signature_jobs(view)
    assert [j.ref for j in jobs] == [0, 1, 2, 3]
    recovery = make()
    try:
        ctx.orders.accept_recovered(jobs, recovery.submit(jobs).result())
    finally:
        recovery.close()
    eager = [apply_step(view, s, ctx) for s in steps]
    assert eager == lazy
    assert [r.code for r in eager] == [0, 3, 0]
    assert view.dirty_leaves() == lazy_view.dirty_leaves()


def _jobs(n: int, forge_every: int = 5) -> list[SignatureJob]:
    """``n`` jobs of random digests' signatures; of every ``forge_every``, one forged and one garbage."""
    import random

    rng = random.Random(n)
    jobs = []
    for i in range(n):
        key = rng.randbytes(32)
        digest = rng.randbytes(32)
        signature = sign_digest(key, digest)
        if i % forge_every == 0:
            signature = signature[:10] + bytes([signature[10] ^ 1]) + signature[11:]
        elif i % forge_every == 1:
            signature = bytes(65)  # recovers to no one
        jobs.append(SignatureJob(i, address_of(key), digest, signature))
    return jobs


def test_recovery_process_answers_as_recover_signer_in_any_order():
    batches = [_jobs(n) for n in (30, 9, 17)]
    expected = [[recover_signer(j.digest, j.signature) for j in jobs] for jobs in batches]
    assert sum(s != j.owner for s, j in zip(expected[0], batches[0], strict=True)) == 12  # the forged ones
    assert sum(s is None for s in expected[0]) >= 6  # the garbage ones, and forged r off the curve
    process = RecoveryProcess(inline_below=8)
    try:
        answers = [process.submit(jobs) for jobs in batches]
        assert answers[2].result() == expected[2]  # read past the others, kept for them
        assert answers[0].result() == expected[0]
        assert answers[1].result() == expected[1]
        assert process.submit(batches[0][:3]).result() == expected[0][:3]  # short: in the caller
    finally:
        process.close()


def _started(n: int) -> tuple[RecoveryProcess, list[SignatureJob], list[bytes | None], subprocess.Popen[bytes]]:
    """A recovery process that has answered ``n`` jobs: it, the jobs, their signers, its child."""
    jobs = _jobs(n)
    expected = [recover_signer(j.digest, j.signature) for j in jobs]
    process = RecoveryProcess(inline_below=1)
    assert process.submit(jobs).result() == expected
    child = process._process
    assert child is not None
    return process, jobs, expected, child


def test_recovery_process_survives_its_child_dying():
    process, jobs, expected, child = _started(20)
    try:
        pending = process.submit(jobs)
        child.kill()
        child.wait()
        assert pending.result() == expected  # answered or recovered here, the same signers
        assert process.submit(jobs).result() == expected  # a new child
        assert process._process is not None and process._process.pid != child.pid
    finally:
        process.close()
    assert process.submit(jobs[:2]).result() == expected[:2]
    process.close()


def test_recovery_process_child_ignores_ctrl_c():
    """Ctrl-C reaches the whole process group; the child outlives it and keeps answering,
    and stops when its parent closes the pipe."""
    import signal
    import time

    process, jobs, expected, child = _started(10)
    try:
        child.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert child.poll() is None
        assert process.submit(jobs).result() == expected
        assert process._process is child
    finally:
        process.close()
    assert child.wait(5) == 0
