# pragma version ~=0.4.3
"""
@title MPTHarness
@license MIT
@notice External wrappers around the MPT module, for tests and gas figures.
"""

from .. import MPT

MAX_WRITES: constant(uint256) = 8


@external
@pure
def get(root: bytes32, key: bytes32, proof: Bytes[MPT.MAX_PROOF]) -> (bool, Bytes[MPT.MAX_VALUE]):
    """
    @notice See `MPT._get`.
    @param root The trie's root hash.
    @param key The 32-byte key.
    @param proof The proof nodes, concatenated.
    @return Whether the key is present, and its value.
    """
    return MPT._get(root, key, proof)


@external
@pure
def update(
    root: bytes32, key: bytes32, new_value: Bytes[MPT.MAX_VALUE], proof: Bytes[MPT.MAX_PROOF]
) -> bytes32:
    """
    @notice See `MPT._update`.
    @param root The trie's root hash.
    @param key The 32-byte key.
    @param new_value The new value.
    @param proof The proof nodes of `key` against `root`, concatenated.
    @return The new root hash.
    """
    new_root: bytes32 = empty(bytes32)
    was_present: bool = False
    old_hash: bytes32 = empty(bytes32)
    new_root, was_present, old_hash = MPT._update(root, key, new_value, proof)
    return new_root


@external
@pure
def update_read(
    root: bytes32, key: bytes32, new_value: Bytes[MPT.MAX_VALUE], proof: Bytes[MPT.MAX_PROOF]
) -> (bytes32, bool, bytes32):
    """
    @notice See `MPT._update`: the new root and the key's prior state.
    @param root The trie's root hash.
    @param key The 32-byte key.
    @param new_value The new value.
    @param proof The proof nodes of `key` against `root`, concatenated.
    @return The new root hash, whether the key was present, the hash of its old value.
    """
    return MPT._update(root, key, new_value, proof)


@external
@pure
def update_sequence(
    root: bytes32,
    keys: DynArray[bytes32, MAX_WRITES],
    new_values: DynArray[Bytes[MPT.MAX_VALUE], MAX_WRITES],
    proofs: Bytes[4 * MPT.MAX_PROOF],
    proof_sizes: DynArray[uint256, MAX_WRITES],
) -> bytes32:
    """
    @notice Apply several writes in order, as a one-step proof does: each
            proof is against the root left by the writes before it.
    @param root The trie's root hash before the writes.
    @param keys The keys written, in order.
    @param new_values The values written, in order.
    @param proofs The proofs, concatenated in order.
    @param proof_sizes The length in bytes of each proof.
    @return The root hash after the last write.
    """
    assert len(new_values) == len(keys) and len(proof_sizes) == len(keys), "harness: lengths"
    current: bytes32 = root
    offset: uint256 = 0
    was_present: bool = False
    old_hash: bytes32 = empty(bytes32)
    for i: uint256 in range(len(keys), bound=MAX_WRITES):
        current, was_present, old_hash = MPT._update(
            current, keys[i], new_values[i],
            convert(slice(proofs, offset, proof_sizes[i]), Bytes[MPT.MAX_PROOF]),
        )
        offset += proof_sizes[i]
    assert offset == len(proofs), "harness: unused proof bytes"
    return current


@external
@pure
def fail(code: uint256):
    """
    @notice Revert with the reason of MPT error `code` (see `MPT._fail`).
    @param code The error code.
    """
    MPT._fail(code)
