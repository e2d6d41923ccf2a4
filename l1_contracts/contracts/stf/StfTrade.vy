# pragma version ~=0.4.3
"""
@title StfTrade
@license MIT
@notice The Vyper twin of the HFX STF for the trade step (§7.3): a fill of
        a maker order and a taker order of the batch's order table at the
        maker's price.
@dev Same entry point as every twin contract (docs/l1-stf-twin.md). Slots:
     A maker account, B taker account, C maker order state, D taker order
     state, and the global, params and prices leaves.
"""

from . import StfTypes as T
from . import StfMath as M
from . import StfCodec as C
from . import StfSig as S
from . import StfMargin as G
from . import StfStep as St

TRADE_SIZE: constant(uint256) = 13


@external
@view
def execute(
    step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, leaves: DynArray[T.Leaf, T.MAX_LEAVES]
) -> (uint8, DynArray[T.SmallLeaf, T.MAX_WRITES]):
    """
    @notice Execute one trade step.
    @param step The step bytes (kind byte first).
    @param ctx The step's context.
    @param leaves The pre-values of the leaves the step reads or writes.
    @return The outcome code and the written leaves (new values).
    """
    if len(step) == 0:
        return T.UNKNOWN_KIND, []
    keys: DynArray[bytes32, T.MAX_LEAVES] = []
    for i: uint256 in range(len(leaves), bound=T.MAX_LEAVES):
        keys.append(leaves[i].key)
    pre: T.Pre = empty(T.Pre)
    # two rounds: some keys derive from leaves of the first (owners, counters)
    for _: uint256 in range(2):
        want: bytes32[T.N_SLOTS] = self._want(step, ctx, pre)
        for i: uint256 in range(T.N_SLOTS):
            k: bytes32 = want[i]
            if k == empty(bytes32) or k == pre.w.keys[i]:
                continue
            pre.w.keys[i] = k
            pre.w.found &= ~(1 << i)
            pre.w.present &= ~(1 << i)
            j: uint256 = St._find(keys, k)
            if j == T.MAX_LEAVES:
                continue
            pre.w.found |= 1 << i
            if not leaves[j].present:
                continue
            pre.w.present |= 1 << i
            v: Bytes[T.MAX_LEAF] = leaves[j].value
            if i == T.S_GLOBAL:
                pre.glob = C._decode_global(v)
            elif i == T.S_PARAMS:
                pre.params = v
            elif i == T.S_PRICES:
                pre.prices = v
            elif i == T.S_A:
                pre.a = C._decode_account(v)
            elif i == T.S_B:
                pre.b = C._decode_account(v)
            elif i == T.S_C:
                pre.c = C._small(v)
            else:
                pre.d = C._small(v)
    code: uint8 = T.INVALID_ENCODING
    post: T.Post = empty(T.Post)
    kind: uint256 = convert(slice(step, 0, 1), uint256)
    if kind == T.STEP_TRADE:
        if len(step) == TRADE_SIZE:
            code, post = self._trade(step, ctx, pre)
    elif kind == 0 or kind > T.STEP_FORCED:
        code = T.UNKNOWN_KIND
    else:
        raise "STF: kind executed by another contract"
    return code, St._emit(pre.w, post)


@internal
@pure
def _want(step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, pre: T.Pre) -> bytes32[T.N_SLOTS]:
    """
    @notice The keys of the slots the step may touch, given the leaves
            resolved so far (zero: unused, or not known yet).
    @param step The step bytes.
    @param ctx The context.
    @param pre The witness resolved so far.
    @return One key per slot.
    """
    w: bytes32[T.N_SLOTS] = empty(bytes32[T.N_SLOTS])
    if convert(slice(step, 0, 1), uint256) != T.STEP_TRADE or len(step) != TRADE_SIZE:
        return w
    w[T.S_GLOBAL] = T.GLOBAL_KEY
    w[T.S_PARAMS] = T.PARAMS_KEY
    w[T.S_PRICES] = T.PRICES_KEY
    maker: T.Order = St._order_at(ctx, convert(slice(step, 1, 2), uint256))
    taker: T.Order = St._order_at(ctx, convert(slice(step, 3, 2), uint256))
    if maker.ok:
        w[T.S_A] = St._account_slot_key(maker.account)
        w[T.S_C] = St._order_slot_key(ctx.domain, St._has(pre.w, T.S_A), pre.a.owner, maker)
    if taker.ok:
        w[T.S_B] = St._account_slot_key(taker.account)
        w[T.S_D] = St._order_slot_key(ctx.domain, St._has(pre.w, T.S_B), pre.b.owner, taker)
    return w


