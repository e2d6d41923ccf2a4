"""The devnet oracle feeder: steps the STF accepts, determinism, bounds, price files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer.intake import IntakeError
from sequencer.oracle_feeder import OracleFeeder, PriceFile, RandomWalk, main, run_feeder
from state.constants import ORACLE_UNDERLYING_BASE
from state.errors import Code
from tests.sequencer.harness import Desk
from tests.world import BTC, DAY, ETH, ETH_CALL, ETH_PERP, ETH_PUT, T0, World


def _feeder(world: World, keys: list[bytes], seed: int = 7) -> OracleFeeder:
    walk = RandomWalk({ETH: 3_000_000, BTC: 6_000_000}, seed=seed)
    return OracleFeeder(keys, world.domain, world.markets, walk)


def test_steps_are_accepted_with_a_threshold_of_signatures() -> None:
    world = World(oracle_threshold=2)
    desk = Desk.create(world=world, traders=(), prices=False)
    ex = desk.ex
    feeder = _feeder(world, world.oracle_keys)  # 3 keys, threshold 2
    for t in range(T0 + 20, T0 + 30):
        out = ex.submit_oracle(feeder.next_update(t), t)
        assert out.step.receipt.code is Code.OK
    prices = ex.view.prices()
    assert prices.oracle_time == T0 + 29
    assert all(prices.markets[m].mark > 0 for m in (ETH_PERP, ETH_CALL, ETH_PUT))
    assert prices.markets[ETH_CALL].iv == 600_000
    one = _feeder(world, world.oracle_keys[:1])
    with pytest.raises(IntakeError, match="ORACLE_QUORUM"):
        ex.submit_oracle(one.next_update(T0 + 40), T0 + 40)


def test_deterministic_for_a_seed() -> None:
    world = World()
    a, b, c = (_feeder(world, world.oracle_keys[:1], s) for s in (7, 7, 8))
    steps_a = [a.next_update(T0 + i) for i in range(1, 20)]
    assert steps_a == [b.next_update(T0 + i) for i in range(1, 20)]
    assert steps_a != [c.next_update(T0 + i) for i in range(1, 20)]
    with pytest.raises(ValueError):
        a.next_update(T0 + 5)


def test_expired_options_get_no_entry() -> None:
    world = World()
    feeder = _feeder(world, world.oracle_keys[:1])
    ids = [e.id for e in feeder.entries(T0 + 7 * DAY)]
    assert ids == [0, 1, ORACLE_UNDERLYING_BASE + ETH, ORACLE_UNDERLYING_BASE + BTC]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32), start=st.integers(1, 10**9), move=st.integers(0, 2_000),
    width=st.integers(0, 10**9), steps=st.integers(1, 40),
)
def test_random_walk_stays_within_bounds(seed: int, start: int, move: int, width: int, steps: int) -> None:
    floor, ceiling = start, start + width
    walk = RandomWalk({0: start}, seed=seed, max_move_bps=move, floor=floor, ceiling=ceiling)
    prev = walk.spots[0]
    for _ in range(steps):
        p = walk.step()[0]
        assert isinstance(p, int) and floor <= p <= ceiling
        assert abs(p - prev) <= prev * move // 10_000 + 1
        prev = p


def test_price_files(tmp_path: Path) -> None:
    world = World()
    rows = [
        {"time": T0, "index": {"0": 3_000_000}, "marks": {"0": 3_001_000}},
        {"time": T0 + 10, "index": {"0": 3_100_000}, "marks": {"0": 3_101_000, "2": 55_000}, "ivs": {"2": 700_000}},
    ]
    (tmp_path / "p.json").write_text(json.dumps(rows))
    (tmp_path / "p.csv").write_text(
        "time,index0,mark0,mark2,iv2\n"
        f"{T0},3000000,3001000,,\n"
        f"{T0 + 10},3100000,3101000,55000,700000\n"
    )
    for name in ("p.json", "p.csv"):
        feeder = OracleFeeder(world.oracle_keys[:1], world.domain, world.markets, PriceFile.load(tmp_path / name))
        early = {e.id: (e.price, e.iv) for e in feeder.entries(T0 + 5)}
        assert early[0] == (3_001_000, 0) and early[ORACLE_UNDERLYING_BASE] == (3_000_000, 0)
        assert early[2][0] > 0 and early[3][0] > 0  # Black-Scholes marks from the index
        late = {e.id: (e.price, e.iv) for e in feeder.entries(T0 + 11)}
        assert late[0] == (3_101_000, 0) and late[2] == (55_000, 700_000)


def test_run_feeder_submits_and_survives_refusals() -> None:
    world = World()
    desk = Desk.create(world=world, traders=(), prices=False)
    feeder = _feeder(world, world.oracle_keys[:1])
    ticks = iter([T0 + 20, T0 + 21, T0 + 21, T0 + 22])
    slept: list[float] = []
    n = run_feeder(feeder, desk.ex, interval=1.0, clock=lambda: next(ticks), sleep=slept.append,
                   iterations=4)
    assert n == 3 and slept == [1.0] * 3
    assert desk.ex.view.prices().oracle_time == T0 + 22
    bad = _feeder(world, [b"\x01" * 32])  # not an oracle key: refused, logged, no raise
    assert run_feeder(bad, desk.ex, clock=lambda: T0 + 30, sleep=slept.append, iterations=1) == 0


# ---------------------------------------------------------------- hfx oracle-feeder (the process's main)


def test_feeder_main_refuses_bad_keys_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sequencer.logs.setup_json_logging", lambda level: None)
    url = ["--rpc", "http://127.0.0.1:9/"]
    monkeypatch.delenv("HFX_TEST_ORACLE_KEYS", raising=False)
    assert main([*url, "--keys-env", "HFX_TEST_ORACLE_KEYS", "--spot", "0=3000000"]) == 2
    monkeypatch.setenv("HFX_TEST_ORACLE_KEYS", "0xzz")
    assert main([*url, "--keys-env", "HFX_TEST_ORACLE_KEYS", "--spot", "0=3000000"]) == 2
    monkeypatch.setenv("HFX_TEST_ORACLE_KEYS", "0x" + "11" * 31)
    assert main([*url, "--keys-env", "HFX_TEST_ORACLE_KEYS", "--spot", "0=3000000"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"index\": {}}]")
    assert main([*url, "--devnet-keys", "1", "--price-file", str(bad)]) == 2
    for args in (["--devnet-keys", "0", "--spot", "0=1"], ["--devnet-keys", "1", "--spot", "x"],
                 ["--devnet-keys", "1"], ["--spot", "0=1"], ["--devnet-keys", "1", "--spot", "0=1", "--interval", "0"]):
        with pytest.raises(SystemExit):
            main([*url, *args])


def test_feeder_main_submits_signed_updates_over_json_rpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hfx oracle-feeder`` against a served sequencer: its price file's prices are applied."""
    import time

    from tests.sequencer.test_rpc_api import Served

    monkeypatch.setattr("sequencer.logs.setup_json_logging", lambda level: None)  # keep pytest's handlers
    served = Served(tmp_path / "seq")
    try:
        desk = served.desk
        desk.now = int(time.time()) + 30  # the sequencer's clock: the feeder signs at wall time
        prices = tmp_path / "prices.csv"
        prices.write_text("time,index0,index1,mark0,mark1\n0,2900000,6100000,2901000,6101000\n")
        monkeypatch.setenv("HFX_TEST_ORACLE_KEYS", ",".join("0x" + k.hex() for k in desk.world.oracle_keys[:1]))
        code = main(["--rpc", served.url, "--keys-env", "HFX_TEST_ORACLE_KEYS", "--price-file", str(prices),
                     "--interval", "0.3", "--iterations", "1"])
        assert code == 0
        p = desk.ex.view.prices()
        assert p.markets[ETH_PERP].mark == 2_901_000 and p.index[ETH] == 2_900_000 and p.index[BTC] == 6_100_000
        # a random walk, as `hfx devnet` runs it (the next update needs a later second)
        time.sleep(max(0.0, p.oracle_time + 1 - time.time()))
        code = main(["--rpc", served.url, "--keys-env", "HFX_TEST_ORACLE_KEYS", "--spot", "0=3000000",
                     "--spot", "1=6000000", "--seed", "1", "--max-move-bps", "10", "--interval", "0.3",
                     "--iterations", "1"])
        assert code == 0
        q = desk.ex.view.prices()
        assert q.oracle_time > p.oracle_time and abs(q.index[ETH] - 3_000_000) <= 3_000
        assert abs(q.markets[ETH_PERP].mark - q.index[ETH]) <= q.index[ETH] // 1_000 + 1
    finally:
        served.close()


