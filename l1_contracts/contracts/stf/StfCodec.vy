# pragma version ~=0.4.3
"""
@title StfCodec
@license MIT
@notice Keys and binary layouts of the HFX state leaves (docs/stf.md §4) and
        of order-table entries (§5.2): big-endian packed fields, two's
        complement for the signed ones, as in state/layout.py.
@dev Fields are read with `extract32` at a byte offset and shifted; a signed
     field is moved to the top of a word and shifted back arithmetically
     (sign extension). Leaves are written by packing 32-byte words and
     `abi_encode`-ing them (a static array's encoding is its words back to
     back, a dynamic array's follows its offset and length words), then
     cutting the bytes to the leaf's length. An account's positions are kept
     as their stored words. Stateless module.
"""

from . import StfTypes as T

MASK_8: constant(uint256) = 2 ** 8 - 1
MASK_16: constant(uint256) = 2 ** 16 - 1
MASK_32: constant(uint256) = 2 ** 32 - 1
MASK_64: constant(uint256) = 2 ** 64 - 1
# Written order entries (§5.2).
RAW_ENTRY: constant(uint256) = 224
PACKED_MIN_SIZE: constant(uint256) = 68
GTC_CODE: constant(uint256) = 9
MASK_88: constant(uint256) = 2 ** 88 - 1
MASK_96: constant(uint256) = 2 ** 96 - 1
MASK_128: constant(uint256) = 2 ** 128 - 1
HIGH_128: constant(uint256) = MASK_128 << 128
# Words of the largest prices leaf (144 + 64 * 32 = 2192 bytes).
PRICES_WORDS: constant(uint256) = 69


# ---------------------------------------------------------------- keys (§4)


@internal
@pure
def _account_key(index: uint256) -> bytes32:
    """
    @notice keccak(0x04 ‖ index u32).
    @param index The account index (< 2**32).
    @return The key of the account leaf.
    """
    w: uint256 = (T.NS_ACCOUNT << 248) | (index << 216)
    return keccak256(slice(convert(w, bytes32), 0, 5))


@internal
@pure
def _account_index_key(owner: address) -> bytes32:
    """
    @notice keccak(0x05 ‖ owner).
    @param owner The account owner's address.
    @return The key of the owner's account-index leaf.
    """
    w: uint256 = (T.NS_ACCOUNT_INDEX << 248) | (convert(owner, uint256) << 88)
    return keccak256(slice(convert(w, bytes32), 0, 21))


@internal
@pure
def _order_key(digest: bytes32) -> bytes32:
    """
    @notice keccak(0x06 ‖ order digest).
    @param digest The order's EIP-712 digest (§10).
    @return The key of the order-state leaf.
    """
    return keccak256(concat(b"\x06", digest))


@internal
@pure
def _withdrawal_key(withdrawal_id: uint256) -> bytes32:
    """
    @notice keccak(0x07 ‖ id u64).
    @param withdrawal_id The withdrawal record id (< 2**64).
    @return The key of the withdrawal leaf.
    """
    w: uint256 = (T.NS_WITHDRAWAL << 248) | (withdrawal_id << 184)
    return keccak256(slice(convert(w, bytes32), 0, 9))


# ---------------------------------------------------------------- words and signed fields


@internal
@pure
def _word(b: Bytes[T.MAX_LEAF], offset: uint256) -> uint256:
    """
    @notice The 32 bytes at `offset` as a big-endian integer.
    @param b A leaf value.
    @param offset Byte offset; `offset + 32 <= len(b)`.
    @return The word.
    """
    return convert(extract32(b, offset), uint256)


@internal
@pure
def _signed(word: uint256, bits: uint256) -> int256:
    """
    @notice Sign-extend the low `bits` bits of `word` (two's complement).
    @param word A word whose low `bits` bits hold the field.
    @param bits The field's width in bits (8..256).
    @return The field's signed value.
    """
    # a left shift drops the bits above the field; the arithmetic right
    # shift brings the field back, copying its sign bit
    return convert(convert(word << (256 - bits), bytes32), int256) >> (256 - bits)


