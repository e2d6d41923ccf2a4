"""Fast EIP-712 digests and ECDSA signer recovery for HFX signed messages.

Every signed HFX message is an EIP-712 typed-data struct under the domain

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)

with ``name = "HFX"``, ``version = "1"``, ``chainId`` the L1 chain id and
``verifyingContract`` the rollup contract address.  The message types are::

    Order(address trader,uint8 market,bool isBuy,uint64 price,uint64 size,uint8 flags,uint64 expiry,uint64 salt)
    Cancel(address trader,bytes32 orderHash)
    Withdraw(address trader,address recipient,uint64 amount,uint64 nonce)
    OracleUpdate(uint64 timestamp,bytes32 pricesHash)

All of these have only static (32-byte word) members, so ``encodeData`` is a
fixed-layout concatenation.  Instead of walking a generic typed-data
description, each struct hash is computed as ``keccak256`` of a single
precompiled :class:`struct.Struct` packing of the precomputed type hash followed
by the left-padded member words.  Packing also range-checks every integer
member; out-of-range values raise :class:`ValueError`.

Signatures are 65 bytes ``r || s || v``.  :func:`recover_signer` accepts
``v`` in ``{27, 28}`` (and the raw recovery ids ``{0, 1}``) and, as in EIP-2,
rejects signatures whose ``s`` lies in the upper half of the curve order, so
that every message/signer pair has exactly one accepted signature encoding.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Final

from coincurve import PrivateKey, PublicKey

from state.keccak import keccak256

__all__ = [
    "CANCEL_TYPE",
    "CANCEL_TYPEHASH",
    "DOMAIN_NAME",
    "DOMAIN_TYPE",
    "DOMAIN_TYPEHASH",
    "DOMAIN_VERSION",
    "ORACLE_UPDATE_TYPE",
    "ORACLE_UPDATE_TYPEHASH",
    "ORDER_TYPE",
    "ORDER_TYPEHASH",
    "SECP256K1_N",
    "WITHDRAW_TYPE",
    "WITHDRAW_TYPEHASH",
    "address_of",
    "cancel_digest",
    "cancel_struct_hash",
    "domain_separator",
    "ecrecover_baseline_rate",
    "oracle_digest",
    "oracle_struct_hash",
    "order_digest",
    "order_struct_hash",
    "recover_signer",
    "sign_digest",
    "typed_digest",
    "withdraw_digest",
    "withdraw_struct_hash",
]

# ---------------------------------------------------------------------------
# Type strings and type hashes
# ---------------------------------------------------------------------------

DOMAIN_NAME: Final = "HFX"
DOMAIN_VERSION: Final = "1"

DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ORDER_TYPE: Final = (
    "Order(address trader,uint8 market,bool isBuy,uint64 price,uint64 size,"
    "uint8 flags,uint64 expiry,uint64 salt)"
)
CANCEL_TYPE: Final = "Cancel(address trader,bytes32 orderHash)"
WITHDRAW_TYPE: Final = "Withdraw(address trader,address recipient,uint64 amount,uint64 nonce)"
ORACLE_UPDATE_TYPE: Final = "OracleUpdate(uint64 timestamp,bytes32 pricesHash)"

DOMAIN_TYPEHASH: Final = keccak256(DOMAIN_TYPE.encode())
ORDER_TYPEHASH: Final = keccak256(ORDER_TYPE.encode())
CANCEL_TYPEHASH: Final = keccak256(CANCEL_TYPE.encode())
WITHDRAW_TYPEHASH: Final = keccak256(WITHDRAW_TYPE.encode())
ORACLE_UPDATE_TYPEHASH: Final = keccak256(ORACLE_UPDATE_TYPE.encode())

_NAME_HASH: Final = keccak256(DOMAIN_NAME.encode())
_VERSION_HASH: Final = keccak256(DOMAIN_VERSION.encode())

#: Order of the secp256k1 group.
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = SECP256K1_N // 2
_UINT256_MAX: Final = (1 << 256) - 1

# ---------------------------------------------------------------------------
# Fixed-layout encoders.  Each 32-byte ABI word is encoded as left zero
# padding followed by the big-endian value: "12x20s" (address), "31xB"
# (uint8), "31x?" (bool), "24xQ" (uint64), "32s" (bytes32 / type hash).
# ---------------------------------------------------------------------------

_ORDER_ENC: Final = struct.Struct(">32s12x20s31xB31x?24xQ24xQ31xB24xQ24xQ")
_CANCEL_ENC: Final = struct.Struct(">32s12x20s32s")
_WITHDRAW_ENC: Final = struct.Struct(">32s12x20s12x20s24xQ24xQ")
_ORACLE_ENC: Final = struct.Struct(">32s24xQ32s")

_DIGEST_PREFIX: Final = b"\x19\x01"


def _check_len(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def domain_separator(chain_id: int, verifying_contract: bytes) -> bytes:
    """Return the EIP-712 domain separator of the HFX domain.

    ``chain_id`` is the L1 chain id (a uint256) and ``verifying_contract`` the
    20-byte address of the rollup contract.  Raises :class:`ValueError` if
    either is out of range.
    """
    _check_len("verifying_contract", verifying_contract, 20)
    if not 0 <= chain_id <= _UINT256_MAX:
        raise ValueError("chain_id must be a uint256")
    return keccak256(
        DOMAIN_TYPEHASH
        + _NAME_HASH
        + _VERSION_HASH
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes(verifying_contract)
    )


def typed_digest(domain_sep: bytes, struct_hash: bytes) -> bytes:
    """Return the EIP-712 signing digest ``keccak256(0x1901 || domain_sep || struct_hash)``."""
    return keccak256(_DIGEST_PREFIX + domain_sep + struct_hash)


def order_struct_hash(
    trader: bytes,
    market: int,
    is_buy: bool,
    price: int,
    size: int,
    flags: int,
    expiry: int,
    salt: int,
) -> bytes:
    """Return ``hashStruct`` of an ``Order``.

    ``trader`` is a 20-byte address; ``market`` and ``flags`` are uint8;
    ``price``, ``size``, ``expiry`` and ``salt`` are uint64.  Raises
    :class:`ValueError` on a wrong-length address or out-of-range integer.
    """
    _check_len("trader", trader, 20)
    try:
        data = _ORDER_ENC.pack(
            ORDER_TYPEHASH, trader, market, is_buy, price, size, flags, expiry, salt
        )
    except struct.error as exc:
        raise ValueError(f"Order field out of range: {exc}") from None
    return keccak256(data)


def cancel_struct_hash(trader: bytes, order_hash: bytes) -> bytes:
    """Return ``hashStruct`` of a ``Cancel`` (20-byte ``trader``, 32-byte ``order_hash``)."""
    _check_len("trader", trader, 20)
    _check_len("order_hash", order_hash, 32)
    return keccak256(_CANCEL_ENC.pack(CANCEL_TYPEHASH, trader, order_hash))


def withdraw_struct_hash(trader: bytes, recipient: bytes, amount: int, nonce: int) -> bytes:
    """Return ``hashStruct`` of a ``Withdraw``.

    ``trader`` and ``recipient`` are 20-byte addresses; ``amount`` and
    ``nonce`` are uint64.  Raises :class:`ValueError` on invalid input.
    """
    _check_len("trader", trader, 20)
    _check_len("recipient", recipient, 20)
    try:
        data = _WITHDRAW_ENC.pack(WITHDRAW_TYPEHASH, trader, recipient, amount, nonce)
    except struct.error as exc:
        raise ValueError(f"Withdraw field out of range: {exc}") from None
    return keccak256(data)


def oracle_struct_hash(timestamp: int, prices_hash: bytes) -> bytes:
    """Return ``hashStruct`` of an ``OracleUpdate`` (uint64 ``timestamp``, 32-byte ``prices_hash``)."""
    _check_len("prices_hash", prices_hash, 32)
    try:
        data = _ORACLE_ENC.pack(ORACLE_UPDATE_TYPEHASH, timestamp, prices_hash)
    except struct.error as exc:
        raise ValueError(f"OracleUpdate field out of range: {exc}") from None
    return keccak256(data)


def order_digest(
    domain_sep: bytes,
    trader: bytes,
    market: int,
    is_buy: bool,
    price: int,
    size: int,
    flags: int,
    expiry: int,
    salt: int,
) -> bytes:
    """Return the EIP-712 signing digest of an ``Order`` (see :func:`order_struct_hash`)."""
    return keccak256(
        _DIGEST_PREFIX
        + domain_sep
        + order_struct_hash(trader, market, is_buy, price, size, flags, expiry, salt)
    )


def cancel_digest(domain_sep: bytes, trader: bytes, order_hash: bytes) -> bytes:
    """Return the EIP-712 signing digest of a ``Cancel`` (see :func:`cancel_struct_hash`)."""
    return keccak256(_DIGEST_PREFIX + domain_sep + cancel_struct_hash(trader, order_hash))


def withdraw_digest(
    domain_sep: bytes, trader: bytes, recipient: bytes, amount: int, nonce: int
) -> bytes:
    """Return the EIP-712 signing digest of a ``Withdraw`` (see :func:`withdraw_struct_hash`)."""
    return keccak256(
        _DIGEST_PREFIX + domain_sep + withdraw_struct_hash(trader, recipient, amount, nonce)
    )


def oracle_digest(domain_sep: bytes, timestamp: int, prices_hash: bytes) -> bytes:
    """Return the EIP-712 signing digest of an ``OracleUpdate`` (see :func:`oracle_struct_hash`)."""
    return keccak256(_DIGEST_PREFIX + domain_sep + oracle_struct_hash(timestamp, prices_hash))


# ---------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------


def _pubkey_to_address(pub: PublicKey) -> bytes:
    return keccak256(pub.format(compressed=False)[1:])[12:]


def recover_signer(digest: object, signature: object) -> bytes | None:
    """Recover the 20-byte signer address of ``signature`` over the 32-byte ``digest``.

    ``signature`` is 65 bytes ``r || s || v`` with ``v`` in ``{27, 28}`` or
    ``{0, 1}``.  Returns ``None`` (never raises) if the input is malformed or
    the signature is invalid: wrong lengths, any other ``v``, ``r`` or ``s``
    equal to zero or not below the secp256k1 order ``n``, or a failed
    recovery.  Following EIP-2, signatures with ``s > n / 2`` are rejected
    too, so the malleable twin ``(r, n - s, v ^ 1)`` of a valid signature is
    not accepted.
    """
    # ``object`` parameters: the compiled module checks nothing on the way in, so any
    # argument reaches the checks below (``bytes`` would raise TypeError there).
    if not isinstance(signature, bytes | bytearray) or not isinstance(digest, bytes | bytearray):
        return None
    try:
        if len(signature) != 65 or len(digest) != 32:
            return None
        sig = bytes(signature)
        v = sig[64]
        if v >= 27:
            v -= 27
        if v > 1:
            return None
        r = int.from_bytes(sig[0:32], "big")
        s = int.from_bytes(sig[32:64], "big")
        if r == 0 or r >= SECP256K1_N or s == 0 or s > _HALF_N:
            return None
        pub = PublicKey.from_signature_and_message(
            sig[:64] + bytes((v,)), bytes(digest), hasher=None
        )
        return _pubkey_to_address(pub)
    except Exception:  # contract: never raise, whatever the input
        return None


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """Sign a 32-byte ``digest`` with a 32-byte secp256k1 ``private_key``.

    Returns the 65-byte signature ``r || s || v`` with ``v`` in ``{27, 28}``
    and low ``s`` (deterministic RFC 6979 nonce).  Raises :class:`ValueError`
    on an invalid key or a digest that is not 32 bytes.
    """
    _check_len("digest", digest, 32)
    sig: bytes = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes((sig[64] + 27,))


def address_of(private_key: bytes) -> bytes:
    """Return the 20-byte Ethereum address of a 32-byte secp256k1 ``private_key``.

    Raises :class:`ValueError` on an invalid key.
    """
    return _pubkey_to_address(PrivateKey(private_key).public_key)


def ecrecover_baseline_rate(n: int) -> float:
    """Measure raw recoveries per second over ``n`` random signatures.

    Times only the bare primitive (coincurve public-key recovery plus keccak
    to an address, no validation) over ``n`` freshly generated signatures of
    random digests; signature generation is not timed.  Raises
    :class:`ValueError` if ``n < 1``.
    """
    if n < 1:
        raise ValueError("n must be positive")
    keys = [PrivateKey() for _ in range(min(n, 16))]
    cases: list[tuple[bytes, bytes]] = []
    for i in range(n):
        digest = os.urandom(32)
        cases.append((keys[i % len(keys)].sign_recoverable(digest, hasher=None), digest))
    recover = PublicKey.from_signature_and_message
    start = time.perf_counter()
    for sig, digest in cases:
        keccak256(recover(sig, digest, hasher=None).format(compressed=False)[1:])[12:]
    elapsed = time.perf_counter() - start
    return n / elapsed if elapsed > 0 else float("inf")
