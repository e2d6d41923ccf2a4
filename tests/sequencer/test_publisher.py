"""sequencer.publisher against a real anvil: real batches and roots, confirmations, reorgs,
restarts, fee bumps, refusals and finality.

The tests of this module run in order on one chain: each continues the
batch sequence the previous ones left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from l1_contracts.bindings import (
    BatchData,
    BatchStatus,
    Contracts,
    RollupClient,
    Transactor,
    parse_batch,
)
from l1_contracts.config import DEVNET
from l1_contracts.deploy import TEST_PROVER, Deployment, Genesis, compile_contract, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available
from node.l1 import L1Client
from sequencer.publisher import BatchState, Publisher, PublisherConfig, PublisherStatus
from state.batch import Batch
from state.context import BatchContext, ChainConfig, L1Deposit, ListQueues
from state.db import StateDB
from state.keccak import keccak256
from state.txs import encode_deposit, encode_funding
from tests.world import ETH, ETH_PERP, World

pytestmark = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed: run `npm install` at the repository root"
)

DEPTH = 2
OPERATOR = Account.from_key(DEV_KEYS[0])
CONFIG = DEVNET  # challenge window 5 min


@dataclass(frozen=True)
class Closed:
    """What the sequencer core hands the publisher (satisfies ``PostableBatch``)."""

    index: int
    encoded: bytes
    post_root: bytes
    step_count: int


@dataclass
class Scenario:
    """One chain, one honest L2 state, and the batches built on it so far."""

    anvil: Anvil
    deployment: Deployment
    contracts: Contracts
    l1: L1Client
    world: World
    db: StateDB
    chain: ChainConfig
    state_path: Path
    queues: ListQueues = field(default_factory=ListQueues)
    batches: list[Closed] = field(default_factory=list)
    last_time: int = 0
    pub: Any = None

    def publisher(self, path: Path | None = None, **config: Any) -> Publisher:
        return Publisher(
            self.l1, self.deployment.rollup, OPERATOR, state_path=path or self.state_path,
            start_block=self.deployment.block, config=PublisherConfig(**config),
        )

    def next_batch(self, deposits: int = 0, ahead: int = 0, valid: bool = True, funding: bool = False) -> Closed:
        """A real batch: ``deposits`` deposit steps, an oracle update at the L1 time (+ ``ahead``),
        and with ``funding`` a funding step."""
        t = self.anvil.timestamp_of()
        if t <= self.last_time:
            t = self.anvil.increase_time(self.last_time + 1 - t)
        t += ahead
        self.last_time = t
        self.world.time = t
        oracle = self.world.oracle_step({ETH_PERP: 3_000_000 + t % 1000}, {ETH: 3_000_000}, timestamp=t)
        extra = (encode_funding(),) if funding else ()
        batch = Batch(t, (), tuple([encode_deposit()] * deposits) + (oracle,) + extra)
        result = self.db.apply_batch(batch, BatchContext.create(t, self.chain, self.queues, []))
        assert all(r.code == 0 for r in result.receipts) or not valid
        closed = Closed(len(self.batches), batch.encode(), result.post_root, len(batch.steps))
        self.batches.append(closed)
        return closed

    def nonce(self) -> int:
        return self.l1.nonce(OPERATOR.address, "latest")

    def on_chain(self) -> list[tuple[bytes, bytes]]:
        """(post_root, data_hash) of the canonical chain from the head down to the genesis."""
        rollup = self.contracts.rollup
        out, at = [], rollup.head()
        while at != 0:
            info = rollup.batch(at)
            out.append((info.post_root, info.data_hash))
            at = info.parent
        return out[::-1]


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with Anvil() as anvil:
        w3 = anvil.web3()
        tx = Transactor(w3, OPERATOR)
        prover = tx.deploy(compile_contract(TEST_PROVER), [])
        now = anvil.timestamp_of()
        world = World(time=now - 60)
        db = StateDB.in_memory()
        genesis_root = db.initialize(world.leaves)
        keys = sorted(Web3.to_checksum_address(a) for a in world.chain.oracle_keys)
        d = deploy_web3(anvil.url, DEV_KEYS[0], Genesis(genesis_root, world.time, keys, 1), CONFIG, prover=prover)
        chain = ChainConfig(d.chain_id, bytes.fromhex(d.rollup[2:]), world.chain.oracle_keys, 1)
        world.chain, world.domain = chain, chain.domain
        contracts = Contracts.connect(w3, d, tx)
        # one deposit in the bridge's queue for the first batch to consume
        contracts.token.mint(OPERATOR.address, 5_000_000)
        contracts.token.approve(d.bridge, 5_000_000)
        contracts.bridge.deposit(5_000_000)
        queues = ListQueues([L1Deposit(bytes.fromhex(OPERATOR.address[2:]), 5_000_000)])
        path = tmp_path_factory.mktemp("publisher") / "publisher.json"
        yield Scenario(anvil, d, contracts, L1Client(anvil.url, depth=DEPTH), world, db, chain, path, queues)


def _states(pub: Publisher) -> list[BatchState]:
    return [r.state for r in pub.status().batches]


def _idle(st: PublisherStatus) -> bool:
    """Nothing in flight and nothing postable left."""
    return st.halted is not None or all(
        r.state not in (BatchState.SENT, BatchState.QUEUED) or r.error for r in st.batches
    ) and all(r.finalize_tx is None for r in st.batches)


def settle(pub: Publisher, until: Callable[[PublisherStatus], bool] = _idle, timeout: float = 15.0) -> PublisherStatus:
    """Tick until ``until(status)`` (anvil's automine lands a transaction a moment after it is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        st = pub.tick()
        if until(st):
            return st
        assert time.monotonic() < deadline, f"not settled: {[(r.index, r.state, r.error) for r in st.batches]}"
        time.sleep(0.05)


def test_posts_batches_in_order_and_confirms(sc: Scenario) -> None:
    sc.pub = pub = sc.publisher()
    batches = [sc.next_batch(deposits=1), sc.next_batch(), sc.next_batch()]
    for b in batches:
        pub.submit(b)
    assert _states(pub) == [BatchState.QUEUED] * 3
    settle(pub)
    # every batch is on chain; each post mines a block, so the earliest may
    # already be DEPTH deep (confirmed) by the time the last one lands
    states = _states(pub)
    assert set(states) <= {BatchState.POSTED, BatchState.CONFIRMED}, states
    assert states == sorted(states, key=lambda s: s != BatchState.CONFIRMED), states
    sc.anvil.mine(DEPTH)
    status = pub.tick()
    assert _states(pub) == [BatchState.CONFIRMED] * 3 and status.halted is None
    records = status.batches
    assert [r.batch_id for r in records] == [1, 2, 3]
    rollup = sc.contracts.rollup
    dep, frc = 0, 0
    for b, r in zip(batches, records, strict=True):
        assert r.inclusion is not None and r.posts == 1 and r.confirmations >= DEPTH + 1
        info = rollup.batch(r.inclusion.batch_id)
        data = BatchData.of(parse_batch(b.encoded), dep, frc)
        assert (info.status, info.post_root, info.data_hash) == (BatchStatus.PENDING, b.post_root, data.data_hash())
        assert rollup.batch_bytes(bytes.fromhex(r.inclusion.tx_hash)) == b.encoded
        dep, frc = data.deposit_end, data.forced_end
        print(f"GAS | postBatch via the publisher ({b.step_count} steps, {len(b.encoded)} bytes) | {r.inclusion.gas_used:,}")
    assert rollup.deposit_consumed() == 1
    # the proposer bond: topped up by each post (1 ether per pending batch), nothing more
    assert rollup.free_bond(OPERATOR.address) == 0
    assert sc.l1.w3.eth.get_balance(sc.deployment.rollup) == 3 * CONFIG.proposer_bond
    # re-submitting changes nothing; different bytes under a known index are refused
    pub.submit(batches[1])
    with pytest.raises(ValueError, match="differs"):
        pub.submit(Closed(1, batches[2].encoded, batches[2].post_root, batches[2].step_count))
    with pytest.raises(ValueError, match="before batch"):
        pub.submit(Closed(9, batches[2].encoded, batches[2].post_root, 1))


def test_a_reorg_that_drops_posted_batches_gets_them_reposted(sc: Scenario) -> None:
    pub = sc.pub
    pub.submit(sc.next_batch())
    settle(pub)
    before = sc.on_chain()
    last = pub.status().batches[-1]
    assert last.inclusion is not None and len(before) == 4
    tx_nonce = sc.nonce()

    # the block holding the last postBatch (and everything after it) is replaced
    sc.anvil.reorg(sc.anvil.block_number() - last.inclusion.block + 1)
    assert sc.contracts.rollup.batch_count() == 4 and len(sc.on_chain()) == 3
    assert sc.nonce() == tx_nonce - 1

    rec = settle(pub).batches[-1]
    assert rec.state == BatchState.POSTED and rec.reorgs == 1 and rec.posts == 2
    assert sc.on_chain() == before and sc.contracts.rollup.batch_count() == 5

    # two batches dropped at once come back in order
    pub.submit(sc.next_batch())
    pub.submit(sc.next_batch())
    settle(pub)
    before = sc.on_chain()
    first = pub.status().batches[-2].inclusion
    assert first is not None and len(before) == 6
    sc.anvil.reorg(sc.anvil.block_number() - first.block + 1)
    assert len(sc.on_chain()) == 4
    settle(pub)
    assert sc.on_chain() == before
    assert [(r.posts, r.reorgs) for r in pub.status().batches[-2:]] == [(2, 1), (2, 1)]
    sc.anvil.mine(DEPTH)
    assert set(_states(pub)) != set() and {r.state for r in pub.tick().batches} == {BatchState.CONFIRMED}


def test_a_restart_resumes_without_posting_twice(sc: Scenario, tmp_path: Path) -> None:
    before, nonce = sc.on_chain(), sc.nonce()
    old = sc.pub.status().batches

    # from the state file: the records come back; the core submits the bytes again
    pub = sc.publisher()
    assert [r.index for r in pub.status().batches] == pub.missing() == [b.index for b in sc.batches]
    for b in sc.batches:
        pub.submit(b)
    assert pub.missing() == []
    status = settle(pub)
    assert [(r.state, r.batch_id) for r in status.batches] == [(r.state, r.batch_id) for r in old]
    assert sc.nonce() == nonce and sc.on_chain() == before

    # without any state: the chain says which batches are ours, and they are adopted
    fresh = sc.publisher(tmp_path / "lost.json")
    for b in sc.batches:
        fresh.submit(b)
    settle(fresh)
    assert [r.batch_id for r in fresh.status().batches] == [r.batch_id for r in old]
    assert set(_states(fresh)) == {BatchState.CONFIRMED}
    assert sc.nonce() == nonce and sc.on_chain() == before

    sc.pub = pub
    pub.submit(sc.next_batch())
    settle(pub)
    assert sc.nonce() == nonce + 1 and len(sc.on_chain()) == len(before) + 1

    # a state file belongs to one chain, rollup and proposer
    doc = json.loads(sc.state_path.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "rollup": sc.deployment.bridge}))
    with pytest.raises(ValueError, match="rollup"):
        sc.publisher(other)


