"""Binary encodings of steps, order-table entries and forced payloads (docs/stf.md §5).

Decoding is total: any byte string decodes to a transaction object or to
``None`` (the step is then refused with INVALID_ENCODING or UNKNOWN_KIND).
Encoders are the exact inverses and are used by the sequencer and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

KIND_DEPOSIT = 0x01
KIND_WITHDRAW = 0x02
KIND_TRADE = 0x03
KIND_CANCEL = 0x04
KIND_ORACLE = 0x05
KIND_FUNDING = 0x06
KIND_LIQUIDATE = 0x07
KIND_DELEVERAGE = 0x08
KIND_SETTLE = 0x09
KIND_FORCED = 0x0A

KIND_NAMES = {
    KIND_DEPOSIT: "deposit",
    KIND_WITHDRAW: "withdraw",
    KIND_TRADE: "trade",
    KIND_CANCEL: "cancel",
    KIND_ORACLE: "oracle",
    KIND_FUNDING: "funding",
    KIND_LIQUIDATE: "liquidate",
    KIND_DELEVERAGE: "deleverage",
    KIND_SETTLE: "settle",
    KIND_FORCED: "forced",
}

SIGNATURE_SIZE = 65
ORDER_BODY_SIZE = 39
ORDER_ENTRY_SIZE = ORDER_BODY_SIZE + SIGNATURE_SIZE
ORACLE_ENTRY_SIZE = 13


def _u(data: bytes, start: int, width: int) -> int:
    return int.from_bytes(data[start : start + width], "big")


# --------------------------------------------------------------------- orders


@dataclass(slots=True, unsafe_hash=True)
class OrderBody:
    """The signed fields of an order, with the trader given by account index."""

    account: int
    market: int
    is_buy: bool
    flags: int
    price: int
    size: int
    expiry: int
    salt: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, account: int, market: int, is_buy: bool, flags: int, price: int, size: int,
        expiry: int, salt: int,
    ) -> None:
        self.account = account
        self.market = market
        self.is_buy = is_buy
        self.flags = flags
        self.price = price
        self.size = size
        self.expiry = expiry
        self.salt = salt

    def encode(self) -> bytes:
        """Layout (39 bytes): account u32 | market u8 | is_buy u8 | flags u8 | price u64 |
        size u64 | expiry u64 | salt u64."""
        return (
            self.account.to_bytes(4, "big")
            + bytes((self.market, 1 if self.is_buy else 0, self.flags))
            + self.price.to_bytes(8, "big")
            + self.size.to_bytes(8, "big")
            + self.expiry.to_bytes(8, "big")
            + self.salt.to_bytes(8, "big")
        )


def decode_order_body(data: bytes, start: int = 0) -> OrderBody | None:
    """Decode 39 bytes at ``start``; None when is_buy is not 0 or 1."""
    side = data[start + 5]
    if side > 1:
        return None
    return OrderBody(
        _u(data, start, 4), data[start + 4], side == 1, data[start + 6],
        _u(data, start + 7, 8), _u(data, start + 15, 8), _u(data, start + 23, 8),
        _u(data, start + 31, 8),
    )


@dataclass(slots=True, unsafe_hash=True)
class SignedOrder:
    """An entry of a batch's order table: an order body and its 65-byte signature."""

    body: OrderBody
    signature: bytes

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, body: OrderBody, signature: bytes) -> None:
        self.body = body
        self.signature = signature

    def encode(self) -> bytes:
        """Layout (104 bytes): body ‖ signature (r ‖ s ‖ v)."""
        return self.body.encode() + self.signature


def decode_order_entry(data: bytes) -> SignedOrder | None:
    """Decode one order-table entry; None unless exactly 104 well-formed bytes."""
    if len(data) != ORDER_ENTRY_SIZE:
        return None
    body = decode_order_body(data)
    if body is None:
        return None
    return SignedOrder(body, data[ORDER_BODY_SIZE:])


# --------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Deposit:
    """Consume the next item of the L1 deposit queue."""


@dataclass(frozen=True, slots=True)
class Withdraw:
    """A signed withdrawal of collateral to an L1 recipient."""

    account: int
    recipient: bytes
    amount: int
    nonce: int
    signature: bytes


