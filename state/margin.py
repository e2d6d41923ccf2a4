"""Account valuation and margin requirements (docs/stf.md §8).

Integers only. Every account is normalised (funding settled, settled options
closed) before it is valued, so equity is collateral plus the marked value of
its positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from state.arith import div_ceil, div_floor
from state.constants import BPS, COLLATERAL_LIMIT, FUNDING_SCALE, KIND_CALL, KIND_PERP
from state.errors import Code, StfError
from state.layout import Account, Config, Market, Position, Prices


@dataclass(slots=True, unsafe_hash=True)
class Risk:
    """Equity and requirements of a normalised account, in collateral units."""

    equity: int
    initial: int
    maintenance: int
    buffer: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, equity: int, initial: int, maintenance: int, buffer: int) -> None:
        self.equity = equity
        self.initial = initial
        self.maintenance = maintenance
        self.buffer = buffer

    @property
    def liquidation_threshold(self) -> int:
        """Maintenance plus synchronisation buffer: below it the account is liquidatable."""
        return self.maintenance + self.buffer


def normalize(account: Account, markets: tuple[Market, ...], prices: Prices) -> Account:
    """Settle pending funding of perpetuals and close positions in settled option markets.

    Funding owed is size × (index − snapshot) / FUNDING_SCALE, credited as
    floor(−size × Δindex / FUNDING_SCALE): rounded against the trader.
    A settled option position pays size × payoff + cost into collateral.
    """
    collateral = account.collateral
    changed = False
    kept: list[Position] = []
    for p in account.positions:
        mp = prices.markets[p.market]
        if markets[p.market].kind == KIND_PERP:
            if mp.funding_index != p.funding_snapshot:
                collateral += div_floor(
                    -p.size * (mp.funding_index - p.funding_snapshot), FUNDING_SCALE
                )
                p = Position(p.market, p.size, p.cost, mp.funding_index)
                changed = True
            kept.append(p)
        elif mp.settled:
            collateral += p.size * mp.mark + p.cost
            changed = True
        else:
            kept.append(p)
    if not changed:
        return account
    if not -COLLATERAL_LIMIT < collateral < COLLATERAL_LIMIT:
        raise StfError(Code.OVERFLOW)
    return Account(account.owner, account.nonce, collateral, tuple(kept))


def short_option_unit(market: Market, spot: int, rate_bps: int) -> int:
    """Requirement per short option unit at ``rate_bps``:
    max(ceil(spot × r / BPS) − out_of_the_money, ceil(spot × r / (2 × BPS)))."""
    if market.kind == KIND_CALL:
        otm = market.strike - spot if market.strike > spot else 0
    else:
        otm = spot - market.strike if spot > market.strike else 0
    full = div_ceil(spot * rate_bps, BPS) - otm
    floor_req = div_ceil(spot * rate_bps, 2 * BPS)
    return full if full > floor_req else floor_req


def assess(account: Account, markets: tuple[Market, ...], prices: Prices, config: Config) -> Risk:
    """Equity, initial, maintenance and buffer requirements of a normalised account."""
    equity = account.collateral
    initial = maintenance = buffer = 0
    buffer_bps = config.sync_buffer_bps
    for p in account.positions:
        market = markets[p.market]
        mark = prices.markets[p.market].mark
        size = p.size
        equity += size * mark + p.cost
        if market.kind == KIND_PERP:
            notional = (size if size > 0 else -size) * mark
            initial += div_ceil(notional * market.im_bps, BPS)
            maintenance += div_ceil(notional * market.mm_bps, BPS)
            buffer += div_ceil(notional * buffer_bps, BPS)
        elif size < 0:
            spot = prices.index[market.underlying]
            units = -size
            initial += units * short_option_unit(market, spot, market.im_bps)
            maintenance += units * short_option_unit(market, spot, market.mm_bps)
            buffer += div_ceil(units * spot * buffer_bps, BPS)
    return Risk(equity, initial, maintenance, buffer)


def gross_notional(account: Account, prices: Prices) -> int:
    """Σ |size| × mark over the account's positions (used to share a deficit in deleveraging)."""
    total = 0
    for p in account.positions:
        size = p.size if p.size > 0 else -p.size
        total += size * prices.markets[p.market].mark
    return total
