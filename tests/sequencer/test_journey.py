"""A trader's journey through the whole system, every part a separate process, on anvil (< 90 s).

anvil is the L1; ``hfx sequencer`` (risk monitor on, no in-house liquidator),
``hfx oracle-feeder`` (a price file, devnet oracle key) and ``hfx liquidator``
run as child processes. Three traders deposit on L1; a maker and a levered
taker trade over JSON-RPC; the feeder is replaced by one whose file moves ETH
down 6 %; the liquidator process finds the taker below its threshold and
liquidates it into its own signed order (earning the bonus); the maker
withdraws. Then every batch the sequencer closed, the last one holding the
liquidation and the withdrawal, is posted on L1 with the sequencer's root,
each on the previous one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from l1_contracts.bindings import Contracts, Transactor
from l1_contracts.config import DEVNET
from l1_contracts.deploy import Genesis, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available, free_port
from node.rpc_client import SyncRpcClient
from sequencer.client import TraderClient
from sequencer.oracle_feeder import devnet_oracle_keys
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import genesis_leaves
from tests.sequencer.test_process import REPO, config_text, wait_for
from tests.world import default_config, default_markets

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")

USDC = 10**6
SIZE = 300_000
"""The taker's long: about 9x its collateral at 3,000,000."""
DEPOSITS = {"maker": 1_000_000 * USDC, "taker": 100_000 * USDC, "liquidator": 500_000 * USDC}


def _price_file(path: Path, eth: int) -> Path:
    path.write_text(json.dumps([{"time": 0, "index": {"0": eth, "1": 6_000_000},
                                 "marks": {"0": eth, "1": 6_000_000}}]))
    return path


