"""The commands the core writes to its WAL, and their binary encoding (docs/sequencer.md §6).

Every command the core accepts is one WAL record, written after the command
ran and before it is acknowledged; replaying the records after a checkpoint,
in order, through the same code path rebuilds the same books, batches and
state. A record holds the request in canonical form (an order as its 104-byte
entry, a withdrawal with the account index resolved) and the clock value
(``now``) the command ran with. Layout: ``tag u8 | now u64 | body``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from state.context import L1Deposit, L1Forced
from state.txs import ORDER_ENTRY_SIZE, SIGNATURE_SIZE

__all__ = [
    "CancelRecord",
    "CloseRecord",
    "Command",
    "DeleverageRecord",
    "FundingRecord",
    "JournalError",
    "L1Record",
    "LiquidateRecord",
    "OracleRecord",
    "OrderRecord",
    "SettleRecord",
    "WithdrawRecord",
    "decode_command",
    "encode_command",
]


@mypyc_attr(native_class=False)
class JournalError(ValueError):
    """A WAL payload that is not a command (a bug or a foreign log)."""


@dataclass(slots=True, unsafe_hash=True)
class OrderRecord:
    """Place an order (its table entry)."""

    now: int
    entry: bytes
    market_order: bool

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(self, now: int, entry: bytes, market_order: bool) -> None:
        self.now = now
        self.entry = entry
        self.market_order = market_order


@dataclass(frozen=True, slots=True)
class CancelRecord:
    """Cancel an order by digest, with the trader's cancel signature."""

    now: int
    order_hash: bytes
    signature: bytes
    entry: bytes | None


@dataclass(frozen=True, slots=True)
class WithdrawRecord:
    """A signed withdrawal."""

    now: int
    account: int
    recipient: bytes
    amount: int
    nonce: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class L1Record:
    """L1 queue items handed to the core, from absolute positions ``*_start``."""

    now: int
    deposit_start: int
    deposits: tuple[L1Deposit, ...]
    forced_start: int
    forced: tuple[L1Forced, ...]


@dataclass(frozen=True, slots=True)
class OracleRecord:
    """A signed oracle step."""

    now: int
    step: bytes


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """A funding step."""

    now: int


@dataclass(frozen=True, slots=True)
class SettleRecord:
    """A settle step."""

    now: int
    market: int


@dataclass(frozen=True, slots=True)
class LiquidateRecord:
    """A liquidation into a liquidator's signed order."""

    now: int
    target: int
    entry: bytes
    size: int


@dataclass(frozen=True, slots=True)
class DeleverageRecord:
    """An auto-deleveraging step."""

    now: int
    target: int
    counterparty: int
    market: int
    size: int


@dataclass(frozen=True, slots=True)
class CloseRecord:
    """Close the open batch (and sweep expired orders)."""

    now: int


Command = (
    OrderRecord | CancelRecord | WithdrawRecord | L1Record | OracleRecord | FundingRecord
    | SettleRecord | LiquidateRecord | DeleverageRecord | CloseRecord
)

_TAGS: dict[type, int] = {
    OrderRecord: 1, CancelRecord: 2, WithdrawRecord: 3, L1Record: 4, OracleRecord: 5,
    FundingRecord: 6, SettleRecord: 7, LiquidateRecord: 8, DeleverageRecord: 9, CloseRecord: 10,
}


def _u(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def encode_command(cmd: Command) -> bytes:
    """The WAL payload of ``cmd``."""
    head = bytes([_TAGS[type(cmd)]]) + _u(cmd.now, 8)
    if isinstance(cmd, OrderRecord):
        return head + bytes([int(cmd.market_order)]) + cmd.entry
    if isinstance(cmd, CancelRecord):
        tail = b"\x00" if cmd.entry is None else b"\x01" + cmd.entry
        return head + cmd.order_hash + cmd.signature + tail
    if isinstance(cmd, WithdrawRecord):
        return (
            head + _u(cmd.account, 4) + cmd.recipient + _u(cmd.amount, 8) + _u(cmd.nonce, 8)
            + cmd.signature
        )
    if isinstance(cmd, L1Record):
        parts = [head, _u(cmd.deposit_start, 8), _u(len(cmd.deposits), 4)]
        parts += [d.owner + _u(d.amount, 32) for d in cmd.deposits]
        parts += [_u(cmd.forced_start, 8), _u(len(cmd.forced), 4)]
        parts += [f.sender + _u(len(f.payload), 4) + f.payload for f in cmd.forced]
        return b"".join(parts)
    if isinstance(cmd, OracleRecord):
        return head + cmd.step
    if isinstance(cmd, SettleRecord):
        return head + bytes([cmd.market])
    if isinstance(cmd, LiquidateRecord):
        return head + _u(cmd.target, 4) + _u(cmd.size, 8) + cmd.entry
    if isinstance(cmd, DeleverageRecord):
        return (
            head + _u(cmd.target, 4) + _u(cmd.counterparty, 4) + bytes([cmd.market])
            + _u(cmd.size, 8)
        )
    return head  # FundingRecord, CloseRecord


class _Cursor:
    def __init__(self, data: bytes, at: int) -> None:
        self.data = data
        self.at = at

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise JournalError("truncated command")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def rest(self) -> bytes:
        out = self.data[self.at :]
        self.at = len(self.data)
        return out

    def done(self) -> None:
        if self.at != len(self.data):
            raise JournalError("trailing bytes in command")


def decode_command(payload: bytes) -> Command:
    """Inverse of :func:`encode_command` (JournalError for anything else)."""
    if len(payload) < 9:
        raise JournalError("short command")
    tag = payload[0]
    c = _Cursor(payload, 1)
    now = c.u(8)
    cmd: Command
    if tag == 1:
        market_order = bool(c.u(1))
        cmd = OrderRecord(now, c.take(ORDER_ENTRY_SIZE), market_order)
    elif tag == 2:
        order_hash, signature = c.take(32), c.take(SIGNATURE_SIZE)
        entry = c.take(ORDER_ENTRY_SIZE) if c.u(1) else None
        cmd = CancelRecord(now, order_hash, signature, entry)
    elif tag == 3:
        cmd = WithdrawRecord(now, c.u(4), c.take(20), c.u(8), c.u(8), c.take(SIGNATURE_SIZE))
    elif tag == 4:
        deposit_start = c.u(8)
        deposits = tuple(L1Deposit(c.take(20), c.u(32)) for _ in range(c.u(4)))
        forced_start = c.u(8)
        forced = tuple(L1Forced(c.take(20), c.take(c.u(4))) for _ in range(c.u(4)))
        cmd = L1Record(now, deposit_start, deposits, forced_start, forced)
    elif tag == 5:
        cmd = OracleRecord(now, c.rest())
    elif tag == 6:
        cmd = FundingRecord(now)
    elif tag == 7:
        cmd = SettleRecord(now, c.u(1))
    elif tag == 8:
        target, size = c.u(4), c.u(8)
        cmd = LiquidateRecord(now, target, c.take(ORDER_ENTRY_SIZE), size)
    elif tag == 9:
        cmd = DeleverageRecord(now, c.u(4), c.u(4), c.u(1), c.u(8))
    elif tag == 10:
        cmd = CloseRecord(now)
    else:
        raise JournalError(f"unknown command tag {tag}")
    c.done()
    return cmd
