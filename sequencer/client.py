"""A small trader client of the sequencer's JSON-RPC API (docs/rpc.md).

:class:`TraderClient` (blocking) and :class:`AsyncTraderClient` (asyncio)
sign orders, cancels and withdrawals with eth-account
(``Account.sign_typed_data``) over the typed-data templates that
``hfx_chainInfo`` returns, and send them. Used by tests, demo traders and the
RPC benchmark.
"""

from __future__ import annotations

import copy
import itertools
import secrets
from typing import Any

from eth_account import Account

from node.rpc_client import RpcClient, SyncRpcClient
from sequencer.liquidator import AccountData
from sequencer.orders import GTC
from state.constants import FLAG_FOK, FLAG_IOC, FLAG_POST_ONLY, FLAG_REDUCE_ONLY

__all__ = [
    "FLAG_FOK", "FLAG_IOC", "FLAG_POST_ONLY", "FLAG_REDUCE_ONLY", "GTC", "AsyncTraderClient",
    "OperatorClient", "TraderClient",
]


def _key_hex(private_key: bytes | str) -> str:
    return private_key if isinstance(private_key, str) else "0x" + private_key.hex()


class _Signer:
    """Builds and signs the three request kinds from ``hfx_chainInfo``'s templates."""

    def __init__(self, private_key: bytes | str, chain_info: dict[str, Any]) -> None:
        self.account = Account.from_key(_key_hex(private_key))
        self.address = str(self.account.address).lower()
        self.chain_info = chain_info
        self._salts = itertools.count(secrets.randbits(40))

    def _sign(self, kind: str, message: dict[str, Any]) -> str:
        typed = copy.deepcopy(self.chain_info["typedData"][kind])
        typed["message"] = message
        signed = self.account.sign_typed_data(full_message=typed)
        return "0x" + bytes(signed.signature).hex()

    def order(
        self, market: int, is_buy: bool, price: int, size: int, *, flags: int = 0,
        expiry: int = GTC, salt: int | None = None, market_order: bool = False,
    ) -> dict[str, Any]:
        """The ``hfx_placeOrder`` params object of a signed order."""
        salt = next(self._salts) if salt is None else salt
        message = {
            "trader": self.address, "market": market, "isBuy": is_buy, "price": price,
            "size": size, "flags": flags, "expiry": expiry, "salt": salt,
        }
        order: dict[str, Any] = {
            **message, "price": str(price), "size": str(size), "expiry": str(expiry),
            "salt": str(salt), "signature": self._sign("order", message),
        }
        if market_order:
            order["marketOrder"] = True
        return order

    def cancel(self, order_hash: str) -> dict[str, Any]:
        """The ``hfx_cancelOrder`` params object."""
        sig = self._sign("cancel", {"trader": self.address, "orderHash": order_hash})
        return {"orderHash": order_hash, "signature": sig}

    def withdraw(self, amount: int, nonce: int, recipient: str | None = None) -> dict[str, Any]:
        """The ``hfx_withdraw`` params object."""
        to = (recipient or self.address).lower()
        message = {"trader": self.address, "recipient": to, "amount": amount, "nonce": nonce}
        return {
            "trader": self.address, "recipient": to, "amount": str(amount), "nonce": str(nonce),
            "signature": self._sign("withdraw", message),
        }


