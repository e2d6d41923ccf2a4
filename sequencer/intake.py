"""Intake: requests in, typed commands out, every refusal a named error (docs/sequencer.md §2).

Two layers:

* **Parsing** (:func:`parse_order`, :func:`parse_cancel`, :func:`parse_withdraw`)
  turns JSON-shaped parameters (hex strings, integers or decimal strings,
  booleans) into typed submissions. It checks types and lengths only
  (``BAD_FIELD``).
* **Validation** (:func:`validate_order`, :func:`validate_cancel`,
  :func:`validate_withdraw`) checks a submission against the protocol bounds
  (docs/stf.md §1.3), the market parameters and the state, and returns a
  command the exchange core executes. Signatures are EIP-712 digests
  recovered with EIP-2 low-s (``state.eip712.recover_signer``); the signer must
  be the account's owner.

Every refusal raises :class:`IntakeError` with a stable ``code`` string, and
nothing has changed when it is raised. Codes that name an STF outcome are the
STF's code names (docs/stf.md §6), e.g. ``INSUFFICIENT_MARGIN``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from state.constants import (
    AMOUNT_LIMIT,
    FLAG_FOK,
    FLAG_IOC,
    FLAG_POST_ONLY,
    FLAGS_DEFINED,
    KIND_PERP,
    PRICE_LIMIT,
    SIZE_LIMIT,
    U64_LIMIT,
)
from state.eip712 import cancel_digest, recover_signer
from state.layout import Account, Params, Prices
from state.signing import order_hash
from state.txs import ORDER_ENTRY_SIZE, SIGNATURE_SIZE, OrderBody, SignedOrder, decode_order_entry
from state.view import StateView

__all__ = [
    "CancelCommand",
    "CancelSubmission",
    "IntakeError",
    "OrderCommand",
    "OrderSubmission",
    "RecoveredSigner",
    "WithdrawSubmission",
    "parse_cancel",
    "parse_order",
    "parse_withdraw",
    "prepare_recovery",
    "validate_cancel",
    "validate_order",
    "validate_withdraw",
]

ACCOUNT_INDEX_LIMIT = 1 << 32
ZERO_ADDRESS = b"\x00" * 20


@mypyc_attr(native_class=False)
class IntakeError(Exception):
    """A refused request: ``code`` is stable (clients and the RPC layer match on it)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code


# ============================================================================ submissions


@dataclass(frozen=True, slots=True)
class OrderSubmission:
    """An order as a client sends it: the signed fields and the 65-byte signature.

    The trader is named by ``account`` (the 104-byte entry form) or by its
    ``trader`` address (the field form, as signed in EIP-712), or both (they
    must agree). ``market_order`` is not signed: it asks for market-order
    handling of the remainder (docs/matching.md §3).
    """

    account: int | None
    trader: bytes | None
    market: int
    is_buy: bool
    price: int
    size: int
    flags: int
    expiry: int
    salt: int
    signature: bytes
    market_order: bool = False
    entry: bytes | None = None
    """The 104-byte entry the fields were parsed from, if any (set by :meth:`from_entry`;
    when set, it is what is validated and posted)."""
    decoded: SignedOrder | None = None
    """That entry, decoded (saves building it again)."""

    @staticmethod
    def from_entry(entry: bytes, *, market_order: bool = False) -> OrderSubmission:
        """A submission from a 104-byte order-table entry (docs/stf.md §5.2)."""
        order = decode_order_entry(entry)
        if order is None:
            raise IntakeError("BAD_FIELD", "an order entry is 104 bytes with is_buy 0 or 1")
        b = order.body
        return OrderSubmission(
            b.account, None, b.market, b.is_buy, b.price, b.size, b.flags, b.expiry, b.salt,
            order.signature, market_order, bytes(entry), order,
        )


@dataclass(frozen=True, slots=True)
class CancelSubmission:
    """A signed ``Cancel(trader, orderHash)``; ``entry`` (the order's 104 bytes) is needed
    only for an order the sequencer no longer holds (docs/sequencer.md §5)."""

    order_hash: bytes
    signature: bytes
    entry: bytes | None = None


@dataclass(frozen=True, slots=True)
class WithdrawSubmission:
    """A signed ``Withdraw(trader, recipient, amount, nonce)`` of an account's collateral."""

    account: int | None
    trader: bytes | None
    recipient: bytes
    amount: int
    nonce: int
    signature: bytes


# ============================================================================ commands


@dataclass(slots=True, unsafe_hash=True)
class OrderCommand:
    """A validated order: its table entry, EIP-712 digest (its id) and owner."""

    order: SignedOrder
    entry: bytes
    digest: bytes
    owner: bytes
    market_order: bool

    # Written out, not generated: mypyc compiles it (docs/compiled-state.md).
    def __init__(
        self, order: SignedOrder, entry: bytes, digest: bytes, owner: bytes, market_order: bool,
    ) -> None:
        self.order = order
        self.entry = entry
        self.digest = digest
        self.owner = owner
        self.market_order = market_order


