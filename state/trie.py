"""Ethereum hexary Merkle-Patricia trie: batched commit, lookups and proofs.

The semantics are exactly those of Ethereum's state trie (and of the ``trie``
package's ``HexaryTrie``): nodes are RLP lists, paths use hex-prefix encoding,
a child whose RLP encoding is shorter than 32 bytes is embedded in its parent
instead of being referenced by hash, and the root of the empty trie is
``keccak256(rlp(b""))``. The root node is always referenced by its hash, even
when its encoding is shorter than 32 bytes.

HFX keys are always 32 bytes (``keccak256(namespace || id)``), keys are never
deleted and values are never empty. :func:`apply_updates` relies on this: it
rejects other keys and empty values with :class:`ValueError`.

:func:`apply_updates` applies a whole batch of inserts and replacements in one
pass. The batch is sorted once; each trie node on a touched path is decoded
once, rebuilt with all of the updates below it, then encoded and hashed once,
bottom-up. Nothing is written: the caller receives the new root and the new
nodes (``hash -> rlp``) and persists them (see :class:`TrieDB`).

The module carries a small strict RLP codec (:func:`rlp_encode`,
:func:`rlp_decode`) for the node shapes (byte strings and nested lists); it is
tested equal to the ``rlp`` package and is much faster for trie nodes.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeAlias

import sha3
from mypy_extensions import mypyc_attr

from state.keccak import keccak256
from state.nodestore import MemoryNodeStore, NodeStore, NodeStoreLike, OverlayStore

__all__ = [
    "EMPTY_ROOT",
    "KEY_SIZE",
    "DEFAULT_CACHE_SIZE",
    "CorruptTrieError",
    "MissingNodeError",
    "NodeGetter",
    "RLPDecodingError",
    "RLPItem",
    "TrieDB",
    "TrieError",
    "apply_updates",
    "get",
    "prove",
    "rlp_decode",
    "rlp_encode",
]

KEY_SIZE: Final = 32
"""Length in bytes of every key in the HFX state trie."""

BLANK_RLP: Final = b"\x80"
EMPTY_ROOT: Final = keccak256(BLANK_RLP)
"""Root hash of the empty trie: ``keccak256(rlp(b""))``."""

ROOT_META: Final = "root"
"""Name of the node-store metadata entry holding the committed root."""

RLPItem: TypeAlias = bytes | list["RLPItem"]
"""A decoded RLP item: a byte string or a (nested) list of items."""

NodeGetter: TypeAlias = Callable[[bytes], "bytes | None"]
"""Looks up a node's RLP encoding by its hash; ``None`` when unknown."""


@mypyc_attr(native_class=False)
class TrieError(Exception):
    """Base class of trie errors."""


@mypyc_attr(native_class=False)
class MissingNodeError(TrieError, KeyError):
    """A node referenced by hash is not in the node store."""

    def __init__(self, node_hash: bytes) -> None:
        super().__init__(f"missing trie node {node_hash.hex()}")
        self.node_hash = node_hash


class CorruptTrieError(TrieError):
    """A stored node is malformed or inconsistent with 32-byte keys."""


class RLPDecodingError(ValueError):
    """Input is not a single, canonically encoded RLP item."""


# ---------------------------------------------------------------------------
# RLP codec
# ---------------------------------------------------------------------------

_BYTE: Final = [bytes((i,)) for i in range(256)]


def _length_prefix(length: int, offset: int) -> bytes:
    """Header of an RLP string (``offset`` 0x80) or list (0xc0) payload."""
    if length < 56:
        return _BYTE[offset + length]
    encoded_length = length.to_bytes((length.bit_length() + 7) >> 3, "big")
    return _BYTE[offset + 55 + len(encoded_length)] + encoded_length


def _encode_bytes(data: bytes) -> bytes:
    n = len(data)
    if n == 1 and data[0] < 0x80:
        return data
    if n < 56:
        return _BYTE[0x80 + n] + data
    return _length_prefix(n, 0x80) + data


def _encode_list_payload(payload: bytes) -> bytes:
    n = len(payload)
    if n < 56:
        return _BYTE[0xC0 + n] + payload
    return _length_prefix(n, 0xC0) + payload


