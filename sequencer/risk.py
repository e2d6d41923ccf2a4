"""The risk monitor: liquidations, auto-deleveraging, funding and settlement (docs/risk.md).

:class:`RiskMonitor` is registered as an ``oracle_hook`` on an
:class:`~sequencer.exchange.Exchange`. After every accepted oracle update it

1. sends a funding step once ``funding_interval`` seconds have passed since the
   last one (``prices.funding_time``);
2. sends a settle step for every unsettled option whose expiry the oracle has
   reached (the first oracle update at or after expiry, docs/stf.md §12);
3. re-values the accounts exposed to what moved and, for each one below its
   liquidation threshold (maintenance + synchronisation buffer, docs/stf.md
   §8.4), liquidates it into a signed order of the operator's in-house
   liquidator account, sized to bring it back to its threshold (or closing the
   position), or deleverages it (ADL) when its equity plus the insurance fund is
   negative.

Every action is a command on the Exchange, so it goes through the STF. A
refused action is logged (:attr:`RiskMonitor.failures`) and left for the next
tick: each tick tries a bounded number of actions and never loops on a refusal.

Everything that feeds a step is an integer; ranking ratios are exact fractions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial

from sequencer.exchange import Exchange
from sequencer.intake import IntakeError
from sequencer.outcomes import StepOutcome
from state.arith import div_ceil
from state.constants import BPS, KIND_PERP, U64_LIMIT
from state.eip712 import address_of
from state.layout import Account, Config, Market, Params, Position, Prices
from state.margin import Risk, assess, normalize
from state.signing import order_hash, sign_order
from state.txs import OrderBody

log = logging.getLogger("hfx.risk")

MAX_ACTIONS_PER_ACCOUNT = 40
"""Liquidation/deleverage steps tried for one account in one tick (then the next tick)."""
HISTORY = 10_000
"""Most recent actions and failures kept in :attr:`RiskMonitor.actions` / ``failures``."""


# ============================================================================ pure policy


def value(account: Account, params: Params, prices: Prices) -> tuple[Account, Risk]:
    """The normalised account and its STF valuation (docs/stf.md §8)."""
    norm = normalize(account, params.markets, prices)
    return norm, assess(norm, params.markets, prices, params.config)


def liquidatable(risk: Risk, account: Account) -> bool:
    """True when the account holds positions and its equity is below the liquidation threshold."""
    return bool(account.positions) and risk.equity < risk.liquidation_threshold


def after_close(account: Account, market: int, size: int, mark: int, penalty: int) -> Account:
    """The account after closing ``size`` units of its ``market`` position at ``mark`` and
    paying ``penalty``: what a liquidation leaves (equity drops by exactly the penalty)."""
    kept: list[Position] = []
    collateral = account.collateral - penalty
    for p in account.positions:
        if p.market != market:
            kept.append(p)
            continue
        remaining = p.size - size if p.size > 0 else p.size + size
        if remaining == 0:
            collateral += p.size * mark + p.cost
        else:
            kept.append(Position(market, remaining, p.cost + (p.size - remaining) * mark,
                                 p.funding_snapshot))
    return Account(account.owner, account.nonce, collateral, tuple(kept))


def liquidation_size(
    account: Account, market: int, params: Params, prices: Prices
) -> int:
    """How much of ``account``'s (normalised) ``market`` position to liquidate.

    The smallest multiple of the market's lot after which the account is no
    longer liquidatable (equity, net of the penalty, at least its liquidation
    threshold), found by bisection on the STF's own valuation; the whole
    position when no partial size does it (e.g. a penalty at least as large as
    the requirements it releases).
    """
    position = account.position(market)
    if position is None:
        return 0
    full = abs(position.size)
    mkt = params.markets[market]
    mark = prices.markets[market].mark
    bps = params.config.liquidation_penalty_bps

    def ok(size: int) -> bool:
        after = after_close(account, market, size, mark, div_ceil(size * mark * bps, BPS))
        return not liquidatable(assess(after, params.markets, prices, params.config), after)

    lot = mkt.lot
    lo, hi = 1, full // lot  # in lots; sizes are multiples of the lot
    if hi == 0 or not ok(hi * lot):
        return full
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid * lot):
            hi = mid
        else:
            lo = mid + 1
    return lo * lot


def requirement_share(position: Position, market: Market, prices: Prices, config: Config) -> int:
    """Maintenance + buffer requirement of one position (which position to liquidate first)."""
    probe = Account(b"\x00" * 20, 0, 0, (position,))
    r = assess(probe, (market,) * (position.market + 1), prices, config)
    return r.liquidation_threshold


def adl_key(position: Position, mark: int, equity: int, gross: int) -> tuple[Fraction, Fraction, int]:
    """The ranking key of a deleveraging counterparty, higher first (docs/stf.md §12):
    unrealised profit ratio ``(size × mark + cost) / |cost|``, then leverage
    ``gross notional / equity`` (an account with equity ≤ 0 counts as infinitely
    levered). Exact fractions; a zero cost counts as ratio ±10¹⁸ by sign of profit."""
    pnl = position.size * mark + position.cost
    cost = abs(position.cost)
    if cost:
        ratio = Fraction(pnl, cost)
    else:
        ratio = Fraction(10**18 if pnl > 0 else (-(10**18) if pnl < 0 else 0))
    leverage = Fraction(gross, equity) if equity > 0 else Fraction(10**30)
    return ratio, leverage, 0


def rank_counterparties(
    candidates: Iterable[tuple[int, Account]], market: int, target_long: bool,
    params: Params, prices: Prices,
) -> list[int]:
    """Account indices holding a position opposite to the target's in ``market``, best
    ADL counterparty first: highest profit ratio, then highest leverage, then lowest index."""
    mark = prices.markets[market].mark
    ranked: list[tuple[Fraction, Fraction, int]] = []
    for index, acct in candidates:
        norm, risk = value(acct, params, prices)
        p = norm.position(market)
        if p is None or (p.size > 0) == target_long:
            continue
        gross = sum(abs(q.size) * prices.markets[q.market].mark for q in norm.positions)
        ratio, lev, _ = adl_key(p, mark, risk.equity, gross)
        ranked.append((ratio, lev, -index))
    ranked.sort(reverse=True)
    return [-neg for _, _, neg in ranked]


# ============================================================================ the in-house liquidator


@dataclass
class InHouseLiquidator:
    """The operator's liquidator account: its key signs the orders the liquidate steps
    fill. It must hold collateral: it takes the positions over at the mark and passes the
    STF's trade margin rule like any trader."""

    key: bytes
    account: int
    order_ttl: int = 600
    """Seconds an order stays valid (it is used at once; the expiry only bounds replays)."""
    _salt: int = 0

    @property
    def owner(self) -> bytes:
        """The liquidator's address."""
        return address_of(self.key)

    def order(self, ex: Exchange, market: int, is_buy: bool, price: int, size: int, now: int) -> bytes:
        """A fresh signed 104-byte entry (its digest unused so far) taking ``size`` at ``price``."""
        while True:
            self._salt += 1
            body = OrderBody(
                self.account, market, is_buy, 0, price, size,
                min(now + self.order_ttl, U64_LIMIT - 1), (now << 20 | self._salt) % U64_LIMIT,
            )
            digest = order_hash(ex.chain.domain, self.owner, body)
            state = ex.order_state(digest)
            if state.filled == 0 and not state.cancelled and ex.known(digest) is None:
                return sign_order(self.key, self.owner, ex.chain.domain, body).encode()


