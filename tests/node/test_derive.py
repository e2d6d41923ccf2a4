"""The derivation (node/derive.py) and the follower (node/follower.py).

Against titanoboa (fast): real batches posted on the real rollup, their
events decoded by the node's decoder and fed exactly as the follower feeds
them (tests/challenger/boa_l1.py); honest batches match, a wrong root is
flagged, a removal rolls the state back, a restart resumes, undecodable
bytes change nothing. Against anvil: the follower itself (confirmations,
a reorganisation deeper than its depth, a restart).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account import Account
from web3 import Web3

from l1_contracts.bindings import BatchStatus, Contracts, Transactor
from l1_contracts.config import DEVNET, TEST
from l1_contracts.deploy import TEST_PROVER, Genesis, boa_deployer, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available
from node.batches import PostedBatch, Verdict
from node.derive import Derivation, DerivationError, commitment_of
from node.follower import Follower
from node.l1 import L1Client
from node.queues import BoundedQueues, CachedQueues
from node.rollup_events import (
    BATCH_FINALIZED_TOPIC,
    BATCH_POSTED_TOPIC,
    BATCH_REMOVED_TOPIC,
    POST_BATCH_SELECTOR,
)
from sequencer.flow_bench import FlowRun
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, ListQueues
from state.db import StateDB
from state.eip712 import ecrecover_baseline_rate
from state.keccak import keccak256
from state.txs import encode_deposit, encode_funding, encode_trade
from tests.challenger.anvil_l1 import cached_compile, patch_compile
from tests.challenger.boa_l1 import BoaFeed, Journal
from tests.l1.fixtures_rollup import ETH_PERP, L1Chain, bad_root, now, set_time
from tests.world import ETH, USDC, World


@dataclass
class Setup:
    chain: L1Chain
    derivation: Derivation
    feed: BoaFeed
    path: Path

    def reopen(self) -> Derivation:
        self.derivation.close()
        self.derivation = Derivation.open(
            self.path, self.chain.world.chain, self.chain.genesis_root, self.chain.world.leaves
        )
        self.feed.derivation = self.derivation
        return self.derivation


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    chain = L1Chain()
    derivation = Derivation.open(tmp_path / "node", chain.world.chain, chain.genesis_root, chain.world.leaves)
    s = Setup(chain, derivation, BoaFeed(chain, derivation), tmp_path / "node")
    yield s
    s.derivation.close()


def opening_and_trading(s: Setup, n_trades: int = 12) -> None:
    s.feed.post(s.chain.opening_batch())
    set_time(now() + 3)
    s.feed.post(s.chain.trading_batch(n_trades))


# ---------------------------------------------------------------- titanoboa


def test_honest_batches_match(setup: Setup) -> None:
    s = setup
    opening_and_trading(s)
    d = s.derivation
    recs = d.records(1)
    assert [r.index for r in recs] == [1, 2]
    assert all(r.verdict == Verdict.MATCH and r.l1_status == BatchStatus.PENDING for r in recs)
    assert recs[-1].computed_root == s.chain.db.root == d.db.root
    assert recs[1].pre_root == recs[0].computed_root == recs[1].posted_pre_root
    assert recs[0].data.deposit_end == 2 and s.feed.reader.calls == 1  # both deposits in one read
    assert d.store.deposits(0, 2)[0].amount == 100_000 * USDC
    assert not any(r.challengeable for r in recs)
    # finality drops the bytes, keeps the record
    set_time(int(s.chain.rollup.batch(2).deadline))
    for i in (1, 2):
        s.chain.rollup.finalize(i)
        s.feed.journal.record(s.chain.rollup)
    assert s.feed.sync() == [1, 2]
    assert d.record(2).l1_status == BatchStatus.FINAL and not d.has_bytes(2)  # type: ignore[union-attr]
    # bytes read back from L1 are checked against the commitment before they are kept
    with pytest.raises(ValueError):
        d.restore_bytes(2, s.feed.journal.inputs[d.record(1).tx_hash])  # type: ignore[union-attr]
    d.restore_bytes(2, s.feed.journal.inputs[d.record(2).tx_hash])  # type: ignore[union-attr]
    assert d.batch(2).steps[1:] == tuple(encode_trade(0, 1, 1) for _ in range(12))


def test_a_wrong_root_is_flagged_and_its_descendants_marked(setup: Setup) -> None:
    s = setup
    s.feed.post(s.chain.opening_batch())
    set_time(now() + 3)
    batch = s.chain.trading_batch(10)
    honest = s.chain.honest_roots(batch)
    wrong = s.feed.post(batch, bad_root(b"middle"))
    rec = s.derivation.record(wrong.index)
    assert rec is not None and rec.verdict == Verdict.MISMATCH and rec.challengeable
    assert rec.computed_root == honest[-1] != rec.posted_root
    assert s.derivation.roots_at(wrong.index, [0, 5, 11]) == {0: honest[0], 5: honest[5], 11: honest[11]}
    set_time(now() + 3)
    child = s.feed.post(s.chain.batch([encode_funding()]), bad_root(b"child"))
    crec = s.derivation.record(child.index)
    assert crec is not None and crec.verdict == Verdict.BAD_PARENT and not crec.challengeable
    assert crec.pre_root == rec.computed_root != crec.posted_pre_root


def test_rollback_after_a_removal(setup: Setup) -> None:
    s = setup
    c = s.chain
    s.feed.post(c.opening_batch())
    parent = s.derivation.head
    assert parent is not None
    set_time(now() + 3)
    wrong = s.feed.post(c.trading_batch(6), bad_root(b"wrong"))
    set_time(now() + 3)
    child = s.feed.post(c.batch([encode_funding()]), bad_root(b"child"))
    assert s.derivation.head.index == child.index  # type: ignore[union-attr]
    # a challenger opens a game and the sequencer never answers: the batch is removed
    challenger = c.actor("challenger")
    c.fund_bond(challenger, TEST.challenger_bond)
    with boa.env.prank(challenger):
        gid = c.rollup.createGame(wrong.index)
    s.feed.journal.record(c.rollup)
    set_time(now() + TEST.clock + 1)
    c.rollup.timeout(gid)
    s.feed.journal.record(c.rollup)
    assert s.feed.sync() == [wrong.index, child.index]
    assert c.rollup.batchStatus(wrong.index) == BatchStatus.REMOVED
    d = s.derivation
    assert [d.record(i).l1_status for i in (wrong.index, child.index)] == [BatchStatus.REMOVED] * 2  # type: ignore[union-attr]
    assert d.head == parent and d.db.root == parent.computed_root
    # the next batch takes the removed one's place and derives on the parent's state
    set_time(now() + 3)
    again = s.feed.post(c.trading_batch(4))
    rec = d.record(again.index)
    assert rec is not None and rec.parent == parent.index and rec.verdict == Verdict.MATCH
    assert d.db.root == c.db.root == rec.computed_root
    # removal events are idempotent
    assert d.remove(wrong.index, 999) == []


def test_restart_resumes_and_reapplying_changes_nothing(setup: Setup) -> None:
    s = setup
    opening_and_trading(s, 5)
    before = s.derivation.records()
    progress = s.derivation.progress()
    d = s.reopen()
    assert d.records() == before and d.progress() == progress
    assert d.db.root == before[-1].computed_root
    # the follower re-reads from its progress after a crash: every event again
    s.feed.done = 0
    assert s.feed.sync() == []
    assert d.records() == before
    # a crash after a batch's trie commit but before its record: the pointer goes back
    batch = s.chain.trading_batch(2)
    d.db.apply_batch(batch, BatchContext.create(batch.timestamp, s.chain.world.chain, ListQueues(), list(batch.orders)))
    assert d.db.root != before[-1].computed_root
    d = s.reopen()
    assert d.db.root == before[-1].computed_root
    set_time(now() + 3)
    s.feed.post(s.chain.trading_batch(3))
    assert d.head.verdict == Verdict.MATCH and d.db.root == s.chain.db.root  # type: ignore[union-attr]
    # a batch that does not follow the head is refused, not guessed
    head = d.head
    assert head is not None
    with pytest.raises(DerivationError):
        d.apply(PostedBatch(head.index + 5, head.index - 1, "", head.posted_root, keccak256(b"x"),
                            head.data, 0, None, keccak256(b"tx"), 10**6), ListQueues())


def test_undecodable_bytes_change_nothing(setup: Setup) -> None:
    s = setup
    c = s.chain
    s.feed.post(c.opening_batch())
    head = s.derivation.head
    assert head is not None
    set_time(now() + 3)
    posted = c.post(c.trading_batch(3))
    s.feed.journal.record(c.rollup, b"\x01garbage")  # the bytes read are not the batch's
    s.feed.sync()
    rec = s.derivation.record(posted.index)
    assert rec is not None and rec.verdict == Verdict.UNDECODABLE and "undecodable" in rec.note
    assert rec.computed_root == head.computed_root == s.derivation.db.root
    assert not rec.challengeable
    # a batch whose bytes decode but are another batch's
    other = c.trading_batch(1).encode()
    assert commitment_of(other, 2, 0) != rec.data


def test_queues_are_bounded_by_the_batch_and_cached() -> None:
    source = ListQueues([L1Deposit(b"\x01" * 20, i + 1) for i in range(10)])
    bounded = BoundedQueues(source, deposit_end=4, forced_end=0)
    assert bounded.deposit(3) == source.deposit(3) and bounded.deposit(4) is None
    assert bounded.forced(0) is None and bounded.deposit(-1) is None

    class Reader:
        calls = 0

        def deposits(self, start: int, end: int) -> list[L1Deposit]:
            Reader.calls += 1
            if end > 10:
                raise LookupError("NO_ITEM")
            return [source.deposits[i] for i in range(start, end)]

        def forced(self, start: int, end: int) -> list[Any]:
            return []

    cached = CachedQueues(Reader(), capacity=5)
    cached.prefetch((2, 6), (0, 0))
    assert Reader.calls == 1
    assert [cached.deposit(i).amount for i in range(2, 6)] == [3, 4, 5, 6]  # type: ignore[union-attr]
    assert Reader.calls == 1
    assert cached.deposit(12) is None
    cached.prefetch((0, 8), (0, 0))
    assert len(cached._deposits) == 5  # the oldest entries made room


def test_event_layouts_match_the_compiled_abi() -> None:
    abi = cached_compile("Rollup").abi

    def signature(item: dict[str, Any]) -> bytes:
        def t(inp: dict[str, Any]) -> str:
            if inp["type"].startswith("tuple"):
                return "(" + ",".join(t(c) for c in inp["components"]) + ")" + inp["type"][5:]
            return str(inp["type"])
        return f"{item['name']}({','.join(t(i) for i in item['inputs'])})".encode()

    by_name = {i["name"]: signature(i) for i in abi if i.get("type") in ("event", "function")}
    assert keccak256(by_name["BatchPosted"]) == BATCH_POSTED_TOPIC
    assert keccak256(by_name["BatchRemoved"]) == BATCH_REMOVED_TOPIC
    assert keccak256(by_name["BatchFinalized"]) == BATCH_FINALIZED_TOPIC
    assert keccak256(by_name["postBatch"])[:4] == POST_BATCH_SELECTOR
    from challenger.web3_chain import GAME_CREATED_TOPIC, ROOTS_POSTED_TOPIC
    assert keccak256(by_name["GameCreated"]) == GAME_CREATED_TOPIC
    assert keccak256(by_name["RootsPosted"]) == ROOTS_POSTED_TOPIC


def test_replay_speed(tmp_path: Path) -> None:
    """Derivation throughput on trades that each bring two new orders (two signatures to
    recover per trade, the worst case), against the raw ecrecover rate."""
    world = World()
    db = StateDB.in_memory()
    genesis_root = db.initialize(world.leaves)
    d = Derivation.open(tmp_path / "perf", world.chain, genesis_root, world.leaves)
    queues = ListQueues([L1Deposit(world.address(n), 10_000_000 * USDC) for n in ("maker", "taker")])
    t = world.time + 10
    world.time = t
    oracle = world.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000}, timestamp=t)
    first = Batch(t, (), (encode_deposit(), encode_deposit(), oracle))
    d.apply(_posted(d, 1, 0, first, queues, 0), queues)
    world.index.update(maker=1, taker=2)
    n = 300
    orders: list[bytes] = []
    for _ in range(n):
        orders.append(world.order("maker", ETH_PERP, False, 3_000_000, 1))
        orders.append(world.order("taker", ETH_PERP, True, 3_000_000, 1))
    trades = Batch(t, tuple(orders), tuple(encode_trade(2 * i, 2 * i + 1, 1) for i in range(n)))
    posted = _posted(d, 2, 1, trades, queues, 2)
    started = time.perf_counter()
    rec = d.apply(posted, queues)
    elapsed = time.perf_counter() - started
    assert rec.verdict == Verdict.MATCH and rec.refused_steps == 0
    rate = n / elapsed
    ecrecover = ecrecover_baseline_rate(600)
    print(f"PERF | derivation: {n} trades (2 new orders each) in {elapsed * 1000:.0f} ms: "
          f"{rate:,.0f} trades/s; ecrecover {ecrecover:,.0f}/s -> bound {ecrecover / 2:,.0f} trades/s")
    d.close()


def _posted(d: Derivation, index: int, parent: int, batch: Batch, queues: ListQueues, dep_start: int) -> PostedBatch:
    raw = batch.encode()
    data = commitment_of(raw, dep_start, 0)
    pre = d.head.computed_root  # type: ignore[union-attr]
    # the posted root is what an honest proposer computes: the derivation must agree
    honest = d.db.root_after(pre, batch.steps, BatchContext.create(
        batch.timestamp, d.chain, queues, list(batch.orders)), len(batch.steps))
    return PostedBatch(index, parent, "0x" + "11" * 20, pre, honest, data, 0, raw, keccak256(raw), index)


# ---------------------------------------------------------------- anvil: the follower

anvil_only = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: `npm install`")
OPERATOR = Account.from_key(DEV_KEYS[0])


@anvil_only
def test_follower_on_anvil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Confirmations, a reorganisation deeper than the depth undone and re-read, a restart."""
    patch_compile(monkeypatch)
    for name in ("Token", "Bridge", "Rollup", TEST_PROVER):
        boa_deployer(name)
    depth = 2
    with Anvil() as anvil:
        w3 = anvil.web3()
        tx = Transactor(w3, OPERATOR)
        prover = tx.deploy(cached_compile(TEST_PROVER), [])
        world = World(time=anvil.timestamp_of() - 60)
        genesis_root = StateDB.in_memory().initialize(world.leaves)
        keys = sorted(Web3.to_checksum_address(a) for a in world.chain.oracle_keys)
        dep = deploy_web3(anvil.url, DEV_KEYS[0], Genesis(genesis_root, world.time, keys, 1), DEVNET, prover=prover)
        chain = ChainConfig(dep.chain_id, bytes.fromhex(dep.rollup[2:]), world.chain.oracle_keys, 1)
        world.chain, world.domain = chain, chain.domain
        contracts = Contracts.connect(w3, dep, tx)
        contracts.token.mint(OPERATOR.address, 5_000_000)
        contracts.token.approve(dep.bridge, 5_000_000)
        contracts.bridge.deposit(5_000_000)
        replica = StateDB.in_memory()
        replica.initialize(world.leaves)
        queues = ListQueues([L1Deposit(bytes.fromhex(OPERATOR.address[2:]), 5_000_000)])

        def post(deposits: int = 0, lie: bool = False) -> bytes:
            t = anvil.timestamp_of()
            world.time = t
            oracle = world.oracle_step({ETH_PERP: 3_000_000 + t % 1000}, {ETH: 3_000_000}, timestamp=t)
            batch = Batch(t, (), (encode_deposit(),) * deposits + (oracle,))
            root = replica.root_after(replica.root, batch.steps, BatchContext.create(t, chain, queues, []), len(batch.steps))
            if lie:
                root = bad_root(b"anvil")
            else:
                replica.apply_batch(batch, BatchContext.create(t, chain, queues, []))
            contracts.rollup.post_batch(batch.encode(), root, len(batch.steps), value=DEVNET.proposer_bond)
            return root

        l1 = L1Client(anvil.url, depth=depth)
        path = tmp_path / "node"
        d = Derivation.open(path, chain, genesis_root, world.leaves)
        follower = Follower.over_bridge(l1, dep.rollup, dep.bridge, d, start_block=dep.block, max_blocks=3)
        post(deposits=1)
        anvil.mine(1)
        follower.catch_up()
        assert d.head is not None and d.head.index == 0  # the batch is not `depth` blocks deep yet
        anvil.mine(1)
        follower.poll()
        assert d.head.index == 1 and d.head.verdict == Verdict.MATCH  # type: ignore[union-attr]
        assert d.db.root == replica.root
        # a batch that L1 then drops in a reorganisation deeper than the depth
        snapshot_root = replica.root
        post(lie=True)
        anvil.mine(depth)
        follower.catch_up()
        assert d.head.index == 2 and d.head.verdict == Verdict.MISMATCH  # type: ignore[union-attr]
        anvil.reorg(depth + 2)  # replaces the blocks from the lying batch's on: it is gone
        anvil.mine(depth)
        report = follower.poll()
        assert report.reverted_to is not None
        follower.catch_up()
        assert d.head.index == 1 and d.record(2) is None and d.db.root == snapshot_root  # type: ignore[union-attr]
        # a restart, then the chain goes on
        d.close()
        d = Derivation.open(path, chain, genesis_root, world.leaves)
        follower = Follower.over_bridge(l1, dep.rollup, dep.bridge, d, start_block=dep.block)
        anvil.increase_time(2)
        post()
        anvil.mine(depth)
        follower.catch_up()
        assert d.head.index == 2 and d.head.verdict == Verdict.MATCH and d.db.root == replica.root  # type: ignore[union-attr]
        assert follower.status()["head"] == 2
        d.close()


