# pragma version ~=0.4.3
"""
@title StfMargin
@license MIT
@notice Normalisation, valuation and margin (docs/stf.md §8) and the fill
        (§7 "a fill"), matching state/margin.py and `_fill`,
        `_check_trade_margin` of state/transition.py.
@dev Stateless module. Refusals are returned as outcome codes (OK = 0), never
     raised: a refused step must still return a receipt. The params and
     prices leaves are read in place with `extract32` inside the loops (a
     call per field would copy the leaves).
"""

from . import StfTypes as T
from . import StfMath as M
from . import StfCodec as C


@internal
@pure
def _normalize(
    a: T.Account, params: Bytes[T.MAX_LEAF], prices: Bytes[T.MAX_LEAF]
) -> (uint8, T.Account):
    """
    @notice §8.1: settle pending funding of perpetuals and close positions in
            settled option markets.
    @dev Field widths bound every intermediate: |size| < 2**63 (i64),
         |cost| < 2**95 (i96), |funding index| < 2**127 (i128), |snapshot|
         < 2**87 (i88), mark < 2**64 (u64), |collateral| < 2**127, so the
         unchecked products and sums below stay under 2**200. The result is
         then checked against COLLATERAL_LIMIT.
    @param a The account.
    @param params The params leaf.
    @param prices The prices leaf.
    @return OK or OVERFLOW, and the normalised account.
    """
    collateral: int256 = a.collateral
    changed: bool = False
    kept: DynArray[uint256, T.MAX_POSITIONS] = []
    for p: uint256 in a.positions:
        # unchecked: market ids are below 64, the offsets cannot overflow
        market: uint256 = p >> 248
        pw: uint256 = convert(extract32(prices, unsafe_add(T.PRICES_HEAD, unsafe_mul(32, market))), uint256)
        # fields are sign-extended by moving them to the top of a word and
        # shifting back arithmetically (StfCodec `_signed`, `_pos_*`)
        size: int256 = convert(convert(p << 8, bytes32), int256) >> 192
        kind: uint256 = convert(extract32(params, unsafe_add(T.CONFIG_SIZE, unsafe_mul(32, market))), uint256) >> 248
        if kind == T.KIND_PERP:
            index: int256 = convert(convert(pw << 64, bytes32), int256) >> 128
            snapshot: int256 = convert(convert(p << 168, bytes32), int256) >> 168
            if index != snapshot:
                # div_floor(-size × Δindex, FUNDING_SCALE), unchecked: |x| < 2**192
                # and the sum of 16 quotients stays far below 2**255 (see @dev)
                x: int256 = unsafe_mul(unsafe_sub(0, size), unsafe_sub(index, snapshot))
                q: int256 = unsafe_div(x, T.FUNDING_SCALE)
                if x < 0 and unsafe_mul(q, T.FUNDING_SCALE) != x:
                    q = unsafe_sub(q, 1)
                collateral = unsafe_add(collateral, q)
                changed = True
                # replace the 88-bit snapshot (|index| < 2**87 fits it)
                kept.append((p & ~C.MASK_88) | (convert(convert(index, bytes32), uint256) & C.MASK_88))
            else:
                kept.append(p)
        elif (pw >> 24) & T.PRICE_FLAG_SETTLED != 0:
            # unchecked: size × payoff + cost is below 2**128 in magnitude (see @dev)
            value: int256 = unsafe_add(
                unsafe_mul(size, convert(pw >> 192, int256)), convert(convert(p << 72, bytes32), int256) >> 160
            )
            collateral = unsafe_add(collateral, value)
            changed = True
        else:
            kept.append(p)
    if not changed:
        return T.OK, a
    if collateral <= -T.COLLATERAL_LIMIT or collateral >= T.COLLATERAL_LIMIT:
        return T.OVERFLOW, a
    return T.OK, T.Account(owner=a.owner, nonce=a.nonce, collateral=collateral, positions=kept)


