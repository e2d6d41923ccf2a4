# pragma version ~=0.4.3
"""
@title StfPrices
@license MIT
@notice The Vyper twin of the HFX STF for the steps that write only the
        prices leaf: oracle (§7.5), funding (§7.6) and settle (§7.9).
@dev Same entry point as every twin contract (docs/l1-stf-twin.md). These
     steps read the params and prices leaves and write at most the prices
     leaf, which is rewritten as words (StfCodec `_prices_words`): market
     m's entry is the low half of word m + 4 and the high half of word m + 5.
     An oracle step can be 19,901 bytes long: it is read where it is, in
     calldata, and never copied whole.
"""

from . import StfTypes as T
from . import StfMath as M
from . import StfCodec as C
from . import StfSig as S

SIG_SIZE: constant(uint256) = 65
ORACLE_ENTRY_SIZE: constant(uint256) = 13
# Oracle ids are strictly increasing and the valid ones are below 80, so
# among the first 81 entries of a step one is refused (BAD_PRICE) unless
# the step has at most 80 entries: no later entry can decide the outcome.
MAX_READ_ENTRIES: constant(uint256) = 81
# Words holding 80 entries of 13 bytes (1,040 bytes).
ENTRY_WORDS: constant(uint256) = 33
# Mask of an entry's mark (bits 192..255) and iv (bits 32..63).
MARK_BITS: constant(uint256) = C.MASK_64 << 192
IV_BITS: constant(uint256) = C.MASK_32 << 32
# Mask of an entry's funding index (bits 64..191).
INDEX_BITS: constant(uint256) = C.MASK_128 << 64