def test_journal_helper_keeps_only_rollup_logs(setup: Setup) -> None:
    """The titanoboa journal sees exactly the rollup's logs of each call."""
    j = Journal(setup.chain.rollup)
    setup.chain.deposit("maker", 5)
    j.record(setup.chain.bridge)
    assert j.entries == []


def test_a_directory_belongs_to_one_deployment(tmp_path: Path) -> None:
    world = World()
    genesis_root = StateDB.in_memory().initialize(world.leaves)
    with pytest.raises(DerivationError):  # genesis leaves that are not the rollup's genesis
        Derivation.open(tmp_path / "a", world.chain, keccak256(b"other genesis"), world.leaves)
    Derivation.open(tmp_path / "b", world.chain, genesis_root, world.leaves).close()
    with pytest.raises(DerivationError):  # a directory made for another deployment
        Derivation.open(tmp_path / "b", world.chain, keccak256(b"other genesis"), world.leaves)
    d = Derivation.open(tmp_path / "b", world.chain, genesis_root)  # reopening needs no leaves
    assert d.head is not None and d.head.computed_root == genesis_root == d.db.root
    d.close()


# ---------------------------------------------------------------- grouped commits

_GROUPED_CHILD = """
import sys, time
from node.derive import Derivation
from tests.node.test_derive import grouped_inputs
run, chain, posted, queues, setup = grouped_inputs()
d = Derivation.open(sys.argv[1], chain, run.genesis_root, run.genesis)
for p in posted[:setup]:
    d.apply(p, queues)
    d.set_progress(p.block, p.tx_hash)
with d.grouped(max_batches=3, max_seconds=1e6):
    for p in posted[setup:setup + 7]:
        d.apply(p, queues)
        d.set_progress(p.block, p.tx_hash)
    print("applied", d.head.index, flush=True)
    time.sleep(120)
"""


