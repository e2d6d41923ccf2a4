"""Typed, cached access to the state's leaves for the STF (docs/stf.md §4).

A view reads leaf bytes from a source (the committed trie, an overlay, or a
plain dict), keeps decoded values in memory and remembers which keys were
written. Nothing is encoded until :meth:`StateView.dirty_leaves` is asked for,
which is what the once-per-batch commit does. When ``record`` is set, every
key read or written is added to ``touched`` (the witness builder uses this).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from state.layout import (
    EMPTY_ORDER_STATE,
    GLOBAL_KEY,
    PARAMS_KEY,
    PRICES_KEY,
    Account,
    Global,
    OrderState,
    Params,
    Prices,
    Withdrawal,
    account_index_key,
    account_key,
    decode_account_index,
    encode_account_index,
    order_key,
    withdrawal_key,
)

T = TypeVar("T")


class LeafSource(Protocol):
    """Anything that returns a leaf's bytes by key (None when the key is absent)."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        ...


class _Encodable(Protocol):
    def encode(self) -> bytes: ...


class _RawIndex:
    """An account-index leaf value (a bare int has no encode())."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def encode(self) -> bytes:
        return encode_account_index(self.index)


_ABSENT: Any = object()


class StateView:
    """Decoded leaves over a :class:`LeafSource`, with a dirty set."""

    def __init__(self, source: LeafSource, record: bool = False) -> None:
        self.source = source
        self._cache: dict[bytes, Any] = {}
        self._dirty: dict[bytes, _Encodable] = {}
        self._account_keys: dict[int, bytes] = {}
        self.touched: set[bytes] | None = set() if record else None

    # ---------------------------------------------------------------- internals

    def _load(self, key: bytes, decode: Callable[[bytes], T]) -> T | None:
        if self.touched is not None:
            self.touched.add(key)
        value = self._cache.get(key, _ABSENT)
        if value is _ABSENT:
            raw = self.source.get(key)
            value = None if raw is None else decode(raw)
            self._cache[key] = value
        return value  # type: ignore[no-any-return]

    def _put(self, key: bytes, value: _Encodable, cached: object) -> None:
        if self.touched is not None:
            self.touched.add(key)
        self._cache[key] = cached
        self._dirty[key] = value

    def _akey(self, index: int) -> bytes:
        key = self._account_keys.get(index)
        if key is None:
            key = account_key(index)
            self._account_keys[index] = key
        return key

    # ---------------------------------------------------------------- readers

    def global_(self) -> Global:
        """The global leaf (always present after genesis)."""
        value = self._load(GLOBAL_KEY, Global.decode)
        if value is None:
            raise LookupError("state has no global leaf: not initialised by genesis")
        return value

    def params(self) -> Params:
        """The params leaf (config and markets)."""
        value = self._load(PARAMS_KEY, Params.decode)
        if value is None:
            raise LookupError("state has no params leaf: not initialised by genesis")
        return value

    def prices(self) -> Prices:
        """The prices leaf."""
        value = self._load(PRICES_KEY, Prices.decode)
        if value is None:
            raise LookupError("state has no prices leaf: not initialised by genesis")
        return value

    def account(self, index: int) -> Account | None:
        """Account ``index``, or None if it does not exist."""
        if not 0 < index < 1 << 32:
            return None
        return self._load(self._akey(index), Account.decode)

    def account_index(self, owner: bytes) -> int | None:
        """The index of the account owned by ``owner``, or None."""
        raw = self._load(account_index_key(owner), decode_account_index)
        return raw.index if isinstance(raw, _RawIndex) else raw

    def order_state(self, order_hash: bytes) -> OrderState:
        """Fill and cancel state of an order (empty when never touched)."""
        value = self._load(order_key(order_hash), OrderState.decode)
        return EMPTY_ORDER_STATE if value is None else value

    def withdrawal(self, withdrawal_id: int) -> Withdrawal | None:
        """Withdrawal record ``withdrawal_id``, or None."""
        return self._load(withdrawal_key(withdrawal_id), Withdrawal.decode)

    # ---------------------------------------------------------------- writers

    def set_global(self, value: Global) -> None:
        """Write the global leaf."""
        self._put(GLOBAL_KEY, value, value)

    def set_prices(self, value: Prices) -> None:
        """Write the prices leaf."""
        self._put(PRICES_KEY, value, value)

    def set_params(self, value: Params) -> None:
        """Write the params leaf (genesis only)."""
        self._put(PARAMS_KEY, value, value)

    def set_account(self, index: int, value: Account) -> None:
        """Write account ``index``."""
        self._put(self._akey(index), value, value)

    def set_account_index(self, owner: bytes, index: int) -> None:
        """Write the owner → index leaf."""
        self._put(account_index_key(owner), _RawIndex(index), index)

    def set_order_state(self, order_hash: bytes, value: OrderState) -> None:
        """Write an order's fill and cancel state."""
        self._put(order_key(order_hash), value, value)

    def set_withdrawal(self, withdrawal_id: int, value: Withdrawal) -> None:
        """Write a withdrawal record."""
        self._put(withdrawal_key(withdrawal_id), value, value)

    # ---------------------------------------------------------------- commit support

    def dirty_leaves(self) -> dict[bytes, bytes]:
        """Every key written since the last :meth:`clear_dirty`, with its encoded value."""
        return {key: value.encode() for key, value in self._dirty.items()}

    def clear_dirty(self) -> None:
        """Forget the dirty set (after the caller has committed it); keep the cache."""
        self._dirty.clear()
