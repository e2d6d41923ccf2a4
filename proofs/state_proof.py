"""Proofs of HFX state leaves in the shape of EIP-1186 ``eth_getProof``.

HFX's state is one trie of leaves (no accounts-with-storage), so a proof is
the ``storageProof`` part of ``eth_getProof``: for each key, the raw leaf
value and the RLP trie nodes from the root to it (or to where its absence
shows), all as 0x-hex. Each entry is verified before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proofs.mpt import eip1186_entry
from state.db import StateDB


def get_proof(db: StateDB, keys: Sequence[bytes], root: bytes | None = None) -> dict[str, Any]:
    """``{"stateRoot": "0x..", "storageProof": [{"key", "value", "proof"}, ...]}`` at ``root``
    (default: the committed root)."""
    at = db.root if root is None else root
    return {
        "stateRoot": "0x" + at.hex(),
        "storageProof": [eip1186_entry(at, key, db.prove(key, at)) for key in keys],
    }
