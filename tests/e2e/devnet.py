"""A whole local exchange for end-to-end tests: anvil, the contracts, and every role as its own process.

```python
with Devnet(tmp_path) as net:                     # anvil (automine) + the contracts, deployed
    seq = net.start_sequencer()                   # `hfx sequencer`, JSON-RPC at seq.url
    node = net.start_node()                       # `hfx node`, read-only JSON-RPC at node.url
    chal = net.start_challenger()                 # `hfx challenger`, chal.status() from its status file
    alice = net.trader("alice")                   # an L1 account with ether (deterministic key)
    net.deposit(alice, 10_000 * USDC)             # mint, approve, Bridge.deposit
    with net.client(alice) as c: c.place_order(0, True, 3_000_000, 1)   # sequencer.client.TraderClient
    node.call("hfx_getAccount", [alice.address])
    net.advance(60)                               # anvil time travel (evm_increaseTime + a block)
    seq.kill()                                    # SIGKILL; seq.stop() is SIGTERM and waits
```

- **Deployment.** :data:`E2E_CONFIG` (``DEVNET`` with a 2-minute challenge
  window and short forced-inclusion and fallback periods), the genesis of
  ``tests.world`` (four markets, its fees), one oracle key
  (:data:`ORACLE_KEY`, signing for the sequencer's ``[dev_oracle]``). The test
  double of the one-step prover by default (a scenario with no dispute needs
  nothing else); ``real_prover=True`` deploys the real one (disputes).
  Contracts come from the disk cache of ``hfx deploy``
  (``l1_contracts.deploy.compile_cached``, keyed by the sources: only
  the first run on a machine compiles); while the devnet runs,
  ``l1_contracts.deploy.compile_contract`` serves them, so the bindings
  (``net.contracts()``) work in the test process.
- **Files** (``workdir``): ``deployment.json``, ``genesis.json`` (the leaves),
  ``abis.json`` (the ABIs the children's bindings need), one directory per
  process (``sequencer/``, ``node/``, ...) and one log per process
  (``<name>.log``).
- **Processes.** Each ``start_*`` runs ``python -m tests.e2e.devnet <hfx
  args>``, i.e. the ``hfx`` command line (``node.cli.main``) with the ABIs
  read from ``abis.json`` (no compiler in the children), and waits until it
  answers (JSON-RPC, or a first status file). Private keys are passed in
  environment variables, never on the command line. Each child gets SIGTERM
  if the test process dies (Linux ``PR_SET_PDEATHSIG``); :meth:`Devnet.stop`
  stops every process still running (SIGTERM, then SIGKILL), then anvil.
- **Keys.** ``DEV_KEYS[0]`` deploys and mints (:data:`DEPLOYER_KEY`);
  ``DEV_KEYS[2]`` is the operator, the sequencer's key (:data:`OPERATOR_KEY`);
  ``DEV_KEYS[1]`` is the default challenger; traders get keys derived from
  their names (:meth:`Devnet.trader`), funded with 100 ether. Each account
  sends from one process only, so nonces never race.

Bounded in time: every wait has a timeout and raises :class:`DevnetError`
with the process's log tail.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount

import l1_contracts.deploy as deploy
from l1_contracts.bindings import Contracts, Transactor
from l1_contracts.config import DEVNET, ETHER, RollupConfig
from l1_contracts.deploy import Compiled, Deployment, Genesis
from node.anvil import DEV_KEYS, Anvil, anvil_available, free_port
from node.rpc import RpcError
from node.rpc_client import RpcTransportError, SyncRpcClient
from sequencer.client import TraderClient
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import genesis_leaves
from state.keccak import keccak256
from state.layout import Config, Market
from tests.world import default_config, default_markets

__all__ = [
    "DEPLOYER_KEY", "E2E_CONFIG", "ORACLE_KEY", "OPERATOR_KEY", "CHALLENGER_KEY", "USDC", "Devnet", "DevnetError",
    "Proc", "Trader", "anvil_available", "wait_for",
]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
USDC = 10**6
"""One unit of the devnet token (6 decimals)."""
ORACLE_KEY = keccak256(b"oracle-0")
"""The oracle key set of the devnet (one key, threshold 1)."""
DEPLOYER_KEY = DEV_KEYS[0]
"""Deploys the contracts and mints the devnet token (``Devnet.deposit``)."""
OPERATOR_KEY = DEV_KEYS[2]
"""The designated proposer: the sequencer's key (its own account, so its nonces never race the minter's)."""
CHALLENGER_KEY = DEV_KEYS[1]
"""The default challenger's key."""
E2E_CONFIG = DEVNET.with_(challenge_window=120, clock=90, forced_inclusion_delay=120, fallback_period=180)
"""Deployment constants of the end-to-end devnet: minutes become seconds; tests time-travel past them."""
MARKS = {0: 3_000_000, 1: 6_000_000}
"""The prices the sequencer's dev oracle signs (ETH-PERP, BTC-PERP), also the underlyings' spots."""
CONTRACT_NAMES = ("Rollup", "OneStepProver", "Bridge", "Token")


