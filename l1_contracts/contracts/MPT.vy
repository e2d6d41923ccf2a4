# pragma version ~=0.4.3
"""
@title MPT
@license MIT
@notice Proofs against the HFX state trie: lookups (inclusion and exclusion)
        and single-key updates (insert or replace) that return the new root.
@dev The trie is Ethereum's hexary Merkle-Patricia trie: RLP nodes, hex-prefix
     paths, children whose RLP is shorter than 32 bytes embedded in their
     parent, the root always referenced by hash, the empty trie's root
     `keccak256(0x80)`. Keys are always 32 bytes (64 nibbles), never deleted,
     and values are never empty, so a branch never carries a value.

     A proof is the EIP-1186 list of hashed nodes from the root down to the
     leaf (or to the node where the key's path ends or diverges), passed as
     the concatenation of the nodes' RLP encodings (each node is one
     self-delimiting RLP list). Embedded nodes are part of their parent and
     are not separate elements. The proof of any key in the empty trie is
     empty. Every node of the proof must be used, in order.

     The module is stateless: import it and call `MPT._get` / `MPT._update`
     (no `uses` or `initializes` needed). Malformed or inconsistent proofs
     revert with a reason string starting with "MPT: " (see `_fail`).

     Gas: Vyper sizes every buffer for its maximum, so slicing the proof
     (up to MAX_PROOF bytes) would reserve that much memory per slice.
     Instead each hashed node is parsed in a fixed-size window (MAX_NODE
     bytes of the proof copied out, then 32 zero bytes), read with
     `extract32`. See docs/l1-mpt.md for figures.

     Shifts are unchecked in Vyper: those here drop bits on purpose, and a
     shift by 256 or more yields 0 where a path can be empty.
"""

# Largest leaf value (the prices leaf: 144 + 64 * 32 bytes).
MAX_VALUE: constant(uint256) = 2192
# RLP string of a MAX_VALUE value: 3-byte header + payload.
MAX_VALUE_ITEM: constant(uint256) = 2195
# Largest node: a leaf at depth 0 (3-byte list header, 34-byte path item)
# holding a MAX_VALUE value.
MAX_NODE: constant(uint256) = 2232
# Largest branch or extension node: 16 hash references and an empty value
# (payload 529 bytes, 3-byte header).
MAX_BRANCH: constant(uint256) = 532
# Bound on an extension node: header (at most 3 bytes), 34-byte path item,
# 33-byte child.
MAX_EXTENSION: constant(uint256) = 70
# Most nodes on one path: one node per nibble of the key, then the leaf.
MAX_PATH: constant(uint256) = 65
# Largest proof taken: 16 kB, 26 full branches above a MAX_NODE leaf. A
# longer proof (up to 64 full branches, 36,280 bytes) needs a path with more
# than 26 full branches, that is, 15 keys leaving it at each of 27 depths:
# about 16**27 (2**108) hash evaluations to grind for keccak-derived keys.
# The bound keeps every caller's memory, which Vyper sizes for it, small.
MAX_PROOF: constant(uint256) = 16384

EMPTY_ROOT: constant(bytes32) = 0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421

# Errors: every revert reason is "MPT: " and one of these messages.
PROOF_TOO_SHORT: constant(uint256) = 1
PROOF_TOO_LONG: constant(uint256) = 2
UNUSED_PROOF_BYTES: constant(uint256) = 3
NODE_IS_NOT_A_LIST: constant(uint256) = 4
NODE_TRUNCATED_OR_TOO_LONG: constant(uint256) = 5
NODE_HASH_MISMATCH: constant(uint256) = 6
BAD_EMBEDDED_NODE: constant(uint256) = 7
EMPTY_NODE: constant(uint256) = 8
NODE_WITH_ONE_ITEM: constant(uint256) = 9
BAD_PATH: constant(uint256) = 10
BAD_PATH_FLAG: constant(uint256) = 11
BAD_PATH_PADDING: constant(uint256) = 12
PATH_TOO_LONG: constant(uint256) = 13
BAD_LEAF_PATH_LENGTH: constant(uint256) = 14
BAD_LEAF_VALUE: constant(uint256) = 15
BAD_EXTENSION: constant(uint256) = 16
BAD_BRANCH: constant(uint256) = 17
BAD_BRANCH_ITEM: constant(uint256) = 18
BRANCH_WITH_A_VALUE: constant(uint256) = 19
BAD_CHILD_REFERENCE: constant(uint256) = 20
NON_CANONICAL_RLP: constant(uint256) = 21
RLP_ITEM_TOO_LONG: constant(uint256) = 22
NODE_TOO_LONG: constant(uint256) = 23
VALUE_TOO_LONG: constant(uint256) = 24
EMPTY_VALUE: constant(uint256) = 25
# The messages, end to end; message c spans [bound(c - 1), bound(c)),
# bound(i) being bits [9i, 9i + 9) of REASON_BOUNDS.
REASONS: constant(String[386]) = (
    "proof too shortproof too longunused proof bytesnode is not a list"
    "node truncated or too longnode hash mismatchbad embedded node"
    "empty nodenode with one itembad pathbad path flagbad path padding"
    "path too longbad leaf path lengthbad leaf valuebad extensionbad branch"
    "bad branch itembranch with a valuebad child referencenon-canonical RLP"
    "RLP item too longnode too longvalue too longempty value"
)
REASON_BOUNDS: constant(uint256) = 20852645329872959008948229646907317089530140646987188457081876769938944

