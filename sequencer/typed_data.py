"""The EIP-712 typed data a trader signs (docs/stf.md §10, docs/sequencer.md §3).

Each function returns the ``full_message`` dict that eth-account's
``Account.sign_typed_data(key, full_message=...)`` (or any EIP-712 wallet,
``eth_signTypedData_v4``) signs; the resulting 65-byte signature is what the
sequencer accepts. Integers are plain ints (uint64 fields may exceed 2^53:
JavaScript clients should pass them as strings or BigInts).
"""

from __future__ import annotations

from typing import Any

from state.context import ChainConfig
from state.eip712 import (
    CANCEL_TYPE,
    DOMAIN_NAME,
    DOMAIN_TYPE,
    DOMAIN_VERSION,
    ORDER_TYPE,
    WITHDRAW_TYPE,
)

__all__ = ["cancel_typed_data", "domain_data", "order_typed_data", "withdraw_typed_data"]


def _members(type_string: str) -> list[dict[str, str]]:
    """``Name(t1 a,t2 b)`` → ``[{"name": "a", "type": "t1"}, ...]``."""
    inner = type_string[type_string.index("(") + 1 : -1]
    return [
        {"name": name, "type": typ}
        for typ, name in (member.split(" ") for member in inner.split(","))
    ]


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def domain_data(chain: ChainConfig) -> dict[str, Any]:
    """The HFX domain: name "HFX", version "1", the L1 chain id and the rollup address."""
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain.chain_id,
        "verifyingContract": _hex(chain.rollup),
    }


def _full(chain: ChainConfig, type_string: str, message: dict[str, Any]) -> dict[str, Any]:
    primary = type_string[: type_string.index("(")]
    return {
        "types": {"EIP712Domain": _members(DOMAIN_TYPE), primary: _members(type_string)},
        "primaryType": primary,
        "domain": domain_data(chain),
        "message": message,
    }


def order_typed_data(
    chain: ChainConfig, trader: bytes, market: int, is_buy: bool, price: int, size: int,
    flags: int, expiry: int, salt: int,
) -> dict[str, Any]:
    """``Order(address trader,uint8 market,bool isBuy,uint64 price,uint64 size,uint8 flags,uint64 expiry,uint64 salt)``."""
    return _full(chain, ORDER_TYPE, {
        "trader": _hex(trader), "market": market, "isBuy": is_buy, "price": price,
        "size": size, "flags": flags, "expiry": expiry, "salt": salt,
    })


def cancel_typed_data(chain: ChainConfig, trader: bytes, order_hash: bytes) -> dict[str, Any]:
    """``Cancel(address trader,bytes32 orderHash)``."""
    return _full(chain, CANCEL_TYPE, {"trader": _hex(trader), "orderHash": _hex(order_hash)})


def withdraw_typed_data(
    chain: ChainConfig, trader: bytes, recipient: bytes, amount: int, nonce: int
) -> dict[str, Any]:
    """``Withdraw(address trader,address recipient,uint64 amount,uint64 nonce)``."""
    return _full(chain, WITHDRAW_TYPE, {
        "trader": _hex(trader), "recipient": _hex(recipient), "amount": amount, "nonce": nonce,
    })
