# pragma version ~=0.4.3
"""
@title Merkle
@license MIT
@notice The binary Merkle tree of a batch's order table and steps.
@dev The tree over n >= 1 leaves has depth d = ceil(log2(n)) (d = 0 for one
     leaf) and 2**d leaf positions: positions 0..n-1 hold the leaves, the
     rest hold bytes32(0). An inner node is keccak256(left ‖ right) (64
     bytes). The root of one leaf is the leaf itself; the root of zero leaves
     is bytes32(0). A leaf is keccak256 of the item's bytes (a 104-byte order
     entry, or a step's bytes without its length prefix).

     A root is built in one pass with `partial`, a binary counter of complete
     subtrees (`partial[h]` is the root of the last complete subtree of
     2**h leaves, valid when bit h of the leaf count is set): `_push` adds a
     leaf, `_finish` pads with zero leaves and returns the root. `_verify`
     checks a branch (d siblings, from the leaf's level up).

     The module is stateless: import it and call its functions.
"""

# Deepest tree: 2**32 leaves (n_steps is a u32).
MAX_DEPTH: constant(uint256) = 32


@internal
@pure
def _push(partial: bytes32[MAX_DEPTH], count: uint256, leaf: bytes32) -> bytes32[MAX_DEPTH]:
    """
    @notice Add leaf number `count` (0-based) to the counter `partial`.
    @param partial The complete subtrees of the first `count` leaves.
    @param count The number of leaves already pushed.
    @param leaf The new leaf.
    @return The complete subtrees of the first `count + 1` leaves.
    """
    out: bytes32[MAX_DEPTH] = partial
    node: bytes32 = leaf
    c: uint256 = count
    for h: uint256 in range(MAX_DEPTH):
        if c & 1 == 0:
            out[h] = node
            break
        node = keccak256(concat(out[h], node))
        c = c >> 1
    return out


@internal
@pure
def _finish(partial: bytes32[MAX_DEPTH], count: uint256) -> bytes32:
    """
    @notice The root of the tree over `count` pushed leaves, padded with zero leaves.
    @param partial The counter after `count` pushes.
    @param count The number of leaves.
    @return The root (bytes32(0) when `count` is 0).
    """
    if count == 0:
        return empty(bytes32)
    if count & (count - 1) == 0:
        # A power of two: the counter holds a single complete tree.
        return partial[self._bit_length(count) - 1]
    # Walk up from the first padding position (`count`): `node` is the
    # root of the subtree at level h that contains it, `zero` the root of
    # an all-padding subtree at level h.
    node: bytes32 = empty(bytes32)
    zero: bytes32 = empty(bytes32)
    for h: uint256 in range(MAX_DEPTH):
        if count >> h == 0:
            break
        if (count >> h) & 1 == 1:
            node = keccak256(concat(partial[h], node))
        else:
            node = keccak256(concat(node, zero))
        zero = keccak256(concat(zero, zero))
    return node


@internal
@pure
def _depth(count: uint256) -> uint256:
    """
    @notice The depth of the tree over `count` leaves: ceil(log2(count)), 0 for 0 or 1 leaf.
    @param count The number of leaves.
    @return The number of siblings in a branch.
    """
    if count <= 1:
        return 0
    return self._bit_length(count - 1)


@internal
@pure
def _verify(
    leaf: bytes32, index: uint256, count: uint256, branch: DynArray[bytes32, MAX_DEPTH], root: bytes32
) -> bool:
    """
    @notice Whether `leaf` is leaf number `index` of the `count`-leaf tree with root `root`.
    @param leaf The leaf (keccak256 of the item's bytes).
    @param index Its 0-based position.
    @param count The number of leaves in the tree.
    @param branch The siblings from the leaf's level up (exactly `_depth(count)`).
    @param root The tree's root.
    @return True if the branch proves the leaf.
    """
    if index >= count or len(branch) != self._depth(count):
        return False
    node: bytes32 = leaf
    i: uint256 = index
    for sibling: bytes32 in branch:
        if i & 1 == 1:
            node = keccak256(concat(sibling, node))
        else:
            node = keccak256(concat(node, sibling))
        i = i >> 1
    return node == root


@internal
@pure
def _bit_length(x: uint256) -> uint256:
    """
    @notice The number of bits of `x` (0 for 0).
    @param x The value.
    @return floor(log2(x)) + 1, or 0.
    """
    n: uint256 = 0
    v: uint256 = x
    for _: uint256 in range(256):
        if v == 0:
            break
        v = v >> 1
        n += 1
    return n
