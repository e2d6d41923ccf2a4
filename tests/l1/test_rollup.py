"""Rollup: posting rules (every refusal), the data commitment, finality,
bonds, proposer fallback and forced inclusion, on real HFX batches."""

from __future__ import annotations

import boa
import pytest

from l1_contracts.bindings import BatchData, BatchStatus, merkle_root, parse_batch
from l1_contracts.config import TEST
from l1_contracts.deploy import boa_deployer
from state.batch import Batch
from state.keccak import keccak256
from state.txs import encode_deposit, encode_forced, encode_forced_withdraw, encode_funding
from tests.l1.fixtures_rollup import L1Chain, bad_root, now, report, set_time, tx_gas


@pytest.fixture
def chain() -> L1Chain:
    return L1Chain()


def post_raw(chain: L1Chain, data: bytes, root: bytes, steps: int, proposer: str | None = None) -> int:
    with boa.env.prank(proposer or chain.sequencer):
        return int(chain.rollup.postBatch(data, root, steps))


# ---------------------------------------------------------------- genesis and posting


def test_genesis(chain: L1Chain) -> None:
    g = chain.rollup.batch(0)
    assert g.status == BatchStatus.FINAL and g.post_root == chain.genesis_root
    assert g.timestamp == chain.genesis.time and g.height == 0
    assert chain.rollup.head() == 0 and chain.rollup.batchCount() == 1
    assert chain.rollup.finalizedRoot(0) == chain.genesis_root
    assert chain.rollup.K() == TEST.k and chain.rollup.CLOCK() == TEST.clock
    assert list(chain.rollup.oracleKeys()) == list(chain.genesis.oracle_keys)


def test_bridge_must_point_at_rollup(chain: L1Chain) -> None:
    from l1_contracts.deploy import rollup_args

    args = rollup_args(chain.bridge.address, chain.prover.address, chain.sequencer, chain.genesis, TEST)
    with boa.reverts("BRIDGE_MISMATCH"):
        boa_deployer("Rollup").deploy(*args)


def test_post_records_batch_and_commitment(chain: L1Chain) -> None:
    batch = chain.opening_batch()
    posted = chain.post(batch)
    assert posted.honest and posted.index == 1
    info = chain.rollup.batch(1)
    assert info.parent == 0 and info.height == 1 and info.pre_root == chain.genesis_root
    assert info.post_root == posted.post_root == chain.db.root
    assert info.timestamp == batch.timestamp and info.n_steps == len(batch.steps)
    assert info.status == BatchStatus.PENDING and info.proposer == chain.sequencer
    assert info.deadline == info.posted_at + TEST.challenge_window == now() + TEST.challenge_window
    assert info.deposit_end == 2 and info.forced_end == 0
    assert info.data_hash == posted.data.data_hash()
    assert chain.rollup.head() == 1 and chain.rollup.depositConsumed() == 2
    assert chain.rollup.locked(chain.sequencer) == TEST.proposer_bond
    (event,) = [e for e in chain.last_logs if type(e).__name__ == "BatchPosted"]
    assert tuple(event.data) == posted.data.as_tuple()
    assert event.index == 1 and event.pre_root == chain.genesis_root and event.post_root == posted.post_root


def test_commitment_matches_python_tree() -> None:
    """The contract's orders/steps roots equal bindings.merkle_root for 1..9 items."""
    chain = L1Chain()
    for n in range(1, 10):
        steps = [bytes([0xFF, i]) * (i % 3) for i in range(n)]
        orders = [bytes([i]) * 104 for i in range(n % 4)]
        batch = Batch(now(), tuple(orders), tuple(steps))
        index = post_raw(chain, batch.encode(), bad_root(b"%d" % n), n)
        data = BatchData.of(parse_batch(batch.encode()), 0, 0)
        assert data.steps_root == merkle_root([keccak256(s) for s in steps])
        assert chain.rollup.batch(index).data_hash == data.data_hash()