class Procs:
    """Child processes with their logs; stopped with SIGTERM (each must exit 0)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.codes: dict[str, int] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.tmp / f"{name}.log", "wb") as log_file:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "node.cli", *args], cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            )

    def stop(self, name: str) -> int:
        proc = self.running.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
        self.codes[name] = code
        return code

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def test_deposit_trade_liquidation_withdrawal_all_on_l1(tmp_path: Path) -> None:
    started = time.monotonic()
    oracle_key = devnet_oracle_keys(1)[0]
    with Anvil(block_time=1) as anvil:
        now = anvil.timestamp_of()
        genesis_time = now - 30
        leaves = genesis_leaves(default_config(), default_markets(), genesis_time)
        root = StateDB.in_memory().initialize(dict(leaves))
        oracle = Web3.to_checksum_address(address_of(oracle_key))
        d = deploy_web3(anvil.url, DEV_KEYS[0], Genesis(root, genesis_time, [oracle], 1), DEVNET,
                        test_prover=True)
        deployment = tmp_path / "deployment.json"
        deployment.write_text(d.to_json())
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        cfg = tmp_path / "sequencer.toml"
        extra = "[risk]\nenabled = true\nfunding_interval = 3600\ntick_interval = 1.0\n"
        cfg.write_text(config_text(tmp_path / "data", port, anvil.url, deployment, genesis_time,
                                   dev_oracle=False, extra=extra))
        w3 = anvil.web3()
        operator = Contracts.connect(w3, d, Transactor(w3, Account.from_key(DEV_KEYS[0])))
        keys = {"maker": DEV_KEYS[1], "taker": DEV_KEYS[2], "liquidator": DEV_KEYS[3]}
        for name, amount in DEPOSITS.items():  # each trader deposits from its own L1 account
            acct = Account.from_key(keys[name])
            operator.token.mint(acct.address, amount)
            own = Contracts.connect(w3, d, Transactor(w3, acct))
            own.token.approve(d.bridge, amount)
            own.bridge.deposit(amount)

        procs = Procs(tmp_path)
        feeder_args = ["oracle-feeder", "--rpc", url, "--devnet-keys", "1", "--interval", "0.5"]
        try:
            procs.start("sequencer", ["sequencer", "--config", str(cfg)])
            rpc = SyncRpcClient(url, timeout=10)
            info: dict[str, Any] = wait_for(lambda: rpc.call("hfx_chainInfo"), 30, "the RPC server")
            procs.start("feeder", [*feeder_args, "--price-file", str(_price_file(tmp_path / "p0.json", 3_000_000))])
            procs.start("liquidator", ["liquidator", "--rpc", url, "--interval", "0.3", "--max-seconds", "80"],
                        {"HFX_LIQUIDATOR_KEY": keys["liquidator"]})
            clients = {name: TraderClient(url, key, info) for name, key in keys.items()}
            for name, amount in DEPOSITS.items():
                acct = wait_for(lambda n=name: clients[n].account(), 30, f"{name}'s deposit")  # type: ignore[misc]
                assert acct["collateral"] == amount
            wait_for(lambda: rpc.call("hfx_getMarkets")["markets"][0]["mark"], 20, "the feeder's prices")

            # trade over JSON-RPC: the taker goes 9x long
            rest = clients["maker"].place_order(0, False, 3_000_000, SIZE)
            assert rest["status"] == "RESTING"
            hit = clients["taker"].place_order(0, True, 3_000_000, SIZE)
            assert hit["status"] == "FILLED" and hit["filled"] == SIZE
            taker = clients["taker"].account()
            assert taker["positions"][0]["size"] == SIZE and taker["liquidatable"] is False

            # the oracle moves: a new feeder publishes ETH 6 % lower
            assert procs.stop("feeder") == 0
            procs.start("feeder", [*feeder_args, "--price-file", str(_price_file(tmp_path / "p1.json", 2_820_000))])
            wait_for(lambda: rpc.call("hfx_getMarkets")["markets"][0]["mark"] == 2_820_000, 20, "the price move")

            # the liquidator process takes part of the taker's position over, at the mark
            def liquidated() -> dict[str, Any] | None:
                acct: dict[str, Any] = clients["taker"].account()
                return acct if acct["positions"] and acct["positions"][0]["size"] < SIZE else None

            taker = wait_for(liquidated, 30, "the liquidation")
            assert taker["liquidatable"] is False and taker["equity"] > 0
            mine = clients["liquidator"].account()
            taken = SIZE - taker["positions"][0]["size"]
            assert mine["positions"][0]["size"] == taken
            assert mine["collateral"] > DEPOSITS["liquidator"]  # the bonus

            # another trader withdraws
            w = clients["maker"].withdraw(1_000 * USDC)
            assert w["step"]["code"] == "OK" and w["withdrawalId"] is not None
            last_batch = w["step"]["batch"]

            # every batch up to the withdrawal's is on L1 with the sequencer's root, in order
            def all_posted() -> list[dict[str, Any]] | None:
                batches = rpc.call("hfx_getBatches", {"from_index": 0, "limit": 500})["batches"]
                mine = [b for b in batches if b["index"] <= last_batch]
                done = len(mine) == last_batch + 1 and all(
                    b["l1"] and b["l1"]["state"] in ("posted", "confirmed", "final") for b in mine
                )
                return mine if done else None

            ours = wait_for(all_posted, 30, "every batch on L1")
            events = sorted(operator.rollup.batch_posted_events(d.block), key=lambda e: e.index)
            assert [e.post_root for e in events[:len(ours)]] == [bytes.fromhex(b["postRoot"][2:]) for b in ours]
            assert [e.parent for e in events[:len(ours)]] == [e.index - 1 for e in events[:len(ours)]]
            def metrics() -> str | None:
                with urllib.request.urlopen(url + "metrics", timeout=10) as resp:
                    text = str(resp.read().decode())
                return text if "hfx_sequencer_liquidations_total 1" in text else None

            text = wait_for(metrics, 10, "the liquidation in the metrics")
            assert "hfx_sequencer_oracle_updates_total" in text
            for c in clients.values():
                c.close()
            rpc.close()
        finally:
            procs.stop_all()
        for name in ("sequencer", "feeder", "liquidator"):
            assert procs.codes[name] == 0, procs.log(name)[-3000:]
            assert "Traceback" not in procs.log(name), procs.log(name)[-3000:]
        assert '"msg": "liquidated"' in procs.log("liquidator")
        assert '"msg": "oracle update"' in procs.log("feeder")
    assert time.monotonic() - started < 90