@internal
@pure
def _twos(x: int256, mask: uint256) -> uint256:
    """
    @notice The two's complement of `x` in the width of `mask` (2**bits - 1).
    @param x A signed value that fits the width.
    @param mask The all-ones mask of the field's width.
    @return The field's bits.
    """
    return convert(convert(x, bytes32), uint256) & mask


# ---------------------------------------------------------------- global (§4.1)


@internal
@pure
def _decode_global(v: Bytes[T.MAX_LEAF]) -> T.GlobalLeaf:
    """
    @notice Decode the 68-byte global leaf.
    @param v The leaf value.
    @return The decoded leaf.
    """
    assert len(v) == 68, "STF: bad global leaf"
    w0: uint256 = convert(extract32(v, 0), uint256)
    w1: uint256 = convert(extract32(v, 32), uint256)
    return T.GlobalLeaf(
        l2_time=w0 >> 192,
        next_deposit=(w0 >> 128) & MASK_64,
        next_forced=(w0 >> 64) & MASK_64,
        withdrawal_count=w0 & MASK_64,
        account_count=w1 >> 224,
        insurance_fund=convert((w1 >> 96) & MASK_128, int256),
        fee_pool=convert(convert(extract32(v, 36), uint256) & MASK_128, int256),
    )


@internal
@pure
def _encode_global(g: T.GlobalLeaf) -> Bytes[T.MAX_SMALL_LEAF]:
    """
    @notice Encode the global leaf (68 bytes).
    @dev Every field is within its width (the callers check the bounds).
    @param g The leaf.
    @return Its bytes.
    """
    fund: uint256 = convert(g.insurance_fund, uint256)
    fee: uint256 = convert(g.fee_pool, uint256)
    words: uint256[3] = [
        (g.l2_time << 192) | (g.next_deposit << 128) | (g.next_forced << 64) | g.withdrawal_count,
        (g.account_count << 224) | (fund << 96) | (fee >> 32),
        (fee & MASK_32) << 224,
    ]
    return slice(abi_encode(words), 0, 68)


# ---------------------------------------------------------------- accounts (§4.4)


@internal
@pure
def _decode_account(v: Bytes[T.MAX_LEAF]) -> T.Account:
    """
    @notice Decode an account leaf (44 + 32p bytes, p <= 16).
    @param v The leaf value.
    @return The decoded account (positions as their stored words).
    """
    n: uint256 = len(v)
    assert n >= T.ACCOUNT_HEAD and n <= T.ACCOUNT_HEAD + 32 * T.MAX_POSITIONS, "STF: bad account leaf"
    assert (n - T.ACCOUNT_HEAD) % 32 == 0, "STF: bad account leaf"
    w0: uint256 = convert(extract32(v, 0), uint256)
    a: T.Account = T.Account(
        owner=convert(convert(w0 >> 96, uint160), address),
        nonce=(w0 >> 32) & MASK_64,
        collateral=self._signed(convert(extract32(v, 12), uint256), 128),
        positions=[],
    )
    # the positions are whole words: decode them as an ABI uint256[] whose
    # offset and length are prepended
    p: uint256 = (n - T.ACCOUNT_HEAD) // 32
    a.positions = abi_decode(
        concat(convert(32, bytes32), convert(p, bytes32), slice(v, T.ACCOUNT_HEAD, 32 * p)),
        DynArray[uint256, T.MAX_POSITIONS],
    )
    return a


@internal
@pure
def _pos(market: uint256, size: int256, cost: int256, snapshot: int256) -> uint256:
    """
    @notice A position word: market u8 | size i64 | cost i96 | snapshot i88.
    @param market The market id.
    @param size The size (|size| < 2**40).
    @param cost The cost basis (|cost| < 2**95).
    @param snapshot The funding snapshot (|snapshot| < 2**87).
    @return The word.
    """
    return (
        (market << 248)
        | (self._twos(size, MASK_64) << 184)
        | (self._twos(cost, MASK_96) << 88)
        | self._twos(snapshot, MASK_88)
    )


