"""Differential tests of the Vyper MPT library (l1_contracts/contracts/MPT.vy).

The library runs in-process on py-evm through titanoboa, behind the thin
wrapper contract ``l1_contracts/contracts/test/MPTHarness.vy``, and is checked
against ``state.trie`` (lookups, proofs, batched updates); the Python trie is
itself checked against ``trie.HexaryTrie`` here.

Proofs are passed as the concatenation of the EIP-1186 node list that
``state.trie.prove`` returns.

Environment:

- ``HFX_FUZZ=long``: ten times more random tries, updates and mutated proofs.
- ``HFX_GAS=1``: also measure gas on a 1,000,000-key trie (built once, in
  memory, by ``TrieDB``'s batched commit; the test is marked slow).

Run with ``-s`` to see the gas figures.
"""

from __future__ import annotations

import os
import random
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boa
import pytest
from boa.contracts.vyper.vyper_contract import VyperContract
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from state.keccak import keccak256
from state.trie import (
    EMPTY_ROOT,
    RLPItem,
    TrieDB,
    apply_updates,
    get,
    prove,
    rlp_decode,
    rlp_encode,
)

HARNESS = (
    Path(__file__).resolve().parents[2] / "l1_contracts" / "contracts" / "test" / "MPTHarness.vy"
)
LONG = os.environ.get("HFX_FUZZ") == "long"
SCALE = 10 if LONG else 1
MAX_VALUE = 2192
MAX_PROOF = 16384
FULL_DEPTHS_AT_BOUND = 26
"""Full branches (532 bytes) a proof of a largest leaf holds within MAX_PROOF."""
GET_GAS_TARGET = 285_000
"""1.5 x 190,000: Optimism's Solidity ``MerkleTrie.get`` on a 1M-key trie."""

# Lengths (in nibbles) of the prefix a new key shares with an existing one:
# short ones make extensions near the root, long ones deep branches whose
# small leaves, branches and extensions are embedded in their parents.
SHARED_NIBBLES = (1, 2, 3, 4, 5, 8, 12, 20, 31, 32, 33, 45, 54, 58, 59, 60, 61, 62, 63)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@dataclass
class Model:
    """A trie kept by ``state.trie`` in memory, with its contents."""

    nodes: dict[bytes, bytes] = field(default_factory=dict)
    root: bytes = EMPTY_ROOT
    items: dict[bytes, bytes] = field(default_factory=dict)

    def set_many(self, updates: dict[bytes, bytes]) -> None:
        """Apply a batch of writes."""
        if not updates:
            return
        self.root, new_nodes = apply_updates(self.root, self.nodes.get, updates)
        self.nodes.update(new_nodes)
        self.items.update(updates)

    def root_after(self, key: bytes, value: bytes) -> bytes:
        """Root after one write, without applying it."""
        return apply_updates(self.root, self.nodes.get, {key: value})[0]

    def proof(self, key: bytes) -> bytes:
        """Proof of ``key`` against the current root, as the contract takes it."""
        return b"".join(prove(self.root, key, self.nodes.get))

    def lookup(self, key: bytes) -> tuple[bool, bytes]:
        """What the contract's ``get`` must return for ``key``."""
        value = get(self.root, key, self.nodes.get)
        return (value is not None, value or b"")


def _hexary_root(items: dict[bytes, bytes]) -> bytes:
    """Root of ``items`` computed by ``trie.HexaryTrie`` (the reference)."""
    reference = HexaryTrie(db={})
    for key, value in items.items():
        reference[key] = value
    return bytes(reference.root_hash)


def _key_near(rng: random.Random, base: bytes, shared: int) -> bytes:
    """A key whose first ``shared`` nibbles are ``base``'s and next one is not."""
    base_int = int.from_bytes(base, "big")
    low_bits = 4 * (64 - shared)
    nibble = (base_int >> (low_bits - 4)) & 15
    other = (nibble + rng.randrange(1, 16)) & 15
    tail = rng.getrandbits(low_bits - 4)
    key = (base_int >> low_bits << low_bits) | (other << (low_bits - 4)) | tail
    return key.to_bytes(32, "big")


