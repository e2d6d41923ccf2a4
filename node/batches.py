"""The derivation's data model: posted batches as L1 shows them and the node's record of each.

Enums start at 1 (zero is never a valid value); :class:`L1Status` uses the
rollup's ``BatchStatus`` flag values (docs/l1.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

from eth_abi.abi import encode

from state.keccak import keccak256


class Verdict(IntEnum):
    """How a posted batch compares with the node's own execution of it."""

    MATCH = 1
    """Same pre-state, and the posted root is the one computed."""
    MISMATCH = 2
    """Same pre-state, a different posted root: the batch can be challenged."""
    BAD_PARENT = 3
    """Posted on a batch whose posted root is wrong: its pre-root is already not the
    node's, so it cannot be challenged on its own (it falls with its ancestor)."""
    UNDECODABLE = 4
    """Its bytes could not be obtained, decoded or matched with the posted
    commitment: applied as a batch without steps (the state does not change)."""


class L1Status(IntEnum):
    """The batch's status on the rollup (the ``BatchStatus`` flag values)."""

    PENDING = 1
    FINAL = 2
    REMOVED = 4


@dataclass(frozen=True)
class Commitment:
    """The batch's data commitment, field for field ``IOneStepProver.BatchData`` (docs/l1.md §2)."""

    orders_root: bytes
    steps_root: bytes
    timestamp: int
    n_orders: int
    n_steps: int
    deposit_start: int
    deposit_end: int
    forced_start: int
    forced_end: int

    TYPES = ("bytes32", "bytes32", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256")

    def as_tuple(self) -> tuple[bytes, bytes, int, int, int, int, int, int, int]:
        """The fields in ABI order."""
        return (
            self.orders_root, self.steps_root, self.timestamp, self.n_orders, self.n_steps,
            self.deposit_start, self.deposit_end, self.forced_start, self.forced_end,
        )

    def encode(self) -> bytes:
        """``abi_encode(BatchData)`` (9 words)."""
        return encode(list(self.TYPES), list(self.as_tuple()))

    def data_hash(self) -> bytes:
        """keccak256(abi_encode(BatchData)): what the rollup stores."""
        return keccak256(self.encode())

    @staticmethod
    def decode(raw: bytes) -> Commitment:
        """Inverse of :meth:`encode`."""
        if len(raw) != 9 * 32:
            raise ValueError("a commitment is 9 words")
        words = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        return Commitment(words[0], words[1], *(int.from_bytes(w, "big") for w in words[2:]))

    @staticmethod
    def of(obj: Any) -> Commitment:
        """From anything with the nine fields as attributes or keys (``bindings.BatchData``, a decoded struct, a tuple)."""
        names = [f.name for f in fields(Commitment)]
        if isinstance(obj, tuple | list):
            values = list(obj)
        elif isinstance(obj, dict):
            values = [obj[n] for n in names]
        else:
            values = [getattr(obj, n) for n in names]
        return Commitment(
            bytes(values[0]), bytes(values[1]), *(int(v) for v in values[2:])
        )


@dataclass(frozen=True)
class PostedBatch:
    """One ``BatchPosted`` event with the bytes of its transaction (docs/l1.md §7)."""

    index: int
    parent: int
    proposer: str
    pre_root: bytes
    """The parent's posted root."""
    post_root: bytes
    """The root the proposer claims."""
    data: Commitment
    deadline: int
    raw: bytes | None
    """The batch bytes from the ``postBatch`` calldata; None when they could not be obtained."""
    tx_hash: bytes
    block: int
    """The L1 block that holds the event."""


@dataclass(frozen=True)
class BatchRecord:
    """What the node knows about one batch."""

    index: int
    parent: int
    proposer: str
    posted_pre_root: bytes
    posted_root: bytes
    pre_root: bytes
    """The node's root before the batch (its parent's computed root)."""
    computed_root: bytes
    """The node's root after the batch."""
    verdict: Verdict
    l1_status: L1Status
    data: Commitment
    deadline: int
    tx_hash: bytes
    block: int
    removed_block: int | None = None
    finalized_block: int | None = None
    refused_steps: int = 0
    """Steps whose receipt is a refusal (they changed nothing but are steps)."""
    note: str = ""

    @property
    def challengeable(self) -> bool:
        """Pending, on the node's own pre-state, with a posted root the node disputes."""
        return self.verdict == Verdict.MISMATCH and self.l1_status == L1Status.PENDING