def rlp_encode(item: RLPItem) -> bytes:
    """RLP-encode a byte string or a (nested) list of byte strings."""
    if isinstance(item, bytes | bytearray):
        return _encode_bytes(bytes(item))
    if isinstance(item, list | tuple):
        return _encode_list_payload(b"".join([rlp_encode(x) for x in item]))
    raise TypeError(f"cannot RLP-encode {type(item).__name__}")


def _header(data: bytes, pos: int) -> tuple[bool, int, int]:
    """Parse the RLP header at ``pos``: ``(is_list, payload_start, payload_end)``.

    Enforces canonical encoding (shortest length form, no single byte below
    0x80 wrapped in a string header) and that the item fits in ``data``.
    """
    size = len(data)
    if pos >= size:
        raise RLPDecodingError("RLP input ended early")
    b = data[pos]
    if b < 0x80:
        return False, pos, pos + 1
    if b < 0xB8:
        start = pos + 1
        end = start + b - 0x80
        if b == 0x81 and (start >= size or data[start] < 0x80):
            raise RLPDecodingError("non-canonical RLP: single byte below 0x80 wrapped")
        is_list = False
    elif b < 0xC0:
        start, end = _long_length(data, pos, b - 0xB7)
        is_list = False
    elif b < 0xF8:
        start = pos + 1
        end = start + b - 0xC0
        is_list = True
    else:
        start, end = _long_length(data, pos, b - 0xF7)
        is_list = True
    if end > size:
        raise RLPDecodingError("RLP item runs past the end of the input")
    return is_list, start, end


def _long_length(data: bytes, pos: int, length_of_length: int) -> tuple[int, int]:
    start = pos + 1 + length_of_length
    if start > len(data):
        raise RLPDecodingError("RLP input ended inside a length")
    if data[pos + 1] == 0:
        raise RLPDecodingError("non-canonical RLP: length with leading zero")
    length = int.from_bytes(data[pos + 1 : start], "big")
    if length < 56:
        raise RLPDecodingError("non-canonical RLP: long form for a short length")
    return start, start + length


def _decode_at(data: bytes, pos: int) -> tuple[RLPItem, int]:
    is_list, start, end = _header(data, pos)
    if not is_list:
        return data[start:end], end
    items: list[RLPItem] = []
    p = start
    while p < end:
        item, p = _decode_at(data, p)
        items.append(item)
    if p != end:
        raise RLPDecodingError("RLP list payload length mismatch")
    return items, end


def rlp_decode(data: bytes) -> RLPItem:
    """Decode exactly one canonically encoded RLP item (strict)."""
    item, end = _decode_at(bytes(data), 0)
    if end != len(data):
        raise RLPDecodingError("trailing bytes after RLP item")
    return item


# ---------------------------------------------------------------------------
# Node model
#
# A child reference ("ref") is kept as the raw RLP of the parent's slot, so a
# parent is re-encoded by concatenating its refs: b"\x80" for an empty slot,
# b"\xa0" + hash for a hashed child, or the child's own RLP when embedded.
# Paths of decoded leaves and extensions are nibble strings in lowercase hex.
# Inside a batch, keys are 256-bit integers: nibble ``d`` of key ``k`` is
# ``(k >> (252 - 4 * d)) & 15`` and the number of leading nibbles two keys
# share comes from the bit length of their XOR.
# ---------------------------------------------------------------------------


class _Leaf:
    __slots__ = ("path", "value")

    def __init__(self, path: str, value: bytes) -> None:
        self.path = path
        self.value = value


class _Ext:
    __slots__ = ("path", "child")

    def __init__(self, path: str, child: bytes) -> None:
        self.path = path
        self.child = child


_Branch: TypeAlias = list[bytes] | tuple[bytes, ...]
_Node: TypeAlias = _Leaf | _Ext | _Branch

_NIBBLE: Final = {c: i for i, c in enumerate("0123456789abcdef")}
_EMPTY_BRANCH: Final = [BLANK_RLP] * 17
_KEY_NIBBLES: Final = 2 * KEY_SIZE
_KEY_BITS: Final = 8 * KEY_SIZE
_LEAF_EVEN: Final = b"\x20"
_HASH_REF: Final = b"\xa0"
_HEADER_TABLE_SIZE: Final = 1024
_STRING_HEADER: Final = [_length_prefix(n, 0x80) for n in range(_HEADER_TABLE_SIZE)]
_LIST_HEADER: Final = [_length_prefix(n, 0xC0) for n in range(_HEADER_TABLE_SIZE)]

