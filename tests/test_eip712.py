"""Tests for state.eip712: digests against eth-account, signing and recovery."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from state.eip712 import (
    CANCEL_TYPE,
    ORACLE_UPDATE_TYPE,
    ORDER_TYPE,
    SECP256K1_N,
    WITHDRAW_TYPE,
    address_of,
    cancel_digest,
    cancel_struct_hash,
    domain_separator,
    ecrecover_baseline_rate,
    oracle_digest,
    oracle_struct_hash,
    order_digest,
    order_struct_hash,
    recover_signer,
    sign_digest,
    typed_digest,
    withdraw_digest,
    withdraw_struct_hash,
)

U8 = st.integers(0, 2**8 - 1)
U64 = st.integers(0, 2**64 - 1)
U256 = st.integers(0, 2**256 - 1)
ADDR = st.binary(min_size=20, max_size=20)
B32 = st.binary(min_size=32, max_size=32)
KEYS = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def _fields(type_string: str) -> list[dict[str, str]]:
    """Turn 'Name(t1 a,t2 b)' into eth-account's field list."""
    inner = type_string[type_string.index("(") + 1 : -1]
    out = []
    for member in inner.split(","):
        typ, name = member.split(" ")
        out.append({"name": name, "type": typ})
    return out


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _reference(
    type_string: str, message: dict[str, Any], chain_id: int, contract: bytes
) -> tuple[bytes, bytes, bytes]:
    """(domain separator, struct hash, digest) computed by eth-account's generic path."""
    primary = type_string[: type_string.index("(")]
    signable = encode_typed_data(
        full_message={
            "types": {"EIP712Domain": DOMAIN_FIELDS, primary: _fields(type_string)},
            "primaryType": primary,
            "domain": {
                "name": "HFX",
                "version": "1",
                "chainId": chain_id,
                "verifyingContract": _hex(contract),
            },
            "message": message,
        }
    )
    assert signable.version == b"\x01"
    return bytes(signable.header), bytes(signable.body), bytes(_hash_eip191_message(signable))


# ---------------------------------------------------------------------------
# Digests equal eth-account's generic encode_typed_data
# ---------------------------------------------------------------------------


@given(
    chain_id=U256,
    contract=ADDR,
    trader=ADDR,
    market=U8,
    is_buy=st.booleans(),
    price=U64,
    size=U64,
    flags=U8,
    expiry=U64,
    salt=U64,
)
def test_order_digest_matches_eth_account(
    chain_id: int,
    contract: bytes,
    trader: bytes,
    market: int,
    is_buy: bool,
    price: int,
    size: int,
    flags: int,
    expiry: int,
    salt: int,
) -> None:
    msg = {
        "trader": _hex(trader),
        "market": market,
        "isBuy": is_buy,
        "price": price,
        "size": size,
        "flags": flags,
        "expiry": expiry,
        "salt": salt,
    }
    ref_dom, ref_struct, ref_digest = _reference(ORDER_TYPE, msg, chain_id, contract)
    dom = domain_separator(chain_id, contract)
    assert dom == ref_dom
    sh = order_struct_hash(trader, market, is_buy, price, size, flags, expiry, salt)
    assert sh == ref_struct
    assert typed_digest(dom, sh) == ref_digest
    assert order_digest(dom, trader, market, is_buy, price, size, flags, expiry, salt) == ref_digest


@given(chain_id=U256, contract=ADDR, trader=ADDR, order_hash=B32)
def test_cancel_digest_matches_eth_account(
    chain_id: int, contract: bytes, trader: bytes, order_hash: bytes
) -> None:
    msg = {"trader": _hex(trader), "orderHash": order_hash}
    ref_dom, ref_struct, ref_digest = _reference(CANCEL_TYPE, msg, chain_id, contract)
    dom = domain_separator(chain_id, contract)
    assert dom == ref_dom
    assert cancel_struct_hash(trader, order_hash) == ref_struct
    assert cancel_digest(dom, trader, order_hash) == ref_digest


@given(chain_id=U256, contract=ADDR, trader=ADDR, recipient=ADDR, amount=U64, nonce=U64)
def test_withdraw_digest_matches_eth_account(
    chain_id: int, contract: bytes, trader: bytes, recipient: bytes, amount: int, nonce: int
) -> None:
    msg = {"trader": _hex(trader), "recipient": _hex(recipient), "amount": amount, "nonce": nonce}
    ref_dom, ref_struct, ref_digest = _reference(WITHDRAW_TYPE, msg, chain_id, contract)
    dom = domain_separator(chain_id, contract)
    assert dom == ref_dom
    assert withdraw_struct_hash(trader, recipient, amount, nonce) == ref_struct
    assert withdraw_digest(dom, trader, recipient, amount, nonce) == ref_digest


