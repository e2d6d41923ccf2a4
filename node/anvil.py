"""A local L1 for devnets and tests: anvil from the npm package ``@foundry-rs/anvil``.

:class:`Anvil` starts anvil (``node_modules/.bin/anvil``, or directly the
platform binary that entry point wraps) on a free loopback port, waits until
it answers JSON-RPC, and stops it cleanly: anvil runs in its own process
group, stopping signals the whole group and waits until it is gone, and on
Linux anvil also gets ``SIGTERM`` if the Python process dies without stopping
it (when started from the main thread: the kernel ties that signal to the
spawning thread). Every instance still running at interpreter exit is stopped by an
``atexit`` hook.

It also drives the chain for tests: mine blocks, move time, snapshot and
revert, and reorganise the tip (``anvil_reorg``, present in this anvil;
:meth:`Anvil.rollback` uses ``anvil_rollback``, which removes blocks without
replacing them). See docs/l1-runtime.md.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
ANVIL_BIN = REPO_ROOT / "node_modules" / ".bin" / "anvil"
"""Where ``npm install`` (scripts/test) puts anvil's entry point."""

DEFAULT_CHAIN_ID = 31337

DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)
"""Private keys of anvil's first five default accounts (its public test mnemonic),
each funded with 10,000 ether. Test and devnet use only."""


class AnvilError(RuntimeError):
    """anvil could not be started, or a JSON-RPC call to it failed."""


def anvil_path() -> Path:
    """The anvil entry point this checkout uses (``HFX_ANVIL`` overrides it)."""
    override = os.environ.get("HFX_ANVIL")
    return Path(override) if override else ANVIL_BIN


def native_binary(entry: Path) -> Path:
    """The platform binary behind the npm entry point, when it can be found; else ``entry``.

    ``node_modules/.bin/anvil`` links to a Node.js wrapper that spawns
    ``@foundry-rs/anvil-<platform>/bin/anvil``; running that binary directly
    saves the wrapper's start-up and makes anvil our own child (reaped by
    :meth:`Anvil.stop`, never left to init as a zombie)."""
    try:
        target = entry.resolve()
    except OSError:
        return entry
    if target.suffix not in (".mjs", ".js"):
        return entry
    for candidate in sorted(target.parent.parent.glob("anvil-*/bin/anvil")):
        if os.access(candidate, os.X_OK):
            return candidate
    return entry


