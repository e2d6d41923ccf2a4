"""Dishonest challengers, parties that stop answering, and several challengers at once, on anvil (docs/adversaries.md).

One anvil for the module; each test deploys its own rollup on it, posts an
opening batch with the honest operator, and starts ``hfx challenger``
processes against it. The asserter of an honest batch is the honest side of
:class:`tests.e2e.actors.Proposer` (the operator's account, the honest trace).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from challenger.chain import Game, GameStatus
from challenger.web3_chain import Web3DisputeChain
from l1_contracts.bindings import BatchStatus
from l1_contracts.config import BPS, DEVNET, RollupConfig
from node.anvil import DEV_KEYS, Anvil, anvil_available
from node.derive import Derivation
from node.follower import Follower
from node.l1 import L1Client
from tests.challenger.anvil_l1 import patch_compile, write_abis
from tests.e2e.actors import (
    DISHONEST_CHALLENGER,
    OPERATOR_KEY,
    DishonestChallenger,
    Proposer,
    Stage,
    actor_key,
    lying_trace,
)

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")

CONFIG: RollupConfig = DEVNET.with_(fallback_period=0)
"""Anyone with a bond may propose (the liar is not the operator); two-minute clocks."""
HONEST_KEYS = (DEV_KEYS[1], DEV_KEYS[3])
LIAR_KEY = DEV_KEYS[2]
DISHONEST_KEYS = tuple(actor_key(f"dishonest-{i}") for i in range(3))
BURN = CONFIG.challenger_bond * CONFIG.burn_bps // BPS
PROPOSER_BURN = CONFIG.proposer_bond * CONFIG.burn_bps // BPS


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, Path]]:
    with pytest.MonkeyPatch.context() as mp, Anvil() as l1:
        patch_compile(mp)
        abis = tmp_path_factory.mktemp("abis") / "abis.json"
        write_abis(abis)
        yield l1, abis


@pytest.fixture
def stage(anvil: tuple[Anvil, Path], tmp_path: Path) -> Iterator[Stage]:
    """A fresh deployment on the module's anvil with maker and taker funded and prices posted."""
    l1, abis = anvil
    (tmp_path / "abis.json").write_bytes(abis.read_bytes())
    s = Stage(l1, CONFIG, tmp_path)
    for key in DISHONEST_KEYS:
        s.fund(key)
    s.open_market()
    try:
        yield s
    finally:
        logs = s.stop_all()
        for name, text in logs.items():
            assert "Traceback" not in text, f"{name}:\n{text}"


@dataclass
class Watcher:
    """An in-process dishonest challenger with its own node."""

    actor: DishonestChallenger
    derivation: Derivation
    follower: Follower

    def tick(self) -> None:
        self.follower.catch_up()
        self.actor.tick()


def dishonest(stage: Stage, key: str, name: str, **kw: Any) -> Watcher:
    """A dishonest challenger signing as ``key``, following L1 with a node of its own."""
    derivation, follower = stage.node(stage.workdir / name)
    d = stage.deployment
    chain = Web3DisputeChain(L1Client(stage.anvil.url), d.rollup, d.prover, Account.from_key(key), start_block=d.block)
    return Watcher(DishonestChallenger(chain, derivation, **kw), derivation, follower)


