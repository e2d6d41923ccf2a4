"""Protocol constants of the HFX state-transition function (docs/stf.md §1)."""

from typing import Final

COLLATERAL_DECIMALS: Final = 6
"""Collateral amounts are integers in units of 10**-6 of the collateral token."""

MAX_MARKETS: Final = 64
MAX_POSITIONS: Final = 16
MAX_UNDERLYINGS: Final = 16

BPS: Final = 10_000
FUNDING_SCALE: Final = 10**9
"""Funding indices are collateral units per size unit, scaled by this factor."""
FUNDING_PERIOD: Final = 28_800
"""Seconds; the funding cap applies per period and one step accrues at most one period."""

# Bounds (exclusive upper limits unless noted); every arithmetic result is checked.
PRICE_LIMIT: Final = 1 << 48
"""Prices are in [1, PRICE_LIMIT)."""
SIZE_LIMIT: Final = 1 << 40
"""Order sizes, fill sizes and |position size| are below this."""
AMOUNT_LIMIT: Final = 1 << 63
"""Deposit and withdrawal amounts are in [1, AMOUNT_LIMIT)."""
COST_LIMIT: Final = 1 << 95
"""|position cost| is below this (the i96 field)."""
FUNDING_INDEX_LIMIT: Final = 1 << 87
"""|funding index| is below this (the i88 field)."""
COLLATERAL_LIMIT: Final = 1 << 127
"""|account collateral| is below this (the i128 field)."""
POOL_LIMIT: Final = 1 << 127
"""Insurance fund and fee pool are in [0, POOL_LIMIT)."""
ACCOUNT_LIMIT: Final = 1 << 32
"""Account indices are in [1, ACCOUNT_LIMIT - 1), so ``account_count`` fits its u32 field."""
U64_LIMIT: Final = 1 << 64

# Leaf namespaces: key = keccak256(namespace ‖ id).
NS_GLOBAL: Final = 0x01
NS_PARAMS: Final = 0x02
NS_PRICES: Final = 0x03
NS_ACCOUNT: Final = 0x04
NS_ACCOUNT_INDEX: Final = 0x05
NS_ORDER: Final = 0x06
NS_WITHDRAWAL: Final = 0x07

# Market kinds.
KIND_PERP: Final = 1
KIND_CALL: Final = 2
KIND_PUT: Final = 3

# Order flags (the signed `flags` byte). Bits 4..7 must be zero.
FLAG_POST_ONLY: Final = 0x01
FLAG_REDUCE_ONLY: Final = 0x02
FLAG_IOC: Final = 0x04
"""Immediate-or-cancel: enforced by the sequencer, not by the STF."""
FLAG_FOK: Final = 0x08
"""Fill-or-kill: enforced by the sequencer, not by the STF."""
FLAGS_DEFINED: Final = 0x0F

# Market price-entry flags.
PRICE_FLAG_SETTLED: Final = 0x01

# Oracle ids: 0..63 are markets, 64..79 underlyings.
ORACLE_UNDERLYING_BASE: Final = 64