def anvil_available() -> bool:
    """Whether anvil is installed (``npm install`` at the repository root)."""
    return anvil_path().exists()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS may hand it out again later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` (so an answer there would be ours)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_LIVE: set[Anvil] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for node in live:
        node.stop()


atexit.register(_stop_all)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: ask for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort: atexit and stop() still apply
        pass


class Anvil:
    """One anvil process on 127.0.0.1; a context manager (``with Anvil() as l1:``).

    ``block_time`` ``None`` automines (a block per transaction); a number
    mines a block every ``block_time`` seconds. ``port`` ``None`` picks a free
    port (and retries with another one if anvil loses a race for it).
    """

    def __init__(
        self,
        *,
        chain_id: int = DEFAULT_CHAIN_ID,
        block_time: float | None = None,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        timestamp: int | None = None,
        accounts: int = 10,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.chain_id = chain_id
        self.block_time = block_time
        self.binary = native_binary(Path(binary) if binary is not None else anvil_path())
        self.timestamp = timestamp
        self.accounts = accounts
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._fixed_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._ids = 0

    # ---------------------------------------------------------------- life cycle

    @property
    def port(self) -> int:
        """The port anvil listens on (after :meth:`start`)."""
        if self._port is None:
            raise AnvilError("anvil is not started")
        return self._port

    @property
    def url(self) -> str:
        """The JSON-RPC URL (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The anvil process id (also its process group id), if running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self, port: int) -> list[str]:
        """The command line for ``port``."""
        cmd = [
            str(self.binary), "--host", "127.0.0.1", "--port", str(port),
            "--chain-id", str(self.chain_id), "--accounts", str(self.accounts), "--silent",
        ]
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        if self.timestamp is not None:
            cmd += ["--timestamp", str(self.timestamp)]
        return cmd + self.extra_args

    def start(self) -> Anvil:
        """Start anvil and wait until it answers ``eth_chainId``; returns ``self``."""
        if self.running:
            return self
        if not self.binary.exists():
            raise AnvilError(f"anvil not found at {self.binary}: run `npm install` at the repository root")
        attempts = 1 if self._fixed_port is not None else 3
        last = ""
        for _ in range(attempts):
            port = self._fixed_port if self._fixed_port is not None else free_port()
            if not port_free(port):
                last = f"port {port} is in use"
                continue
            self._spawn(port)
            try:
                self._wait_ready()
                with _LIVE_LOCK:
                    _LIVE.add(self)
                return self
            except AnvilError as exc:
                last = str(exc)
                self.stop()
        raise AnvilError(f"anvil did not start: {last}")

    def _spawn(self, port: int) -> None:
        self._log = tempfile.TemporaryFile()
        # PR_SET_PDEATHSIG fires when the spawning *thread* ends: only from the main thread
        main = threading.current_thread() is threading.main_thread()
        preexec = _die_with_parent if main and sys.platform.startswith("linux") else None
        self._proc = subprocess.Popen(  # fixed argv, no shell
            self.command(port),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=preexec,
        )
        self._port = port

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return bytes(self._log.read()[-2000:]).decode(errors="replace").strip()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise AnvilError(f"anvil exited: {self._output()}")
            try:
                chain = int(self.rpc("eth_chainId", timeout=1.0), 16)
            except (OSError, ValueError, AnvilError):
                if time.monotonic() > deadline:
                    raise AnvilError(f"no answer within {self.startup_timeout} s") from None
                time.sleep(0.05)
                continue
            if self._proc.poll() is not None or chain != self.chain_id:
                raise AnvilError(f"something else answers on port {self.port} (chain {chain})")
            return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop anvil and everything it spawned (SIGTERM to the group, then SIGKILL)."""
        proc, self._proc = self._proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is not None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait()
            # anything left in the group (a wrapper's child) goes too
            self._signal_group(proc, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while self._group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- JSON-RPC

    def rpc(self, method: str, *params: Any, timeout: float = 30.0) -> Any:
        """One JSON-RPC call; returns ``result`` or raises :class:`AnvilError` with the error."""
        self._ids += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)})
        req = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # a loopback URL
            reply = json.loads(resp.read())
        if "error" in reply:
            raise AnvilError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    def web3(self, timeout: float = 30.0) -> Any:
        """A plain web3 ``Web3`` on this node."""
        from web3 import Web3

        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": timeout}))

    # ---------------------------------------------------------------- chain control

    def block_number(self) -> int:
        """The head's number."""
        return int(self.rpc("eth_blockNumber"), 16)

    def block(self, number: int | str = "latest") -> dict[str, Any]:
        """A block header (hashes only), as JSON."""
        tag = hex(number) if isinstance(number, int) else number
        result = self.rpc("eth_getBlockByNumber", tag, False)
        if result is None:
            raise AnvilError(f"no block {number}")
        return dict(result)

    def timestamp_of(self, number: int | str = "latest") -> int:
        """A block's timestamp."""
        return int(self.block(number)["timestamp"], 16)

    def mine(self, blocks: int = 1, interval: int | None = None) -> int:
        """Mine ``blocks`` blocks (``interval`` seconds apart if given); returns the new head."""
        params: list[Any] = [hex(blocks)]
        if interval is not None:
            params.append(hex(interval))
        self.rpc("anvil_mine", *params)
        return self.block_number()

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """The next mined block gets ``timestamp`` (must be later than the head's)."""
        self.rpc("evm_setNextBlockTimestamp", timestamp)

    def increase_time(self, seconds: int, *, mine: bool = True) -> int:
        """Move time forward by ``seconds``; with ``mine``, mine a block so that reads see it.

        Returns the head's timestamp after."""
        self.rpc("evm_increaseTime", seconds)
        if mine:
            self.rpc("evm_mine")
        return self.timestamp_of()

    def snapshot(self) -> str:
        """Save the chain (``evm_snapshot``); returns the id :meth:`revert` takes."""
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        """Return to a snapshot (``evm_revert``; the snapshot is consumed)."""
        return bool(self.rpc("evm_revert", snapshot_id))

    def reorg(self, depth: int, txs: Sequence[tuple[bytes | str | Mapping[str, Any], int]] = ()) -> None:
        """Replace the last ``depth`` blocks with ``depth`` new ones (``anvil_reorg``).

        The head's height stays the same; the transactions of the replaced
        blocks are dropped (not returned to the pool). ``txs`` are put in the
        new blocks: (signed raw transaction, or a transaction request as
        JSON, block offset from the first replaced block)."""
        pairs: list[list[Any]] = []
        for tx, offset in txs:
            if isinstance(tx, bytes):
                pairs.append(["0x" + tx.hex(), offset])
            elif isinstance(tx, str):
                pairs.append([tx, offset])
            else:
                pairs.append([dict(tx), offset])
        self.rpc("anvil_reorg", depth, pairs)

    def rollback(self, depth: int = 1) -> None:
        """Remove the last ``depth`` blocks without replacing them (``anvil_rollback``)."""
        self.rpc("anvil_rollback", depth)

    def set_automine(self, enabled: bool) -> None:
        """Turn automine on or off (off: blocks only from :meth:`mine` or interval mining)."""
        self.rpc("evm_setAutomine", enabled)

    def set_interval_mining(self, seconds: int) -> None:
        """Mine a block every ``seconds`` (0 turns interval mining off)."""
        self.rpc("evm_setIntervalMining", seconds)

    def set_balance(self, address: str, wei: int) -> None:
        """Set an account's ether balance."""
        self.rpc("anvil_setBalance", address, hex(wei))

    def drop_transaction(self, tx_hash: bytes | str) -> None:
        """Remove a pending transaction from the pool (``anvil_dropTransaction``)."""
        h = tx_hash if isinstance(tx_hash, str) else "0x" + tx_hash.hex()
        self.rpc("anvil_dropTransaction", h)
