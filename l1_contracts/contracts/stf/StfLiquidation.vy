# pragma version ~=0.4.3
"""
@title StfLiquidation
@license MIT
@notice The Vyper twin of the HFX STF for the steps that close positions of
        accounts at risk: liquidate (§7.7) and deleverage (§7.8).
@dev Same entry point as every twin contract (docs/l1-stf-twin.md). Slots:
     A target account, B liquidator or counterparty account, C the
     liquidator's order state, and the global, params and prices leaves.
"""

from . import StfTypes as T
from . import StfMath as M
from . import StfCodec as C
from . import StfMargin as G
from . import StfStep as St

LIQUIDATE_SIZE: constant(uint256) = 15
DELEVERAGE_SIZE: constant(uint256) = 18


@external
@view
def execute(
    step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, leaves: DynArray[T.Leaf, T.MAX_LEAVES]
) -> (uint8, DynArray[T.SmallLeaf, T.MAX_WRITES]):
    """
    @notice Execute one liquidate or deleverage step.
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
    if kind == T.STEP_LIQUIDATE:
        if len(step) == LIQUIDATE_SIZE:
            code, post = self._liquidate(step, ctx, pre)
    elif kind == T.STEP_DELEVERAGE:
        if len(step) == DELEVERAGE_SIZE:
            code, post = self._deleverage(step, convert(ctx.time, uint256), pre)
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
    kind: uint256 = convert(slice(step, 0, 1), uint256)
    if kind == T.STEP_LIQUIDATE and len(step) == LIQUIDATE_SIZE:
        o: T.Order = St._order_at(ctx, convert(slice(step, 5, 2), uint256))
        if o.ok:
            w[T.S_B] = St._account_slot_key(o.account)
            w[T.S_C] = St._order_slot_key(ctx.domain, St._has(pre.w, T.S_B), pre.b.owner, o)
    elif kind == T.STEP_DELEVERAGE and len(step) == DELEVERAGE_SIZE:
        w[T.S_B] = St._account_slot_key(convert(slice(step, 5, 4), uint256))
    else:
        return w
    w[T.S_GLOBAL] = T.GLOBAL_KEY
    w[T.S_PARAMS] = T.PARAMS_KEY
    w[T.S_PRICES] = T.PRICES_KEY
    w[T.S_A] = St._account_slot_key(convert(slice(step, 1, 4), uint256))
    return w


@internal
@pure
def _market_checks(market: uint256, size: uint256, time: uint256, pre: T.Pre) -> (uint8, uint256, uint256):
    """
    @notice The market checks liquidate and deleverage share, in their order:
            market exists (UNKNOWN_MARKET), not settled (MARKET_SETTLED),
            mark > 0 (NO_PRICE), fresh (STALE_ORACLE), size check.
    @param market The market id.
    @param size The size (u64).
    @param time The batch time.
    @param pre The decoded witness.
    @return OK or the refusal, the market's params word and its price word.
    """
    St._genesis(pre.w, T.S_PARAMS)
    St._genesis(pre.w, T.S_PRICES)
    if market >= C._n_markets(pre.params):
        return T.UNKNOWN_MARKET, 0, 0
    mw: uint256 = C._market_word(pre.params, market)
    pw: uint256 = C._price_word(pre.prices, market)
    if (pw >> 24) & T.PRICE_FLAG_SETTLED != 0:
        return T.MARKET_SETTLED, 0, 0
    if pw >> 192 == 0:
        return T.NO_PRICE, 0, 0
    if not G._fresh(pre.params, pre.prices, time):
        return T.STALE_ORACLE, 0, 0
    return G._check_size(size, mw), mw, pw


# ============================================================================ liquidate (§7.7)


@internal
@pure
def _liquidate(step: Bytes[T.MAX_FIXED_STEP], ctx: T.Context, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.7: `target u32 | order_ref u16 | size u64`; the liquidator's
            signed order takes over part of the target's position at the mark.
    @param step The 15-byte step.
    @param ctx The context.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    target: uint256 = convert(slice(step, 1, 4), uint256)
    size: uint256 = convert(slice(step, 7, 8), uint256)
    time: uint256 = convert(ctx.time, uint256)
    if target == 0 or not St._read(pre.w, T.S_A):
        return T.UNKNOWN_ACCOUNT, empty(T.Post)
    code: uint8 = 0
    o: T.Order = empty(T.Order)
    code, o = St._signed_order(ctx, convert(slice(step, 5, 2), uint256), pre.w, T.S_B, pre.b.owner)
    if code != T.OK:
        return code, empty(T.Post)
    if o.account == target:
        return T.SAME_ACCOUNT, empty(T.Post)
    market: uint256 = o.market
    mw: uint256 = 0
    pw: uint256 = 0
    code, mw, pw = self._market_checks(market, size, time, pre)
    if code != T.OK:
        return code, empty(T.Post)
    code = St._can_fill(o, pre.w, T.S_C, pre.c, size, time)
    if code != T.OK:
        return code, empty(T.Post)
    mark: uint256 = pw >> 192
    if (o.is_buy and o.price < mark) or (not o.is_buy and o.price > mark):
        return T.PRICE_LIMIT_CODE, empty(T.Post)
    post: T.Post = empty(T.Post)
    target_norm: T.Account = empty(T.Account)
    code, target_norm = G._normalize(pre.a, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    held: int256 = G._position_size(target_norm, market)
    if held == 0:
        return T.NO_POSITION, empty(T.Post)
    if o.is_buy != (held > 0):
        return T.WRONG_DIRECTION, empty(T.Post)
    if convert(size, int256) > M._abs(held):
        return T.NO_POSITION, empty(T.Post)
    risk: T.Risk = G._assess(target_norm, pre.params, pre.prices)
    if risk.equity >= risk.maintenance + risk.buffer:
        return T.NOT_LIQUIDATABLE, empty(T.Post)
    St._genesis(pre.w, T.S_GLOBAL)
    fund: int256 = pre.glob.insurance_fund
    if risk.equity + fund < 0:
        return T.DELEVERAGE_REQUIRED, empty(T.Post)

    findex: int256 = 0
    if mw >> 248 == T.KIND_PERP:
        findex = C._signed(pw >> 64, 128)
    delta: int256 = convert(size, int256)
    if held > 0:
        delta = -delta
    cfg: uint256 = C._config_word(pre.params)
    notional: int256 = convert(size * mark, int256)
    penalty: int256 = M._bps_ceil(notional, (cfg >> 208) & C.MASK_16)
    code, post.a = G._fill(target_norm, market, delta, convert(mark, int256), findex, False, 0)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.a = G._with_collateral(post.a, -penalty)
    if code != T.OK:
        return code, empty(T.Post)
    fund += penalty
    if len(post.a.positions) == 0 and post.a.collateral < 0:
        cover: int256 = min(-post.a.collateral, fund)
        fund -= cover
        code, post.a = G._with_collateral(post.a, cover)
        if code != T.OK:
            return code, empty(T.Post)
    bonus: int256 = min(M._bps_floor(notional, (cfg >> 192) & C.MASK_16), fund)
    fund -= bonus
    if fund >= T.POOL_LIMIT:
        return T.OVERFLOW, empty(T.Post)
    liq_norm: T.Account = empty(T.Account)
    code, liq_norm = G._normalize(pre.b, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.b = G._fill(
        liq_norm, market, -delta, convert(mark, int256), findex, o.flags & T.FLAG_REDUCE_ONLY != 0, 0
    )
    if code != T.OK:
        return code, empty(T.Post)
    code, post.b = G._with_collateral(post.b, bonus)
    if code != T.OK:
        return code, empty(T.Post)
    code = G._trade_margin(liq_norm, post.b, market, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    post.glob = pre.glob
    post.glob.insurance_fund = fund
    post.glob.l2_time = time
    # filled + size <= order size < 2**64 (checked by _can_fill)
    post.c = ((pre.c >> 8) + size) << 8
    post.c_size = 9
    post.writes = (1 << T.S_GLOBAL) | (1 << T.S_A) | (1 << T.S_B) | (1 << T.S_C)
    return T.OK, post


# ============================================================================ deleverage (§7.8)


@internal
@pure
def _deleverage(step: Bytes[T.MAX_FIXED_STEP], time: uint256, pre: T.Pre) -> (uint8, T.Post):
    """
    @notice §7.8: `target u32 | counterparty u32 | market u8 | size u64`; a
            bankrupt target's position is closed against an opposite one at
            the mark and the counterparty bears a share of the deficit.
    @param step The 18-byte step.
    @param time The batch time.
    @param pre The decoded witness.
    @return The outcome code and what the step writes.
    """
    target: uint256 = convert(slice(step, 1, 4), uint256)
    counterparty: uint256 = convert(slice(step, 5, 4), uint256)
    market: uint256 = convert(slice(step, 9, 1), uint256)
    size: uint256 = convert(slice(step, 10, 8), uint256)
    if target == counterparty:
        return T.SAME_ACCOUNT, empty(T.Post)
    if target == 0 or not St._read(pre.w, T.S_A):
        return T.UNKNOWN_ACCOUNT, empty(T.Post)
    if counterparty == 0 or not St._read(pre.w, T.S_B):
        return T.UNKNOWN_ACCOUNT, empty(T.Post)
    code: uint8 = 0
    mw: uint256 = 0
    pw: uint256 = 0
    code, mw, pw = self._market_checks(market, size, time, pre)
    if code != T.OK:
        return code, empty(T.Post)
    target_norm: T.Account = empty(T.Account)
    counter_norm: T.Account = empty(T.Account)
    code, target_norm = G._normalize(pre.a, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    code, counter_norm = G._normalize(pre.b, pre.params, pre.prices)
    if code != T.OK:
        return code, empty(T.Post)
    held: int256 = G._position_size(target_norm, market)
    other: int256 = G._position_size(counter_norm, market)
    if held == 0 or other == 0:
        return T.NO_POSITION, empty(T.Post)
    if (held > 0) == (other > 0):
        return T.WRONG_DIRECTION, empty(T.Post)
    amount: int256 = convert(size, int256)
    if amount > M._abs(held) or amount > M._abs(other):
        return T.NO_POSITION, empty(T.Post)
    equity: int256 = G._assess(target_norm, pre.params, pre.prices).equity
    St._genesis(pre.w, T.S_GLOBAL)
    fund: int256 = pre.glob.insurance_fund
    deficit: int256 = -(equity + fund)
    if deficit <= 0:
        return T.NOT_BANKRUPT, empty(T.Post)
    mark: int256 = convert(pw >> 192, int256)
    share: int256 = min(M._div_ceil(deficit * amount * mark, G._gross_notional(target_norm, pre.prices)), deficit)
    findex: int256 = 0
    if mw >> 248 == T.KIND_PERP:
        findex = C._signed(pw >> 64, 128)
    delta: int256 = amount
    if held > 0:
        delta = -amount
    post: T.Post = empty(T.Post)
    code, post.a = G._fill(target_norm, market, delta, mark, findex, False, 0)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.a = G._with_collateral(post.a, fund + share)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.b = G._fill(counter_norm, market, -delta, mark, findex, False, 0)
    if code != T.OK:
        return code, empty(T.Post)
    code, post.b = G._with_collateral(post.b, -share)
    if code != T.OK:
        return code, empty(T.Post)
    post.glob = pre.glob
    post.glob.insurance_fund = 0
    post.glob.l2_time = time
    post.writes = (1 << T.S_GLOBAL) | (1 << T.S_A) | (1 << T.S_B)
    return T.OK, post
