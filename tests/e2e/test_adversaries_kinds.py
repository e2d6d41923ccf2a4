"""A dishonest proposer lying at the first, a middle and the last step, for every transaction kind (docs/adversaries.md).

One anvil, one deployment, one ``hfx challenger`` process. The honest
operator posts two setup batches (deposits and prices; trades, then a price
drop that leaves one account liquidatable and another bankrupt), a deposit
and a forced withdrawal are queued on the bridge, and from that honest head
the dishonest proposer posts, one after another, 30 batches of nine steps:
eight trades and one step of the kind under test at step 0, 4 or 8, each
with a root that is right up to that step and invented after it, plus a
descendant batch on top of it. The challenger process finds each, wins the
game with the real one-step prover at exactly that step, the batch and its
descendant are removed (the head returns to the honest parent, where the
next lie is posted); at the end the operator posts the honest batch and both
the challenger's node and a node of the test's own end on the honest root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from challenger.chain import Game, GameStatus
from l1_contracts.bindings import BatchStatus
from l1_contracts.config import BPS, DEVNET, RollupConfig
from node.anvil import DEV_KEYS, Anvil, anvil_available
from state.batch import Batch
from state.signing import sign_order, signed_cancel, signed_withdraw
from state.txs import (
    encode_deleverage,
    encode_deposit,
    encode_forced,
    encode_forced_withdraw,
    encode_funding,
    encode_liquidate,
    encode_settle,
    encode_trade,
)
from tests.challenger.anvil_l1 import patch_compile, write_abis
from tests.e2e.actors import OPERATOR_KEY, Proposer, Stage, lying_trace
from tests.world import BTC, BTC_PERP, ETH, ETH_CALL, ETH_PERP, ETH_PUT, USDC

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")

CONFIG: RollupConfig = DEVNET.with_(fallback_period=0)
"""Anyone with a bond may propose: the operator is honest, the liar another account."""
LIAR_KEY = DEV_KEYS[2]
CHALLENGER_KEY = DEV_KEYS[1]
KINDS = ("deposit", "withdraw", "trade", "cancel", "oracle", "funding", "liquidate", "deleverage", "settle", "forced")
POSITIONS = {"first": 0, "middle": 4, "last": 8}
FILLERS = 8
GAME_TIMEOUT = 30.0


class KindsBook:
    """The honest head the lies are posted on, and one effective step of every kind from it."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        w = stage.world
        traders = (("maker", 10_000_000 * USDC), ("taker", 1_000_000 * USDC), ("target", 400 * USDC),
                   ("broke", 400 * USDC), ("liq", 100_000 * USDC))
        for name, amount in traders:
            stage.deposit(name, amount)
        t1 = stage.anvil.timestamp_of() - 10
        w.time = t1
        prices = w.oracle_step({ETH_PERP: 3_000_000, BTC_PERP: 6_000_000, ETH_CALL: 40_000, ETH_PUT: 30_000},
                               {ETH: 3_000_000, BTC: 6_000_000}, timestamp=t1)
        stage.post_honest(Batch(t1, (), (*(encode_deposit() for _ in traders), prices)))
        stage.learn_accounts(name for name, _ in traders)
        # the target (ETH) and "broke" (BTC) open leveraged longs; then both prices drop:
        # the target is liquidatable, "broke" bankrupt (the insurance fund is empty)
        t2 = t1 + 1
        w.time = t2
        opening = (w.order("maker", ETH_PERP, False, 3_000_000, 1000), w.order("target", ETH_PERP, True, 3_000_000, 1000),
                   w.order("maker", BTC_PERP, False, 6_000_000, 500), w.order("broke", BTC_PERP, True, 6_000_000, 500))
        drop = w.oracle_step({ETH_PERP: 2_700_000, BTC_PERP: 5_000_000}, {ETH: 2_700_000, BTC: 5_000_000}, timestamp=t2)
        stage.post_honest(Batch(t2, opening, (encode_trade(0, 1, 1000), encode_trade(2, 3, 500), drop)))
        self.parent = int(stage.operator.rollup.head())
        self.parent_root = stage.replica.root
        # queued on L1 after the head: a deposit and a forced withdrawal for the next batch to consume
        stage.deposit("taker", 7 * USDC)
        stage.force("maker", encode_forced_withdraw(w.index["maker"], b"\x55" * 20, 3 * USDC))
        self.time = t2 + 1
        w.time = self.time
        cancelled = w.body("taker", ETH_PERP, True, 2_700_000, 5)
        self.orders = (
            w.order("maker", ETH_PERP, False, 2_700_000, 100),  # 0, 1: the fillers' orders
            w.order("taker", ETH_PERP, True, 2_700_000, 100),
            sign_order(w.key("taker"), w.address("taker"), w.domain, cancelled).encode(),  # 2: to cancel
            w.order("liq", ETH_PERP, True, 2_700_000, 1000),  # 3: the liquidator's
        )
        self.steps = {
            "deposit": encode_deposit(),
            "withdraw": signed_withdraw(w.key("taker"), w.address("taker"), w.domain, w.index["taker"],
                                        b"\x66" * 20, 5 * USDC, 0),
            "trade": encode_trade(0, 1, 3),
            "cancel": signed_cancel(w.key("taker"), w.address("taker"), w.domain, 2, cancelled),
            "oracle": w.oracle_step({ETH_PERP: 2_700_001}, {ETH: 2_700_000}, timestamp=self.time),
            "funding": encode_funding(),
            "liquidate": encode_liquidate(w.index["target"], 3, 1000),
            "deleverage": encode_deleverage(w.index["broke"], w.index["maker"], BTC_PERP, 500),
            "settle": encode_settle(ETH_CALL),
            "forced": encode_forced(),
        }

    def batch(self, kind: str, at: int) -> Batch:
        """Eight one-unit trades with the ``kind`` step at index ``at``."""
        steps = [encode_trade(0, 1, 1)] * FILLERS
        steps.insert(at, self.steps[kind])
        return Batch(self.time, self.orders, tuple(steps))


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    with pytest.MonkeyPatch.context() as mp, Anvil() as anvil:
        patch_compile(mp)
        work = tmp_path_factory.mktemp("kinds")
        write_abis(work / "abis.json")
        s = Stage(anvil, CONFIG, work)
        try:
            yield s
        finally:
            logs = s.stop_all()
            for name, text in logs.items():
                assert "Traceback" not in text, f"{name}:\n{text}"