def run_until(done: Callable[[], bool], *tickers: Callable[[], object], stage: Stage, timeout: float = 30.0) -> None:
    """Tick every actor until ``done()`` (AssertionError after ``timeout`` s or if a process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in stage.procs:
            p.check_alive()
        for tick in tickers:
            tick()
        if done():
            return
        time.sleep(0.05)
    logs = "\n".join(f"--- {p.log_file.name}:\n{p.output()[-3000:]}" for p in stage.procs)
    raise AssertionError(f"not reached in {timeout} s; games: {games(stage)}\n{logs}")


def games(stage: Stage) -> list[Game]:
    """Every game on the deployment."""
    rollup = stage.operator.rollup
    return [Game.of(rollup.game(g)) for g in range(rollup.game_count())]


def conserved(stage: Stage, *keys: str) -> None:
    """The rollup holds exactly Σ bonds + burnt (docs/l1.md §3)."""
    owners = {Account.from_key(k).address for k in (OPERATOR_KEY, LIAR_KEY, *keys)}
    assert stage.balance() == sum(stage.bonds(a) for a in owners) + stage.burnt()


# ---------------------------------------------------------------- dishonest challengers


def test_dishonest_challengers_lose_to_the_honest_asserter_and_pay_it(stage: Stage) -> None:
    """Three liars dispute an honest batch, their traces false from the first, a middle and
    the last step on: each names the parts its trace falsely disputes, claims the win with
    nothing proven (refused), proves the only root the prover records, and loses its bond to
    the asserter. The honest challenger process agrees with the batch and opens nothing."""
    honest_challenger = stage.spawn_challenger(HONEST_KEYS[0], "honest", "--interval", "0.1", "--max-seconds", "120")
    batch = stage.trading_batch(20)
    roots = stage.honest_roots(batch)
    asserter = Proposer(stage.operator, stage.w3, CONFIG.k, CONFIG.proposer_bond)
    index = asserter.post(batch, roots)
    stage.replica.apply_batch(batch, stage.context(batch))
    watchers = [dishonest(stage, key, f"liar{i}", targets={index}, wrong_at=w)
                for i, (key, w) in enumerate(zip(DISHONEST_KEYS, (0, 10, None), strict=True))]
    op_bond = stage.bonds(asserter.address)
    try:
        run_until(lambda: len(games(stage)) == 3 and all(g.status != GameStatus.ACTIVE for g in games(stage)),
                  asserter.tick, *(w.tick for w in watchers), stage=stage)
        for w in watchers:
            w.tick()
        by_challenger = {g.challenger: g for g in games(stage)}
        for w, proven in zip(watchers, (0, 10, 20), strict=True):
            g = by_challenger[w.actor.chain.address]
            assert g.status == GameStatus.ASSERTER_WON, g
            assert (g.lo, g.hi) == (proven, proven + 1)  # where its own trace turned false
            assert "STEP_NOT_PROVEN" in w.actor.refused  # the unproven claim was refused
            assert stage.bonds(w.actor.chain.address) == 0  # its bond went to the asserter
            assert list(w.actor.outcomes.values()) == ["ASSERTER_WON"]
        assert stage.bonds(asserter.address) == op_bond + 3 * (CONFIG.challenger_bond - BURN)
        assert stage.operator.rollup.batch(index).status == BatchStatus.PENDING
        st = honest_challenger.wait_status(lambda s: s["follower"]["head"] == index, 10)
        assert st["player"]["won"] == [] and st["player"]["active"] == [] and st["player"]["skipped"] == {}
        conserved(stage, *DISHONEST_KEYS)
    finally:
        for w in watchers:
            w.derivation.close()


# ---------------------------------------------------------------- clocks


def test_a_proposer_that_stops_answering_loses_on_its_clock(stage: Stage) -> None:
    """The liar answers the first round, then goes silent: the challenger process claims the
    timeout once the asserter's clock is spent; the batch is removed and the honest side re-posts."""
    challenger = stage.spawn_challenger(HONEST_KEYS[0], "honest", "--interval", "0.1", "--max-seconds", "120")
    parent = stage.operator.rollup.head()
    batch = stage.trading_batch(20)
    honest = stage.honest_roots(batch)
    liar = Proposer(stage.connect(LIAR_KEY), stage.w3, CONFIG.k, CONFIG.proposer_bond, stop_after=1)
    index = liar.post(batch, lying_trace(honest, 17))
    run_until(lambda: liar.silent() and games(stage)[0].turn.name == "ASSERTER", liar.tick, stage=stage)
    g = games(stage)[0]
    assert g.status == GameStatus.ACTIVE and (g.lo, g.hi) == (15, 18)  # the liar owes the second round
    stage.anvil.increase_time(g.asserter_clock + 1)
    run_until(lambda: games(stage)[0].status != GameStatus.ACTIVE, liar.tick, stage=stage)
    g = games(stage)[0]
    assert g.status == GameStatus.CHALLENGER_WON and (g.lo, g.hi) == (15, 18)  # won on time, not by a proof
    assert stage.operator.rollup.batch(index).status == BatchStatus.REMOVED
    assert stage.operator.rollup.head() == parent
    # the honest side re-posts; the challenger's node follows it to the honest root
    repost = stage.post_honest(stage.trading_batch(20))
    st = challenger.wait_status(lambda s: s["follower"]["head"] == repost and s["player"]["won"] == [0], 15)
    assert st["follower"]["head_root"] == "0x" + stage.replica.root.hex()
    conserved(stage, HONEST_KEYS[0])


def test_a_challenger_that_stops_answering_loses_on_its_clock(stage: Stage) -> None:
    """A dishonest challenger opens a game on an honest batch and never moves: the honest
    asserter posts its roots, then claims the timeout when the challenger's clock is spent."""
    batch = stage.trading_batch(20)
    asserter = Proposer(stage.operator, stage.w3, CONFIG.k, CONFIG.proposer_bond)
    index = asserter.post(batch, stage.honest_roots(batch))
    stage.replica.apply_batch(batch, stage.context(batch))
    silent = dishonest(stage, DISHONEST_KEYS[0], "silent", targets={index}, answers=False)
    try:
        run_until(lambda: bool(games(stage)) and games(stage)[0].turn.name == "CHALLENGER",
                  silent.tick, asserter.tick, stage=stage)
        op_bond = stage.bonds(asserter.address)
        g = games(stage)[0]
        assert g.roots_posted and g.round == 0
        stage.anvil.increase_time(g.challenger_clock + 1)
        run_until(lambda: games(stage)[0].status != GameStatus.ACTIVE, asserter.tick, silent.tick, stage=stage)
        g = games(stage)[0]
        assert g.status == GameStatus.ASSERTER_WON
        assert [m for m in asserter.moves if m.startswith("timeout")] == ["timeout 0"]
        assert stage.bonds(asserter.address) == op_bond + CONFIG.challenger_bond - BURN
        assert stage.bonds(silent.actor.chain.address) == 0
        assert stage.operator.rollup.batch(index).status == BatchStatus.PENDING
        conserved(stage, DISHONEST_KEYS[0])
    finally:
        silent.derivation.close()