# What a node says about a key's path (zero is never a valid status).
FOUND: constant(uint256) = 1  # a leaf with the key
EMPTY_SLOT: constant(uint256) = 2  # a branch without a child for it
LEAF_DIVERGES: constant(uint256) = 3  # a leaf with another key
EXTENSION_DIVERGES: constant(uint256) = 4  # an extension off the key's path
HASHED_CHILD: constant(uint256) = 5  # go on with the next proof node
EMBEDDED_CHILD: constant(uint256) = 6  # go on with a node inside this one

# 32 bytes of 0x80 (the RLP of an empty string: an empty branch slot).
EMPTY_SLOTS: constant(bytes32) = 0x8080808080808080808080808080808080808080808080808080808080808080
MASK_32: constant(uint256) = 4294967295  # 2**32 - 1


struct Step:
    # What the node tells about the key's path: HASHED_CHILD, EMBEDDED_CHILD
    # (follow the child reference), EMPTY_SLOT, FOUND, LEAF_DIVERGES or
    # EXTENSION_DIVERGES (the path ends here).
    status: uint256
    # Children and EMPTY_SLOT: the nibble depth of the child. Leaf and
    # extension outcomes: the depth of the node itself.
    depth: uint256
    # Leaf and extension outcomes: depth + length of the node's path.
    end: uint256
    # Leaf and extension outcomes: the key with the node's path in place of
    # nibbles [depth, end).
    path_key: uint256
    # The node's RLP list payload, then the item that matters: the child
    # reference followed (or the empty slot), the leaf's value item, or a
    # diverging extension's child reference. Offsets in the window.
    payload_start: uint256
    payload_end: uint256
    item_start: uint256
    item_end: uint256
    # FOUND: the value's offset in the window and its length.
    value_start: uint256
    value_len: uint256
    # HASHED_CHILD: the child's hash.
    child_hash: bytes32


@internal
@pure
def _get(root: bytes32, key: bytes32, proof: Bytes[MAX_PROOF]) -> (bool, Bytes[MAX_VALUE]):
    """
    @notice Look `key` up in the trie with root `root`.
    @dev Reverts if the proof is malformed or does not match the root.
    @param root The trie's root hash.
    @param key The 32-byte key (already hashed).
    @param proof The proof nodes of `key`, concatenated.
    @return True and the value if the key is present; False and an empty
            value if the proof shows it absent.
    """
    n: uint256 = len(proof)
    if root == EMPTY_ROOT:
        if not n == 0:
            self._fail(PROOF_TOO_LONG)
        return False, b""
    k: uint256 = convert(key, uint256)
    # Nodes are parsed in a copy of the proof bytes around them (see
    # `_step`); the slices stay small this way.
    window: Bytes[MAX_NODE + 32] = b""
    base: uint256 = 0  # offset of the window in the proof
    cursor: uint256 = 0  # offset of the next proof node
    start: uint256 = 0  # current node in the window: [start, end)
    end: uint256 = 0
    hashed: bool = True
    want: bytes32 = root
    s: Step = empty(Step)
    if n <= MAX_NODE:
        window = concat(convert(proof, Bytes[MAX_NODE]), empty(bytes32))
    for _: uint256 in range(MAX_PATH):
        if hashed:
            if not cursor < n:
                self._fail(PROOF_TOO_SHORT)
            # A longer proof: slide the window to the node, unless it
            # already ends at the end of the proof (base <= cursor holds).
            if n > MAX_NODE and (cursor == 0 or base < n - MAX_NODE):
                base = min(cursor, n - MAX_NODE)
                window = concat(slice(proof, base, MAX_NODE), empty(bytes32))
            start = cursor - base
        s = self._step(window, start, end, hashed, want, k, s.depth)
        if hashed:
            cursor = base + s.payload_end
        if s.status == HASHED_CHILD:
            want = s.child_hash
            hashed = True
        elif s.status == EMBEDDED_CHILD:
            start = s.item_start
            end = s.item_end
            hashed = False
        else:
            break
    if not cursor == n:
        self._fail(UNUSED_PROOF_BYTES)
    if s.status != FOUND:
        if not (s.status != HASHED_CHILD and s.status != EMBEDDED_CHILD):
            self._fail(PATH_TOO_LONG)
        return False, b""
    if not s.value_len <= MAX_VALUE:
        self._fail(VALUE_TOO_LONG)
    return True, convert(slice(window, s.value_start, s.value_len), Bytes[MAX_VALUE])


