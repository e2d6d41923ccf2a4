"""The challenger process: follow L1, derive every batch, challenge wrong roots (docs/challenger.md §5).

``python -m challenger.cli --rpc URL --deployment deployment.json --genesis genesis.json
--data-dir DIR`` (the ``hfx challenger`` subcommand will call :func:`main`). The
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from challenger.player import Player
from challenger.web3_chain import Web3DisputeChain
from node.derive import Derivation, QueueItemMissing
from node.follower import FOREVER, Follower
from node.l1 import L1Client, is_transient
from node.l1_watch import write_atomic
from state.context import ChainConfig

log = logging.getLogger("hfx.challenger")


@dataclass(frozen=True)
class DeploymentInfo:
    """What the challenger reads from a deployment JSON (``l1_contracts.deploy.Deployment.to_json``)."""

    chain_id: int
    rollup: str
    bridge: str
    prover: str
    block: int
    genesis_root: bytes
    oracle_keys: tuple[str, ...]
    oracle_threshold: int

    @staticmethod
    def load(path: str | os.PathLike[str]) -> DeploymentInfo:
        """Read a deployment file."""
        raw = json.loads(Path(path).read_text())
        return DeploymentInfo(
            int(raw["chain_id"]), str(raw["rollup"]), str(raw["bridge"]), str(raw["prover"]),
            int(raw["block"]), _hex(raw["genesis_root"]), tuple(raw["oracle_keys"]),
            int(raw["oracle_threshold"]),
        )

    def chain(self) -> ChainConfig:
        """The STF's chain configuration of this deployment."""
        return ChainConfig(
            self.chain_id, _hex(self.rollup), frozenset(_hex(k) for k in self.oracle_keys), self.oracle_threshold
        )


def _hex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def load_genesis(path: str | os.PathLike[str]) -> dict[bytes, bytes]:
    """Genesis leaves from JSON: ``{"leaves": {"0x<32-byte key>": "0x<value>", ...}}``."""
    raw = json.loads(Path(path).read_text())
    return {_hex(k): _hex(v) for k, v in raw["leaves"].items()}


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
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def status(follower: Follower, player: Player) -> dict[str, Any]:
    """The process's status: the follower's and the player's."""
    return {"follower": follower.status(), "player": player.status(), "time": time.time()}


def main(argv: list[str] | None = None) -> int:
    """Run the challenger until SIGTERM/SIGINT or ``--max-seconds``."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = os.environ.get(args.key_env)
    if not key:
        print(f"error: set the challenger's private key in ${args.key_env}", file=sys.stderr)
        return 2
    d = DeploymentInfo.load(args.deployment)
    l1 = L1Client(args.rpc, depth=args.depth)
    if l1.chain_id != d.chain_id:
        print(f"error: {args.rpc} is chain {l1.chain_id}, the deployment is on {d.chain_id}", file=sys.stderr)
        return 2
    derivation = Derivation.open(args.data_dir, d.chain(), d.genesis_root, load_genesis(args.genesis))
    follower = Follower.over_bridge(l1, d.rollup, d.bridge, derivation, start_block=d.block)
    chain = Web3DisputeChain(l1, d.rollup, d.prover, Account.from_key(key), start_block=d.block)
    constants = chain.constants()
    budget = args.budget if args.budget is not None else 4 * constants.challenger_bond
    player = Player(chain, derivation, budget=budget)
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
            if args.status_file:
                write_atomic(Path(args.status_file), json.dumps(status(follower, player), indent=1))
            if report.idle:
                time.sleep(args.interval)
    finally:
        derivation.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