def _new_key(rng: random.Random, existing: Sequence[bytes]) -> bytes:
    """A random key, often sharing a prefix of random length with ``existing``."""
    if not existing or rng.random() < 0.3:
        return rng.randbytes(32)
    return _key_near(rng, rng.choice(existing), rng.choice(SHARED_NIBBLES))


def _new_value(rng: random.Random) -> bytes:
    """A value of one of the sizes (and RLP encodings) leaves can have."""
    kind = rng.randrange(10)
    if kind == 0:
        return bytes([rng.randrange(0x80)])  # encoded as itself
    if kind == 1:
        return bytes([rng.randrange(0x80, 0x100)])
    if kind == 2:
        return rng.randbytes(rng.randrange(2, 9))
    if kind == 3:
        return rng.randbytes(9)  # an order state
    if kind == 4:
        return rng.randbytes(rng.choice((44, 68, 76)))
    if kind == 5:
        return rng.randbytes(rng.randrange(10, 56))
    if kind == 6:
        return rng.randbytes(rng.randrange(56, 256))
    if kind == 7:
        return rng.randbytes(rng.randrange(256, 700))
    if kind == 8:
        return rng.randbytes(MAX_VALUE)  # the largest leaf (prices, 64 markets)
    return rng.randbytes(rng.randrange(700, MAX_VALUE))


def _embedded_children(nodes: dict[bytes, bytes]) -> int:
    """Number of child nodes embedded (not hashed) in the trie's nodes."""
    count = 0

    def visit(node: RLPItem) -> None:
        nonlocal count
        assert isinstance(node, list)
        children = node[:16] if len(node) == 17 else [node[1]]
        for child in children:
            if isinstance(child, list):
                count += 1
                if len(child) in (2, 17):
                    visit(child)

    for encoded in nodes.values():
        node = rlp_decode(encoded)
        assert isinstance(node, list)
        if len(node) == 17 or (isinstance(node[0], bytes) and node[0][0] >> 4 < 2):
            visit(node)
    return count


def _check_get(mpt: VyperContract, model: Model, key: bytes) -> None:
    """The contract's lookup of ``key`` agrees with the model."""
    assert tuple(mpt.get(model.root, key, model.proof(key))) == model.lookup(key)


def _check_write(
    mpt: VyperContract, model: Model, key: bytes, value: bytes, *, read: bool = True
) -> None:
    """Look ``key`` up (if ``read``), write it on-chain, check the new root; apply it."""
    proof = model.proof(key)
    if read:
        assert tuple(mpt.get(model.root, key, proof)) == model.lookup(key)
    expected = model.root_after(key, value)
    if read:
        assert mpt.update(model.root, key, value, proof) == expected
    else:
        # The write reports what it replaced: the proof's own reading.
        present, old = model.lookup(key)
        old_hash = keccak256(old) if present else bytes(32)
        assert tuple(mpt.update_read(model.root, key, value, proof)) == (expected, present, old_hash)
    model.set_many({key: value})
    assert model.root == expected


def _get_or_none(
    mpt: VyperContract, root: bytes, key: bytes, proof: bytes
) -> tuple[bool, bytes] | None:
    """The contract's lookup, or None if it reverts."""
    try:
        present, value = mpt.get(root, key, proof)
    except boa.BoaError:
        return None
    return bool(present), bytes(value)


def _gas(mpt: VyperContract) -> int:
    """Execution gas of the contract's last call (no intrinsic or calldata)."""
    return int(mpt._computation.get_gas_used())


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpt() -> VyperContract:
    """The harness around the MPT module, deployed once."""
    return boa.load(str(HARNESS))


@pytest.fixture(scope="module")
def sample() -> Model:
    """A 400-key trie with a deep cluster (embedded nodes) and big leaves."""
    rng = random.Random(0x5A3D1E)
    model = Model()
    keys = [rng.randbytes(32) for _ in range(300)]
    anchor = keys[0]
    for shared in (40, 55, 58, 59, 60, 61, 62, 63):
        keys.append(_key_near(rng, anchor, shared))
    keys += [_new_key(rng, keys) for _ in range(92)]
    model.set_many({key: _new_value(rng) for key in keys})
    model.set_many({anchor: b"\x01", keys[-1]: rng.randbytes(MAX_VALUE)})
    return model


