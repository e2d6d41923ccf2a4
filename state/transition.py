"""The state-transition function: one step at a time, total and deterministic.

``apply_step(view, step, ctx)`` never raises on any step bytes. Each handler
checks everything first (raising :class:`StfError` with a named code) and only
then writes, so a refused step changes nothing — except that deposit and forced
steps always advance their queue pointer (docs/stf.md §7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from state.arith import div_ceil, div_floor, div_trunc, mul_bps_ceil, mul_bps_floor
from state.constants import (
    ACCOUNT_LIMIT,
    AMOUNT_LIMIT,
    COLLATERAL_LIMIT,
    COST_LIMIT,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    FLAGS_DEFINED,
    FUNDING_INDEX_LIMIT,
    FUNDING_PERIOD,
    FUNDING_SCALE,
    KIND_CALL,
    KIND_PERP,
    MAX_POSITIONS,
    MAX_UNDERLYINGS,
    ORACLE_UNDERLYING_BASE,
    POOL_LIMIT,
    PRICE_FLAG_SETTLED,
    PRICE_LIMIT,
    SIZE_LIMIT,
    U64_LIMIT,
)
from state.context import BatchContext
from state.eip712 import cancel_digest, oracle_digest, order_digest, recover_signer, withdraw_digest
from state.errors import Code, StfError
from state.keccak import keccak256
from state.layout import (
    Account,
    Config,
    Global,
    Market,
    MarketPrice,
    OrderState,
    Position,
    Prices,
    Withdrawal,
)
from state.margin import assess, gross_notional, normalize
from state.txs import (
    Cancel,
    Deleverage,
    Deposit,
    Forced,
    ForcedWithdraw,
    Funding,
    Liquidate,
    Oracle,
    OrderBody,
    Settle,
    SignedOrder,
    Trade,
    Withdraw,
    decode_forced_payload,
    decode_step,
)
from state.view import StateView

ZERO_ADDRESS = b"\x00" * 20


@dataclass(slots=True, unsafe_hash=True)
class Receipt:
    """The outcome of one step: its kind byte (0 for empty bytes) and its code."""

    kind: int
    code: Code

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, kind: int, code: Code) -> None:
        self.kind = kind
        self.code = code


def apply_step(view: StateView, step: bytes, ctx: BatchContext) -> Receipt:
    """Apply one step of a batch to ``view``. Never raises on any ``step`` bytes."""
    kind = step[0] if step else 0
    tx = decode_step(step)
    if tx is None:
        return Receipt(kind, Code.UNKNOWN_KIND if kind not in _KNOWN else Code.INVALID_ENCODING)
    try:
        _HANDLERS[type(tx)](view, tx, ctx)
    except StfError as refusal:
        return Receipt(kind, refusal.code)
    return Receipt(kind, Code.OK)


def apply_steps(view: StateView, steps: Sequence[bytes], ctx: BatchContext) -> list[Receipt]:
    """Apply every step in order and return their receipts."""
    return [apply_step(view, step, ctx) for step in steps]


# ============================================================================ helpers


def _refuse(code: Code) -> StfError:
    return StfError(code)


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _market(markets: tuple[Market, ...], market_id: int) -> Market:
    if market_id >= len(markets):
        raise _refuse(Code.UNKNOWN_MARKET)
    return markets[market_id]


def _account(view: StateView, index: int) -> Account:
    account = view.account(index)
    if account is None:
        raise _refuse(Code.UNKNOWN_ACCOUNT)
    return account


def _check_fresh(prices: Prices, config: Config, now: int) -> None:
    if now - prices.oracle_time > config.max_oracle_age:
        raise _refuse(Code.STALE_ORACLE)


def _check_size(size: int, market: Market) -> None:
    if not 0 < size < SIZE_LIMIT:
        raise _refuse(Code.BAD_AMOUNT)
    if size % market.lot:
        raise _refuse(Code.LOT_SIZE)


def _check_collateral(value: int) -> None:
    if not -COLLATERAL_LIMIT < value < COLLATERAL_LIMIT:
        raise _refuse(Code.OVERFLOW)


def _with_collateral(account: Account, delta: int) -> Account:
    collateral = account.collateral + delta
    _check_collateral(collateral)
    return Account(account.owner, account.nonce, collateral, account.positions)


def _fill(
    account: Account, market_id: int, delta: int, price: int, funding_index: int,
    reduce_only: bool, collateral_delta: int = 0,
) -> Account:
    """Move ``delta`` (signed size) of ``market_id`` at ``price`` into a normalised account,
    then add ``collateral_delta`` (a fee, rebate, penalty or bonus) to its collateral.

    Same-direction fills add to the cost basis; reducing fills realise
    price × closed size plus floor(cost × closed / |size|) into collateral.
    """
    positions = account.positions
    at = 0
    size = cost = 0
    for at, old in enumerate(positions):  # noqa: B007 - ``at`` is the insertion point
        if old.market >= market_id:
            if old.market == market_id:
                size, cost = old.size, old.cost
            break
    else:
        at = len(positions)
    if reduce_only and not (size != 0 and (delta > 0) != (size > 0) and abs(delta) <= abs(size)):
        raise _refuse(Code.REDUCE_ONLY)
    realized = 0
    if size == 0 or (delta > 0) == (size > 0):
        new_size, new_cost = size + delta, cost - delta * price
    else:
        closed = min(abs(delta), abs(size))
        closing = closed if delta > 0 else -closed
        cost_part = div_floor(cost * closed, abs(size))
        realized = -closing * price + cost_part
        new_size = size + closing
        new_cost = cost - cost_part
        rest = delta - closing
        if rest:
            new_size, new_cost = rest, new_cost - rest * price
    if abs(new_size) >= SIZE_LIMIT or abs(new_cost) >= COST_LIMIT:
        raise _refuse(Code.OVERFLOW)
    collateral = account.collateral + realized + collateral_delta
    _check_collateral(collateral)
    tail = at + 1 if size != 0 else at
    if new_size == 0:
        middle: tuple[Position, ...] = ()
    else:
        if size == 0 and len(positions) >= MAX_POSITIONS:
            raise _refuse(Code.TOO_MANY_POSITIONS)
        middle = (Position(market_id, new_size, new_cost, funding_index),)
    return Account(
        account.owner, account.nonce, collateral, positions[:at] + middle + positions[tail:]
    )


def _check_trade_margin(
    before: Account, after: Account, market_id: int, markets: tuple[Market, ...],
    prices: Prices, config: Config,
) -> None:
    """After a fill: initial margin holds, or the fill reduced the position (without
    flipping it) and the account stays above its liquidation threshold."""
    risk = assess(after, markets, prices, config)
    if risk.equity >= risk.initial:
        return
    old = before.position(market_id)
    new = after.position(market_id)
    old_size = old.size if old is not None else 0
    new_size = new.size if new is not None else 0
    reducing = abs(new_size) < abs(old_size) and (new_size == 0 or _sign(new_size) == _sign(old_size))
    if reducing and risk.equity >= risk.liquidation_threshold:
        return
    raise _refuse(Code.INSUFFICIENT_MARGIN)


def _signed_order(
    ctx: BatchContext, view: StateView, ref: int
) -> tuple[SignedOrder, Account, bytes]:
    """Resolve an order-table reference: the order, its account and its digest.

    Refuses a bad reference, undefined flag bits, an unknown account and a
    signature that is not the account owner's."""
    order = ctx.orders.get(ref)
    if order is None:
        raise _refuse(Code.BAD_ORDER_REF)
    if order.body.flags & ~FLAGS_DEFINED:
        raise _refuse(Code.BAD_FLAGS)
    account = _account(view, order.body.account)
    digest, signed = ctx.orders.digest_and_check(ref, order, account.owner)
    if not signed:
        raise _refuse(Code.BAD_SIGNATURE)
    return order, account, digest


