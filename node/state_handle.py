"""Opening the node's on-disk state and moving its committed root pointer.

:class:`state.db.StateDB` only moves its root forward (``commit``). The
derivation also needs to move it back, to a batch's parent when the rollup
removes the batch: trie nodes are never deleted, so every root ever committed
stays readable and moving the pointer is all a rollback takes. This is done
here, through the node store's public metadata interface, without changing
``state/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from state.db import StateDB
from state.trie import ROOT_META, TrieDB


class UnknownRootError(LookupError):
    """The store holds no trie node for the requested root."""


def open_state(
    path: str | os.PathLike[str], genesis: Mapping[bytes, bytes] | None = None, *, sync: bool = True
) -> StateDB:
    """Open the LMDB state at ``path``; an empty state is initialised with ``genesis`` when given."""
    db = StateDB.open(path, sync=sync)
    if db.is_empty and genesis is not None:
        db.initialize(genesis)
    return db


def has_root(db: StateDB, root: bytes) -> bool:
    """Whether ``root`` is a root the store can read (its node is stored)."""
    return db.trie.store.get(root) is not None


def reset_root(db: StateDB, root: bytes) -> StateDB:
    """A :class:`StateDB` at ``root`` over ``db``'s store, with the pointer persisted.

    ``db`` must not be used afterwards (its decoded-leaf cache belongs to its
    old root; it shares the store with the new object, so do not close it
    either). Returns ``db`` itself when it is already at ``root``."""
    if root == db.root:
        return db
    store = db.trie.store
    if store.get(root) is None:
        raise UnknownRootError(f"no trie node for root {root.hex()}")
    store.set_meta(ROOT_META, root)
    return StateDB(TrieDB(store, root))
