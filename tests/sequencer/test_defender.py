"""The sequencer's defender against a challenger who disputes an honest batch.

titanoboa with the real one-step prover: the core's own batches on L1, a
lying challenger who proves the last step for real and loses; the defender is
replaced mid-game by a fresh one, which resumes from L1.

anvil: the sequencer runs as a separate process (``hfx sequencer``) with
its defender on; the test plays a lying challenger from another account: it
opens a game on the batch holding a 12-fill trade (so the game takes two
rounds with k = 8), always names the last part, and at one step does not
prove (the real step would give the asserter's root). The sequencer is
stopped with SIGTERM after its first move; the challenger moves meanwhile;
the sequencer is started again on the same directory: it finds the game on
L1, answers the second round, and once the challenger's clock is spent claims
the win (``timeout``). The batch stays pending and the challenger's bond is
gone.

The unit part checks the roots from the core's records against a full replay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account import Account
from web3 import Web3

from challenger.chain import Game, RollupConstants
from l1_contracts.bindings import (
    BatchData,
    BatchStatus,
    Contracts,
    GameStatus,
    Side,
    Transactor,
    batch_info_from_abi,
    game_info_from_abi,
    parse_batch,
)
from l1_contracts.config import DEVNET, TEST
from l1_contracts.deploy import Genesis, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available, free_port
from node.rpc_client import SyncRpcClient
from proofs.game import split_points
from sequencer.client import TraderClient
from sequencer.defender import (
    BatchClaim,
    Defender,
    StoreRoots,
    UnknownBatch,
    replay_slices,
)
from sequencer.exchange import Exchange
from state.batch import Batch
from state.context import BatchContext, ListQueues
from state.db import StateDB
from state.eip712 import address_of
from state.genesis import genesis_leaves
from tests.challenger.boa_l1 import BoaDisputeChain, Journal, l1_call
from tests.l1.fixtures_rollup import L1Chain, Posted, now, set_time
from tests.sequencer.harness import Desk
from tests.sequencer.test_process import ORACLE_KEY, REPO, config_text, wait_for
from tests.world import ETH_PERP, USDC, default_config, default_markets

AMOUNT = 50_000 * 10**6
anvil_only = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")


# ---------------------------------------------------------------- roots from the core's records


def test_store_roots_are_the_batch_replayed_step_by_step() -> None:
    desk = Desk.create()
    ex = desk.ex
    for _ in range(5):
        desk.place("maker", ETH_PERP, False, 3_000_000, 1)
    assert desk.place("taker", ETH_PERP, True, 3_000_000, 5).filled == 5
    closed = ex.close_batch(desk.now)
    assert closed is not None and closed.step_count >= 5
    roots = StoreRoots(ex.pending_batches, lambda: ex.db, ex.chain)
    claim = BatchClaim(7, closed.pre_root, closed.post_root, closed.step_count)
    every = list(range(closed.step_count + 1))
    got = roots.roots_at(claim, every)
    assert got[0] == closed.pre_root and got[closed.step_count] == closed.post_root
    # an independent replay: the posted bytes decoded, each step's root from the state DB
    posted = Batch.decode(closed.encoded)
    ctx = BatchContext.create(posted.timestamp, ex.chain, ListQueues(), list(posted.orders))
    independent = ex.db.roots_after_each(closed.pre_root, posted.steps, ctx)
    assert [got[i] for i in every] == independent
    assert len(set(independent)) > 2  # the trades moved the state at every step
    # sliced: a pause every 2 steps (what the process does between commands), same roots
    n = closed.step_count
    work = replay_slices(ex.db, ex.chain, closed, [0, n], slice_steps=2)
    pauses = 0
    while True:
        try:
            next(work)
            pauses += 1
        except StopIteration as stop:
            assert stop.value == {0: closed.pre_root, n: closed.post_root}
            break
    assert pauses == (n + 1) // 2
    with pytest.raises(UnknownBatch):
        roots.roots_at(BatchClaim(7, closed.pre_root, bytes(32), closed.step_count), [0])
    with pytest.raises(IndexError):
        roots.roots_at(claim, [closed.step_count + 1])


# ---------------------------------------------------------------- titanoboa, the real one-step prover


class BoaDefenderChain:
    """:class:`sequencer.defender.DefenderChain` over titanoboa, sending as the proposer."""

    def __init__(self, chain: L1Chain, journal: Journal) -> None:
        self.chain = chain
        self.journal = journal
        self.view = BoaDisputeChain(chain, journal, chain.sequencer)
        self.sent: list[str] = []

    @property
    def address(self) -> str:
        return self.view.address

    def constants(self) -> RollupConstants:
        return self.view.constants()

    def now(self) -> int:
        return now()

    def game_count(self) -> int:
        return int(self.chain.rollup.gameCount())

    def game(self, gid: int) -> Game:
        return self.view.game(gid)

    def batch_claim(self, index: int) -> BatchClaim:
        b = batch_info_from_abi(index, self.chain.rollup.batch(index))
        return BatchClaim(index, b.pre_root, b.post_root, b.n_steps)

    def _send(self, name: str, fn: Callable[[], object]) -> None:
        with boa.env.prank(self.chain.sequencer):
            l1_call(fn)
        self.journal.record(self.chain.rollup)
        self.sent.append(name)

    def post_roots(self, gid: int, roots: Sequence[bytes]) -> None:
        self._send("postRoots", lambda: self.chain.rollup.postRoots(gid, list(roots)))

    def timeout(self, gid: int) -> None:
        self._send("timeout", lambda: self.chain.rollup.timeout(gid))


@pytest.fixture
def real_chain() -> L1Chain:
    """A deployment with the real one-step prover (titanoboa compiles it once per process)."""
    return L1Chain(real_prover=True)


def test_the_real_prover_ends_a_lying_challengers_game(real_chain: L1Chain) -> None:
    """The sequencer core's batch on L1; a challenger disputes it, names the last part every
    round and proves the last step with the real prover: the proven root is the defender's,
    the asserter wins. The defender is replaced by a fresh one mid-game (a restart)."""
    chain = real_chain
    set_time(now() + 1)
    desk = Desk(Exchange.in_memory(chain.world.chain, dict(chain.world.leaves)), chain.world, now=now())
    for name in ("maker", "taker"):
        chain.deposit(name, 100_000 * USDC)
    desk.fund(["maker", "taker"], 100_000 * USDC)
    desk.prices()
    for _ in range(12):
        desk.place("maker", ETH_PERP, False, 3_000_000, 1)
    assert desk.place("taker", ETH_PERP, True, 3_000_000, 12).filled == 12
    closed = desk.ex.close_batch(desk.now)
    assert closed is not None and closed.step_count > int(chain.rollup.K())
    set_time(max(now(), closed.timestamp) + 1)
    journal = Journal(chain.rollup)
    for b in desk.ex.pending_batches():  # the deposits' batch, then the trades'
        with boa.env.prank(chain.sequencer):
            index = int(chain.rollup.postBatch(b.encoded, b.post_root, b.step_count))
        journal.record(chain.rollup, b.encoded)
    assert b is closed
    posted = Posted(index, Batch.decode(closed.encoded),
                    BatchData.of(parse_batch(closed.encoded), closed.deposit_start, closed.forced_start),
                    [closed.pre_root], closed.post_root)
    chain.posted[index] = posted

    def defender() -> Defender:
        return Defender(BoaDefenderChain(chain, journal), StoreRoots(desk.ex.pending_batches, lambda: desk.ex.db,
                                                                     desk.ex.chain))

    liar = chain.actor("liar")
    chain.fund_bond(liar, TEST.challenger_bond)
    with boa.env.prank(liar):
        gid = int(chain.rollup.createGame(index))
    journal.record(chain.rollup)
    k = int(chain.rollup.K())
    playing = defender()
    moves: list[str] = []
    for turn in range(20):
        moves += [a.move for a in playing.tick()]
        if turn == 1:
            playing = defender()  # restarted: everything it needs is on L1 and in the core's records
        g = game_info_from_abi(gid, chain.rollup.game(gid))
        if g.status != GameStatus.ACTIVE:
            break
        if g.turn == Side.CHALLENGER:
            if g.hi - g.lo == 1:
                chain.db = desk.ex.db  # the witness of the real step, from the batch's real pre-state
                chain.prove(posted, int(g.lo), bytes(g.lo_root))  # executed by the real prover
                with boa.env.prank(liar):
                    chain.rollup.proveStep(gid)
            else:
                roots = list(BoaDisputeChain(chain, journal, liar).round_roots(gid, int(g.round)) or ())
                with boa.env.prank(liar):
                    chain.rollup.choosePart(gid, roots, len(split_points(g.lo, g.hi, k)) - 2)
            journal.record(chain.rollup)
        set_time(now() + 5)
    g = game_info_from_abi(gid, chain.rollup.game(gid))
    assert g.status == GameStatus.ASSERTER_WON
    assert (g.lo, g.hi) == (closed.step_count - 1, closed.step_count) and bytes(g.hi_root) == closed.post_root
    assert moves.count("postRoots") == 2
    assert chain.rollup.batchStatus(index) == BatchStatus.PENDING
    assert chain.rollup.bonds(liar) == 0
    playing.tick()
    assert playing.outcomes.won == [gid] and playing.games == {}


# ---------------------------------------------------------------- the process on anvil


def _start(cfg: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", "sequencer", "--config", str(cfg)],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


def _wait_game(rollup: Any, gid: int, pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        g = rollup.game(gid)
        if pred(g):
            return g
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {g}"
        time.sleep(0.2)


@anvil_only
def test_the_defender_beats_a_lying_challenger_across_a_restart(tmp_path: Path) -> None:
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
        extra = "[defender]\nenabled = true\ninterval = 0.2\n"
        cfg.write_text(config_text(tmp_path / "data", port, anvil.url, deployment, genesis_time, extra=extra))
        w3 = anvil.web3()
        operator = Contracts.connect(w3, d, Transactor(w3, Account.from_key(DEV_KEYS[0])))
        traders = [Account.from_key(k) for k in DEV_KEYS[1:3]]
        for t in traders:
            operator.token.mint(t.address, AMOUNT)
            mine = Contracts.connect(w3, d, Transactor(w3, t))
            mine.token.approve(d.bridge, AMOUNT)
            mine.bridge.deposit(AMOUNT)
        liar_account = Account.from_key(DEV_KEYS[3])
        liar = Contracts.connect(w3, d, Transactor(w3, liar_account))

        log_path = tmp_path / "sequencer.log"
        proc = _start(cfg, log_path)
        try:
            url = f"http://127.0.0.1:{port}/"
            rpc = SyncRpcClient(url, timeout=10)
            info: dict[str, Any] = wait_for(lambda: rpc.call("hfx_chainInfo"), 30, "the RPC server")
            for t in traders:
                wait_for(lambda t=t: rpc.call("hfx_getAccount", [t.address]), 20, "the deposit")  # type: ignore[misc]
            wait_for(lambda: rpc.call("hfx_getMarkets")["markets"][0]["mark"], 10, "oracle prices")
            maker = TraderClient(url, DEV_KEYS[1], info)
            taker = TraderClient(url, DEV_KEYS[2], info)
            for _ in range(12):
                assert maker.place_order(0, False, 3_000_000, 1)["status"] == "RESTING"
            hit = taker.place_order(0, True, 3_000_000, 12)
            assert hit["filled"] == 12
            fill_batch = hit["fills"][0]["batch"]
            assert {f["batch"] for f in hit["fills"]} == {fill_batch}

            def posted() -> dict[str, Any] | None:
                for b in rpc.call("hfx_getBatches", {"limit": 50})["batches"]:
                    if b["index"] == fill_batch and b["l1"] and b["l1"]["state"] in ("posted", "confirmed"):
                        return dict(b)
                return None

            batch = wait_for(posted, 30, "the fills' batch on L1")
            batch_id = int(batch["l1"]["batchId"])
            steps = int(batch["steps"])
            assert steps > DEVNET.k  # two rounds

            # the liar disputes the honest root
            before = liar.rollup.game_count()
            liar.rollup.create_game(batch_id, value=DEVNET.challenger_bond)
            gid = before
            block = anvil.block_number()

            def choose_last(g: Any) -> None:
                roots = liar.rollup.roots_posted(gid, block)[g.round]
                liar.rollup.choose_part(gid, roots, len(split_points(g.lo, g.hi, DEVNET.k)) - 2)

            g = _wait_game(liar.rollup, gid, lambda g: g.turn == Side.CHALLENGER, 20, "the defender's first roots")
            assert (g.lo, g.hi) == (0, steps) and g.roots_hash != bytes(32)
            assert _stop(proc) == 0  # down while the game goes on
            choose_last(g)
            g = liar.rollup.game(gid)
            assert g.status == GameStatus.ACTIVE and g.turn == Side.ASSERTER and g.hi - g.lo > 1

            proc = _start(cfg, log_path)  # restarted mid-game: it must find the game on L1
            g = _wait_game(liar.rollup, gid, lambda g: g.turn == Side.CHALLENGER, 40, "the resumed defender")
            choose_last(g)
            g = liar.rollup.game(gid)
            assert g.hi - g.lo == 1 and g.turn == Side.CHALLENGER and g.hi == steps
            # the liar cannot prove the honest step wrong: it lets its clock run out
            anvil.increase_time(DEVNET.clock + 2)
            g = _wait_game(liar.rollup, gid, lambda g: g.status != GameStatus.ACTIVE, 20, "the timeout")
            assert g.status == GameStatus.ASSERTER_WON
            assert operator.rollup.batch(batch_id).status == BatchStatus.PENDING
            assert liar.rollup.free_bond(liar_account.address) == 0
            defender = wait_for(lambda: (rpc.call("hfx_syncStatus")["defender"] or {}).get("won"), 10,
                                "the defender's status")
            assert defender == [gid]
            maker.close()
            taker.close()
            rpc.close()
        finally:
            code = _stop(proc)
        output = log_path.read_text()
        assert code == 0, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        assert '"move": "postRoots"' in output and '"move": "timeout"' in output
    assert time.monotonic() - started < 90
