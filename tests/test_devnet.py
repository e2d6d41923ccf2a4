"""``hfx devnet`` end to end: trades and a finalized batch, then Ctrl-C leaves no process behind.

Runs the devnet as a subprocess (anvil, the real contracts with a 10-second
challenge window, sequencer, challenger, node, oracle feeder, one demo maker
and one taker, the liquidator with its deposited account)
for at most 120 s: waits for a summary line showing a trade and a finalized
batch, checks that the liquidator's account was credited and that the summary
counts liquidations, sends SIGINT as a terminal's Ctrl-C would, and checks that the devnet
exits cleanly and that every process it reported starting — and its process
group — is gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node.anvil import anvil_available

pytestmark = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed: run `npm install` at the repository root"
)

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"batches: (\d+) closed, (\d+) posted, (\d+) final \| trades: (\d+) \| liquidations: (\d+)"
)
PID = re.compile(r"\(pid (\d+)\)")
BUDGET = 120.0


def gone(pid: int) -> bool:
    """Neither the process nor its process group exists."""
    for probe in (os.kill, os.killpg):
        try:
            probe(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def test_devnet_trades_finalizes_and_stops_cleanly(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "devnet", "--data-dir", str(tmp_path / "net"),
         "--l1-port", "0", "--rpc-port", "0", "--node-port", "0", "--summary-interval", "2",
         "--challenge-window", "10", "--makers", "1", "--takers", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            m = SUMMARY.search(line)
            if m and int(m.group(3)) >= 1 and int(m.group(4)) >= 1:
                reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ok = reached.wait(BUDGET - 15)
        assert ok, "no trade and finalized batch in time:\n" + "\n".join(lines[-40:])
        assert proc.poll() is None, "\n".join(lines[-40:])
        pids = {int(p) for line in lines for p in PID.findall(line)}
        names = " ".join(lines)
        for name in ("anvil", "sequencer", "challenger", "demo-traders", "liquidator"):
            assert name in names
        assert len(pids) >= 5
        assert "collateral deposited" in names
        # the liquidator found its account (the deposit was credited) and polls the risk state
        log = tmp_path / "net" / "logs" / "liquidator.log"
        deadline = time.monotonic() + 15
        while "liquidator ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "liquidator ready" in log.read_text(), log.read_text()[-2000:]
        # the feeder also publishes its signed updates: the feed a fallback proposer reads
        feed = json.loads((tmp_path / "net" / "oracle-feed.json").read_text())
        assert feed["updates"] and all(u["step"].startswith("0x05") for u in feed["updates"])
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=max(5.0, BUDGET - (time.monotonic() - started)))
        reader.join(5)
        assert code == 0, "\n".join(lines[-40:])
        assert lines[-1] == "devnet stopped"
        left = [p for p in pids if not gone(p)]
        assert not left, f"processes left behind: {left}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert time.monotonic() - started <= BUDGET


def test_deploy_refuses_bad_input_before_any_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from l1_contracts.deploy_cli import main as deploy_main

    out, gen = tmp_path / "d.json", tmp_path / "g.json"
    base = ["--rpc", "http://127.0.0.1:1", "--key-env", "HFX_TEST_DEPLOYER", "--out", str(out),
            "--genesis-out", str(gen)]
    monkeypatch.delenv("HFX_TEST_DEPLOYER", raising=False)
    assert deploy_main(base) == 2
    assert "HFX_TEST_DEPLOYER" in capsys.readouterr().err
    monkeypatch.setenv("HFX_TEST_DEPLOYER", "0x" + "11" * 32)
    params = tmp_path / "params.json"
    params.write_text('{"config": {"taker_fee_bps": 1}, "markets": []}')
    for extra, message in (
        (["--challenge-window", "0"], "constants"),
        (["--k", "1"], "constants"),
        (["--oracle-keys", "0x1234"], "not an address"),
        (["--oracle-threshold", "4"], "--oracle-threshold"),
        (["--operator", "nobody"], "--operator"),
        ([], "no L1 answers"),
        (["--params", str(tmp_path / "missing.json")], "--params"),
        (["--params", str(params)], "genesis parameters"),
    ):
        assert deploy_main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not out.exists() and not gen.exists()


def test_devnet_refuses_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    from node.devnet import main as devnet_main

    (tmp_path / "precious.txt").write_text("keep me")
    assert devnet_main(["--data-dir", str(tmp_path), "--l1-rpc", "http://127.0.0.1:1"]) == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_sequencer_configuration_round_trips(tmp_path: Path) -> None:
    """The TOML the devnet writes (with the fallback oracle) is the genesis it deployed."""
    import json

    from l1_contracts.deploy_cli import devnet_genesis_params, devnet_oracle_private_keys
    from node.devnet import sequencer_toml
    from sequencer.process import load_config

    params = devnet_genesis_params(1_700_000_000, ["0x" + "11" * 20])
    genesis = json.loads(params.to_json())
    path = tmp_path / "dir with \"quotes\"" / "sequencer.toml"
    path.parent.mkdir()
    keys = devnet_oracle_private_keys(3)
    path.write_text(sequencer_toml(
        data_dir=path.parent / "seq", port=1234, l1_url="http://127.0.0.1:8545",
        deployment=path.parent / "deployment.json", operator_key="0x" + "22" * 32, genesis=genesis,
        dev_oracle_keys=keys,
    ))
    cfg = load_config(path)
    assert cfg.genesis_time == params.time and cfg.genesis_config == params.config
    assert cfg.markets == params.markets
    assert cfg.data_dir == path.parent / "seq" and cfg.rpc_port == 1234
    assert cfg.dev_oracle is not None and cfg.dev_oracle.keys == tuple(keys)
    assert set(cfg.dev_oracle.marks) == {0, 1, 2, 3} and cfg.dev_oracle.spots[1] == 60_000_000