@given(chain_id=U256, contract=ADDR, timestamp=U64, prices_hash=B32)
def test_oracle_digest_matches_eth_account(
    chain_id: int, contract: bytes, timestamp: int, prices_hash: bytes
) -> None:
    msg = {"timestamp": timestamp, "pricesHash": prices_hash}
    ref_dom, ref_struct, ref_digest = _reference(ORACLE_UPDATE_TYPE, msg, chain_id, contract)
    dom = domain_separator(chain_id, contract)
    assert dom == ref_dom
    assert oracle_struct_hash(timestamp, prices_hash) == ref_struct
    assert oracle_digest(dom, timestamp, prices_hash) == ref_digest


def test_digest_is_32_bytes_and_field_sensitive() -> None:
    dom = domain_separator(1, bytes(20))
    base = order_digest(dom, b"\x01" * 20, 1, True, 100, 5, 0, 10, 7)
    assert len(base) == 32
    assert order_digest(dom, b"\x01" * 20, 1, False, 100, 5, 0, 10, 7) != base
    assert (
        order_digest(domain_separator(2, bytes(20)), b"\x01" * 20, 1, True, 100, 5, 0, 10, 7)
        != base
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: order_struct_hash(bytes(20), 256, True, 0, 0, 0, 0, 0),
        lambda: order_struct_hash(bytes(20), 0, True, -1, 0, 0, 0, 0),
        lambda: order_struct_hash(bytes(20), 0, True, 0, 2**64, 0, 0, 0),
        lambda: order_struct_hash(bytes(20), 0, True, 0, 0, -1, 0, 0),
        lambda: order_struct_hash(bytes(19), 0, True, 0, 0, 0, 0, 0),
        lambda: order_struct_hash(bytes(21), 0, True, 0, 0, 0, 0, 0),
        lambda: cancel_struct_hash(bytes(20), bytes(31)),
        lambda: cancel_struct_hash(bytes(32), bytes(32)),
        lambda: withdraw_struct_hash(bytes(20), bytes(20), 2**64, 0),
        lambda: withdraw_struct_hash(bytes(20), bytes(19), 0, 0),
        lambda: oracle_struct_hash(-1, bytes(32)),
        lambda: oracle_struct_hash(0, bytes(33)),
        lambda: domain_separator(-1, bytes(20)),
        lambda: domain_separator(2**256, bytes(20)),
        lambda: domain_separator(1, bytes(32)),
    ],
)
def test_out_of_range_fields_raise_value_error(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------
# Signing and recovery
# ---------------------------------------------------------------------------


@given(key=KEYS, digest=B32)
def test_sign_and_recover_match_eth_account(key: bytes, digest: bytes) -> None:
    acct = Account.from_key(key)
    addr = address_of(key)
    assert _hex(addr) == acct.address.lower()

    sig = sign_digest(key, digest)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2

    ref = acct.unsafe_sign_hash(digest)
    assert sig == bytes(ref.signature)

    assert recover_signer(digest, sig) == addr
    assert Account._recover_hash(digest, signature=sig).lower() == _hex(addr)
    # raw recovery id form is accepted too
    assert recover_signer(digest, sig[:64] + bytes((sig[64] - 27,))) == addr
    # mutable / view inputs
    mutable_digest: Any = bytearray(digest)
    mutable_sig: Any = bytearray(sig)
    assert recover_signer(mutable_digest, mutable_sig) == addr


@given(key=KEYS, digest=B32, other=B32)
def test_recover_wrong_digest_gives_other_address(key: bytes, digest: bytes, other: bytes) -> None:
    sig = sign_digest(key, digest)
    if other != digest:
        assert recover_signer(other, sig) != address_of(key)


def test_sign_typed_order_end_to_end() -> None:
    key = (0x4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318).to_bytes(32, "big")
    contract = bytes.fromhex("00000000000000000000000000000000000000aa")
    dom = domain_separator(1, contract)
    trader = address_of(key)
    digest = order_digest(dom, trader, 3, True, 123_456, 10, 0, 2**40, 99)
    sig = sign_digest(key, digest)
    assert recover_signer(digest, sig) == trader
    msg = {
        "trader": _hex(trader),
        "market": 3,
        "isBuy": True,
        "price": 123_456,
        "size": 10,
        "flags": 0,
        "expiry": 2**40,
        "salt": 99,
    }
    *_, ref_digest = _reference(ORDER_TYPE, msg, 1, contract)
    assert ref_digest == digest
    primary = {
        "types": {"EIP712Domain": DOMAIN_FIELDS, "Order": _fields(ORDER_TYPE)},
        "primaryType": "Order",
        "domain": {
            "name": "HFX",
            "version": "1",
            "chainId": 1,
            "verifyingContract": _hex(contract),
        },
        "message": msg,
    }
    signed = Account.sign_message(encode_typed_data(full_message=primary), private_key=key)
    assert bytes(signed.signature) == sig


# --- rejection paths: never raise, return None ------------------------------


@given(digest=st.binary(max_size=80), sig=st.binary(max_size=140))
def test_recover_random_bytes_never_raises(digest: bytes, sig: bytes) -> None:
    out = recover_signer(digest, sig)
    assert out is None or (isinstance(out, bytes) and len(out) == 20)
    if len(digest) != 32 or len(sig) != 65:
        assert out is None


@given(digest=B32, sig=st.binary(min_size=65, max_size=65))
def test_recover_random_65_bytes_never_raises(digest: bytes, sig: bytes) -> None:
    out = recover_signer(digest, sig)
    assert out is None or len(out) == 20


@pytest.mark.parametrize("bad", [None, 0, "x" * 65, 3.5, [0] * 65, object()])
def test_recover_non_bytes_never_raises(bad: Any) -> None:
    assert recover_signer(bytes(32), bad) is None
    assert recover_signer(bad, bytes(65)) is None


def _valid(key_int: int, digest: bytes) -> tuple[bytes, bytes]:
    key = key_int.to_bytes(32, "big")
    return sign_digest(key, digest), address_of(key)


@given(key=st.integers(1, SECP256K1_N - 1), digest=B32, v=st.integers(0, 255))
def test_recover_bad_v(key: int, digest: bytes, v: int) -> None:
    sig, addr = _valid(key, digest)
    out = recover_signer(digest, sig[:64] + bytes((v,)))
    if v in (0, 1, 27, 28):
        assert out is not None
        if v in (sig[64], sig[64] - 27):
            assert out == addr
    else:
        assert out is None


@given(key=st.integers(1, SECP256K1_N - 1), digest=B32)
def test_recover_rejects_high_s_twin(key: int, digest: bytes) -> None:
    sig, addr = _valid(key, digest)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - sig[64],))
    # the twin is a mathematically valid signature by the same key ...
    r = int.from_bytes(twin[:32], "big")
    assert Account._recover_hash(digest, vrs=(twin[64], r, SECP256K1_N - s)).lower() == _hex(addr)
    # ... but EIP-2 malleability rules reject it
    assert recover_signer(digest, twin) is None


