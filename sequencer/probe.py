"""Asking the STF about one side of a trade, without touching the state.

A *probe* runs the real trade step (docs/stf.md §7.3) on a scratch view that
holds copies of the few leaves a trade reads — params, prices, global, the
order's account and its order state — plus a synthetic counterparty: an
account with vast collateral whose order is the exact opposite at the same
price. Whatever the STF refuses is then the real order's fault. The
sequencer uses it twice:

* the intake's margin pre-check: "could this order fill entirely at its
  limit price?" (:meth:`Probe.order`), and
* blame on a refused fill: "does the maker alone pass?" (:meth:`Probe.order`
  with the maker's role), which decides REJECT_MAKER against REJECT_TAKER
  (docs/matching.md §7).

:func:`obviously_fine` is the cheap sufficient condition tried before a
pre-check probe: a conservative bound, computed with the STF's own valuation
(``state.margin``), that the order keeps its account above initial margin
even if it fills entirely at its limit. When the bound holds the probe could
not refuse the order for margin; when it does not, the probe decides.
"""

from __future__ import annotations

from sequencer.open_batch import LiveOrderTable, QueueMirror
from state.arith import div_ceil
from state.constants import (
    BPS,
    COST_LIMIT,
    FLAG_REDUCE_ONLY,
    KIND_PERP,
    MAX_POSITIONS,
    SIZE_LIMIT,
    U64_LIMIT,
)
from state.context import BatchContext, ChainConfig
from state.errors import Code, StfError
from state.keccak import keccak256
from state.layout import Account, Params, Prices
from state.margin import Risk, assess, normalize
from state.transition import apply_step
from state.txs import OrderBody, SignedOrder, encode_trade
from state.view import StateView

__all__ = ["Probe", "account_risk", "obviously_fine"]

SYNTHETIC_ACCOUNT = (1 << 32) - 2
"""An index no real account reaches (account_count stays below it)."""
SYNTHETIC_OWNER = b"\xfe" * 20
SYNTHETIC_DIGEST = keccak256(b"hfx-sequencer-probe")
SYNTHETIC_COLLATERAL = 1 << 120


class _NoLeaves:
    def get(self, key: bytes) -> bytes | None:
        return None


_EMPTY = _NoLeaves()
_NO_QUEUES = QueueMirror()


class Probe:
    """Runs trade steps against a synthetic counterparty on scratch views."""

    def __init__(self, chain: ChainConfig) -> None:
        self._chain = chain
        self._synthetic = Account(SYNTHETIC_OWNER, 0, SYNTHETIC_COLLATERAL, ())

    def order(
        self, view: StateView, time: int, order: SignedOrder, digest: bytes, owner: bytes,
        size: int, as_maker: bool,
    ) -> Code:
        """The STF's code for ``size`` of ``order`` filling at its own price, as maker or taker.

        Reads ``view`` (params, prices, global, the order's account and order
        state) and changes nothing.
        """
        body = order.body
        account = view.account(body.account)
        if account is None:
            return Code.UNKNOWN_ACCOUNT
        scratch = StateView(_EMPTY)
        scratch.set_params(view.params())
        scratch.set_prices(view.prices())
        scratch.set_global(view.global_())
        scratch.set_account(body.account, account)
        scratch.set_account(SYNTHETIC_ACCOUNT, self._synthetic)
        state = view.order_state(digest)
        if state.filled or state.cancelled:
            scratch.set_order_state(digest, state)
        other = OrderBody(
            SYNTHETIC_ACCOUNT, body.market, not body.is_buy, 0, body.price, size, U64_LIMIT - 1, 0
        )
        table = LiveOrderTable(self._chain.domain)
        table.append(order, b"", digest, owner, verified=True)
        table.append(SignedOrder(other, b""), b"", SYNTHETIC_DIGEST, SYNTHETIC_OWNER, verified=True)
        ctx = BatchContext(time, self._chain, _NO_QUEUES, table)
        step = encode_trade(0, 1, size) if as_maker else encode_trade(1, 0, size)
        return apply_step(scratch, step, ctx).code


    def oracle(self, view: StateView, step: bytes, time: int) -> Code:
        """The STF's code for an oracle step at batch time ``time`` (reads prices and params)."""
        scratch = StateView(_EMPTY)
        scratch.set_params(view.params())
        scratch.set_prices(view.prices())
        ctx = BatchContext(time, self._chain, _NO_QUEUES, LiveOrderTable(self._chain.domain))
        return apply_step(scratch, step, ctx).code


def account_risk(account: Account, params: Params, prices: Prices) -> Risk | None:
    """The STF's valuation of an account (None if normalising it would overflow)."""
    try:
        return assess(normalize(account, params.markets, prices), params.markets, prices, params.config)
    except StfError:
        return None


def obviously_fine(
    account: Account, risk: Risk, params: Params, prices: Prices, body: OrderBody, time: int
) -> bool:
    """A sufficient condition for ``body`` to pass the STF in full at its limit price.

    True only when the market is tradable at ``time``, the order is not
    reduce-only (those are probed), the account has room for a new position,
    and equity after the worst case — the whole size filled at the limit,
    the taker fee, and an upper bound of the added initial requirement —
    still covers the initial requirement. False means "ask the probe".
    ``risk`` is :func:`account_risk` of ``account`` at ``prices``.
    """
    if body.flags & FLAG_REDUCE_ONLY:
        return False
    config = params.config
    market = params.markets[body.market]
    mp = prices.markets[body.market]
    if mp.settled or mp.mark == 0 or time - prices.oracle_time > config.max_oracle_age:
        return False
    spot = prices.index[market.underlying]
    if market.kind != KIND_PERP and (spot == 0 or time >= market.expiry):
        return False
    position = account.position(body.market)
    held = position.size if position is not None else 0
    if position is None and len(account.positions) >= MAX_POSITIONS:
        return False
    size, price = body.size, body.price
    if abs(held) + size >= SIZE_LIMIT or (
        position is not None and abs(position.cost) + size * price >= COST_LIMIT
    ):
        return False
    fee = div_ceil(size * price * config.taker_fee_bps, BPS)
    loss = size * (price - mp.mark) if body.is_buy else size * (mp.mark - price)
    if market.kind == KIND_PERP:
        added = div_ceil(size * mp.mark * market.im_bps, BPS) + 1
    else:
        added = size * div_ceil(spot * market.im_bps, BPS)
    return risk.equity - loss - fee - added >= risk.initial