MALFORMED = {
    "empty": b"",
    "short header": b"\x01" + b"\x00" * 10,
    "bad version": b"\x02" + b"\x00" * 10 + b"\x00\x00\x00\x01" + b"\x00\x00",
    "truncated order table": b"\x01" + b"\x00" * 8 + b"\x00\x02" + b"\x44" + b"\x00" * 68,
    "order entry longer than 105 bytes": b"\x01" + b"\x00" * 8 + b"\x00\x01" + b"\x6a" + b"\x00" * 106
    + b"\x00\x00\x00\x01" + b"\x00\x01\x06",
    "truncated order entry": b"\x01" + b"\x00" * 8 + b"\x00\x01" + b"\x44" + b"\x00" * 50
    + b"\x00\x00\x00\x01",
    "truncated step length": b"\x01" + b"\x00" * 10 + b"\x00\x00\x00\x02" + b"\x00\x00" + b"\x00",
    "truncated step": b"\x01" + b"\x00" * 10 + b"\x00\x00\x00\x01" + b"\x00\x05" + b"\x06" * 4,
    "trailing bytes": b"\x01" + b"\x00" * 10 + b"\x00\x00\x00\x01" + b"\x00\x01\x06" + b"\x00",
    "step count beyond any batch": b"\x01" + b"\x00" * 10 + b"\xff\xff\xff\xff" + b"\x00\x00",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_refuses_unparsable(chain: L1Chain, name: str) -> None:
    data = MALFORMED[name]
    with boa.reverts("BAD_BATCH"):
        post_raw(chain, data, bad_root(b"x"), 1 if name != "truncated step length" else 2)


def test_refuses_no_steps_and_wrong_count(chain: L1Chain) -> None:
    with boa.reverts("NO_STEPS"):
        post_raw(chain, Batch(now(), (), ()).encode(), bad_root(b"x"), 0)
    batch = Batch(now(), (), (encode_funding(), encode_funding()))
    with boa.reverts("STEP_COUNT"):
        post_raw(chain, batch.encode(), bad_root(b"x"), 3)
    with boa.reverts("ZERO_ROOT"):
        post_raw(chain, batch.encode(), b"\x00" * 32, 2)


def test_refuses_oversized_batch(chain: L1Chain) -> None:
    step = b"\xff" * 60_000
    batch = Batch(now(), (), (step, step, b"\xff"))
    with boa.reverts():
        post_raw(chain, batch.encode(), bad_root(b"x"), 3)


def test_refuses_timestamps(chain: L1Chain) -> None:
    first = chain.post(chain.batch([encode_funding()]))
    with boa.reverts("TIMESTAMP_BEFORE_PARENT"):
        post_raw(chain, Batch(first.batch.timestamp - 1, (), (encode_funding(),)).encode(), bad_root(b"x"), 1)
    with boa.reverts("TIMESTAMP_IN_FUTURE"):
        post_raw(chain, Batch(now() + 1, (), (encode_funding(),)).encode(), bad_root(b"x"), 1)
    # equal to the parent's and equal to the block's are both fine
    post_raw(chain, Batch(first.batch.timestamp, (), (encode_funding(),)).encode(), bad_root(b"y"), 1)
    set_time(now() + 5)
    post_raw(chain, Batch(now(), (), (encode_funding(),)).encode(), bad_root(b"z"), 1)


def test_refuses_before_genesis_time(chain: L1Chain) -> None:
    with boa.reverts("TIMESTAMP_BEFORE_PARENT"):
        post_raw(chain, Batch(chain.genesis.time - 1, (), (encode_funding(),)).encode(), bad_root(b"x"), 1)


def test_refuses_without_free_bond(chain: L1Chain) -> None:
    proposer = chain.actor("poor proposer")
    set_time(now() + TEST.fallback_period)
    batch = Batch(now(), (), (encode_funding(),))
    with boa.reverts("NO_FREE_BOND"):
        post_raw(chain, batch.encode(), bad_root(b"x"), 1, proposer)
    chain.fund_bond(proposer, TEST.proposer_bond)
    post_raw(chain, batch.encode(), bad_root(b"x"), 1, proposer)
    # the one bond is now locked behind the pending batch
    assert chain.rollup.freeBond(proposer) == 0
    set_time(now() + TEST.fallback_period)
    with boa.reverts("NO_FREE_BOND"):
        post_raw(chain, Batch(now(), (), (encode_funding(),)).encode(), bad_root(b"y"), 1, proposer)
    # ether sent with the call is added to the bond first
    with boa.env.prank(proposer):
        chain.rollup.postBatch(Batch(now(), (), (encode_funding(),)).encode(), bad_root(b"y"), 1, value=TEST.proposer_bond)


def test_refuses_contract_caller(chain: L1Chain) -> None:
    forwarder = boa_deployer("test/TestForwarder").deploy()
    batch = Batch(now(), (), (encode_funding(),))
    calldata = chain.rollup.postBatch.prepare_calldata(batch.encode(), bad_root(b"x"), 1)
    with boa.env.prank(chain.sequencer), boa.reverts("NOT_ORIGIN"):
        forwarder.forward(chain.rollup.address, calldata)


# ---------------------------------------------------------------- proposers


def test_proposer_fallback(chain: L1Chain) -> None:
    stranger = chain.actor("stranger")
    chain.fund_bond(stranger, TEST.proposer_bond)
    chain.post(chain.batch([encode_funding()]))
    set_time(now() + TEST.fallback_period - 1)
    batch = Batch(now(), (), (encode_funding(),))
    with boa.reverts("NOT_PROPOSER"):
        post_raw(chain, batch.encode(), bad_root(b"x"), 1, stranger)
    set_time(now() + 1)
    index = post_raw(chain, batch.encode(), bad_root(b"x"), 1, stranger)
    assert chain.rollup.batch(index).proposer == stranger
    # a new batch restarts the period for everyone but the operator
    other = chain.actor("other")
    chain.fund_bond(other, TEST.proposer_bond)
    with boa.reverts("NOT_PROPOSER"):
        post_raw(chain, batch.encode(), bad_root(b"y"), 1, other)
    post_raw(chain, batch.encode(), bad_root(b"y"), 1)


# ---------------------------------------------------------------- queues and forced inclusion


def test_refuses_more_queue_steps_than_items(chain: L1Chain) -> None:
    chain.deposit("maker", 1_000)
    with boa.reverts("DEPOSIT_QUEUE_SHORT"):
        post_raw(chain, Batch(now(), (), (encode_deposit(), encode_deposit())).encode(), bad_root(b"x"), 2)
    with boa.reverts("FORCED_QUEUE_SHORT"):
        post_raw(chain, Batch(now(), (), (encode_deposit(), encode_forced())).encode(), bad_root(b"x"), 2)
    post_raw(chain, Batch(now(), (), (encode_deposit(),)).encode(), bad_root(b"x"), 1)
    assert chain.rollup.depositConsumed() == 1


def test_forced_inclusion_of_deposits(chain: L1Chain) -> None:
    chain.deposit("maker", 1_000)
    queued = now()
    chain.deposit("taker", 2_000)
    set_time(queued + TEST.forced_inclusion_delay - 1)
    # the first unconsumed item is still young: a batch may skip it
    chain.post(chain.batch([encode_funding()]), bad_root(b"skip"))
    set_time(queued + TEST.forced_inclusion_delay)
    with boa.reverts("DEPOSIT_OVERDUE"):
        post_raw(chain, Batch(now(), (), (encode_funding(),)).encode(), bad_root(b"x"), 1)
    # consuming only the first leaves the second (queued at the same time) overdue
    with boa.reverts("DEPOSIT_OVERDUE"):
        post_raw(chain, Batch(now(), (), (encode_deposit(),)).encode(), bad_root(b"x"), 1)
    post_raw(chain, Batch(now(), (), (encode_deposit(), encode_deposit())).encode(), bad_root(b"x"), 2)


def test_forced_inclusion_of_forced_transactions(chain: L1Chain) -> None:
    chain.post(chain.opening_batch())
    queued = now()
    chain.force("maker", encode_forced_withdraw(chain.world.index["maker"], b"\x99" * 20, 5))
    set_time(queued + TEST.forced_inclusion_delay)
    with boa.reverts("FORCED_OVERDUE"):
        post_raw(chain, Batch(now(), (), (encode_funding(),)).encode(), bad_root(b"x"), 1)
    posted = chain.post(chain.batch([encode_forced()]))
    assert posted.honest and chain.rollup.forcedConsumed() == 1
    # the forced withdrawal was executed by the honest STF
    assert chain.db.view.withdrawal(0) is not None


# ---------------------------------------------------------------- finality and bonds


def test_finality(chain: L1Chain) -> None:
    b1 = chain.post(chain.opening_batch())
    set_time(now() + 10)
    b2 = chain.post(chain.trading_batch(3))
    with boa.reverts("WINDOW_OPEN"):
        chain.rollup.finalize(b1.index)
    set_time(chain.rollup.batch(b2.index).deadline)
    with boa.reverts("PARENT_NOT_FINAL"):
        chain.rollup.finalize(b2.index)
    assert chain.rollup.finalizedRoot(b1.index) == b"\x00" * 32
    chain.rollup.finalize(b1.index)
    assert chain.rollup.batchStatus(b1.index) == BatchStatus.FINAL
    assert chain.rollup.finalizedRoot(b1.index) == b1.post_root
    with boa.reverts("NOT_PENDING"):
        chain.rollup.finalize(b1.index)
    chain.rollup.finalize(b2.index)
    assert chain.rollup.locked(chain.sequencer) == 0
    with boa.reverts("NO_BATCH"):
        chain.rollup.finalize(99)


def test_finality_waits_for_open_games(chain: L1Chain) -> None:
    b1 = chain.post(chain.opening_batch())
    challenger = chain.actor("challenger")
    chain.fund_bond(challenger, TEST.challenger_bond)
    with boa.env.prank(challenger):
        game = chain.rollup.createGame(b1.index)
    g = chain.rollup.game(game)
    assert g.turn == 1  # ASSERTER: post roots
    roots = b1.roots
    assert roots is not None
    with boa.env.prank(chain.sequencer):
        chain.rollup.postRoots(game, roots[1:-1])
    # the lying challenger never chooses: the game outlives the window ...
    set_time(chain.rollup.batch(b1.index).deadline)
    with boa.reverts("GAME_OPEN"):
        chain.rollup.finalize(b1.index)
    # ... until its clock runs out and the asserter wins on time
    chain.rollup.timeout(game)
    chain.rollup.finalize(b1.index)
    assert chain.rollup.batchStatus(b1.index) == BatchStatus.FINAL


def test_bonds_deposit_and_withdraw(chain: L1Chain) -> None:
    who = chain.actor("bonded")
    before = boa.env.get_balance(who)
    with boa.env.prank(who):
        chain.rollup.depositBond(value=5)
        with boa.reverts("BOND_LOCKED"):
            chain.rollup.withdrawBond(6)
        chain.rollup.withdrawBond(5)
    assert boa.env.get_balance(who) == before
    # a locked bond cannot leave
    chain.post(chain.batch([encode_funding()]))
    free = chain.rollup.freeBond(chain.sequencer)
    with boa.env.prank(chain.sequencer), boa.reverts("BOND_LOCKED"):
        chain.rollup.withdrawBond(free + 1)


# ---------------------------------------------------------------- gas


def test_gas_post_batch(chain: L1Chain) -> None:
    """postBatch gas: fixed part, marginal per step and per byte (docs/l1.md's table)."""
    import os

    from state.txs import encode_trade

    def gas_of(steps: list[bytes], orders: tuple[bytes, ...] = ()) -> tuple[int, int]:
        batch = Batch(now(), orders, tuple(steps))
        data = batch.encode()
        with boa.env.anchor(), boa.env.prank(chain.sequencer):
            chain.rollup.postBatch(data, bad_root(b"gas"), len(steps))
            return tx_gas(chain.rollup, "postBatch", data, bad_root(b"gas"), len(steps)), len(data)

    # warm the proposer's locked-bond slot as a running sequencer has it
    chain.post(chain.batch([encode_funding()]), bad_root(b"warm"))
    trades = [encode_trade(i % 300, (i + 1) % 300, 1 + i) for i in range(1_000)]
    g1, n1 = gas_of(trades[:1])
    g100, n100 = gas_of(trades[:100])
    g1000, n1000 = gas_of(trades)
    per_step = (g1000 - g100) / 900
    report("postBatch, 1 trade step (fixed part)", g1)
    report("postBatch, 100 trade steps", g100)
    report("postBatch, 1,000 trade steps (15,015 bytes)", g1000)
    report("postBatch marginal per trade step (15 bytes)", round(per_step))
    report("postBatch marginal per byte of trade steps", round((g1000 - g100) / (n1000 - n100)))
    big = [b"\x02" + os.urandom(105) for _ in range(200)]
    g200w, n200w = gas_of(big)
    g20w, n20w = gas_of(big[:20])
    report("postBatch marginal per withdraw-sized step (108 bytes)", round((g200w - g20w) / 180))
    report("postBatch marginal per byte of withdraw-sized steps", round((g200w - g20w) / (n200w - n20w)))
    whole = tuple(os.urandom(104) for _ in range(100))  # random v: written whole (105 bytes)
    go, _ = gas_of(trades[:1], orders=whole)
    report("postBatch marginal per order entry written whole (105 bytes)", round((go - g1) / 100))
    packed = tuple(  # a typical order: account, price, size, expiry and salt of 1, 3, 1, 4, 5 bytes
        (7 + i).to_bytes(4, "big") + bytes((0, i % 2, 1)) + (3_000_000 + i).to_bytes(8, "big")
        + (1 + i % 20).to_bytes(8, "big") + (1_800_000_000 + i).to_bytes(8, "big")
        + (2**39 + i).to_bytes(8, "big") + os.urandom(32) + bytes([os.urandom(1)[0] & 0x7F])
        + os.urandom(31) + bytes([27 + i % 2])
        for i in range(100)
    )
    gp, npk = gas_of(trades[:1], orders=packed)
    report(f"postBatch marginal per packed order entry ({(npk - n1) // 100} bytes)", round((gp - g1) / 100))
    assert g1 < 260_000 and per_step < 1_500


def test_gas_finalize(chain: L1Chain) -> None:
    posted = chain.post(chain.batch([encode_funding()]), bad_root(b"f"))
    set_time(chain.rollup.batch(posted.index).deadline)
    chain.rollup.finalize(posted.index)
    report("finalize", tx_gas(chain.rollup, "finalize", posted.index))
