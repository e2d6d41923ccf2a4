"""node.l1_watch against a real anvil: the bridge's queues, to a confirmation depth, through reorgs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from l1_contracts.bindings import BridgeClient, TokenClient, Transactor
from l1_contracts.config import DEVNET
from l1_contracts.deploy import TEST_PROVER, Deployment, Genesis, compile_contract, deploy_web3
from node.anvil import DEV_KEYS, Anvil, anvil_available
from node.l1 import L1Client
from node.l1_watch import (
    DEPOSITED_TOPIC,
    FORCED_QUEUED_TOPIC,
    DeepReorgError,
    QueuedDeposit,
    QueuedForced,
    QueueGapError,
    QueueWatcher,
    WatchCursor,
)
from state.context import L1Deposit, L1Forced
from state.keccak import keccak256
from state.txs import encode_forced_withdraw

pytestmark = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed: run `npm install` at the repository root"
)

DEPTH = 2
OPERATOR = Account.from_key(DEV_KEYS[0])
ALICE, BOB, CAROL = (Account.from_key(k) for k in DEV_KEYS[1:4])


@dataclass
class Chain:
    anvil: Anvil
    w3: Any
    deployment: Deployment
    l1: L1Client

    def bridge(self, who: Any) -> BridgeClient:
        return BridgeClient(self.w3, self.deployment.bridge, Transactor(self.w3, who))

    def deposit(self, who: Any, amount: int) -> Any:
        return self.bridge(who).deposit(amount)

    def force(self, who: Any, payload: bytes) -> Any:
        return self.bridge(who).force_transaction(payload)

    def watcher(self, **kw: Any) -> QueueWatcher:
        return QueueWatcher(self.l1, self.deployment.bridge, start_block=self.deployment.block, depth=DEPTH, **kw)


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    with Anvil() as anvil:
        w3 = anvil.web3()
        prover = Transactor(w3, OPERATOR).deploy(compile_contract(TEST_PROVER), [])
        now = anvil.timestamp_of()
        genesis = Genesis(keccak256(b"watch test genesis"), now, [OPERATOR.address], 1)
        d = deploy_web3(anvil.url, DEV_KEYS[0], genesis, DEVNET, prover=prover)
        token = TokenClient(w3, d.token, Transactor(w3, OPERATOR))
        for who in (ALICE, BOB, CAROL):
            token.mint(who.address, 10**12)
            TokenClient(w3, d.token, Transactor(w3, who)).approve(d.bridge, 10**12)
        yield Chain(anvil, w3, d, L1Client(anvil.url, depth=DEPTH))


def _block_of(receipt: Any) -> int:
    return int(receipt["blockNumber"])


def test_items_in_order_once_deep_enough(chain: Chain) -> None:
    watcher = chain.watcher()
    r0 = chain.deposit(ALICE, 1_000_000)
    payload = encode_forced_withdraw(1, bytes.fromhex(BOB.address[2:]), 5)
    r1 = chain.force(BOB, payload)
    r2 = chain.deposit(BOB, 2_000_000)
    head = chain.anvil.block_number()
    assert head == _block_of(r2)

    first = watcher.poll()  # only items DEPTH blocks deep: r2 (head) and r1 (head - 1) are not
    assert [(type(i), i.index) for i in first] == [(QueuedDeposit, 0)]
    assert watcher.cursor.block == head - DEPTH
    assert watcher.poll() == []

    chain.anvil.mine(DEPTH)
    rest = watcher.poll()
    assert [(type(i), i.index) for i in rest] == [(QueuedForced, 0), (QueuedDeposit, 1)]
    items = first + rest
    assert [i.block for i in items] == [_block_of(r) for r in (r0, r1, r2)]
    assert [i.tx_hash for i in items] == [bytes(r["transactionHash"]) for r in (r0, r1, r2)]

    # the same items the bridge's own getters return, and the STF's types
    bridge = chain.bridge(ALICE)
    d0, f0, d1 = items
    assert isinstance(d0, QueuedDeposit) and isinstance(f0, QueuedForced) and isinstance(d1, QueuedDeposit)
    assert d0.item == L1Deposit(bytes.fromhex(ALICE.address[2:]), 1_000_000)
    assert f0.item == L1Forced(bytes.fromhex(BOB.address[2:]), payload)
    for q in (d0, d1):
        on_chain = bridge.deposit_at(q.index)
        assert (on_chain.owner.lower(), on_chain.amount, on_chain.time) == ("0x" + q.item.owner.hex(), q.item.amount, q.time)
    assert bridge.forced_at(0).time == f0.time == int(chain.w3.eth.get_block(f0.block)["timestamp"])

    # the hand-written topics are the compiled contract's
    assert bytes.fromhex(bridge.contract.events.Deposited().topic[2:]) == DEPOSITED_TOPIC
    assert bytes.fromhex(bridge.contract.events.ForcedQueued().topic[2:]) == FORCED_QUEUED_TOPIC
    assert watcher.counts() == (2, 1)


def test_an_item_reorged_out_above_depth_is_never_reported(chain: Chain) -> None:
    watcher = chain.watcher()
    chain.anvil.mine(DEPTH)
    assert len(watcher.poll()) == 3  # the first test's items
    bob = chain.deposit(BOB, 777)  # deposit index 2, in the head block
    assert watcher.poll() == []

    # Carol's deposit replaces Bob's: the last two blocks are rebuilt with it in the first
    bridge = chain.bridge(CAROL)
    nonce = chain.w3.eth.get_transaction_count(CAROL.address)
    tx = bridge.contract.functions.deposit(31_337).build_transaction({
        "from": CAROL.address, "nonce": nonce, "gas": 300_000, "chainId": chain.deployment.chain_id,
        "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
    })
    signed = CAROL.sign_transaction(tx)
    chain.anvil.reorg(2, [(bytes(signed.raw_transaction), 0)])
    assert chain.l1.receipt(bytes(bob["transactionHash"])) is None
    assert watcher.poll() == []
    chain.anvil.mine(DEPTH)
    (item,) = watcher.poll()
    assert isinstance(item, QueuedDeposit) and item.index == 2
    assert item.item == L1Deposit(bytes.fromhex(CAROL.address[2:]), 31_337)
    assert item.tx_hash == bytes(signed.hash)


def test_resumes_from_a_persisted_cursor(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "queues.json"
    watcher = chain.watcher(cursor_path=path)
    chain.anvil.mine(DEPTH)
    seen = watcher.poll()
    assert [i.index for i in seen if isinstance(i, QueuedDeposit)] == [0, 1, 2]
    watcher.commit()
    cursor = WatchCursor.load(path)
    assert cursor == watcher.cursor and cursor is not None and cursor.next_deposit == 3

    chain.force(ALICE, encode_forced_withdraw(2, bytes.fromhex(ALICE.address[2:]), 9))
    chain.anvil.mine(DEPTH)
    again = chain.watcher(cursor_path=path)  # a restarted process
    (item,) = again.poll()
    assert isinstance(item, QueuedForced) and item.index == 1
    # not committed: a third process sees it again (at least once)
    assert [i.index for i in chain.watcher(cursor_path=path).poll()] == [1]


def test_follow_yields_and_commits(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "follow.json"
    watcher = chain.watcher(cursor_path=path)
    polls = iter(range(3))
    got = list(watcher.follow(interval=0.0, stop=lambda: next(polls, None) is None))
    assert len(got) == 5  # three deposits and two forced items so far
    assert WatchCursor.load(path) == watcher.cursor


def test_a_reorg_deeper_than_depth_stops_the_watcher(chain: Chain) -> None:
    watcher = chain.watcher()
    watcher.poll()
    head = chain.anvil.block_number()
    assert watcher.cursor.block == head - DEPTH
    chain.anvil.reorg(DEPTH + 1)  # replaces the cursor's block too
    with pytest.raises(DeepReorgError):
        watcher.poll()


def test_logs_that_disagree_with_the_counters_are_refused(chain: Chain) -> None:
    chain.deposit(ALICE, 5)
    head = chain.anvil.mine(DEPTH)
    block_hash = chain.l1.block_hash(chain.deployment.block)
    assert block_hash is not None
    # a cursor that claims one deposit fewer than the chain holds at its block
    wrong = WatchCursor(chain.deployment.block, block_hash.hex(), 1, 0)
    watcher = chain.watcher(cursor=wrong)
    with pytest.raises(QueueGapError, match="where 1 was next"):
        watcher.poll()
    assert watcher.cursor == wrong
    # a cursor past every log whose counts are behind: the counters catch it
    chain.anvil.mine(DEPTH)
    recent = head - 1
    recent_hash = chain.l1.block_hash(recent)
    assert recent_hash is not None
    stale = chain.watcher(cursor=WatchCursor(recent, recent_hash.hex(), 0, 0))
    with pytest.raises(QueueGapError, match="counters"):
        stale.poll()
