"""Tests of EIP-1186 proofs: state.trie's prover against the trie package and proofs.mpt."""

from __future__ import annotations

import random

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from trie.exceptions import BadTrieProof, ValidationError
from trie.hexary import HexaryTrie

from proofs.mpt import (
    EMPTY_ROOT,
    InvalidProof,
    eip1186_entry,
    parse_eip1186_entry,
    verify_proof,
)
from state.keccak import keccak256
from state.trie import TrieDB, prove
from tests.test_trie import examples, trie_keys, trie_values


def build(contents: dict[bytes, bytes]) -> tuple[TrieDB, HexaryTrie]:
    """Our trie and the reference trie with the same contents."""
    db = TrieDB.in_memory()
    db.commit(contents)
    ref = HexaryTrie({})
    for key in sorted(contents):
        ref[key] = contents[key]
    assert db.root == ref.root_hash
    return db, ref


def reference_proof(ref: HexaryTrie, key: bytes) -> list[bytes]:
    """The trie package's proof, without embedded nodes (as in eth_getProof)."""
    nodes = [rlp.encode(node) for node in ref.get_proof(key)]
    return [enc for i, enc in enumerate(nodes) if i == 0 or len(enc) >= 32]


def trie_package_value(root: bytes, key: bytes, proof: list[bytes]) -> bytes:
    """What ``HexaryTrie.get_from_proof`` proves (b"" for absence)."""
    return bytes(HexaryTrie.get_from_proof(root, key, [rlp.decode(p) for p in proof]))


def near_keys(keys: list[bytes], rng: random.Random) -> list[bytes]:
    """Absent-key candidates: keys sharing long prefixes with present ones."""
    out = []
    for key in keys[:4]:
        for cut in (1, 8, 16, 31):
            out.append(key[:cut] + rng.randbytes(32 - cut))
        out.append(key[:31] + bytes([key[31] ^ 0x01]))
        out.append(key[:31] + bytes([key[31] ^ 0x10]))
    return out


contents_strategy = st.dictionaries(trie_keys(), trie_values, min_size=1, max_size=40)


@settings(max_examples=examples(100))
@given(contents_strategy, st.lists(trie_keys(), max_size=10), st.randoms(use_true_random=False))
def test_proofs_verify_for_present_and_absent_keys(
    contents: dict[bytes, bytes], others: list[bytes], rng: random.Random
) -> None:
    db, ref = build(contents)
    root = db.root
    candidates = list(contents) + others + near_keys(list(contents), rng)
    for key in candidates:
        proof = db.prove(key)
        expected = contents.get(key)
        assert proof == reference_proof(ref, key)
        assert proof == prove(root, key, db.store.get)
        assert verify_proof(root, key, proof) == expected
        assert trie_package_value(root, key, proof) == (expected or b"")
        assert eip1186_entry(root, key, proof)["value"] == "0x" + (expected or b"").hex()


def test_empty_trie_proofs() -> None:
    db = TrieDB.in_memory()
    key = keccak256(b"k")
    assert db.prove(key) == []
    assert verify_proof(EMPTY_ROOT, key, []) is None
    assert verify_proof(EMPTY_ROOT, key, [b"\x80"]) is None
    assert trie_package_value(EMPTY_ROOT, key, []) == b""
    with pytest.raises(InvalidProof):
        verify_proof(keccak256(b"not empty"), key, [])


def test_proofs_of_an_old_root_and_from_lmdb(tmp_path: object) -> None:
    rng = random.Random(3)
    first = {rng.randbytes(32): rng.randbytes(100) for _ in range(300)}
    second = {key: rng.randbytes(100) for key in list(first)[:50]}
    with TrieDB.open(f"{tmp_path}/state") as db:
        old = db.commit(first)
        new = db.commit(second)
        for key in list(first)[:80]:
            assert verify_proof(old, key, db.prove(key, root=old)) == first[key]
            assert verify_proof(new, key, db.prove(key)) == second.get(key, first[key])


# ------------------------------------------------------------ rejection