def test_a_restart_with_a_post_in_flight_keeps_its_transaction(sc: Scenario) -> None:
    nonce = sc.nonce()
    sc.anvil.set_automine(False)
    try:
        sc.pub.submit(sc.next_batch())
        sc.pub.tick()
        rec = sc.pub.status().batches[-1]
        assert rec.state == BatchState.SENT and rec.tx is not None
        sent_hash = rec.tx.hashes[0]
        # the process dies here; a new one starts from the file written before the broadcast
        pub = sc.publisher()
        for b in sc.batches:
            pub.submit(b)
        pub.tick()
        assert pub.status().batches[-1].state == BatchState.SENT
        sc.anvil.mine()
    finally:
        sc.anvil.set_automine(True)
    rec = settle(pub).batches[-1]
    assert rec.state == BatchState.POSTED and rec.inclusion is not None
    assert rec.inclusion.tx_hash == sent_hash and rec.posts == 1
    assert sc.nonce() == nonce + 1
    sc.pub = pub


def test_a_stuck_transaction_is_replaced_with_higher_fees(sc: Scenario) -> None:
    nonce = sc.nonce()
    sc.anvil.set_automine(False)
    try:
        sc.pub.submit(sc.next_batch())
        sc.pub.tick()
        rec = sc.pub.status().batches[-1]
        assert rec.state == BatchState.SENT and rec.tx is not None
        # the base fee jumps far above the transaction's fee cap: it cannot be included
        sc.anvil.rpc("anvil_setNextBlockBaseFeePerGas", hex(rec.tx.max_fee * 50))
        sc.anvil.mine(3)
        assert sc.nonce() == nonce
        sc.pub.tick()  # 3 blocks without inclusion: replaced at the same nonce
        rec = sc.pub.status().batches[-1]
        assert rec.tx is not None and len(rec.tx.hashes) == 2 and rec.tx.nonce == nonce
        assert rec.tx.max_fee > int(sc.anvil.block()["baseFeePerGas"], 16)
        sc.anvil.mine()
    finally:
        sc.anvil.set_automine(True)
    rec = settle(pub := sc.pub).batches[-1]
    assert rec.state == BatchState.POSTED and rec.tx is not None and rec.inclusion is not None
    assert rec.inclusion.tx_hash == rec.tx.hashes[1] and rec.posts == 1
    assert sc.nonce() == nonce + 1 and pub.halted is None