_keccak = sha3.keccak_256

# Branches this shallow are cached decoded by TrieDB: every batch of a few
# thousand random keys rewrites all of them, and they are the most expensive
# to decode. Deeper branches are read from the store when touched.
_CACHE_DEPTH = 4

DEFAULT_CACHE_SIZE: Final = 8_192
"""Default bound of :class:`TrieDB`'s decoded-branch cache."""


def _encode_list(payload: bytes) -> bytes:
    n = len(payload)
    if n < _HEADER_TABLE_SIZE:
        return _LIST_HEADER[n] + payload
    return _length_prefix(n, 0xC0) + payload


def _encode_leaf_at(key: bytes, d: int, value: bytes) -> bytes:
    """Leaf for the 32-byte ``key`` below depth ``d`` (nibbles)."""
    half = d >> 1
    if d & 1:
        first = _BYTE[0x30 | (key[half] & 15)]
        rest = key[half + 1 :]
    else:
        first = _LEAF_EVEN
        rest = key[half:]
    hp_len = len(rest) + 1
    hp_header = _STRING_HEADER[hp_len] if hp_len > 1 else b""
    n = len(value)
    if n == 1 and value[0] < 0x80:
        value_header = b""
    elif n < _HEADER_TABLE_SIZE:
        value_header = _STRING_HEADER[n]
    else:
        value_header = _length_prefix(n, 0x80)
    size = len(hp_header) + hp_len + len(value_header) + n
    header = _LIST_HEADER[size] if size < _HEADER_TABLE_SIZE else _length_prefix(size, 0xC0)
    return b"".join((header, hp_header, first, rest, value_header, value))


def _encode_ext(path: str, child_ref: bytes) -> bytes:
    """Extension node with nibble ``path`` (non-empty) and a child ref."""
    hp = bytes.fromhex("1" + path) if len(path) & 1 else bytes.fromhex("00" + path)
    if len(hp) > 1:
        hp = _STRING_HEADER[len(hp)] + hp
    return _encode_list(hp + child_ref)


def _string_payload(raw: bytes) -> bytes:
    """Payload of a raw RLP string item (raises on lists)."""
    try:
        is_list, start, end = _header(raw, 0)
    except RLPDecodingError as exc:
        raise CorruptTrieError(f"malformed trie node: {exc}") from exc
    if is_list or end != len(raw):
        raise CorruptTrieError("expected an RLP string")
    return raw[start:end]


def _string_value(raw: bytes) -> bytes:
    """Payload of a raw RLP string item already bounded by its header."""
    b = raw[0]
    if b < 0x80:
        return raw
    if b < 0xB8:
        return raw[1:]
    if b == 0xB8:
        return raw[2:]
    return _string_payload(raw)


def _valid_child_ref(ref: bytes) -> bool:
    if len(ref) == 33:
        return ref[0] == 0xA0
    return ref == BLANK_RLP or (ref[0] >= 0xC0 and len(ref) < 32)


