"""The challenger process: follow L1, derive every batch, challenge wrong roots (docs/challenger.md §5).

``hfx challenger --rpc URL --deployment deployment.json --genesis genesis.json
--data-dir DIR`` runs it; ``hfx challenger status --data-dir DIR`` (or
``--status-file FILE``) prints its games and bond budget. The
private key is read from the environment variable named by ``--key-env``
(default ``HFX_CHALLENGER_KEY``), never from the command line. One loop, one
thread: a follower poll (node.follower), then a player tick
(challenger.player), then the status file; it sleeps ``--interval`` only
when the follower is caught up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from challenger.metrics import MetricsEndpoint
from challenger.player import Player
from challenger.web3_chain import Web3DisputeChain
from node.deployment import DeploymentFileError, DeploymentInfo, load_genesis
from node.derive import Derivation, QueueItemMissing
from node.follower import FOREVER, Follower
from node.l1 import L1Client, is_transient
from node.l1_watch import write_atomic

log = logging.getLogger("hfx.challenger")

__all__ = ["DeploymentInfo", "format_status", "load_genesis", "main", "parse_args", "status", "status_command"]

STATUS_NAME = "status.json"
"""The status file every challenger keeps in its data directory (besides ``--status-file``)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="hfx challenger", description="HFX challenger: re-executes every batch, disputes wrong roots")
    p.add_argument("--rpc", required=True, help="L1 JSON-RPC URL")
    p.add_argument("--deployment", required=True, help="deployment JSON (addresses, genesis root, oracle keys)")
    p.add_argument("--genesis", required=True, help='genesis leaves JSON: {"leaves": {key: value}}')
    p.add_argument("--data-dir", required=True, help="directory of the state and the derivation records")
    p.add_argument("--key-env", default="HFX_CHALLENGER_KEY", help="environment variable holding the private key")
    p.add_argument("--depth", type=int, default=0, help="L1 confirmation depth (0 on an automining devnet)")
    p.add_argument("--budget", type=int, default=None, help="most wei of bond locked in games at once (default 4 bonds)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between ticks once caught up")
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0: run until SIGTERM)")
    p.add_argument("--status-file", default=None, help="write the status as JSON here after every tick")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus /metrics and /health on this port (0: any free port; default: off)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics endpoint binds")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def status(follower: Follower, player: Player) -> dict[str, Any]:
    """The process's status: the follower's and the player's."""
    return {"follower": follower.status(), "player": player.status(), "time": time.time()}


def _eth(wei: int) -> str:
    return f"{wei / 10**18:.4f} ETH"


def format_status(st: dict[str, Any], now: float | None = None) -> str:
    """A challenger status document (its status file) as text for an operator."""
    now = time.time() if now is None else now
    f = st.get("follower", {})
    p = st.get("player", {})
    lines = [
        f"challenger {p.get('address', '?')}  (status written {now - float(st.get('time', now)):.0f} s ago)",
        f"L1 block {f.get('l1_block')}  head batch {f.get('head')}  {f.get('head_root') or ''}".rstrip(),
        f"bond: budget {_eth(int(p.get('budget', 0)))}, locked {_eth(int(p.get('locked', 0)))}, "
        f"free on the rollup {_eth(int(p.get('free_bond', 0)))}, per game {_eth(int(p.get('challenger_bond', 0)))}",
    ]
    active = p.get("active", [])
    lines.append(f"active games: {len(active)}")
    for g in active:
        lo, hi = g.get("range", ["?", "?"])
        lines.append(
            f"  game {g.get('game')} on batch {g.get('batch')}: steps [{lo}, {hi}], round {g.get('round')}, "
            f"turn {g.get('turn')}, clock left {g.get('clock_left')} s{' — ' + g['note'] if g.get('note') else ''}"
        )
    for name in ("won", "lost", "cancelled"):
        lines.append(f"{name}: {', '.join(str(x) for x in p.get(name, [])) or '-'}")
    for batch, why in p.get("skipped", {}).items():
        lines.append(f"skipped batch {batch}: {why}")
    if p.get("errors"):
        lines.append(f"errors: {p['errors']}")
    if f.get("last_error"):
        lines.append(f"follower error: {f['last_error']}")
    return "\n".join(lines)


def status_command(argv: list[str]) -> int:
    """``hfx challenger status``: print a running (or stopped) challenger's games and bond budget."""
    p = argparse.ArgumentParser(prog="hfx challenger status", description="print a challenger's games and bond budget")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="the challenger's data directory (reads its status.json)")
    where.add_argument("--status-file", help="the challenger's --status-file")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    args = p.parse_args(argv)
    path = Path(args.status_file) if args.status_file else Path(args.data_dir) / STATUS_NAME
    try:
        st = json.loads(path.read_text())
    except OSError as exc:
        print(f"error: no challenger status at {path} ({exc.strerror})", file=sys.stderr)
        return 2
    except ValueError:
        print(f"error: {path} is not a challenger status file", file=sys.stderr)
        return 2
    if not isinstance(st, dict) or "player" not in st:
        print(f"error: {path} is not a challenger status file", file=sys.stderr)
        return 2
    print(json.dumps(st, indent=1) if args.json else format_status(st))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the challenger until SIGTERM/SIGINT or ``--max-seconds`` (``status ...``: print its status)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "status":
        return status_command(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = os.environ.get(args.key_env)
    if not key:
        print(f"error: set the challenger's private key in ${args.key_env}", file=sys.stderr)
        return 2
    try:
        d = DeploymentInfo.load(args.deployment)
        genesis = load_genesis(args.genesis)
    except DeploymentFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    l1 = L1Client(args.rpc, depth=args.depth)
    if l1.chain_id != d.chain_id:
        print(f"error: {args.rpc} is chain {l1.chain_id}, the deployment is on {d.chain_id}", file=sys.stderr)
        return 2
    derivation = Derivation.open(args.data_dir, d.chain(), d.genesis_root, genesis)
    follower = Follower.over_bridge(l1, d.rollup, d.bridge, derivation, start_block=d.block)
    chain = Web3DisputeChain(l1, d.rollup, d.prover, Account.from_key(key), start_block=d.block)
    constants = chain.constants()
    budget = args.budget if args.budget is not None else 4 * constants.challenger_bond
    player = Player(chain, derivation, budget=budget)
    endpoint = None if args.metrics_port is None else MetricsEndpoint(args.metrics_host, args.metrics_port)
    if endpoint is not None:
        log.info("challenger metrics on http://%s:%d/metrics", args.metrics_host, endpoint.port)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    end = time.monotonic() + args.max_seconds if args.max_seconds > 0 else None
    log.info("challenger %s following rollup %s from block %d", chain.address, d.rollup, d.block)
    delays = FOREVER.delays()
    try:
        while not stopping and (end is None or time.monotonic() < end):
            try:
                report = follower.poll()
                player.tick()
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, QueueItemMissing)):
                    raise
                delay = next(delays, FOREVER.max_delay)
                log.warning("L1 not answering (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                continue
            delays = FOREVER.delays()
            doc = status(follower, player)
            if endpoint is not None:
                endpoint.publish(doc)
            text = json.dumps(doc, indent=1)
            write_atomic(Path(args.data_dir) / STATUS_NAME, text)
            if args.status_file:
                write_atomic(Path(args.status_file), text)
            if report.idle:
                time.sleep(args.interval)
    finally:
        if endpoint is not None:
            endpoint.close()
        derivation.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
