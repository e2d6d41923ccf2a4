"""The state DB: one commit per batch, roots by replay, persistence, proofs."""

import rlp
from trie import HexaryTrie

from state.batch import Batch
from state.context import BatchContext
from state.db import StateDB
from state.genesis import genesis_leaves
from state.txs import encode_trade
from tests.world import ETH_PERP, USDC, standard_world


def _hexary_root(leaves: dict[bytes, bytes]) -> bytes:
    t = HexaryTrie({})
    for k in sorted(leaves):
        t[k] = leaves[k]
    return t.root_hash


def _world_with_trades():
    w = standard_world(("a", "b", "c"), 10_000 * USDC)
    orders = [
        w.order("a", ETH_PERP, False, 3_000_000, 10), w.order("b", ETH_PERP, True, 3_000_000, 4),
        w.order("c", ETH_PERP, True, 3_001_000, 6), w.order("b", ETH_PERP, True, 3_000_000, 100),
    ]
    steps = [encode_trade(0, 1, 4), encode_trade(0, 2, 6), encode_trade(0, 3, 1), b"\xff", encode_trade(0, 1, 1)]
    return w, Batch(w.time, tuple(orders), tuple(steps))


def test_batch_root_equals_reference_trie_and_replay(tmp_path):
    w, batch = _world_with_trades()
    pre_leaves = dict(w.leaves)
    db = StateDB.open(tmp_path / "state")
    pre_root = db.initialize(pre_leaves)
    assert pre_root == _hexary_root(pre_leaves)
    ctx = BatchContext.create(batch.timestamp, w.chain, w.queues, list(batch.orders))
    result = db.apply_batch(batch, ctx)
    assert [r.code for r in result.receipts] == [0, 0, 11, 2, 11]
    w.run(list(batch.steps), list(batch.orders))
    assert result.post_root == _hexary_root(w.leaves) == db.root
    # every intermediate root by replay; the last equals the committed root
    roots = db.roots_after_each(pre_root, batch.steps, ctx)
    assert roots[0] == pre_root and roots[-1] == result.post_root
    assert roots[3] == roots[4] == roots[5]  # refused steps change nothing
    for k in range(len(batch.steps) + 1):
        assert db.root_after(pre_root, batch.steps, ctx, k) == roots[k]
    db.close()
    reopened = StateDB.open(tmp_path / "state")
    assert reopened.root == result.post_root
    assert reopened.view.global_() == w.global_()
    assert reopened.view.account(1) == w.account(1)
    reopened.close()


def test_proofs_verify_against_committed_root():
    w, _ = _world_with_trades()
    db = StateDB.in_memory()
    root = db.initialize(genesis_leaves(w.config, w.markets, w.time))
    db.commit()
    for key in list(w.leaves)[:3]:
        proof = [rlp.decode(node) for node in db.prove(key)]
        assert HexaryTrie.get_from_proof(root, key, proof) == db.get(key)
    absent = b"\x11" * 32
    proof = [rlp.decode(node) for node in db.prove(absent)]
    assert HexaryTrie.get_from_proof(root, absent, proof) == b""


def test_eip1186_shaped_proofs_of_present_and_absent_leaves():
    from proofs.mpt import parse_eip1186_entry, verify_proof
    from proofs.state_proof import get_proof
    from state.layout import GLOBAL_KEY, Global, account_key

    w, batch = _world_with_trades()
    db = StateDB.in_memory()
    root = db.initialize(dict(w.leaves))
    result = get_proof(db, [GLOBAL_KEY, account_key(1), account_key(999)])
    assert result["stateRoot"] == "0x" + root.hex()
    present, account, absent = result["storageProof"]
    assert Global.decode(bytes.fromhex(present["value"][2:])) == w.global_()
    assert bytes.fromhex(account["value"][2:]) == w.leaves[account_key(1)]
    assert absent["value"] == "0x"
    for entry in result["storageProof"]:
        parse_eip1186_entry(entry, root)
        key = bytes.fromhex(entry["key"][2:])
        nodes = [bytes.fromhex(n[2:]) for n in entry["proof"]]
        assert verify_proof(root, key, nodes) == w.leaves.get(key)