@internal
@pure
def _update(
    root: bytes32, key: bytes32, new_value: Bytes[MAX_VALUE], proof: Bytes[MAX_PROOF]
) -> (bytes32, bool, bytes32):
    """
    @notice Root of the trie `root` after setting `key` to `new_value`, and
            what the key held before.
    @dev See `_update_node`, which also returns the new root node.
    @param root The trie's root hash.
    @param key The 32-byte key (already hashed).
    @param new_value The new value (1 to MAX_VALUE bytes).
    @param proof The proof nodes of `key` against `root`, concatenated.
    @return The new root hash; whether the key was present; keccak256 of its
            old value (bytes32(0) when it was absent).
    """
    node: Bytes[MAX_NODE] = b""
    present: bool = False
    old_hash: bytes32 = empty(bytes32)
    node, present, old_hash = self._update_node(root, key, new_value, proof)
    return keccak256(node), present, old_hash


@internal
@pure
def _update_node(
    root: bytes32, key: bytes32, new_value: Bytes[MAX_VALUE], proof: Bytes[MAX_PROOF]
) -> (Bytes[MAX_NODE], bool, bytes32):
    """
    @notice Root node of the trie `root` after setting `key` to `new_value`
            (its hash is the new root), and what the key held before.
    @dev `proof` proves the key's current state against `root` (inclusion:
         the value is replaced; exclusion: the key is inserted). To write
         several keys, call again with the returned root and a proof against
         it. Reverts if the proof is malformed or does not match the root.
         The old value comes back as its hash: a caller that was told the
         key's value checks it without another proof (the same proof read
         it).
    @param root The trie's root hash.
    @param key The 32-byte key (already hashed).
    @param new_value The new value (1 to MAX_VALUE bytes).
    @param proof The proof nodes of `key` against `root`, concatenated.
    @return The new root node (the root is its hash); whether the key was
            present; keccak256 of its old value (bytes32(0) when it was
            absent).
    """
    if not len(new_value) != 0:
        self._fail(EMPTY_VALUE)
    n: uint256 = len(proof)
    k: uint256 = convert(key, uint256)
    item: Bytes[MAX_VALUE_ITEM] = self._encode_value(new_value)
    if root == EMPTY_ROOT:
        if not n == 0:
            self._fail(PROOF_TOO_LONG)
        return self._leaf(k, 0, item), False, empty(bytes32)

    # Walk down as in `_get`, recording each branch and extension passed.
    window: Bytes[MAX_NODE + 32] = b""
    base: uint256 = 0
    cursor: uint256 = 0
    start: uint256 = 0
    end: uint256 = 0
    hashed: bool = True
    want: bytes32 = root
    s: Step = empty(Step)
    # Per node: payload_start | payload_end << 32 | slot_start << 64 |
    # slot_end << 96, offsets in the proof.
    path: DynArray[uint256, MAX_PATH] = []
    if n <= MAX_NODE:
        window = concat(convert(proof, Bytes[MAX_NODE]), empty(bytes32))
    for _: uint256 in range(MAX_PATH):
        if hashed:
            if not cursor < n:
                self._fail(PROOF_TOO_SHORT)
            # A longer proof: slide the window to the node, unless it
            # already ends at the end of the proof (base <= cursor holds).
            if n > MAX_NODE and (cursor == 0 or base < n - MAX_NODE):
                base = min(cursor, n - MAX_NODE)
                window = concat(slice(proof, base, MAX_NODE), empty(bytes32))
            start = cursor - base
        s = self._step(window, start, end, hashed, want, k, s.depth)
        if hashed:
            cursor = base + s.payload_end
        if s.status != HASHED_CHILD and s.status != EMBEDDED_CHILD and s.status != EMPTY_SLOT:
            break
        path.append(
            (base + s.payload_start)
            | ((base + s.payload_end) << 32)
            | ((base + s.item_start) << 64)
            | ((base + s.item_end) << 96)
        )
        if s.status == EMPTY_SLOT:
            break
        want = s.child_hash
        hashed = s.status == HASHED_CHILD
        start = s.item_start
        end = s.item_end
    if not cursor == n:
        self._fail(UNUSED_PROOF_BYTES)
    if not (s.status != HASHED_CHILD and s.status != EMBEDDED_CHILD):
        self._fail(PATH_TOO_LONG)
    old_present: bool = s.status == FOUND
    old_hash: bytes32 = empty(bytes32)
    if old_present:
        if not s.value_len <= MAX_VALUE:
            self._fail(VALUE_TOO_LONG)
        old_hash = keccak256(slice(window, s.value_start, s.value_len))

    # The new subtree in place of the terminal leaf or extension, or in the
    # empty slot.
    node: Bytes[MAX_NODE] = b""
    if s.status == FOUND or s.status == EMPTY_SLOT:
        node = self._leaf(k, s.depth, item)
    else:
        # The leaf or extension diverges from the key at nibble `split`: a
        # branch there holds the old and the new subtrees.
        split: uint256 = 64 - self._nibble_len(k ^ s.path_key)
        new_ref: Bytes[33] = self._ref(self._leaf(k, split + 1, item))
        old_ref: Bytes[33] = b""
        if s.status == LEAF_DIVERGES:
            if not s.item_end - s.item_start <= MAX_VALUE_ITEM:
                self._fail(VALUE_TOO_LONG)
            old_item: Bytes[MAX_VALUE_ITEM] = convert(
                slice(window, s.item_start, s.item_end - s.item_start), Bytes[MAX_VALUE_ITEM]
            )
            old_ref = self._ref(self._leaf(s.path_key, split + 1, old_item))
        else:
            old_ref = convert(slice(window, s.item_start, s.item_end - s.item_start), Bytes[33])
            if split + 1 < s.end:
                old_ref = self._ref(self._extension(s.path_key, split + 1, s.end, old_ref))
        node = self._branch2(
            self._nibble(s.path_key, split), old_ref, self._nibble(k, split), new_ref
        )
        if split > s.depth:
            node = self._extension(k, s.depth, split, self._ref(node))

    # Rebuild the path bottom-up: each node gets its child's new reference.
    count: uint256 = len(path)
    head: Bytes[MAX_BRANCH] = b""
    tail: Bytes[MAX_BRANCH] = b""
    for i: uint256 in range(MAX_PATH):
        if i == count:
            break
        packed: uint256 = path[count - 1 - i]
        payload_start: uint256 = packed & MASK_32
        payload_end: uint256 = (packed >> 32) & MASK_32
        slot_start: uint256 = (packed >> 64) & MASK_32
        slot_end: uint256 = packed >> 96
        if n > MAX_NODE and (payload_start < base or payload_end > base + MAX_NODE):
            base = min(payload_start, n - MAX_NODE)
            window = concat(slice(proof, base, MAX_NODE), empty(bytes32))
        head = convert(
            slice(window, payload_start - base, slot_start - payload_start), Bytes[MAX_BRANCH]
        )
        tail = convert(slice(window, slot_end - base, payload_end - slot_end), Bytes[MAX_BRANCH])
        if payload_end - payload_start == 529 and slot_end - slot_start == 33 and len(node) >= 32:
            # A full branch keeps its size (a hash replaces a hash), hence
            # its header: 0xf9 0x0211.
            node = concat(x"f90211", head, x"a0", keccak256(node), tail)
        else:
            node = self._list(concat(head, self._ref(node), tail))
    return node, old_present, old_hash