def grouped_inputs() -> tuple[FlowRun, ChainConfig, list[PostedBatch], ListQueues, int]:
    """The 20-second standard flow posted as batches 1, 2, ...: the run, its chain, the events,
    the deposit queue and the number of setup batches."""
    from node.replay_bench import posted_of
    from sequencer.flow_bench import FlowSpec, oracle_address, run_flow

    chain = ChainConfig(31337, b"\x42" * 20, frozenset({oracle_address()}), 1)
    run = run_flow(FlowSpec(seconds=20), chain, 1_800_000_000)
    posted = [posted_of(b, i + 1) for i, b in enumerate(run.batches)]
    return run, chain, posted, ListQueues(list(run.deposits)), run.setup_batches


def test_grouped_commits_survive_sigkill_and_resume(tmp_path: Path) -> None:
    """A node catching up commits every few batches; SIGKILLed inside a group, it reopens at
    its last commit (records, progress and the state's root together) and re-derives the rest
    to the same roots."""
    import os
    import signal
    import subprocess
    import sys

    run, chain, posted, queues, setup = grouped_inputs()
    assert len(posted) >= setup + 8
    directory = tmp_path / "node"
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(  # the child runs the same (deterministic) flow itself
        [sys.executable, "-c", _GROUPED_CHILD, str(directory)], cwd=repo,
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(repo)},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.split() == ["applied", str(setup + 7)], line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    d = Derivation.open(directory, chain, run.genesis_root, run.genesis)
    try:
        # two commits of three inside the group: the seventh batch is lost with the process
        head = d.head
        assert head is not None and head.index == setup + 6
        assert d.db.root == head.computed_root == posted[setup + 5].post_root
        # the progress committed with them never runs ahead of the records (here it trails by one)
        assert d.progress() == (posted[setup + 4].block, posted[setup + 4].tx_hash)
        assert d.record(setup + 7) is None
        # the follower re-reads from its progress: known batches are skipped, the rest derived
        with d.grouped(max_batches=3, max_seconds=1e6):
            for p in posted[setup + 4:]:
                rec = d.apply(p, queues)
                assert rec.verdict == Verdict.MATCH, rec.index
        assert d.db.root == posted[-1].post_root
        assert [r.computed_root for r in d.records(1)] == [p.post_root for p in posted]
    finally:
        d.close()
    d = Derivation.open(directory, chain, run.genesis_root, run.genesis)
    try:
        assert d.head.index == len(posted) and d.db.root == posted[-1].post_root  # type: ignore[union-attr]
    finally:
        d.close()


