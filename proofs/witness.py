"""Witnesses for one-step proofs: everything L1 needs to execute one step alone.

For step ``i`` of a batch the witness holds the state root before the step,
the step's bytes with a Merkle branch into the batch's steps tree, every order
it references with a branch into the orders tree, the queue item it would
consume, every leaf it reads or writes with an MPT proof against the pre-root,
and its writes in canonical order (sorted by key), each with a proof against
the root left by the previous write, the last leaving the post-root. The
one-step prover checks the reads, executes the step (docs/stf.md) and applies
the writes in that order; the same code serves honest and dishonest parties.
"""

from __future__ import annotations

from dataclasses import dataclass

from proofs.commitment import merkle_branch
from state.batch import Batch
from state.context import BatchContext, L1Deposit, L1Forced
from state.db import StateDB, TrieSource
from state.keccak import keccak256
from state.nodestore import OverlayStore
from state.transition import Receipt, apply_step
from state.trie import TrieDB
from state.txs import Cancel, Deposit, Forced, Liquidate, Trade, decode_step
from state.view import StateView


@dataclass(frozen=True)
class LeafRead:
    """A leaf the step touches: its pre-step value (None when absent) and proof."""

    key: bytes
    value: bytes | None
    proof: list[bytes]


@dataclass(frozen=True)
class LeafWrite:
    """A leaf the step writes: its new value and a proof against the root before this write."""

    key: bytes
    value: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class OrderWitness:
    """An order-table entry the step references, with its branch into the orders tree."""

    ref: int
    entry: bytes
    """The entry as the batch writes it (docs/stf.md §5.2): its leaf is this hash."""
    branch: list[bytes]


@dataclass(frozen=True)
class StepWitness:
    """Everything needed to execute step ``index`` of a batch alone."""

    index: int
    step: bytes
    step_branch: list[bytes]
    orders: list[OrderWitness]
    deposit: L1Deposit | None
    forced: L1Forced | None
    pre_root: bytes
    post_root: bytes
    reads: list[LeafRead]
    writes: list[LeafWrite]
    receipt: Receipt


def referenced_orders(step: bytes) -> list[int]:
    """The order-table references of a step (none for kinds that reference no order)."""
    tx = decode_step(step)
    if isinstance(tx, Trade):
        return [tx.maker, tx.taker]
    if isinstance(tx, Cancel | Liquidate):
        return [tx.order]
    return []


def build_step_witness(
    db: StateDB, batch_pre_root: bytes, batch: Batch, ctx: BatchContext, index: int
) -> StepWitness:
    """The witness of step ``index`` of ``batch``, whose pre-state root is ``batch_pre_root``.

    Nothing is persisted: intermediate tries live in an in-memory overlay."""
    if not 0 <= index < len(batch.steps):
        raise IndexError(index)
    trie = TrieDB(OverlayStore(db.trie.store), batch_pre_root, cache_size=0, close_store=False)
    replay = StateView(TrieSource(trie, batch_pre_root))
    for step in batch.steps[:index]:
        apply_step(replay, step, ctx)
    prefix = replay.dirty_leaves()
    pre_root = trie.commit(prefix) if prefix else batch_pre_root

    view = StateView(TrieSource(trie, pre_root), record=True)
    g = view.global_()
    step = batch.steps[index]
    tx = decode_step(step)
    deposit = ctx.queues.deposit(g.next_deposit) if isinstance(tx, Deposit) else None
    forced = ctx.queues.forced(g.next_forced) if isinstance(tx, Forced) else None
    receipt = apply_step(view, step, ctx)
    touched = sorted(view.touched or ())
    reads = [LeafRead(key, trie.get(key, pre_root), trie.prove(key, pre_root)) for key in touched]

    writes = []
    for key, value in sorted(view.dirty_leaves().items()):
        writes.append(LeafWrite(key, value, trie.prove(key)))
        trie.commit({key: value})
    step_leaves = [keccak256(s) for s in batch.steps]
    order_leaves = [keccak256(o) for o in batch.written]
    orders = [
        OrderWitness(ref, batch.written[ref], merkle_branch(order_leaves, ref))
        for ref in dict.fromkeys(referenced_orders(step))
        if 0 <= ref < len(batch.orders)
    ]
    return StepWitness(
        index, step, merkle_branch(step_leaves, index), orders, deposit, forced, pre_root,
        trie.root, reads, writes, receipt,
    )