@internal
@pure
def _pos_size(p: uint256) -> int256:
    """
    @notice The size of a position word (i64 at bits 184..247).
    @param p The position word.
    @return The signed size.
    """
    # the shift left drops the market byte; the arithmetic shift sign-extends
    return convert(convert(p << 8, bytes32), int256) >> 192


@internal
@pure
def _pos_cost(p: uint256) -> int256:
    """
    @notice The cost basis of a position word (i96 at bits 88..183).
    @param p The position word.
    @return The signed cost.
    """
    # the shift left drops market and size; the arithmetic shift sign-extends
    return convert(convert(p << 72, bytes32), int256) >> 160


@internal
@pure
def _pos_snapshot(p: uint256) -> int256:
    """
    @notice The funding snapshot of a position word (i88 at bits 0..87).
    @param p The position word.
    @return The signed snapshot.
    """
    # the shift left drops market, size and cost; the arithmetic shift sign-extends
    return convert(convert(p << 168, bytes32), int256) >> 168


@internal
@pure
def _encode_account(a: T.Account) -> Bytes[T.MAX_SMALL_LEAF]:
    """
    @notice Encode an account leaf: owner | nonce u64 | collateral i128 | positions.
    @dev The head is 44 bytes (a word and 12 bytes); the positions are the
         ABI encoding of `a.positions` without its offset and length words.
    @param a The account (fields within their widths).
    @return Its bytes.
    """
    c: uint256 = self._twos(a.collateral, MASK_128)
    n: uint256 = len(a.positions)
    head: Bytes[T.ACCOUNT_HEAD] = concat(
        convert((convert(a.owner, uint256) << 96) | (a.nonce << 32) | (c >> 96), bytes32),
        slice(convert(c << 160, bytes32), 0, 12),
    )
    return slice(concat(head, slice(abi_encode(a.positions), 64, 32 * n)), 0, T.ACCOUNT_HEAD + 32 * n)


# ---------------------------------------------------------------- small leaves (§4)


@internal
@pure
def _encode_u(x: uint256, width: uint256) -> Bytes[T.MAX_SMALL_LEAF]:
    """
    @notice `x` as a big-endian integer of `width` bytes (<= 32).
    @param x The value (< 2**(8 * width)).
    @param width The width in bytes.
    @return The bytes.
    """
    return slice(convert(x << (256 - 8 * width), bytes32), 0, width)


@internal
@pure
def _small(v: Bytes[T.MAX_LEAF]) -> uint256:
    """
    @notice A leaf of at most 32 bytes as one big-endian integer (an account
            index, an order state `filled << 8 | cancelled`, a withdrawal).
    @param v The leaf value (at most 32 bytes).
    @return Its value.
    """
    n: uint256 = len(v)
    assert n <= 32, "STF: bad small leaf"
    # the 32 bytes ending where `v` ends: zero padding, then `v`
    return convert(extract32(concat(empty(bytes32), v), n), uint256)


@internal
@pure
def _encode_withdrawal_word(account: uint256, recipient: address, amount: uint256) -> uint256:
    """
    @notice A withdrawal record (§4.6) as one word: account u32 | recipient |
            amount u64.
    @param account The account index.
    @param recipient The L1 recipient.
    @param amount The amount (u64).
    @return Its 32 bytes as an integer.
    """
    return (account << 224) | (convert(recipient, uint256) << 64) | amount


# ---------------------------------------------------------------- params (§4.2)


@internal
@pure
def _n_markets(params: Bytes[T.MAX_LEAF]) -> uint256:
    """
    @notice Number of markets of the params leaf.
    @param params The params leaf.
    @return n.
    """
    return (len(params) - T.CONFIG_SIZE) // 32