@internal
@pure
def _step(
    window: Bytes[MAX_NODE + 32],
    start: uint256,
    end: uint256,
    hashed: bool,
    want: bytes32,
    key: uint256,
    depth: uint256,
) -> Step:
    """
    @notice Parse one node of `key`'s path and say where the path goes next.
    @dev `window` holds proof bytes followed by 32 zero bytes, so a word
         can be read at any offset inside the proof bytes. A hashed node
         starts at `start` and must hash to `want`; an embedded node spans
         [start, end). Checks the node's shape and canonical RLP.
    @param window Proof bytes around the node, then 32 zero bytes.
    @param start Offset of the node in the window.
    @param end End of an embedded node in the window (unused if hashed).
    @param hashed Whether the node is a proof node (else embedded).
    @param want The hash a proof node must have.
    @param key The key looked up.
    @param depth Nibbles of the key consumed above the node.
    @return What the node says (see `Step`).
    """
    s: Step = empty(Step)
    limit: uint256 = len(window) - 32  # proof bytes in the window
    header: uint256 = 0
    size: uint256 = 0
    is_list: bool = False
    first: uint256 = extract32(window, start, output_type=uint256)
    if first >> 232 == 16318993:
        # 0xf90211: the header of a full branch's 529-byte payload (what
        # `_item` would decode, without the call).
        header = 3
        size = 529
    else:
        header, size, is_list = self._item(first)
        if not is_list:
            self._fail(NODE_IS_NOT_A_LIST)
    payload_start: uint256 = start + header
    payload_end: uint256 = payload_start + size
    if hashed:
        if not payload_end <= limit:
            self._fail(NODE_TRUNCATED_OR_TOO_LONG)
        if not keccak256(slice(window, start, payload_end - start)) == want:
            self._fail(NODE_HASH_MISMATCH)
    else:
        if not payload_end == end:
            self._fail(BAD_EMBEDDED_NODE)
    s.payload_start = payload_start
    s.payload_end = payload_end

    # A branch of sixteen hashes and an empty value (the general case below
    # reaches the same result, reading more): a 529-byte payload whose first
    # two items are 32-byte strings is not a leaf or extension (those would
    # end at byte 66) and can only be that branch (an embedded child is
    # under 32 bytes, an empty slot one byte), so the key's slot is at a
    # fixed offset.
    if payload_end - payload_start == 529 and depth < 64:
        if (
            extract32(window, payload_start, output_type=uint256) >> 248 == 160
            and extract32(window, payload_start + 33, output_type=uint256) >> 248 == 160
        ):
            slot: uint256 = payload_start + 33 * ((key >> (252 - 4 * depth)) & 15)
            if not extract32(window, slot, output_type=uint256) >> 248 == 160:
                self._fail(BAD_BRANCH_ITEM)
            if not extract32(window, payload_end - 1, output_type=uint256) >> 248 == 128:
                self._fail(BRANCH_WITH_A_VALUE)
            s.depth = depth + 1
            s.item_start = slot
            s.item_end = slot + 33
            s.status = HASHED_CHILD
            s.child_hash = extract32(window, slot + 1)
            return s

    # Leaf and extension nodes have two items, branches seventeen.
    if not payload_start < payload_end:
        self._fail(EMPTY_NODE)
    path_word: uint256 = extract32(window, payload_start, output_type=uint256)
    header, size, is_list = self._item(path_word)
    path_is_list: bool = is_list
    path_header: uint256 = header
    path_size: uint256 = size
    second_start: uint256 = payload_start + header + size
    if not second_start < payload_end:
        self._fail(NODE_WITH_ONE_ITEM)
    second_word: uint256 = extract32(window, second_start, output_type=uint256)
    header, size, is_list = self._item(second_word)
    second_end: uint256 = second_start + header + size
    lead: uint256 = 0

    if second_end == payload_end:
        # Leaf or extension: a hex-prefix path, then the value or the child.
        if not (not path_is_list and path_size != 0 and path_size <= 33):
            self._fail(BAD_PATH)
        path_start: uint256 = payload_start + path_header
        if path_header != 0:
            path_word = extract32(window, path_start, output_type=uint256)
        flag: uint256 = path_word >> 252
        if not flag <= 3:
            self._fail(BAD_PATH_FLAG)
        odd: uint256 = flag & 1
        if not (odd == 1 or (path_word >> 248) & 15 == 0):
            self._fail(BAD_PATH_PADDING)
        length: uint256 = 2 * path_size - 2 + odd  # nibbles
        path_end: uint256 = depth + length
        if not path_end <= 64:
            self._fail(PATH_TOO_LONG)
        path: uint256 = 0
        if path_size == 33:
            # 64 nibbles after the flag byte (a leaf at the root).
            path = extract32(window, path_start + 1, output_type=uint256)
        else:
            # Drop the bytes after the path, then the flag nibble(s).
            path = (path_word >> (256 - 8 * path_size)) & (max_value(uint256) >> (256 - 4 * length))
        low_bits: uint256 = 256 - 4 * path_end  # bits of the key below the path
        mask: uint256 = (max_value(uint256) >> (256 - 4 * length)) << low_bits
        path_key: uint256 = (key & ~mask) | (path << low_bits)
        s.depth = depth
        s.end = path_end
        s.path_key = path_key
        s.item_start = second_start
        s.item_end = second_end
        if flag >= 2:
            # Leaf: the path must reach the end of the key.
            if not path_end == 64:
                self._fail(BAD_LEAF_PATH_LENGTH)
            if not (not is_list and size != 0):
                self._fail(BAD_LEAF_VALUE)
            if path_key == key:
                s.status = FOUND
                s.value_start = second_start + header
                s.value_len = size
            else:
                s.status = LEAF_DIVERGES
            return s
        # Extension: a non-empty path to a branch above the key's end,
        # referenced by hash or embedded.
        if not (length != 0 and path_end < 64):
            self._fail(BAD_EXTENSION)
        lead = second_word >> 248
        if not (lead == 160 or (lead >= 192 and second_end - second_start < 32)):
            self._fail(BAD_EXTENSION)
        if path_key != key:
            s.status = EXTENSION_DIVERGES
            return s
        s.depth = path_end
    else:
        # Branch: sixteen child references, then an empty value.
        if not depth < 64:
            self._fail(PATH_TOO_LONG)
        nibble: uint256 = (key >> (252 - 4 * depth)) & 15
        pos: uint256 = payload_start
        if payload_end - payload_start == 529:
            # Sixteen hashes and the empty value: the only valid branch of
            # this size (an embedded child is under 32 bytes, an empty slot
            # one byte), so the key's slot is at a fixed offset.
            second_start = payload_start + 33 * nibble
            pos = payload_end - 1
            lead = extract32(window, second_start, output_type=uint256) >> 248
            if not lead == 160:
                self._fail(BAD_BRANCH_ITEM)
        else:
            # Skip the children before the key's slot, then the rest.
            # `word` holds the window's bytes from `pos` on: an empty slot
            # (one byte) shifts it by a byte, any other child reads it again
            # (at most 16 shifts follow a read, so its top byte is always
            # the byte at `pos`).
            # Unchecked additions: pos < len(window) when a child is read
            # (extract32 checks it) and a child is at most 33 bytes, so pos
            # cannot overflow.
            word: uint256 = extract32(window, pos, output_type=uint256)
            for _: uint256 in range(nibble, bound=16):
                lead = word >> 248
                if lead == 128:
                    pos = unsafe_add(pos, 1)
                    word = word << 8
                else:
                    if lead == 160:
                        pos = unsafe_add(pos, 33)
                    else:
                        # An embedded node: a list shorter than 32 bytes.
                        if not (lead >= 192 and lead < 223):
                            self._fail(BAD_BRANCH_ITEM)
                        pos = unsafe_add(pos, lead - 191)
                    word = extract32(window, pos, output_type=uint256)
            second_start = pos
            for _: uint256 in range(16 - nibble, bound=16):
                lead = word >> 248
                if lead == 128:
                    pos = unsafe_add(pos, 1)
                    word = word << 8
                else:
                    if lead == 160:
                        pos = unsafe_add(pos, 33)
                    else:
                        if not (lead >= 192 and lead < 223):
                            self._fail(BAD_BRANCH_ITEM)
                        pos = unsafe_add(pos, lead - 191)
                    word = extract32(window, pos, output_type=uint256)
        if not pos + 1 == payload_end:
            self._fail(BAD_BRANCH)
        if not extract32(window, pos, output_type=uint256) >> 248 == 128:
            self._fail(BRANCH_WITH_A_VALUE)
        lead = extract32(window, second_start, output_type=uint256) >> 248
        second_end = second_start + 1
        if lead == 160:
            second_end = second_start + 33
        elif lead != 128:
            second_end = second_start + lead - 191
        s.depth = depth + 1

    s.item_start = second_start
    s.item_end = second_end
    if lead == 128:
        s.status = EMPTY_SLOT
    elif lead == 160:
        if not second_end - second_start == 33:
            self._fail(BAD_CHILD_REFERENCE)
        s.status = HASHED_CHILD
        s.child_hash = extract32(window, second_start + 1)
    else:
        if not (lead >= 192 and second_end - second_start < 32):
            self._fail(BAD_CHILD_REFERENCE)
        s.status = EMBEDDED_CHILD
    return s


