"""The challenger's player (challenger/player.py) end to end.

titanoboa, with the real one-step prover: the sequencer posts an opening batch
and a trading batch whose root is wrong from a middle step on; the player
(derivation fed from the rollup's events, games played through the
DisputeChain interface) opens a game, plays every round against the lying
asserter, proves the step on L1 with a witness from its own state and wins;
it is restarted mid-game and resumes from L1. Then an honest batch and a
lying challenger: the asserter's honest roots win and the player does nothing.

anvil, separate processes: the challenger CLI runs as its own process against
a real node; the test posts a wrong root and waits (bounded) for the process
to win the game.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account import Account
from web3 import Web3

from challenger.chain import GameStatus
from challenger.player import Player
from challenger.solver import Side
from l1_contracts.bindings import BatchStatus, Contracts, Transactor, game_info_from_abi
from l1_contracts.config import BPS, DEVNET, ETHER, TEST
from l1_contracts.deploy import Genesis, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available
from node.batches import Verdict
from node.derive import Derivation
from node.l1 import RetryPolicy
from proofs.game import split_points
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, ListQueues
from state.db import StateDB
from state.txs import encode_deposit, encode_trade
from tests.challenger.anvil_l1 import patch_compile, write_abis
from tests.challenger.boa_l1 import BoaAsserter, BoaDisputeChain, BoaFeed
from tests.l1.fixtures_rollup import ETH_PERP, L1Chain, bad_root, now, set_time
from tests.world import ETH, USDC, World

REPO = Path(__file__).resolve().parents[2]


class Flaky:
    """A DisputeChain whose every third call fails on the transport before reaching L1."""

    def __init__(self, inner: Any, every: int = 3) -> None:
        self.inner = inner
        self.every = every
        self.calls = 0
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls % self.every == 0:
                self.failures += 1
                raise ConnectionError("connection reset by peer")
            return attr(*args, **kwargs)

        return call


def corrupt(honest: list[bytes], from_step: int) -> list[bytes]:
    """A lying asserter's trace: honest before ``from_step``, invented from there on."""
    return honest[:from_step] + [bad_root(b"lie:%d" % j) for j in range(from_step, len(honest))]


@pytest.fixture
def real_chain() -> L1Chain:
    """A deployment with the real one-step prover (titanoboa compiles it once per process)."""
    return L1Chain(real_prover=True)


def test_the_player_beats_a_wrong_root_and_survives_a_restart(real_chain: L1Chain, tmp_path: Path) -> None:
    chain = real_chain
    derivation = Derivation.open(tmp_path / "node", chain.world.chain, chain.genesis_root, chain.world.leaves)
    feed = BoaFeed(chain, derivation)
    feed.post(chain.opening_batch())
    set_time(now() + 3)
    batch = chain.trading_batch(20)
    honest = chain.honest_roots(batch)
    lie = corrupt(honest, 9)
    wrong = feed.post(batch, lie[-1])
    rec = derivation.record(wrong.index)
    assert rec is not None and rec.verdict == Verdict.MISMATCH

    me = chain.actor("challenger")
    sequencer = BoaAsserter(chain, feed.journal, {wrong.index: lie})
    dispute = BoaDisputeChain(chain, feed.journal, me)
    player = Player(dispute, derivation, budget=2 * TEST.challenger_bond)
    seq_bond = int(chain.rollup.bonds(chain.sequencer))
    moves = []
    for tick in range(40):
        if tick == 3:  # a restart: a new player finds its game on L1, through a flaky connection
            flaky = Flaky(dispute)
            player = Player(flaky, derivation, budget=2 * TEST.challenger_bond,  # type: ignore[arg-type]
                            retry=RetryPolicy(attempts=4, base_delay=0.0), sleep=lambda _: None)
        moves += [a.move for a in player.tick()]
        sequencer.tick()
        feed.sync()
        set_time(now() + 5)
        if player.outcomes.won:
            break
    assert player.outcomes.won == [0], (moves, player.status())
    assert flaky.failures > 5 and player.errors == flaky.failures  # every failure retried
    assert moves[0] == "createGame" and moves.count("createGame") == 1
    assert moves.count("choosePart") == 2 and "proveStep" in moves  # 20 steps, k = 8: 21 -> 3 -> 1
    g = game_info_from_abi(0, chain.rollup.game(0))
    assert g.status == GameStatus.CHALLENGER_WON and (g.lo, g.hi) == (8, 9)  # the first wrong step
    assert chain.rollup.batchStatus(wrong.index) == BatchStatus.REMOVED
    burn = TEST.proposer_bond * TEST.burn_bps // BPS
    assert chain.rollup.bonds(me) == TEST.challenger_bond + TEST.proposer_bond - burn
    assert chain.rollup.bonds(chain.sequencer) == seq_bond - TEST.proposer_bond
    # the derivation followed the removal back to the parent
    assert derivation.record(wrong.index).l1_status == BatchStatus.REMOVED  # type: ignore[union-attr]
    assert derivation.db.root == chain.db.root
    st = player.status()
    assert st["won"] == [0] and st["active"] == [] and st["locked"] == 0
    assert st["free_bond"] == chain.rollup.freeBond(me)
    # one game per batch: nothing more to do
    assert player.tick() == []
    derivation.close()


