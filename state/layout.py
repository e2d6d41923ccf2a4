"""Leaf values of the state trie: their keys and their fixed binary layouts.

Every layout is a concatenation of big-endian fixed-width fields; signed fields
are two's complement. docs/stf.md §4 is the normative description; the Vyper
one-step prover decodes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from state.constants import (
    MAX_MARKETS,
    MAX_POSITIONS,
    MAX_UNDERLYINGS,
    NS_ACCOUNT,
    NS_ACCOUNT_INDEX,
    NS_GLOBAL,
    NS_ORDER,
    NS_PARAMS,
    NS_PRICES,
    NS_WITHDRAWAL,
    PRICE_FLAG_SETTLED,
)
from state.keccak import keccak256

Address = bytes
"""A 20-byte Ethereum address."""
Collateral = int
"""Collateral units (10**-6 of the token); signed where a field allows it."""
Price = int
"""Collateral units per size unit of a market."""
Size = int
"""Signed size units of a market (positive long, negative short)."""


def _u(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def _s(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big", signed=True)


def _rd_u(data: bytes, start: int, width: int) -> int:
    return int.from_bytes(data[start : start + width], "big")


def _rd_s(data: bytes, start: int, width: int) -> int:
    return int.from_bytes(data[start : start + width], "big", signed=True)


# --------------------------------------------------------------------- keys

GLOBAL_KEY = keccak256(bytes([NS_GLOBAL]))
PARAMS_KEY = keccak256(bytes([NS_PARAMS]))
PRICES_KEY = keccak256(bytes([NS_PRICES]))


def account_key(index: int) -> bytes:
    """Key of account ``index`` (u32)."""
    return keccak256(bytes([NS_ACCOUNT]) + _u(index, 4))


def account_index_key(owner: Address) -> bytes:
    """Key of the owner-address → account-index leaf."""
    return keccak256(bytes([NS_ACCOUNT_INDEX]) + owner)


def order_key(order_hash: bytes) -> bytes:
    """Key of an order's fill state, by its EIP-712 digest."""
    return keccak256(bytes([NS_ORDER]) + order_hash)


def withdrawal_key(withdrawal_id: int) -> bytes:
    """Key of withdrawal record ``withdrawal_id`` (u64)."""
    return keccak256(bytes([NS_WITHDRAWAL]) + _u(withdrawal_id, 8))


CONFIG_SIZE: Final = 16
"""Bytes of the encoded :class:`Config` (then :data:`MARKET_SIZE` per market)."""
MARKET_SIZE: Final = 32
MARKET_PRICE_SIZE: Final = 32
PRICES_HEAD: Final = 16 + 8 * MAX_UNDERLYINGS
"""Bytes of :class:`Prices` before its markets (:data:`MARKET_PRICE_SIZE` each)."""
ACCOUNT_HEAD: Final = 44
"""Bytes of an :class:`Account` before its positions (32 each)."""


# --------------------------------------------------------------------- global


@dataclass(slots=True, unsafe_hash=True)
class Global:
    """Protocol-wide counters and pools (68 bytes)."""

    l2_time: int
    next_deposit: int
    next_forced: int
    withdrawal_count: int
    account_count: int
    insurance_fund: Collateral
    fee_pool: Collateral

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, l2_time: int, next_deposit: int, next_forced: int, withdrawal_count: int,
        account_count: int, insurance_fund: Collateral, fee_pool: Collateral,
    ) -> None:
        self.l2_time = l2_time
        self.next_deposit = next_deposit
        self.next_forced = next_forced
        self.withdrawal_count = withdrawal_count
        self.account_count = account_count
        self.insurance_fund = insurance_fund
        self.fee_pool = fee_pool

    def encode(self) -> bytes:
        """Layout: l2_time u64 | next_deposit u64 | next_forced u64 |
        withdrawal_count u64 | account_count u32 | insurance_fund u128 | fee_pool u128."""
        return (
            _u(self.l2_time, 8)
            + _u(self.next_deposit, 8)
            + _u(self.next_forced, 8)
            + _u(self.withdrawal_count, 8)
            + _u(self.account_count, 4)
            + _u(self.insurance_fund, 16)
            + _u(self.fee_pool, 16)
        )

    @staticmethod
    def decode(data: bytes) -> Global:
        """Inverse of :meth:`encode`."""
        return Global(
            _rd_u(data, 0, 8),
            _rd_u(data, 8, 8),
            _rd_u(data, 16, 8),
            _rd_u(data, 24, 8),
            _rd_u(data, 32, 4),
            _rd_u(data, 36, 16),
            _rd_u(data, 52, 16),
        )


# --------------------------------------------------------------------- params


