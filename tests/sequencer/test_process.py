"""``hfx sequencer --config FILE`` end to end against a real anvil (bounded < 90 s).

Deploys the contracts (test prover), writes a TOML config and the deployment
file, starts the sequencer as a separate process, deposits on L1 for two
traders, sees the deposits credited over RPC, trades between them over RPC,
sees a batch posted on L1 with the sequencer's root, and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
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
from sequencer.intake import OrderSubmission
from sequencer.process import ConfigError, SequencerProcess, load_config
from state.constants import ORACLE_UNDERLYING_BASE
from state.context import L1Deposit
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import genesis_leaves
from state.keccak import keccak256
from state.signing import sign_order, signed_oracle
from state.txs import OracleEntry, OrderBody
from tests.world import T0, default_config, default_markets

anvil_only = pytest.mark.skipif(
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


def config_text(
    data_dir: Path, port: int, l1_url: str, deployment: Path, genesis_time: int, *,
    dev_oracle: bool = True, extra: str = "",
) -> str:
    """A sequencer TOML over the test world's markets; ``extra`` is appended (more sections)."""
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
    if dev_oracle:
        lines += [
            "[dev_oracle]", f'keys = ["0x{ORACLE_KEY.hex()}"]', "interval = 1",
            "marks = { 0 = 3000000, 1 = 6000000 }", "spots = { 0 = 3000000, 1 = 6000000 }", "",
        ]
    return "\n".join(lines) + "\n" + extra


@anvil_only
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
        adaptive = "[batcher]\nadaptive = true\nmin_age = 1\nmax_age = 1\nrecompute_interval = 0.5\n"
        cfg.write_text(config_text(tmp_path / "data", port, anvil.url, deployment, genesis_time,
                                   extra=adaptive))

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
                assert "\nhfx_sequencer_batch_age_limit_seconds 1" in text  # the model, clamped
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


# ---------------------------------------------------------------- the risk monitor in the process


LIQUIDATOR_KEY = keccak256(b"in-house liquidator")


def local_config_text(data_dir: Path, risk: str) -> str:
    """A sequencer without L1 (genesis.chain_id and genesis.rollup) and a ``[risk]`` section."""
    text = config_text(data_dir, 0, "", Path("unused"), T0, dev_oracle=False, extra=risk)
    head, _, rest = text.partition("[l1]")
    rest = rest[rest.index("[batch]"):]
    oracle = "0x" + address_of(ORACLE_KEY).hex()
    return head + rest.replace(
        f"time = {T0}",
        f'time = {T0}\nchain_id = 31337\nrollup = "0x{"42" * 20}"\noracle_keys = ["{oracle}"]\n',
    )


def _prices(process: SequencerProcess, eth: int) -> bytes:
    entries = [OracleEntry(0, eth, 0), OracleEntry(1, 6_000_000, 0),
               OracleEntry(ORACLE_UNDERLYING_BASE, eth, 0), OracleEntry(ORACLE_UNDERLYING_BASE + 1, 6_000_000, 0)]
    return signed_oracle([ORACLE_KEY], process.chain.domain, int(time.time()), entries)


async def _risk_run(cfg_path: Path) -> tuple[SequencerProcess, dict[str, Any]]:
    """Fund three accounts, open a 9x long, drop ETH 6 %: what the monitor did."""
    process = SequencerProcess(load_config(cfg_path))
    await process.start()
    try:
        svc = process.service
        assert svc is not None and process.monitor is not None
        owners = [address_of(keccak256(b"trader-%d" % i)) for i in range(2)] + [address_of(LIQUIDATOR_KEY)]
        amounts = [10**12, 10**11, 5 * 10**11]
        await svc.add_l1_items([L1Deposit(o, a) for o, a in zip(owners, amounts, strict=True)], [], deposit_start=0)
        await svc.submit_oracle(_prices(process, 3_000_000))
        keys = [keccak256(b"trader-%d" % i) for i in range(2)]
        chain = svc.core.chain
        for key, is_buy in ((keys[0], False), (keys[1], True)):
            body = OrderBody(svc.core.account_index(address_of(key)) or 0, 0, is_buy, 0, 3_000_000, 300_000,
                             2**64 - 1, 1)
            entry = sign_order(key, address_of(key), chain.domain, body).encode()
            await svc.place_order(OrderSubmission.from_entry(entry))
        await asyncio.sleep(1.1)  # the next oracle update needs a later second
        await svc.submit_oracle(_prices(process, 2_820_000))
        await asyncio.sleep(0.5)  # a timer tick
        taker = svc.core.account(2)
        prices = svc.core.view.prices()
        return process, {
            "actions": [a.kind for a in process.monitor.actions],
            "taker_size": None if taker is None else taker.positions[0].size,
            "settled": [m.settled for m in prices.markets],
            "funded": prices.funding_time > T0,
        }
    finally:
        await process.stop()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_process_runs_the_risk_monitor(tmp_path: Path, enabled: bool) -> None:
    """Liquidation into the in-house liquidator, settlement of the expired options and funding,
    each turned off by the config."""
    flag = "true" if enabled else "false"
    risk = (f'[risk]\nliquidator_key = "0x{LIQUIDATOR_KEY.hex()}"\nfunding_interval = 1\ntick_interval = 0.2\n'
            f"liquidations = {flag}\nfunding = {flag}\nsettlement = {flag}\n")
    cfg = tmp_path / "sequencer.toml"
    cfg.write_text(local_config_text(tmp_path / "data", risk))
    process, seen = asyncio.run(_risk_run(cfg))
    assert process.monitor is not None and process.monitor.liquidator.account == 3
    if enabled:
        assert {"liquidate", "settle", "funding"} <= set(seen["actions"])
        assert seen["taker_size"] is not None and 0 < seen["taker_size"] < 300_000
        assert seen["settled"][2:] == [True, True] and seen["funded"]
    else:
        assert seen["actions"] == [] and seen["taker_size"] == 300_000
        assert seen["settled"] == [False] * 4 and not seen["funded"]