def _play_out(liar: Proposer, stage: Stage, batch: int, first_game: int) -> Game:
    """Let the liar defend ``batch`` until its game ends (bounded)."""
    rollup = stage.operator.rollup
    deadline = time.monotonic() + GAME_TIMEOUT
    while time.monotonic() < deadline:
        for p in stage.procs:
            p.check_alive()
        liar.tick()
        for gid in range(first_game, rollup.game_count()):
            g = Game.of(rollup.game(gid))
            if g.batch == batch and g.status != GameStatus.ACTIVE:
                return g
        time.sleep(0.05)
    raise AssertionError(f"the game on batch {batch} did not end in {GAME_TIMEOUT} s")


def test_every_kind_at_every_position_is_caught_and_rolled_back(stage: Stage, tmp_path: Path) -> None:
    book = KindsBook(stage)
    rollup = stage.operator.rollup
    challenger = stage.spawn_challenger(CHALLENGER_KEY, "challenger", "--interval", "0.1", "--max-seconds", "300")
    liar = Proposer(stage.connect(LIAR_KEY), stage.w3, CONFIG.k, CONFIG.proposer_bond)
    me = challenger_address = Account.from_key(CHALLENGER_KEY).address
    liar_bond_before = stage.bonds(liar.address)
    burn = CONFIG.proposer_bond * CONFIG.burn_bps // BPS
    results: dict[tuple[str, str], tuple[int, int]] = {}
    timings: list[float] = []
    for kind in KINDS:
        for where, at in POSITIONS.items():
            batch = book.batch(kind, at)
            honest = stage.honest_roots(batch)
            assert honest[0] == book.parent_root
            assert honest[at] != honest[at + 1], f"{kind} at step {at} changes nothing"  # an effective step
            trace = lying_trace(honest, at, tag=f"{kind}/{where}".encode())
            start = time.monotonic()
            first_game = rollup.game_count()
            lie = liar.post(batch, trace)
            # the liar builds on its own lie: the descendant goes with it
            child = liar.post(Batch(book.time, book.orders, (encode_trade(0, 1, 1),)), [trace[-1], trace[-1][::-1]])
            g = _play_out(liar, stage, lie, first_game)
            timings.append(time.monotonic() - start)
            results[(kind, where)] = (g.lo, g.hi)
            assert g.status == GameStatus.CHALLENGER_WON, (kind, where, g)
            assert (g.lo, g.hi) == (at, at + 1), (kind, where, g)  # the prover ran exactly that step
            assert g.challenger == me
            assert rollup.batch(lie).status == BatchStatus.REMOVED
            assert rollup.batch(child).status == BatchStatus.REMOVED  # the cascade
            assert rollup.head() == book.parent
            rollup.prune(child)  # anyone: the descendant's bond comes back to its proposer
    assert len(results) == 30
    # the liar sent a bond with each of its 60 batches and lost one per lie (its descendants'
    # came back); the challenger won them, less the burnt share; no ether appears or vanishes
    assert stage.bonds(liar.address) == liar_bond_before + 60 * CONFIG.proposer_bond - 30 * CONFIG.proposer_bond
    assert stage.operator.rollup.free_bond(liar.address) == stage.bonds(liar.address)
    assert stage.bonds(challenger_address) == CONFIG.challenger_bond + 30 * (CONFIG.proposer_bond - burn)
    assert stage.burnt() == 30 * burn
    accounts = (Account.from_key(OPERATOR_KEY).address, liar.address, challenger_address)
    assert stage.balance() == sum(stage.bonds(a) for a in accounts) + stage.burnt()
    # the honest side re-posts: every kind in one honest batch at the same height
    honest_batch = Batch(book.time, book.orders, tuple(book.steps[k] for k in KINDS))
    index = stage.post_honest(honest_batch)
    assert index > book.parent and rollup.batch(index).post_root == stage.replica.root
    st = challenger.wait_status(
        lambda s: s["follower"]["head"] == index and s["player"]["won"] and len(s["player"]["won"]) == 30, 20)
    assert st["follower"]["head_root"] == "0x" + stage.replica.root.hex()
    assert st["player"]["active"] == [] and st["player"]["lost"] == []
    derivation, follower = stage.node(tmp_path / "node")
    try:
        follower.catch_up()
        head = derivation.head
        assert head is not None and head.index == index and head.computed_root == stage.replica.root
        assert derivation.db.root == stage.replica.root
    finally:
        derivation.close()
    print(f"\nKINDS | 30 games, mean {sum(timings) / len(timings):.2f} s, max {max(timings):.2f} s per lie")