def test_a_batch_ahead_of_l1_time_waits(sc: Scenario) -> None:
    sc.pub.submit(sc.next_batch(ahead=30))
    rec = sc.pub.tick().batches[-1]
    assert rec.state == BatchState.QUEUED and rec.error == "TIMESTAMP_IN_FUTURE" and rec.posts == 0
    sc.anvil.increase_time(31)
    rec = settle(sc.pub).batches[-1]
    assert rec.state == BatchState.POSTED and rec.posts == 1


def test_final_after_the_challenge_window(sc: Scenario) -> None:
    pub = sc.pub
    sc.anvil.mine(DEPTH)
    pub.tick()
    assert set(_states(pub)) == {BatchState.CONFIRMED}
    ids = [r.batch_id for r in pub.status().batches]
    assert not pub.tick().batches[0].finalize_tx  # the window is open
    sc.anvil.increase_time(CONFIG.challenge_window)
    status = settle(pub, lambda st: not st.batches)  # finalize calls, oldest first, 8 per tick
    assert status.anchor.index == len(sc.batches) - 1
    assert all(status.state_of(b.index) == BatchState.FINAL for b in sc.batches)
    rollup = sc.contracts.rollup
    for b, i in zip(sc.batches, ids, strict=True):
        assert i is not None and rollup.finalized_root(i) == b.post_root
    assert rollup.free_bond(OPERATOR.address) == len(ids) * CONFIG.proposer_bond
    # the state file is down to the anchor
    doc = json.loads(sc.state_path.read_text())
    assert doc["records"] == [] and doc["anchor"]["batch_id"] == ids[-1]
    for ev in rollup.events("BatchFinalized", sc.deployment.block)[-2:]:
        gas = sc.l1.receipt(bytes(ev["transactionHash"]))["gasUsed"]
        print(f"GAS | finalize via the publisher (batch {ev['args']['index']}) | {gas:,}")