@internal
@pure
def _item(word: uint256) -> (uint256, uint256, bool):
    """
    @notice Decode the RLP header at the start of `word`.
    @dev Rejects non-canonical headers and lengths of 64 KiB or more.
    @param word The 32 bytes starting at the item.
    @return The header's length, the payload's length and whether the item
            is a list. A single byte below 0x80 has no header.
    """
    lead: uint256 = word >> 248
    if lead < 128:
        return 0, 1, False
    if lead < 184:
        if not (lead != 129 or (word >> 240) & 255 >= 128):
            self._fail(NON_CANONICAL_RLP)
        return 1, lead - 128, False
    if lead >= 192 and lead < 248:
        return 1, lead - 192, True
    # Long form: one or two length bytes.
    length_size: uint256 = lead - 183
    is_list: bool = False
    if lead >= 248:
        length_size = lead - 247
        is_list = True
    length: uint256 = 0
    if length_size == 1:
        length = (word >> 240) & 255
        if not length >= 56:
            self._fail(NON_CANONICAL_RLP)
    else:
        if not length_size == 2:
            self._fail(RLP_ITEM_TOO_LONG)
        length = (word >> 232) & 65535
        if not length >= 256:
            self._fail(NON_CANONICAL_RLP)
    return 1 + length_size, length, is_list


