"""The state database: decoded leaves in memory over a persistent trie.

The hot path applies a whole batch to an in-memory :class:`StateView` and
commits its dirty leaves to the trie once, hashing each dirty node once. The
root after any single step of a batch — what disputes need — is recomputed on
demand by replaying the batch's first steps over a fresh view at the batch's
pre-state root, without persisting anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from state.batch import Batch
from state.context import BatchContext
from state.transition import Receipt, apply_step
from state.trie import EMPTY_ROOT, TrieDB
from state.view import StateView


class TrieSource:
    """A leaf source reading the trie at a fixed root."""

    def __init__(self, trie: TrieDB, root: bytes) -> None:
        self._trie = trie
        self.root = root

    def get(self, key: bytes) -> bytes | None:
        """The leaf under ``key`` at this source's root."""
        return self._trie.get(key, self.root)


@dataclass(frozen=True)
class BatchResult:
    """Receipts and roots of one applied batch."""

    pre_root: bytes
    post_root: bytes
    receipts: list[Receipt]


class StateDB:
    """The HFX state: a persistent trie plus a cache of decoded leaves."""

    def __init__(self, trie: TrieDB) -> None:
        self.trie = trie
        self._source = TrieSource(trie, trie.root)
        self.view = StateView(self._source)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, sync: bool = True) -> StateDB:
        """Open (creating if needed) the on-disk state at ``path``."""
        return cls(TrieDB.open(path, sync=sync))

    @classmethod
    def in_memory(cls) -> StateDB:
        """A state with an in-memory node store (tests, benchmarks, replays)."""
        return cls(TrieDB.in_memory())

    @property
    def root(self) -> bytes:
        """The committed state root."""
        return self.trie.root

    @property
    def is_empty(self) -> bool:
        """True before genesis."""
        return self.trie.root == EMPTY_ROOT

    def initialize(self, leaves: Mapping[bytes, bytes]) -> bytes:
        """Write the genesis leaves into an empty state; returns the genesis root."""
        if not self.is_empty:
            raise ValueError("state already initialised")
        return self.commit_leaves(dict(leaves))

    def commit_leaves(self, leaves: Mapping[bytes, bytes]) -> bytes:
        """Write ``leaves`` into the trie (hashing every changed node) and move the
        state to the new root, which is returned. The in-memory view's dirty set is
        left alone: the caller took these leaves from it (the sequencer's sealing
        thread commits a closed batch's leaves while the next batch runs)."""
        root = self.trie.commit(leaves)
        self._source.root = root
        return root

    def apply_steps(self, steps: Sequence[bytes], ctx: BatchContext) -> list[Receipt]:
        """Apply steps to the in-memory view without committing (the sequencer's hot path)."""
        view = self.view
        return [apply_step(view, step, ctx) for step in steps]

    def commit(self) -> bytes:
        """Commit every leaf written since the last commit; returns the new root."""
        dirty = self.view.dirty_leaves()
        self.view.clear_dirty()
        return self.commit_leaves(dirty) if dirty else self.root

    def apply_batch(self, batch: Batch, ctx: BatchContext) -> BatchResult:
        """Apply a whole batch and commit it once."""
        pre = self.root
        receipts = self.apply_steps(batch.steps, ctx)
        return BatchResult(pre, self.commit(), receipts)

    def root_after(self, pre_root: bytes, steps: Sequence[bytes], ctx: BatchContext, count: int) -> bytes:
        """The root after the first ``count`` steps, starting from ``pre_root``; nothing persists."""
        view = StateView(TrieSource(self.trie, pre_root))
        for step in steps[:count]:
            apply_step(view, step, ctx)
        return self.trie.root_of(view.dirty_leaves(), root=pre_root)

    def roots_after_each(self, pre_root: bytes, steps: Sequence[bytes], ctx: BatchContext) -> list[bytes]:
        """Roots after steps 0..n (index 0 is ``pre_root``); nothing persists."""
        view = StateView(TrieSource(self.trie, pre_root))
        roots = [pre_root]
        for step in steps:
            apply_step(view, step, ctx)
            roots.append(self.trie.root_of(view.dirty_leaves(), root=pre_root))
        return roots

    def get(self, key: bytes, root: bytes | None = None) -> bytes | None:
        """Raw leaf bytes under ``key`` at ``root`` (default: committed)."""
        return self.trie.get(key, root)

    def prove(self, key: bytes, root: bytes | None = None) -> list[bytes]:
        """The RLP trie nodes proving ``key`` (present or absent) at ``root``."""
        return self.trie.prove(key, root)

    def close(self) -> None:
        """Close the underlying store."""
        self.trie.close()