def _decode_node(enc: bytes) -> _Node:
    """Decode a node's RLP into the internal model, validating its shape."""
    try:
        size = len(enc)
        b0 = enc[0] if size else 0
        if b0 == 0xF9 and size > 2 and enc[1]:
            start, end = 3, 3 + (enc[1] << 8 | enc[2])
        elif b0 == 0xF8 and size > 1 and enc[1] >= 56:
            start, end = 2, 2 + enc[1]
        else:
            is_list, start, end = _header(enc, 0)
            if not is_list:
                raise CorruptTrieError("trie node is not an RLP list")
        if end != size:
            raise CorruptTrieError("trie node is not a single RLP list")
        raws: list[bytes] = []
        append = raws.append
        plain = True
        pos = start
        while pos < end:
            b = enc[pos]
            if b == 0x80:
                append(BLANK_RLP)
                pos += 1
                continue
            if b == 0xA0:
                item_end = pos + 33
            else:
                plain = False
                if 0x81 < b < 0xB8:
                    item_end = pos + b - 0x7F
                elif b == 0xB8 and pos + 1 < end and enc[pos + 1] >= 56:
                    item_end = pos + 2 + enc[pos + 1]
                else:
                    item_end = _header(enc, pos)[2]
            append(enc[pos:item_end])
            pos = item_end
        if pos != end:
            raise CorruptTrieError("trie node payload length mismatch")
    except RLPDecodingError as exc:
        raise CorruptTrieError(f"malformed trie node: {exc}") from exc
    count = len(raws)
    if count == 17:
        if not plain:
            for ref in raws[:16]:
                if not _valid_child_ref(ref):
                    raise CorruptTrieError("malformed child reference")
            _string_payload(raws[16])
        return raws
    if count != 2:
        raise CorruptTrieError(f"trie node with {count} items")
    hp = _string_value(raws[0]).hex()
    if not hp:
        raise CorruptTrieError("empty hex-prefix path")
    flag = hp[0]
    if flag == "0" or flag == "2":
        if hp[1] != "0":
            raise CorruptTrieError("bad hex-prefix padding")
        path = hp[2:]
    elif flag == "1" or flag == "3":
        path = hp[1:]
    else:
        raise CorruptTrieError("bad hex-prefix flag")
    if flag >= "2":
        return _Leaf(path, _string_value(raws[1]))
    child = raws[1]
    if not path or child == BLANK_RLP or not _valid_child_ref(child):
        raise CorruptTrieError("malformed extension node")
    return _Ext(path, child)


# ---------------------------------------------------------------------------
# Batched update
# ---------------------------------------------------------------------------


def _sorted_keys(updates: Mapping[Any, object]) -> list[bytes]:
    """The keys of a validated batch, sorted (untyped items: the compiled module would
    raise TypeError, not this ValueError, on a key or value of another type)."""
    keys: list[bytes] = []
    for key, value in updates.items():
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"trie keys must be {KEY_SIZE} bytes")
        if not isinstance(value, bytes):
            raise ValueError("trie values must be bytes")
        if not value:
            raise ValueError("empty trie values are not allowed")
        keys.append(key)
    keys.sort()
    return keys


