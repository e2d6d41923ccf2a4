"""Tests of the batched trie commit (state.trie), the node stores and the RLP codec.

The reference for every root is the ``trie`` package's ``HexaryTrie`` holding
the same contents.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from trie.hexary import HexaryTrie

from state.keccak import keccak256
from state.nodestore import (
    LmdbNodeStore,
    MemoryNodeStore,
    NodeStoreClosedError,
    NodeStoreLike,
    OverlayStore,
    SqliteNodeStore,
)
from state.trie import (
    EMPTY_ROOT,
    CorruptTrieError,
    MissingNodeError,
    RLPDecodingError,
    RLPItem,
    TrieDB,
    apply_updates,
    get,
    prove,
    rlp_decode,
    rlp_encode,
)
from state.trie_bench import bench_commit_leaves, bench_naive_trie_updates


def examples(per_hundred: int) -> int:
    """``per_hundred`` examples per 100 of the active Hypothesis profile."""
    return max(1, settings.default.max_examples * per_hundred // 100)


# ----------------------------------------------------------------- strategies

BASES = [bytes(32), b"\xff" * 32, bytes.fromhex("a5" * 32), keccak256(b"hfx")]


@st.composite
def trie_keys(draw: st.DrawFn) -> bytes:
    """32-byte keys that often share long prefixes (down to all 64 nibbles)."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=32, max_size=32))
    base = int.from_bytes(draw(st.sampled_from(BASES)), "big")
    shared = draw(st.sampled_from([0, 1, 2, 5, 31, 32, 33, 60, 62, 63, 64]))
    low = 256 - 4 * shared
    noise = int.from_bytes(draw(st.binary(min_size=32, max_size=32)), "big")
    key = (base >> low << low) | (noise & ((1 << low) - 1)) if low else base
    return key.to_bytes(32, "big")


# Short values make embedded (< 32 byte) leaves and branches; ~100 bytes is HFX's size.
trie_values = st.one_of(
    st.binary(min_size=1, max_size=2),
    st.binary(min_size=1, max_size=40),
    st.binary(min_size=90, max_size=110),
)


@st.composite
def commit_sequences(draw: st.DrawFn, max_batches: int = 5) -> list[dict[bytes, bytes]]:
    """Several batches; later batches also overwrite keys of earlier ones."""
    batches: list[dict[bytes, bytes]] = []
    seen: list[bytes] = []
    for _ in range(draw(st.integers(1, max_batches))):
        batch = draw(st.dictionaries(trie_keys(), trie_values, max_size=30))
        if seen:
            for key in draw(st.lists(st.sampled_from(seen), max_size=10)):
                batch[key] = draw(trie_values)
        batches.append(batch)
        seen.extend(k for k in batch if k not in seen)
    return batches


def hexary_root(contents: dict[bytes, bytes]) -> bytes:
    """Root of ``HexaryTrie`` holding ``contents``."""
    ref = HexaryTrie({})
    for key in sorted(contents):
        ref[key] = contents[key]
    return bytes(ref.root_hash)


def reachable_nodes(root: bytes, store: dict[bytes, bytes]) -> set[bytes]:
    """Hashes of all hashed nodes reachable from ``root`` (decoded with ``rlp``)."""
    found: set[bytes] = set()
    stack = [] if root == EMPTY_ROOT else [root]
    while stack:
        node_hash = stack.pop()
        found.add(node_hash)
        todo = [rlp.decode(store[node_hash])]
        while todo:
            node = todo.pop()
            if len(node) == 17:
                children = node[:16]
            elif node[0][0] >> 4 in (0, 1):
                children = [node[1]]
            else:
                children = []
            for child in children:
                if isinstance(child, list):
                    todo.append(child)
                elif len(child) == 32:
                    stack.append(child)
    return found


# ------------------------------------------------------------ roots vs HexaryTrie