@internal
@pure
def _option_unit(x: int256, otm: int256) -> int256:
    """
    @notice Requirement per short option unit (§8.3) for x = S × r:
            max(div_ceil(x, BPS) − OTM, div_ceil(x, 2·BPS)).
    @param x The index price times the rate in basis points (0 <= x < 2**80).
    @param otm How far out of the money the option is (0 <= otm < 2**64).
    @return The requirement per unit.
    """
    # 0 <= x < 2**80: ceil(x / d) = (x + d - 1) / d, no overflow or underflow
    full: int256 = unsafe_sub(unsafe_div(unsafe_add(x, T.BPS_S - 1), T.BPS_S), otm)
    floor_req: int256 = unsafe_div(unsafe_add(x, 2 * T.BPS_S - 1), 2 * T.BPS_S)
    return max(full, floor_req)


@internal
@pure
def _assess(a: T.Account, params: Bytes[T.MAX_LEAF], prices: Bytes[T.MAX_LEAF]) -> T.Risk:
    """
    @notice §8.2-8.3: equity and the initial, maintenance and buffer
            requirements of a normalised account.
    @dev Field widths bound every term: |size| < 2**63, |cost| < 2**95,
         mark and index < 2**64, rates < 2**16, |collateral| < 2**127; so
         each product is below 2**144 and each sum of 16 terms below 2**148:
         the arithmetic below is unchecked. Requirements are div_ceil of
         non-negative products, (x + d - 1) / d.
    @param a The normalised account.
    @param params The params leaf.
    @param prices The prices leaf.
    @return Its risk.
    """
    equity: int256 = a.collateral
    initial: int256 = 0
    maintenance: int256 = 0
    buffer: int256 = 0
    buffer_bps: int256 = convert((convert(extract32(params, 0), uint256) >> 176) & C.MASK_16, int256)
    for p: uint256 in a.positions:
        # unchecked: market ids are below 64, the offsets cannot overflow
        market: uint256 = p >> 248
        mw: uint256 = convert(extract32(params, unsafe_add(T.CONFIG_SIZE, unsafe_mul(32, market))), uint256)
        mark: int256 = convert(
            convert(extract32(prices, unsafe_add(T.PRICES_HEAD, unsafe_mul(32, market))), uint256) >> 192, int256
        )
        im_bps: int256 = convert((mw >> 224) & C.MASK_16, int256)
        mm_bps: int256 = convert((mw >> 208) & C.MASK_16, int256)
        # size (i64) and cost (i96) of the position word, sign-extended
        size: int256 = convert(convert(p << 8, bytes32), int256) >> 192
        cost: int256 = convert(convert(p << 72, bytes32), int256) >> 160
        # unchecked: every term below is bounded by the field widths (see @dev)
        equity = unsafe_add(equity, unsafe_add(unsafe_mul(size, mark), cost))
        if mw >> 248 == T.KIND_PERP:
            # unchecked: |size × mark| < 2**127, × rate < 2**143 (see @dev)
            notional: int256 = unsafe_mul(size, mark)
            if size < 0:
                notional = unsafe_sub(0, notional)
            initial = unsafe_add(initial, unsafe_div(unsafe_add(unsafe_mul(notional, im_bps), T.BPS_S - 1), T.BPS_S))
            maintenance = unsafe_add(
                maintenance, unsafe_div(unsafe_add(unsafe_mul(notional, mm_bps), T.BPS_S - 1), T.BPS_S)
            )
            buffer = unsafe_add(buffer, unsafe_div(unsafe_add(unsafe_mul(notional, buffer_bps), T.BPS_S - 1), T.BPS_S))
        elif size < 0:
            # unchecked: units < 2**63, spot < 2**64, rates < 2**16 (see @dev)
            units: int256 = unsafe_sub(0, size)
            spot: int256 = convert(
                convert(extract32(prices, unsafe_add(16, unsafe_mul(8, (mw >> 240) & C.MASK_8))), uint256) >> 192,
                int256,
            )
            strike: int256 = convert((mw >> 80) & C.MASK_64, int256)
            otm: int256 = 0
            # unchecked: each difference is taken only when positive
            if mw >> 248 == T.KIND_CALL:
                if strike > spot:
                    otm = unsafe_sub(strike, spot)
            elif spot > strike:
                otm = unsafe_sub(spot, strike)
            initial = unsafe_add(initial, unsafe_mul(units, self._option_unit(unsafe_mul(spot, im_bps), otm)))
            maintenance = unsafe_add(maintenance, unsafe_mul(units, self._option_unit(unsafe_mul(spot, mm_bps), otm)))
            buffer = unsafe_add(
                buffer, unsafe_div(unsafe_add(unsafe_mul(unsafe_mul(units, spot), buffer_bps), T.BPS_S - 1), T.BPS_S)
            )
    return T.Risk(equity=equity, initial=initial, maintenance=maintenance, buffer=buffer)


