"""The derivation's data model: posted batches as L1 shows them and the node's record of each.

Enums start at 1 (zero is never a valid value); a batch's status on L1 is the
rollup's ``BatchStatus`` (``l1_contracts.bindings``, docs/l1.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from l1_contracts.bindings import BatchData, BatchStatus


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
    data: BatchData
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
    l1_status: BatchStatus
    data: BatchData
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
        return self.verdict == Verdict.MISMATCH and self.l1_status == BatchStatus.PENDING