class TraderClient:
    """A blocking trader: ``TraderClient(url, private_key, chain_info=None)``.

    ``chain_info`` is ``hfx_chainInfo``'s result; it is fetched when omitted.
    Errors are :class:`node.rpc.RpcError` (e.g. code 1001 with
    ``data["reason"]``).
    """

    def __init__(
        self, url: str, private_key: bytes | str, chain_info: dict[str, Any] | None = None,
        *, timeout: float = 30.0,
    ) -> None:
        self.rpc = SyncRpcClient(url, timeout=timeout)
        info = chain_info if chain_info is not None else self.rpc.call("hfx_chainInfo")
        self.signer = _Signer(private_key, info)
        self.address = self.signer.address

    def call(self, method: str, params: Any = None) -> Any:
        """Any JSON-RPC call."""
        return self.rpc.call(method, params)

    def place_order(self, market: int, is_buy: bool, price: int, size: int, **kw: Any) -> dict[str, Any]:
        """Sign and place an order (``flags``, ``expiry``, ``salt``, ``market_order``)."""
        result: dict[str, Any] = self.rpc.call(
            "hfx_placeOrder", [self.signer.order(market, is_buy, price, size, **kw)]
        )
        return result

    def cancel(self, order_hash: str) -> dict[str, Any]:
        """Sign and send a cancel of ``order_hash``."""
        result: dict[str, Any] = self.rpc.call("hfx_cancelOrder", [self.signer.cancel(order_hash)])
        return result

    def withdraw(self, amount: int, nonce: int | None = None, recipient: str | None = None) -> dict[str, Any]:
        """Sign and send a withdrawal (nonce: the account's current one by default)."""
        if nonce is None:
            nonce = int(self.account()["nonce"])
        result: dict[str, Any] = self.rpc.call(
            "hfx_withdraw", [self.signer.withdraw(amount, nonce, recipient)]
        )
        return result

    def account(self) -> dict[str, Any]:
        """``hfx_getAccount`` of this trader."""
        result: dict[str, Any] = self.rpc.call("hfx_getAccount", [self.address])
        return result

    def close(self) -> None:
        """Close the HTTP session."""
        self.rpc.close()

    def __enter__(self) -> TraderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTraderClient:
    """The asyncio variant; create with ``await AsyncTraderClient.connect(url, key)``."""

    def __init__(self, rpc: RpcClient, private_key: bytes | str, chain_info: dict[str, Any]) -> None:
        self.rpc = rpc
        self.signer = _Signer(private_key, chain_info)
        self.address = self.signer.address

    @classmethod
    async def connect(
        cls, url: str, private_key: bytes | str, chain_info: dict[str, Any] | None = None
    ) -> AsyncTraderClient:
        """Open a client (fetching ``hfx_chainInfo`` when not given)."""
        rpc = RpcClient(url)
        info = chain_info if chain_info is not None else await rpc.call("hfx_chainInfo")
        return cls(rpc, private_key, info)

    async def call(self, method: str, params: Any = None) -> Any:
        """Any JSON-RPC call."""
        return await self.rpc.call(method, params)

    async def place_order(self, market: int, is_buy: bool, price: int, size: int, **kw: Any) -> dict[str, Any]:
        """Sign and place an order."""
        result: dict[str, Any] = await self.rpc.call(
            "hfx_placeOrder", [self.signer.order(market, is_buy, price, size, **kw)]
        )
        return result

    async def cancel(self, order_hash: str) -> dict[str, Any]:
        """Sign and send a cancel."""
        result: dict[str, Any] = await self.rpc.call("hfx_cancelOrder", [self.signer.cancel(order_hash)])
        return result

    async def withdraw(self, amount: int, nonce: int | None = None, recipient: str | None = None) -> dict[str, Any]:
        """Sign and send a withdrawal."""
        if nonce is None:
            nonce = int((await self.account())["nonce"])
        result: dict[str, Any] = await self.rpc.call(
            "hfx_withdraw", [self.signer.withdraw(amount, nonce, recipient)]
        )
        return result

    async def account(self) -> dict[str, Any]:
        """``hfx_getAccount`` of this trader."""
        result: dict[str, Any] = await self.rpc.call("hfx_getAccount", [self.address])
        return result

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self.rpc.close()


class OperatorClient:
    """A blocking client for the sequencer's non-trader writes and the reads liquidators need.

    ``submit_oracle(step, now)`` sends a signed oracle step (``hfx_submitOracle``; an
    :class:`sequencer.oracle_feeder.OracleSink`), ``get_accounts()`` pages through
    ``hfx_getAccounts`` and ``submit_liquidation(target, entry, size)`` sends
    ``hfx_liquidate`` (together a :class:`sequencer.liquidator.LiquidatorClient`).
    Refusals raise :class:`node.rpc.RpcError` (``data["reason"]``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.rpc = SyncRpcClient(url, timeout=timeout)

    def call(self, method: str, params: Any = None) -> Any:
        """Any JSON-RPC call."""
        return self.rpc.call(method, params)

    def chain_info(self) -> dict[str, Any]:
        """``hfx_chainInfo``."""
        result: dict[str, Any] = self.rpc.call("hfx_chainInfo")
        return result

    def risk_state(self) -> dict[str, Any]:
        """``hfx_getRiskState``: encoded params and prices, the insurance fund, the clock."""
        result: dict[str, Any] = self.rpc.call("hfx_getRiskState")
        return result

    def submit_oracle(self, step: bytes, now: int | None = None) -> dict[str, Any]:
        """``hfx_submitOracle`` (the sequencer applies it at its own clock; ``now`` is unused)."""
        result: dict[str, Any] = self.rpc.call("hfx_submitOracle", [{"step": "0x" + step.hex()}])
        return result

    def get_accounts(self) -> list[AccountData]:
        """Every account with positions (``hfx_getAccounts``, all pages)."""
        out: list[AccountData] = []
        start: int | None = 1
        while start is not None:
            page = self.rpc.call("hfx_getAccounts", {"from_index": start, "limit": 500})
            out.extend(AccountData.from_json(a) for a in page["accounts"])
            start = page["next"]
        return out

    def submit_liquidation(self, target: int, entry: bytes, size: int) -> dict[str, Any]:
        """``hfx_liquidate``."""
        result: dict[str, Any] = self.rpc.call(
            "hfx_liquidate", [{"target": target, "entry": "0x" + entry.hex(), "size": str(size)}]
        )
        return result

    def close(self) -> None:
        """Close the HTTP session."""
        self.rpc.close()