class RecoveredSigner:
    """An order's signer, recovered ahead of validation (``sequencer.recovery``).

    Made by :func:`prepare_recovery` from the order's body, its account's owner
    and their EIP-712 digest; ``signer`` is filled in (and ``ready`` set) once
    the signature is recovered. :func:`validate_order` uses it only for exactly
    this body object, owner, digest and signature; otherwise it computes and
    recovers them itself."""

    __slots__ = ("body", "owner", "digest", "signature", "signer", "ready")

    def __init__(self, body: OrderBody, owner: bytes, digest: bytes, signature: bytes) -> None:
        self.body = body
        self.owner = owner
        self.digest = digest
        self.signature = signature
        self.signer: bytes | None = None
        self.ready = False


@dataclass(frozen=True, slots=True)
class CancelCommand:
    """A cancel with the order it names resolved (``order`` is None when only the
    digest is known, which is enough for an order the engine holds)."""

    order_hash: bytes
    signature: bytes
    order: SignedOrder | None
    owner: bytes
    account: int


# ============================================================================ parsing


def _field(params: Mapping[str, object], name: str) -> object:
    if name not in params:
        raise IntakeError("BAD_FIELD", f"missing field {name!r}")
    return params[name]


def _int(params: Mapping[str, object], name: str, default: int | None = None) -> int:
    """A non-negative integer: a JSON number, a decimal string or a 0x-hex string."""
    if default is not None and name not in params:
        return default
    value = _field(params, name)
    if isinstance(value, bool):
        raise IntakeError("BAD_FIELD", f"{name} must be an integer")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str):
        try:
            out = int(value, 16) if value[:2] in ("0x", "0X") else int(value, 10)
        except ValueError:
            raise IntakeError("BAD_FIELD", f"{name} is not an integer") from None
    else:
        raise IntakeError("BAD_FIELD", f"{name} must be an integer")
    if out < 0:
        raise IntakeError("BAD_FIELD", f"{name} must not be negative")
    return out


def _bool(params: Mapping[str, object], name: str, default: bool | None = None) -> bool:
    if default is not None and name not in params:
        return default
    value = _field(params, name)
    if not isinstance(value, bool):
        raise IntakeError("BAD_FIELD", f"{name} must be a boolean")
    return value


