"""``hfx devnet``: a whole local exchange in one command (docs/devnet.md).

Starts a local L1 (anvil; or uses ``--l1-rpc``), deploys the contracts with
devnet constants (a 30-second challenge window), then runs, each as its own
``hfx`` process in its own process group with its log in ``DIR/logs/``:

1. ``hfx sequencer --config DIR/sequencer.toml``;
2. ``hfx challenger`` (its status in ``DIR/challenger/status.json``);
3. ``hfx node``, when this installation has it;
4. ``hfx oracle-feeder`` (a random walk signed with the devnet oracle keys);
   when it is not available, the sequencer's built-in constant-price devnet
   oracle (``[dev_oracle]``) is configured instead;
5. ``hfx demo-traders`` (funded and deposited on L1 first);
6. ``hfx liquidator`` with its own account (anvil account 3, its collateral
   minted and deposited on the bridge right after the deployment), so that an
   account that falls below its maintenance margin is liquidated.

Then it prints a summary every few seconds (L1 block, batches closed, posted
and final, trades, liquidations, open dispute games, URLs) until SIGINT or SIGTERM, and
stops every process it started — children first, in reverse order, each
with SIGINT to its process group, then SIGTERM, then SIGKILL — and anvil
last. Children also get SIGTERM if this process dies (Linux
``PR_SET_PDEATHSIG``).

The orchestration reads only files and JSON-RPC; it imports no sequencer or
challenger code (imports point ``node ← sequencer``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.anvil import DEV_KEYS, Anvil, AnvilError, anvil_available, free_port, port_free
from node.rpc import RpcError
from node.rpc_client import RpcTransportError, SyncRpcClient

__all__ = ["Child", "DevnetError", "main", "sequencer_toml", "summarize"]

MARKER = ".hfx-devnet"
"""A file that marks a directory as a devnet's (so that a new run may wipe it)."""
DEPLOYER_KEY = DEV_KEYS[0]
"""Deploys, is the collateral token's minter, and funds the demo traders."""
OPERATOR_KEY = DEV_KEYS[1]
"""The sequencer's publisher (posts batches, holds the proposer bond)."""
CHALLENGER_KEY = DEV_KEYS[2]
LIQUIDATOR_KEY = DEV_KEYS[3]
"""``hfx liquidator``'s key: its collateral is minted by the deployer and deposited after the deployment."""
LIQUIDATOR_DEPOSIT = 1_000_000 * 10**6
"""Collateral units the liquidator deposits (it takes liquidated positions over at the mark)."""
LIQUIDATIONS_METRIC = "hfx_sequencer_liquidations_total"
ORACLE_KEYS = 3
SPOTS = {0: 3_000_000, 1: 60_000_000}
"""Starting index prices of the devnet's two underlyings (ETH, BTC), 6 decimals."""
CONSTANT_MARKS = {0: 3_000_000, 1: 60_000_000, 2: 40_000, 3: 30_000}
IVS = {2: 600_000, 3: 600_000}