@internal
@pure
def _nibble(key: uint256, index: uint256) -> uint256:
    """
    @notice Nibble `index` (0 = most significant) of a 64-nibble key.
    @param key The key as an integer.
    @param index The nibble's position, below 64.
    @return The nibble.
    """
    return (key >> (252 - 4 * index)) & 15


@internal
@pure
def _nibble_len(x: uint256) -> uint256:
    """
    @notice Number of significant nibbles of `x` (0 for 0).
    @param x The integer.
    @return The length of `x` in nibbles.
    """
    v: uint256 = x
    count: uint256 = 0
    if v >> 128 != 0:
        v = v >> 128
        count = 32
    if v >> 64 != 0:
        v = v >> 64
        count += 16
    if v >> 32 != 0:
        v = v >> 32
        count += 8
    if v >> 16 != 0:
        v = v >> 16
        count += 4
    if v >> 8 != 0:
        v = v >> 8
        count += 2
    if v >> 4 != 0:
        v = v >> 4
        count += 1
    if v != 0:
        count += 1
    return count


@internal
@pure
def _header(offset: uint256, length: uint256) -> Bytes[3]:
    """
    @notice RLP header of a string (`offset` 0x80) or list (0xc0) payload.
    @param offset 0x80 for a string, 0xc0 for a list.
    @param length The payload's length, below 65536.
    @return The header.
    """
    if length < 56:
        return slice(convert((offset + length) << 248, bytes32), 0, 1)
    if length < 256:
        return slice(convert(((offset + 56) << 248) | (length << 240), bytes32), 0, 2)
    if not length < 65536:
        self._fail(NODE_TOO_LONG)
    return slice(convert(((offset + 57) << 248) | (length << 232), bytes32), 0, 3)