def test_a_failure_inside_a_group_keeps_what_was_applied(tmp_path: Path) -> None:
    """An error inside a group (a gap in the events) still commits the batches applied before it;
    the failed input changes nothing."""
    from node.replay_bench import posted_of
    from sequencer.flow_bench import FlowSpec, oracle_address, run_flow

    chain = ChainConfig(31337, b"\x42" * 20, frozenset({oracle_address()}), 1)
    run = run_flow(FlowSpec(seconds=10), chain, 1_800_000_000)
    posted = [posted_of(b, i + 1) for i, b in enumerate(run.batches)]
    queues = ListQueues(list(run.deposits))
    d = Derivation.open(tmp_path / "node", chain, run.genesis_root, run.genesis)
    with pytest.raises(DerivationError), d.grouped():
        d.apply(posted[0], queues)
        d.apply(posted[1], queues)
        d.apply(posted[3], queues)  # does not follow the head
    assert not d.store.in_transaction
    d.close()
    d = Derivation.open(tmp_path / "node", chain, run.genesis_root, run.genesis)
    try:
        assert d.head.index == 2 and d.db.root == posted[1].post_root  # type: ignore[union-attr]
        with pytest.raises(ValueError):
            with d.grouped(max_batches=0):
                pass
    finally:
        d.close()


