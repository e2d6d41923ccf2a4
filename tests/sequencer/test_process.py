"""``hfx sequencer --config FILE`` end to end against a real anvil (bounded < 90 s).

Deploys the contracts (test prover), writes a TOML config and the deployment
file, starts the sequencer as a separate process, deposits on L1 for two
traders, sees the deposits credited over RPC, trades between them over RPC,
sees a batch posted on L1 with the sequencer's root, and stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account import Account
from web3 import Web3

from l1_contracts.bindings import Contracts, Transactor
from l1_contracts.config import DEVNET
from l1_contracts.deploy import Genesis, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available, free_port
from node.rpc import RpcError
from node.rpc_client import RpcTransportError, SyncRpcClient
from sequencer.client import TraderClient
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import genesis_leaves
from state.keccak import keccak256
from tests.world import default_config, default_markets

pytestmark = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed: run `npm install` at the repository root"
)

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
ORACLE_KEY = keccak256(b"oracle-0")
AMOUNT = 50_000 * 10**6


def wait_for(fn: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
        except (RpcError, RpcTransportError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def config_text(data_dir: Path, port: int, l1_url: str, deployment: Path, genesis_time: int) -> str:
    c = default_config()
    lines = [
        f'data_dir = "{data_dir}"', 'log_level = "INFO"', "",
        "[rpc]", 'host = "127.0.0.1"', f"port = {port}", "",
        "[l1]", f'url = "{l1_url}"', f'deployment = "{deployment}"',
        f'operator_key = "{DEV_KEYS[0]}"', "confirmations = 0", "poll_interval = 0.3",
        "publish_interval = 0.3", "",
        "[batch]", "max_age_seconds = 1", "max_bytes = 120000", "",
        "[genesis]", f"time = {genesis_time}", "",
        "[genesis.config]",
        *(f"{name} = {getattr(c, name)}" for name in c.__dataclass_fields__), "",
    ]
    kinds = {1: "perp", 2: "call", 3: "put"}
    for m in default_markets():
        lines += [
            "[[genesis.markets]]", f'kind = "{kinds[m.kind]}"', f"underlying = {m.underlying}",
            f"im_bps = {m.im_bps}", f"mm_bps = {m.mm_bps}", f"tick = {m.tick}", f"lot = {m.lot}",
            f"strike = {m.strike}", f"expiry = {m.expiry}", f"size_decimals = {m.size_decimals}", "",
        ]
    lines += [
        "[dev_oracle]", f'keys = ["0x{ORACLE_KEY.hex()}"]', "interval = 1",
        "marks = { 0 = 3000000, 1 = 6000000 }", "spots = { 0 = 3000000, 1 = 6000000 }", "",
    ]
    return "\n".join(lines)


def test_sequencer_process_end_to_end(tmp_path: Path) -> None:
    started = time.monotonic()
    with Anvil(block_time=1) as anvil:
        now = anvil.timestamp_of()
        genesis_time = now - 30
        leaves = genesis_leaves(default_config(), default_markets(), genesis_time)
        root = StateDB.in_memory().initialize(dict(leaves))
        oracle = Web3.to_checksum_address(address_of(ORACLE_KEY))
        d = deploy_web3(anvil.url, DEV_KEYS[0], Genesis(root, genesis_time, [oracle], 1), DEVNET,
                        test_prover=True)
        deployment = tmp_path / "deployment.json"
        deployment.write_text(d.to_json())
        port = free_port()
        cfg = tmp_path / "sequencer.toml"
        cfg.write_text(config_text(tmp_path / "data", port, anvil.url, deployment, genesis_time))

        # two traders deposit on L1
        w3 = anvil.web3()
        operator = Contracts.connect(w3, d, Transactor(w3, Account.from_key(DEV_KEYS[0])))
        traders = [Account.from_key(k) for k in DEV_KEYS[1:3]]
        for t in traders:
            operator.token.mint(t.address, AMOUNT)
            mine = Contracts.connect(w3, d, Transactor(w3, t))
            mine.token.approve(d.bridge, AMOUNT)
            mine.bridge.deposit(AMOUNT)

        log_path = tmp_path / "sequencer.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "sequencer", "--config", str(cfg)],
                cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        try:
            url = f"http://127.0.0.1:{port}/"
            rpc = SyncRpcClient(url, timeout=10)
            info: dict[str, Any] = wait_for(lambda: rpc.call("hfx_chainInfo"), 30, "the RPC server")
            assert info["chainId"] == d.chain_id and info["rollup"] == d.rollup.lower()
            for t in traders:
                acct = wait_for(lambda t=t: rpc.call("hfx_getAccount", [t.address]), 20, "the deposit")  # type: ignore[misc]
                assert acct["collateral"] == AMOUNT
            wait_for(lambda: rpc.call("hfx_getMarkets")["markets"][0]["mark"], 10, "oracle prices")

            maker = TraderClient(url, DEV_KEYS[1], info)
            taker = TraderClient(url, DEV_KEYS[2], info)
            rest = maker.place_order(0, False, 3_000_000, 5)
            assert rest["status"] == "RESTING"
            hit = taker.place_order(0, True, 3_000_000, 5)
            assert hit["status"] == "FILLED" and hit["fills"][0]["maker"] == rest["orderHash"]
            fill_batch = hit["fills"][0]["batch"]
            assert taker.account()["positions"][0]["size"] == 5
            assert maker.account()["positions"][0]["size"] == -5

            def posted() -> dict[str, Any] | None:
                batches = rpc.call("hfx_getBatches", {"limit": 50})["batches"]
                for b in batches:
                    if b["index"] >= fill_batch and b["l1"] and b["l1"]["state"] in ("posted", "confirmed", "final"):
                        return dict(b)
                return None

            batch = wait_for(posted, 30, "the fill's batch posted on L1")
            events = operator.rollup.batch_posted_events(d.block)
            roots = {"0x" + e.post_root.hex() for e in events}
            assert batch["postRoot"] in roots
            assert batch["l1"]["batchId"] in {e.index for e in events}
            status = rpc.call("hfx_syncStatus")
            assert status["publisher"]["halted"] is None and status["l1Watcher"]["nextDeposit"] == 2
            with urlopen_text(url + "metrics") as text:
                assert "hfx_sequencer_orders_total" in text and "hfx_sequencer_wal_fsyncs_total" in text
            maker.close()
            taker.close()
            rpc.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise
        output = log_path.read_text()
        assert code == 0, output[-3000:]
        assert '"msg": "sequencer stopped"' in output
    assert time.monotonic() - started < 90


class urlopen_text:  # noqa: N801 - a tiny context manager
    """GET ``url`` and give its body as text."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=10) as resp:
            return str(resp.read().decode())

    def __exit__(self, *exc: object) -> None:
        return None