@internal
@pure
def _list(payload: Bytes[MAX_NODE]) -> Bytes[MAX_NODE]:
    """
    @notice RLP list with the given (already encoded) items.
    @param payload The concatenated encodings of the items.
    @return The list's encoding.
    """
    return convert(concat(self._header(192, len(payload)), payload), Bytes[MAX_NODE])


@internal
@pure
def _encode_value(data: Bytes[MAX_VALUE]) -> Bytes[MAX_VALUE_ITEM]:
    """
    @notice RLP string of a leaf value.
    @param data The value.
    @return Its encoding.
    """
    if len(data) == 1 and convert(slice(data, 0, 1), uint256) < 128:
        return data
    return concat(self._header(128, len(data)), data)


@internal
@pure
def _path(key: uint256, start: uint256, stop: uint256, is_leaf: bool) -> Bytes[34]:
    """
    @notice RLP string of the hex-prefix encoding of nibbles [start, stop)
            of `key`.
    @param key The 64-nibble key holding the path.
    @param start First nibble of the path.
    @param stop End of the path (exclusive), at most 64.
    @param is_leaf Whether the path is a leaf's (else an extension's).
    @return The encoded path item.
    """
    length: uint256 = stop - start
    if length == 64:
        # A leaf at the root: the flag byte then the whole key.
        return concat(x"a120", convert(key, bytes32))
    size: uint256 = length // 2 + 1  # bytes
    flag: uint256 = 0
    if is_leaf:
        flag = 2
    segment: uint256 = (key >> (256 - 4 * stop)) & (max_value(uint256) >> (256 - 4 * length))
    encoded: uint256 = 0
    if length % 2 == 1:
        encoded = ((flag + 1) << (4 * length)) | segment
    else:
        encoded = (flag << (4 * length + 4)) | segment
    hex_prefix: Bytes[32] = slice(convert(encoded << (256 - 8 * size), bytes32), 0, size)
    if size == 1:
        # A single byte below 0x40 is its own encoding.
        return hex_prefix
    # String header: size is at most 32 here.
    return concat(slice(convert((128 + size) << 248, bytes32), 0, 1), hex_prefix)