def test_signers_recovered_ahead_in_threads_give_the_same_records(tmp_path: Path) -> None:
    """Recovering the next batch's signers while the current one runs, in two threads, derives the
    same records as in-line recovery — also when a prefetched batch's accounts were created after
    the prefetch (their signers are recovered when the batch runs)."""
    from node.derive import ThreadRecovery
    from node.replay_bench import posted_of
    from sequencer.flow_bench import FlowSpec, oracle_address, run_flow

    chain = ChainConfig(31337, b"\x42" * 20, frozenset({oracle_address()}), 1)
    run = run_flow(FlowSpec(seconds=10), chain, 1_800_000_000)
    posted = [posted_of(b, i + 1) for i, b in enumerate(run.batches)]
    queues = ListQueues(list(run.deposits))

    def derive(name: str, recovery: ThreadRecovery, ahead: bool) -> list[Any]:
        d = Derivation.open(tmp_path / name, chain, run.genesis_root, run.genesis, recovery=recovery)
        try:
            for k, p in enumerate(posted):
                if ahead and k + 1 < len(posted):
                    nxt = posted[k + 1]
                    assert d.prefetch(nxt.index, nxt.tx_hash, nxt.raw)
                    assert not d.prefetch(nxt.index, nxt.tx_hash, nxt.raw)  # already started
                assert d.apply(p, queues).verdict == Verdict.MATCH
            assert not d.prefetch(posted[0].index, posted[0].tx_hash, posted[0].raw)  # recorded
            assert not d.prefetch(len(posted) + 1, b"\x01" * 32, b"\x00garbage")
            return [(r.computed_root, r.refused_steps) for r in d.records()]
        finally:
            d.close()

    pool = ThreadRecovery(2)
    try:
        inline = derive("inline", ThreadRecovery(1), ahead=False)
        assert derive("ahead", pool, ahead=True) == inline
        # the first flow batch prefetched before the setup batch created its accounts
        d = Derivation.open(tmp_path / "early", chain, run.genesis_root, run.genesis, recovery=pool)
        try:
            assert d.prefetch(posted[1].index, posted[1].tx_hash, posted[1].raw)
            for p in posted:
                d.apply(p, queues)
            assert [(r.computed_root, r.refused_steps) for r in d.records()] == inline
        finally:
            d.close()
    finally:
        pool.close()
    assert inline[-1][0] == posted[-1].post_root
