"""The batch: a timestamp, an order table and a list of steps (docs/stf.md §5.1)."""

from __future__ import annotations

from dataclasses import dataclass

from state.errors import InvalidBatchError
from state.txs import ORDER_ENTRY_SIZE

BATCH_VERSION = 1
MAX_ORDERS = 0xFFFF
MAX_STEP_SIZE = 0xFFFF


@dataclass(frozen=True)
class Batch:
    """One batch as the STF sees it."""

    timestamp: int
    orders: tuple[bytes, ...]
    steps: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Layout: version u8 | timestamp u64 | n_orders u16 | n_orders × 104 bytes |
        n_steps u32 | n_steps × (length u16 | step bytes)."""
        if len(self.orders) > MAX_ORDERS:
            raise InvalidBatchError("too many orders")
        parts = [
            bytes([BATCH_VERSION]),
            self.timestamp.to_bytes(8, "big"),
            len(self.orders).to_bytes(2, "big"),
        ]
        for entry in self.orders:
            if len(entry) != ORDER_ENTRY_SIZE:
                raise InvalidBatchError("order entry must be 104 bytes")
            parts.append(entry)
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
        end_orders = at + n_orders * ORDER_ENTRY_SIZE
        if len(data) < end_orders + 4:
            raise InvalidBatchError("truncated order table")
        orders = tuple(
            data[at + i * ORDER_ENTRY_SIZE : at + (i + 1) * ORDER_ENTRY_SIZE]
            for i in range(n_orders)
        )
        at = end_orders
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
        return Batch(timestamp, orders, tuple(steps))