def test_a_create_game_whose_receipt_is_lost_is_found_not_repeated(real_chain: L1Chain, tmp_path: Path) -> None:
    chain = real_chain
    derivation = Derivation.open(tmp_path / "node", chain.world.chain, chain.genesis_root, chain.world.leaves)
    feed = BoaFeed(chain, derivation)
    feed.post(chain.opening_batch())
    set_time(now() + 3)
    wrong = feed.post(chain.trading_batch(3), bad_root(b"wrong"))
    dispute = BoaDisputeChain(chain, feed.journal, chain.actor("challenger"))

    class LostReceipt(Flaky):
        def __getattr__(self, name: str) -> Any:
            attr = getattr(self.inner, name)
            if name != "create_game":
                return attr

            def create(*args: Any) -> Any:
                attr(*args)  # the transaction lands...
                raise ConnectionError("read timed out")  # ...but its receipt never reaches us

            return create

    player = Player(LostReceipt(dispute), derivation, budget=4 * TEST.challenger_bond)  # type: ignore[arg-type]
    assert player.tick() == []
    assert "not confirmed" in player.status()["skipped"][str(wrong.index)]
    assert [a.move for a in player.tick()] == []  # the next tick finds the game on L1...
    assert list(player.games) == [0] and player.challenged == {wrong.index}
    assert dispute.sent.count("createGame") == 1  # ...and opens no second one
    derivation.close()


def test_a_lying_challenger_loses_to_the_honest_asserter(real_chain: L1Chain, tmp_path: Path) -> None:
    chain = real_chain
    derivation = Derivation.open(tmp_path / "node", chain.world.chain, chain.genesis_root, chain.world.leaves)
    feed = BoaFeed(chain, derivation)
    feed.post(chain.opening_batch())
    set_time(now() + 3)
    posted = feed.post(chain.trading_batch(12))
    assert posted.honest and posted.roots is not None
    assert derivation.record(posted.index).verdict == Verdict.MATCH  # type: ignore[union-attr]
    sequencer = BoaAsserter(chain, feed.journal, {posted.index: posted.roots})
    player = Player(BoaDisputeChain(chain, feed.journal, chain.actor("watcher")), derivation, budget=TEST.challenger_bond)
    # the liar: disputes the honest root, always names the last part, proves at one step
    liar = chain.actor("liar")
    chain.fund_bond(liar, TEST.challenger_bond)
    with boa.env.prank(liar):
        gid = int(chain.rollup.createGame(posted.index))
    feed.journal.record(chain.rollup)
    k = int(chain.rollup.K())
    for _ in range(20):
        assert player.tick() == []  # the honest watcher agrees with the batch: no game of its own
        sequencer.tick()
        g = game_info_from_abi(gid, chain.rollup.game(gid))
        if g.status != GameStatus.ACTIVE:
            break
        if g.turn == Side.CHALLENGER:
            if g.hi - g.lo == 1:
                chain.prove(posted, int(g.lo), bytes(g.lo_root))
                with boa.env.prank(liar):
                    chain.rollup.proveStep(gid)
            else:
                roots = list(BoaDisputeChain(chain, feed.journal, liar).round_roots(gid, int(g.round)) or ())
                with boa.env.prank(liar):
                    chain.rollup.choosePart(gid, roots, len(split_points(g.lo, g.hi, k)) - 2)
            feed.journal.record(chain.rollup)
        set_time(now() + 5)
    g = game_info_from_abi(gid, chain.rollup.game(gid))
    assert g.status == GameStatus.ASSERTER_WON
    assert (g.lo, g.hi) == (12, 13) and bytes(g.hi_root) == posted.roots[13]  # an oracle step + 12 trades
    assert chain.rollup.batchStatus(posted.index) == BatchStatus.PENDING
    assert chain.rollup.bonds(liar) == 0
    assert player.status()["active"] == [] and player.outcomes.won == []
    derivation.close()


# ---------------------------------------------------------------- anvil, separate processes

anvil_only = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")
OPERATOR = Account.from_key(DEV_KEYS[0])
CHALLENGER = Account.from_key(DEV_KEYS[1])


@pytest.fixture
def devnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    patch_compile(monkeypatch)
    with Anvil() as anvil:
        yield {"anvil": anvil, "tmp": tmp_path}