def _check_order_fill(view: StateView, body: OrderBody, digest: bytes, size: int, now: int) -> OrderState:
    if now >= body.expiry:
        raise _refuse(Code.ORDER_EXPIRED)
    state = view.order_state(digest)
    if state.cancelled:
        raise _refuse(Code.ORDER_CANCELLED)
    if state.filled + size > body.size:
        raise _refuse(Code.ORDER_OVERFILL)
    return state


# ============================================================================ deposit


def _deposit(view: StateView, tx: Deposit, ctx: BatchContext) -> None:
    g = view.global_()
    item = ctx.queues.deposit(g.next_deposit)
    if item is None:
        raise _refuse(Code.QUEUE_EMPTY)
    if g.next_deposit + 1 >= U64_LIMIT:
        raise _refuse(Code.OVERFLOW)
    consumed = Global(
        ctx.time, g.next_deposit + 1, g.next_forced, g.withdrawal_count, g.account_count,
        g.insurance_fund, g.fee_pool,
    )
    view.set_global(consumed)  # the queue pointer advances whatever follows
    if not 0 < item.amount < AMOUNT_LIMIT:
        raise _refuse(Code.BAD_AMOUNT)
    index = view.account_index(item.owner)
    if index is None:
        if consumed.account_count + 1 >= ACCOUNT_LIMIT:
            raise _refuse(Code.ACCOUNT_LIMIT)
        index = consumed.account_count
        account = Account(item.owner, 0, item.amount, ())
        view.set_account_index(item.owner, index)
        view.set_global(
            Global(
                consumed.l2_time, consumed.next_deposit, consumed.next_forced,
                consumed.withdrawal_count, index + 1, consumed.insurance_fund, consumed.fee_pool,
            )
        )
    else:
        account = _with_collateral(_account(view, index), item.amount)
    view.set_account(index, account)


