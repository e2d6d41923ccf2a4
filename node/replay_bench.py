"""Replay rate: a node rebuilding the state from L1 data, on the standard flow's batches.

The batches of :func:`sequencer.flow_bench.run_flow` (what the sequencer
posts) are handed, in order, to a fresh :class:`node.derive.Derivation` on
disk (LMDB state with its default fsync, SQLite records), each as the
follower hands a ``BatchPosted`` event: the bytes, the commitment the rollup
computes from them, the parent's and the claimed roots, and the bridge's
deposit items. Every batch must derive to the sequencer's root (``MATCH``).

``replay_trades_per_s`` is the trade steps of the flow batches divided by
the time to derive them (the setup batch, deposits and first prices, is
derived first and not timed). With ``recovery`` (a
:class:`node.sigpool.SignaturePool`) every batch's signers are recovered in
worker processes before its steps run.

``python -m node.replay_bench [seconds] [--runs N] [--threads N]`` runs a flow
of that many logical seconds and prints the rates (grouped commits, as a node
catching up; a commit per batch, as a node at the head) next to the ecrecover
baseline. The next ``ahead`` batches' signers are recovered ahead
(:meth:`~node.derive.Derivation.prefetch`), as the follower does.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass

from node.batches import PostedBatch, Verdict
from node.derive import Derivation, SignerRecovery, commitment_of
from node.follower import PREFETCH_AHEAD
from sequencer.flow_bench import FlowRun, FlowSpec, run_flow
from sequencer.open_batch import ClosedBatch
from state.batch import Batch
from state.context import ChainConfig, ListQueues
from state.keccak import keccak256
from state.txs import KIND_TRADE

__all__ = ["ReplayResult", "bench_replay", "posted_of"]


class ReplayMismatch(RuntimeError):
    """A batch did not derive to the sequencer's root."""


@dataclass(frozen=True)
class ReplayResult:
    """One replay's figures."""

    batches: int
    trades: int
    seconds: float

    @property
    def trades_per_s(self) -> float:
        """Trade steps derived per second."""
        return self.trades / max(self.seconds, 1e-9)


def posted_of(closed: ClosedBatch, rollup_index: int) -> PostedBatch:
    """The ``BatchPosted`` event (with its transaction's bytes) of ``closed`` posted honestly
    as the rollup's batch ``rollup_index`` on top of batch ``rollup_index - 1``."""
    raw = closed.encoded
    return PostedBatch(
        index=rollup_index, parent=rollup_index - 1, proposer="0x" + "11" * 20,
        pre_root=closed.pre_root, post_root=closed.post_root,
        data=commitment_of(raw, closed.deposit_start, closed.forced_start), deadline=0, raw=raw,
        tx_hash=keccak256(raw + rollup_index.to_bytes(8, "big")), block=rollup_index,
    )


def bench_replay(
    run: FlowRun, *, recovery: SignerRecovery | None = None, grouped: bool = True, ahead: int = PREFETCH_AHEAD
) -> ReplayResult:
    """Derive every batch of ``run`` on a fresh on-disk node; time the flow batches.

    Before each batch the next ``ahead`` batches are handed to
    :meth:`Derivation.prefetch`, as the follower does (``PREFETCH_AHEAD``).

    ``grouped`` derives them as a node catching up does (:meth:`Derivation.grouped`:
    a durable commit every ``GROUP_BATCHES`` batches or ``GROUP_SECONDS``); without
    it every batch is committed on its own, as a node at the L1 head does."""
    posted = [posted_of(b, i + 1) for i, b in enumerate(run.batches)]
    queues = ListQueues(list(run.deposits))
    setup = run.setup_batches
    trades = sum(
        1 for b in run.flow_batches for step in Batch.decode(b.encoded).steps if step[0] == KIND_TRADE
    )
    with tempfile.TemporaryDirectory(prefix="hfx-replay-bench-") as directory:
        d = Derivation.open(directory, run.chain, run.genesis_root, run.genesis, recovery=recovery)
        try:
            for p in posted[:setup]:
                _check(d.apply(p, queues).verdict, p.index)
            start = time.perf_counter()
            with d.grouped() if grouped else contextlib.nullcontext():
                flow = posted[setup:]
                for k, p in enumerate(flow):
                    for n in flow[k + 1 : k + 1 + ahead]:  # the follower hands the next batches' bytes ahead too
                        d.prefetch(n.index, n.tx_hash, n.raw)
                    _check(d.apply(p, queues).verdict, p.index)
            elapsed = time.perf_counter() - start
        finally:
            d.close()
    return ReplayResult(len(posted) - setup, trades, elapsed)


def _check(verdict: Verdict, index: int) -> None:
    if verdict != Verdict.MATCH:
        raise ReplayMismatch(f"batch {index} derived to another root ({verdict.name})")


def main(argv: list[str]) -> int:
    """``python -m node.replay_bench``: run a flow and print its replay rates next to the ecrecover baseline."""
    import argparse

    from node.derive import ThreadRecovery
    from node.sigpool import RecoveryProcess
    from sequencer.flow_bench import oracle_address
    from state.eip712 import ecrecover_baseline_rate

    p = argparse.ArgumentParser(
        prog="python -m node.replay_bench",
        description="Replay the standard flow's batches on a fresh on-disk node and print trades per second, "
                    "as a node catching up (grouped commits) and as a node at the head (a commit per batch).",
    )
    p.add_argument("seconds", nargs="?", type=int, default=60, help="logical seconds of the flow (default 60)")
    p.add_argument("--runs", type=int, default=3, help="runs of each mode; the best is printed (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="recover signatures in this many threads (1: in the deriving thread) instead of "
                        "the node's default, one recovery process")
    a = p.parse_args(argv)
    if a.seconds < 1 or a.runs < 1 or (a.threads is not None and a.threads < 1):
        p.error("seconds, --runs and --threads must be positive")
    chain = ChainConfig(31337, b"\x42" * 20, frozenset({oracle_address()}), 1)
    run = run_flow(FlowSpec(seconds=a.seconds), chain, 1_800_000_000)
    recovery: ThreadRecovery | RecoveryProcess = (
        RecoveryProcess() if a.threads is None else ThreadRecovery(a.threads)
    )
    label = "a recovery process" if a.threads is None else f"{a.threads} recovery threads"
    try:
        for grouped in (True, False):
            result = max((bench_replay(run, recovery=recovery, grouped=grouped) for _ in range(a.runs)),
                         key=lambda r: r.trades_per_s)
            recover = ecrecover_baseline_rate(4_000)
            mode = "grouped commits" if grouped else "commit per batch"
            print(f"replay ({mode}, {label}): {result.trades} trades in "
                  f"{result.batches} batches, {result.seconds:.2f} s: {result.trades_per_s:,.0f} trades/s; "
                  f"ecrecover {recover:,.0f}/s; ratio {result.trades_per_s / recover:.2f}")
    finally:
        recovery.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