class _Committer:
    """One batch: rebuilds the touched paths and collects the new nodes.

    After :meth:`run`, ``nodes`` holds every new hashed node (``hash -> rlp``),
    ``branches`` the new hashed branches as ``(depth, hash, refs)``, and
    ``loaded`` the hashes of the nodes the batch replaced.
    """

    __slots__ = ("_get_node", "_cache", "_kb", "_vs", "_ki", "nodes", "branches", "loaded")

    def __init__(self, get_node: NodeGetter, cache: Mapping[bytes, _Branch] | None) -> None:
        self._get_node = get_node
        self._cache: Mapping[bytes, _Branch] = {} if cache is None else cache
        self._kb: list[bytes] = []
        self._vs: list[bytes] = []
        self._ki: list[int] = []
        self.nodes: dict[bytes, bytes] = {}
        self.branches: list[tuple[int, bytes, list[bytes]]] = []
        self.loaded: list[bytes] = []

    def _load(self, node_hash: bytes) -> _Node:
        """Decoded node by hash (from the decoded-branch cache when present)."""
        self.loaded.append(node_hash)
        cached = self._cache.get(node_hash)
        if cached is not None:
            return cached
        enc = self._get_node(node_hash)
        if enc is None:
            raise MissingNodeError(node_hash)
        return _decode_node(enc)

    def _resolve(self, ref: bytes) -> _Node | None:
        if len(ref) == 33:
            return self._load(ref[1:])
        if ref == BLANK_RLP:
            return None
        return _decode_node(ref)

    def _ref(self, enc: bytes) -> bytes:
        if len(enc) < 32:
            return enc
        node_hash: bytes = _keccak(enc).digest()
        self.nodes[node_hash] = enc
        return _HASH_REF + node_hash

    def _branch_ref(self, refs: list[bytes], d: int) -> bytes:
        payload = b"".join(refs)
        n = len(payload)
        enc = (_LIST_HEADER[n] if n < _HEADER_TABLE_SIZE else _length_prefix(n, 0xC0)) + payload
        if len(enc) < 32:
            return enc
        node_hash: bytes = _keccak(enc).digest()
        self.nodes[node_hash] = enc
        if d < _CACHE_DEPTH:
            self.branches.append((d, node_hash, refs))
        return _HASH_REF + node_hash

    def run(self, root: bytes, updates: Mapping[bytes, bytes]) -> bytes:
        """Apply ``updates`` (validated here) on top of ``root``; new root."""
        keys = _sorted_keys(updates)
        if not keys:
            return root
        self._kb = keys
        self._vs = [updates[k] for k in keys]
        self._ki = [int.from_bytes(k, "big") for k in keys]
        node = None if root == EMPTY_ROOT else self._load(root)
        ref = self._subtrie_ref(node, 0, 0, len(keys))
        if len(ref) == 33:
            return ref[1:]
        # An embedded root (< 32 bytes) is still referenced by its hash.
        new_root: bytes = _keccak(ref).digest()
        self.nodes[new_root] = ref
        return new_root

    # -- subtries made only of new items ------------------------------------

    def _fresh(
        self, kb: list[bytes], vs: list[bytes], ki: list[int], d: int, lo: int, hi: int
    ) -> bytes:
        """Ref of the new subtrie at depth ``d`` holding items ``lo:hi``."""
        if hi - lo == 1:
            return self._ref(_encode_leaf_at(kb[lo], d, vs[lo]))
        common = _KEY_NIBBLES - (((ki[lo] ^ ki[hi - 1]).bit_length() + 3) >> 2)
        if common > d:
            child = self._fresh_branch(kb, vs, ki, common, lo, hi)
            return self._ref(_encode_ext(kb[lo].hex()[d:common], child))
        return self._fresh_branch(kb, vs, ki, d, lo, hi)

    def _fresh_branch(
        self, kb: list[bytes], vs: list[bytes], ki: list[int], d: int, lo: int, hi: int
    ) -> bytes:
        refs = _EMPTY_BRANCH.copy()
        nodes = self.nodes
        shift = _KEY_BITS - 4 - 4 * d
        i = lo
        while i < hi:
            top = ki[i] >> shift
            j = i + 1
            if j < hi and ki[j] >> shift == top:
                j = bisect_left(ki, (top + 1) << shift, j + 1, hi)
                refs[top & 15] = self._fresh(kb, vs, ki, d + 1, i, j)
            else:
                # A single item: its leaf, inline.
                enc = _encode_leaf_at(kb[i], d + 1, vs[i])
                if len(enc) < 32:
                    refs[top & 15] = enc
                else:
                    node_hash: bytes = _keccak(enc).digest()
                    nodes[node_hash] = enc
                    refs[top & 15] = _HASH_REF + node_hash
            i = j
        return self._branch_ref(refs, d)

    # -- merging items into an existing node ---------------------------------

    def _subtrie_ref(self, node: _Node | None, d: int, lo: int, hi: int) -> bytes:
        """Ref of ``node`` (at depth ``d``) with items ``lo:hi`` applied."""
        if node is None:
            return self._fresh(self._kb, self._vs, self._ki, d, lo, hi)
        if isinstance(node, _Leaf):
            return self._merge_leaf(node, d, lo, hi)
        if isinstance(node, _Ext):
            return self._merge_ext(node, d, lo, hi)
        if d >= _KEY_NIBBLES:
            raise CorruptTrieError("branch node below key depth")
        # Cached branches are shared tuples; freshly decoded ones are ours.
        refs = node if isinstance(node, list) else list(node)
        kb, vs, ki = self._kb, self._vs, self._ki
        nodes = self.nodes
        cache = self._cache
        loaded = self.loaded
        get_node = self._get_node
        subtrie = self._subtrie_ref
        shift = _KEY_BITS - 4 - 4 * d
        i = lo
        while i < hi:
            top = ki[i] >> shift
            j = i + 1
            if j < hi and ki[j] >> shift == top:
                j = bisect_left(ki, (top + 1) << shift, j + 1, hi)
            n = top & 15
            slot = refs[n]
            if len(slot) == 33:
                # A hashed child: load it (inline _load) and merge.
                node_hash = slot[1:]
                loaded.append(node_hash)
                child: _Node | None = cache.get(node_hash)
                if child is None:
                    enc = get_node(node_hash)
                    if enc is None:
                        raise MissingNodeError(node_hash)
                    child = _decode_node(enc)
                refs[n] = subtrie(child, d + 1, i, j)
            elif slot != BLANK_RLP:
                refs[n] = subtrie(_decode_node(slot), d + 1, i, j)
            elif j - i > 1:
                refs[n] = self._fresh(kb, vs, ki, d + 1, i, j)
            else:
                # A new key in an empty slot: its leaf, inline.
                enc = _encode_leaf_at(kb[i], d + 1, vs[i])
                if len(enc) < 32:
                    refs[n] = enc
                else:
                    new_hash: bytes = _keccak(enc).digest()
                    nodes[new_hash] = enc
                    refs[n] = _HASH_REF + new_hash
            i = j
        return self._branch_ref(refs, d)

    def _merge_leaf(self, leaf: _Leaf, d: int, lo: int, hi: int) -> bytes:
        if len(leaf.path) + d != _KEY_NIBBLES:
            raise CorruptTrieError("leaf path inconsistent with 32-byte keys")
        kb, vs, ki = self._kb, self._vs, self._ki
        low_bits = _KEY_BITS - 4 * d
        leaf_ki = (ki[lo] >> low_bits << low_bits) | int(leaf.path, 16) if leaf.path else ki[lo]
        if hi - lo == 1 and ki[lo] == leaf_ki:
            return self._ref(_encode_leaf_at(kb[lo], d, vs[lo]))
        if hi - lo == 1:
            # The common case: one new key next to the existing leaf.
            return self._pair(kb[lo], ki[lo], vs[lo], leaf_ki, leaf.value, d)
        idx = bisect_left(ki, leaf_ki, lo, hi)
        if idx < hi and ki[idx] == leaf_ki:
            # The existing leaf is replaced by one of the updates.
            return self._fresh(kb, vs, ki, d, lo, hi)
        sub_kb = kb[lo:idx]
        sub_kb.append(leaf_ki.to_bytes(KEY_SIZE, "big"))
        sub_kb += kb[idx:hi]
        sub_vs = vs[lo:idx]
        sub_vs.append(leaf.value)
        sub_vs += vs[idx:hi]
        sub_ki = ki[lo:idx]
        sub_ki.append(leaf_ki)
        sub_ki += ki[idx:hi]
        return self._fresh(sub_kb, sub_vs, sub_ki, d, 0, len(sub_ki))

    def _pair(
        self, key: bytes, key_int: int, value: bytes, other_int: int, other_value: bytes, d: int
    ) -> bytes:
        """Ref of the subtrie at depth ``d`` holding exactly two distinct keys."""
        common = _KEY_NIBBLES - (((key_int ^ other_int).bit_length() + 3) >> 2)
        shift = _KEY_BITS - 4 - 4 * common
        refs = _EMPTY_BRANCH.copy()
        refs[(key_int >> shift) & 15] = self._ref(_encode_leaf_at(key, common + 1, value))
        other = other_int.to_bytes(KEY_SIZE, "big")
        refs[(other_int >> shift) & 15] = self._ref(_encode_leaf_at(other, common + 1, other_value))
        branch = self._branch_ref(refs, common)
        if common > d:
            return self._ref(_encode_ext(key.hex()[d:common], branch))
        return branch

    def _merge_ext(self, ext: _Ext, d: int, lo: int, hi: int) -> bytes:
        kb, vs, ki = self._kb, self._vs, self._ki
        path = ext.path
        plen = len(path)
        end = d + plen
        if end >= _KEY_NIBBLES:
            raise CorruptTrieError("extension path reaches key depth")
        # Nibbles all items share from depth d, and the first item with the path.
        shared = _KEY_NIBBLES - (((ki[lo] ^ ki[hi - 1]).bit_length() + 3) >> 2) - d
        segment = (ki[lo] >> (_KEY_BITS - 4 * end)) & ((1 << (4 * plen)) - 1)
        with_path = plen - (((segment ^ int(path, 16)).bit_length() + 3) >> 2)
        cp = min(shared, with_path)
        if cp >= plen:
            child = self._resolve(ext.child)
            return self._ref(_encode_ext(path, self._subtrie_ref(child, end, lo, hi)))
        # Split the extension with a branch at depth bd = d + cp (cp < plen).
        bd = d + cp
        ext_nibble = _NIBBLE[path[cp]]
        rest = path[cp + 1 :]
        refs = _EMPTY_BRANCH.copy()
        shift = _KEY_BITS - 4 - 4 * bd
        merged = False
        i = lo
        while i < hi:
            top = ki[i] >> shift
            j = i + 1
            if j < hi and ki[j] >> shift == top:
                j = bisect_left(ki, (top + 1) << shift, j + 1, hi)
            n = top & 15
            if n == ext_nibble:
                target = _Ext(rest, ext.child) if rest else self._resolve(ext.child)
                refs[n] = self._subtrie_ref(target, bd + 1, i, j)
                merged = True
            else:
                refs[n] = self._fresh(kb, vs, ki, bd + 1, i, j)
            i = j
        if not merged:
            refs[ext_nibble] = self._ref(_encode_ext(rest, ext.child)) if rest else ext.child
        branch = self._branch_ref(refs, bd)
        if cp:
            return self._ref(_encode_ext(path[:cp], branch))
        return branch