# ============================================================================ withdraw


def _withdraw_effects(
    view: StateView, ctx: BatchContext, index: int, account: Account, recipient: bytes,
    amount: int, next_nonce: int,
) -> None:
    params = view.params()
    prices = view.prices()
    if recipient == ZERO_ADDRESS:
        raise _refuse(Code.BAD_RECIPIENT)
    if not 0 < amount < AMOUNT_LIMIT:
        raise _refuse(Code.BAD_AMOUNT)
    norm = normalize(account, params.markets, prices)
    if amount > norm.collateral:
        raise _refuse(Code.INSUFFICIENT_COLLATERAL)
    after = Account(norm.owner, next_nonce, norm.collateral - amount, norm.positions)
    if after.positions:
        _check_fresh(prices, params.config, ctx.time)
        risk = assess(after, params.markets, prices, params.config)
        if risk.equity < risk.initial:
            raise _refuse(Code.INSUFFICIENT_MARGIN)
    g = view.global_()
    if g.withdrawal_count + 1 >= U64_LIMIT:
        raise _refuse(Code.OVERFLOW)
    view.set_withdrawal(g.withdrawal_count, Withdrawal(index, recipient, amount))
    view.set_global(
        Global(
            ctx.time, g.next_deposit, g.next_forced, g.withdrawal_count + 1, g.account_count,
            g.insurance_fund, g.fee_pool,
        )
    )
    view.set_account(index, after)


def _withdraw(view: StateView, tx: Withdraw, ctx: BatchContext) -> None:
    account = _account(view, tx.account)
    if tx.nonce != account.nonce:
        raise _refuse(Code.BAD_NONCE)
    if account.nonce + 1 >= U64_LIMIT:
        raise _refuse(Code.OVERFLOW)
    digest = withdraw_digest(ctx.chain.domain, account.owner, tx.recipient, tx.amount, tx.nonce)
    if recover_signer(digest, tx.signature) != account.owner:
        raise _refuse(Code.BAD_SIGNATURE)
    _withdraw_effects(view, ctx, tx.account, account, tx.recipient, tx.amount, account.nonce + 1)


# ============================================================================ trade