@internal
@pure
def _config_word(params: Bytes[T.MAX_LEAF]) -> uint256:
    """
    @notice The config (first 16 bytes of params) in the top half of a word:
            taker_fee >> 240, maker_rebate >> 224, liquidation_penalty >> 208,
            liquidator_bonus >> 192, sync_buffer >> 176, funding_cap >> 160,
            max_oracle_age >> 128 (each masked to its width).
    @param params The params leaf.
    @return The word.
    """
    return self._word(params, 0)


@internal
@pure
def _market_word(params: Bytes[T.MAX_LEAF], market: uint256) -> uint256:
    """
    @notice Market `market`'s 32 bytes: kind >> 248, underlying >> 240,
            im_bps >> 224, mm_bps >> 208, tick >> 176, lot >> 144,
            strike >> 80, expiry >> 16 (each masked to its width).
    @param params The params leaf.
    @param market A market id < n.
    @return The word.
    """
    return self._word(params, T.CONFIG_SIZE + 32 * market)


# ---------------------------------------------------------------- prices (§4.3)


@internal
@pure
def _price_word(prices: Bytes[T.MAX_LEAF], market: uint256) -> uint256:
    """
    @notice Market `market`'s 32-byte price entry: mark >> 192,
            funding_index = signed((w >> 64), 128), iv >> 32, flags >> 24.
    @param prices The prices leaf.
    @param market A market id < n.
    @return The word.
    """
    return self._word(prices, T.PRICES_HEAD + 32 * market)


@internal
@pure
def _index_price(prices: Bytes[T.MAX_LEAF], underlying: uint256) -> uint256:
    """
    @notice index[underlying] (u64 at 16 + 8u).
    @param prices The prices leaf.
    @param underlying An underlying < 16.
    @return The index price.
    """
    return self._word(prices, 16 + 8 * underlying) >> 192


@internal
@pure
def _prices_words(prices: Bytes[T.MAX_LEAF]) -> uint256[PRICES_WORDS]:
    """
    @notice The prices leaf as words, for rewriting it.
    @dev The leaf is 144 + 32n bytes: 4 + n whole words and a last half word.
         Market m's entry is the low half of word m + 4 and the high half of
         word m + 5.
    @param prices The prices leaf.
    @return The words (unused ones zero).
    """
    words: uint256[PRICES_WORDS] = empty(uint256[PRICES_WORDS])
    full: uint256 = (len(prices) - 16) // 32
    for i: uint256 in range(full, bound=PRICES_WORDS - 1):
        words[i] = convert(extract32(prices, 32 * i), uint256)
    words[full] = convert(extract32(prices, len(prices) - 32), uint256) << 128
    return words


@internal
@pure
def _encode_prices(words: uint256[PRICES_WORDS], n: uint256) -> Bytes[T.MAX_LEAF]:
    """
    @notice Inverse of `_prices_words` for a leaf of `n` markets.
    @param words The words.
    @param n The number of markets.
    @return The leaf bytes.
    """
    return slice(abi_encode(words), 0, T.PRICES_HEAD + 32 * n)


@internal
@pure
def _price_entry(lo: uint256, hi: uint256) -> uint256:
    """
    @notice A market's price entry from its two words (m + 4, m + 5).
    @param lo Word m + 4.
    @param hi Word m + 5.
    @return The entry, as `_price_word` returns it.
    """
    return ((lo & MASK_128) << 128) | (hi >> 128)


@internal
@pure
def _put_price_entry(lo: uint256, hi: uint256, entry: uint256) -> (uint256, uint256):
    """
    @notice Write a market's price entry into its two words.
    @param lo Word m + 4.
    @param hi Word m + 5.
    @param entry The new entry.
    @return The new words m + 4 and m + 5.
    """
    return (lo & HIGH_128) | (entry >> 128), ((entry & MASK_128) << 128) | (hi & MASK_128)


# ---------------------------------------------------------------- order entries (§5.2)


