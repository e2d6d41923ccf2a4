"""The README's promises: its trader example runs against a sequencer, its links resolve, the bench markers exist.

The example is the fenced Python block after the ``<!-- tested: …`` marker; it
runs as a separate process (plain eth-account and urllib, as a trader would)
against an in-process sequencer (no L1, the built-in devnet oracle) where the
devnet's first demo trader has deposited.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

from eth_account import Account

from l1_contracts.deploy_cli import devnet_genesis_params, devnet_oracle_private_keys
from node.rpc_client import RpcClient
from sequencer.demo_traders import trader_keys
from sequencer.process import DevOracle, SequencerConfig, SequencerProcess
from state.context import L1Deposit
from state.eip712 import address_of

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def readme_example() -> str:
    marker = README.index("<!-- tested: tests/test_readme.py")
    block = re.search(r"```python\n(.*?)```", README[marker:], re.S)
    assert block is not None
    return block.group(1)


def test_the_trader_example_places_and_cancels_an_order(tmp_path: Path) -> None:
    code = readme_example()
    key = trader_keys(1, seed=0)[0]
    oracle = devnet_oracle_private_keys(1)
    params = devnet_genesis_params(int(time.time()) - 5, ["0x" + address_of(oracle[0]).hex()])
    cfg = SequencerConfig(
        data_dir=tmp_path / "seq", rpc_host="127.0.0.1", rpc_port=0, genesis_time=params.time,
        genesis_config=params.config, markets=params.markets, chain_id=31337, rollup="0x" + "42" * 20,
        oracle_keys=params.oracle_keys, max_batch_age=1,
        dev_oracle=DevOracle(tuple(oracle), 1.0, {0: 3_000_000}, {0: 3_000_000}, {}),
    )

    async def scenario() -> tuple[int, str]:
        process = SequencerProcess(cfg)
        port = await process.start()
        try:
            assert process.service is not None
            owner = bytes.fromhex(Account.from_key(key).address[2:])
            await process.service.add_l1_items([L1Deposit(owner, 10**12)], [], deposit_start=0)
            deadline = time.monotonic() + 15
            while not await _has_mark(port):
                assert time.monotonic() < deadline, "no oracle price"
                await asyncio.sleep(0.2)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "HFX_RPC": f"http://127.0.0.1:{port}/"},
            )
            out, _ = await asyncio.wait_for(child.communicate(), 60)
            return int(child.returncode or 0), out.decode()
        finally:
            await process.stop()

    code_rc, output = asyncio.run(scenario())
    assert code_rc == 0, output
    lines = output.strip().splitlines()
    assert re.fullmatch(r"RESTING 0x[0-9a-f]{64}", lines[0]), output
    order_hash = lines[0].split()[1]
    assert order_hash in lines[1] and "'remaining': 1" in lines[1], output


async def _has_mark(port: int) -> bool:
    async with RpcClient(f"http://127.0.0.1:{port}/") as rpc:
        markets = await rpc.call("hfx_getMarkets")
    return bool(markets["markets"][0]["mark"])


def test_links_resolve_and_bench_markers_exist() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    lines = README.splitlines()
    assert lines.count("<!-- bench:start -->") == 1 and lines.count("<!-- bench:end -->") == 1
    assert lines.index("<!-- bench:start -->") < lines.index("<!-- bench:end -->")
    for command in ("scripts/devnet", "scripts/test"):
        assert (REPO / command).exists() and os.access(REPO / command, os.X_OK)
