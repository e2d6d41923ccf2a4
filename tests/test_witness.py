"""One-step witnesses: reads prove the pre-state, writes chain to the post-state root."""

from proofs.commitment import merkle_root, verify_branch
from proofs.mpt import verify_proof
from proofs.witness import build_step_witness
from state.batch import Batch
from state.context import BatchContext, L1Deposit
from state.db import StateDB
from state.keccak import keccak256
from state.trie import apply_updates
from state.txs import encode_deposit, encode_funding, encode_trade
from tests.world import ETH_PERP, USDC, standard_world


def test_every_step_witness_chains_from_pre_to_post_root():
    w = standard_world(("a", "b"), 10_000 * USDC)
    w.queues.deposits.append(L1Deposit(w.address("newcomer"), 5 * USDC))
    orders = (w.order("a", ETH_PERP, False, 3_000_000, 5), w.order("b", ETH_PERP, True, 3_000_000, 5))
    steps = (encode_trade(0, 1, 2), encode_deposit(), b"\x42", encode_trade(0, 1, 9), encode_funding(), encode_trade(0, 1, 3))
    batch = Batch(w.time + 1, orders, steps)
    db = StateDB.in_memory()
    pre = db.initialize(dict(w.leaves))
    ctx = BatchContext.create(batch.timestamp, w.chain, w.queues, list(orders))
    roots = db.roots_after_each(pre, steps, ctx)
    steps_root = merkle_root([keccak256(s) for s in steps])
    orders_root = merkle_root([keccak256(o) for o in batch.written])  # the entries as written
    for i in range(len(steps)):
        wit = build_step_witness(db, pre, batch, ctx, i)
        assert (wit.pre_root, wit.post_root) == (roots[i], roots[i + 1])
        assert verify_branch(keccak256(wit.step), i, len(steps), wit.step_branch, steps_root)
        for o in wit.orders:
            assert verify_branch(keccak256(o.entry), o.ref, len(orders), o.branch, orders_root)
        for r in wit.reads:
            assert verify_proof(wit.pre_root, r.key, r.proof) == r.value
        root = wit.pre_root
        for write in wit.writes:
            assert write.key in {r.key for r in wit.reads}
            verify_proof(root, write.key, write.proof)  # a valid proof against the current root
            root = _apply(root, write)
        assert root == wit.post_root
    deposit = build_step_witness(db, pre, batch, ctx, 1)
    assert deposit.deposit == L1Deposit(w.address("newcomer"), 5 * USDC)
    assert [o.ref for o in build_step_witness(db, pre, batch, ctx, 0).orders] == [0, 1]
    assert build_step_witness(db, pre, batch, ctx, 2).writes == []  # refused: nothing written


def _apply(root: bytes, write) -> bytes:
    """Apply one write using only the nodes in its proof (as the L1 prover does)."""
    nodes = {keccak256(n): n for n in write.proof}
    new_root, _ = apply_updates(root, nodes.get, {write.key: write.value})
    return new_root
