# pragma version ~=0.4.3
"""
@title StfHarness
@license MIT
@notice External wrappers around the STF twin's arithmetic, codec and
        signature helpers, for unit tests against the Python reference
        (tests/l1/test_stf_twin.py). Not part of the deployment.
"""

from . import StfTypes as T
from . import StfMath as M
from . import StfCodec as C
from . import StfSig as S
from . import StfMargin as G


@external
@pure
def div_floor(a: int256, b: int256) -> int256:
    """
    @notice See `StfMath._div_floor`.
    @param a Dividend.
    @param b Divisor (> 0).
    @return The quotient.
    """
    return M._div_floor(a, b)


@external
@pure
def div_ceil(a: int256, b: int256) -> int256:
    """
    @notice See `StfMath._div_ceil`.
    @param a Dividend.
    @param b Divisor (> 0).
    @return The quotient.
    """
    return M._div_ceil(a, b)


@external
@pure
def div_trunc(a: int256, b: int256) -> int256:
    """
    @notice See `StfMath._div_trunc`.
    @param a Dividend.
    @param b Divisor (> 0).
    @return The quotient.
    """
    return M._div_trunc(a, b)


@external
@pure
def bps(x: int256, r: uint256) -> (int256, int256):
    """
    @notice See `StfMath._bps_ceil` and `_bps_floor`.
    @param x Amount (>= 0).
    @param r Rate in basis points.
    @return The rounded-up and rounded-down products.
    """
    return M._bps_ceil(x, r), M._bps_floor(x, r)


@external
@pure
def signed(word: uint256, bits: uint256) -> int256:
    """
    @notice See `StfCodec._signed`.
    @param word The word.
    @param bits The field width.
    @return The sign-extended field.
    """
    return C._signed(word, bits)


@external
@pure
def twos(x: int256, bits: uint256) -> uint256:
    """
    @notice See `StfCodec._twos`.
    @param x The value.
    @param bits The field width (< 256).
    @return Its two's complement bits.
    """
    return C._twos(x, (1 << bits) - 1)


@external
@pure
def global_leaf(v: Bytes[T.MAX_LEAF]) -> (T.GlobalLeaf, Bytes[T.MAX_SMALL_LEAF]):
    """
    @notice Decode a global leaf and encode it back.
    @param v The leaf.
    @return The decoded leaf and its re-encoding.
    """
    g: T.GlobalLeaf = C._decode_global(v)
    return g, C._encode_global(g)


@external
@pure
def account_leaf(v: Bytes[T.MAX_LEAF]) -> (T.Account, Bytes[T.MAX_SMALL_LEAF]):
    """
    @notice Decode an account leaf and encode it back.
    @param v The leaf.
    @return The decoded account and its re-encoding.
    """
    a: T.Account = C._decode_account(v)
    return a, C._encode_account(a)


@external
@pure
def position(p: uint256) -> (uint256, int256, int256, int256, uint256):
    """
    @notice The fields of a position word, and the word rebuilt from them.
    @param p The position word.
    @return market, size, cost, snapshot and the rebuilt word.
    """
    size: int256 = C._pos_size(p)
    cost: int256 = C._pos_cost(p)
    snapshot: int256 = C._pos_snapshot(p)
    return p >> 248, size, cost, snapshot, C._pos(p >> 248, size, cost, snapshot)


@external
@pure
def prices_leaf(v: Bytes[T.MAX_LEAF], n: uint256) -> Bytes[T.MAX_LEAF]:
    """
    @notice Split a prices leaf into words and join them back.
    @param v The leaf.
    @param n Its number of markets.
    @return The re-encoding.
    """
    return C._encode_prices(C._prices_words(v), n)


@external
@pure
def price_entry(v: Bytes[T.MAX_LEAF], market: uint256) -> (uint256, int256, uint256, uint256, uint256):
    """
    @notice A market's price entry read in place and from the words.
    @param v The prices leaf.
    @param market The market id.
    @return mark, funding index, iv, flags, and the entry from the words.
    """
    w: uint256 = C._price_word(v, market)
    words: uint256[C.PRICES_WORDS] = C._prices_words(v)
    return w >> 192, C._signed(w >> 64, 128), (w >> 32) & C.MASK_32, (w >> 24) & C.MASK_8, C._price_entry(
        words[market + 4], words[market + 5]
    )


@external
@pure
def small(v: Bytes[T.MAX_LEAF]) -> uint256:
    """
    @notice See `StfCodec._small`.
    @param v A leaf of at most 32 bytes.
    @return Its value.
    """
    return C._small(v)


@external
@pure
def order_entry(entry: Bytes[T.WRITTEN_ENTRY_MAX]) -> T.Order:
    """
    @notice See `StfCodec._decode_order`.
    @param entry An order-table entry as the batch writes it.
    @return The decoded order.
    """
    return C._decode_order(entry)


@external
@pure
def keys(index: uint256, owner: address, digest: bytes32, withdrawal_id: uint256) -> (bytes32, bytes32, bytes32, bytes32):
    """
    @notice The keys of an account, an account index, an order state and a
            withdrawal record.
    @param index Account index.
    @param owner Owner address.
    @param digest Order digest.
    @param withdrawal_id Withdrawal id.
    @return The four keys.
    """
    return C._account_key(index), C._account_index_key(owner), C._order_key(digest), C._withdrawal_key(withdrawal_id)


@external
@pure
def digests(domain: bytes32, trader: address, o: T.Order, recipient: address, amount: uint256, nonce: uint256) -> (bytes32, bytes32, bytes32, bytes32):
    """
    @notice The order, cancel, withdraw and oracle digests of §10.
    @param domain The domain separator.
    @param trader The owner.
    @param o An order body.
    @param recipient A withdrawal recipient.
    @param amount A withdrawal amount (also the oracle timestamp).
    @param nonce A withdrawal nonce.
    @return The order digest, the cancel digest of it, the withdraw digest
            and the oracle digest of (amount, order digest).
    """
    order_hash: bytes32 = S._order_digest(domain, trader, o)
    return (
        order_hash,
        S._cancel_digest(domain, trader, order_hash),
        S._withdraw_digest(domain, trader, recipient, amount, nonce),
        S._oracle_digest(domain, amount, order_hash),
    )


@external
@pure
def domain_separator(chain_id: uint256, rollup: address) -> bytes32:
    """
    @notice See `StfSig._domain_separator`.
    @param chain_id The chain id.
    @param rollup The rollup address.
    @return The domain separator.
    """
    return S._domain_separator(chain_id, rollup)


@external
@view
def recover(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @notice See `StfSig._recover`.
    @param digest The digest.
    @param signature r ‖ s ‖ v.
    @return The signer or the zero address.
    """
    return S._recover(
        digest,
        convert(extract32(signature, 0), uint256),
        convert(extract32(signature, 32), uint256),
        convert(extract32(signature, 33), uint256) & C.MASK_8,
    )