def _trade(view: StateView, tx: Trade, ctx: BatchContext) -> None:
    if tx.maker == tx.taker:
        raise _refuse(Code.BAD_ORDER_REF)
    maker_order, maker, maker_digest = _signed_order(ctx, view, tx.maker)
    taker_order, taker, taker_digest = _signed_order(ctx, view, tx.taker)
    mb, tb = maker_order.body, taker_order.body
    if mb.market != tb.market:
        raise _refuse(Code.MARKET_MISMATCH)
    if mb.is_buy == tb.is_buy:
        raise _refuse(Code.SAME_SIDE)
    if mb.account == tb.account:
        raise _refuse(Code.SELF_TRADE)
    if tb.flags & FLAG_POST_ONLY:
        raise _refuse(Code.POST_ONLY_TAKER)
    params = view.params()
    market_id = mb.market
    market = _market(params.markets, market_id)
    size = tx.size
    _check_size(size, market)
    price = mb.price
    if not 0 < price < PRICE_LIMIT:
        raise _refuse(Code.BAD_PRICE)
    if price % market.tick:
        raise _refuse(Code.TICK_SIZE)
    if (tb.price < price) if tb.is_buy else (tb.price > price):
        raise _refuse(Code.PRICE_LIMIT)
    prices = view.prices()
    mp = prices.markets[market_id]
    now = ctx.time
    if mp.settled:
        raise _refuse(Code.MARKET_SETTLED)
    if market.kind != KIND_PERP and now >= market.expiry:
        raise _refuse(Code.MARKET_EXPIRED)
    if mp.mark == 0 or (market.kind != KIND_PERP and prices.index[market.underlying] == 0):
        raise _refuse(Code.NO_PRICE)
    _check_fresh(prices, params.config, now)
    maker_state = _check_order_fill(view, mb, maker_digest, size, now)
    taker_state = _check_order_fill(view, tb, taker_digest, size, now)

    config = params.config
    notional = size * price
    fee = mul_bps_ceil(notional, config.taker_fee_bps)
    rebate = mul_bps_floor(notional, config.maker_rebate_bps)
    findex = mp.funding_index if market.kind == KIND_PERP else 0
    maker_delta = size if mb.is_buy else -size

    maker_norm = normalize(maker, params.markets, prices)
    maker_after = _fill(
        maker_norm, market_id, maker_delta, price, findex, bool(mb.flags & FLAG_REDUCE_ONLY), rebate
    )
    taker_norm = normalize(taker, params.markets, prices)
    taker_after = _fill(
        taker_norm, market_id, -maker_delta, price, findex, bool(tb.flags & FLAG_REDUCE_ONLY), -fee
    )
    _check_trade_margin(maker_norm, maker_after, market_id, params.markets, prices, config)
    _check_trade_margin(taker_norm, taker_after, market_id, params.markets, prices, config)

    g = view.global_()
    fee_pool = g.fee_pool + fee - rebate
    if fee_pool >= POOL_LIMIT:
        raise _refuse(Code.OVERFLOW)
    view.set_account(mb.account, maker_after)
    view.set_account(tb.account, taker_after)
    view.set_order_state(maker_digest, OrderState(maker_state.filled + size, False))
    view.set_order_state(taker_digest, OrderState(taker_state.filled + size, False))
    view.set_global(
        Global(
            now, g.next_deposit, g.next_forced, g.withdrawal_count, g.account_count,
            g.insurance_fund, fee_pool,
        )
    )


# ============================================================================ cancel


def _cancel_effects(view: StateView, digest: bytes) -> None:
    state = view.order_state(digest)
    if state.cancelled:
        raise _refuse(Code.ALREADY_CANCELLED)
    view.set_order_state(digest, OrderState(state.filled, True))


def _cancel(view: StateView, tx: Cancel, ctx: BatchContext) -> None:
    order = ctx.orders.get(tx.order)
    if order is None:
        raise _refuse(Code.BAD_ORDER_REF)
    account = _account(view, order.body.account)
    digest = _body_digest(ctx, order.body, account.owner)
    if recover_signer(cancel_digest(ctx.chain.domain, account.owner, digest), tx.signature) != account.owner:
        raise _refuse(Code.BAD_SIGNATURE)
    _cancel_effects(view, digest)