@dataclass(frozen=True, slots=True)
class Config:
    """Protocol-wide risk and fee parameters (16 bytes, head of the params leaf)."""

    taker_fee_bps: int
    maker_rebate_bps: int
    liquidation_penalty_bps: int
    liquidator_bonus_bps: int
    sync_buffer_bps: int
    funding_cap_bps: int
    max_oracle_age: int

    def encode(self) -> bytes:
        """Layout: six u16 fields in declaration order, then max_oracle_age u32."""
        return (
            _u(self.taker_fee_bps, 2)
            + _u(self.maker_rebate_bps, 2)
            + _u(self.liquidation_penalty_bps, 2)
            + _u(self.liquidator_bonus_bps, 2)
            + _u(self.sync_buffer_bps, 2)
            + _u(self.funding_cap_bps, 2)
            + _u(self.max_oracle_age, 4)
        )

    @staticmethod
    def decode(data: bytes) -> Config:
        """Inverse of :meth:`encode`."""
        return Config(
            _rd_u(data, 0, 2), _rd_u(data, 2, 2), _rd_u(data, 4, 2), _rd_u(data, 6, 2),
            _rd_u(data, 8, 2), _rd_u(data, 10, 2), _rd_u(data, 12, 4),
        )


@dataclass(frozen=True, slots=True)
class Market:
    """Static parameters of one market (32 bytes)."""

    kind: int
    underlying: int
    im_bps: int
    mm_bps: int
    tick: Price
    lot: int
    strike: Price
    expiry: int
    size_decimals: int

    @property
    def is_option(self) -> bool:
        """True for calls and puts."""
        return self.kind != 1

    def encode(self) -> bytes:
        """Layout: kind u8 | underlying u8 | im_bps u16 | mm_bps u16 | tick u32 | lot u32 |
        strike u64 | expiry u64 | size_decimals u8 | zero u8."""
        return (
            _u(self.kind, 1)
            + _u(self.underlying, 1)
            + _u(self.im_bps, 2)
            + _u(self.mm_bps, 2)
            + _u(self.tick, 4)
            + _u(self.lot, 4)
            + _u(self.strike, 8)
            + _u(self.expiry, 8)
            + _u(self.size_decimals, 1)
            + b"\x00"
        )

    @staticmethod
    def decode(data: bytes, start: int = 0) -> Market:
        """Inverse of :meth:`encode`, reading at ``start``."""
        d, o = data, start
        return Market(
            d[o], d[o + 1], _rd_u(d, o + 2, 2), _rd_u(d, o + 4, 2), _rd_u(d, o + 6, 4),
            _rd_u(d, o + 10, 4), _rd_u(d, o + 14, 8), _rd_u(d, o + 22, 8), d[o + 30],
        )


@dataclass(frozen=True, slots=True)
class Params:
    """The params leaf: config followed by every market's parameters."""

    config: Config
    markets: tuple[Market, ...]

    def encode(self) -> bytes:
        """Layout: config (16 bytes) ‖ n × market (32 bytes), n ≤ 64."""
        return self.config.encode() + b"".join(m.encode() for m in self.markets)

    @staticmethod
    def decode(data: bytes) -> Params:
        """Inverse of :meth:`encode`."""
        n = (len(data) - CONFIG_SIZE) // MARKET_SIZE
        markets = tuple(Market.decode(data, CONFIG_SIZE + i * MARKET_SIZE) for i in range(n))
        if n > MAX_MARKETS:
            raise ValueError("too many markets")
        return Params(Config.decode(data[: CONFIG_SIZE]), markets)


# --------------------------------------------------------------------- prices


@dataclass(frozen=True, slots=True)
class MarketPrice:
    """Oracle-fed state of one market (32 bytes)."""

    mark: Price
    funding_index: int
    iv: int
    flags: int

    @property
    def settled(self) -> bool:
        """True once an option market has settled (mark is then its payoff)."""
        return bool(self.flags & PRICE_FLAG_SETTLED)

    def encode(self) -> bytes:
        """Layout: mark u64 | funding_index i128 | iv u32 | flags u8 | zero 3 bytes."""
        return (
            _u(self.mark, 8) + _s(self.funding_index, 16) + _u(self.iv, 4)
            + _u(self.flags, 1) + b"\x00\x00\x00"
        )

    @staticmethod
    def decode(data: bytes, start: int = 0) -> MarketPrice:
        """Inverse of :meth:`encode`, reading at ``start``."""
        return MarketPrice(
            _rd_u(data, start, 8), _rd_s(data, start + 8, 16), _rd_u(data, start + 24, 4),
            data[start + 28],
        )