# ---------------------------------------------------------------- the public feed (--publish-file)


def test_publisher_keeps_the_last_updates_in_an_atomic_json_file(tmp_path: Path) -> None:
    from node.fallback import OracleFeed
    from sequencer.oracle_feeder import Publisher
    from state.txs import encode_deposit

    world = World()
    feeder = _feeder(world, world.oracle_keys[:1])
    pub = Publisher(tmp_path / "feed.json", keep=2)
    steps = [feeder.next_update(T0 + i) for i in (1, 2, 3)]
    for step in steps:
        pub.publish(step)
    assert OracleFeed(pub.path).updates() == [(T0 + 2, steps[1]), (T0 + 3, steps[2])]
    assert not (tmp_path / "feed.json.tmp").exists()
    for t, step in OracleFeed(pub.path).updates():  # the exact steps: the STF accepts them
        assert world.run1(step, time=t).code is Code.OK
    with pytest.raises(ValueError, match="not an oracle step"):
        pub.publish(encode_deposit())
    with pytest.raises(ValueError, match="increase"):
        pub.publish(steps[0])
    with pytest.raises(ValueError, match="at least one"):
        Publisher(tmp_path / "x.json", keep=0)
    assert len(json.loads(pub.path.read_text())["updates"]) == 2  # refusals changed nothing


