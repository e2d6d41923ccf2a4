"""The arguments of the L1 one-step prover (l1_contracts/contracts/OneStepProver.vy).

A :class:`~proofs.witness.StepWitness` holds every proof a step needs; this
module lays them out as the prover takes them: the leaves the step touches,
strictly increasing by key, each with its pre-step value and one MPT proof —
against the pre-state root for a leaf the step only reads, against the root
left by the writes before it (in key order) for a leaf it writes. The write's
proof doubles as the read of that key: it proves the value the write replaces,
which is the pre-step value because the earlier writes touched other keys.

Every proof of a key in a non-empty trie starts with the trie's root node.
The prover holds each root node it needs: the pre-state's is sent once, ahead
of the proofs, and the root node after a write is the one the prover built
while applying it. So no proof repeats its first node: a leaf carries its
proof from the second node on.

A written leaf's pre-step value is not sent on its own: the leaf's proof holds
it (in the leaf node), so the prover is told where it is in the proofs
(:attr:`ProverLeaf.value_at`) and checks it when the write's proof reports the
value it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    """The proof's nodes after the first (the root node), concatenated."""
    value_at: int = 0
    """Written and present: where ``value`` is in :attr:`ProverInput.proofs`."""


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
    root_node: bytes = b""
    """The pre-state's root node (empty when no leaf is proven or the
    pre-state is the empty trie)."""

    @property
    def is_long(self) -> bool:
        """Whether the step goes to ``prove_long_step`` (it changes nothing)."""
        return len(self.step) > MAX_PROVEN_STEP

    @property
    def proofs(self) -> bytes:
        """The pre-state's root node, then the leaves' proofs in the leaves' order."""
        return self.root_node + b"".join(leaf.proof for leaf in self.leaves)

    @property
    def proof_sizes(self) -> list[int]:
        """The length of the root node, then of each leaf's proof."""
        return [len(self.root_node)] + [len(leaf.proof) for leaf in self.leaves]

    def leaf_tuples(self) -> list[tuple[bytes, bool, bool, int, int]]:
        """The leaves as the prover's ``(key, written, present, value_at, value_len)`` structs."""
        return [(leaf.key, leaf.written, leaf.present, leaf.value_at, len(leaf.value)) for leaf in self.leaves]

    def order_tuples(self) -> list[tuple[int, bytes, list[bytes]]]:
        """The orders as the prover's ``(ref, entry, branch)`` structs."""
        return [(o.ref, o.entry, o.branch) for o in self.orders]


def prover_input(witness: StepWitness) -> ProverInput:
    """Lay out ``witness`` as the prover's arguments."""
    write_proofs = {w.key: b"".join(w.proof[1:]) for w in witness.writes}
    leaves = []
    root_nodes = set()
    for read in sorted(witness.reads, key=lambda r: r.key):
        if read.proof:
            root_nodes.add(read.proof[0])
        if read.key in write_proofs:
            leaf = ProverLeaf(read.key, True, read.value is not None, read.value or b"",
                              write_proofs[read.key])
        else:
            leaf = ProverLeaf(read.key, False, False, b"", b"".join(read.proof[1:]))
        leaves.append(leaf)
    missing = write_proofs.keys() - {leaf.key for leaf in leaves}
    if missing:
        raise ValueError("a written leaf is not among the leaves the step touches")
    if len(root_nodes) > 1:
        raise ValueError("the reads' proofs are not against one root")
    orders = [ProverOrder(o.ref, o.entry, o.branch) for o in witness.orders]
    root_node = root_nodes.pop() if root_nodes else b""
    return locate_values(ProverInput(witness.step, witness.step_branch, orders, leaves, root_node))


def locate_values(args: ProverInput) -> ProverInput:
    """``args`` with each written, present leaf's ``value_at`` set to where its
    pre-value is in ``args.proofs`` (its leaf node, in its own proof or, in a
    trie of one leaf, the root node)."""
    proofs = args.proofs
    leaves = []
    for leaf in args.leaves:
        if leaf.written and leaf.present:
            at = proofs.find(leaf.value)
            if at < 0:
                raise ValueError("a written leaf's pre-value is not in the proofs")
            leaf = replace(leaf, value_at=at)
        leaves.append(leaf)
    return replace(args, leaves=leaves)