@internal
@pure
def _gross_notional(a: T.Account, prices: Bytes[T.MAX_LEAF]) -> int256:
    """
    @notice Σ |size| × mark over the account's positions (§7.8 step 4).
    @param a The normalised account.
    @param prices The prices leaf.
    @return G.
    """
    total: int256 = 0
    for p: uint256 in a.positions:
        mark: int256 = convert(convert(extract32(prices, T.PRICES_HEAD + 32 * (p >> 248)), uint256) >> 192, int256)
        # |size|: the i64 at bits 184..247, sign-extended
        size: int256 = convert(convert(p << 8, bytes32), int256) >> 192
        if size < 0:
            size = -size
        total += size * mark
    return total


@internal
@pure
def _position_size(a: T.Account, market: uint256) -> int256:
    """
    @notice The size of the account's position in `market` (0 when none).
    @param a The account.
    @param market The market id.
    @return The signed size.
    """
    for p: uint256 in a.positions:
        if p >> 248 == market:
            return C._pos_size(p)
    return 0


@internal
@pure
def _fill(
    a: T.Account,
    market: uint256,
    delta: int256,
    price: int256,
    funding_index: int256,
    reduce_only: bool,
    collateral_delta: int256,
) -> (uint8, T.Account):
    """
    @notice §7 "a fill": move `delta` of `market` at `price` into a normalised
            account, then add `collateral_delta` (a fee, rebate, penalty or
            bonus) to its collateral; bounds as state/transition.py `_fill`.
    @param a The normalised account.
    @param market The market id.
    @param delta The signed size moved into the account (non-zero).
    @param price The fill price.
    @param funding_index The snapshot written (the market's funding index for
           a perpetual, 0 for an option).
    @param reduce_only Whether the order is reduce-only.
    @param collateral_delta Added to the collateral with the realised PnL.
    @return OK or the refusal, and the account after the fill.
    """
    n: uint256 = len(a.positions)
    at: uint256 = n
    size: int256 = 0
    cost: int256 = 0
    for i: uint256 in range(n, bound=T.MAX_POSITIONS):
        held: uint256 = a.positions[i] >> 248
        if held >= market:
            at = i
            if held == market:
                size = C._pos_size(a.positions[i])
                cost = C._pos_cost(a.positions[i])
            break
    if reduce_only:
        if not (size != 0 and (delta > 0) != (size > 0) and M._abs(delta) <= M._abs(size)):
            return T.REDUCE_ONLY, a
    realized: int256 = 0
    new_size: int256 = 0
    new_cost: int256 = 0
    if size == 0 or (delta > 0) == (size > 0):
        new_size = size + delta
        new_cost = cost - delta * price
    else:
        closed: int256 = min(M._abs(delta), M._abs(size))
        closing: int256 = closed
        if delta < 0:
            closing = -closed
        part: int256 = M._div_floor(cost * closed, M._abs(size))
        realized = part - closing * price
        new_size = size + closing
        new_cost = cost - part
        rest: int256 = delta - closing
        if rest != 0:
            new_size = rest
            new_cost = new_cost - rest * price
    if M._abs(new_size) >= T.SIZE_LIMIT_S or M._abs(new_cost) >= T.COST_LIMIT:
        return T.OVERFLOW, a
    collateral: int256 = a.collateral + realized + collateral_delta
    if collateral <= -T.COLLATERAL_LIMIT or collateral >= T.COLLATERAL_LIMIT:
        return T.OVERFLOW, a
    if new_size != 0 and size == 0 and n >= T.MAX_POSITIONS:
        return T.TOO_MANY_POSITIONS, a
    out: T.Account = T.Account(owner=a.owner, nonce=a.nonce, collateral=collateral, positions=[])
    for i: uint256 in range(n, bound=T.MAX_POSITIONS):
        if i == at:
            if new_size != 0:
                out.positions.append(C._pos(market, new_size, new_cost, funding_index))
            if size != 0:
                continue
        out.positions.append(a.positions[i])
    if at == n and new_size != 0:
        out.positions.append(C._pos(market, new_size, new_cost, funding_index))
    return T.OK, out