@settings(max_examples=examples(100))
@given(commit_sequences())
def test_commit_roots_match_hexary_trie(batches: list[dict[bytes, bytes]]) -> None:
    db = TrieDB.in_memory()
    ref = HexaryTrie({})
    contents: dict[bytes, bytes] = {}
    for batch in batches:
        root = db.commit(batch)
        for key in sorted(batch):
            ref[key] = batch[key]
        contents.update(batch)
        assert root == ref.root_hash
        assert db.root == root
    for key, value in contents.items():
        assert db.get(key) == value
    assert db.get(b"\x01" * 32) == contents.get(b"\x01" * 32)


@settings(max_examples=examples(100))
@given(commit_sequences())
def test_apply_updates_is_pure_and_returns_only_reachable_new_nodes(
    batches: list[dict[bytes, bytes]],
) -> None:
    store: dict[bytes, bytes] = {}
    root = EMPTY_ROOT
    contents: dict[bytes, bytes] = {}
    for batch in batches:
        before = dict(store)
        new_root, nodes = apply_updates(root, store.get, batch)
        assert store == before  # nothing written
        for node_hash, encoded in nodes.items():
            assert keccak256(encoded) == node_hash
        store.update(nodes)
        reachable = reachable_nodes(new_root, store)
        assert set(nodes) <= reachable
        assert reachable <= set(before) | set(nodes)
        contents.update(batch)
        assert new_root == hexary_root(contents)
        root = new_root
    for key, value in contents.items():
        assert get(root, key, store.get) == value


def test_large_batches_match_hexary_trie() -> None:
    rng = random.Random(5)
    db = TrieDB.in_memory()
    ref = HexaryTrie({})
    keys: list[bytes] = []
    for size in (1_500, 1_000, 500):
        batch = {rng.randbytes(32): rng.randbytes(rng.choice([1, 20, 100])) for _ in range(size)}
        for key in rng.sample(keys, min(len(keys), 300)):
            batch[key] = rng.randbytes(100)
        keys.extend(batch)
        root = db.commit(batch)
        for key in sorted(batch):
            ref[key] = batch[key]
        assert root == ref.root_hash


def test_empty_trie_and_empty_batch() -> None:
    db = TrieDB.in_memory()
    assert db.root == EMPTY_ROOT == keccak256(rlp.encode(b""))
    assert db.commit({}) == EMPTY_ROOT
    assert db.root_of({}) == EMPTY_ROOT
    assert db.get(bytes(32)) is None
    assert db.prove(bytes(32)) == []
    assert apply_updates(EMPTY_ROOT, {}.get, {}) == (EMPTY_ROOT, {})


def test_single_small_leaf_root_is_hashed() -> None:
    # Every HFX leaf is at least 34 bytes, but the root is hashed regardless.
    key = bytes(32)
    root, nodes = apply_updates(EMPTY_ROOT, {}.get, {key: b"\x01"})
    assert root == hexary_root({key: b"\x01"})
    assert nodes[root] == rlp.encode([b"\x20" + key, b"\x01"])


def test_keys_sharing_63_nibbles_make_embedded_nodes() -> None:
    base = bytes(31)
    batch = {base + bytes([i]): bytes([i + 1]) for i in range(3)}
    batch[base + b"\x10"] = b"\x7f"
    db = TrieDB.in_memory()
    root = db.commit(batch)
    assert root == hexary_root(batch)
    for key, value in batch.items():
        assert db.get(key) == value
    assert db.get(base + b"\x03") is None


# ------------------------------------------------------------ validation, errors


@pytest.mark.parametrize(
    "updates",
    [
        {bytes(31): b"x"},
        {bytes(33): b"x"},
        {bytes(32): b""},
        {bytes(32): bytearray(b"x")},
        {"k" * 32: b"x"},
    ],
)
def test_invalid_updates_are_rejected_and_nothing_is_written(updates: dict[object, object]) -> None:
    db = TrieDB.in_memory()
    db.commit({b"\x01" * 32: b"v"})
    store = db.store
    assert isinstance(store, MemoryNodeStore)
    before = dict(store.nodes)
    root = db.root
    with pytest.raises(ValueError):
        db.commit(updates)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        db.root_of(updates)  # type: ignore[arg-type]
    assert db.root == root
    assert store.nodes == before


