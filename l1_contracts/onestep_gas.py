"""One-step proofs in titanoboa's in-process EVM: the real prover, the STF
twin and a real bridge, for the prover's tests and the gas benchmarks.

A :class:`~tests.l1.stf_twin_worlds.Scenario` (a pre-state, a step and its
context) becomes a one-step proof: the pre-state goes into a state trie
(optionally among many filler leaves, as in a large real state), the step into
a batch, the L1 queue items into a fresh bridge, and the prover's root is
compared with the Python STF's. Items a real bridge refuses (a deposit of 0, a
malformed forced payload, a sender at the zero address) cannot reach a batch on L1; such scenarios are
reported as unrepresentable rather than proven.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boa
from eth_utils.address import to_checksum_address

from l1_contracts.bindings import prove_calldata
from l1_contracts.deploy import STEP_CONTRACTS, boa_deployer
from l1_contracts.worst_cases import Scenario
from proofs.commitment import merkle_root
from proofs.onestep import ProverInput, prover_input
from proofs.witness import build_step_witness
from state.batch import Batch
from state.constants import AMOUNT_LIMIT
from state.context import BatchContext, ChainConfig, ListQueues
from state.db import StateDB
from state.keccak import keccak256

ROLLUP_STAND_IN = "0x" + "ab" * 20
"""The bridge's rollup address in this rig (the prover never asks the bridge for it)."""
FORCED_SIZES = {0x02: 33, 0x04: 40}
"""The forced payloads the bridge accepts: kind byte and length."""


@dataclass
class Rig:
    """The prover bound to a deployed twin, and a token to fund bridge deposits."""

    prover: Any
    token: Any

    def fresh_bridge(self) -> Any:
        """A bridge with empty queues."""
        return boa_deployer("Bridge").deploy(self.token.address, ROLLUP_STAND_IN)


def deploy_rig() -> Rig:
    """Deploy the twin's step contracts, the prover and a collateral token."""
    parts = [boa_deployer(name).deploy().address for name in STEP_CONTRACTS]
    prover = boa_deployer("OneStepProver").deploy(*parts)
    token = boa_deployer("Token").deploy("HFX Test USD", "tUSD", boa.env.eoa)
    return Rig(prover, token)


def representable(queues: ListQueues) -> bool:
    """Whether a real bridge can hold these queue items."""
    if any(not 0 < d.amount < AMOUNT_LIMIT or d.owner == bytes(20) for d in queues.deposits):
        return False
    return all(
        len(f.payload) > 0 and FORCED_SIZES.get(f.payload[0]) == len(f.payload)
        and f.sender != bytes(20)
        for f in queues.forced_txs
    )


def fill_bridge(rig: Rig, bridge: Any, queues: ListQueues) -> None:
    """Queue every deposit and forced item of ``queues`` on ``bridge``, in order."""
    for d in queues.deposits:
        owner = to_checksum_address(d.owner)
        rig.token.mint(owner, d.amount)
        with boa.env.prank(owner):
            rig.token.approve(bridge.address, d.amount)
            bridge.deposit(d.amount)
    for f in queues.forced_txs:
        with boa.env.prank(to_checksum_address(f.sender)):
            bridge.forceTransaction(f.payload)


def filler_leaves(count: int, seed: int = 0) -> dict[bytes, bytes]:
    """``count`` leaves under a namespace the STF never reads (0xFF), values of 9-60 bytes."""
    out = {}
    for i in range(count):
        key = keccak256(b"\xff" + seed.to_bytes(4, "big") + i.to_bytes(8, "big"))
        out[key] = key[: 9 + key[0] % 52]
    return out


@dataclass
class FillerState:
    """A state trie of filler leaves, on which many pre-states are laid."""

    db: StateDB
    root: bytes

    @staticmethod
    def build(count: int, seed: int = 0) -> FillerState:
        """A state of ``count`` filler leaves (an empty one for 0)."""
        db = StateDB.in_memory()
        root = db.initialize(filler_leaves(count, seed)) if count else db.root
        return FillerState(db, root)

    def with_leaves(self, leaves: Mapping[bytes, bytes]) -> bytes:
        """The root of the filler plus ``leaves`` (its nodes stored, the filler untouched)."""
        root, nodes = self.db.trie.compute(dict(leaves), self.root)
        self.db.trie.store.put_many(nodes)
        return root


@dataclass(frozen=True)
class Proven:
    """One step proven on chain."""

    root: bytes
    python_root: bytes
    gas: int
    calldata: int
    args: ProverInput

    @property
    def total_gas(self) -> int:
        """Execution gas plus the transaction's intrinsic gas (21,000 and calldata)."""
        return self.gas + 21_000 + self.calldata


def batch_data(batch: Batch, queues: ListQueues) -> tuple[Any, ...]:
    """The batch's data fields (BatchData), its queues consumed from position 0."""
    return (
        merkle_root([keccak256(o) for o in batch.written]),
        merkle_root([keccak256(s) for s in batch.steps]),
        batch.timestamp, len(batch.orders), len(batch.steps),
        0, len(queues.deposits), 0, len(queues.forced_txs),
    )


def step_context(chain: ChainConfig, bridge: str) -> tuple[Any, ...]:
    """The deployment context (StepContext) of ``chain`` with ``bridge``."""
    keys = [to_checksum_address(k) for k in sorted(chain.oracle_keys)]
    return (chain.chain_id, to_checksum_address(chain.rollup), bridge, keys, chain.oracle_threshold)


def intrinsic_calldata_gas(data: bytes) -> int:
    """16 gas per non-zero calldata byte, 4 per zero byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


def prove_batch_step(
    rig: Rig, leaves: Mapping[bytes, bytes], batch: Batch, index: int, chain: ChainConfig,
    queues: ListQueues, *, filler: int = 0, bridge: Any = None, base: FillerState | None = None,
) -> Proven:
    """Prove step ``index`` of ``batch`` run on ``leaves``, in a state that also holds
    ``filler`` leaves (or the leaves of ``base``, built once for many proofs)."""
    if base is None:
        base = FillerState.build(filler)
    db, root = base.db, base.with_leaves(leaves)
    ctx = BatchContext.create(batch.timestamp, chain, queues, list(batch.orders))
    witness = build_step_witness(db, root, batch, ctx, index)
    args = prover_input(witness)
    if bridge is None:
        bridge = rig.fresh_bridge()
        fill_bridge(rig, bridge, queues)
    data = batch_data(batch, queues)
    context = step_context(chain, bridge.address)
    if args.is_long:
        call: Any = rig.prover.prove_long_step
        calldata = call.prepare_calldata(witness.pre_root, index, data, context, args.step, args.step_branch)
    else:
        call = rig.prover.prove
        calldata = prove_calldata(call.prepare_calldata(
            witness.pre_root, index, data, context, args.step, args.step_branch,
            args.order_tuples(), args.leaf_tuples(), args.proof_sizes,
        ), args.proofs)
    result = boa.env.raw_call(rig.prover.address, data=calldata)
    root_after = bytes(result.output)
    return Proven(root_after, witness.post_root, int(result.get_gas_used()),
                  intrinsic_calldata_gas(calldata), args)


def prove_scenario(
    rig: Rig, scenario: Scenario, *, filler: int = 0, base: FillerState | None = None
) -> Proven | None:
    """Prove a one-step scenario (None if a real bridge cannot hold its queue items)."""
    if not representable(scenario.queues):
        return None
    batch = Batch(scenario.time, tuple(scenario.orders), (scenario.step,))
    return prove_batch_step(
        rig, scenario.leaves, batch, 0, scenario.chain, scenario.queues, filler=filler, base=base
    )


