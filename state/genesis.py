"""The genesis state: protocol config, markets and empty pools (docs/stf.md §9)."""

from __future__ import annotations

from collections.abc import Sequence

from state.constants import (
    BPS,
    KIND_CALL,
    KIND_PERP,
    KIND_PUT,
    MAX_MARKETS,
    MAX_UNDERLYINGS,
    PRICE_LIMIT,
    U64_LIMIT,
)
from state.layout import (
    GLOBAL_KEY,
    PARAMS_KEY,
    PRICES_KEY,
    Config,
    Global,
    Market,
    MarketPrice,
    Params,
    Prices,
)


class GenesisError(ValueError):
    """A genesis configuration that breaks a protocol rule."""


def validate(config: Config, markets: Sequence[Market]) -> None:
    """Refuse configurations the STF's formulas assume away (docs/stf.md §9)."""
    if not 0 < len(markets) <= MAX_MARKETS:
        raise GenesisError(f"need 1..{MAX_MARKETS} markets")
    if config.maker_rebate_bps > config.taker_fee_bps:
        raise GenesisError("maker rebate must not exceed taker fee")
    if config.liquidator_bonus_bps > config.liquidation_penalty_bps:
        raise GenesisError("liquidator bonus must not exceed liquidation penalty")
    if config.funding_cap_bps > BPS:
        raise GenesisError("funding cap above 100%")
    for i, m in enumerate(markets):
        if m.kind not in (KIND_PERP, KIND_CALL, KIND_PUT):
            raise GenesisError(f"market {i}: unknown kind {m.kind}")
        if m.underlying >= MAX_UNDERLYINGS:
            raise GenesisError(f"market {i}: underlying out of range")
        if not (0 < m.mm_bps and m.mm_bps + config.sync_buffer_bps <= m.im_bps <= BPS):
            raise GenesisError(f"market {i}: need 0 < mm + buffer <= im <= 10000 bps")
        if m.tick <= 0 or m.lot <= 0:
            raise GenesisError(f"market {i}: tick and lot must be positive")
        if m.kind == KIND_PERP and (m.strike or m.expiry):
            raise GenesisError(f"market {i}: a perpetual has no strike or expiry")
        if m.kind != KIND_PERP and not (0 < m.strike < PRICE_LIMIT and 0 < m.expiry < U64_LIMIT):
            raise GenesisError(f"market {i}: an option needs a strike and an expiry")


def genesis_leaves(config: Config, markets: Sequence[Market], time: int) -> dict[bytes, bytes]:
    """The leaves of the genesis state: global, params and prices."""
    validate(config, markets)
    g = Global(
        l2_time=time, next_deposit=0, next_forced=0, withdrawal_count=0, account_count=1,
        insurance_fund=0, fee_pool=0,
    )
    prices = Prices(
        oracle_time=0, funding_time=time, index=(0,) * MAX_UNDERLYINGS,
        markets=tuple(MarketPrice(0, 0, 0, 0) for _ in markets),
    )
    return {
        GLOBAL_KEY: g.encode(),
        PARAMS_KEY: Params(config, tuple(markets)).encode(),
        PRICES_KEY: prices.encode(),
    }
