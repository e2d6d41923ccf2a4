"""The operator is gone: traders exit with no help from it, every role its own process on anvil.

The sequencer runs, traders deposit and trade (Bob ends with an open
position), an `hfx oracle-feeder` signs prices, submits them to the sequencer
and publishes them to a file; then the sequencer process is SIGKILLed and the
feeder keeps publishing (its clock is L1's). Carol (no open position) and Bob
queue forced withdrawals on the bridge; Dave deposits after the operator is
gone. Carol runs her own `hfx node --propose --finalize` without an oracle
feed: before the fallback period it only waits; after it (anvil time travel)
it builds a batch from L1 data alone — Dave's deposit, Carol's and Bob's
forced withdrawals — and posts it with her own bond: Carol's withdrawal is
applied, Bob's is refused (`STALE_ORACLE`: nothing has published a price
since the operator left). Bob queues it again and runs his own node with
`--oracle-file`: after the next fallback period its batch starts with the
feeder's fresh signed update and Bob's withdrawal of collateral free of his
position is applied. An independent `hfx node` derives both fallback batches
with the same roots; after the challenge window Bob's node finalizes every
pending batch and the independent node's withdrawal proofs pay Carol and Bob
on L1. The challenger opens no game.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from state.txs import encode_forced_withdraw
from tests.e2e.devnet import (
    E2E_CONFIG,
    MARKS,
    ORACLE_KEY,
    USDC,
    Devnet,
    Proc,
    anvil_available,
    wait_for,
)

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")


def test_traders_exit_without_the_operator(tmp_path: Path) -> None:
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
        feed = tmp_path / "oracle-feed.json"
        feeder = _start_feeder(net, seq, feed)

        # the node has Carol's account and Bob's position (from L1 alone) before the operator disappears
        carol_acct: dict[str, Any] = wait_for(lambda: node.call("hfx_getAccount", [carol.address]), 30,
                                              "Carol's account on the node")
        assert carol_acct["collateral"] == 5_000 * USDC and carol_acct["positions"] == []
        bob_acct: dict[str, Any] = wait_for(lambda: _with_position(node, bob.address), 30, "the trade on the node")
        seq.kill()
        last_operator_batch = net.contracts().rollup.head()
        # the feeder goes on publishing without the sequencer
        later = net.advance(1)
        wait_for(lambda: _newest(feed) >= later, 20, "an update published after the sequencer died")
        assert feeder.alive

        amount, bob_amount = 1_500 * USDC, 1_000 * USDC
        net.force(carol, encode_forced_withdraw(carol_acct["index"], bytes.fromhex(carol.address[2:]), amount))
        bob_payload = encode_forced_withdraw(bob_acct["index"], bytes.fromhex(bob.address[2:]), bob_amount)
        net.force(bob, bob_payload)
        net.deposit(dave, 700 * USDC)

        # Carol's own node (no oracle feed) proposes only once the fallback period has passed
        mine = net.start_node("carol-node", propose_key=carol.key)
        plan = wait_for(lambda: _plan(mine), 30, "the proposer's first decision")
        assert plan["action"] == "wait" and plan["forced"] == [0, 2] and plan["deposits"][1] == 4, plan
        assert net.contracts().rollup.head() == last_operator_batch

        net.advance(E2E_CONFIG.fallback_period + 1)
        first = wait_for(lambda: _fallback_batch(node, carol.address, last_operator_batch), 40,
                         "the first fallback batch derived by the independent node")
        assert first["verdict"] == "MATCH" and first["status"] == "pending"
        assert (first["depositStart"], first["depositEnd"]) == (3, 4)
        assert (first["forcedStart"], first["forcedEnd"]) == (0, 2)
        # no oracle step: Bob's withdrawal meets the operator's last price, too old (STALE_ORACLE)
        assert first["steps"] == 3 and first["refusedSteps"] == 1
        proposed = mine.call("hfx_syncStatus")["proposer"]["proposed"]
        assert [(p["batch"], p["oracle"]) for p in proposed] == [(first["index"], None)]
        assert proposed[0]["postRoot"] == first["computedRoot"]
        assert node.call("hfx_getAccount", [bob.address])["collateral"] == bob_acct["collateral"]
        assert mine.stop() == 0, mine.log()
        mine.assert_clean()

        # Bob queues it again; his node reads the feeder's file and puts a fresh signed price first
        net.force(bob, bob_payload)
        moved = net.advance(E2E_CONFIG.fallback_period + 1)
        wait_for(lambda: _newest(feed) >= moved, 20, "an update at the new L1 time")
        own_node = net.start_node("bob-node", propose_key=bob.key, finalize=True, extra=["--oracle-file", str(feed)])
        second = wait_for(lambda: _fallback_batch(node, bob.address, first["index"]), 40,
                          "the oracle-carrying fallback batch derived by the independent node")
        assert second["verdict"] == "MATCH" and (second["forcedStart"], second["forcedEnd"]) == (2, 3)
        assert second["steps"] == 2 and second["refusedSteps"] == 0
        proposed = own_node.call("hfx_syncStatus")["proposer"]["proposed"]
        assert [p["batch"] for p in proposed] == [second["index"]]
        assert proposed[0]["postRoot"] == second["computedRoot"]
        assert moved <= proposed[0]["oracle"] <= second["timestamp"]
        markets = node.call("hfx_getMarkets")
        assert markets["oracleTime"] == proposed[0]["oracle"] and markets["markets"][0]["mark"] == MARKS[0]
        bob_after = node.call("hfx_getAccount", [bob.address])
        assert bob_after["collateral"] == bob_acct["collateral"] - bob_amount
        assert bob_after["positions"] == bob_acct["positions"]

        # after the window, Bob's node finalizes every pending batch in order; both claim on L1
        net.advance(E2E_CONFIG.challenge_window + 1)
        wait_for(lambda: node.call("hfx_getBatch", [second["index"]])["status"] == "final", 40,
                 "the fallback batches final")
        for wid, trader, account, paid in ((0, carol, carol_acct, amount), (1, bob, bob_acct, bob_amount)):
            record = node.call("hfx_getWithdrawal", [wid])
            assert (record["account"], record["amount"]) == (account["index"], paid)
            proof = node.call("hfx_getWithdrawalProof", [wid])
            assert proof["batch"] == second["index"]  # against the newest final root
            own = net.contracts(trader)
            before = own.token.balance_of(trader.address)
            own.bridge.claim_withdrawal(proof["batch"], wid, proof["account"], proof["recipient"],
                                        proof["amount"], [bytes.fromhex(n[2:]) for n in proof["nodes"]])
            assert own.token.balance_of(trader.address) == before + paid
        assert node.call("hfx_getAccount", [carol.address])["collateral"] == 5_000 * USDC - amount
        assert node.call("hfx_getAccount", [dave.address])["collateral"] == 700 * USDC

        # the challenger agreed with every batch, the fallback ones included
        wait_for(lambda: (chal.status().get("follower", {}).get("head") or 0) >= second["index"], 20,
                 "the challenger to follow the fallback batches")
        assert chal.status()["player"]["active"] == [] and net.contracts().rollup.game_count() == 0
        for proc in (own_node, node, chal, feeder):
            assert proc.stop() == 0, proc.log()
            proc.assert_clean()
    print(f"operator gone: {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 120


def _start_feeder(net: Devnet, seq: Proc, feed: Path) -> Proc:
    """`hfx oracle-feeder` signing with the deployment's oracle key at L1's time, constant prices,
    submitting to ``seq`` and publishing to ``feed``; returns once it has published an update."""
    spots = [a for u, p in MARKS.items() for a in ("--spot", f"{u}={p}")]
    argv = ["oracle-feeder", "--rpc", seq.url or "", "--keys-env", "HFX_E2E_ORACLE_KEYS", *spots,
            "--max-move-bps", "0", "--premium-bps", "0", "--interval", "0.2", "--publish-file", str(feed),
            "--l1-clock", net.url, "--log-level", "INFO"]
    return net.start_hfx("oracle-feeder", argv, env={"HFX_E2E_ORACLE_KEYS": "0x" + ORACLE_KEY.hex()}, status_file=feed)


def _newest(feed: Path) -> int:
    """The newest timestamp in the published feed (0 while it has none)."""
    try:
        updates = json.loads(feed.read_text())["updates"]
    except (OSError, ValueError, KeyError):
        return 0
    return int(updates[-1]["timestamp"]) if updates else 0


def _with_position(node: Any, address: str) -> dict[str, Any] | None:
    acct: dict[str, Any] = node.call("hfx_getAccount", [address])
    return acct if acct["positions"] else None


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