# ---------------------------------------------------------------------------
# Differential tests against state.trie / HexaryTrie
# ---------------------------------------------------------------------------


def test_random_updates_match_state_trie(mpt: VyperContract) -> None:
    """On random tries, get and update agree with state.trie, write by write."""
    rng = random.Random(0x1D1FF)
    writes = 0
    embedded = 0
    for _ in range(48 * SCALE):
        model = Model()
        keys: list[bytes] = []
        for _ in range(rng.choice((0, 0, 1, 2, 4, 16, 64, 200))):
            keys.append(_new_key(rng, keys))
        model.set_many({key: _new_value(rng) for key in keys})
        for step in range(21):
            if keys and rng.random() < 0.35:
                key = rng.choice(keys)  # replace
            else:
                key = _new_key(rng, keys)  # insert
                keys.append(key)
            # Every write is checked; one in three (all with HFX_FUZZ=long)
            # is also read first, which checks get on the key's old state.
            _check_write(mpt, model, key, _new_value(rng), read=LONG or step % 3 == 0)
            writes += 1
        # Inclusion and exclusion proofs, at the end of the writes.
        for key in rng.sample(keys, min(3, len(keys))):
            _check_get(mpt, model, key)
        for _ in range(3):
            _check_get(mpt, model, _new_key(rng, keys))
        embedded += _embedded_children(model.nodes)
        assert model.root == _hexary_root(model.items)
    assert writes >= 1000
    assert embedded > 0, "the generator never produced an embedded node"


def _scenario_keys(rng: random.Random, base: bytes, layout: Sequence[int]) -> list[bytes]:
    """``base``, then for each entry a key sharing that many nibbles with base."""
    return [base] + [_key_near(rng, base, shared) for shared in layout]


