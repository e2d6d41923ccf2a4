"""The honest run, every role its own process on anvil (tests/e2e/devnet.py).

`hfx sequencer`, `hfx node` and `hfx challenger` run as separate processes.
Two traders deposit on L1 and trade over the sequencer's JSON-RPC, one
withdraws; the node rebuilds every batch from L1 alone and its root equals
the sequencer's at every batch; the node survives a SIGKILL and resumes; after
the challenge window (anvil time travel) the withdrawal is claimed on L1 with
the node's withdrawal proof; the challenger opens no game
(`hfx challenger status` says so).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from l1_contracts.bindings import L1Error
from node.anvil import free_port
from tests.e2e.devnet import E2E_CONFIG, USDC, Devnet, Proc, anvil_available, wait_for

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")

DEPOSIT = 10_000 * USDC
WITHDRAW = 1_234 * USDC


def _sequencer_roots(seq: Proc) -> dict[int, str]:
    """Rollup batch id -> the sequencer's post root, for every batch the sequencer closed.

    The sequencer is the only proposer since genesis, so its local batch ``i`` is rollup batch ``i + 1``;
    every batch whose L1 record is still shown must say so."""
    out: dict[int, str] = {}
    start = 0
    while True:
        page = seq.call("hfx_getBatches", {"from_index": start, "limit": 200})
        for b in page["batches"]:
            l1 = b.get("l1")
            if l1 and l1.get("batchId") is not None:
                assert int(l1["batchId"]) == b["index"] + 1, b
            out[b["index"] + 1] = b["postRoot"]
        if len(page["batches"]) < 200:
            return out
        start = page["batches"][-1]["index"] + 1


def _roots_agree(seq: Proc, node: Proc, upto: int) -> int:
    """The node's computed root is the sequencer's (and the posted one) at every batch 1..``upto``."""
    roots = _sequencer_roots(seq)
    for batch_id in range(1, upto + 1):
        b = node.call("hfx_getBatch", [batch_id])
        assert b["computedRoot"] == roots[batch_id] == b["postedRoot"] and b["verdict"] == "MATCH", (batch_id, b)
    return upto


def test_honest_run(tmp_path: Path) -> None:
    started = time.monotonic()
    with Devnet(tmp_path) as net:
        seq = net.start_sequencer()
        node = net.start_node()
        chal_metrics_port = free_port()
        chal = net.start_challenger(extra=["--metrics-port", str(chal_metrics_port)])
        alice, bob = net.trader("alice"), net.trader("bob")
        for t in (alice, bob):
            net.deposit(t, DEPOSIT)
        for t in (alice, bob):
            wait_for(lambda t=t: seq.call("hfx_getAccount", [t.address]), 30, "the deposit credited")  # type: ignore[misc]
        wait_for(lambda: seq.call("hfx_getMarkets")["markets"][0]["mark"], 15, "oracle prices")

        with net.client(alice) as a, net.client(bob) as b:
            ask = a.place_order(0, False, 3_000_000, 5)
            assert ask["status"] == "RESTING"
            assert b.place_order(0, True, 3_000_000, 3)["status"] == "FILLED"
            assert b.place_order(0, True, 3_000_000, 2)["status"] == "FILLED"
            bid = b.place_order(1, True, 6_000_000, 4)
            assert a.place_order(1, False, 6_000_000, 4)["fills"][0]["maker"] == bid["orderHash"]
            out = a.withdraw(WITHDRAW)
            wid, local_batch = out["withdrawalId"], out["step"]["batch"]
            assert out["step"]["code"] == "OK"
            seq_alice = a.account()

        # the batch holding the withdrawal reaches L1; the node derives it with the sequencer's root
        def l1_id() -> int | None:
            rows = seq.call("hfx_getBatches", {"from_index": local_batch, "limit": 1})["batches"]
            l1 = rows[0]["l1"] if rows else None
            return int(l1["batchId"]) if l1 and l1.get("batchId") is not None and l1["state"] != "sent" else None

        w_batch = wait_for(l1_id, 30, "the withdrawal's batch on L1")
        wait_for(lambda: node.call("hfx_syncStatus")["head"]["index"] >= w_batch, 30, "the node to derive it")
        checked = _roots_agree(seq, node, w_batch)
        acct = node.call("hfx_getAccount", [alice.address, w_batch])
        assert acct["collateral"] == seq_alice["collateral"]
        assert [(p["market"], p["size"]) for p in acct["positions"]] == [(0, -5), (1, -4)]
        assert node.call("hfx_getWithdrawal", [wid, w_batch])["amount"] == WITHDRAW

        # a crash of the node loses nothing: it resumes from its progress on disk
        l1_block = node.call("hfx_syncStatus")["l1Block"]
        node.kill()
        node = net.start_node()
        status = node.call("hfx_syncStatus")
        assert status["resumedFrom"] >= l1_block and status["head"]["index"] >= w_batch

        # not final yet: the node refuses a proof with a named error
        with pytest.raises(Exception) as refused:
            node.call("hfx_getWithdrawalProof", [wid, w_batch])
        assert getattr(refused.value, "code", None) == 1010

        # after the window, the sequencer's publisher finalizes; the node's proof claims on L1
        net.advance(E2E_CONFIG.challenge_window + 1)

        def proof() -> dict[str, Any] | None:
            p: dict[str, Any] = node.call("hfx_getWithdrawalProof", [wid])
            return p if p["batch"] >= w_batch else None

        p = wait_for(proof, 40, "a final batch holding the withdrawal")
        assert (p["account"], p["recipient"], p["amount"]) == (acct["index"], alice.address.lower(), WITHDRAW)
        own = net.contracts(alice)
        before = own.token.balance_of(alice.address)
        own.bridge.claim_withdrawal(p["batch"], wid, p["account"], p["recipient"], p["amount"],
                                    [bytes.fromhex(n[2:]) for n in p["nodes"]])
        assert own.token.balance_of(alice.address) == before + WITHDRAW
        with pytest.raises(L1Error) as twice:
            own.bridge.claim_withdrawal(p["batch"], wid, p["account"], p["recipient"], p["amount"],
                                        [bytes.fromhex(n[2:]) for n in p["nodes"]])
        assert twice.value.code == "ALREADY_CLAIMED"

        # every batch so far, final ones included, has the sequencer's root on the node
        head = node.call("hfx_syncStatus")["head"]["index"]
        checked = max(checked, _roots_agree(seq, node, head))

        # the challenger followed every batch and opened no game
        wait_for(lambda: (chal.status().get("follower", {}).get("head") or 0) >= w_batch, 20, "the challenger")
        player = chal.status()["player"]
        assert player["active"] == [] and player["won"] == [] and player["lost"] == [] and player["errors"] == 0
        assert net.contracts().rollup.game_count() == 0
        shown = net.run_hfx(["challenger", "status", "--data-dir", str(tmp_path / "challenger")])
        assert shown.returncode == 0, shown.stderr
        assert "active games: 0" in shown.stdout and "won: -" in shown.stdout

        with urllib.request.urlopen(node.url + "metrics", timeout=10) as resp:  # type: ignore[operator]
            metrics = resp.read().decode()
        derived = re.search(r"^hfx_node_head_batch (\S+)$", metrics, re.M)
        assert derived is not None and float(derived.group(1)) >= w_batch
        with urllib.request.urlopen(f"http://127.0.0.1:{chal_metrics_port}/metrics", timeout=10) as resp:
            chal_metrics = resp.read().decode()
        assert re.search(r"^hfx_challenger_active_games 0$", chal_metrics, re.M), chal_metrics
        assert re.search(r'^hfx_challenger_games_total\{result="won"\} 0$', chal_metrics, re.M), chal_metrics
        assert re.search(r"^hfx_challenger_budget_wei [1-9]", chal_metrics, re.M), chal_metrics

        for proc in (node, chal, seq):
            assert proc.stop() == 0, proc.log()
            proc.assert_clean()
    print(f"honest run: {checked} batches compared, {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 120
