"""``hfx node``: follow L1, rebuild the L2 from L1 alone, serve read-only JSON-RPC (docs/node.md §7).

::

    hfx node --rpc http://127.0.0.1:8545 --deployment deployment.json --genesis genesis.json \\
        --data-dir node/ [--rpc-host 127.0.0.1] [--rpc-port 8547] [--depth 12] [--interval 1.0] \\
        [--status-file FILE] [--propose [--oracle-file FILE]] [--finalize] [--key-env HFX_PROPOSER_KEY]

One event loop serves JSON-RPC (:class:`node.rpc_api.NodeApi` on
:class:`node.rpc.RpcServer`, with ``/health`` and ``/metrics``); one thread
owns the derivation (:class:`node.rpc_api.DerivationThread`) and runs the
follower's polls and every read, in turn. Progress is on disk
(node/derive.py), so a restart — after SIGTERM or SIGKILL — resumes where the
last poll ended; reorganisations deeper than ``--depth`` are rolled back by
the follower. With ``--propose`` the node is also a fallback proposer, with
``--finalize`` a finalizer (node/fallback.py); with ``--oracle-file`` the
proposer starts its batches with a fresh signed oracle update from an oracle
feeder's published file (``hfx oracle-feeder --publish-file``). Both sign
with the key in the environment variable named by ``--key-env``, never from
the command line.
SIGINT/SIGTERM stop the RPC server first, then the loop, then close the
derivation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from l1_contracts.bindings import BatchStatus
from node.batches import Verdict
from node.deployment import DeploymentFileError, DeploymentInfo, load_genesis
from node.derive import Derivation, DerivationError, QueueItemMissing
from node.fallback import FallbackError, FallbackProposer, Finalizer, OracleFeed
from node.follower import FOREVER, Follower, PollReport
from node.l1 import L1Client, L1Error, error_code, is_transient
from node.l1_watch import write_atomic
from node.rpc import RpcServer
from node.rpc_api import STATUS_NAMES, DerivationThread, NodeApi, batch_json

log = logging.getLogger("hfx.node")

__all__ = ["NodeProcess", "main", "parse_args"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of ``hfx node``."""
    p = argparse.ArgumentParser(prog="hfx node", description="HFX node: rebuilds the L2 from L1 alone, serves read-only JSON-RPC")
    p.add_argument("--rpc", required=True, help="L1 JSON-RPC URL")
    p.add_argument("--deployment", required=True, help="deployment JSON (addresses, genesis root, oracle keys)")
    p.add_argument("--genesis", required=True, help='genesis leaves JSON: {"leaves": {key: value}}')
    p.add_argument("--data-dir", required=True, help="directory of the state and the derivation records")
    p.add_argument("--rpc-host", default="127.0.0.1", help="JSON-RPC bind address")
    p.add_argument("--rpc-port", type=int, default=8547, help="JSON-RPC port (0: any free port)")
    p.add_argument("--depth", type=int, default=12, help="L1 confirmation depth (0 on an automining devnet)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls once caught up")
    p.add_argument("--max-blocks", type=int, default=2_000, help="most L1 blocks read per poll")
    p.add_argument("--status-file", default=None, help="write the status as JSON here after every poll")
    p.add_argument("--propose", action="store_true",
                   help="post fallback batches of queued L1 items once the operator has been silent for the fallback period")
    p.add_argument("--oracle-file", default=None,
                   help="with --propose: the JSON file an oracle feeder publishes (hfx oracle-feeder --publish-file); "
                        "each fallback batch starts with its newest update the STF accepts")
    p.add_argument("--finalize", action="store_true", help="call finalize on batches whose challenge window has passed")
    p.add_argument("--key-env", default="HFX_PROPOSER_KEY", help="environment variable holding the key for --propose/--finalize")
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0: run until SIGTERM)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.depth < 0 or args.interval <= 0 or args.max_blocks < 1 or not 0 <= args.rpc_port < 65536:
        p.error("--depth must be >= 0, --interval > 0, --max-blocks >= 1, --rpc-port in [0, 65535]")
    if args.oracle_file is not None and not args.propose:
        p.error("--oracle-file is read by the fallback proposer: it needs --propose")
    return args