def apply_updates(
    root: bytes,
    get_node: NodeGetter,
    updates: Mapping[bytes, bytes],
) -> tuple[bytes, dict[bytes, bytes]]:
    """Apply a batch of inserts/replacements to the trie at ``root``.

    ``get_node`` maps a node hash to its RLP (``None`` if unknown; e.g.
    ``store.get`` or ``dict.get``). Keys must be 32 bytes and values non-empty
    bytes (:class:`ValueError` otherwise). Nothing is written: returns the new
    root and the new nodes ``{hash: rlp}`` (every dirty node, hashed once; it
    includes the new root node). Raises :class:`MissingNodeError` if a node on
    a touched path is unknown.
    """
    committer = _Committer(get_node, None)
    new_root = committer.run(root, updates)
    return new_root, committer.nodes


# ---------------------------------------------------------------------------
# Lookups and proofs
# ---------------------------------------------------------------------------


def _walk(
    root: bytes,
    key: bytes,
    load_encoded: NodeGetter,
    proof: list[bytes] | None,
    cache: Mapping[bytes, _Branch] | None = None,
) -> bytes | None:
    """Follow ``key`` from ``root``: its value or ``None``.

    Appends the RLP of every hashed node on the way to ``proof`` if given.
    ``cache`` (decoded branches by hash) is consulted before ``load_encoded``.
    """
    if root == EMPTY_ROOT:
        return None
    path = key.hex()
    d = 0
    node_hash = root
    while True:
        node: _Node | None = None if cache is None else cache.get(node_hash)
        if node is None:
            enc = load_encoded(node_hash)
            if enc is None:
                raise MissingNodeError(node_hash)
            if proof is not None:
                proof.append(enc)
            node = _decode_node(enc)
        while True:
            if isinstance(node, _Leaf):
                return node.value if path[d:] == node.path else None
            if isinstance(node, _Ext):
                if not path.startswith(node.path, d):
                    return None
                d += len(node.path)
                ref = node.child
            else:
                if d == len(path):
                    return _string_payload(node[16]) or None
                ref = node[_NIBBLE[path[d]]]
                d += 1
            if len(ref) == 33:
                node_hash = ref[1:]
                break
            if ref == BLANK_RLP:
                return None
            node = _decode_node(ref)