def hex_bytes(value: object, size: int | None, name: str) -> bytes:
    """``0x``-prefixed hex (or raw bytes) of exactly ``size`` bytes (any size if None)."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raise IntakeError("BAD_FIELD", f"{name} is not hex") from None
    else:
        raise IntakeError("BAD_FIELD", f"{name} must be 0x-prefixed hex")
    if size is not None and len(raw) != size:
        raise IntakeError("BAD_FIELD", f"{name} must be {size} bytes")
    return raw


def _trader_or_account(params: Mapping[str, object]) -> tuple[int | None, bytes | None]:
    account = _int(params, "account") if "account" in params else None
    trader = hex_bytes(params["trader"], 20, "trader") if "trader" in params else None
    if account is None and trader is None:
        raise IntakeError("BAD_FIELD", "name the trader by 'trader' (address) or 'account' (index)")
    return account, trader


def parse_order(params: Mapping[str, object]) -> OrderSubmission:
    """Parse ``{"entry": "0x…104 bytes"}`` or the field form
    ``{"trader"|"account", "market", "isBuy", "price", "size", "flags", "expiry",
    "salt", "signature"}``; both may carry ``"marketOrder": bool``."""
    market_order = _bool(params, "marketOrder", False)
    if "entry" in params:
        entry = hex_bytes(params["entry"], ORDER_ENTRY_SIZE, "entry")
        return OrderSubmission.from_entry(entry, market_order=market_order)
    account, trader = _trader_or_account(params)
    return OrderSubmission(
        account, trader, _int(params, "market"), _bool(params, "isBuy"), _int(params, "price"),
        _int(params, "size"), _int(params, "flags", 0), _int(params, "expiry"),
        _int(params, "salt"), hex_bytes(_field(params, "signature"), SIGNATURE_SIZE, "signature"),
        market_order,
    )


def parse_cancel(params: Mapping[str, object]) -> CancelSubmission:
    """Parse ``{"orderHash", "signature", "entry"?}``."""
    entry = params.get("entry")
    return CancelSubmission(
        hex_bytes(_field(params, "orderHash"), 32, "orderHash"),
        hex_bytes(_field(params, "signature"), SIGNATURE_SIZE, "signature"),
        None if entry is None else hex_bytes(entry, ORDER_ENTRY_SIZE, "entry"),
    )


def parse_withdraw(params: Mapping[str, object]) -> WithdrawSubmission:
    """Parse ``{"trader"|"account", "recipient", "amount", "nonce", "signature"}``."""
    account, trader = _trader_or_account(params)
    return WithdrawSubmission(
        account, trader, hex_bytes(_field(params, "recipient"), 20, "recipient"),
        _int(params, "amount"), _int(params, "nonce"),
        hex_bytes(_field(params, "signature"), SIGNATURE_SIZE, "signature"),
    )


# ============================================================================ validation


def resolve_account(view: StateView, account: int | None, trader: bytes | None) -> tuple[int, Account]:
    """The account named by index and/or owner address (``UNKNOWN_ACCOUNT``, ``BAD_FIELD``)."""
    if account is None:
        if trader is None:
            raise IntakeError("BAD_FIELD", "no trader")
        index = view.account_index(trader)
        if index is None:
            raise IntakeError("UNKNOWN_ACCOUNT", "no account is owned by this trader")
        account = index
    if account >= ACCOUNT_INDEX_LIMIT:
        raise IntakeError("BAD_FIELD", "account index beyond u32")
    acct = view.account(account)
    if acct is None:
        raise IntakeError("UNKNOWN_ACCOUNT", f"no account {account}")
    if trader is not None and trader != acct.owner:
        raise IntakeError("BAD_FIELD", "trader is not the owner of the account")
    return account, acct


def check_order_fields(
    sub: OrderSubmission, params: Params, prices: Prices, now: int
) -> None:
    """The static and market checks of an order, cheapest first (no signature, no state)."""
    n_markets = len(params.markets)
    if sub.market >= n_markets:
        raise IntakeError("UNKNOWN_MARKET", f"market {sub.market} does not exist")
    if sub.flags > 0xFF:
        raise IntakeError("BAD_FIELD", "flags is a u8")
    if sub.flags & ~FLAGS_DEFINED:
        raise IntakeError("BAD_FLAGS", "flag bits 4-7 must be 0")
    if sub.flags & FLAG_POST_ONLY and (sub.market_order or sub.flags & (FLAG_IOC | FLAG_FOK)):
        raise IntakeError("BAD_FLAGS", "post-only cannot be IOC, FOK or a market order")
    if not 0 < sub.price < PRICE_LIMIT:
        raise IntakeError("BAD_PRICE", f"price must be in [1, 2^48), got {sub.price}")
    if not 0 < sub.size < SIZE_LIMIT:
        raise IntakeError("BAD_SIZE", f"size must be in [1, 2^40), got {sub.size}")
    if sub.expiry >= U64_LIMIT or sub.salt >= U64_LIMIT:
        raise IntakeError("BAD_FIELD", "expiry and salt are u64")
    market = params.markets[sub.market]
    if sub.price % market.tick:
        raise IntakeError("TICK_SIZE", f"price must be a multiple of {market.tick}")
    if sub.size % market.lot:
        raise IntakeError("LOT_SIZE", f"size must be a multiple of {market.lot}")
    if now >= sub.expiry:
        raise IntakeError("ORDER_EXPIRED", "the order's expiry has passed")
    if prices.markets[sub.market].settled:
        raise IntakeError("MARKET_SETTLED", "the market has settled")
    if market.kind != KIND_PERP and now >= market.expiry:
        raise IntakeError("MARKET_EXPIRED", "the option has expired")


def _order_body(sub: OrderSubmission, index: int) -> OrderBody:
    """The signed body of ``sub`` for account ``index`` (the parsed entry's own, when it has one)."""
    parsed = sub.decoded if sub.entry is not None and sub.account == index else None
    if parsed is not None:
        return parsed.body
    return OrderBody(index, sub.market, sub.is_buy, sub.flags, sub.price, sub.size, sub.expiry, sub.salt)


def prepare_recovery(sub: OrderSubmission, view: StateView, domain: bytes) -> RecoveredSigner | None:
    """The digest of an order whose signer is to be recovered ahead of validation, or None
    when :func:`validate_order` will refuse it before its signature matters (unknown
    account, malformed fields). Reads the state; changes nothing."""
    if len(sub.signature) != SIGNATURE_SIZE:  # a job is digest ‖ 65-byte signature
        return None
    try:
        index, account = resolve_account(view, sub.account, sub.trader)
        body = _order_body(sub, index)
        return RecoveredSigner(body, account.owner, order_hash(domain, account.owner, body), sub.signature)
    except (IntakeError, ValueError, OverflowError, TypeError):  # refused, or out of range: validation names it
        return None


def validate_order(
    sub: OrderSubmission,
    view: StateView,
    domain: bytes,
    now: int,
    known: Callable[[bytes], str | None],
    recovered: RecoveredSigner | None = None,
) -> OrderCommand:
    """Check an order and recover its signer; ``known(digest)`` names a duplicate.

    Order of checks: account, fields and market (:func:`check_order_fields`),
    duplicate (by EIP-712 digest), signature. The margin pre-check is the
    core's (it runs the STF, docs/sequencer.md §2). ``recovered`` (from
    :func:`prepare_recovery`) saves the digest and the recovery when it was
    made for this very body, owner and signature.
    """
    if sub.account is not None and sub.account >= ACCOUNT_INDEX_LIMIT:
        raise IntakeError("BAD_FIELD", "account index beyond u32")
    if len(sub.signature) != SIGNATURE_SIZE:
        raise IntakeError("BAD_FIELD", "a signature is 65 bytes")
    index, account = resolve_account(view, sub.account, sub.trader)
    check_order_fields(sub, view.params(), view.prices(), now)
    body = _order_body(sub, index)
    owner = account.owner
    if recovered is not None and not (
        recovered.ready and recovered.body is body and recovered.owner == owner
        and recovered.signature == sub.signature
    ):
        recovered = None
    digest = order_hash(domain, owner, body) if recovered is None else recovered.digest
    code = known(digest)
    if code is not None:
        raise IntakeError(code, "this order (same EIP-712 digest) was already submitted")
    signer = recover_signer(digest, sub.signature) if recovered is None else recovered.signer
    if signer != owner:
        raise IntakeError("BAD_SIGNATURE", "the signature does not recover to the account owner")
    if sub.entry is not None and sub.decoded is not None and body is sub.decoded.body:
        return OrderCommand(sub.decoded, sub.entry, digest, owner, sub.market_order)
    order = SignedOrder(body, sub.signature)
    return OrderCommand(order, order.encode(), digest, owner, sub.market_order)


def validate_cancel(
    sub: CancelSubmission,
    view: StateView,
    domain: bytes,
    owner_of: Callable[[bytes], tuple[int, bytes, SignedOrder | None] | None],
) -> CancelCommand:
    """Resolve the order a cancel names: from the sequencer's memory (``owner_of``) or
    from the supplied entry, whose digest must be ``order_hash``. The cancel's own
    signature is checked by the caller (or by the STF when a cancel step is posted)."""
    if len(sub.order_hash) != 32 or len(sub.signature) != SIGNATURE_SIZE:
        raise IntakeError("BAD_FIELD", "orderHash is 32 bytes, signature 65")
    held = owner_of(sub.order_hash)
    if held is not None:
        account, owner, order = held
        return CancelCommand(sub.order_hash, sub.signature, order, owner, account)
    if sub.entry is None:
        raise IntakeError("UNKNOWN_ORDER", "order not known here: send its entry with the cancel")
    order = decode_order_entry(sub.entry)
    if order is None:
        raise IntakeError("BAD_FIELD", "malformed order entry")
    index, acct = resolve_account(view, order.body.account, None)
    if order_hash(domain, acct.owner, order.body) != sub.order_hash:
        raise IntakeError("BAD_FIELD", "the entry's digest is not orderHash")
    return CancelCommand(sub.order_hash, sub.signature, order, acct.owner, index)


def cancel_signed(cmd: CancelCommand, domain: bytes) -> bool:
    """Whether the cancel's signature recovers to the order's owner (EIP-712 ``Cancel``)."""
    return recover_signer(cancel_digest(domain, cmd.owner, cmd.order_hash), cmd.signature) == cmd.owner


def validate_withdraw(sub: WithdrawSubmission, view: StateView) -> tuple[int, Account]:
    """Bounds of a withdrawal and its account; nonce and signature are the STF's checks."""
    if len(sub.signature) != SIGNATURE_SIZE or len(sub.recipient) != 20:
        raise IntakeError("BAD_FIELD", "recipient is 20 bytes, signature 65")
    if sub.nonce >= U64_LIMIT:
        raise IntakeError("BAD_FIELD", "nonce is a u64")
    if not 0 < sub.amount < AMOUNT_LIMIT:
        raise IntakeError("BAD_AMOUNT", "amount must be in [1, 2^63)")
    if sub.recipient == ZERO_ADDRESS:
        raise IntakeError("BAD_RECIPIENT", "recipient is the zero address")
    index, account = resolve_account(view, sub.account, sub.trader)
    if sub.nonce < account.nonce:
        raise IntakeError("NONCE_REPLAYED", f"nonce {sub.nonce} was used; next is {account.nonce}")
    if sub.nonce > account.nonce:
        raise IntakeError("BAD_NONCE", f"the account's next nonce is {account.nonce}")
    return index, account
