"""A dishonest challenger against the sequencer's own batches, answered by the sequencer's defender (docs/adversaries.md).

tests/e2e/devnet.py with the real one-step prover: ``hfx sequencer`` (its
defender on), ``hfx challenger`` and the dishonest challenger
(``python -m tests.e2e.actors``) are separate processes on anvil. Two traders
deposit and trade through the sequencer's JSON-RPC; the dishonest challenger
disputes one of the sequencer's honest batches with a trace false from its
first step on, claims the one-step win with nothing proven (refused), then
proves the only root the prover records, and loses: the sequencer's defender
is paid the challenger's bond less the burnt share, the batch stays, and the
honest challenger opens no game.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from challenger.chain import Game, GameStatus
from l1_contracts.bindings import BatchStatus
from l1_contracts.config import BPS, ETHER
from tests.e2e.actors import DISHONEST_CHALLENGER, actor_key, spawn_challenger
from tests.e2e.devnet import E2E_CONFIG, OPERATOR_KEY, USDC, Devnet, anvil_available, wait_for

pytestmark = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")

DISHONEST_KEY = actor_key("dishonest-vs-defender")


def test_a_dishonest_challenger_loses_to_the_sequencers_defender(tmp_path: Path) -> None:
    with Devnet(tmp_path, real_prover=True) as net:
        seq = net.start_sequencer()
        honest = net.start_challenger()
        alice, bob = net.trader("alice"), net.trader("bob")
        for t in (alice, bob):
            net.deposit(t, 10_000 * USDC)
        for t in (alice, bob):
            wait_for(lambda t=t: seq.call("hfx_getAccount", [t.address]), 30, "the deposit credited")  # type: ignore[misc]
        wait_for(lambda: seq.call("hfx_getMarkets")["markets"][0]["mark"], 15, "oracle prices")
        with net.client(alice) as a, net.client(bob) as b:
            assert a.place_order(0, False, 3_000_000, 5)["status"] == "RESTING"
            assert b.place_order(0, True, 3_000_000, 3)["status"] == "FILLED"
            assert b.place_order(0, True, 3_000_000, 2)["status"] == "FILLED"
        rollup = net.contracts().rollup

        def target() -> int | None:
            """The sequencer's pending batch with the most steps, with most of its window left."""
            now = net.anvil.timestamp_of()
            fresh = [b for b in (rollup.batch(i) for i in range(1, rollup.batch_count()))
                     if b.status == BatchStatus.PENDING and b.deadline - now >= 20 and b.n_steps >= 2]
            return max(fresh, key=lambda b: b.n_steps).index if fresh else None

        index = wait_for(target, 30, "an honest batch of several steps on L1")
        operator = Account.from_key(OPERATOR_KEY).address
        assert rollup.batch(index).proposer == operator
        me = Account.from_key(DISHONEST_KEY).address
        net.anvil.set_balance(me, 100 * ETHER)
        liar = spawn_challenger(
            DISHONEST_CHALLENGER, net.url, tmp_path, "dishonest", DISHONEST_KEY, net.abis_path,
            net.deployment_path, net.genesis_path, "--targets", str(index), "--wrong-at", "0",
            "--interval", "0.1", "--max-seconds", "120",
        )
        try:
            def over() -> Game | None:
                liar.check_alive()
                if rollup.game_count() == 0:
                    return None
                g = Game.of(rollup.game(0))
                return g if g.status != GameStatus.ACTIVE else None

            g = wait_for(over, 60, "the dishonest challenger's game to end")
            st = liar.wait_status(lambda s: "0" in s["player"]["outcomes"], 10)
        finally:
            out = liar.stop()
        assert "Traceback" not in out, out
        assert g.status == GameStatus.ASSERTER_WON and g.batch == index and g.challenger == me
        assert g.asserter == operator and (g.lo, g.hi) == (0, 1)  # its trace turned false at the first step
        assert st["player"]["outcomes"] == {"0": "ASSERTER_WON"}
        assert "STEP_NOT_PROVEN" in st["player"]["refused"]  # the win claimed with nothing proven was refused
        # the loser's bond went to the sequencer, less the burnt share (docs/l1.md §4)
        burn = E2E_CONFIG.challenger_bond * E2E_CONFIG.burn_bps // BPS
        paid = rollup.events("BondPaid", net.deployment.block)
        assert [(p["args"]["loser"], p["args"]["winner"], p["args"]["amount"], p["args"]["burnt"]) for p in paid] \
            == [(me, operator, E2E_CONFIG.challenger_bond, burn)]
        assert int(rollup._call("burnt")) == burn
        assert int(rollup._call("bonds", me)) == 0
        assert rollup.batch(index).status != BatchStatus.REMOVED
        # the honest challenger agreed with every batch: no game of its own
        player = honest.status()["player"]
        assert player["active"] == [] and player["won"] == [] and player["lost"] == []
        assert rollup.game_count() == 1