# ---------------------------------------------------------------- several challengers


def test_several_challengers_one_dishonest(stage: Stage) -> None:
    """Two honest challenger processes and a dishonest one (its own process, its trace false
    from the first step) against a root wrong from step 10. The liar answers its accomplice
    first: the dishonest game ends with the asserter's win (the dishonest bond paid to the
    liar, less the burn); then one honest game wins and removes the batch (the proposer's
    bond to that challenger, less the burn) and the other honest game is cancelled, its bond
    returned (docs/l1.md §4)."""
    parent = stage.operator.rollup.head()
    procs = [stage.spawn_challenger(k, f"honest{i}", "--interval", "0.1", "--max-seconds", "120")
             for i, k in enumerate(HONEST_KEYS)]
    batch = stage.trading_batch(20)
    honest = stage.honest_roots(batch)
    liar = Proposer(stage.connect(LIAR_KEY), stage.w3, CONFIG.k, CONFIG.proposer_bond)
    liar_bond = stage.bonds(liar.address)
    index = liar.post(batch, lying_trace(honest, 10))
    bad = stage.spawn_challenger(
        DISHONEST_KEYS[0], "dishonest", "--targets", str(index), "--wrong-at", "0", "--max-seconds", "120",
        "--interval", "0.1", entry=DISHONEST_CHALLENGER)
    # all three open their games before the liar answers any (the asserter moves first)
    run_until(lambda: len(games(stage)) == 3, stage=stage)
    by = {g.challenger: g.game for g in games(stage)}
    bad_gid = by[Account.from_key(DISHONEST_KEYS[0]).address]
    run_until(lambda: games(stage)[bad_gid].status != GameStatus.ACTIVE, lambda: liar.tick({bad_gid}), stage=stage)
    run_until(lambda: all(g.status != GameStatus.ACTIVE for g in games(stage)), liar.tick, stage=stage)
    final = {g.challenger: g for g in games(stage)}
    honest_games = [final[Account.from_key(k).address] for k in HONEST_KEYS]
    bad_game = final[Account.from_key(DISHONEST_KEYS[0]).address]
    assert bad_game.status == GameStatus.ASSERTER_WON and (bad_game.lo, bad_game.hi) == (0, 1)
    assert sorted(g.status.name for g in honest_games) == ["CANCELLED", "CHALLENGER_WON"]
    winner = next(g for g in honest_games if g.status == GameStatus.CHALLENGER_WON)
    assert (winner.lo, winner.hi) == (10, 11)
    assert stage.operator.rollup.batch(index).status == BatchStatus.REMOVED
    assert stage.operator.rollup.head() == parent
    # bonds as docs/l1.md §4 says
    for g in honest_games:
        won = g.status == GameStatus.CHALLENGER_WON
        assert stage.bonds(g.challenger) == CONFIG.challenger_bond + (CONFIG.proposer_bond - PROPOSER_BURN) * won
        assert stage.operator.rollup.free_bond(g.challenger) == stage.bonds(g.challenger)
    assert stage.bonds(bad_game.challenger) == 0
    assert stage.bonds(liar.address) == liar_bond + CONFIG.challenger_bond - BURN  # posted with 1 bond, lost it
    assert stage.burnt() == PROPOSER_BURN + BURN
    conserved(stage, *HONEST_KEYS, DISHONEST_KEYS[0])
    st = bad.wait_status(lambda s: str(bad_game.game) in s["player"]["outcomes"], 10)
    assert st["player"]["outcomes"][str(bad_game.game)] == "ASSERTER_WON"
    assert "STEP_NOT_PROVEN" in st["player"]["refused"]  # it claimed the win with nothing proven first
    # the honest side re-posts; every honest process's node ends on the honest root
    repost = stage.post_honest(stage.trading_batch(20))
    for p in procs:
        st = p.wait_status(lambda s: s["follower"]["head"] == repost and not s["player"]["active"], 15)
        assert st["follower"]["head_root"] == "0x" + stage.replica.root.hex()
        assert st["player"]["lost"] == []
