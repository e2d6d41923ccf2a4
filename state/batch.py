"""The batch: a timestamp, an order table and a list of steps (docs/stf.md §5.1).

On L1 each order-table entry is *written packed* (docs/stf.md §5.2): its
integers without leading zero bytes and its signature in 64 bytes (EIP-2098),
after a length byte. The STF reads the 104-byte entry a written one stands for
(``Batch.orders``); the commitment's leaves and the one-step prover take the
written bytes (``Batch.written``). An entry that does not pack (``is_buy`` not
0 or 1, flags over 15, a ``v`` other than 27 or 28, an ``s`` with its top bit
set) is written whole after the escape byte ``0xE0``; written bytes that
unpack to no entry are a malformed entry, like an ``is_buy`` of 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from state.errors import InvalidBatchError
from state.txs import ORDER_ENTRY_SIZE, SignedOrder, decode_order_entry

__all__ = [
    "BATCH_VERSION", "ENTRY_LENGTH_BYTES", "MAX_ORDERS", "MAX_PACKED_ENTRY_SIZE", "MAX_STEP_SIZE", "MIN_PACKED_ENTRY_SIZE",
    "RAW_ENTRY", "Batch", "decode_written_order", "pack_entry", "packed_entry_size", "unpack_entry",
]

BATCH_VERSION = 1
MAX_ORDERS = 0xFFFF
MAX_STEP_SIZE = 0xFFFF

RAW_ENTRY = 0xE0
"""First byte of an entry written whole: the 104 bytes follow."""
GTC_CODE = 9
"""Expiry code for 2⁶⁴−1 (good till cancelled): no expiry bytes follow."""
_GTC = b"\xff" * 8
_PACKED_FIXED = 4 + 64  # head, lens, more, market; r and yParityAndS
MIN_PACKED_ENTRY_SIZE = _PACKED_FIXED
MAX_PACKED_ENTRY_SIZE = 1 + ORDER_ENTRY_SIZE
"""The longest written entry (the escape byte and 104 bytes); its length byte comes before it."""
ENTRY_LENGTH_BYTES = 1


def _packs(entry: bytes) -> bool:
    return entry[5] <= 1 and entry[6] <= 15 and entry[103] in (27, 28) and entry[71] < 0x80


def pack_entry(entry: bytes) -> bytes:
    """The packed form of a 104-byte order entry (docs/stf.md §5.2)::

        head u8 (account length << 5 | is_buy << 4 | flags) | lens u8 (price length << 4 |
        size length) | more u8 (expiry code << 4 | salt length) | market u8 | account |
        price | size | expiry | salt | r (32) | yParityAndS (32)

    or ``0xE0 ‖ entry`` when it does not pack."""
    if len(entry) != ORDER_ENTRY_SIZE:
        raise InvalidBatchError("order entry must be 104 bytes")
    if not _packs(entry):
        return bytes([RAW_ENTRY]) + entry
    account = entry[0:4].lstrip(b"\x00")
    price = entry[7:15].lstrip(b"\x00")
    size = entry[15:23].lstrip(b"\x00")
    raw_expiry = entry[23:31]
    expiry = b"" if raw_expiry == _GTC else raw_expiry.lstrip(b"\x00")
    expiry_code = GTC_CODE if raw_expiry == _GTC else len(expiry)
    salt = entry[31:39].lstrip(b"\x00")
    head = len(account) << 5 | entry[5] << 4 | entry[6]
    y_parity_and_s = bytes([entry[71] | (entry[103] - 27) << 7]) + entry[72:103]
    return b"".join((
        bytes((head, len(price) << 4 | len(size), expiry_code << 4 | len(salt), entry[4])),
        account, price, size, expiry, salt, entry[39:71], y_parity_and_s,
    ))


def packed_entry_size(entry: bytes) -> int:
    """``len(pack_entry(entry))``, without building it."""
    if not _packs(entry):
        return MAX_PACKED_ENTRY_SIZE
    raw_expiry = entry[23:31]
    expiry = 0 if raw_expiry == _GTC else len(raw_expiry.lstrip(b"\x00"))
    return (
        _PACKED_FIXED + len(entry[0:4].lstrip(b"\x00")) + len(entry[7:15].lstrip(b"\x00"))
        + len(entry[15:23].lstrip(b"\x00")) + expiry + len(entry[31:39].lstrip(b"\x00"))
    )


def unpack_entry(written: bytes) -> bytes | None:
    """The 104-byte entry ``written`` stands for; None unless it is exactly one
    packed entry (or ``0xE0`` and 104 bytes). A length over its field's width
    (account 4, others 8) or an expiry code over 9 is no entry. Non-minimal
    lengths (leading zero bytes) are accepted."""
    n = len(written)
    if n < _PACKED_FIXED:
        return None
    head = written[0]
    if head == RAW_ENTRY:
        return written[1:] if n == MAX_PACKED_ENTRY_SIZE else None
    lens, more, market = written[1], written[2], written[3]
    a, p, z, e, t = head >> 5, lens >> 4, lens & 15, more >> 4, more & 15
    if a > 4 or p > 8 or z > 8 or e > GTC_CODE or t > 8:
        return None
    e_len = 0 if e == GTC_CODE else e
    at = 4
    if n != at + a + p + z + e_len + t + 64:
        return None
    account = written[at : at + a]
    at += a
    price = written[at : at + p]
    at += p
    size = written[at : at + z]
    at += z
    expiry = _GTC if e == GTC_CODE else written[at : at + e_len]
    at += e_len
    salt = written[at : at + t]
    at += t
    y = written[at + 32]
    return b"".join((
        account.rjust(4, b"\x00"), bytes((market, head >> 4 & 1, head & 15)),
        price.rjust(8, b"\x00"), size.rjust(8, b"\x00"), expiry.rjust(8, b"\x00"),
        salt.rjust(8, b"\x00"), written[at : at + 32], bytes([y & 0x7F]), written[at + 33 :],
        bytes([27 + (y >> 7)]),
    ))


def decode_written_order(written: bytes) -> SignedOrder | None:
    """The order a written entry stands for; None unless ``written`` is exactly one
    entry (:func:`unpack_entry`) whose is_buy is 0 or 1 (the prover's twin decodes
    the same way, docs/stf.md §5.2)."""
    entry = unpack_entry(written)
    return None if entry is None else decode_order_entry(entry)


@dataclass(frozen=True)
class Batch:
    """One batch: ``orders`` are the 104-byte entries the STF reads (``b""`` for
    written bytes that unpack to no entry), ``written`` the same entries as the
    batch bytes write them (packed, unless given, as :meth:`decode` gives them)."""

    timestamp: int
    orders: tuple[bytes, ...]
    steps: tuple[bytes, ...]
    written: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if len(self.written) != len(self.orders):
            if self.written:
                raise InvalidBatchError("written entries do not match the order table")
            object.__setattr__(self, "written", tuple(pack_entry(e) for e in self.orders))

    def encode(self) -> bytes:
        """Layout: version u8 | timestamp u64 | n_orders u16 | n_orders × (length u8 |
        written entry) | n_steps u32 | n_steps × (length u16 | step bytes)."""
        if len(self.orders) > MAX_ORDERS:
            raise InvalidBatchError("too many orders")
        parts = [
            bytes([BATCH_VERSION]),
            self.timestamp.to_bytes(8, "big"),
            len(self.orders).to_bytes(2, "big"),
        ]
        for written in self.written:
            if len(written) > MAX_PACKED_ENTRY_SIZE:
                raise InvalidBatchError("written order entry too long")
            parts.append(bytes([len(written)]))
            parts.append(written)
        parts.append(len(self.steps).to_bytes(4, "big"))
        for step in self.steps:
            if len(step) > MAX_STEP_SIZE:
                raise InvalidBatchError("step too long")
            parts.append(len(step).to_bytes(2, "big"))
            parts.append(step)
        return b"".join(parts)

    @staticmethod
    def decode(data: bytes) -> Batch:
        """Parse batch bytes; raises InvalidBatchError for anything but an exact encoding."""
        if len(data) < 15 or data[0] != BATCH_VERSION:
            raise InvalidBatchError("bad batch header")
        timestamp = int.from_bytes(data[1:9], "big")
        n_orders = int.from_bytes(data[9:11], "big")
        at = 11
        orders = []
        written = []
        for _ in range(n_orders):
            if len(data) <= at:
                raise InvalidBatchError("truncated order table")
            size = data[at]
            end = at + 1 + size
            if size > MAX_PACKED_ENTRY_SIZE or len(data) < end:
                raise InvalidBatchError("bad order entry length")
            entry = data[at + 1 : end]
            written.append(entry)
            orders.append(unpack_entry(entry) or b"")
            at = end
        if len(data) < at + 4:
            raise InvalidBatchError("truncated order table")
        n_steps = int.from_bytes(data[at : at + 4], "big")
        at += 4
        steps = []
        for _ in range(n_steps):
            if len(data) < at + 2:
                raise InvalidBatchError("truncated step length")
            size = int.from_bytes(data[at : at + 2], "big")
            at += 2
            if len(data) < at + size:
                raise InvalidBatchError("truncated step")
            steps.append(data[at : at + size])
            at += size
        if at != len(data):
            raise InvalidBatchError("trailing bytes")
        return Batch(timestamp, tuple(orders), tuple(steps), tuple(written))