@external
@view
def execute(
    step: Bytes[T.MAX_STEP], ctx: T.Context, leaves: DynArray[T.Leaf, T.MAX_LEAVES]
) -> (uint8, DynArray[T.Leaf, 1]):
    """
    @notice Execute one oracle, funding or settle step.
    @param step The step bytes (kind byte first).
    @param ctx The step's context.
    @param leaves The pre-values of the leaves the step reads or writes (the
           params and prices leaves).
    @return The outcome code and the written leaves (new values).
    """
    n: uint256 = len(step)
    if n == 0:
        return T.UNKNOWN_KIND, []
    kind: uint256 = convert(slice(step, 0, 1), uint256)
    if kind == 0 or kind > T.STEP_FORCED:
        return T.UNKNOWN_KIND, []
    assert kind == T.STEP_ORACLE or kind == T.STEP_FUNDING or kind == T.STEP_SETTLE, "STF: kind executed by another contract"
    # §5.3: the length decides INVALID_ENCODING before any leaf is read
    n_entries: uint256 = 0
    sig_at: uint256 = 0
    n_sigs: uint256 = 0
    if kind == T.STEP_ORACLE:
        if n < 11:
            return T.INVALID_ENCODING, []
        n_entries = convert(slice(step, 9, 1), uint256)
        sig_at = 10 + ORACLE_ENTRY_SIZE * n_entries
        if n < sig_at + 1:
            return T.INVALID_ENCODING, []
        n_sigs = convert(slice(step, sig_at, 1), uint256)
        if n != sig_at + 1 + SIG_SIZE * n_sigs:
            return T.INVALID_ENCODING, []
        # §7.5 step 1: more signatures than keys is refused on the step and
        # the key set alone, before any leaf is read or signature recovered;
        # so at most MAX_ORACLE_KEYS signatures are ever recovered
        if n_sigs > len(ctx.oracle_keys):
            return T.ORACLE_QUORUM, []
    elif (kind == T.STEP_FUNDING and n != 1) or (kind == T.STEP_SETTLE and n != 2):
        return T.INVALID_ENCODING, []
    params: Bytes[T.MAX_LEAF] = b""
    prices: Bytes[T.MAX_LEAF] = b""
    found: uint256 = 0
    for i: uint256 in range(len(leaves), bound=T.MAX_LEAVES):
        if leaves[i].key == T.PARAMS_KEY and found & 1 == 0:
            assert leaves[i].present, "STF: state lacks a genesis leaf"
            params = leaves[i].value
            found |= 1
        elif leaves[i].key == T.PRICES_KEY and found & 2 == 0:
            assert leaves[i].present, "STF: state lacks a genesis leaf"
            prices = leaves[i].value
            found |= 2
    assert found == 3, "STF: witness lacks a leaf the step touches"
    time: uint256 = convert(ctx.time, uint256)
    code: uint8 = T.OK
    words: uint256[C.PRICES_WORDS] = empty(uint256[C.PRICES_WORDS])
    if kind == T.STEP_FUNDING:
        code, words = self._funding(time, params, prices)
    elif kind == T.STEP_SETTLE:
        code, words = self._settle(convert(slice(step, 1, 1), uint256), time, params, prices)
    else:
        timestamp: uint256 = convert(slice(step, 1, 8), uint256)
        entries: DynArray[uint256, MAX_READ_ENTRIES] = []
        for i: uint256 in range(min(n_entries, MAX_READ_ENTRIES), bound=MAX_READ_ENTRIES):
            o: uint256 = 10 + ORACLE_ENTRY_SIZE * i
            if o + 32 <= n:
                # the entry is the top 13 bytes of the word at o
                entries.append(convert(extract32(step, o), uint256) >> 152)
            else:
                entries.append(convert(slice(step, o, ORACLE_ENTRY_SIZE), uint256))
        code, words = self._oracle(timestamp, entries, time, params, prices)
        if code == T.OK:
            # every entry was read (n_entries <= 80): hash the entry bytes,
            # taken from the step as words and cut to their length
            packed: uint256[ENTRY_WORDS] = empty(uint256[ENTRY_WORDS])
            size: uint256 = ORACLE_ENTRY_SIZE * n_entries
            for w: uint256 in range((size + 31) // 32, bound=ENTRY_WORDS):
                o: uint256 = 10 + 32 * w
                if o + 32 <= n:
                    packed[w] = convert(extract32(step, o), uint256)
                elif n >= 32:
                    # the last bytes of the step, moved to the top of the word
                    packed[w] = convert(extract32(step, n - 32), uint256) << (8 * (o + 32 - n))
                else:
                    # a step shorter than a word has one entry and no signature
                    packed[w] = entries[0] << 152
            prices_hash: bytes32 = keccak256(slice(abi_encode(packed), 0, size))
            digest: bytes32 = S._oracle_digest(ctx.domain, timestamp, prices_hash)
            # §7.5 step 4: distinct recovered members of the key set; the
            # signatures after the quorum is reached cannot change the outcome
            # the key set, strictly increasing, padded with max_value so that a
            # binary search over the 16 slots needs no bounds
            n_keys: uint256 = len(ctx.oracle_keys)
            keys: uint256[T.MAX_ORACLE_KEYS] = empty(uint256[T.MAX_ORACLE_KEYS])
            for k: uint256 in range(T.MAX_ORACLE_KEYS):
                if k < n_keys:
                    keys[k] = convert(ctx.oracle_keys[k], uint256)
                    if k > 0:
                        assert keys[k - 1] < keys[k], "STF: oracle keys must be strictly increasing"
                else:
                    keys[k] = max_value(uint256)
            threshold: uint256 = ctx.oracle_threshold
            seen: uint256 = 0  # bit k: keys[k] has signed
            count: uint256 = 0
            # n_sigs <= len(ctx.oracle_keys) <= MAX_ORACLE_KEYS (step 1)
            for j: uint256 in range(n_sigs, bound=T.MAX_ORACLE_KEYS):
                if count >= threshold:
                    break
                o: uint256 = sig_at + 1 + SIG_SIZE * j
                signer: uint256 = convert(
                    S._recover(
                        digest,
                        convert(extract32(step, o), uint256),
                        convert(extract32(step, o + 32), uint256),
                        convert(extract32(step, o + 33), uint256) & C.MASK_8,
                    ),
                    uint256,
                )
                # the last slot whose key is <= signer (slot 0 if none is)
                at: uint256 = 0
                for half: uint256 in [8, 4, 2, 1]:
                    # at + half <= 15: the halves sum to 15
                    if keys[unsafe_add(at, half)] <= signer:
                        at = unsafe_add(at, half)
                if signer != 0 and keys[at] == signer and (seen >> at) & 1 == 0:
                    seen |= 1 << at
                    count += 1
            if count < threshold:
                code = T.ORACLE_QUORUM
    if code != T.OK:
        return code, []
    return T.OK, [T.Leaf(key=T.PRICES_KEY, present=True, value=C._encode_prices(words, C._n_markets(params)))]


# ============================================================================ oracle (§7.5)


@internal
@pure
def _oracle(
    timestamp: uint256,
    entries: DynArray[uint256, MAX_READ_ENTRIES],
    time: uint256,
    params: Bytes[T.MAX_LEAF],
    prices: Bytes[T.MAX_LEAF],
) -> (uint8, uint256[C.PRICES_WORDS]):
    """
    @notice §7.5 steps 2-3 and 5: `timestamp u64 | n u8 | n × (id u8 |
            price u64 | iv u32) | m u8 | m × signature`; the signature count
            (step 1) and the signatures (step 4) are checked by the caller.
    @param timestamp The update's timestamp.
    @param entries The first (at most 81) entries, each as a 13-byte integer.
    @param time The batch time.
    @param params The params leaf.
    @param prices The prices leaf.
    @return The outcome code and the new prices leaf as words.
    """
    nothing: uint256[C.PRICES_WORDS] = empty(uint256[C.PRICES_WORDS])
    words: uint256[C.PRICES_WORDS] = C._prices_words(prices)
    if timestamp <= words[0] >> 192:
        return T.ORACLE_NOT_MONOTONIC, nothing
    if timestamp > time:
        return T.ORACLE_FUTURE, nothing
    n_markets: uint256 = C._n_markets(params)
    next_id: uint256 = 0  # ids must be strictly increasing: id >= next_id
    for e: uint256 in entries:
        entry_id: uint256 = e >> 96
        price: uint256 = (e >> 32) & C.MASK_64
        iv: uint256 = e & C.MASK_32
        if entry_id < next_id or price == 0 or price >= T.PRICE_LIMIT:
            return T.BAD_PRICE, nothing
        next_id = entry_id + 1
        if entry_id < n_markets:
            # words m + 4 and m + 5 exist: m < n_markets <= 64
            lo: uint256 = words[entry_id + 4]
            hi: uint256 = words[entry_id + 5]
            entry: uint256 = ((lo & C.MASK_128) << 128) | (hi >> 128)
            if (entry >> 24) & T.PRICE_FLAG_SETTLED != 0:
                return T.MARKET_SETTLED, nothing
            entry = (entry & ~(MARK_BITS | IV_BITS)) | (price << 192) | (iv << 32)
            words[entry_id + 4] = (lo & C.HIGH_128) | (entry >> 128)
            words[entry_id + 5] = ((entry & C.MASK_128) << 128) | (hi & C.MASK_128)
        elif entry_id >= T.ORACLE_UNDERLYING_BASE and entry_id < T.ORACLE_UNDERLYING_BASE + T.MAX_UNDERLYINGS:
            if iv != 0:
                return T.BAD_PRICE, nothing
            # index[u] is the u64 at byte 16 + 8u: word (2 + u) // 4, slot (2 + u) % 4
            slot: uint256 = entry_id - T.ORACLE_UNDERLYING_BASE + 2
            bit: uint256 = 192 - 64 * (slot % 4)
            k: uint256 = slot // 4
            words[k] = (words[k] & ~(C.MASK_64 << bit)) | (price << bit)
        else:
            return T.BAD_PRICE, nothing
    words[0] = (words[0] & ~(C.MASK_64 << 192)) | (timestamp << 192)
    return T.OK, words


# ============================================================================ funding (§7.6)


@internal
@pure
def _funding(
    time: uint256, params: Bytes[T.MAX_LEAF], prices: Bytes[T.MAX_LEAF]
) -> (uint8, uint256[C.PRICES_WORDS]):
    """
    @notice §7.6: accrue every perpetual's funding index up to the batch time.
    @param time The batch time.
    @param params The params leaf.
    @param prices The prices leaf.
    @return The outcome code and the new prices leaf as words.
    """
    nothing: uint256[C.PRICES_WORDS] = empty(uint256[C.PRICES_WORDS])
    words: uint256[C.PRICES_WORDS] = C._prices_words(prices)
    funding_time: uint256 = (words[0] >> 128) & C.MASK_64
    if time <= funding_time:
        return T.FUNDING_TOO_EARLY, nothing
    # time > funding_time was just checked
    elapsed: int256 = convert(min(unsafe_sub(time, funding_time), T.FUNDING_PERIOD), int256)
    cap_bps: int256 = convert((convert(extract32(params, 0), uint256) >> 160) & C.MASK_16, int256)
    for i: uint256 in range(C._n_markets(params), bound=T.MAX_MARKETS):
        mw: uint256 = convert(extract32(params, T.CONFIG_SIZE + 32 * i), uint256)
        if mw >> 248 != T.KIND_PERP:
            continue
        lo: uint256 = words[i + 4]
        hi: uint256 = words[i + 5]
        entry: uint256 = ((lo & C.MASK_128) << 128) | (hi >> 128)
        mark: int256 = convert(entry >> 192, int256)
        spot: int256 = convert(convert(extract32(prices, 16 + 8 * ((mw >> 240) & C.MASK_8)), uint256) >> 192, int256)
        if mark == 0 or spot == 0:
            continue
        # cap = bps_floor(spot, cap_bps): spot * cap_bps >= 0, so floor is truncation
        cap: int256 = unsafe_div(spot * cap_bps, T.BPS_S)
        premium: int256 = max(-cap, min(cap, mark - spot))
        # funding_index (i128 at bits 64..191 of the entry), sign-extended
        index: int256 = convert(convert(entry << 64, bytes32), int256) >> 128
        # div_trunc: Vyper's // on int256 truncates towards zero (sdiv)
        index += premium * T.FUNDING_SCALE * elapsed // convert(T.FUNDING_PERIOD, int256)
        if index >= T.FUNDING_INDEX_LIMIT or index <= -T.FUNDING_INDEX_LIMIT:
            return T.OVERFLOW, nothing
        entry = (entry & ~INDEX_BITS) | ((convert(convert(index, bytes32), uint256) & C.MASK_128) << 64)
        words[i + 4] = (lo & C.HIGH_128) | (entry >> 128)
        words[i + 5] = ((entry & C.MASK_128) << 128) | (hi & C.MASK_128)
    words[0] = (words[0] & ~(C.MASK_64 << 128)) | (time << 128)
    return T.OK, words


# ============================================================================ settle (§7.9)


@internal
@pure
def _settle(
    market: uint256, time: uint256, params: Bytes[T.MAX_LEAF], prices: Bytes[T.MAX_LEAF]
) -> (uint8, uint256[C.PRICES_WORDS]):
    """
    @notice §7.9: settle an expired option market at its underlying's index.
    @param market The market id (u8).
    @param time The batch time.
    @param params The params leaf.
    @param prices The prices leaf.
    @return The outcome code and the new prices leaf as words.
    """
    nothing: uint256[C.PRICES_WORDS] = empty(uint256[C.PRICES_WORDS])
    if market >= C._n_markets(params):
        return T.UNKNOWN_MARKET, nothing
    mw: uint256 = convert(extract32(params, T.CONFIG_SIZE + 32 * market), uint256)
    kind: uint256 = mw >> 248
    if kind == T.KIND_PERP:
        return T.NOT_OPTION, nothing
    words: uint256[C.PRICES_WORDS] = C._prices_words(prices)
    entry: uint256 = C._price_entry(words[market + 4], words[market + 5])
    if (entry >> 24) & T.PRICE_FLAG_SETTLED != 0:
        return T.MARKET_SETTLED, nothing
    expiry: uint256 = (mw >> 16) & C.MASK_64
    if time < expiry:
        return T.NOT_EXPIRED, nothing
    if words[0] >> 192 < expiry:
        return T.STALE_ORACLE, nothing
    spot: uint256 = convert(extract32(prices, 16 + 8 * ((mw >> 240) & C.MASK_8)), uint256) >> 192
    if spot == 0:
        return T.NO_PRICE, nothing
    strike: uint256 = (mw >> 80) & C.MASK_64
    payoff: uint256 = 0
    if kind == T.KIND_CALL:
        if spot > strike:
            payoff = spot - strike
    elif strike > spot:
        payoff = strike - spot
    entry = (entry & ~MARK_BITS) | (payoff << 192) | (T.PRICE_FLAG_SETTLED << 24)
    words[market + 4], words[market + 5] = C._put_price_entry(words[market + 4], words[market + 5], entry)
    return T.OK, words