class DevnetError(RuntimeError):
    """A devnet step failed or timed out (the message carries the relevant log tail)."""


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``fn`` until it returns something truthy (RPC errors count as not yet); raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = fn()
        except (RpcError, RpcTransportError, OSError, ValueError) as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise DevnetError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


ALL_CONTRACTS = ("Token", "Bridge", "Rollup", "OneStepProver", deploy.TEST_PROVER, *deploy.STEP_CONTRACTS)


@cache
def cached_compile(name: str) -> Compiled:
    """``compile_contract(name)`` through the disk cache (``l1_contracts.deploy.compile_cached``),
    once per process; only the first run on a machine compiles (25–40 s for the prover)."""
    if deploy.compile_contract is not _COMPILER:
        raise DevnetError(f"{name} is not compiled yet and the compiler is patched")
    return deploy.compile_cached(name)[0]


_COMPILER = deploy.compile_contract


# ---------------------------------------------------------------- processes


_LIVE: set[Proc] = set()


def _stop_live() -> None:
    for p in list(_LIVE):
        p.kill()


atexit.register(_stop_live)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort: stop() and atexit still apply
        pass


class Proc:
    """One ``hfx`` child process: its command line, log file, and (when it serves one) JSON-RPC URL."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path,
                 url: str | None = None, status_file: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.url = url
        self.status_file = status_file
        with open(log_path, "ab") as log_file:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.devnet", *argv], cwd=REPO, env=env,
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        _LIVE.add(self)
        self._rpc: SyncRpcClient | None = None

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of the process's output."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def call(self, method: str, params: Any = None) -> Any:
        """A JSON-RPC call to this process (raises ``RpcError`` on an error answer)."""
        if self.url is None:
            raise DevnetError(f"{self.name} serves no JSON-RPC")
        if self._rpc is None:
            self._rpc = SyncRpcClient(self.url, timeout=15)
        return self._rpc.call(method, params)

    def status(self) -> dict[str, Any]:
        """The process's status file (``{}`` while it has none)."""
        if self.status_file is None:
            raise DevnetError(f"{self.name} writes no status file")
        try:
            raw = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the process answers JSON-RPC (``/health``) or has written its status file."""

        def ready() -> bool:
            if not self.alive:
                raise DevnetError(f"{self.name} exited with {self.popen.returncode}:\n{self.log()}")
            if self.url is not None:
                import urllib.request

                try:
                    with urllib.request.urlopen(self.url + "health", timeout=5) as resp:
                        return bool(resp.status == 200)
                except OSError:
                    return False
            return bool(self.status())

        try:
            wait_for(ready, timeout, f"{self.name} to start")
        except DevnetError as exc:
            raise DevnetError(f"{exc}\n--- {self.name} log ---\n{self.log()}") from None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait up to ``timeout`` s (then SIGKILL); returns the exit code."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._close()
        return int(self.popen.returncode)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed or closed) and reap."""
        if self.alive:
            self.popen.kill()
            self.popen.wait(10)
        self._close()

    def _close(self) -> None:
        _LIVE.discard(self)
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None

    def assert_clean(self) -> None:
        """Raise if the log holds a Python traceback."""
        text = self.log(1_000_000)
        if "Traceback" in text:
            raise DevnetError(f"{self.name} logged a traceback:\n{text[-4000:]}")