def _body_digest(ctx: BatchContext, b: OrderBody, owner: bytes) -> bytes:
    return order_digest(ctx.chain.domain, owner, b.market, b.is_buy, b.price, b.size, b.flags, b.expiry, b.salt)


# ============================================================================ oracle


def _oracle(view: StateView, tx: Oracle, ctx: BatchContext) -> None:
    """§7.5: publish a signed price update."""
    # §7.5 step 1: decided by the step and the key set alone, before any leaf
    # is read and any signature recovered
    if len(tx.signatures) > len(ctx.chain.oracle_keys):
        raise _refuse(Code.ORACLE_QUORUM)
    prices = view.prices()
    params = view.params()
    if tx.timestamp <= prices.oracle_time:
        raise _refuse(Code.ORACLE_NOT_MONOTONIC)
    if tx.timestamp > ctx.time:
        raise _refuse(Code.ORACLE_FUTURE)
    n_markets = len(params.markets)
    index = list(prices.index)
    markets = list(prices.markets)
    last_id = -1
    for entry in tx.entries:
        if entry.id <= last_id or not 0 < entry.price < PRICE_LIMIT:
            raise _refuse(Code.BAD_PRICE)
        last_id = entry.id
        if entry.id < n_markets:
            mp = markets[entry.id]
            if mp.settled:
                raise _refuse(Code.MARKET_SETTLED)
            markets[entry.id] = MarketPrice(entry.price, mp.funding_index, entry.iv, mp.flags)
        elif ORACLE_UNDERLYING_BASE <= entry.id < ORACLE_UNDERLYING_BASE + MAX_UNDERLYINGS:
            if entry.iv != 0:
                raise _refuse(Code.BAD_PRICE)
            index[entry.id - ORACLE_UNDERLYING_BASE] = entry.price
        else:
            raise _refuse(Code.BAD_PRICE)
    _check_oracle_quorum(tx, ctx)
    view.set_prices(Prices(tx.timestamp, prices.funding_time, tuple(index), tuple(markets)))


def _check_oracle_quorum(tx: Oracle, ctx: BatchContext) -> None:
    """§7.5 step 4: at least the threshold of distinct key-set members signed the update."""
    digest = oracle_digest(ctx.chain.domain, tx.timestamp, keccak256(tx.entries_bytes))
    signers = set()
    for signature in tx.signatures:
        signer = recover_signer(digest, signature)
        if signer is not None and signer in ctx.chain.oracle_keys:
            signers.add(signer)
    if len(signers) < ctx.chain.oracle_threshold:
        raise _refuse(Code.ORACLE_QUORUM)


# ============================================================================ funding


def _funding(view: StateView, tx: Funding, ctx: BatchContext) -> None:
    prices = view.prices()
    params = view.params()
    elapsed = ctx.time - prices.funding_time
    if elapsed <= 0:
        raise _refuse(Code.FUNDING_TOO_EARLY)
    if elapsed > FUNDING_PERIOD:
        elapsed = FUNDING_PERIOD
    cap_bps = params.config.funding_cap_bps
    markets = list(prices.markets)
    for i, market in enumerate(params.markets):
        mp = markets[i]
        spot = prices.index[market.underlying]
        if market.kind != KIND_PERP or mp.mark == 0 or spot == 0:
            continue
        cap = mul_bps_floor(spot, cap_bps)
        premium = max(-cap, min(cap, mp.mark - spot))
        new_index = mp.funding_index + div_trunc(premium * FUNDING_SCALE * elapsed, FUNDING_PERIOD)
        if abs(new_index) >= FUNDING_INDEX_LIMIT:
            raise _refuse(Code.OVERFLOW)
        markets[i] = MarketPrice(mp.mark, new_index, mp.iv, mp.flags)
    view.set_prices(Prices(prices.oracle_time, ctx.time, prices.index, tuple(markets)))


# ============================================================================ settle