def test_risk_and_defender_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "sequencer.toml"
    for bad in ("[risk]\nfunding_interval = 0\n", "[risk]\nliquidations = 1\n",
                '[risk]\nliquidator_key_env = "HFX_NO_SUCH_VARIABLE"\n', "[defender]\ninterval = 0\n"):
        cfg.write_text(local_config_text(tmp_path / "data", bad))
        with pytest.raises(ConfigError):
            load_config(cfg)
    cfg.write_text(local_config_text(tmp_path / "data", "[defender]\nenabled = false\n"))
    loaded = load_config(cfg)
    assert loaded.defender.enabled is False and loaded.risk.enabled and loaded.risk.liquidator_key is None


# ============================================================================ adaptive batcher


def test_batcher_config(tmp_path: Path) -> None:
    cfg = tmp_path / "sequencer.toml"
    for bad in ("[batcher]\nadaptive = 1\n", "[batcher]\nmin_age = 0\n",
                "[batcher]\nmin_age = 10\nmax_age = 5\n", "[batcher]\nrisk_gwei = -1\n",
                "[batcher]\nmax_age = inf\n", "[batcher]\nmax_agee = 5\n"):
        cfg.write_text(local_config_text(tmp_path / "data", bad))
        with pytest.raises(ConfigError):
            load_config(cfg)
    assert load_config_with(cfg, tmp_path, "").batcher.adaptive is False
    loaded = load_config_with(cfg, tmp_path, "[batcher]\nadaptive = true\nmin_age = 2\nmax_age = 30\n")
    assert loaded.batcher.adaptive and (loaded.batcher.min_age, loaded.batcher.max_age) == (2.0, 30.0)


def load_config_with(cfg: Path, tmp_path: Path, extra: str) -> Any:
    cfg.write_text(local_config_text(tmp_path / "data", extra))
    return load_config(cfg)


@anvil_only
def test_adaptive_batcher_follows_the_l1_gas_price() -> None:
    """The age limit from the real L1 gas price (anvil's base fee, set per block, plus the
    client's tip) and the flow measured from closed batches: dearer gas, longer batches
    (as the square root, docs/batching.md §2); more flow, shorter; clamped by the size limit
    and max_age."""
    from node.l1 import L1Client
    from sequencer.batching_model import optimal_interval
    from sequencer.process import AdaptiveBatcher, BatcherConfig, l1_gas_price

    with Anvil() as anvil:
        l1 = L1Client(anvil.url)
        batcher = AdaptiveBatcher(BatcherConfig(adaptive=True, min_age=1, max_age=60, risk_gwei=10_000),
                                  120_000, started=0.0)
        assert batcher.interval == 60  # max_age until a gas price is known
        for t in range(60):
            batcher.observe(float(t), 50, 6_000)  # 50 steps a second, 120 bytes each
        assert batcher.measured(60.0) == (50.0, 120.0)
        prices, intervals = [], []
        for gwei in (2, 20, 100):
            anvil.rpc("anvil_setNextBlockBaseFeePerGas", hex(gwei * 10**9))
            anvil.mine()
            price = l1_gas_price(l1)
            assert gwei * 10**9 < price <= gwei * 10**9 + l1.fee_policy.max_tip
            prices.append(price)
            intervals.append(batcher.recompute(price, 60.0))
        assert intervals[0] < intervals[1] < intervals[2] < 60
        assert intervals[2] / intervals[0] == pytest.approx((prices[2] / prices[0]) ** 0.5)
        assert intervals[1] == optimal_interval(
            gas_per_batch=300_000, gas_per_byte=33, gas_price=prices[1], flow=50, risk_cost=10_000e9,
            bytes_per_tx=120, min_interval=1, max_interval=60,
        )
        for t in range(60, 120):
            batcher.observe(float(t), 200, 24_000)  # four times the flow
        assert batcher.recompute(prices[1], 120.0) == pytest.approx(intervals[1] / 2)
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", hex(100_000 * 10**9))
        anvil.mine()
        flow, per_step = batcher.measured(121.0)
        # dear gas: clamped by the batch size limit (at this flow, below max_age)
        assert batcher.recompute(l1_gas_price(l1), 121.0) == pytest.approx(120_000 / (flow * per_step))
        quiet = AdaptiveBatcher(batcher.cfg, 120_000, started=0.0)
        quiet.observe(1.0, 1, 120)
        assert quiet.recompute(l1_gas_price(l1), 60.0) == 60  # and by max_age when quiet