@internal
@pure
def _trade(step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.3: `maker_ref u16 | taker_ref u16 | size u64`.
    @param step The 13-byte step.
    @param ctx The context.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    maker_ref: uint256 = convert(slice(step, 1, 2), uint256)
    taker_ref: uint256 = convert(slice(step, 3, 2), uint256)
    size: uint256 = convert(slice(step, 5, 8), uint256)
    time: uint256 = convert(ctx.time, uint256)
    if maker_ref == taker_ref:
        return T.BAD_ORDER_REF, empty(T.Post)
    code: uint8 = 0
    mo: T.Order = empty(T.Order)
    to: T.Order = empty(T.Order)
    code, mo = St._signed_order(ctx, maker_ref, pre.w, T.S_A, pre.a.owner)
    if code != T.OK:
        return code, empty(T.Post)
    code, to = St._signed_order(ctx, taker_ref, pre.w, T.S_B, pre.b.owner)
    if code != T.OK:
        return code, empty(T.Post)
    if mo.market != to.market:
        return T.MARKET_MISMATCH, empty(T.Post)
    if mo.is_buy == to.is_buy:
        return T.SAME_SIDE, empty(T.Post)
    if mo.account == to.account:
        return T.SELF_TRADE, empty(T.Post)
    if to.flags & T.FLAG_POST_ONLY != 0:
        return T.POST_ONLY_TAKER, empty(T.Post)
    St._genesis(pre.w, T.S_PARAMS)
    market: uint256 = mo.market
    if market >= C._n_markets(pre.params):
        return T.UNKNOWN_MARKET, empty(T.Post)
    mw: uint256 = C._market_word(pre.params, market)
    code = G._check_size(size, mw)
    if code != T.OK:
        return code, empty(T.Post)
    price: uint256 = mo.price
    if price == 0 or price >= T.PRICE_LIMIT:
        return T.BAD_PRICE, empty(T.Post)
    if price % ((mw >> 176) & C.MASK_32) != 0:
        return T.TICK_SIZE, empty(T.Post)
    if (to.is_buy and to.price < price) or (not to.is_buy and to.price > price):
        return T.PRICE_LIMIT_CODE, empty(T.Post)
    St._genesis(pre.w, T.S_PRICES)
    pw: uint256 = C._price_word(pre.prices, market)
    if (pw >> 24) & T.PRICE_FLAG_SETTLED != 0:
        return T.MARKET_SETTLED, empty(T.Post)
    perp: bool = mw >> 248 == T.KIND_PERP
    if not perp and time >= (mw >> 16) & C.MASK_64:
        return T.MARKET_EXPIRED, empty(T.Post)
    if pw >> 192 == 0 or (not perp and C._index_price(pre.prices, (mw >> 240) & C.MASK_8) == 0):
        return T.NO_PRICE, empty(T.Post)
    if not G._fresh(pre.params, pre.prices, time):
        return T.STALE_ORACLE, empty(T.Post)
    code = St._can_fill(mo, pre.w, T.S_C, pre.c, size, time)
    if code != T.OK:
        return code, empty(T.Post)
    code = St._can_fill(to, pre.w, T.S_D, pre.d, size, time)
    if code != T.OK:
        return code, empty(T.Post)

    cfg: uint256 = C._config_word(pre.params)
    notional: int256 = convert(size * price, int256)
    fee: int256 = M._bps_ceil(notional, cfg >> 240)
    rebate: int256 = M._bps_floor(notional, (cfg >> 224) & C.MASK_16)
    findex: int256 = 0
    if perp:
        findex = C._signed(pw >> 64, 128)
    maker_delta: int256 = convert(size, int256)
    if not mo.is_buy:
        maker_delta = -maker_delta
    post: T.Post = empty(T.Post)
    maker_norm: T.Account = empty(T.Account)
    taker_norm: T.Account = empty(T.Account)
    code, maker_norm = G._normalize(pre.a, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.a = G._fill(
        maker_norm, market, maker_delta, convert(price, int256), findex,
        mo.flags & T.FLAG_REDUCE_ONLY != 0, rebate,
    )
    if code != T.OK:
        return code, empty(T.Post)
    code, taker_norm = G._normalize(pre.b, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.b = G._fill(
        taker_norm, market, -maker_delta, convert(price, int256), findex,
        to.flags & T.FLAG_REDUCE_ONLY != 0, -fee,
    )
    if code != T.OK:
        return code, empty(T.Post)
    code = G._trade_margin(maker_norm, post.a, market, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    code = G._trade_margin(taker_norm, post.b, market, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    St._genesis(pre.w, T.S_GLOBAL)
    post.glob = pre.glob
    post.glob.fee_pool += fee - rebate
    if post.glob.fee_pool >= T.POOL_LIMIT:
        return T.OVERFLOW, empty(T.Post)
    post.glob.l2_time = time
    # filled + size <= order size < 2**64 (checked by _can_fill)
    post.c = ((pre.c >> 8) + size) << 8
    post.c_size = 9
    post.d = ((pre.d >> 8) + size) << 8
    post.writes = (1 << T.S_GLOBAL) | (1 << T.S_A) | (1 << T.S_B) | (1 << T.S_C) | (1 << T.S_D)
    return T.OK, post