def _settle(view: StateView, tx: Settle, ctx: BatchContext) -> None:
    params = view.params()
    prices = view.prices()
    market = _market(params.markets, tx.market)
    if market.kind == KIND_PERP:
        raise _refuse(Code.NOT_OPTION)
    mp = prices.markets[tx.market]
    if mp.settled:
        raise _refuse(Code.MARKET_SETTLED)
    if ctx.time < market.expiry:
        raise _refuse(Code.NOT_EXPIRED)
    if prices.oracle_time < market.expiry:
        raise _refuse(Code.STALE_ORACLE)
    spot = prices.index[market.underlying]
    if spot == 0:
        raise _refuse(Code.NO_PRICE)
    if market.kind == KIND_CALL:
        payoff = spot - market.strike if spot > market.strike else 0
    else:
        payoff = market.strike - spot if market.strike > spot else 0
    markets = list(prices.markets)
    markets[tx.market] = MarketPrice(payoff, mp.funding_index, mp.iv, mp.flags | PRICE_FLAG_SETTLED)
    view.set_prices(Prices(prices.oracle_time, prices.funding_time, prices.index, tuple(markets)))


# ============================================================================ liquidate


def _liquidate(view: StateView, tx: Liquidate, ctx: BatchContext) -> None:
    target = _account(view, tx.target)
    order, liquidator, digest = _signed_order(ctx, view, tx.order)
    body = order.body
    if body.account == tx.target:
        raise _refuse(Code.SAME_ACCOUNT)
    params = view.params()
    prices = view.prices()
    config = params.config
    market_id = body.market
    market = _market(params.markets, market_id)
    mp = prices.markets[market_id]
    if mp.settled:
        raise _refuse(Code.MARKET_SETTLED)
    if mp.mark == 0:
        raise _refuse(Code.NO_PRICE)
    _check_fresh(prices, config, ctx.time)
    size = tx.size
    _check_size(size, market)
    order_state = _check_order_fill(view, body, digest, size, ctx.time)
    mark = mp.mark
    if (body.price < mark) if body.is_buy else (body.price > mark):
        raise _refuse(Code.PRICE_LIMIT)
    target_norm = normalize(target, params.markets, prices)
    position = target_norm.position(market_id)
    if position is None:
        raise _refuse(Code.NO_POSITION)
    if body.is_buy != (position.size > 0):
        raise _refuse(Code.WRONG_DIRECTION)
    if size > abs(position.size):
        raise _refuse(Code.NO_POSITION)
    risk = assess(target_norm, params.markets, prices, config)
    if risk.equity >= risk.liquidation_threshold:
        raise _refuse(Code.NOT_LIQUIDATABLE)
    g = view.global_()
    fund = g.insurance_fund
    if risk.equity + fund < 0:
        raise _refuse(Code.DELEVERAGE_REQUIRED)

    findex = mp.funding_index if market.kind == KIND_PERP else 0
    delta = -size if position.size > 0 else size
    notional = size * mark
    penalty = mul_bps_ceil(notional, config.liquidation_penalty_bps)
    target_after = _fill(target_norm, market_id, delta, mark, findex, False)
    target_after = _with_collateral(target_after, -penalty)
    fund += penalty
    if not target_after.positions and target_after.collateral < 0:
        cover = min(-target_after.collateral, fund)
        fund -= cover
        target_after = _with_collateral(target_after, cover)
    bonus = min(mul_bps_floor(notional, config.liquidator_bonus_bps), fund)
    fund -= bonus
    if fund >= POOL_LIMIT:
        raise _refuse(Code.OVERFLOW)
    liq_norm = normalize(liquidator, params.markets, prices)
    liq_after = _fill(liq_norm, market_id, -delta, mark, findex, bool(body.flags & FLAG_REDUCE_ONLY))
    liq_after = _with_collateral(liq_after, bonus)
    _check_trade_margin(liq_norm, liq_after, market_id, params.markets, prices, config)

    view.set_account(tx.target, target_after)
    view.set_account(body.account, liq_after)
    view.set_order_state(digest, OrderState(order_state.filled + size, False))
    view.set_global(
        Global(
            ctx.time, g.next_deposit, g.next_forced, g.withdrawal_count, g.account_count,
            fund, g.fee_pool,
        )
    )


# ============================================================================ deleverage