@internal
@pure
def _with_collateral(a: T.Account, delta: int256) -> (uint8, T.Account):
    """
    @notice Add `delta` to the collateral, within its bound (else OVERFLOW).
    @param a The account.
    @param delta The signed amount.
    @return OK or OVERFLOW, and the account.
    """
    collateral: int256 = a.collateral + delta
    if collateral <= -T.COLLATERAL_LIMIT or collateral >= T.COLLATERAL_LIMIT:
        return T.OVERFLOW, a
    return T.OK, T.Account(owner=a.owner, nonce=a.nonce, collateral=collateral, positions=a.positions)


@internal
@pure
def _trade_margin(
    before: T.Account,
    after: T.Account,
    market: uint256,
    params: Bytes[T.MAX_LEAF],
    prices: Bytes[T.MAX_LEAF],
) -> uint8:
    """
    @notice §7 "the trade margin rule": E >= IM after the fill, or the fill
            reduced the position in `market` without flipping it and
            E >= LT.
    @param before The normalised account before the fill.
    @param after The account after the fill.
    @param market The market filled.
    @param params The params leaf.
    @param prices The prices leaf.
    @return OK or INSUFFICIENT_MARGIN.
    """
    r: T.Risk = self._assess(after, params, prices)
    if r.equity >= r.initial:
        return T.OK
    old: int256 = self._position_size(before, market)
    new: int256 = self._position_size(after, market)
    reducing: bool = M._abs(new) < M._abs(old) and (new == 0 or (new > 0) == (old > 0))
    if reducing and r.equity >= r.maintenance + r.buffer:
        return T.OK
    return T.INSUFFICIENT_MARGIN


@internal
@pure
def _fresh(params: Bytes[T.MAX_LEAF], prices: Bytes[T.MAX_LEAF], time: uint256) -> bool:
    """
    @notice "Fresh": time − oracle_time <= max_oracle_age (§7).
    @param params The params leaf.
    @param prices The prices leaf.
    @param time The batch time.
    @return Whether the oracle is fresh.
    """
    max_age: uint256 = (convert(extract32(params, 0), uint256) >> 128) & C.MASK_32
    oracle_time: uint256 = convert(extract32(prices, 0), uint256) >> 192
    return time <= oracle_time + max_age


@internal
@pure
def _check_size(size: uint256, market_word: uint256) -> uint8:
    """
    @notice §7 "a size check": 0 < size < SIZE_LIMIT (BAD_AMOUNT), then
            size mod lot = 0 (LOT_SIZE).
    @param size The fill size (u64).
    @param market_word The market's params word (`StfCodec._market_word`).
    @return OK or the refusal.
    """
    if size == 0 or size >= T.SIZE_LIMIT:
        return T.BAD_AMOUNT
    if size % ((market_word >> 144) & C.MASK_32) != 0:
        return T.LOT_SIZE
    return T.OK