def test_missing_nodes_raise() -> None:
    db = TrieDB.in_memory()
    root = db.commit({bytes(32): b"a" * 50, b"\xff" * 32: b"b" * 50})
    with pytest.raises(MissingNodeError):
        apply_updates(root, {}.get, {b"\x01" * 32: b"c"})
    with pytest.raises(MissingNodeError):
        get(root, bytes(32), {}.get)
    with pytest.raises(KeyError):
        prove(keccak256(b"unknown"), bytes(32), db.store.get)


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\x80",  # a string, not a list
        rlp.encode([b"\x01", b"\x02", b"\x03"]),  # 3 items
        rlp.encode([b"\x40" + bytes(32), b"v"]),  # bad hex-prefix flag
        rlp.encode([b"\x21" + bytes(32), b"v"]),  # bad padding
        rlp.encode([b"\x00\x12", b""]),  # extension to an empty child
        rlp.encode([b"\x00\x12", b"\x01" * 31]),  # extension to a bad reference
        rlp.encode([b"\x01" * 5] * 16 + [b""]),  # branch with bad references
        rlp.encode([b"\x20" + bytes(32), b"v"])[:-1],  # truncated
        rlp.encode([b"\x20" + bytes(32), b"v"]) + b"\x00",  # trailing byte
    ],
)
def test_corrupt_nodes_raise(encoded: bytes) -> None:
    root = keccak256(b"root")
    with pytest.raises(CorruptTrieError):
        get(root, bytes(32), {root: encoded}.get)


# ------------------------------------------------------------ root_of, overlays


@settings(max_examples=examples(50))
@given(commit_sequences(max_batches=3), st.dictionaries(trie_keys(), trie_values, max_size=20))
def test_root_of_equals_commit_and_persists_nothing(
    batches: list[dict[bytes, bytes]], extra: dict[bytes, bytes]
) -> None:
    db = TrieDB.in_memory()
    roots = [db.root]
    contents: dict[bytes, bytes] = {}
    history = [dict(contents)]
    for batch in batches:
        roots.append(db.commit(batch))
        contents.update(batch)
        history.append(dict(contents))
    store = db.store
    assert isinstance(store, MemoryNodeStore)
    nodes_before = dict(store.nodes)
    meta_before = dict(store.meta)
    predicted = db.root_of(extra)
    # root_of against an older root
    for old_root, old_contents in zip(roots, history, strict=True):
        assert db.root_of(extra, root=old_root) == hexary_root({**old_contents, **extra})
    assert store.nodes == nodes_before
    assert store.meta == meta_before
    assert db.root == roots[-1]
    assert db.commit(extra) == predicted
    assert predicted == hexary_root({**contents, **extra})


def test_overlay_keeps_base_untouched() -> None:
    db = TrieDB.in_memory()
    db.commit({bytes(32): b"a" * 40, b"\x11" * 32: b"b" * 40})
    base_store = db.store
    assert isinstance(base_store, MemoryNodeStore)
    nodes_before = dict(base_store.nodes)
    replay = db.overlay()
    r1 = replay.commit({b"\x22" * 32: b"c" * 40})
    r2 = replay.commit({bytes(32): b"d" * 40})
    assert replay.root == r2 != db.root
    assert replay.get(b"\x11" * 32) == b"b" * 40  # read through to the base
    assert replay.get(bytes(32), root=r1) == b"a" * 40
    assert replay.get(bytes(32)) == b"d" * 40
    assert base_store.nodes == nodes_before
    assert db.get(b"\x22" * 32) is None
    replay.close()  # does not close the base
    assert db.get(bytes(32)) == b"a" * 40
    overlay = replay.store
    assert isinstance(overlay, OverlayStore)
    overlay.flush()
    assert db.get(b"\x22" * 32, root=r2) == b"c" * 40
    assert base_store.get_meta("root") == r2


# ------------------------------------------------------------ on-disk stores


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hfx-trie-test-") as tmp:
        yield Path(tmp)