# Each scenario: nibbles shared with the first key by each next key, in
# insertion order, and the size of the values written.
SCENARIOS = {
    "single leaf at the root": ((), 44),
    "leaf split at the root": ((0,), 44),
    "leaf split below an extension": ((7,), 44),
    "extension split at its first nibble": ((7, 0), 44),
    "extension split inside": ((7, 3), 44),
    "extension split at its last nibble": ((7, 6), 44),
    "extension split after a branch": ((7, 1, 4), 44),
    "long extension (63 nibbles)": ((63, 62, 61), 9),
    "embedded leaves": ((62, 63), 1),
    "embedded branch": ((62, 62, 63), 1),
    "embedded extension": ((60, 58), 1),
    "embedded extension split at its only nibble": ((60, 58, 59), 1),
    "embedded chain deep in the trie": ((61, 60, 59, 58, 57, 56, 55), 1),
    "largest leaves": ((0, 40), MAX_VALUE),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_structural_cases(mpt: VyperContract, name: str) -> None:
    """Hand-picked shapes: every kind of split, embedded nodes both ways."""
    layout, size = SCENARIOS[name]
    rng = random.Random(name)
    keys = _scenario_keys(rng, rng.randbytes(32), layout)
    model = Model()
    for key in keys:  # inserts, from the empty trie
        _check_write(mpt, model, key, rng.randbytes(size))
    for key in keys:  # grow every value (embedded -> hashed), then shrink it
        _check_write(mpt, model, key, rng.randbytes(min(size + 40, MAX_VALUE)))
    for key in keys:
        _check_write(mpt, model, key, rng.randbytes(size))
    for key in keys:
        _check_get(mpt, model, key)
    for shared in (0, 1, 30, 57, 60, 63):  # absent neighbours
        _check_get(mpt, model, _key_near(rng, keys[0], shared))
    if size == 1 and len(keys) > 1:
        assert _embedded_children(model.nodes) > 0
    assert model.root == _hexary_root(model.items)


@pytest.mark.parametrize(
    "value",
    [
        b"\x00",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"ab",
        bytes(55),
        bytes(56),
        bytes(255),
        bytes(256),
        bytes(MAX_VALUE),
    ],
    ids=lambda v: f"{len(v)}B-{v[:1].hex()}",
)
def test_value_encodings(mpt: VyperContract, sample: Model, value: bytes) -> None:
    """Every RLP string form a value can take, written then read back."""
    model = Model(dict(sample.nodes), sample.root, dict(sample.items))
    for key in list(model.items)[:3] + [keccak256(value)]:
        _check_write(mpt, model, key, value)
        assert tuple(mpt.get(model.root, key, model.proof(key))) == (True, value)


def test_empty_trie(mpt: VyperContract) -> None:
    """The empty trie: exclusion with the empty proof, then the first insert."""
    key = keccak256(b"first")
    assert tuple(mpt.get(EMPTY_ROOT, key, b"")) == (False, b"")
    root = mpt.update(EMPTY_ROOT, key, b"\x05", b"")
    assert root == apply_updates(EMPTY_ROOT, {}.get, {key: b"\x05"})[0]
    with boa.reverts("MPT: proof too long"):
        mpt.get(EMPTY_ROOT, key, b"\xc0")


def _deep_trie(rng: random.Random, target: bytes, depths: int) -> tuple[Model, dict[bytes, bytes]]:
    """A trie where ``target`` (holding a largest value) sits below a full branch
    at each of the first ``depths`` depths: 15 keys leave its path at each."""
    model = Model()
    updates = {target: rng.randbytes(MAX_VALUE)}
    target_int = int.from_bytes(target, "big")
    for depth in range(depths):
        low_bits = 4 * (63 - depth)
        own = (target_int >> low_bits) & 15
        for nibble in range(16):
            if nibble != own:
                prefix = (target_int >> (low_bits + 4)) << 4 | nibble
                key = (prefix << low_bits) | rng.getrandbits(low_bits)
                updates[key.to_bytes(32, "big")] = rng.randbytes(40)
    model.set_many(updates)
    return model, updates


def test_longest_accepted_proof(mpt: VyperContract) -> None:
    """A full branch at each of the first 26 depths above a largest leaf: the
    deepest such path whose proof fits MAX_PROOF. Reads and writes at the bound
    work; one more full branch makes a proof the library does not take (a trie
    needs about 16**27 hash evaluations of grinding to hold one, docs/l1-mpt.md)."""
    rng = random.Random(0x10C)
    target = rng.randbytes(32)
    model, updates = _deep_trie(rng, target, FULL_DEPTHS_AT_BOUND)
    nodes = prove(model.root, target, model.nodes.get)
    proof = b"".join(nodes)
    assert len(nodes) == FULL_DEPTHS_AT_BOUND + 1 and MAX_PROOF - 532 < len(proof) <= MAX_PROOF
    assert tuple(mpt.get(model.root, target, proof)) == (True, updates[target])
    print(f"\nget with the longest proof ({len(proof):,} bytes): {_gas(mpt):,} gas")
    _check_write(mpt, model, target, rng.randbytes(MAX_VALUE))
    print(f"update with the longest proof: {_gas(mpt):,} gas")
    # Writes deep in the trie: next to the target at several depths.
    for depth in (0, 13, 25, 63):
        _check_write(mpt, model, _key_near(rng, target, depth), rng.randbytes(9))

    deeper, _ = _deep_trie(random.Random(0x10D), target, FULL_DEPTHS_AT_BOUND + 1)
    too_long = b"".join(prove(deeper.root, target, deeper.nodes.get))
    assert len(too_long) > MAX_PROOF
    with pytest.raises(Exception):  # noqa: B017 - the ABI decoder refuses the argument
        mpt.get(deeper.root, target, too_long)


def test_sequential_writes(mpt: VyperContract, sample: Model) -> None:
    """Several writes, each proved against the root the previous one left."""
    rng = random.Random(0x5E0)
    anchor = next(iter(sample.items))
    for _ in range(6 * SCALE):
        model = Model(dict(sample.nodes), sample.root, dict(sample.items))
        keys = [rng.choice(list(model.items)), _key_near(rng, anchor, rng.randrange(1, 64))]
        keys += [_new_key(rng, keys) for _ in range(3)]
        writes = [(key, _new_value(rng)) for key in keys]
        pre_root = model.root
        first_proof = model.proof(keys[1])
        proofs: list[bytes] = []
        root = model.root
        for key, value in writes:
            proofs.append(model.proof(key))
            root = mpt.update(root, key, value, proofs[-1])
            model.set_many({key: value})
            assert root == model.root
        assert root == apply_updates(pre_root, sample.nodes.get, dict(writes))[0]
        sequence_root = mpt.update_sequence(
            pre_root, keys, [v for _, v in writes], b"".join(proofs), [len(p) for p in proofs]
        )
        assert sequence_root == root
        # A proof against the root before the first write is stale after it.
        with boa.reverts("MPT: node hash mismatch"):
            mpt.update_sequence(
                pre_root,
                keys[:2],
                [v for _, v in writes[:2]],
                proofs[0] + first_proof,
                [len(proofs[0]), len(first_proof)],
            )


# ---------------------------------------------------------------------------
# Malformed and inconsistent proofs
# ---------------------------------------------------------------------------


def _sample_key(sample: Model, index: int) -> bytes:
    keys = list(sample.items)
    return keys[index % len(keys)]


@settings(max_examples=60 * SCALE, deadline=None)
@given(index=st.integers(0, 10**6), position=st.integers(0, 10**6), flip=st.integers(1, 255))
def test_tampered_byte_reverts(
    mpt: VyperContract, sample: Model, index: int, position: int, flip: int
) -> None:
    """Changing any byte of a proof makes both get and update revert."""
    key = _sample_key(sample, index)
    proof = bytearray(sample.proof(key))
    proof[position % len(proof)] ^= flip
    with boa.reverts():
        mpt.get(sample.root, key, bytes(proof))
    with boa.reverts():
        mpt.update(sample.root, key, b"new", bytes(proof))


MUTATIONS = (
    "drop the last node",
    "drop the first node",
    "swap two nodes",
    "duplicate a node",
    "reverse the nodes",
    "append junk",
    "truncate",
    "insert a byte",
    "delete a byte",
)


def _mutate(nodes: list[bytes], mutation: str, rng: random.Random) -> bytes:
    """The proof ``nodes`` damaged by ``mutation``, concatenated."""
    blob = b"".join(nodes)
    if mutation == "drop the last node":
        return b"".join(nodes[:-1])
    if mutation == "drop the first node":
        return b"".join(nodes[1:])
    if mutation == "swap two nodes":
        if len(nodes) < 2:
            return blob + blob
        i = rng.randrange(len(nodes) - 1)
        return b"".join(nodes[:i] + [nodes[i + 1], nodes[i]] + nodes[i + 2 :])
    if mutation == "duplicate a node":
        i = rng.randrange(len(nodes))
        return b"".join(nodes[: i + 1] + nodes[i:])
    if mutation == "reverse the nodes":
        return b"".join(nodes[::-1])
    if mutation == "append junk":
        return blob + rng.randbytes(rng.randrange(1, 40))
    if mutation == "truncate":
        return blob[: rng.randrange(len(blob))]
    i = rng.randrange(len(blob))
    if mutation == "insert a byte":
        return blob[:i] + rng.randbytes(1) + blob[i:]
    assert mutation == "delete a byte"
    return blob[:i] + blob[i + 1 :]


@settings(max_examples=80 * SCALE, deadline=None)
@given(
    index=st.integers(0, 10**6),
    mutation=st.sampled_from(MUTATIONS),
    seed=st.integers(0, 2**32),
    absent=st.booleans(),
)
def test_mutated_proof_never_lies(
    mpt: VyperContract, sample: Model, index: int, mutation: str, seed: int, absent: bool
) -> None:
    """A damaged proof is rejected, or (if still a valid proof) tells the truth."""
    rng = random.Random(seed)
    key = _sample_key(sample, index)
    if absent:
        key = _key_near(rng, key, rng.choice(SHARED_NIBBLES))
    nodes = prove(sample.root, key, sample.nodes.get)
    proof = _mutate(nodes, mutation, rng)
    result = _get_or_none(mpt, sample.root, key, proof)
    # The proof of a key against a root is unique: anything else must fail.
    if proof == b"".join(nodes):
        assert result == sample.lookup(key)
    else:
        assert result is None


@settings(max_examples=60 * SCALE, deadline=None)
@given(
    proof_of=st.integers(0, 10**6),
    asked=st.integers(0, 10**6),
    shared=st.sampled_from(SHARED_NIBBLES),
)
def test_proof_of_another_key(
    mpt: VyperContract, sample: Model, proof_of: int, asked: int, shared: int
) -> None:
    """A proof used for another key is rejected or proves that key's real state."""
    key = _sample_key(sample, proof_of)
    other = (
        _key_near(random.Random(asked), key, shared) if asked % 2 else _sample_key(sample, asked)
    )
    proof = sample.proof(key)
    result = _get_or_none(mpt, sample.root, other, proof)
    if proof == sample.proof(other):
        assert result == sample.lookup(other)
    else:
        assert result is None
    try:
        root = mpt.update(sample.root, other, b"\x42", proof)
    except boa.BoaError:
        assert proof != sample.proof(other)
        return
    assert proof == sample.proof(other)
    assert root == sample.root_after(other, b"\x42")


def test_rejections_with_reasons(mpt: VyperContract, sample: Model) -> None:
    """Wrong root, truncated, reordered or padded proofs, and a bad value."""
    key = _sample_key(sample, 7)
    nodes = prove(sample.root, key, sample.nodes.get)
    proof = b"".join(nodes)
    assert len(nodes) >= 3
    with boa.reverts("MPT: node hash mismatch"):
        mpt.get(keccak256(b"another root"), key, proof)
    with boa.reverts("MPT: proof too short"):
        mpt.get(sample.root, key, b"".join(nodes[:-1]))
    with boa.reverts("MPT: proof too short"):
        mpt.get(sample.root, key, b"")
    with boa.reverts("MPT: node hash mismatch"):
        mpt.get(sample.root, key, b"".join([nodes[0], nodes[2], nodes[1]] + nodes[3:]))
    with boa.reverts("MPT: unused proof bytes"):
        mpt.get(sample.root, key, proof + nodes[-1])
    with boa.reverts("MPT: node truncated or too long"):
        mpt.get(sample.root, key, proof[:-1])
    with boa.reverts("MPT: empty value"):
        mpt.update(sample.root, key, b"", proof)
    too_long = proof + bytes(MAX_PROOF + 1 - len(proof))
    with boa.reverts():
        mpt.get(sample.root, key, too_long)


REASONS = (
    "proof too short",
    "proof too long",
    "unused proof bytes",
    "node is not a list",
    "node truncated or too long",
    "node hash mismatch",
    "bad embedded node",
    "empty node",
    "node with one item",
    "bad path",
    "bad path flag",
    "bad path padding",
    "path too long",
    "bad leaf path length",
    "bad leaf value",
    "bad extension",
    "bad branch",
    "bad branch item",
    "branch with a value",
    "bad child reference",
    "non-canonical RLP",
    "RLP item too long",
    "node too long",
    "value too long",
    "empty value",
)


@pytest.mark.parametrize("code", range(1, len(REASONS) + 1))
def test_revert_reasons(mpt: VyperContract, code: int) -> None:
    """Each error code reverts with its documented reason."""
    with boa.reverts(f"MPT: {REASONS[code - 1]}"):
        mpt.fail(code)


def _leaf(path_nibbles: str, value_item: bytes, flag: int = 2) -> bytes:
    """RLP of a leaf (flag 2) or extension (flag 0) with a raw second item."""
    odd = len(path_nibbles) % 2
    hex_prefix = bytes.fromhex(f"{flag + odd:x}" + ("" if odd else "0") + path_nibbles)
    return _list(rlp_encode(hex_prefix) + value_item)


def _list(payload: bytes) -> bytes:
    """RLP list around an already encoded payload."""
    if len(payload) < 56:
        return bytes([0xC0 + len(payload)]) + payload
    size = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
    return bytes([0xF7 + len(size)]) + size + payload


KEY = bytes.fromhex("a1" * 32)
FULL_PATH = KEY.hex()


def _branch(children: dict[int, bytes], value: bytes = b"\x80") -> bytes:
    """RLP of a branch with the given raw child items."""
    return _list(b"".join(children.get(i, b"\x80") for i in range(16)) + value)


def _hashed(node: bytes) -> bytes:
    return b"\xa0" + keccak256(node)


# Authentic (correctly hashed) but malformed nodes: (root node, proof, reason).
def _malformed_cases() -> Iterator[tuple[str, bytes, str]]:
    good_value = rlp_encode(b"v" * 40)
    yield "bad path flag", _leaf(FULL_PATH, good_value, flag=4), "MPT: bad path flag"
    yield "short leaf path", _leaf(FULL_PATH[:-2], good_value), "MPT: bad leaf path length"
    yield "leaf value is a list", _leaf(FULL_PATH, _list(good_value)), "MPT: bad leaf value"
    yield "empty leaf value", _leaf(FULL_PATH, b"\x80"), "MPT: bad leaf value"
    yield "non-canonical single byte", _leaf(FULL_PATH, b"\x81\x05"), "MPT: non-canonical RLP"
    yield (
        "non-canonical long length",
        _leaf(FULL_PATH, b"\xb8\x28" + b"v" * 40),
        "MPT: non-canonical RLP",
    )
    yield (
        "bad path padding",
        _list(rlp_encode(bytes.fromhex("21") + KEY) + good_value),
        "MPT: bad path padding",
    )
    leaf = _leaf(FULL_PATH[1:], good_value)
    yield (
        "three items",
        _list(rlp_encode(b"\x20") + good_value + good_value),
        "MPT: bad branch item",
    )
    yield (
        "branch with a value",
        _branch({0xA: _hashed(leaf)}, value=b"\x01"),
        "MPT: branch with a value",
    )
    yield "branch child too long", _branch({0xA: _list(bytes(31))}), "MPT: bad branch item"
    yield "branch child is a string", _branch({0xA: b"\x85hello"}), "MPT: bad branch item"
    yield "empty extension path", _list(b"\x00" + _hashed(leaf)), "MPT: bad extension"
    yield (
        "extension to nothing",
        _list(rlp_encode(bytes.fromhex("1a")) + b"\x80"),
        "MPT: bad extension",
    )
    yield (
        "extension child is a string",
        _list(rlp_encode(bytes.fromhex("1a")) + b"\x83abc"),
        "MPT: bad extension",
    )
    yield (
        "diverging extension, bad child",
        _list(rlp_encode(bytes.fromhex("1b")) + b"\x83abc"),
        "MPT: bad extension",
    )
    yield "not a list", rlp_encode(b"x" * 40), "MPT: node is not a list"


@pytest.mark.parametrize("case", list(_malformed_cases()), ids=lambda case: case[0])
def test_malformed_nodes(mpt: VyperContract, case: tuple[str, bytes, str]) -> None:
    """Nodes that hash correctly but break the trie's rules are rejected."""
    _, node, reason = case
    root = keccak256(node)
    with boa.reverts(reason):
        mpt.get(root, KEY, node)
    with boa.reverts(reason):
        mpt.update(root, KEY, b"\x01", node)


# ---------------------------------------------------------------------------
# Gas
# ---------------------------------------------------------------------------


LEAF_SIZES = (4, 9, 9, 9, 32, 76, 108, 300)
"""Value sizes of the gas tries: mostly order states, some accounts."""


def _build_gas_trie(db: TrieDB, size: int) -> None:
    """Fill ``db`` with ``size`` keys keccak(i) (deterministic values)."""
    rng = random.Random(size)
    chunk = 500_000
    for low in range(0, size, chunk):
        db.commit(
            {
                keccak256(i.to_bytes(8, "big")): rng.randbytes(rng.choice(LEAF_SIZES))
                for i in range(low, min(size, low + chunk))
            }
        )


@dataclass
class GasFigures:
    """Execution gas (min / mean / max) of each operation, and proof sizes."""

    keys: int
    figures: dict[str, list[int]] = field(default_factory=dict)
    proof_bytes: list[int] = field(default_factory=list)
    proof_nodes: list[int] = field(default_factory=list)

    def add(self, name: str, gas: int) -> None:
        self.figures.setdefault(name, []).append(gas)

    def report(self) -> str:
        lines = [
            f"MPT gas on a {self.keys:,}-key trie (proofs: {statistics.mean(self.proof_nodes):.1f} nodes, "
            f"{statistics.mean(self.proof_bytes):,.0f} bytes on average, max {max(self.proof_bytes):,})"
        ]
        for name, values in self.figures.items():
            lines.append(
                f"  {name:<34} min {min(values):>8,}  mean {statistics.mean(values):>10,.0f}  max {max(values):>8,}"
            )
        return "\n".join(lines)


def _measure_gas(mpt: VyperContract, db: TrieDB, size: int, samples: int) -> GasFigures:
    rng = random.Random(0x6A5)
    figures = GasFigures(size)
    root = db.root
    for n in range(samples):
        key = keccak256(rng.randrange(size).to_bytes(8, "big"))
        nodes = db.prove(key)
        proof = b"".join(nodes)
        figures.proof_bytes.append(len(proof))
        figures.proof_nodes.append(len(nodes))
        present, value = mpt.get(root, key, proof)
        assert present and value == db.get(key)
        figures.add("get (present)", _gas(mpt))
        new_value = rng.randbytes(len(value))
        assert mpt.update(root, key, new_value, proof) == db.root_of({key: new_value})
        figures.add("update (replace)", _gas(mpt))
        absent = keccak256(b"absent" + n.to_bytes(8, "big"))
        proof = b"".join(db.prove(absent))
        assert tuple(mpt.get(root, absent, proof)) == (False, b"")
        figures.add("get (absent)", _gas(mpt))
        assert mpt.update(root, absent, new_value, proof) == db.root_of({absent: new_value})
        figures.add("update (insert)", _gas(mpt))
    # A trade's writes: two accounts, two order states, the global leaf.
    for n in range(max(1, samples // 5)):
        overlay = db.overlay()
        keys = [keccak256(rng.randrange(size).to_bytes(8, "big")) for _ in range(2)]
        keys += [keccak256(b"order" + bytes([n, i])) for i in range(2)] + [keccak256(b"global")]
        values = [
            rng.randbytes(76),
            rng.randbytes(108),
            rng.randbytes(9),
            rng.randbytes(9),
            rng.randbytes(68),
        ]
        proofs = []
        for key, value in zip(keys, values, strict=True):
            proofs.append(b"".join(overlay.prove(key)))
            overlay.commit({key: value})
        assert (
            mpt.update_sequence(root, keys, values, b"".join(proofs), [len(p) for p in proofs])
            == overlay.root
        )
        figures.add("5 writes in one call (a trade)", _gas(mpt))
    return figures


def test_gas_100k(mpt: VyperContract) -> None:
    """Gas of get and update on a 100,000-key trie (about one level shallower than 1M)."""
    db = TrieDB.in_memory()
    _build_gas_trie(db, 100_000)
    figures = _measure_gas(mpt, db, 100_000, 20)
    print("\n" + figures.report())
    assert max(figures.figures["get (present)"]) <= GET_GAS_TARGET


@pytest.fixture(scope="module")
def trie_1m() -> TrieDB:
    """A 1,000,000-key trie, built once per module (about 30 s, 0.8 GB)."""
    db = TrieDB.in_memory()
    _build_gas_trie(db, 1_000_000)
    return db


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("HFX_GAS") != "1", reason="set HFX_GAS=1 to measure gas on 1M keys"
)
def test_gas_1m(mpt: VyperContract, trie_1m: TrieDB) -> None:
    """Gas of get and update on a 1,000,000-key trie (the target's reference size)."""
    figures = _measure_gas(mpt, trie_1m, 1_000_000, 40)
    print("\n" + figures.report())
    assert max(figures.figures["get (present)"]) <= GET_GAS_TARGET