def _deleverage(view: StateView, tx: Deleverage, ctx: BatchContext) -> None:
    if tx.target == tx.counterparty:
        raise _refuse(Code.SAME_ACCOUNT)
    target = _account(view, tx.target)
    counterparty = _account(view, tx.counterparty)
    params = view.params()
    prices = view.prices()
    config = params.config
    market = _market(params.markets, tx.market)
    mp = prices.markets[tx.market]
    if mp.settled:
        raise _refuse(Code.MARKET_SETTLED)
    if mp.mark == 0:
        raise _refuse(Code.NO_PRICE)
    _check_fresh(prices, config, ctx.time)
    size = tx.size
    _check_size(size, market)
    target_norm = normalize(target, params.markets, prices)
    counter_norm = normalize(counterparty, params.markets, prices)
    tpos = target_norm.position(tx.market)
    cpos = counter_norm.position(tx.market)
    if tpos is None or cpos is None:
        raise _refuse(Code.NO_POSITION)
    if _sign(tpos.size) == _sign(cpos.size):
        raise _refuse(Code.WRONG_DIRECTION)
    if size > abs(tpos.size) or size > abs(cpos.size):
        raise _refuse(Code.NO_POSITION)
    equity = assess(target_norm, params.markets, prices, config).equity
    g = view.global_()
    deficit = -(equity + g.insurance_fund)
    if deficit <= 0:
        raise _refuse(Code.NOT_BANKRUPT)
    mark = mp.mark
    share = div_ceil(deficit * size * mark, gross_notional(target_norm, prices))
    if share > deficit:
        share = deficit
    findex = mp.funding_index if market.kind == KIND_PERP else 0
    delta = -size if tpos.size > 0 else size
    target_after = _fill(target_norm, tx.market, delta, mark, findex, False)
    target_after = _with_collateral(target_after, g.insurance_fund + share)
    counter_after = _fill(counter_norm, tx.market, -delta, mark, findex, False)
    counter_after = _with_collateral(counter_after, -share)
    view.set_account(tx.target, target_after)
    view.set_account(tx.counterparty, counter_after)
    view.set_global(
        Global(
            ctx.time, g.next_deposit, g.next_forced, g.withdrawal_count, g.account_count,
            0, g.fee_pool,
        )
    )


# ============================================================================ forced


def _forced(view: StateView, tx: Forced, ctx: BatchContext) -> None:
    g = view.global_()
    item = ctx.queues.forced(g.next_forced)
    if item is None:
        raise _refuse(Code.QUEUE_EMPTY)
    if g.next_forced + 1 >= U64_LIMIT:
        raise _refuse(Code.OVERFLOW)
    view.set_global(
        Global(
            ctx.time, g.next_deposit, g.next_forced + 1, g.withdrawal_count, g.account_count,
            g.insurance_fund, g.fee_pool,
        )
    )
    payload = decode_forced_payload(item.payload)
    if payload is None:
        raise _refuse(Code.INVALID_ENCODING)
    if isinstance(payload, ForcedWithdraw):
        account = _account(view, payload.account)
        if item.sender != account.owner:
            raise _refuse(Code.NOT_OWNER)
        _withdraw_effects(
            view, ctx, payload.account, account, payload.recipient, payload.amount, account.nonce
        )
        return
    if payload.order.flags & ~FLAGS_DEFINED:
        raise _refuse(Code.BAD_FLAGS)
    account = _account(view, payload.order.account)
    if item.sender != account.owner:
        raise _refuse(Code.NOT_OWNER)
    _cancel_effects(view, _body_digest(ctx, payload.order, account.owner))


_HANDLERS: dict[type, Callable[[StateView, Any, BatchContext], None]] = {
    Deposit: _deposit,
    Withdraw: _withdraw,
    Trade: _trade,
    Cancel: _cancel,
    Oracle: _oracle,
    Funding: _funding,
    Liquidate: _liquidate,
    Deleverage: _deleverage,
    Settle: _settle,
    Forced: _forced,
}
_KNOWN = frozenset(range(0x01, 0x0B))