@given(
    key=st.integers(1, SECP256K1_N - 1),
    digest=B32,
    big=st.integers(SECP256K1_N, 2**256 - 1) | st.sampled_from([SECP256K1_N, 2**256 - 1]),
)
def test_recover_rejects_out_of_range_scalars(key: int, digest: bytes, big: int) -> None:
    sig, _ = _valid(key, digest)
    r, s, v = sig[:32], sig[32:64], sig[64:]
    zero = bytes(32)
    big_b = big.to_bytes(32, "big")
    assert recover_signer(digest, zero + s + v) is None
    assert recover_signer(digest, r + zero + v) is None
    assert recover_signer(digest, zero + zero + v) is None
    assert recover_signer(digest, big_b + s + v) is None
    assert recover_signer(digest, r + big_b + v) is None


def test_recover_boundary_s() -> None:
    digest = bytes(range(32))
    sig, addr = _valid(12345, digest)
    r, v = sig[:32], sig[64:]
    half = SECP256K1_N // 2
    # s exactly n/2 is allowed by the range check (may or may not recover), n/2+1 is not
    out = recover_signer(digest, r + half.to_bytes(32, "big") + v)
    assert out is None or len(out) == 20
    assert recover_signer(digest, r + (half + 1).to_bytes(32, "big") + v) is None


def test_recover_r_not_on_curve() -> None:
    # some small r values are not x-coordinates of curve points: must not raise either way
    digest = bytes(32)
    for r in (1, 2, 5, 7, SECP256K1_N - 1):
        for v in (27, 28):
            out = recover_signer(
                digest, r.to_bytes(32, "big") + (1).to_bytes(32, "big") + bytes((v,))
            )
            assert out is None or len(out) == 20


def test_sign_digest_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        sign_digest(bytes(32), bytes(32))  # zero key
    with pytest.raises(ValueError):
        sign_digest((1).to_bytes(32, "big"), bytes(31))
    with pytest.raises(ValueError):
        address_of(SECP256K1_N.to_bytes(32, "big"))


def test_ecrecover_baseline_rate_positive() -> None:
    assert ecrecover_baseline_rate(20) > 0
    with pytest.raises(ValueError):
        ecrecover_baseline_rate(0)