@dataclass(slots=True, unsafe_hash=True)
class Trade:
    """A fill of ``size`` between a maker and a taker order, at the maker's price."""

    maker: int
    taker: int
    size: int

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, maker: int, taker: int, size: int) -> None:
        self.maker = maker
        self.taker = taker
        self.size = size


@dataclass(frozen=True, slots=True)
class Cancel:
    """A signed cancellation of an order of the batch's order table."""

    order: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class OracleEntry:
    """One oracle datum: id 0..63 is a market (mark, iv), 64..79 an underlying index."""

    id: int
    price: int
    iv: int


@dataclass(frozen=True, slots=True)
class Oracle:
    """Prices signed by the oracle key set."""

    timestamp: int
    entries: tuple[OracleEntry, ...]
    entries_bytes: bytes
    signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Funding:
    """Accrue every perpetual's funding index up to the batch time."""


@dataclass(frozen=True, slots=True)
class Liquidate:
    """Close ``size`` of ``target``'s position into a liquidator's signed order."""

    target: int
    order: int
    size: int


@dataclass(frozen=True, slots=True)
class Deleverage:
    """Close ``size`` of a bankrupt ``target``'s position against ``counterparty``."""

    target: int
    counterparty: int
    market: int
    size: int


@dataclass(frozen=True, slots=True)
class Settle:
    """Settle an expired option market at its underlying's index price."""

    market: int


@dataclass(frozen=True, slots=True)
class Forced:
    """Consume the next item of the L1 forced-transaction queue."""


Tx = Deposit | Withdraw | Trade | Cancel | Oracle | Funding | Liquidate | Deleverage | Settle | Forced

_FIXED_SIZES = {
    KIND_DEPOSIT: 1,
    KIND_WITHDRAW: 106,
    KIND_TRADE: 13,
    KIND_CANCEL: 68,
    KIND_FUNDING: 1,
    KIND_LIQUIDATE: 15,
    KIND_DELEVERAGE: 18,
    KIND_SETTLE: 2,
    KIND_FORCED: 1,
}


def decode_step(data: bytes) -> Tx | None:
    """Decode one step; None for an unknown kind or a malformed body. Never raises."""
    if not data:
        return None
    kind = data[0]
    if kind == KIND_ORACLE:
        return _decode_oracle(data)
    if _FIXED_SIZES.get(kind) != len(data):
        return None
    if kind == KIND_TRADE:
        return Trade(_u(data, 1, 2), _u(data, 3, 2), _u(data, 5, 8))
    if kind == KIND_DEPOSIT:
        return Deposit()
    if kind == KIND_WITHDRAW:
        return Withdraw(_u(data, 1, 4), data[5:25], _u(data, 25, 8), _u(data, 33, 8), data[41:])
    if kind == KIND_CANCEL:
        return Cancel(_u(data, 1, 2), data[3:])
    if kind == KIND_FUNDING:
        return Funding()
    if kind == KIND_LIQUIDATE:
        return Liquidate(_u(data, 1, 4), _u(data, 5, 2), _u(data, 7, 8))
    if kind == KIND_DELEVERAGE:
        return Deleverage(_u(data, 1, 4), _u(data, 5, 4), data[9], _u(data, 10, 8))
    if kind == KIND_SETTLE:
        return Settle(data[1])
    return Forced()


def _decode_oracle(data: bytes) -> Oracle | None:
    if len(data) < 11:
        return None
    n = data[9]
    sig_at = 10 + n * ORACLE_ENTRY_SIZE
    if len(data) < sig_at + 1:
        return None
    m = data[sig_at]
    if len(data) != sig_at + 1 + m * SIGNATURE_SIZE:
        return None
    entries = tuple(
        OracleEntry(
            data[10 + i * ORACLE_ENTRY_SIZE],
            _u(data, 11 + i * ORACLE_ENTRY_SIZE, 8),
            _u(data, 19 + i * ORACLE_ENTRY_SIZE, 4),
        )
        for i in range(n)
    )
    sigs = tuple(
        data[sig_at + 1 + j * SIGNATURE_SIZE : sig_at + 1 + (j + 1) * SIGNATURE_SIZE]
        for j in range(m)
    )
    return Oracle(_u(data, 1, 8), entries, data[10:sig_at], sigs)


# --------------------------------------------------------------------- encoders


def encode_deposit() -> bytes:
    """The deposit step."""
    return bytes([KIND_DEPOSIT])


