"""SIGKILL the sequencer under load, again and again: nothing acknowledged is ever lost.

A worker process (tests/sequencer/exchange_crash_worker.py) runs the durable
sequencer with concurrent traders and prints every acknowledged order, fill,
cancel and removal. The test kills it at random moments (at least 20 times,
within a bounded time), restarts it on the same directory each time, and at
the end recovers the sequencer in-process and checks:

* every acknowledged fill is the trade step at the acknowledged (batch, step)
  of a closed batch, with the acknowledged maker, taker and size;
* every acknowledged resting order still rests, or was filled, cancelled or
  removed by a later acknowledged command;
* every acknowledged order is remembered: submitting it again is refused;
* replaying every closed batch from genesis, as a node does from L1 data,
  gives exactly the sequencer's roots.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sequencer.exchange import Exchange
from sequencer.intake import IntakeError, OrderSubmission
from state.batch import Batch
from state.errors import Code
from state.signing import order_hash
from state.txs import KIND_TRADE, Trade, decode_order_entry, decode_step
from tests.sequencer.exchange_crash_worker import CONFIG, traders
from tests.sequencer.harness import replay_roots
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(directory: Path, run: int, delay: float) -> tuple[list[str], int | None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sequencer.exchange_crash_worker", str(directory), str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read())),  # type: ignore[union-attr]
    ]
    for r in readers:
        r.start()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for r in readers:
        r.join(10)
    text = b"".join(out).decode()
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(f"worker exited with {proc.returncode}: {b''.join(err).decode()[-3000:]}")
    return text.splitlines(), proc.returncode


def test_sigkill_never_loses_an_acknowledged_order(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("HFX_CRASH_SEED", "20260611")))
    directory = tmp_path / "seq"
    fills: dict[tuple[int, int], tuple[str, str, int]] = {}
    acked: dict[str, tuple[str, int, str]] = {}
    gone: set[str] = set()
    cancelled: set[str] = set()
    kills = runs = 0
    deadline = time.monotonic() + 40
    while kills < 22 and time.monotonic() < deadline:
        lines, _ = _run_and_kill(directory, runs, rng.uniform(0.25, 1.1))
        runs += 1
        kills += 1
        for line in lines:
            parts = line.split()
            if parts[0] == "ACK":
                acked[parts[1]] = (parts[2], int(parts[3]), parts[4])
            elif parts[0] == "FILL":
                key = (int(parts[1]), int(parts[2]))
                assert key not in fills, f"two fills acknowledged at {key}"
                fills[key] = (parts[3], parts[4], int(parts[5]))
            elif parts[0] == "GONE":
                gone.add(parts[1])
            elif parts[0] == "CANCEL":
                cancelled.add(parts[1])
    assert kills >= 20
    assert len(acked) > 100 and len(fills) > 20, (len(acked), len(fills))

    world = World()
    segments = sorted((directory / "wal").glob("*.wal"))
    assert int(segments[0].stem) > 1  # checkpoints truncated the WAL
    ex = Exchange.open(directory, world.chain, dict(world.leaves), config=CONFIG, sync=False)
    try:
        ex.close_batch(ex.clock + 1)
        batches = ex.pending_batches()
        assert [b.index for b in batches] == list(range(len(batches)))
        # replay from genesis == the sequencer's roots
        roots = replay_roots(world, batches)
        assert roots == [b.post_root for b in batches]
        assert roots[-1] == ex.root
        # every acknowledged fill is its trade step
        owners = {i + 1: address for i, (_, address) in enumerate(traders(world))}
        for (batch_index, step_index), (maker, taker, size) in fills.items():
            closed = batches[batch_index]
            batch = Batch.decode(closed.encoded)
            tx = decode_step(batch.steps[step_index])
            assert isinstance(tx, Trade) and batch.steps[step_index][0] == KIND_TRADE
            assert closed.receipts[step_index].code is Code.OK
            digests = []
            for ref in (tx.maker, tx.taker):
                order = decode_order_entry(batch.orders[ref])
                assert order is not None
                digests.append(order_hash(world.domain, owners[order.body.account], order.body).hex())
            assert (digests[0], digests[1], tx.size) == (maker, taker, size)
        # acknowledged resting orders are still there, unless a later command took them
        # (filled, cancelled, or removed and remembered: that command may have been
        # durable without its acknowledgment being printed before the kill)
        still = 0
        for digest_hex, (status, filled, _) in acked.items():
            digest = bytes.fromhex(digest_hex)
            if status == "RESTING" and digest_hex not in gone and digest_hex not in cancelled:
                state = ex.order_state(digest)
                resting = ex.order(digest) is not None
                still += resting
                assert resting or state.filled > filled or state.cancelled or ex.known(digest)
        assert still > 0
        # every acknowledged order is remembered
        for digest_hex, (status, _, entry_hex) in acked.items():
            if status == "REFUSED":
                continue
            with pytest.raises(IntakeError) as refused:
                ex.place_order(OrderSubmission.from_entry(bytes.fromhex(entry_hex)), ex.clock)
            assert refused.value.code in ("DUPLICATE_ORDER", "ORDER_CANCELLED"), digest_hex
    finally:
        ex.close()
