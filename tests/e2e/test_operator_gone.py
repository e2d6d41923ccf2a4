"""The operator is gone: a trader exits with no help from it, every role its own process on anvil.

The sequencer runs, traders deposit and trade, then the sequencer process is
SIGKILLed. Carol (no open position) queues a forced withdrawal on the
bridge; Dave deposits after the operator is gone. Carol runs her own
`hfx node --propose --finalize`: before the fallback period it only waits;
after it (anvil time travel) it builds a batch from L1 data alone — Dave's
deposit and Carol's forced withdrawal — with the node's derivation, posts it
with her own bond, and after the challenge window finalizes every pending
batch. An independent `hfx node` derives the fallback batch with the same
root, and its withdrawal proof pays Carol on L1. The challenger opens no game.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from state.txs import encode_forced_withdraw
from tests.e2e.devnet import E2E_CONFIG, USDC, Devnet, anvil_available, wait_for

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")


def test_a_trader_exits_without_the_operator(tmp_path: Path) -> None:
    started = time.monotonic()
    with Devnet(tmp_path) as net:
        seq = net.start_sequencer()
        node = net.start_node()
        chal = net.start_challenger()
        alice, bob, carol, dave = (net.trader(n) for n in ("alice", "bob", "carol", "dave"))
        for t in (alice, bob, carol):
            net.deposit(t, 5_000 * USDC)
        wait_for(lambda: seq.call("hfx_getMarkets")["markets"][0]["mark"], 15, "oracle prices")
        for t in (alice, bob, carol):
            wait_for(lambda t=t: seq.call("hfx_getAccount", [t.address]), 30, "the deposit credited")  # type: ignore[misc]
        with net.client(alice) as a, net.client(bob) as b:
            a.place_order(0, False, 3_000_000, 2)
            assert b.place_order(0, True, 3_000_000, 2)["status"] == "FILLED"

        # the node has Carol's account (from L1 alone) before the operator disappears
        carol_acct: dict[str, Any] = wait_for(lambda: node.call("hfx_getAccount", [carol.address]), 30,
                                              "Carol's account on the node")
        assert carol_acct["collateral"] == 5_000 * USDC and carol_acct["positions"] == []
        wait_for(lambda: _node_has_trade(node, bob.address), 30, "the trade on the node")
        seq.kill()
        last_operator_batch = net.contracts().rollup.head()

        amount = 1_500 * USDC
        net.force(carol, encode_forced_withdraw(carol_acct["index"], bytes.fromhex(carol.address[2:]), amount))
        net.deposit(dave, 700 * USDC)

        # Carol's own node proposes only once the fallback period has passed
        mine = net.start_node("carol-node", propose_key=carol.key, finalize=True)
        plan = wait_for(lambda: _plan(mine), 30, "the proposer's first decision")
        assert plan["action"] == "wait" and plan["forced"] == [0, 1] and plan["deposits"][1] == 4, plan
        assert net.contracts().rollup.head() == last_operator_batch

        net.advance(E2E_CONFIG.fallback_period + 1)
        fallback = wait_for(lambda: _fallback_batch(node, carol.address, last_operator_batch), 40,
                            "the fallback batch derived by the independent node")
        assert fallback["verdict"] == "MATCH" and fallback["status"] == "pending"
        assert (fallback["depositStart"], fallback["depositEnd"]) == (3, 4)
        assert (fallback["forcedStart"], fallback["forcedEnd"]) == (0, 1)
        assert fallback["refusedSteps"] == 0
        proposed = mine.call("hfx_syncStatus")["proposer"]["proposed"]
        assert [p["batch"] for p in proposed] == [fallback["index"]]
        assert proposed[0]["postRoot"] == fallback["computedRoot"]

        # after the window, Carol's node finalizes every pending batch in order
        net.advance(E2E_CONFIG.challenge_window + 1)
        wait_for(lambda: node.call("hfx_getBatch", [fallback["index"]])["status"] == "final", 40,
                 "the fallback batch final")
        record = node.call("hfx_getWithdrawal", [0])
        assert (record["account"], record["amount"]) == (carol_acct["index"], amount)
        proof = node.call("hfx_getWithdrawalProof", [0])
        assert proof["batch"] == fallback["index"]
        own = net.contracts(carol)
        before = own.token.balance_of(carol.address)
        own.bridge.claim_withdrawal(proof["batch"], 0, proof["account"], proof["recipient"], proof["amount"],
                                    [bytes.fromhex(n[2:]) for n in proof["nodes"]])
        assert own.token.balance_of(carol.address) == before + amount
        assert node.call("hfx_getAccount", [carol.address])["collateral"] == 5_000 * USDC - amount
        assert node.call("hfx_getAccount", [dave.address])["collateral"] == 700 * USDC

        # the challenger agreed with every batch, the fallback one included
        wait_for(lambda: (chal.status().get("follower", {}).get("head") or 0) >= fallback["index"], 20,
                 "the challenger to follow the fallback batch")
        assert chal.status()["player"]["active"] == [] and net.contracts().rollup.game_count() == 0
        for proc in (mine, node, chal):
            assert proc.stop() == 0, proc.log()
            proc.assert_clean()
    print(f"operator gone: {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 120


def _node_has_trade(node: Any, address: str) -> bool:
    acct = node.call("hfx_getAccount", [address])
    return bool(acct["positions"])


def _plan(node: Any) -> dict[str, Any] | None:
    st = node.call("hfx_syncStatus")
    plan = (st.get("proposer") or {}).get("plan")
    return plan if st.get("caughtUp") and plan and plan["action"] != "behind" else None


def _fallback_batch(node: Any, proposer: str, after: int) -> dict[str, Any] | None:
    head = node.call("hfx_syncStatus")["head"]["index"]
    if head <= after:
        return None
    b: dict[str, Any] = node.call("hfx_getBatch", [head])
    return b if b["proposer"].lower() == proposer.lower() else None
