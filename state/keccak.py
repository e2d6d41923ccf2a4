"""Keccak-256 (the pre-standard SHA-3 variant used by Ethereum)."""

from __future__ import annotations

import sha3

__all__ = ["keccak256"]

_keccak_256 = sha3.keccak_256


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data``."""
    return _keccak_256(data).digest()  # type: ignore[no-any-return]