# ============================================================================ the monitor


@dataclass(frozen=True, slots=True)
class Action:
    """One command the monitor sent: kind (liquidate, deleverage, funding, settle), its
    accounts/market/size, and the STF outcome code or the refusal's code."""

    kind: str
    target: int
    counterparty: int
    market: int
    size: int
    code: str


@dataclass
class RiskMonitor:
    """Recomputes margin after each oracle update and acts through the Exchange.

    ``funding_interval`` (seconds) is how often funding is accrued. The monitor
    keeps, per account, the last account leaf it valued and the markets it is
    exposed to; an account is re-valued only when its leaf changed or a price it
    depends on (mark, index of an option's underlying, funding index) moved.
    """

    liquidator: InHouseLiquidator
    funding_interval: int = 3_600
    funding_enabled: bool = True
    """Send funding steps (off: funding accrues only when someone else sends one)."""
    settlement_enabled: bool = True
    """Settle options at expiry."""
    liquidations_enabled: bool = True
    """Liquidate and deleverage (off: accounts below their threshold are left alone)."""
    actions: list[Action] = field(default_factory=list)
    """The latest accepted actions (at most :data:`HISTORY`)."""
    failures: list[Action] = field(default_factory=list)
    """The latest refused actions (at most :data:`HISTORY`)."""
    accepted: Counter[str] = field(default_factory=Counter)
    """Accepted actions since start, by kind."""
    refused: Counter[str] = field(default_factory=Counter)
    """Refused actions since start, by kind."""
    _accounts: dict[int, Account] = field(default_factory=dict)
    _prices: Prices | None = None
    _left_alone: set[int] = field(default_factory=set)
    revalued: int = 0
    """Accounts valued during the last tick (for tests and metrics)."""

    def attach(self, ex: Exchange) -> RiskMonitor:
        """Register :meth:`on_oracle` as an oracle hook of ``ex``."""
        ex.oracle_hooks.append(self.on_oracle)
        return self

    def on_oracle(self, ex: Exchange, outcome: StepOutcome) -> None:
        """The oracle hook: one tick at the exchange's clock."""
        self.tick(ex, ex.clock)

    # ---------------------------------------------------------------- tick

    def tick(self, ex: Exchange, now: int) -> None:
        """Funding if due, settlements if due, then liquidations and deleveraging."""
        prices = ex.view.prices()
        if self.funding_enabled and now - prices.funding_time >= self.funding_interval:
            self._try("funding", 0, 0, 0, 0, partial(ex.funding, now))
        if self.settlement_enabled:
            self._settle_due(ex, now)
        if self.liquidations_enabled:
            self._liquidate_due(ex, now)

    def _settle_due(self, ex: Exchange, now: int) -> None:
        params, prices = ex.view.params(), ex.view.prices()
        for m, market in enumerate(params.markets):
            if (market.kind != KIND_PERP and not prices.markets[m].settled
                    and prices.oracle_time >= market.expiry and now >= market.expiry):
                self._try("settle", 0, 0, m, 0, partial(ex.settle, m, now))

    def _changed_markets(self, old: Prices | None, new: Prices, params: Params) -> set[int] | None:
        """Markets whose valuation inputs moved (None: everything, first tick)."""
        if old is None:
            return None
        moved: set[int] = set()
        for m, market in enumerate(params.markets):
            a, b = old.markets[m], new.markets[m]
            if (a.mark != b.mark or a.funding_index != b.funding_index or a.flags != b.flags
                    or (market.kind != KIND_PERP
                        and old.index[market.underlying] != new.index[market.underlying])):
                moved.add(m)
        return moved

    def _at_risk(self, ex: Exchange) -> list[int]:
        """Accounts below their liquidation threshold, re-valuing only those that need it."""
        view = ex.view
        params, prices = view.params(), view.prices()
        moved = self._changed_markets(self._prices, prices, params)
        self._prices = prices
        count = view.global_().account_count
        out: list[int] = []
        self.revalued = 0
        for index in range(1, count):
            acct = view.account(index)
            if acct is None or not acct.positions:
                self._accounts.pop(index, None)
                continue
            markets = {p.market for p in acct.positions}
            if (moved is not None and self._accounts.get(index) == acct
                    and not (markets & moved)):
                continue
            self._accounts[index] = acct
            self.revalued += 1
            norm, risk = value(acct, params, prices)
            if liquidatable(risk, norm):
                out.append(index)
        return out

    def _liquidate_due(self, ex: Exchange, now: int) -> None:
        for target in self._at_risk(ex):
            if target == self.liquidator.account:
                log.warning("the in-house liquidator account %d is itself liquidatable", target)
            for _ in range(MAX_ACTIONS_PER_ACCOUNT):
                if not self._act_once(ex, target, now):
                    break
            # Leave it to be re-valued next tick whatever happened.
            self._accounts.pop(target, None)

    def _act_once(self, ex: Exchange, target: int, now: int) -> bool:
        """One liquidation or deleveraging step on ``target``; False when nothing (more)
        can be done this tick."""
        view = ex.view
        params, prices = view.params(), view.prices()
        acct = view.account(target)
        if acct is None:
            return False
        norm, risk = value(acct, params, prices)
        if not liquidatable(risk, norm):
            return False
        # The position carrying the largest requirement goes first.
        positions = sorted(
            norm.positions,
            key=lambda p: (-requirement_share(p, params.markets[p.market], prices, params.config),
                           p.market),
        )
        fund = view.global_().insurance_fund
        if risk.equity + fund < 0:
            return self._deleverage(ex, target, norm, positions, params, prices, now)
        p = positions[0]
        if target == self.liquidator.account:
            return False
        if self.liquidator.account <= 0:
            if target not in self._left_alone:  # once per account: external liquidators may act
                self._left_alone.add(target)
                log.warning("account %d is liquidatable; no in-house liquidator account", target)
            return False
        size = liquidation_size(norm, p.market, params, prices)
        mark = prices.markets[p.market].mark
        entry = self.liquidator.order(ex, p.market, p.size > 0, mark, size, now)
        return self._try(
            "liquidate", target, self.liquidator.account, p.market, size,
            partial(ex.liquidate, target, entry, size, now),
        )

    def _deleverage(
        self, ex: Exchange, target: int, norm: Account, positions: list[Position],
        params: Params, prices: Prices, now: int,
    ) -> bool:
        view = ex.view
        count = view.global_().account_count
        for p in positions:
            candidates = (
                (i, a) for i in range(1, count) if i != target
                for a in (view.account(i),) if a is not None and a.positions
            )
            ranked = rank_counterparties(candidates, p.market, p.size > 0, params, prices)
            for cp in ranked:
                cp_acct = view.account(cp)
                if cp_acct is None:
                    continue
                cp_pos = normalize(cp_acct, params.markets, prices).position(p.market)
                if cp_pos is None:
                    continue
                size = min(abs(p.size), abs(cp_pos.size))
                return self._try(
                    "deleverage", target, cp, p.market, size,
                    partial(ex.deleverage, target, cp, p.market, size, now),
                )
        log.warning("no deleveraging counterparty for account %d", target)
        return False

    def _try(self, kind: str, target: int, counterparty: int, market: int,
             size: int, command: Callable[[], StepOutcome]) -> bool:
        """Run ``command``; record it; a refusal is logged and reported as False."""
        try:
            outcome = command()
        except IntakeError as err:
            action = Action(kind, target, counterparty, market, size, err.code)
            self.failures.append(action)
            self.refused[kind] += 1
            if len(self.failures) > HISTORY:
                del self.failures[: len(self.failures) - HISTORY]
            log.info("risk action refused, retried next tick: %s", action)
            return False
        code = outcome.step.receipt.code.name
        self.actions.append(Action(kind, target, counterparty, market, size, code))
        self.accepted[kind] += 1
        if len(self.actions) > HISTORY:
            del self.actions[: len(self.actions) - HISTORY]
        log.info("risk action", extra={"kind": kind, "target": target, "counterparty": counterparty,
                                       "market": market, "size": size, "code": code})
        return True
