"""The one-step prover (l1_contracts/contracts/OneStepProver.vy) against state/.

* every step of every stored vector (tests/vectors/*.json), proven on chain from
  a state trie holding the vector's pre-state: the recorded root equals the
  Python STF's root after the step;
* Hypothesis: hostile batches of every kind on a populated world, a random
  step of each proven the same way;
* the heaviest step of every kind (16-position accounts, 64 markets) in a
  state of many leaves: root equality and gas, with a 1,000,000 budget
  (``-s`` prints the lines docs/l1.md's table comes from; ``HFX_GAS=1`` adds a
  1,000,000-leaf state, held to the same budget);
* lying witnesses (a wrong pre-value, presence, proof, order, step, a leaf
  missing, mislabelled or out of order; a wrong, missing, repeated or
  unneeded root node, a proof against the wrong root): each reverts and
  records nothing;
* steps longer than any kind's go through ``prove_long_step`` and change nothing.

Environment: ``HFX_FUZZ=long`` runs ten times as many examples.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import boa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1_contracts import onestep_gas as rig_mod
from l1_contracts.onestep_gas import Rig, batch_data, deploy_rig, representable, step_context
from l1_contracts.worst_cases import heavy_scenarios
from proofs.onestep import MAX_PROVEN_STEP, ProverInput, ProverLeaf, locate_values, prover_input
from proofs.witness import build_step_witness
from state.batch import Batch, pack_entry
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.db import StateDB
from state.keccak import keccak256
from state.txs import KIND_NAMES, encode_trade
from tests.strategies import (
    Actors,
    HostileBatch,
    clone_world,
    hostile_batches,
    populated_world,
    scaled_examples,
)
from tests.world import ETH_PERP, USDC, World, standard_world

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors").glob("*.json"))
BUDGET = 1_000_000
"""Gas one one-step proof may take (execution and the transaction's intrinsic gas)."""
FILLER = 10_000
"""Leaves besides the scenario's in the state of the gas measurements."""
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


@pytest.fixture(scope="module")
def rig() -> Rig:
    """The twin, the prover and a token, deployed once."""
    return deploy_rig()


def unhx(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


# ============================================================================ vectors


def vector_case(path: Path) -> tuple[dict[bytes, bytes], Batch, ChainConfig, ListQueues]:
    """A stored vector as a pre-state, a batch, a chain and its queues."""
    v = json.loads(path.read_text())
    c = v["context"]
    leaves = {unhx(k): unhx(x) for k, x in v["pre"]["leaves"].items()}
    chain = ChainConfig(c["chain_id"], unhx(c["rollup"]), frozenset(unhx(k) for k in c["oracle_keys"]),
                        c["oracle_threshold"])
    queues = ListQueues(
        [L1Deposit(unhx(d["owner"]), d["amount"]) for d in c["deposits"]],
        [L1Forced(unhx(f["sender"]), unhx(f["payload"])) for f in c["forced"]],
    )
    batch = Batch(c["time"], tuple(unhx(o) for o in c["orders"]), tuple(unhx(s) for s in v["steps"]))
    return leaves, batch, chain, queues


def test_every_vector_step(rig: Rig) -> None:
    """Every step of every vector: the prover records the Python STF's root."""
    proven = skipped = 0
    kinds: set[str] = set()
    for path in VECTORS:
        leaves, batch, chain, queues = vector_case(path)
        if not representable(queues):
            skipped += 1
            continue
        bridge = rig.fresh_bridge()
        rig_mod.fill_bridge(rig, bridge, queues)
        for index in range(len(batch.steps)):
            p = rig_mod.prove_batch_step(rig, leaves, batch, index, chain, queues, bridge=bridge)
            assert p.root == p.python_root, f"{path.name} step {index}"
            proven += 1
            if batch.steps[index]:
                kinds.add(KIND_NAMES.get(batch.steps[index][0], "unknown"))
    # queue items a real bridge refuses (a zero deposit, a malformed forced
    # payload) never reach L1; only a few vectors are about those
    assert skipped <= 6 and proven >= 150, (proven, skipped)
    assert set(KIND_NAMES.values()) <= kinds


# ============================================================================ Hypothesis


@cache
def template() -> World:
    return populated_world()


ACTORS = Actors.of(template())


@settings(max_examples=scaled_examples(25), deadline=None, suppress_health_check=SLOW_OK)
@given(batch=hostile_batches(ACTORS, max_steps=6), pick=st.integers(0, 10**6))
def test_hostile_batches(rig: Rig, batch: HostileBatch, pick: int) -> None:
    """A random step of a hostile batch, proven from the state the steps before it leave."""
    w = clone_world(template())
    w.queues.deposits.extend(batch.deposits)
    w.queues.forced_txs.extend(batch.forced)
    if not representable(w.queues):
        return
    b = Batch(batch.time, tuple(batch.orders), tuple(batch.steps))
    p = rig_mod.prove_batch_step(rig, w.leaves, b, pick % len(b.steps), w.chain, w.queues)
    assert p.root == p.python_root


# ============================================================================ worst cases and gas


def _report(label: str, p: rig_mod.Proven) -> None:
    print(f"GAS | one-step proof, {label} | {p.total_gas:,} | execution {p.gas:,} | "
          f"calldata {p.calldata:,} | {len(p.args.leaves)} leaves, {len(p.args.proofs):,} proof bytes")


def test_heaviest_step_of_every_kind(rig: Rig) -> None:
    """The most expensive step of every kind, in a state of FILLER more leaves,
    proves the Python root within the budget."""
    print()
    base = rig_mod.FillerState.build(FILLER)
    for s in heavy_scenarios():
        p = rig_mod.prove_scenario(rig, s, base=base)
        assert p is not None, s.name
        assert p.root == p.python_root, s.name
        _report(f"{s.name} ({FILLER:,} more leaves)", p)
        assert p.total_gas <= BUDGET, s.name


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HFX_GAS") != "1", reason="set HFX_GAS=1 for a 1,000,000-leaf state")
def test_heaviest_steps_in_a_large_state(rig: Rig) -> None:
    """The same in a state of a million leaves, also within the budget (docs/l1.md §9)."""
    print()
    base = rig_mod.FillerState.build(1_000_000)
    for s in heavy_scenarios():
        p = rig_mod.prove_scenario(rig, s, base=base)
        assert p is not None and p.root == p.python_root, s.name
        _report(f"{s.name} (1,000,000 more leaves)", p)
        assert p.total_gas <= BUDGET, s.name


# ============================================================================ lying witnesses


def _trade_case(rig: Rig) -> tuple[Any, ...]:
    """The heavy trade: everything needed to send its proof, and its honest input."""
    s = next(x for x in heavy_scenarios() if x.kind == "trade")
    db = StateDB.in_memory()
    root = db.initialize({**rig_mod.filler_leaves(300), **s.leaves})
    batch = Batch(s.time, tuple(s.orders), (s.step,))
    ctx = BatchContext.create(batch.timestamp, s.chain, s.queues, list(batch.orders))
    witness = build_step_witness(db, root, batch, ctx, 0)
    bridge = rig.fresh_bridge()
    return witness, batch_data(batch, s.queues), step_context(s.chain, bridge.address)


def _send(rig: Rig, pre_root: bytes, data: Any, context: Any, args: ProverInput) -> bytes:
    calldata = rig_mod.prove_calldata(rig.prover.prove.prepare_calldata(
        pre_root, 0, data, context, args.step, args.step_branch,
        args.order_tuples(), args.leaf_tuples(), args.proof_sizes,
    ), args.proofs)
    return bytes(boa.env.raw_call(rig.prover.address, data=calldata).output)


def _lies(honest: ProverInput) -> list[tuple[str, ProverInput]]:
    """Witnesses that each misstate one thing."""
    leaves = honest.leaves
    written = next(i for i, leaf in enumerate(leaves) if leaf.written and leaf.present)
    read = next(i for i, leaf in enumerate(leaves) if not leaf.written)
    fresh = next(i for i, leaf in enumerate(leaves) if leaf.written and not leaf.present)

    def with_leaf(i: int, leaf: ProverLeaf) -> ProverInput:
        return replace(honest, leaves=leaves[:i] + [leaf] + leaves[i + 1:])

    w = leaves[written]
    proof = bytearray(leaves[read].proof)
    proof[len(proof) // 2] ^= 0x40
    wrong_order = replace(honest.orders[0], entry=honest.orders[0].entry[:-1] + b"\x00")
    return [
        ("a written leaf's pre-value", with_leaf(written, replace(w, value_at=w.value_at + 1))),
        ("a written leaf's pre-value cut short", with_leaf(written, replace(w, value=w.value[:-1]))),
        ("a written leaf said absent", with_leaf(written, replace(w, present=False, value=b"", value_at=0))),
        ("a new leaf said present", with_leaf(fresh, replace(leaves[fresh], present=True, value=b"\x01" * 9))),
        ("a read leaf's proof", with_leaf(read, replace(leaves[read], proof=bytes(proof)))),
        ("a read leaf labelled written", with_leaf(read, replace(leaves[read], written=True))),
        ("a written leaf labelled read",
         with_leaf(written, replace(w, written=False, present=False, value=b"", value_at=0))),
        ("a leaf missing", replace(honest, leaves=leaves[:read] + leaves[read + 1:])),
        ("leaves out of order", replace(honest, leaves=leaves[::-1])),
        ("a written proof from another write", with_leaf(written, replace(w, proof=leaves[fresh].proof))),
        ("an order entry", replace(honest, orders=[wrong_order] + honest.orders[1:])),
        ("an order dropped", replace(honest, orders=honest.orders[1:])),
        ("the step", replace(honest, step=honest.step[:-1] + bytes([honest.step[-1] ^ 1]))),
    ]


def test_lying_witnesses_revert(rig: Rig) -> None:
    """Each misstatement reverts; the honest witness then records the honest root."""
    witness, data, context = _trade_case(rig)
    honest = prover_input(witness)
    claim = rig.prover.claim_of(witness.pre_root, 0, keccak256(_abi_batch(data)), keccak256(_abi_ctx(context)))
    for name, lie in _lies(honest):
        with pytest.raises(Exception):  # noqa: B017 - any revert reason will do
            _send(rig, witness.pre_root, data, context, lie)
        assert bytes(rig.prover.result(claim)) == bytes(32), name
    assert _send(rig, witness.pre_root, data, context, honest) == witness.post_root
    assert bytes(rig.prover.result(claim)) == witness.post_root


def _shape_lies(witness: Any, honest: ProverInput) -> list[tuple[str, ProverInput, str]]:
    """Witnesses that misstate the root nodes or where the written leaves' pre-values
    are (the witness shape of docs/l1.md §5), with the reason each must revert with."""
    leaves = honest.leaves
    read = next(i for i, leaf in enumerate(leaves) if not leaf.written)
    writes = [i for i, leaf in enumerate(leaves) if leaf.written]
    second = writes[1]
    bad_root = bytearray(honest.root_node)
    bad_root[40] ^= 1
    pre_proof = next(r.proof for r in witness.reads if r.key == leaves[second].key)

    def with_proof(i: int, proof: bytes) -> ProverInput:
        # the pre-values found again: only the proof lies
        return locate_values(replace(honest, leaves=leaves[:i] + [replace(leaves[i], proof=proof)] + leaves[i + 1:]))

    w = next(i for i, leaf in enumerate(leaves) if leaf.written and leaf.present)
    fresh = next(i for i, leaf in enumerate(leaves) if leaf.written and not leaf.present)
    size = len(honest.proofs)

    def with_leaf(i: int, **changes: Any) -> ProverInput:
        return replace(honest, leaves=leaves[:i] + [replace(leaves[i], **changes)] + leaves[i + 1:])

    return [
        ("a pre-value past the proofs", with_leaf(w, value_at=size - len(leaves[w].value) + 1), "BAD_WITNESS"),
        ("a pre-value far past the proofs", with_leaf(w, value_at=2**255), "BAD_WITNESS"),
        ("an empty pre-value of a present leaf", with_leaf(w, value=b""), "BAD_WITNESS"),
        ("a pre-value of an absent leaf", with_leaf(fresh, value_at=5), "BAD_WITNESS"),
        ("a read leaf with a pre-value", with_leaf(read, value=b"\x01", value_at=3), "BAD_WITNESS"),
        ("a read leaf said present", with_leaf(read, present=True), "BAD_WITNESS"),
        ("a root node that is not the pre-state's", replace(honest, root_node=bytes(bad_root)), "BAD_WITNESS"),
        ("no root node", replace(honest, root_node=b""), "BAD_WITNESS"),
        ("another trie's root node", replace(honest, root_node=leaves[read].proof[:532]), "BAD_WITNESS"),
        ("a read proof repeating its root node",
         with_proof(read, honest.root_node + leaves[read].proof), "MPT: node hash mismatch"),
        ("a read proof one node short", with_proof(read, leaves[read].proof[532:]), "MPT: "),
        ("a read proof with an extra node",
         with_proof(read, leaves[read].proof + leaves[writes[0]].proof[-100:]), "MPT: "),
        ("a write proof carrying the pre-state's root node", with_proof(second, b"".join(pre_proof)),
         "MPT: node hash mismatch"),
    ]


def test_lying_witness_shapes_revert(rig: Rig) -> None:
    """Each misstated root node, proof against the wrong root or misplaced pre-value
    reverts with its reason."""
    witness, data, context = _trade_case(rig)
    honest = prover_input(witness)
    assert len(honest.root_node) == 532  # a full branch at the top of a 300-leaf state
    claim = rig.prover.claim_of(witness.pre_root, 0, keccak256(_abi_batch(data)), keccak256(_abi_ctx(context)))
    for name, lie, reason in _shape_lies(witness, honest):
        with pytest.raises(Exception) as exc:  # noqa: PT011 - the reason is checked below
            _send(rig, witness.pre_root, data, context, lie)
        assert reason in str(exc.value), (name, str(exc.value)[-300:])
        assert bytes(rig.prover.result(claim)) == bytes(32), name


def test_eight_leaves(rig: Rig) -> None:
    """A witness of T.MAX_LEAVES = 8 leaves (the trade's seven and a leaf it does not
    touch, proven against the pre-root) fits the prover's bounds: nine proof sizes."""
    witness, data, context = _trade_case(rig)
    honest = prover_input(witness)
    assert len(honest.leaves) == 7
    db = StateDB.in_memory()
    s = next(x for x in heavy_scenarios() if x.kind == "trade")
    assert db.initialize({**rig_mod.filler_leaves(300), **s.leaves}) == witness.pre_root
    extra_key = next(k for k in rig_mod.filler_leaves(300) if k > honest.leaves[-1].key)
    extra = ProverLeaf(extra_key, False, False, b"", b"".join(db.prove(extra_key)[1:]))
    eight = locate_values(replace(honest, leaves=[*honest.leaves, extra]))
    assert len(eight.proof_sizes) == 9
    assert _send(rig, witness.pre_root, data, context, eight) == witness.post_root


def test_root_node_without_leaves(rig: Rig) -> None:
    """A witness of no leaf takes no root node: one sent anyway reverts, none records the
    pre-root (an empty step reads the global leaf but changes nothing, so its
    witness may leave the leaf out)."""
    w = template()
    b = Batch(w.time, (), (b"", bytes([0x06])))
    db = StateDB.in_memory()
    root = db.initialize(dict(w.leaves))
    ctx = BatchContext.create(b.timestamp, w.chain, w.queues, [])
    witness = build_step_witness(db, root, b, ctx, 0)
    assert witness.post_root == root and not witness.writes
    bare = replace(prover_input(witness), leaves=[], root_node=b"")
    assert bare.proof_sizes == [0]
    data = batch_data(b, w.queues)
    context = step_context(w.chain, rig.fresh_bridge().address)
    spare = db.trie.prove(keccak256(b"any key"), root)[0]
    assert keccak256(spare) == root
    with pytest.raises(Exception, match="BAD_WITNESS"):
        _send(rig, root, data, context, replace(bare, root_node=spare))
    assert _send(rig, root, data, context, bare) == root


def _abi_batch(data: tuple[Any, ...]) -> bytes:
    from eth_abi import encode

    return encode(["(bytes32,bytes32,uint256,uint256,uint256,uint256,uint256,uint256,uint256)"], [data])


def _abi_ctx(context: tuple[Any, ...]) -> bytes:
    from eth_abi import encode

    return encode(["(uint256,address,address,address[],uint256)"], [context])


def test_long_steps_change_nothing(rig: Rig) -> None:
    """A step longer than MAX_PROVEN_STEP is refused by every kind: recorded as a no-op."""
    w = template()
    for first in (0x03, 0x05, 0x2A):
        junk = bytes([first]) + bytes(range(256)) * 20
        assert len(junk) > MAX_PROVEN_STEP
        b = Batch(w.time, (), (junk, bytes([0x06])))
        p = rig_mod.prove_batch_step(rig, w.leaves, b, 0, w.chain, ListQueues())
        assert p.root == p.python_root
        assert p.args.is_long


def test_malformed_written_entry(rig: Rig) -> None:
    """Written bytes that unpack to no order (docs/stf.md §5.2) parse as a malformed entry:
    a trade that references it changes nothing, in the Python STF and in the prover alike."""
    w = standard_world(("a", "b"), 10_000 * USDC)
    maker = w.order("a", ETH_PERP, False, 3_000_000, 5)
    taker = w.order("b", ETH_PERP, True, 3_000_000, 5)
    written = (pack_entry(maker), pack_entry(taker), b"\xe1" + pack_entry(taker)[1:])  # account length 7
    steps = (encode_trade(0, 1, 2), encode_trade(0, 2, 2))
    batch = Batch.decode(Batch(w.time + 1, (maker, taker, b""), steps, written).encode())
    assert batch.orders[2] == b"" and batch.written == written
    db = StateDB.in_memory()
    pre = db.initialize(dict(w.leaves))
    ctx = BatchContext.create(batch.timestamp, w.chain, w.queues, list(batch.orders))
    roots = db.roots_after_each(pre, steps, ctx)
    assert roots[0] != roots[1] == roots[2]  # the first trade fills, the second is refused
    for index in range(len(steps)):
        p = rig_mod.prove_batch_step(rig, w.leaves, batch, index, w.chain, w.queues)
        assert p.root == p.python_root == roots[index + 1]