@dataclass(frozen=True)
class Trader:
    """An L1 account that trades on the devnet."""

    name: str
    account: LocalAccount

    @property
    def address(self) -> str:
        """The checksummed address (the L2 account's owner)."""
        return str(self.account.address)

    @property
    def key(self) -> str:
        """The private key as 0x-hex."""
        return "0x" + bytes(self.account.key).hex()


# ---------------------------------------------------------------- the devnet


class Devnet:
    """anvil + a deployment + the ``hfx`` processes started on it; a context manager."""

    def __init__(self, workdir: Path, *, config: RollupConfig = E2E_CONFIG, real_prover: bool = False,
                 block_time: int | None = None, markets: Sequence[Market] | None = None,
                 genesis_config: Config | None = None) -> None:
        self.workdir = Path(workdir)
        self.config = config
        self.real_prover = real_prover
        self.genesis_config = genesis_config or default_config()
        self.markets = tuple(markets if markets is not None else default_markets())
        self.anvil = Anvil(block_time=block_time)
        self.procs: list[Proc] = []
        self._saved_compile: Any = None
        self.deployment: Deployment
        self.genesis_time = 0
        self.leaves: dict[bytes, bytes] = {}

    # -------------------------------------------------------- lifecycle

    def start(self) -> Devnet:
        """Start anvil, deploy the contracts, write the files the processes read."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        table = {name: cached_compile(name) for name in ALL_CONTRACTS}

        def compiled(name: str) -> Compiled:
            if name not in table:
                raise DevnetError(f"the devnet has no compiled {name}")
            return table[name]

        self._saved_compile = deploy.compile_contract
        deploy.compile_contract = compiled  # type: ignore[assignment]
        try:
            self.anvil.start()
            self.genesis_time = self.anvil.timestamp_of() - 30
            self.leaves = genesis_leaves(self.genesis_config, self.markets, self.genesis_time)
            root = StateDB.in_memory().initialize(dict(self.leaves))
            oracle = self.w3.to_checksum_address(address_of(ORACLE_KEY))
            self.deployment = deploy.deploy_web3(
                self.anvil.url, DEPLOYER_KEY, Genesis(root, self.genesis_time, [oracle], 1), self.config,
                operator=Account.from_key(OPERATOR_KEY).address, test_prover=not self.real_prover,
            )
            self.deployment_path.write_text(self.deployment.to_json())
            leaves = {"0x" + k.hex(): "0x" + v.hex() for k, v in self.leaves.items()}
            self.genesis_path.write_text(json.dumps({"leaves": leaves}))
            self.abis_path.write_text(json.dumps({n: cached_compile(n).abi for n in CONTRACT_NAMES}))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL), then anvil."""
        for p in self.procs:
            p.stop(timeout=15)
        self.anvil.stop()
        if self._saved_compile is not None:
            deploy.compile_contract = self._saved_compile
            self._saved_compile = None

    def __enter__(self) -> Devnet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------- paths and L1

    @property
    def url(self) -> str:
        """anvil's JSON-RPC URL."""
        return self.anvil.url

    @property
    def w3(self) -> Any:
        """A web3 client of anvil."""
        return self.anvil.web3()

    @property
    def deployment_path(self) -> Path:
        """``deployment.json`` (``Deployment.to_json``)."""
        return self.workdir / "deployment.json"

    @property
    def genesis_path(self) -> Path:
        """``genesis.json``: ``{"leaves": {key: value}}``."""
        return self.workdir / "genesis.json"

    @property
    def abis_path(self) -> Path:
        """``abis.json``: the contracts' ABIs for the children's bindings."""
        return self.workdir / "abis.json"

    def contracts(self, who: Trader | LocalAccount | str | None = None) -> Contracts:
        """Bindings of the deployment sending as ``who`` (a trader, an account or a key; default: the deployer,
        who mints the token)."""
        if isinstance(who, Trader):
            account = who.account
        elif isinstance(who, str):
            account = Account.from_key(who)
        elif who is None:
            account = Account.from_key(DEPLOYER_KEY)
        else:
            account = who
        w3 = self.w3
        return Contracts.connect(w3, self.deployment, Transactor(w3, account))

    def trader(self, name: str, ether: int = 100) -> Trader:
        """The trader ``name`` (key ``keccak256("hfx-e2e:" + name)``), given ``ether`` ether on L1."""
        account = Account.from_key(keccak256(b"hfx-e2e:" + name.encode()))
        self.anvil.set_balance(account.address, ether * ETHER)
        return Trader(name, account)

    def deposit(self, trader: Trader, amount: int) -> None:
        """Mint ``amount`` token units to the trader, approve the bridge, and deposit them."""
        self.contracts().token.mint(trader.address, amount)
        own = self.contracts(trader)
        own.token.approve(self.deployment.bridge, amount)
        own.bridge.deposit(amount)

    def force(self, trader: Trader, payload: bytes) -> int:
        """Queue a forced transaction from the trader's L1 account; returns its queue index."""
        own = self.contracts(trader)
        own.bridge.force_transaction(payload)
        return own.bridge.forced_count() - 1

    def advance(self, seconds: int) -> int:
        """Move L1 time forward by ``seconds`` and mine a block; returns the new head's timestamp."""
        return self.anvil.increase_time(seconds)

    def client(self, trader: Trader, sequencer: Proc | None = None) -> TraderClient:
        """A ``TraderClient`` of the trader on the (first) sequencer's JSON-RPC."""
        seq = sequencer or next((p for p in self.procs if p.name.startswith("sequencer") and p.alive), None)
        if seq is None or seq.url is None:
            raise DevnetError("no sequencer is running")
        return TraderClient(seq.url, trader.key)

    # -------------------------------------------------------- processes

    def _env(self, **keys: str) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "HFX_TEST_ABIS": str(self.abis_path), **keys}

    def _launch(self, name: str, argv: list[str], env: dict[str, str], *, port: int | None = None,
                status_file: Path | None = None, timeout: float = 60.0) -> Proc:
        if any(p.name == name and p.alive for p in self.procs):
            raise DevnetError(f"a process named {name} is already running")
        url = None if port is None else f"http://127.0.0.1:{port}/"
        proc = Proc(name, argv, env, self.workdir / f"{name}.log", url=url, status_file=status_file)
        self.procs.append(proc)
        proc.wait_ready(timeout)
        return proc

    def start_sequencer(self, name: str = "sequencer", *, key: str = OPERATOR_KEY, port: int | None = None,
                        max_batch_age: int = 1, oracle_interval: float = 1.0, timeout: float = 60.0) -> Proc:
        """``hfx sequencer`` with a config written to ``<name>.toml``; data in ``<name>/`` (kept across restarts)."""
        port = port or free_port()
        cfg = self.workdir / f"{name}.toml"
        cfg.write_text(self.sequencer_toml(self.workdir / name, port, max_batch_age, oracle_interval))
        return self._launch(name, ["sequencer", "--config", str(cfg)], self._env(HFX_OPERATOR_KEY=key),
                            port=port, timeout=timeout)

    def start_hfx(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                  status_file: Path | None = None, timeout: float = 60.0) -> Proc:
        """Any ``hfx`` command (``argv`` starts with its name) as a tracked child with the devnet's
        ABIs; ``env`` adds variables; with ``status_file`` it returns once that file exists."""
        return self._launch(name, list(argv), self._env(**(env or {})), status_file=status_file, timeout=timeout)

    def start_node(self, name: str = "node", *, port: int | None = None, propose_key: str | None = None,
                   finalize: bool = False, interval: float = 0.2, extra: Sequence[str] = (),
                   timeout: float = 60.0) -> Proc:
        """``hfx node`` on ``<name>/`` serving JSON-RPC at ``proc.url`` (depth 0).

        ``propose_key`` makes it a fallback proposer signing with that key (``--propose``);
        ``finalize`` lets it call ``finalize`` on batches whose window has passed, signing with
        ``propose_key`` or, without one, ``DEV_KEYS[3]``. ``extra``: more ``hfx node`` arguments."""
        port = port or free_port()
        argv = ["node", "--rpc", self.url, "--deployment", str(self.deployment_path),
                "--genesis", str(self.genesis_path), "--data-dir", str(self.workdir / name),
                "--rpc-port", str(port), "--depth", "0", "--interval", str(interval),
                "--log-level", "INFO", *extra]
        env = self._env()
        if propose_key is not None:
            argv.append("--propose")
            env["HFX_PROPOSER_KEY"] = propose_key
        if finalize:
            argv.append("--finalize")
            env.setdefault("HFX_PROPOSER_KEY", propose_key or DEV_KEYS[3])
        return self._launch(name, argv, env, port=port, timeout=timeout)

    def start_challenger(self, name: str = "challenger", *, key: str = CHALLENGER_KEY, interval: float = 0.2,
                         extra: Sequence[str] = (), timeout: float = 60.0) -> Proc:
        """``hfx challenger`` on ``<name>/``, its status in ``<name>.status.json`` (``proc.status()``)."""
        status = self.workdir / f"{name}.status.json"
        argv = ["challenger", "--rpc", self.url, "--deployment", str(self.deployment_path),
                "--genesis", str(self.genesis_path), "--data-dir", str(self.workdir / name),
                "--status-file", str(status), "--interval", str(interval), "--log-level", "INFO", *extra]
        return self._launch(name, argv, self._env(HFX_CHALLENGER_KEY=key), status_file=status, timeout=timeout)

    def run_hfx(self, argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a one-shot ``hfx`` command (with the devnet's ABIs) and return its output."""
        return subprocess.run(
            [sys.executable, "-m", "tests.e2e.devnet", *argv], cwd=REPO, env={**self._env(), **(env or {})},
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    # -------------------------------------------------------- configuration

    def sequencer_toml(self, data_dir: Path, port: int, max_batch_age: int = 1, oracle_interval: float = 1.0) -> str:
        """The sequencer's TOML for this devnet (operator key from ``$HFX_OPERATOR_KEY``)."""
        c = self.genesis_config
        lines = [
            f'data_dir = "{data_dir}"', 'log_level = "INFO"', "",
            "[rpc]", 'host = "127.0.0.1"', f"port = {port}", "",
            "[l1]", f'url = "{self.url}"', f'deployment = "{self.deployment_path}"',
            'operator_key_env = "HFX_OPERATOR_KEY"', "confirmations = 0", "poll_interval = 0.2",
            "publish_interval = 0.2", "",
            "[batch]", f"max_age_seconds = {max_batch_age}", "max_bytes = 120000", "",
            "[genesis]", f"time = {self.genesis_time}", "",
            "[genesis.config]", *(f"{name} = {getattr(c, name)}" for name in c.__dataclass_fields__), "",
        ]
        kinds = {1: "perp", 2: "call", 3: "put"}
        for m in self.markets:
            lines += [
                "[[genesis.markets]]", f'kind = "{kinds[m.kind]}"', f"underlying = {m.underlying}",
                f"im_bps = {m.im_bps}", f"mm_bps = {m.mm_bps}", f"tick = {m.tick}", f"lot = {m.lot}",
                f"strike = {m.strike}", f"expiry = {m.expiry}", f"size_decimals = {m.size_decimals}", "",
            ]
        marks = ", ".join(f"{k} = {v}" for k, v in MARKS.items())
        lines += [
            "[dev_oracle]", f'keys = ["0x{ORACLE_KEY.hex()}"]', f"interval = {oracle_interval}",
            f"marks = {{ {marks} }}", f"spots = {{ {marks} }}", "",
        ]
        return "\n".join(lines)


@contextlib.contextmanager
def devnet(workdir: Path, **kw: Any) -> Iterator[Devnet]:
    """``with devnet(tmp_path) as net:`` — :class:`Devnet` as a plain context manager."""
    net = Devnet(workdir, **kw)
    with net:
        yield net


def _child_main(argv: list[str]) -> int:
    """The child's entry point: ``hfx`` with the bindings' ABIs from ``$HFX_TEST_ABIS``."""
    with open(os.environ["HFX_TEST_ABIS"]) as f:
        abis = json.load(f)

    def from_file(name: str) -> Compiled:
        if name not in abis:
            raise KeyError(f"{name} is not in {os.environ['HFX_TEST_ABIS']}")
        return Compiled(name, abis[name], b"")

    deploy.compile_contract = from_file  # type: ignore[assignment]
    from node.cli import main

    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