def _deployment_files(tmp_path: Path, world: World) -> list[str]:
    """A deployment and a genesis file of ``world``'s chain (as ``hfx deploy`` writes them)."""
    deployment = tmp_path / "deployment.json"
    deployment.write_text(json.dumps({
        "chain_id": world.chain.chain_id, "rollup": "0x" + world.chain.rollup.hex(), "bridge": "0x" + "11" * 20,
        "prover": "0x" + "22" * 20, "block": 1, "genesis_root": "0x" + "00" * 32,
        "oracle_keys": ["0x" + k.hex() for k in sorted(world.chain.oracle_keys)], "oracle_threshold": 1,
    }))
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({"leaves": {"0x" + k.hex(): "0x" + v.hex() for k, v in world.leaves.items()}}))
    return ["--deployment", str(deployment), "--genesis", str(genesis)]


def test_feeder_main_publishes_while_the_sequencer_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No sequencer answers: the domain and markets come from the deployment files, every update is published."""
    import logging

    from node.fallback import OracleFeed

    monkeypatch.setattr("sequencer.logs.setup_json_logging", lambda level: None)
    world = World()
    files = _deployment_files(tmp_path, world)
    monkeypatch.setenv("HFX_TEST_ORACLE_KEYS", "0x" + world.oracle_keys[0].hex())
    feed = tmp_path / "feed.json"
    common = ["--keys-env", "HFX_TEST_ORACLE_KEYS", "--spot", "0=3000000", "--spot", "1=6000000",
              "--interval", "0.3", "--iterations", "2", "--publish-file", str(feed), *files]
    with caplog.at_level(logging.WARNING, logger="hfx.oracle_feeder"):
        assert main(["--rpc", "http://127.0.0.1:9/", *common]) == 0
    assert "unreachable" in caplog.text
    updates = OracleFeed(feed).updates()
    assert len(updates) == 2 and updates[0][0] < updates[1][0]
    for t, step in updates:  # signed for this deployment's domain and markets: the STF accepts them
        assert world.run1(step, time=t).code is Code.OK
    assert world.prices().oracle_time == updates[1][0] and world.prices().index[ETH] > 0

    # without --rpc it only publishes; bad files and missing companions are refused before anything runs
    assert main(common[:-6] + ["--iterations", "1", "--publish-file", str(feed), *files]) == 0
    assert len(OracleFeed(feed).updates()) == 1
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    assert main([*common[:-4], "--deployment", str(broken), "--genesis", files[3]]) == 2
    no_params = tmp_path / "empty-genesis.json"
    no_params.write_text(json.dumps({"leaves": {}}))
    assert main([*common[:-4], "--deployment", files[1], "--genesis", str(no_params)]) == 2
    capsys.readouterr()
    for args, message in ((common[:-4], "without --rpc"), (common[:-6] + files, "nothing to feed"),
                          ([*common[:-4], files[0], files[1]], "go together")):
        with pytest.raises(SystemExit):
            main(args)
        assert message in capsys.readouterr().err
