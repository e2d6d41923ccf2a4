"""The trader-facing risk view of an account: equity, margin and Greeks.

Not part of the STF: floats are allowed here and nothing here ever feeds a
state transition. The integer equity and requirements come from
:mod:`state.margin` (the same numbers the STF uses); the Greeks come from
Black-Scholes on the oracle's implied volatility (:mod:`state.black_scholes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from state.black_scholes import Greeks, bs_greeks
from state.constants import KIND_CALL, KIND_PERP
from state.layout import Account, Params, Prices
from state.margin import assess, normalize

SECONDS_PER_YEAR = 365 * 86_400
IV_SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class PositionRisk:
    """One position, valued and with its Greeks (per the whole position).

    Prices are collateral units per size unit; sizes are size units. Greeks are
    in collateral units: delta per 1 unit move of the underlying's price (so it
    equals the position's exposure in size units), vega per 1.00 of volatility,
    theta per year.
    """

    market: int
    size: int
    mark: int
    entry_price: float
    value: int
    unrealised_pnl: int
    delta: float
    gamma: float
    vega: float
    theta: float


@dataclass(frozen=True, slots=True)
class AccountRisk:
    """An account's risk summary (collateral units unless stated)."""

    collateral: int
    equity: int
    initial_margin: int
    maintenance_margin: int
    sync_buffer: int
    liquidation_threshold: int
    free_collateral: int
    margin_ratio: float
    """Equity / liquidation threshold; liquidatable below 1.0 (inf with no positions)."""
    liquidatable: bool
    net_delta: dict[int, float]
    """Per underlying: Σ position deltas, in size units of that underlying."""
    positions: tuple[PositionRisk, ...]


def position_greeks(kind: int, size: int, spot: int, strike: int, expiry: int, iv: int, now: int) -> Greeks:
    """Greeks of a whole position: perpetuals have delta = size and no other Greeks."""
    if kind == KIND_PERP:
        return Greeks(float(size * spot), float(size), 0.0, 0.0, 0.0)
    years = max(0.0, (expiry - now) / SECONDS_PER_YEAR)
    unit = bs_greeks(kind == KIND_CALL, float(spot), float(strike), years, iv / IV_SCALE)
    return Greeks(unit.price * size, unit.delta * size, unit.gamma * size, unit.vega * size, unit.theta * size)


def account_risk(account: Account, params: Params, prices: Prices, now: int) -> AccountRisk:
    """Summarise ``account`` at time ``now`` against the given params and prices."""
    norm = normalize(account, params.markets, prices)
    risk = assess(norm, params.markets, prices, params.config)
    positions: list[PositionRisk] = []
    net_delta: dict[int, float] = {}
    for p in norm.positions:
        market = params.markets[p.market]
        mp = prices.markets[p.market]
        spot = prices.index[market.underlying] or mp.mark
        g = position_greeks(market.kind, p.size, spot, market.strike, market.expiry, mp.iv, now)
        value = p.size * mp.mark
        positions.append(
            PositionRisk(
                p.market, p.size, mp.mark, -p.cost / p.size, value, value + p.cost,
                g.delta, g.gamma, g.vega, g.theta,
            )
        )
        net_delta[market.underlying] = net_delta.get(market.underlying, 0.0) + g.delta
    threshold = risk.liquidation_threshold
    ratio = risk.equity / threshold if threshold > 0 else float("inf")
    return AccountRisk(
        collateral=norm.collateral,
        equity=risk.equity,
        initial_margin=risk.initial,
        maintenance_margin=risk.maintenance,
        sync_buffer=risk.buffer,
        liquidation_threshold=threshold,
        free_collateral=min(norm.collateral, risk.equity - risk.initial),
        margin_ratio=ratio,
        liquidatable=bool(norm.positions) and risk.equity < threshold,
        net_delta=net_delta,
        positions=tuple(positions),
    )
