"""The batch data commitment: binary Merkle trees over a batch's orders and steps.

The rollup contract computes the same trees when a batch is posted
(l1_contracts/contracts/Merkle.vy, docs/l1.md); a one-step proof shows one
step, and the orders it references, by a branch against them.
"""

from __future__ import annotations

from collections.abc import Sequence

from state.keccak import keccak256

ZERO32 = b"\x00" * 32


def _node(left: bytes, right: bytes) -> bytes:
    return keccak256(left + right)


def merkle_depth(count: int) -> int:
    """Siblings in a branch of a ``count``-leaf tree: ceil(log2(count)), 0 for 0 or 1 leaf."""
    return 0 if count <= 1 else (count - 1).bit_length()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root of the batch tree over ``leaves`` (docs/l1.md §Merkle tree).

    Leaves are padded with ``bytes32(0)`` to a power of two; an inner node is
    ``keccak256(left ‖ right)``; one leaf is its own root; no leaf gives zero.
    """
    if not leaves:
        return ZERO32
    level = list(leaves)
    width = 1 << merkle_depth(len(level))
    level += [ZERO32] * (width - len(level))
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branch(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The siblings of leaf ``index`` from the leaf's level up."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    level = list(leaves)
    level += [ZERO32] * ((1 << merkle_depth(len(level))) - len(level))
    branch = []
    i = index
    while len(level) > 1:
        branch.append(level[i ^ 1])
        level = [_node(level[j], level[j + 1]) for j in range(0, len(level), 2)]
        i >>= 1
    return branch


def verify_branch(leaf: bytes, index: int, count: int, branch: Sequence[bytes], root: bytes) -> bool:
    """Whether ``branch`` proves ``leaf`` at ``index`` of a ``count``-leaf tree (Merkle._verify)."""
    if index >= count or len(branch) != merkle_depth(count):
        return False
    node, i = leaf, index
    for sibling in branch:
        node = _node(sibling, node) if i & 1 else _node(node, sibling)
        i >>= 1
    return node == root