@settings(max_examples=examples(100))
@given(contents_strategy, st.data())
def test_tampered_proofs_are_rejected(contents: dict[bytes, bytes], data: st.DataObject) -> None:
    db, _ = build(contents)
    root = db.root
    present = data.draw(st.booleans())
    key = data.draw(st.sampled_from(sorted(contents))) if present else data.draw(trie_keys())
    proof = db.prove(key)
    assert proof  # a non-empty trie always has its root in the proof
    i = data.draw(st.integers(0, len(proof) - 1), label="element")
    element = proof[i]
    j = data.draw(st.integers(0, len(element) - 1), label="byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = proof[:i] + [element[:j] + bytes([element[j] ^ flip]) + element[j + 1 :]] + proof[i + 1 :]
    with pytest.raises(InvalidProof):
        verify_proof(root, key, tampered)
    with pytest.raises((BadTrieProof, ValidationError, rlp.DecodingError)):
        trie_package_value(root, key, tampered)
    # dropped, extra and reordered elements; wrong root
    with pytest.raises(InvalidProof):
        verify_proof(root, key, proof[:-1])
    with pytest.raises(InvalidProof):
        verify_proof(root, key, [*proof, proof[-1]])
    if len(proof) > 1:
        with pytest.raises(InvalidProof):
            verify_proof(root, key, proof[::-1])
    with pytest.raises(InvalidProof):
        verify_proof(keccak256(root), key, proof)


@settings(max_examples=examples(100))
@given(contents_strategy, trie_keys())
def test_a_proof_never_proves_a_wrong_value(contents: dict[bytes, bytes], key: bytes) -> None:
    # The proof of one key, checked for another: rejected, or the true answer.
    db, _ = build(contents)
    for other in sorted(contents)[:10]:
        proof = db.prove(other)
        try:
            answer = verify_proof(db.root, key, proof)
        except InvalidProof:
            continue
        assert answer == contents.get(key)


def test_forged_leaf_value_is_rejected() -> None:
    key = keccak256(b"k")
    db, _ = build({key: b"v" * 40, keccak256(b"j"): b"w" * 40})
    proof = db.prove(key)
    leaf = rlp.decode(proof[-1])
    forged = proof[:-1] + [rlp.encode([leaf[0], b"x" * 40])]
    with pytest.raises(InvalidProof):
        verify_proof(db.root, key, forged)


@pytest.mark.parametrize(
    "node",
    [
        [b"\x01"] * 3,  # wrong arity
        [b"\x40\x01", b"v"],  # bad hex-prefix flag
        [b"\x31", b""],  # empty leaf value
        [b"\x11", b""],  # extension to nothing
        [b"\x11", b"\x01" * 5],  # extension to a bad reference
        b"\x01" * 40,  # not a list
    ],
)
def test_malformed_nodes_are_rejected(node: list[bytes] | bytes) -> None:
    encoded = rlp.encode(node)
    with pytest.raises(InvalidProof):
        verify_proof(keccak256(encoded), b"\x12" * 32, [encoded])


def test_non_canonical_element_is_rejected() -> None:
    encoded = b"\xf8\x02\x80\x80"  # long form list header for a short list
    with pytest.raises(InvalidProof):
        verify_proof(keccak256(encoded), b"\x12" * 32, [encoded])


# ------------------------------------------------------------ EIP-1186 shape


def test_eip1186_entry_round_trip() -> None:
    rng = random.Random(1)
    contents = {rng.randbytes(32): rng.randbytes(100) for _ in range(50)}
    db, _ = build(contents)
    key = next(iter(contents))
    absent = b"\x00" * 32
    for k in (key, absent):
        entry = eip1186_entry(db.root, k, db.prove(k))
        assert set(entry) == {"key", "value", "proof"}
        assert entry["key"] == "0x" + k.hex()
        assert all(isinstance(p, str) and p.startswith("0x") for p in entry["proof"])
        parsed_key, value, proof = parse_eip1186_entry(entry, root=db.root)
        assert (parsed_key, value, proof) == (k, contents.get(k), db.prove(k))
    bad = dict(eip1186_entry(db.root, key, db.prove(key)), value="0x01")
    with pytest.raises(InvalidProof):
        parse_eip1186_entry(bad, root=db.root)
    with pytest.raises(InvalidProof):
        eip1186_entry(db.root, key, db.prove(key)[:-1])
    with pytest.raises(InvalidProof):
        parse_eip1186_entry({"key": "12", "value": "0x", "proof": []})
