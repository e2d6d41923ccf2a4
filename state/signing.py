"""Building signed HFX messages and steps, as a trader's or oracle's client does.

Pure functions from private keys and fields to the exact bytes the STF reads.
Used by the sequencer's client, the demo traders, the benchmarks and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from state.eip712 import (
    cancel_digest,
    oracle_digest,
    order_digest,
    sign_digest,
    withdraw_digest,
)
from state.keccak import keccak256
from state.txs import (
    OracleEntry,
    OrderBody,
    SignedOrder,
    encode_cancel,
    encode_oracle,
    encode_oracle_entries,
    encode_withdraw,
)


def order_hash(domain: bytes, owner: bytes, body: OrderBody) -> bytes:
    """The EIP-712 digest of an order whose account is owned by ``owner``."""
    return order_digest(
        domain, owner, body.market, body.is_buy, body.price, body.size, body.flags,
        body.expiry, body.salt,
    )


def sign_order(key: bytes, owner: bytes, domain: bytes, body: OrderBody) -> SignedOrder:
    """Sign ``body`` with ``key`` (whose address is ``owner``)."""
    return SignedOrder(body, sign_digest(key, order_hash(domain, owner, body)))


def signed_withdraw(
    key: bytes, owner: bytes, domain: bytes, account: int, recipient: bytes, amount: int,
    nonce: int,
) -> bytes:
    """A withdraw step signed by ``key``."""
    sig = sign_digest(key, withdraw_digest(domain, owner, recipient, amount, nonce))
    return encode_withdraw(account, recipient, amount, nonce, sig)


def signed_cancel(key: bytes, owner: bytes, domain: bytes, order_ref: int, body: OrderBody) -> bytes:
    """A cancel step for the order-table entry ``order_ref`` holding ``body``."""
    digest = order_hash(domain, owner, body)
    return encode_cancel(order_ref, sign_digest(key, cancel_digest(domain, owner, digest)))


def signed_oracle(
    keys: Sequence[bytes], domain: bytes, timestamp: int, entries: Sequence[OracleEntry]
) -> bytes:
    """An oracle step carrying ``entries``, signed by each of ``keys``."""
    data_hash = keccak256(encode_oracle_entries(tuple(entries)))
    digest = oracle_digest(domain, timestamp, data_hash)
    return encode_oracle(timestamp, tuple(entries), [sign_digest(k, digest) for k in keys])
