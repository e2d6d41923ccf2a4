"""Run one workload through ``state/`` and print a digest of every result.

Usage: ``python tests/compiled_worker.py [PURE_DIR]``

With ``PURE_DIR`` (a directory holding a copy of ``state/*.py`` and nothing
compiled) the ``state`` package is imported from there, so the workload runs
on the pure-Python sources; without it, on whatever the checkout holds (the
mypyc-compiled modules after a normal install). ``tests/test_compiled_state.py``
compares the two outputs line by line.

The workload, all deterministic:

* the standard flow (``sequencer.flow_bench``, 20 logical seconds): the
  sequencer's matching, intake checks and batches, run on this ``state``;
* every batch of it replayed on a fresh state DB: receipts and roots;
* each flow batch mutated 16 times (a bit flipped, a byte replaced, bytes
  inserted, the tail cut) and applied on its pre-state: decode errors by name, receipts
  and roots; the STF must not raise on any of them.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(1, str(REPO))
elif __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

import state.transition  # noqa: E402  (after the path is chosen)
from sequencer.flow_bench import FlowSpec, oracle_address, run_flow  # noqa: E402
from state.batch import Batch  # noqa: E402
from state.context import BatchContext, ChainConfig, ListQueues  # noqa: E402
from state.db import StateDB, TrieSource  # noqa: E402
from state.errors import InvalidBatchError  # noqa: E402
from state.keccak import keccak256  # noqa: E402
from state.transition import Receipt, apply_step  # noqa: E402
from state.view import StateView  # noqa: E402

MUTATIONS_PER_BATCH = 16


def module_kind() -> str:
    """``compiled`` or ``pure``: how ``state.transition`` was loaded."""
    return "pure" if str(state.transition.__file__).endswith(".py") else "compiled"


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """One random corruption of a batch's bytes."""
    data = bytearray(raw)
    roll = rng.randrange(4)
    at = rng.randrange(len(data))
    if roll == 0:
        data[at] ^= 1 << rng.randrange(8)
    elif roll == 1:
        del data[at:]
    elif roll == 2:
        data[at:at] = rng.randbytes(rng.randrange(1, 9))
    else:
        data[at] = rng.randrange(256)
    return bytes(data)


def describe(receipts: list[Receipt], root: bytes) -> str:
    """A digest of the receipts, and the root."""
    codes = ",".join(f"{r.kind}:{int(r.code)}" for r in receipts)
    return f"{keccak256(codes.encode()).hex()[:16]} {root.hex()}"


def apply(db: StateDB, batch: Batch, chain: ChainConfig, queues: ListQueues) -> str:
    """Apply ``batch`` and commit it."""
    ctx = BatchContext.create(batch.timestamp, chain, queues, list(batch.orders))
    result = db.apply_batch(batch, ctx)
    return describe(result.receipts, result.post_root)


def try_on(db: StateDB, batch: Batch, chain: ChainConfig, queues: ListQueues) -> str:
    """Apply ``batch`` step by step on a view of the committed state; nothing persists."""
    ctx = BatchContext.create(batch.timestamp, chain, queues, list(batch.orders))
    view = StateView(TrieSource(db.trie, db.root))
    receipts = [apply_step(view, step, ctx) for step in batch.steps]
    return describe(receipts, db.trie.root_of(view.dirty_leaves(), root=db.root))


def workload() -> list[str]:
    """The lines this script prints (after the first, which names the module kind)."""
    chain = ChainConfig(31337, b"\x42" * 20, frozenset({oracle_address()}), 1)
    run = run_flow(FlowSpec(seconds=20), chain, 1_800_000_000)
    lines = [f"genesis {run.genesis_root.hex()} batches {len(run.batches)}"]
    queues = ListQueues(list(run.deposits))
    db = StateDB.in_memory()
    db.initialize(run.genesis)
    rng = random.Random(5)
    for i, closed in enumerate(run.batches):
        raw = closed.encoded
        lines.append(f"sequenced {i} {keccak256(raw).hex()[:16]} {closed.post_root.hex()}")
        if i >= run.setup_batches:
            for m in range(MUTATIONS_PER_BATCH):
                bad = mutate(raw, rng)
                try:
                    batch = Batch.decode(bad)
                except InvalidBatchError as exc:
                    lines.append(f"mutated {i}.{m} refused {type(exc).__name__}: {exc}")
                    continue
                lines.append(f"mutated {i}.{m} {try_on(db, batch, chain, queues)}")
        lines.append(f"replayed {i} {apply(db, Batch.decode(raw), chain, queues)}")
    return lines


def main() -> int:
    """Print the module kind, then the workload's lines."""
    sys.stdout.write("\n".join([module_kind(), *workload()]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