@internal
@pure
def _leaf(key: uint256, depth: uint256, item: Bytes[MAX_VALUE_ITEM]) -> Bytes[MAX_NODE]:
    """
    @notice Leaf node for `key` at nibble depth `depth`.
    @param key The leaf's key.
    @param depth Nibbles of the key above the leaf.
    @param item The value's RLP encoding.
    @return The leaf's encoding.
    """
    payload: Bytes[MAX_NODE] = concat(self._path(key, depth, 64, True), item)
    return self._list(payload)


@internal
@pure
def _extension(
    key: uint256, start: uint256, stop: uint256, child: Bytes[33]
) -> Bytes[MAX_EXTENSION]:
    """
    @notice Extension node over nibbles [start, stop) of `key`.
    @param key The key holding the path.
    @param start First nibble of the path.
    @param stop End of the path (exclusive), below 64.
    @param child The child's reference (hash or embedded node).
    @return The extension's encoding.
    """
    payload: Bytes[67] = concat(self._path(key, start, stop, False), child)
    return concat(self._header(192, len(payload)), payload)


@internal
@pure
def _branch2(
    nibble_a: uint256, ref_a: Bytes[33], nibble_b: uint256, ref_b: Bytes[33]
) -> Bytes[MAX_NODE]:
    """
    @notice Branch node with exactly two children.
    @param nibble_a Slot of the first child.
    @param ref_a The first child's reference.
    @param nibble_b Slot of the second child (not `nibble_a`).
    @param ref_b The second child's reference.
    @return The branch's encoding.
    """
    low: uint256 = nibble_a
    high: uint256 = nibble_b
    low_ref: Bytes[33] = ref_a
    high_ref: Bytes[33] = ref_b
    if nibble_b < nibble_a:
        low = nibble_b
        high = nibble_a
        low_ref = ref_b
        high_ref = ref_a
    # The trailing empty slots include the branch's empty value.
    payload: Bytes[MAX_NODE] = concat(
        slice(EMPTY_SLOTS, 0, low),
        low_ref,
        slice(EMPTY_SLOTS, 0, high - low - 1),
        high_ref,
        slice(EMPTY_SLOTS, 0, 16 - high),
    )
    return self._list(payload)


@internal
@pure
def _ref(node: Bytes[MAX_NODE]) -> Bytes[33]:
    """
    @notice Reference to a child node: the node itself if its encoding is
            shorter than 32 bytes, else its hash.
    @param node The child's encoding.
    @return The reference as it appears in the parent.
    """
    if len(node) < 32:
        return convert(node, Bytes[33])
    return concat(x"a0", keccak256(node))


@internal
@pure
def _fail(code: uint256):
    """
    @notice Revert with the reason "MPT: " and the message of error `code`.
    @dev One shared revert site keeps the bytecode small.
    @param code An error code (see the constants at the top).
    """
    start: uint256 = (REASON_BOUNDS >> (9 * (code - 1))) & 511
    stop: uint256 = (REASON_BOUNDS >> (9 * code)) & 511
    raise concat("MPT: ", slice(REASONS, start, stop - start))