@dataclass(frozen=True, slots=True)
class Prices:
    """The prices leaf: oracle and funding clocks, underlying index prices, market prices."""

    oracle_time: int
    funding_time: int
    index: tuple[Price, ...]
    markets: tuple[MarketPrice, ...]

    def encode(self) -> bytes:
        """Layout: oracle_time u64 | funding_time u64 | 16 × index u64 | n × market price."""
        return (
            _u(self.oracle_time, 8) + _u(self.funding_time, 8)
            + b"".join(_u(p, 8) for p in self.index)
            + b"".join(m.encode() for m in self.markets)
        )

    @staticmethod
    def decode(data: bytes) -> Prices:
        """Inverse of :meth:`encode`."""
        index = tuple(_rd_u(data, 16 + 8 * i, 8) for i in range(MAX_UNDERLYINGS))
        n = (len(data) - PRICES_HEAD) // MARKET_PRICE_SIZE
        markets = tuple(
            MarketPrice.decode(data, PRICES_HEAD + i * MARKET_PRICE_SIZE) for i in range(n)
        )
        return Prices(_rd_u(data, 0, 8), _rd_u(data, 8, 8), index, markets)


# --------------------------------------------------------------------- accounts


@dataclass(slots=True, unsafe_hash=True)
class Position:
    """One open position (32 bytes); size is never zero in a stored account."""

    market: int
    size: Size
    cost: Collateral
    funding_snapshot: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, market: int, size: Size, cost: Collateral, funding_snapshot: int) -> None:
        self.market = market
        self.size = size
        self.cost = cost
        self.funding_snapshot = funding_snapshot

    def encode(self) -> bytes:
        """Layout: market u8 | size i64 | cost i96 | funding_snapshot i88."""
        return (
            _u(self.market, 1) + _s(self.size, 8) + _s(self.cost, 12)
            + _s(self.funding_snapshot, 11)
        )

    @staticmethod
    def decode(data: bytes, start: int) -> Position:
        """Inverse of :meth:`encode`, reading at ``start``."""
        return Position(
            data[start], _rd_s(data, start + 1, 8), _rd_s(data, start + 9, 12),
            _rd_s(data, start + 21, 11),
        )


@dataclass(slots=True, unsafe_hash=True)
class Account:
    """A trader's cross-margined account: collateral, nonce and up to 16 positions."""

    owner: Address
    nonce: int
    collateral: Collateral
    positions: tuple[Position, ...]

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, owner: Address, nonce: int, collateral: Collateral,
        positions: tuple[Position, ...],
    ) -> None:
        self.owner = owner
        self.nonce = nonce
        self.collateral = collateral
        self.positions = positions

    def encode(self) -> bytes:
        """Layout: owner 20 | nonce u64 | collateral i128 | positions sorted by market."""
        return (
            self.owner + _u(self.nonce, 8) + _s(self.collateral, 16)
            + b"".join(p.encode() for p in self.positions)
        )

    @staticmethod
    def decode(data: bytes) -> Account:
        """Inverse of :meth:`encode`."""
        n = (len(data) - ACCOUNT_HEAD) // 32
        if n > MAX_POSITIONS:
            raise ValueError("too many positions")
        positions = tuple(Position.decode(data, ACCOUNT_HEAD + 32 * i) for i in range(n))
        return Account(data[:20], _rd_u(data, 20, 8), _rd_s(data, 28, 16), positions)

    def position(self, market: int) -> Position | None:
        """The open position in ``market``, if any."""
        for p in self.positions:
            if p.market == market:
                return p
        return None


def encode_account_index(index: int) -> bytes:
    """The account-index leaf: the account's index as u32."""
    return _u(index, 4)


def decode_account_index(data: bytes) -> int:
    """Inverse of :func:`encode_account_index`."""
    return _rd_u(data, 0, 4)


# --------------------------------------------------------------------- orders, withdrawals


@dataclass(slots=True, unsafe_hash=True)
class OrderState:
    """Fill and cancel state of one order (9 bytes); absent means (0, False)."""

    filled: Size
    cancelled: bool

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, filled: Size, cancelled: bool) -> None:
        self.filled = filled
        self.cancelled = cancelled

    def encode(self) -> bytes:
        """Layout: filled u64 | cancelled u8 (0 or 1)."""
        return _u(self.filled, 8) + (b"\x01" if self.cancelled else b"\x00")

    @staticmethod
    def decode(data: bytes) -> OrderState:
        """Inverse of :meth:`encode`."""
        return OrderState(_rd_u(data, 0, 8), data[8] != 0)


EMPTY_ORDER_STATE = OrderState(0, False)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A withdrawal record, claimable on L1 once its batch is final (32 bytes)."""

    account: int
    recipient: Address
    amount: Collateral

    def encode(self) -> bytes:
        """Layout: account u32 | recipient 20 | amount u64."""
        return _u(self.account, 4) + self.recipient + _u(self.amount, 8)

    @staticmethod
    def decode(data: bytes) -> Withdrawal:
        """Inverse of :meth:`encode`."""
        return Withdrawal(_rd_u(data, 0, 4), data[4:24], _rd_u(data, 24, 8))