@settings(max_examples=examples(20))
@given(commit_sequences(max_batches=4), st.integers(0, 4))
def test_on_disk_roots_survive_reopen(batches: list[dict[bytes, bytes]], reopen_after: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hfx-trie-test-") as tmp:
        path = Path(tmp) / "state"
        db = TrieDB.open(path)
        contents: dict[bytes, bytes] = {}
        try:
            for i, batch in enumerate(batches):
                if i == reopen_after:
                    root = db.root
                    db.close()
                    db = TrieDB.open(path)
                    assert db.root == root
                db.commit(batch)
                contents.update(batch)
                assert db.root == hexary_root(contents)
            root = db.root
            db.close()
            db = TrieDB.open(path, cache_size=0)
            assert db.root == root
            for key, value in contents.items():
                assert db.get(key) == value
        finally:
            db.close()


def test_lmdb_trie_matches_reference_across_reopen(tmp_dir: Path) -> None:
    rng = random.Random(9)
    ref = HexaryTrie({})
    path = tmp_dir / "state"
    for round_ in range(3):
        with TrieDB.open(path, sync=round_ == 0) as db:
            batch = {rng.randbytes(32): rng.randbytes(100) for _ in range(400)}
            db.commit(batch)
            for key in sorted(batch):
                ref[key] = batch[key]
            assert db.root == ref.root_hash
    with TrieDB.open(path) as db:
        assert db.root == ref.root_hash


def _open(kind: str, path: Path) -> NodeStoreLike:
    if kind == "lmdb":
        return LmdbNodeStore(path / "lmdb")
    if kind == "sqlite":
        return SqliteNodeStore(path / "nodes.sqlite")
    return MemoryNodeStore()


@pytest.mark.parametrize("kind", ["lmdb", "sqlite", "memory"])
def test_node_store_interface(kind: str, tmp_dir: Path) -> None:
    store = _open(kind, tmp_dir)
    nodes = {keccak256(bytes([i])): bytes([i]) * 50 for i in range(100)}
    assert store.get(keccak256(b"\x00")) is None
    assert store.get_meta("root") is None
    store.put_many(nodes, meta={"root": b"r1", "height": b"\x01"})
    store.put_many(nodes)  # idempotent
    store.set_meta("root", b"r2")
    for node_hash, encoded in nodes.items():
        assert store.get(node_hash) == encoded
    assert store.get_meta("root") == b"r2"
    assert store.get_meta("height") == b"\x01"
    with pytest.raises(ValueError):
        store.put_many({b"\x01" * 32: b"x"}, meta={"root": "not bytes"})  # type: ignore[dict-item]
    assert store.get(b"\x01" * 32) is None
    assert store.get_meta("root") == b"r2"
    store.close()
    if kind == "memory":
        return
    store.close()  # idempotent
    with pytest.raises(NodeStoreClosedError):
        store.get(keccak256(b"\x00"))
    reopened = _open(kind, tmp_dir)
    try:
        for node_hash, encoded in nodes.items():
            assert reopened.get(node_hash) == encoded
        assert reopened.get_meta("root") == b"r2"
    finally:
        reopened.close()


def test_lmdb_map_grows_when_full(tmp_dir: Path) -> None:
    store = LmdbNodeStore(tmp_dir / "small", map_size=1 << 16)
    nodes = {keccak256(i.to_bytes(4, "big")): bytes(500) for i in range(2_000)}
    store.put_many(nodes, meta={"root": b"r"})
    assert store.node_count() == 2_000
    assert store.get_meta("root") == b"r"
    store.close()


def test_overlay_store_reads_through() -> None:
    base = MemoryNodeStore()
    base.put_many({b"a" * 32: b"base"}, meta={"root": b"r0"})
    overlay = OverlayStore(base)
    overlay.put_many({b"b" * 32: b"new"}, meta={"root": b"r1"})
    assert overlay.get(b"a" * 32) == b"base"
    assert overlay.get(b"b" * 32) == b"new"
    assert base.get(b"b" * 32) is None
    assert overlay.get_meta("root") == b"r1"
    assert base.get_meta("root") == b"r0"
    overlay.flush()
    assert base.get(b"b" * 32) == b"new"
    assert base.get_meta("root") == b"r1"
    plain = OverlayStore(MemoryNodeStore().nodes)  # a bare mapping: read-only base
    with pytest.raises(TypeError):
        plain.flush()


# ------------------------------------------------------------ RLP codec

rlp_items = st.recursive(
    st.binary(max_size=70),
    lambda children: st.lists(children, max_size=6),
    max_leaves=25,
)


@settings(max_examples=examples(200))
@given(rlp_items)
def test_rlp_codec_matches_rlp_package(item: RLPItem) -> None:
    encoded = rlp.encode(item)
    assert rlp_encode(item) == encoded
    assert rlp_decode(encoded) == item == rlp.decode(encoded)


def test_rlp_long_items_match_rlp_package() -> None:
    for item in ([b"x" * 1000] * 70, b"y" * 70_000, [[b"z" * 60] * 3] * 2):
        encoded = rlp.encode(item)
        assert rlp_encode(item) == encoded
        assert rlp_decode(encoded) == rlp.decode(encoded)


@settings(max_examples=examples(300))
@given(st.one_of(st.binary(max_size=80), rlp_items.map(rlp.encode)), st.data())
def test_rlp_decoder_accepts_exactly_what_rlp_accepts(data: bytes, draw: st.DataObject) -> None:
    if data and draw.draw(st.booleans()):
        # mutate a valid encoding: flip a byte, cut it short or extend it
        i = draw.draw(st.integers(0, len(data) - 1))
        how = draw.draw(st.sampled_from(["flip", "cut", "extend"]))
        if how == "flip":
            data = data[:i] + bytes([data[i] ^ draw.draw(st.integers(1, 255))]) + data[i + 1 :]
        elif how == "cut":
            data = data[:i]
        else:
            data = data + draw.draw(st.binary(min_size=1, max_size=3))
    try:
        expected = rlp.decode(data)
    except rlp.DecodingError:
        with pytest.raises(RLPDecodingError):
            rlp_decode(data)
    else:
        assert rlp_decode(data) == expected


@pytest.mark.parametrize(
    "data",
    [b"\x81\x05", b"\xb8\x05abcde", b"\xb9\x00\x38" + b"a" * 56, b"\xc1", b"", b"\x80\x80", b"\xf8\x02\x80\x80"],
)
def test_rlp_non_canonical_inputs_are_rejected(data: bytes) -> None:
    with pytest.raises(RLPDecodingError):
        rlp_decode(data)
    with pytest.raises(rlp.DecodingError):
        rlp.decode(data)


def test_rlp_encode_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        rlp_encode(5)  # type: ignore[arg-type]


# ------------------------------------------------------------ benchmarks


def test_bench_functions_run() -> None:
    assert bench_commit_leaves(2_000, batch_size=1_000) > 0
    assert bench_naive_trie_updates(200) > 0


def test_small_cache_and_compute_agree_with_reference() -> None:
    rng = random.Random(11)
    small = TrieDB(MemoryNodeStore(), cache_size=3)
    none = TrieDB(MemoryNodeStore(), cache_size=0)
    contents: dict[bytes, bytes] = {}
    for _ in range(4):
        batch = {rng.randbytes(32): rng.randbytes(60) for _ in range(300)}
        root, nodes = small.compute(batch)
        assert (root, nodes) == apply_updates(small.root, small.store.get, batch)
        assert small.commit(batch) == none.commit(batch) == root
        contents.update(batch)
    assert small.root == hexary_root(contents)
    for key in list(contents)[:50]:
        assert small.get(key) == none.get(key) == contents[key]
    with pytest.raises(ValueError):
        TrieDB(MemoryNodeStore(), cache_size=-1)


def test_lmdb_reader_process_view_refreshes_on_get_meta(tmp_dir: Path) -> None:
    store = LmdbNodeStore(tmp_dir / "s")
    store.put_many({b"a" * 32: b"1"}, meta={"root": b"r1"})
    assert store.get(b"a" * 32) == b"1"
    assert store.get_meta("root") == b"r1"
    store.put_many({b"b" * 32: b"2"}, meta={"root": b"r2"})
    assert store.get_meta("root") == b"r2"
    assert store.get(b"b" * 32) == b"2"
    store.close()