class NodeProcess:
    """The running node: ``await start()`` (returns the RPC port), ``await stop()``."""

    def __init__(self, args: argparse.Namespace, deployment: DeploymentInfo, genesis: dict[bytes, bytes],
                 key: str | None = None) -> None:
        self.args = args
        self.deployment = deployment
        self.genesis = genesis
        self.key = key
        self.l1 = L1Client(args.rpc, depth=args.depth)
        self.thread: DerivationThread | None = None
        self.follower: Follower | None = None
        self.proposer: FallbackProposer | None = None
        self.finalizer: Finalizer | None = None
        self.server = RpcServer(health=self._health)
        self.server.add_topic("batches")
        self.api: NodeApi | None = None
        self.fatal: str | None = None
        self.last_error = ""
        self.caught_up = False
        self.resumed_from: int | None = None
        self.port: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._declare_metrics()

    # -------------------------------------------------------- lifecycle

    async def start(self) -> int:
        """Open the derivation, start the follower loop and the RPC server."""
        d, args = self.deployment, self.args
        if self.l1.chain_id != d.chain_id:
            raise DerivationError(f"{args.rpc} is chain {self.l1.chain_id}, the deployment is on {d.chain_id}")

        def opener() -> Derivation:
            return Derivation.open(args.data_dir, d.chain(), d.genesis_root, self.genesis)

        self.thread = await asyncio.to_thread(DerivationThread, opener)
        progress = self.thread.call(lambda d: d.progress())
        self.resumed_from = None if progress is None else progress[0]
        self.follower = Follower.over_bridge(self.l1, d.rollup, d.bridge, self.thread.derivation,
                                             start_block=d.block, depth=args.depth, max_blocks=args.max_blocks)
        if self.key is not None:
            account = Account.from_key(self.key)
            if args.propose:
                feed = None if args.oracle_file is None else OracleFeed(args.oracle_file)
                self.proposer = await asyncio.to_thread(
                    FallbackProposer, self.l1, d.rollup, d.bridge, account, d.chain(), feed)
            if args.finalize:
                self.finalizer = Finalizer(self.l1, d.rollup, account)
        info = {
            "chainId": d.chain_id, "rollup": d.rollup.lower(), "bridge": d.bridge.lower(),
            "prover": d.prover.lower(), "deploymentBlock": d.block, "genesisRoot": "0x" + d.genesis_root.hex(),
            "oracleKeys": [k.lower() for k in d.oracle_keys], "oracleThreshold": d.oracle_threshold,
        }
        self.api = NodeApi(self.server, self.thread, info, self._sync_extra)
        self._task = asyncio.create_task(self._loop())
        self.port = await self.server.start(args.rpc_host, args.rpc_port)
        log.info("node serving JSON-RPC on %s:%d, following rollup %s from block %d (depth %d)",
                 args.rpc_host, self.port, d.rollup, d.block, args.depth)
        return self.port

    async def stop(self) -> None:
        """Stop the RPC server, the loop, and close the derivation."""
        await self.server.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.thread is not None:
            await asyncio.to_thread(self.thread.close)
            self.thread = None
        log.info("node stopped")

    async def run_until_signal(self, max_seconds: float = 0.0) -> int:
        """Start, run until SIGINT/SIGTERM, ``max_seconds`` or a fatal error, stop; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopped.set)
        await self.start()
        try:
            if max_seconds > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), max_seconds)
            else:
                await self._stopped.wait()
        finally:
            await self.stop()
        return 1 if self.fatal else 0

    # -------------------------------------------------------- the loop

    def _tick(self, d: Derivation) -> tuple[PollReport, list[dict[str, Any]], dict[str, Any]]:
        """(derivation thread) One poll; once caught up, the proposer and the finalizer; a status snapshot."""
        assert self.follower is not None  # noqa: S101
        report = self.follower.poll()
        if report.idle:
            self.caught_up = True
            if self.proposer is not None:
                try:
                    self.proposer.tick(d)
                except (L1Error, FallbackError) as exc:
                    self.last_error = f"fallback proposer: {error_code(exc) or exc}"
                    log.warning("%s", self.last_error)
            if self.finalizer is not None:
                self.finalizer.tick(d)
        else:
            self.caught_up = False
        changed = sorted({*report.posted, *report.removed, *report.finalized})
        records = [batch_json(r) for r in (d.record(i) for i in changed) if r is not None]
        head = d.head
        final = max((r.index for r in d.records(0, status=BatchStatus.FINAL)), default=0)
        snapshot = {
            "follower": self.follower.status(),
            "final": final,
            "pending": len(d.records(final + 1, status=BatchStatus.PENDING)),
            "headStatus": None if head is None else STATUS_NAMES[head.l1_status],
            "mismatched": sum(1 for r in records if r["status"] == "pending" and r["verdict"] != Verdict.MATCH.name),
        }
        return report, records, snapshot

    async def _loop(self) -> None:
        assert self.thread is not None  # noqa: S101
        delays = FOREVER.delays()
        m = self.server.metrics
        while True:
            try:
                report, records, snap = await self.thread.run(self._tick)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, QueueItemMissing)):
                    self.fatal = f"{type(exc).__name__}: {exc}"
                    log.exception("the follower stopped: only an operator can decide what to do")
                    self._stopped.set()
                    return
                self.last_error = f"{type(exc).__name__}: {exc}"
                m.inc("hfx_node_poll_errors_total")
                delay = next(delays, FOREVER.max_delay)
                log.warning("L1 not answering (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            delays = FOREVER.delays()
            m.inc("hfx_node_polls_total")
            m.inc("hfx_node_batches_derived_total", amount=len(report.posted))
            m.inc("hfx_node_batches_removed_total", amount=len(report.removed))
            m.inc("hfx_node_batches_finalized_total", amount=len(report.finalized))
            m.inc("hfx_node_disputable_batches_total", amount=snap["mismatched"])
            follower = snap["follower"]
            m.set("hfx_node_l1_block", float(follower["l1_block"]))
            m.set("hfx_node_head_batch", float(follower["head"] or 0))
            m.set("hfx_node_final_batch", float(snap["final"]))
            m.set("hfx_node_pending_batches", float(snap["pending"]))
            if self.proposer is not None:
                m.set("hfx_node_fallback_batches", float(len(self.proposer.proposed)))
            if self.finalizer is not None:
                m.set("hfx_node_finalized_by_node", float(len(self.finalizer.finalized)))
            for r in records:
                self.server.publish("batches", r)
            if self.args.status_file:
                status = {**snap, **self._sync_extra(), "time": time.time()}
                await asyncio.to_thread(write_atomic, Path(self.args.status_file), json.dumps(status, indent=1))
            if report.idle:
                await asyncio.sleep(self.args.interval)

    # -------------------------------------------------------- status, health, metrics

    def _sync_extra(self) -> dict[str, Any]:
        f = self.follower
        return {
            "depth": self.args.depth,
            "polls": 0 if f is None else f.polls,
            "resumedFrom": self.resumed_from,
            "caughtUp": self.caught_up,
            "lastError": self.last_error or None,
            "fatal": self.fatal,
            "proposer": None if self.proposer is None else self.proposer.status(),
            "finalizer": None if self.finalizer is None else self.finalizer.status(),
        }

    async def _health(self) -> dict[str, Any]:
        if self.fatal:
            raise RuntimeError(self.fatal)
        f = self.follower
        return {"polls": 0 if f is None else f.polls, "caughtUp": self.caught_up}

    def _declare_metrics(self) -> None:
        m = self.server.metrics
        for name, text in (
            ("hfx_node_polls_total", "Follower polls of L1."),
            ("hfx_node_poll_errors_total", "Polls that failed on a transient L1 error (retried)."),
            ("hfx_node_batches_derived_total", "Posted batches derived."),
            ("hfx_node_batches_removed_total", "Batches removed by a lost dispute."),
            ("hfx_node_batches_finalized_total", "Batches seen finalized."),
            ("hfx_node_disputable_batches_total", "Derived batches whose posted root is not the node's."),
        ):
            m.counter(name, text)
        for name, text in (
            ("hfx_node_l1_block", "Last L1 block fully processed."),
            ("hfx_node_head_batch", "Index of the derived head batch."),
            ("hfx_node_final_batch", "Index of the newest final batch."),
            ("hfx_node_pending_batches", "Derived batches still pending."),
            ("hfx_node_fallback_batches", "Fallback batches posted by this node."),
            ("hfx_node_finalized_by_node", "finalize calls sent by this node."),
        ):
            m.gauge(name, text)


def main(argv: list[str] | None = None) -> int:
    """Run the node until SIGTERM/SIGINT (or ``--max-seconds``); 2 on a usage error, 1 on a fatal one."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = None
    if args.propose or args.finalize:
        key = os.environ.get(args.key_env)
        if not key:
            print(f"error: --propose/--finalize need the account's private key in ${args.key_env}", file=sys.stderr)
            return 2
    try:
        deployment = DeploymentInfo.load(args.deployment)
        genesis = load_genesis(args.genesis)
    except DeploymentFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        node = NodeProcess(args, deployment, genesis, key)
        return await node.run_until_signal(args.max_seconds)

    try:
        return asyncio.run(run())
    except DerivationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