@anvil_only
def test_the_challenger_process_wins_on_anvil(devnet: dict[str, Any]) -> None:
    """The CLI as a child process against anvil: a wrong root is challenged, played and proven."""
    anvil: Anvil = devnet["anvil"]
    tmp: Path = devnet["tmp"]
    w3 = anvil.web3()
    tx = Transactor(w3, OPERATOR)
    world = World(time=anvil.timestamp_of() - 60)
    replica = StateDB.in_memory()
    genesis_root = replica.initialize(world.leaves)
    keys = sorted(Web3.to_checksum_address(a) for a in world.chain.oracle_keys)
    dep = deploy_web3(anvil.url, DEV_KEYS[0], Genesis(genesis_root, world.time, keys, 1), DEVNET)
    chain = ChainConfig(dep.chain_id, bytes.fromhex(dep.rollup[2:]), world.chain.oracle_keys, 1)
    world.chain, world.domain = chain, chain.domain
    contracts = Contracts.connect(w3, dep, tx)
    queues = ListQueues()
    for name in ("maker", "taker"):  # each trader deposits from its own L1 account
        acct = Account.from_key(World.key(name))
        anvil.set_balance(acct.address, 10 * ETHER)
        contracts.token.mint(acct.address, 1_000_000 * USDC)
        own = Contracts.connect(w3, dep, Transactor(w3, acct))
        own.token.approve(dep.bridge, 1_000_000 * USDC)
        own.bridge.deposit(1_000_000 * USDC)
        queues.deposits.append(L1Deposit(world.address(name), 1_000_000 * USDC))

    def post(batch: Batch, lie: bool = False) -> list[bytes]:
        ctx = BatchContext.create(batch.timestamp, chain, queues, list(batch.orders))
        roots = replica.roots_after_each(replica.root, batch.steps, ctx)
        if not lie:
            replica.apply_batch(batch, ctx)
        root = bad_root(b"anvil lie") if lie else roots[-1]
        contracts.rollup.post_batch(batch.encode(), root, len(batch.steps), value=DEVNET.proposer_bond)
        return roots

    t = anvil.timestamp_of()
    world.time = t
    oracle = world.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000}, timestamp=t)
    post(Batch(t, (), (encode_deposit(), encode_deposit(), oracle)))
    world.index.update(maker=1, taker=2)

    (tmp / "deployment.json").write_text(dep.to_json())
    leaves = {"0x" + k.hex(): "0x" + v.hex() for k, v in world.leaves.items()}
    (tmp / "genesis.json").write_text(json.dumps({"leaves": leaves}))
    write_abis(tmp / "abis.json")
    status_file = tmp / "status.json"
    env = dict(os.environ, HFX_CHALLENGER_KEY=DEV_KEYS[1], HFX_TEST_ABIS=str(tmp / "abis.json"), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.challenger.run_challenger", "--rpc", anvil.url,
         "--deployment", str(tmp / "deployment.json"), "--genesis", str(tmp / "genesis.json"),
         "--data-dir", str(tmp / "challenger"), "--interval", "0.2", "--max-seconds", "90",
         "--status-file", str(status_file), "--log-level", "WARNING"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        # the sequencer's lying batch: its roots are right for 4 steps, wrong after
        anvil.increase_time(2)
        t = anvil.timestamp_of()
        world.time = t
        orders = [world.order("maker", ETH_PERP, False, 3_000_000, 9), world.order("taker", ETH_PERP, True, 3_000_000, 9)]
        oracle = world.oracle_step({ETH_PERP: 3_000_001}, {ETH: 3_000_000}, timestamp=t)
        honest = post(Batch(t, tuple(orders), (oracle, *(encode_trade(0, 1, 1) for _ in range(9)))), lie=True)
        lying = honest[:5] + [bad_root(b"anvil:%d" % j) for j in range(5, len(honest))]
        assert len(set(honest)) == len(honest)  # every step changes the state
        outcome = _defend(contracts, lying, proc, timeout=60)
        assert outcome.status == GameStatus.CHALLENGER_WON and (outcome.lo, outcome.hi) == (4, 5)
        assert contracts.rollup.batch(2).status == BatchStatus.REMOVED
        assert contracts.rollup.free_bond(CHALLENGER.address) > DEVNET.challenger_bond
        st = _wait_status(status_file, lambda st: st.get("player", {}).get("won") == [0], timeout=15)
        assert st["follower"]["head"] == 1  # the node rolled back to the parent
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in out, out


def _defend(contracts: Any, trace: list[bytes], proc: subprocess.Popen[bytes], timeout: float) -> Any:
    """Answer game 0 as the sequencer would, from ``trace``, until it ends (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode() if proc.stdout else "challenger exited")
        if contracts.rollup.game_count():
            g = contracts.rollup.game(0)
            if g.status != GameStatus.ACTIVE:
                return g
            if g.turn == Side.ASSERTER:
                inner = split_points(g.lo, g.hi, DEVNET.k)[1:-1]
                contracts.rollup.post_roots(0, [trace[p] for p in inner])
        time.sleep(0.2)
    raise AssertionError("the game did not end in time")


def _wait_status(path: Path, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            st = json.loads(path.read_text())
        except (OSError, ValueError):
            st = {}
        if done(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"status not reached: {st}")