def encode_funding() -> bytes:
    """The funding step."""
    return bytes([KIND_FUNDING])


def encode_forced() -> bytes:
    """The forced-transaction step."""
    return bytes([KIND_FORCED])


def encode_withdraw(account: int, recipient: bytes, amount: int, nonce: int, sig: bytes) -> bytes:
    """Layout (106 bytes): kind | account u32 | recipient 20 | amount u64 | nonce u64 | sig 65."""
    return (
        bytes([KIND_WITHDRAW]) + account.to_bytes(4, "big") + recipient
        + amount.to_bytes(8, "big") + nonce.to_bytes(8, "big") + sig
    )


def encode_trade(maker: int, taker: int, size: int) -> bytes:
    """Layout (13 bytes): kind | maker ref u16 | taker ref u16 | size u64."""
    return bytes([KIND_TRADE]) + maker.to_bytes(2, "big") + taker.to_bytes(2, "big") + size.to_bytes(8, "big")


def encode_cancel(order: int, sig: bytes) -> bytes:
    """Layout (68 bytes): kind | order ref u16 | sig 65."""
    return bytes([KIND_CANCEL]) + order.to_bytes(2, "big") + sig


def encode_oracle_entries(entries: list[OracleEntry] | tuple[OracleEntry, ...]) -> bytes:
    """The signed part of an oracle step: n × (id u8 | price u64 | iv u32)."""
    return b"".join(
        bytes([e.id]) + e.price.to_bytes(8, "big") + e.iv.to_bytes(4, "big") for e in entries
    )


def encode_oracle(timestamp: int, entries: list[OracleEntry] | tuple[OracleEntry, ...], sigs: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Layout: kind | timestamp u64 | n u8 | n entries | m u8 | m × sig 65."""
    return (
        bytes([KIND_ORACLE]) + timestamp.to_bytes(8, "big") + bytes([len(entries)])
        + encode_oracle_entries(entries) + bytes([len(sigs)]) + b"".join(sigs)
    )


def encode_liquidate(target: int, order: int, size: int) -> bytes:
    """Layout (15 bytes): kind | target u32 | liquidator order ref u16 | size u64."""
    return bytes([KIND_LIQUIDATE]) + target.to_bytes(4, "big") + order.to_bytes(2, "big") + size.to_bytes(8, "big")


def encode_deleverage(target: int, counterparty: int, market: int, size: int) -> bytes:
    """Layout (18 bytes): kind | target u32 | counterparty u32 | market u8 | size u64."""
    return (
        bytes([KIND_DELEVERAGE]) + target.to_bytes(4, "big") + counterparty.to_bytes(4, "big")
        + bytes([market]) + size.to_bytes(8, "big")
    )


def encode_settle(market: int) -> bytes:
    """Layout (2 bytes): kind | market u8."""
    return bytes([KIND_SETTLE, market])


# --------------------------------------------------------------------- forced payloads


@dataclass(frozen=True, slots=True)
class ForcedWithdraw:
    """A withdrawal authenticated by the L1 sender instead of a signature."""

    account: int
    recipient: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class ForcedCancel:
    """A cancellation authenticated by the L1 sender instead of a signature."""

    order: OrderBody


def decode_forced_payload(payload: bytes) -> ForcedWithdraw | ForcedCancel | None:
    """Decode the payload of a forced-queue item; None when malformed. Never raises."""
    if len(payload) == 33 and payload[0] == KIND_WITHDRAW:
        return ForcedWithdraw(_u(payload, 1, 4), payload[5:25], _u(payload, 25, 8))
    if len(payload) == 1 + ORDER_BODY_SIZE and payload[0] == KIND_CANCEL:
        body = decode_order_body(payload, 1)
        return None if body is None else ForcedCancel(body)
    return None


def encode_forced_withdraw(account: int, recipient: bytes, amount: int) -> bytes:
    """Forced payload (33 bytes): 0x02 | account u32 | recipient 20 | amount u64."""
    return bytes([KIND_WITHDRAW]) + account.to_bytes(4, "big") + recipient + amount.to_bytes(8, "big")


def encode_forced_cancel(order: OrderBody) -> bytes:
    """Forced payload (40 bytes): 0x04 | order body."""
    return bytes([KIND_CANCEL]) + order.encode()