def test_a_refused_batch_halts_publishing_until_rewound(sc: Scenario) -> None:
    pub = sc.pub
    # a batch claiming a second deposit: the bridge's queue holds only one (never applied to the state)
    t = sc.anvil.timestamp_of()
    sc.world.time = t
    steps = (encode_deposit(), sc.world.oracle_step({ETH_PERP: 3_000_000}, {ETH: 3_000_000}, timestamp=t))
    bad = Closed(len(sc.batches), Batch(t, (), steps).encode(), keccak256(b"not a root"), 2)
    pub.submit(bad)
    status = pub.tick()
    assert status.batches[-1].state == BatchState.FAILED and status.batches[-1].posts == 0
    assert status.batches[-1].error == "DEPOSIT_QUEUE_SHORT" and status.halted is not None
    nonce = sc.nonce()
    pub.tick()
    assert sc.nonce() == nonce  # nothing is posted while halted
    rebuilt = sc.next_batch()  # the core rebuilds from the refused batch on
    assert rebuilt.index == bad.index
    with pytest.raises(ValueError, match="differs"):
        pub.submit(rebuilt)
    pub.rewind(bad.index)
    assert pub.status().halted is None
    pub.submit(rebuilt)
    rec = settle(pub).batches[-1]
    assert rec.index == bad.index and rec.state == BatchState.POSTED and sc.nonce() == nonce + 1


def test_a_batch_removed_by_a_lost_dispute_halts_its_publisher(sc: Scenario, tmp_path: Path) -> None:
    # a publisher whose local batch 0 follows the rollup's current head
    rollup = sc.contracts.rollup
    base = rollup.head()
    pub = Publisher(
        sc.l1, sc.deployment.rollup, OPERATOR, state_path=tmp_path / "p.json", base_batch=base,
        start_block=sc.deployment.block,
    )
    b = sc.next_batch(funding=True, valid=False)
    pub.submit(Closed(0, b.encoded, b.post_root, b.step_count))
    settle(pub)
    sc.anvil.mine(DEPTH)
    rec = pub.tick().batches[0]
    assert rec.state == BatchState.CONFIRMED and rec.inclusion is not None and rec.inclusion.parent == base

    # a challenger opens a game on it; the asserter never answers and loses on time
    challenger = Account.from_key(DEV_KEYS[1])
    theirs = RollupClient(sc.l1.w3, sc.deployment.rollup, Transactor(sc.l1.w3, challenger))
    theirs.create_game(rec.inclusion.batch_id, value=CONFIG.challenger_bond)
    game = theirs.game_count() - 1
    sc.anvil.increase_time(CONFIG.clock + 1)
    theirs.timeout(game)
    assert rollup.batch(rec.inclusion.batch_id).status == BatchStatus.REMOVED

    status = pub.tick()
    assert status.batches[0].state == BatchState.FAILED and status.batches[0].error == "REMOVED"
    assert status.halted is not None and "dispute" in status.halted
