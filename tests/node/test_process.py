"""``hfx node`` as a process on anvil (node/process.py), and ``hfx challenger status``.

The node runs as the operator's proposer (``--propose --finalize`` with the
operator key, which may always post): it turns queued deposits into batches
built from L1 alone, derives them back, survives a SIGKILL (progress on
disk: it resumes, it does not re-read from the deployment block), pushes
each derived batch to WebSocket subscribers, finalizes after the window, and
serves /health and /metrics. Usage errors exit with 2
and a message.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from challenger.cli import format_status, status_command
from node.process import main as node_main
from node.rpc_client import WsRpcClient
from tests.e2e.devnet import E2E_CONFIG, OPERATOR_KEY, USDC, Devnet, anvil_available, wait_for

anvil_only = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


@anvil_only
def test_the_node_process_proposes_derives_resumes_and_finalizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    with Devnet(tmp_path) as net:
        base = ["--rpc", net.url, "--deployment", str(net.deployment_path), "--genesis",
                str(net.genesis_path), "--data-dir", str(tmp_path / "bad"), "--rpc-port", "0", "--depth", "0"]
        monkeypatch.setenv("HFX_PROPOSER_KEY", "")
        assert node_main([*base, "--propose"]) == 2
        assert "HFX_PROPOSER_KEY" in capsys.readouterr().err
        broken = tmp_path / "broken.json"
        broken.write_text("{}")
        assert node_main([*base[:3], str(broken), *base[4:]]) == 2
        assert "not a deployment file" in capsys.readouterr().err
        other = json.loads(net.deployment_path.read_text())
        other["chain_id"] = 1
        (tmp_path / "other.json").write_text(json.dumps(other))
        assert node_main([*base[:3], str(tmp_path / "other.json"), *base[4:]]) == 2
        assert "is chain 31337, the deployment is on 1" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()  # a refused start leaves nothing behind

        node = net.start_node("op", propose_key=OPERATOR_KEY, finalize=True)
        alice, bob, carol = (net.trader(n) for n in ("alice", "bob", "carol"))
        net.deposit(alice, 1_000 * USDC)
        net.deposit(bob, 2_000 * USDC)
        acct: dict[str, Any] = wait_for(lambda: node.call("hfx_getAccount", [bob.address]), 30, "bob's deposit")
        assert acct["collateral"] == 2_000 * USDC
        head = node.call("hfx_syncStatus")["head"]["index"]
        batches = node.call("hfx_getBatches", {"from_index": 1})["batches"]
        assert all(b["verdict"] == "MATCH" and b["status"] == "pending" for b in batches)
        assert batches[-1]["depositEnd"] == 2 and net.contracts().rollup.head() == head
        status, body = _get(node.url + "health")  # type: ignore[operator]
        assert status == 200 and json.loads(body)["status"] == "ok"
        _, metrics = _get(node.url + "metrics")  # type: ignore[operator]
        assert re.search(r"^hfx_node_fallback_batches [1-9]", metrics, re.M), metrics
        assert re.search(r"^hfx_node_head_batch [1-9]", metrics, re.M)

        # SIGKILL; a deposit arrives while it is down; it resumes where it was and proposes it
        l1_block = node.call("hfx_syncStatus")["l1Block"]
        node.kill()
        net.deposit(carol, 3_000 * USDC)
        node = net.start_node("op", propose_key=OPERATOR_KEY, finalize=True)
        first = node.call("hfx_syncStatus")
        assert first["resumedFrom"] >= l1_block and first["head"]["index"] >= head
        wait_for(lambda: node.call("hfx_getAccount", [carol.address]), 30, "carol's deposit after the restart")
        assert node.call("hfx_getAccount", [alice.address])["collateral"] == 1_000 * USDC

        # each derived batch is pushed to `batches` subscribers
        dave = net.trader("dave")

        async def watch() -> Any:
            async with WsRpcClient(node.url.replace("http://", "ws://") + "ws") as ws:  # type: ignore[union-attr]
                sub = await ws.subscribe("batches")
                await asyncio.to_thread(net.deposit, dave, 400 * USDC)
                return await sub.get(timeout=30)

        pushed = asyncio.run(watch())
        assert pushed["depositEnd"] == 4 and pushed["verdict"] == "MATCH" and pushed["status"] == "pending"

        # after the window the node finalizes its batches, in order
        newest = node.call("hfx_syncStatus")["head"]["index"]
        net.advance(E2E_CONFIG.challenge_window + 1)
        wait_for(lambda: node.call("hfx_syncStatus")["final"]["index"] == newest, 30, "finality")
        assert node.call("hfx_syncStatus")["finalizer"]["finalized"][-1] == newest
        assert node.stop() == 0
        node.assert_clean()
        assert "node stopped" in node.log()
    assert time.monotonic() - started < 90


def test_challenger_status_prints_games_and_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = {
        "time": 1000.0,
        "follower": {"l1_block": 42, "head": 7, "head_root": "0xab", "last_error": ""},
        "player": {
            "address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "budget": 2 * 10**18, "locked": 5 * 10**17,
            "free_bond": 10**17, "challenger_bond": 5 * 10**17,
            "active": [{"game": 3, "batch": 7, "range": [8, 16], "round": 1, "turn": "asserter",
                        "clock_left": 55, "last_move": "choosePart", "note": ""}],
            "won": [1], "lost": [], "cancelled": [2], "skipped": {"9": "budget"}, "errors": 0,
        },
    }
    text = format_status(st, now=1010.0)
    assert "status written 10 s ago" in text and "budget 2.0000 ETH, locked 0.5000 ETH" in text
    assert "game 3 on batch 7: steps [8, 16], round 1, turn asserter, clock left 55 s" in text
    assert "won: 1" in text and "lost: -" in text and "skipped batch 9: budget" in text
    (tmp_path / "status.json").write_text(json.dumps(st))
    assert status_command(["--data-dir", str(tmp_path)]) == 0
    assert "active games: 1" in capsys.readouterr().out
    assert status_command(["--status-file", str(tmp_path / "status.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["player"]["won"] == [1]
    assert status_command(["--data-dir", str(tmp_path / "none")]) == 2
    assert "no challenger status" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert status_command(["--status-file", str(tmp_path / "junk.json")]) == 2
    assert "not a challenger status file" in capsys.readouterr().err


# ---------------------------------------------------------------- the fallback proposer's oracle feed


def test_oracle_feed_files_are_parsed_strictly(tmp_path: Path) -> None:
    from node.fallback import OracleFeed, OracleFeedError, parse_oracle_feed
    from state.signing import signed_oracle
    from state.txs import OracleEntry, encode_deposit
    from tests.world import T0, World

    world = World()
    steps = [signed_oracle(world.oracle_keys[:1], world.domain, T0 + i, [OracleEntry(0, 3_000_000, 0)])
             for i in (2, 1)]
    doc = {"version": 1, "updates": [{"timestamp": T0 + i, "step": "0x" + s.hex()} for i, s in zip((2, 1), steps, strict=True)]}
    feed = OracleFeed(tmp_path / "feed.json")
    assert feed.updates() == []  # not published yet
    feed.path.write_text(json.dumps(doc))
    assert feed.updates() == [(T0 + 1, steps[1]), (T0 + 2, steps[0])]  # oldest first
    bad_step = {"timestamp": T0, "step": "0x" + encode_deposit().hex()}
    for text, message in (
        ("{", "not JSON"),
        (json.dumps({"version": 2, "updates": []}), "expected"),
        (json.dumps({"version": 1, "updates": [{"timestamp": T0}]}), "integer timestamp and a hex step"),
        (json.dumps({"version": 1, "updates": [{"timestamp": T0, "step": "0xzz"}]}), "hex step"),
        (json.dumps({"version": 1, "updates": [bad_step]}), "not an oracle step"),
        (json.dumps({"version": 1, "updates": [{"timestamp": T0, "step": "0x" + steps[0].hex()}]}), "its step"),
    ):
        with pytest.raises(OracleFeedError, match=message):
            parse_oracle_feed(text)
    feed.path.write_text("[]")
    with pytest.raises(OracleFeedError, match=str(feed.path)):
        feed.updates()


def test_the_proposer_takes_the_newest_oracle_update_the_stf_accepts() -> None:
    from node.fallback import choose_oracle_update
    from state.context import BatchContext
    from state.db import StateDB, TrieSource
    from state.keccak import keccak256
    from state.signing import signed_oracle
    from state.transition import apply_step
    from state.txs import OracleEntry
    from state.view import StateView
    from tests.world import T0, World

    world = World()
    db = StateDB.in_memory()
    root = db.initialize(world.leaves)
    now = T0 + 100
    ctx = BatchContext.create(now, world.chain, world.queues, [])
    entries = [OracleEntry(0, 3_000_000, 0), OracleEntry(64, 3_000_000, 0)]

    def update(t: int, key: bytes = world.oracle_keys[0]) -> tuple[int, bytes]:
        return t, signed_oracle([key], world.domain, t, entries)

    good_old, good, stranger, future = (update(now - 50), update(now - 10),
                                        update(now - 5, keccak256(b"not an oracle key")), update(now + 1))
    step, note = choose_oracle_update(db, root, ctx, [good_old, good, stranger, future])
    assert (step, note) == (good[1], "")  # the stranger's newer one is refused, the future one not tried
    assert db.root == root  # nothing persists
    step, note = choose_oracle_update(db, root, ctx, [stranger, future])
    assert step is None and "refused: ORACLE_QUORUM" in note and f"newest published {now + 1}" in note
    assert choose_oracle_update(db, root, ctx, [])[0] is None

    # on a state whose prices are newer than every published update: nothing to add
    view = StateView(TrieSource(db.trie, root))
    assert apply_step(view, update(now - 1)[1], ctx).code.name == "OK"
    newer = db.trie.commit(view.dirty_leaves())
    step, note = choose_oracle_update(db, newer, ctx, [good_old, good])
    assert step is None and "refused" not in note and f"state at {now - 1}" in note


def test_an_oracle_file_needs_propose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--rpc", "http://127.0.0.1:9/", "--deployment", "d.json", "--genesis", "g.json",
            "--data-dir", str(tmp_path / "n"), "--oracle-file", str(tmp_path / "feed.json")]
    with pytest.raises(SystemExit) as exc:
        node_main(base)
    assert exc.value.code == 2 and "needs --propose" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