@internal
@pure
def _decode_order(entry: Bytes[T.WRITTEN_ENTRY_MAX]) -> T.Order:
    """
    @notice Decode an order-table entry as the batch writes it (§5.2): packed,
            or 0xE0 and the 104 bytes. `ok` is false unless the bytes are
            exactly one entry with an is_buy of 0 or 1 (malformed).
    @param entry The written entry.
    @return The order and its signature.
    """
    o: T.Order = empty(T.Order)
    n: uint256 = len(entry)
    if n < PACKED_MIN_SIZE:
        return o
    w: uint256 = convert(extract32(entry, 0), uint256)
    sig: uint256 = 0
    if w >> 248 == RAW_ENTRY:
        if n != T.ORDER_ENTRY_SIZE + 1:
            return o
        # The 104 bytes from offset 1: the body's first 32 in `w`.
        w = convert(extract32(entry, 1), uint256)
        o.account = w >> 224
        o.market = (w >> 216) & MASK_8
        side: uint256 = (w >> 208) & MASK_8
        if side > 1:
            return o
        o.is_buy = side == 1
        o.flags = (w >> 200) & MASK_8
        o.price = (w >> 136) & MASK_64
        o.size = (w >> 72) & MASK_64
        o.expiry = (w >> 8) & MASK_64
        o.salt = convert(extract32(entry, 8), uint256) & MASK_64
        o.r = convert(extract32(entry, 40), uint256)
        o.s = convert(extract32(entry, 72), uint256)
        o.v = convert(extract32(entry, 73), uint256) & MASK_8
        o.ok = True
        return o
    # head u8 | lens u8 | more u8 | market u8, then the fields: a field of
    # L bytes at bit offset b of w ‖ rest is the top L bytes of the word at b.
    a: uint256 = w >> 253
    p: uint256 = (w >> 244) & 15
    z: uint256 = (w >> 240) & 15
    e: uint256 = (w >> 236) & 15
    t: uint256 = (w >> 232) & 15
    if a > 4 or p > 8 or z > 8 or e > GTC_CODE or t > 8:
        return o
    rest: uint256 = convert(extract32(entry, 32), uint256)
    b: uint256 = 32 + a * 8
    o.account = (w << 32) >> (256 - a * 8)
    o.price = ((w << b) | (rest >> (256 - b))) >> (256 - p * 8)
    b += p * 8
    o.size = ((w << b) | (rest >> (256 - b))) >> (256 - z * 8)
    b += z * 8
    o.expiry = MASK_64
    if e != GTC_CODE:
        o.expiry = ((w << b) | (rest >> (256 - b))) >> (256 - e * 8)
        b += e * 8
    o.salt = ((w << b) | (rest >> (256 - b))) >> (256 - t * 8)
    sig = (b + t * 8) // 8
    if n != sig + 64:
        return o
    o.market = (w >> 224) & MASK_8
    o.is_buy = (w >> 252) & 1 == 1
    o.flags = (w >> 248) & 15
    o.r = convert(extract32(entry, sig), uint256)
    y: uint256 = convert(extract32(entry, sig + 32), uint256)
    o.s = y & (2**255 - 1)
    o.v = 27 + (y >> 255)
    o.ok = True
    return o


@internal
@pure
def _decode_body(payload: Bytes[T.MAX_PAYLOAD]) -> T.Order:
    """
    @notice Decode the 39-byte order body of a forced cancel (payload bytes
            1..40); `ok` is false when is_buy is not 0 or 1.
    @param payload The 40-byte forced payload.
    @return The order (no signature).
    """
    o: T.Order = empty(T.Order)
    w: uint256 = convert(extract32(payload, 1), uint256)
    side: uint256 = (w >> 208) & MASK_8
    if side > 1:
        return o
    o.ok = True
    o.account = w >> 224
    o.market = (w >> 216) & MASK_8
    o.is_buy = side == 1
    o.flags = (w >> 200) & MASK_8
    o.price = (w >> 136) & MASK_64
    o.size = (w >> 72) & MASK_64
    o.expiry = (w >> 8) & MASK_64
    o.salt = convert(extract32(payload, 8), uint256) & MASK_64
    return o