class DevnetError(RuntimeError):
    """The devnet cannot start: a directory that is not a devnet's, no anvil, a process that died."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort: stop() still applies
        pass


class Child:
    """One ``hfx`` subprocess in its own process group, its output in ``log``."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        """Spawn it (a new session: terminal signals reach only the devnet, which forwards them)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(  # fixed argv, no shell
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        return self

    @property
    def pid(self) -> int:
        """Its process id (also its process group id)."""
        if self.proc is None:
            raise DevnetError(f"{self.name} was not started")
        return self.proc.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """Its exit code once it has ended."""
        return None if self.proc is None else self.proc.poll()

    def tail(self, chars: int = 1500) -> str:
        """The end of its log."""
        try:
            return self.log.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def group_alive(self) -> bool:
        """Whether any process of its group is left."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace: float = 20.0) -> None:
        """SIGINT to the group, then SIGTERM, then SIGKILL; returns once the group is gone."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is None:
                self._signal(sig)
                try:
                    self.proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
        self._signal(signal.SIGKILL)  # anything the child left in its group
        deadline = time.monotonic() + 5
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def hfx(*args: str) -> list[str]:
    """The argv of ``hfx ARGS`` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "node.cli", *args]


def sequencer_toml(
    *, data_dir: Path, port: int, l1_url: str, deployment: Path, operator_key: str,
    genesis: dict[str, Any], dev_oracle_keys: Sequence[bytes] = (), confirmations: int = 1,
) -> str:
    """The sequencer's configuration (docs/sequencer.example.toml) for a devnet.

    ``genesis`` is the genesis file's document (``l1_contracts.deploy_cli``);
    with ``dev_oracle_keys`` the sequencer signs constant prices itself."""
    q = json.dumps  # a JSON string is a TOML basic string
    lines = [
        f"data_dir = {q(str(data_dir))}", 'log_level = "INFO"', "",
        "[rpc]", 'host = "127.0.0.1"', f"port = {port}", "",
        "[l1]", f"url = {q(l1_url)}", f"deployment = {q(str(deployment))}", f"operator_key = {q(operator_key)}",
        f"confirmations = {confirmations}", "poll_interval = 0.5", "publish_interval = 0.5", "",
        "[batch]", "max_age_seconds = 2", "max_bytes = 120000", "",
        # the age limit follows the batching model and anvil's gas price (docs/batching.md §5),
        # kept short so that the devnet shows batches within seconds
        "[batcher]", "adaptive = true", "min_age = 1", "max_age = 10", "",
        "[genesis]", f"time = {int(genesis['time'])}", "", "[genesis.config]",
        *(f"{k} = {int(v)}" for k, v in genesis["config"].items()), "",
    ]
    for m in genesis["markets"]:
        lines.append("[[genesis.markets]]")
        lines += [f"{k} = {q(v)}" if isinstance(v, str) else f"{k} = {int(v)}" for k, v in m.items()]
        lines.append("")
    if dev_oracle_keys:
        def table(d: dict[int, int]) -> str:
            return "{ " + ", ".join(f"{k} = {v}" for k, v in sorted(d.items())) + " }"

        n = len(genesis["markets"])
        lines += [
            "[dev_oracle]", "keys = [" + ", ".join(f'"0x{k.hex()}"' for k in dev_oracle_keys) + "]",
            "interval = 1", f"marks = {table({m: p for m, p in CONSTANT_MARKS.items() if m < n})}",
            f"spots = {table(SPOTS)}", f"ivs = {table({m: v for m, v in IVS.items() if m < n})}", "",
        ]
    return "\n".join(lines)


def _status_head(path: Path | None) -> int | None:
    """The derivation head (rollup batch id) in a challenger's or node's status file."""
    if path is None or not path.exists():
        return None
    try:
        head = json.loads(path.read_text())["follower"]["head"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if head is None else int(head)


def metric_value(url: str, name: str, timeout: float = 2.0) -> int | None:
    """The value of an unlabelled counter in the Prometheus text at ``url``: 0 when it is declared
    without a sample yet (never incremented), None when the page is unreadable or does not declare it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own loopback URL
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    declared = False
    for line in text.splitlines():
        parts = line.split()
        if parts[:3] == ["#", "TYPE", name]:
            declared = True
        elif len(parts) == 2 and parts[0] == name:
            try:
                return int(float(parts[1]))
            except ValueError:
                return None
    return 0 if declared else None


def summarize(rpc: SyncRpcClient, challenger_status: Path | None,
              node_status: Path | None = None, metrics_url: str | None = None) -> dict[str, Any]:
    """Counters for the summary line, from the sequencer's JSON-RPC and ``/metrics`` and the status files."""
    out: dict[str, Any] = {}
    status = rpc.call("hfx_syncStatus")
    pub = status.get("publisher") or {}
    final = int(pub.get("finalIndex", -1)) + 1 if pub else 0
    out["closed"] = int(status["nextBatchIndex"])
    out["l1_head"] = pub.get("l1Head")
    batches = rpc.call("hfx_getBatches", {"limit": 100})["batches"]
    posted = [int(b["index"]) for b in batches
              if b.get("l1") and b["l1"]["state"] in ("posted", "confirmed", "final")]
    out["posted"] = max([final, *(i + 1 for i in posted)])
    out["final"] = final
    out["halted"] = pub.get("halted")
    fills = rpc.call("hfx_getFills", {"limit": 1})["fills"]
    out["trades"] = int(fills[0]["id"]) + 1 if fills else 0
    out["liquidations"] = None if metrics_url is None else metric_value(metrics_url, LIQUIDATIONS_METRIC)
    out["open_games"] = None
    if challenger_status is not None and challenger_status.exists():
        try:
            ch = json.loads(challenger_status.read_text())
            out["open_games"] = len(ch["player"]["active"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    out["challenger_head"] = _status_head(challenger_status)
    out["node_head"] = _status_head(node_status)
    return out


def format_summary(elapsed: float, s: dict[str, Any]) -> str:
    """One line: ``[devnet +42s] L1 block … | batches: c closed, p posted, f final | trades: t |
    liquidations: l | …``."""
    games = "?" if s.get("open_games") is None else str(s["open_games"])
    liquidations = "?" if s.get("liquidations") is None else str(s["liquidations"])
    line = (f"[devnet +{elapsed:.0f}s] L1 block {s.get('l1_head')} | batches: {s['closed']} closed, "
            f"{s['posted']} posted, {s['final']} final | trades: {s['trades']} | "
            f"liquidations: {liquidations} | open games: {games}")
    if s.get("challenger_head") is not None:
        line += f" | challenger at batch {s['challenger_head']}"
    if s.get("node_head") is not None:
        line += f" | node at batch {s['node_head']}"
    if s.get("halted"):
        line += f" | PUBLISHER HALTED: {s['halted']}"
    return line


def _wait(what: str, fn: Callable[[], Any], timeout: float, child: Child | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
        except (RpcError, RpcTransportError, OSError):
            value = None
        if value:
            return value
        if child is not None and not child.alive():
            raise DevnetError(f"{child.name} exited ({child.exit_code()}) while waiting for {what}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise DevnetError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def _help_text(name: str) -> str | None:
    """``hfx NAME --help``'s output, or None when the command is not available here."""
    try:
        done = subprocess.run(hfx(name, "--help"), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _port(preferred: int) -> int:
    if preferred == 0:
        return free_port()
    return preferred if port_free(preferred) else free_port()


@dataclass
class Options:
    """The command line, parsed."""

    l1_rpc: str | None
    data_dir: Path
    l1_port: int
    rpc_port: int
    node_port: int
    makers: int
    takers: int
    summary_interval: float
    max_seconds: float | None
    challenge_window: int = 30


class Devnet:
    """Start, watch and stop one devnet."""

    def __init__(self, opts: Options, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.dir = opts.data_dir.resolve()
        self.anvil: Anvil | None = None
        self.children: list[Child] = []
        self.l1_url = ""
        self.seq_url = ""
        self.node_url: str | None = None
        self.started = time.monotonic()

    # ---------------------------------------------------------------- set-up

    def prepare_dir(self) -> None:
        """Wipe a previous devnet's directory (only one marked as such); refuse any other non-empty one."""
        d = self.dir
        if d.exists() and any(d.iterdir()):
            if not (d / MARKER).exists():
                raise DevnetError(f"{d} is not empty and not a devnet directory: choose another --data-dir")
            shutil.rmtree(d)
        (d / "logs").mkdir(parents=True, exist_ok=True)
        (d / MARKER).write_text("created by hfx devnet; wiped by the next run\n")

    def start_l1(self) -> None:
        """anvil on 127.0.0.1 (automine for the deployment), or the given URL."""
        if self.opts.l1_rpc:
            self.l1_url = self.opts.l1_rpc
            self.say(f"using the L1 at {self.l1_url}")
            return
        if not anvil_available():
            raise DevnetError("anvil is not installed: run `npm install` at the repository root (scripts/devnet does)")
        self.anvil = Anvil(port=_port(self.opts.l1_port))
        self.anvil.start()
        self.l1_url = self.anvil.url
        self.say(f"L1: anvil at {self.l1_url} (pid {self.anvil.pid})")

    def deploy(self) -> dict[str, Any]:
        """Deploy the contracts; write deployment.json and genesis.json; returns the genesis document."""
        from l1_contracts.deploy_cli import (
            DEVNET_FAST,
            DeployError,
            deploy_devnet,
            devnet_oracle_private_keys,
        )
        from state.eip712 import address_of

        oracles = sorted((address_of(k) for k in devnet_oracle_private_keys(ORACLE_KEYS)),
                         key=lambda a: int.from_bytes(a, "big"))
        self.say("deploying the contracts (the first run compiles the one-step prover: ~30 s)")
        t = time.monotonic()
        try:
            d, params = deploy_devnet(
                self.l1_url, DEPLOYER_KEY, None,
                DEVNET_FAST.with_(challenge_window=self.opts.challenge_window),
                oracle_keys=["0x" + a.hex() for a in oracles], threshold=1,
                operator=_address(OPERATOR_KEY),
            )
        except DeployError as exc:
            raise DevnetError(str(exc)) from None
        (self.dir / "deployment.json").write_text(d.to_json())
        doc = params.to_json()
        (self.dir / "genesis.json").write_text(doc)
        self.say(f"deployed in {time.monotonic() - t:.0f} s: rollup {d.rollup}, bridge {d.bridge}, "
                 f"token {d.token}; challenge window {d.config.challenge_window} s")
        self.fund_liquidator(d.token, d.bridge)
        if self.anvil is not None:
            self.anvil.set_interval_mining(1)  # from now on a block a second, like a real chain
        parsed: dict[str, Any] = json.loads(doc)
        return parsed

    def fund_liquidator(self, token: str, bridge: str) -> None:
        """Mint the liquidator's collateral (the deployer is the token's minter) and deposit it on the
        bridge from the liquidator's account; the sequencer credits it like any deposit."""
        from eth_account import Account
        from web3 import Web3
        from web3.exceptions import Web3Exception

        from l1_contracts.bindings import BridgeClient, L1Error, TokenClient, Transactor

        w3 = Web3(Web3.HTTPProvider(self.l1_url, request_kwargs={"timeout": 30}))
        try:
            minter = Transactor(w3, Account.from_key(DEPLOYER_KEY), timeout=60)
            own = Transactor(w3, Account.from_key(LIQUIDATOR_KEY), timeout=60)
            TokenClient(w3, token, minter).mint(own.address, LIQUIDATOR_DEPOSIT)
            TokenClient(w3, token, own).approve(bridge, LIQUIDATOR_DEPOSIT)
            BridgeClient(w3, bridge, own).deposit(LIQUIDATOR_DEPOSIT)
        except (L1Error, Web3Exception, OSError, ValueError) as exc:
            raise DevnetError(f"funding the liquidator's account: {exc}") from None
        self.say(f"liquidator {own.address}: {LIQUIDATOR_DEPOSIT / 10**6:,.0f} collateral deposited")

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        """Start a child and remember it for the shutdown."""
        child = Child(name, argv, self.dir / "logs" / f"{name}.log", env).start()
        self.children.append(child)
        self.say(f"started {name} (pid {child.pid}), log {child.log}")
        return child

    def start_sequencer(self, genesis: dict[str, Any], own_oracle: bool) -> Child:
        """Write the TOML and start ``hfx sequencer``; wait for its JSON-RPC."""
        from l1_contracts.deploy_cli import devnet_oracle_private_keys

        port = _port(self.opts.rpc_port)
        toml = self.dir / "sequencer.toml"
        toml.write_text(sequencer_toml(
            data_dir=self.dir / "sequencer", port=port, l1_url=self.l1_url,
            deployment=self.dir / "deployment.json", operator_key=OPERATOR_KEY, genesis=genesis,
            dev_oracle_keys=devnet_oracle_private_keys(ORACLE_KEYS) if own_oracle else (),
        ))
        child = self.spawn("sequencer", hfx("sequencer", "--config", str(toml)))
        self.seq_url = f"http://127.0.0.1:{port}/"
        rpc = SyncRpcClient(self.seq_url, timeout=5)
        try:
            _wait("the sequencer's JSON-RPC", lambda: rpc.call("hfx_chainInfo"), 90, child)
        finally:
            rpc.close()
        self.say(f"sequencer JSON-RPC at {self.seq_url}")
        return child

    def start_challenger(self) -> None:
        """``hfx challenger`` with its own key and data directory."""
        self.spawn("challenger", hfx(
            "challenger", "--rpc", self.l1_url, "--deployment", str(self.dir / "deployment.json"),
            "--genesis", str(self.dir / "genesis.json"), "--data-dir", str(self.dir / "challenger"),
            "--depth", "1", "--status-file", str(self.dir / "challenger" / "status.json"),
        ), {"HFX_CHALLENGER_KEY": CHALLENGER_KEY})

    def start_node(self) -> None:
        """``hfx node`` when this installation has it; otherwise say so and go on."""
        if _help_text("node") is None:
            self.say("hfx node is not available in this installation: running without a read node")
            return
        port = _port(self.opts.node_port)
        child = self.spawn("node", hfx(
            "node", "--rpc", self.l1_url, "--deployment", str(self.dir / "deployment.json"),
            "--genesis", str(self.dir / "genesis.json"), "--data-dir", str(self.dir / "node"),
            "--rpc-host", "127.0.0.1", "--rpc-port", str(port), "--depth", "1",
            "--status-file", str(self.dir / "node" / "status.json"),
        ))
        self.node_url = f"http://127.0.0.1:{port}/"
        time.sleep(2)
        if not child.alive():
            self.say(f"hfx node exited ({child.exit_code()}); running without a read node:\n{child.tail(600)}")
            self.node_url = None
        else:
            self.say(f"node JSON-RPC at {self.node_url}")

    def start_feeder(self) -> Child:
        """``hfx oracle-feeder``: a random walk from :data:`SPOTS`, signed with the devnet oracle keys,
        also published to ``oracle-feed.json`` (the feed a fallback proposer's ``--oracle-file`` reads)."""
        spots = [arg for u, p in sorted(SPOTS.items()) for arg in ("--spot", f"{u}={p}")]
        return self.spawn("oracle-feeder", hfx("oracle-feeder", "--rpc", self.seq_url, "--devnet-keys",
                                        str(ORACLE_KEYS), *spots, "--seed", "1", "--max-move-bps", "10",
                                        "--interval", "1", "--publish-file", str(self.dir / "oracle-feed.json")))

    def wait_prices(self, child: Child | None) -> bool:
        """Whether the sequencer has oracle prices within 20 s."""
        rpc = SyncRpcClient(self.seq_url, timeout=5)
        try:
            _wait("oracle prices", lambda: rpc.call("hfx_getMarkets")["markets"][0]["mark"], 20, child)
            return True
        except DevnetError as exc:
            self.say(f"no oracle prices: {exc}")
            return False
        finally:
            rpc.close()

    def start_traders(self) -> None:
        """``hfx demo-traders``, funded by the deployer (the token's minter)."""
        if self.opts.makers + self.opts.takers == 0:
            return
        self.spawn("demo-traders", hfx(
            "demo-traders", "--rpc", self.seq_url, "--l1-rpc", self.l1_url,
            "--deployment", str(self.dir / "deployment.json"), "--funder-key-env", "HFX_FUNDER_KEY",
            "--makers", str(self.opts.makers), "--takers", str(self.opts.takers),
        ), {"HFX_FUNDER_KEY": DEPLOYER_KEY})

    def start_liquidator(self) -> Child:
        """``hfx liquidator`` with the account funded at deployment (it waits until the deposit is credited)."""
        return self.spawn("liquidator", hfx("liquidator", "--rpc", self.seq_url, "--interval", "1"),
                          {"HFX_LIQUIDATOR_KEY": LIQUIDATOR_KEY})

    def start(self) -> None:
        """Everything, in order."""
        self.prepare_dir()
        self.start_l1()
        genesis = self.deploy()
        feeder_available = _help_text("oracle-feeder") is not None
        if not feeder_available:
            self.say("hfx oracle-feeder is not available: the sequencer signs constant devnet prices itself")
        sequencer = self.start_sequencer(genesis, own_oracle=not feeder_available)
        self.start_challenger()
        self.start_node()
        if feeder_available:
            feeder = self.start_feeder()
            if not self.wait_prices(feeder):
                self.say("restarting the sequencer with its built-in constant-price oracle")
                for child in (feeder, sequencer):
                    child.stop()
                    self.children.remove(child)
                self.start_sequencer(genesis, own_oracle=True)
                self.wait_prices(None)
        self.start_traders()
        self.start_liquidator()
        self.say("devnet up: " + self.urls())

    def urls(self) -> str:
        """The endpoints, for the summary."""
        out = f"L1 {self.l1_url} | sequencer {self.seq_url}"
        if self.node_url:
            out += f" | node {self.node_url}"
        return out

    # ---------------------------------------------------------------- running

    def watch(self) -> None:
        """Print a summary every ``summary_interval`` seconds; returns at ``max_seconds`` or if the sequencer dies."""
        rpc = SyncRpcClient(self.seq_url, timeout=5)
        reported: set[str] = set()
        last_urls = 0.0
        try:
            while self.opts.max_seconds is None or time.monotonic() - self.started < self.opts.max_seconds:
                for child in self.children:
                    if not child.alive() and child.name not in reported:
                        reported.add(child.name)
                        self.say(f"{child.name} exited ({child.exit_code()}):\n{child.tail(800)}")
                        if child.name == "sequencer":
                            raise DevnetError("the sequencer stopped")
                try:
                    s = summarize(rpc, self.dir / "challenger" / "status.json",
                                  self.dir / "node" / "status.json", self.seq_url + "metrics")
                    self.say(format_summary(time.monotonic() - self.started, s))
                except (RpcError, RpcTransportError, KeyError, TypeError, ValueError) as exc:
                    self.say(f"[devnet] sequencer not answering: {exc}")
                if time.monotonic() - last_urls > 60:
                    self.say("  " + self.urls())
                    last_urls = time.monotonic()
                time.sleep(self.opts.summary_interval)
        finally:
            rpc.close()

    def stop(self) -> None:
        """Stop the children in reverse order, then anvil."""
        for child in reversed(self.children):
            if child.proc is not None:
                self.say(f"stopping {child.name} (pid {child.pid})")
                child.stop()
        if self.anvil is not None:
            self.say(f"stopping anvil (pid {self.anvil.pid})")
            self.anvil.stop()
        self.say("devnet stopped")


def _address(key: str) -> str:
    from eth_account import Account

    return str(Account.from_key(key).address)


def parse_args(argv: Sequence[str]) -> Options:
    """The ``hfx devnet`` command line."""
    p = argparse.ArgumentParser(prog="hfx devnet", description="run a whole local HFX exchange")
    p.add_argument("--l1-rpc", help="use this L1 instead of starting anvil (its default dev accounts must be funded)")
    p.add_argument("--data-dir", default=".devnet", help="devnet directory, wiped at start (default %(default)s)")
    p.add_argument("--l1-port", type=int, default=8545, help="anvil's port (taken: any free one; 0: any)")
    p.add_argument("--rpc-port", type=int, default=8546, help="the sequencer's JSON-RPC port (taken: any free one)")
    p.add_argument("--node-port", type=int, default=8547, help="the node's JSON-RPC port (taken: any free one)")
    p.add_argument("--makers", type=int, default=2, help="demo market makers")
    p.add_argument("--takers", type=int, default=2, help="demo takers (0 and --makers 0: no traders)")
    p.add_argument("--summary-interval", type=float, default=5.0, help="seconds between summary lines")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--challenge-window", type=int, default=30,
                   help="seconds a batch can be challenged before it is final (default %(default)s)")
    a = p.parse_args(list(argv))
    if a.makers < 0 or a.takers < 0 or a.summary_interval <= 0:
        p.error("--makers and --takers must be >= 0, --summary-interval positive")
    if a.challenge_window < 1:
        p.error("--challenge-window must be at least 1 second")
    for port in (a.l1_port, a.rpc_port, a.node_port):
        if not 0 <= port < 65536:
            p.error("ports must be in [0, 65535]")
    return Options(a.l1_rpc, Path(a.data_dir), a.l1_port, a.rpc_port, a.node_port, a.makers,
                   a.takers, a.summary_interval, a.max_seconds, a.challenge_window)


def main(argv: Sequence[str]) -> int:
    """Run the devnet until SIGINT/SIGTERM (or ``--max-seconds``); 1 if it could not start."""
    opts = parse_args(argv)

    def say(text: str) -> None:
        print(text, flush=True)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    # explicit: a shell starting this in the background would leave SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    devnet = Devnet(opts, say)
    code = 0
    try:
        devnet.start()
        devnet.watch()
    except KeyboardInterrupt:
        say("interrupted: stopping the devnet")
    except (DevnetError, AnvilError) as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, lambda *_: say("still stopping…"))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            devnet.stop()
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
    return code