def get(root: bytes, key: bytes, get_node: NodeGetter) -> bytes | None:
    """Value stored under ``key`` in the trie at ``root``, or ``None``."""
    return _walk(root, bytes(key), get_node, None)


def prove(root: bytes, key: bytes, get_node: NodeGetter) -> list[bytes]:
    """EIP-1186 proof of ``key`` (present or absent) in the trie at ``root``.

    Returns the RLP encodings of the hashed nodes from the root down to the
    leaf, or to the node where the key's path diverges. Embedded (< 32 byte)
    nodes are part of their parent and are not separate elements. The proof of
    any key in the empty trie is ``[]``.
    """
    proof: list[bytes] = []
    _walk(root, bytes(key), get_node, proof)
    return proof


# ---------------------------------------------------------------------------
# Store-backed trie
# ---------------------------------------------------------------------------


class TrieDB:
    """A trie persisted in a node store, with a committed root pointer.

    :meth:`commit` writes the new nodes and the new root (metadata entry
    ``"root"``) in one atomic store transaction. The branches of the top four
    levels (at most 4,369), which every large batch rewrites, are kept decoded
    in memory; nodes are immutable, so the cache never goes stale. Not
    thread-safe.
    """

    def __init__(
        self,
        store: NodeStoreLike,
        root: bytes | None = None,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        close_store: bool = True,
    ) -> None:
        """Wrap ``store``; the root defaults to the store's committed root.

        ``cache_size`` bounds the number of decoded branches kept in memory
        (about 1.3 kB each; 0 disables the cache). ``close_store`` makes
        :meth:`close` close the store.
        """
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._store = store
        if root is None:
            root = store.get_meta(ROOT_META)
        self._root = EMPTY_ROOT if root is None else root
        self._cache: dict[bytes, _Branch] = {}
        self._cache_size = cache_size
        self._close_store = close_store

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        sync: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> TrieDB:
        """Open (creating if needed) the on-disk trie at ``path`` (a directory).

        ``sync=False`` skips the fsync at each commit: faster, and still
        atomic and consistent, but an operating-system crash or power loss
        may undo the latest commits (a process crash loses nothing).
        """
        return cls(NodeStore(path, sync=sync), cache_size=cache_size)

    @classmethod
    def in_memory(cls) -> TrieDB:
        """A trie over a fresh :class:`~state.nodestore.MemoryNodeStore`."""
        return cls(MemoryNodeStore())

    @property
    def root(self) -> bytes:
        """The committed root hash."""
        return self._root

    @property
    def store(self) -> NodeStoreLike:
        """The underlying node store."""
        return self._store

    def get(self, key: bytes, root: bytes | None = None) -> bytes | None:
        """Value under ``key`` at ``root`` (default: committed root), or None."""
        return _walk(
            self._root if root is None else root,
            bytes(key),
            self._store.get,
            None,
            self._cache if self._cache_size else None,
        )

    def prove(self, key: bytes, root: bytes | None = None) -> list[bytes]:
        """EIP-1186 proof nodes for ``key`` at ``root`` (default: committed)."""
        return prove(self._root if root is None else root, key, self._store.get)

    def _compute(
        self, updates: Mapping[bytes, bytes], root: bytes | None
    ) -> tuple[bytes, _Committer]:
        committer = _Committer(self._store.get, self._cache if self._cache_size else None)
        new_root = committer.run(self._root if root is None else root, updates)
        return new_root, committer

    def compute(
        self, updates: Mapping[bytes, bytes], root: bytes | None = None
    ) -> tuple[bytes, dict[bytes, bytes]]:
        """New root and new nodes of ``root`` (default: committed) + ``updates``.

        Nothing is persisted (see :func:`apply_updates`).
        """
        new_root, committer = self._compute(updates, root)
        return new_root, committer.nodes

    def root_of(self, updates: Mapping[bytes, bytes], root: bytes | None = None) -> bytes:
        """Root of ``root`` (default: committed) with ``updates``; not persisted."""
        return self._compute(updates, root)[0]

    def commit(self, updates: Mapping[bytes, bytes]) -> bytes:
        """Apply ``updates`` to the committed root and persist atomically.

        The new nodes and the new root pointer are written in one store
        transaction. Returns the new root. On error nothing is written.
        """
        if not updates:
            return self._root
        new_root, committer = self._compute(updates, None)
        self._store.put_many(committer.nodes, meta={ROOT_META: new_root})
        self._root = new_root
        self._update_cache(committer)
        return new_root

    def _update_cache(self, committer: _Committer) -> None:
        """Drop the replaced nodes; add the new branches, shallowest first."""
        if not self._cache_size:
            return
        cache = self._cache
        for node_hash in committer.loaded:
            cache.pop(node_hash, None)
        branches = committer.branches
        room = self._cache_size - len(cache)
        if len(branches) > room:
            branches = sorted(branches, key=lambda entry: entry[0])[: max(room, 0)]
        for _, node_hash, refs in branches:
            cache[node_hash] = tuple(refs)

    def overlay(self) -> TrieDB:
        """A trie at the committed root whose commits stay in memory.

        Reads fall through to this trie's store, which is never written. Use
        for replay: commit transaction by transaction and read each root.
        """
        return TrieDB(
            OverlayStore(self._store), self._root, cache_size=self._cache_size, close_store=False
        )

    def close(self) -> None:
        """Close the underlying store (if this trie owns it)."""
        self._cache.clear()
        if self._close_store:
            self._store.close()

    def __enter__(self) -> TrieDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
