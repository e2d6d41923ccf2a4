"""The arguments of the L1 one-step prover (l1_contracts/contracts/OneStepProver.vy).

A :class:`~proofs.witness.StepWitness` holds every proof a step needs; this
module lays them out as the prover takes them: the leaves the step touches,
strictly increasing by key, each with its pre-step value and one MPT proof —
against the pre-state root for a leaf the step only reads, against the root
left by the writes before it (in key order) for a leaf it writes. The write's
proof doubles as the read of that key: it proves the value the write replaces,
which is the pre-step value because the earlier writes touched other keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from proofs.witness import StepWitness

MAX_PROVEN_STEP = 11 + 13 * 255 + 65 * 16
"""The longest step that can change the state (an oracle step of 255 entries and
16 signatures); longer steps go to ``prove_long_step``."""
MAX_PROOFS = 65_536
"""The prover's bound on a witness's MPT proofs, concatenated."""


@dataclass(frozen=True)
class ProverLeaf:
    """One leaf of the witness. A leaf the step writes carries its presence and
    value before the step, and a proof against the root the writes before it
    left; a leaf it only reads carries neither (its proof, against the pre-root,
    holds them)."""

    key: bytes
    written: bool
    present: bool
    value: bytes
    proof: bytes


@dataclass(frozen=True)
class ProverOrder:
    """A referenced order-table entry with its branch into the orders tree."""

    ref: int
    entry: bytes
    branch: list[bytes]


@dataclass(frozen=True)
class ProverInput:
    """What ``OneStepProver.prove`` (or ``prove_long_step``) takes besides the
    pre-root, the step index, the batch data and the context."""

    step: bytes
    step_branch: list[bytes]
    orders: list[ProverOrder]
    leaves: list[ProverLeaf]

    @property
    def is_long(self) -> bool:
        """Whether the step goes to ``prove_long_step`` (it changes nothing)."""
        return len(self.step) > MAX_PROVEN_STEP

    @property
    def proofs(self) -> bytes:
        """The leaves' proofs, concatenated in the leaves' order."""
        return b"".join(leaf.proof for leaf in self.leaves)

    @property
    def proof_sizes(self) -> list[int]:
        """The length of each leaf's proof."""
        return [len(leaf.proof) for leaf in self.leaves]

    def leaf_tuples(self) -> list[tuple[bytes, bool, bool, bytes]]:
        """The leaves as the prover's ``(key, written, present, value)`` structs."""
        return [(leaf.key, leaf.written, leaf.present, leaf.value) for leaf in self.leaves]

    def order_tuples(self) -> list[tuple[int, bytes, list[bytes]]]:
        """The orders as the prover's ``(ref, entry, branch)`` structs."""
        return [(o.ref, o.entry, o.branch) for o in self.orders]


def prover_input(witness: StepWitness) -> ProverInput:
    """Lay out ``witness`` as the prover's arguments."""
    write_proofs = {w.key: b"".join(w.proof) for w in witness.writes}
    leaves = []
    for read in sorted(witness.reads, key=lambda r: r.key):
        if read.key in write_proofs:
            leaf = ProverLeaf(read.key, True, read.value is not None, read.value or b"",
                              write_proofs[read.key])
        else:
            leaf = ProverLeaf(read.key, False, False, b"", b"".join(read.proof))
        leaves.append(leaf)
    missing = write_proofs.keys() - {leaf.key for leaf in leaves}
    if missing:
        raise ValueError("a written leaf is not among the leaves the step touches")
    orders = [ProverOrder(o.ref, o.entry, o.branch) for o in witness.orders]
    return ProverInput(witness.step, witness.step_branch, orders, leaves)
