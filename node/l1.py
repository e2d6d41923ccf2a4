"""The L1 client the node, the sequencer and the challenger share.

- transport: a web3 HTTP provider with a per-request timeout and retries with
  exponential backoff (and jitter) on transient failures only: connection
  refused or reset, timeouts, HTTP 5xx and 429. A JSON-RPC error answer
  (a revert, "nonce too low") is an answer, never retried here.
  ``eth_sendRawTransaction`` is retried too: the signed bytes are the same, so
  a second delivery is the same transaction (the node answers "already known",
  which :meth:`L1Client.send_raw` treats as success);
- confirmation depth: a block is *safe* once ``depth`` blocks sit on top of it,
  i.e. at or below ``head - depth`` (:meth:`L1Client.safe_head`);
- logs in bounded block ranges (:meth:`L1Client.get_logs`), halving a range
  the node refuses as too large;
- EIP-1559 fees from the node (:meth:`L1Client.suggest_fees`), gas estimates
  that turn reverts into :class:`l1_contracts.bindings.L1Error` reason codes,
  and raw sends. See docs/l1-runtime.md.
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_typing import URI
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

# l1_contracts sits outside mypy's strict scope (its compiler and titanoboa
# imports have no type information), so node/ and sequencer/ reach it through
# this one dynamically loaded handle, typed Any at the boundary.
bindings: Any = importlib.import_module("l1_contracts.bindings")
"""The module :mod:`l1_contracts.bindings`."""
L1Error: type[Exception] = bindings.L1Error
"""A contract call reverted (``.code`` is the reason code); :class:`l1_contracts.bindings.L1Error`."""

GWEI = 10**9


def l1_error(code: str, message: str = "") -> Exception:
    """A new :data:`L1Error`."""
    return L1Error(code, message)


def error_code(exc: BaseException) -> str:
    """The reason code of an :data:`L1Error` (``""`` for anything else)."""
    return str(getattr(exc, "code", ""))


# ---------------------------------------------------------------- retries

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``attempts`` tries in all, delays ``base · factor^i`` capped at ``max_delay``."""

    attempts: int = 6
    base_delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.2
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    def delays(self) -> Iterator[float]:
        """The sleeps between attempts (``attempts - 1`` of them)."""
        for i in range(max(self.attempts - 1, 0)):
            d = min(self.base_delay * self.factor**i, self.max_delay)
            yield d * (1 + random.uniform(-self.jitter, self.jitter))  # jitter, not cryptography

    def call(
        self,
        fn: Callable[[], T],
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> T:
        """``fn()``, tried again after each transient failure (:func:`is_transient`) while delays last.

        ``on_retry(exc, delay)`` runs before each sleep; a permanent failure, or
        the last transient one, is raised as it is.
        """
        delays = self.delays()
        while True:
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise
                if on_retry is not None:
                    on_retry(exc, delay)
                sleep(delay)


NO_RETRY = RetryPolicy(attempts=1)


def is_transient(exc: BaseException) -> bool:
    """Whether a transport failure may succeed when tried again."""
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status == 429
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError
    )


class RetryingHTTPProvider(HTTPProvider):
    """web3's HTTP provider with :class:`RetryPolicy` on transient failures, for every method."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.url = URI(url)
        self.retry = retry
        self._sleep = sleep
        self.retries = 0
        """Requests repeated so far (for monitoring and tests)."""

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        return self._post(request_data)

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Several calls in one JSON-RPC batch (one round trip, retried as a whole).

        Returns the raw response objects (``result`` or ``error``), in call order."""
        if not calls:
            return []
        data = self.encode_batch_rpc_request([(RPCEndpoint(m), p) for m, p in calls])
        raw = self.decode_rpc_response(self._post(data))
        if not isinstance(raw, list):
            raise ValueError(f"batch request refused: {raw}")
        replies = sorted((dict(r) for r in raw), key=lambda r: int(r.get("id") or 0))
        if len(replies) != len(calls):
            raise ValueError(f"{len(replies)} replies to {len(calls)} calls")
        return replies

    def _post(self, request_data: bytes) -> bytes:
        def post() -> bytes:
            reply: bytes = self._request_session_manager.make_post_request(
                self.url, request_data, **self.get_request_kwargs()
            )
            return reply

        return self.retry.call(post, sleep=self._sleep, on_retry=self._count_retry)

    def _count_retry(self, exc: Exception, delay: float) -> None:
        self.retries += 1


# ---------------------------------------------------------------- fees


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fee fields of one transaction (wei per gas)."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def as_tx(self) -> dict[str, int]:
        """The transaction fields."""
        return {"maxFeePerGas": self.max_fee_per_gas, "maxPriorityFeePerGas": self.max_priority_fee_per_gas}

    def bumped(self, percent: int) -> Fees:
        """Both fields raised by ``percent`` % (rounded up, at least +1 wei): a replacement's fees."""
        def up(v: int) -> int:
            return max(v + 1, -(-v * (100 + percent) // 100))

        return Fees(up(self.max_fee_per_gas), up(self.max_priority_fee_per_gas))

    def at_least(self, other: Fees) -> Fees:
        """Field-wise maximum."""
        return Fees(
            max(self.max_fee_per_gas, other.max_fee_per_gas),
            max(self.max_priority_fee_per_gas, other.max_priority_fee_per_gas),
        )


@dataclass(frozen=True)
class FeePolicy:
    """How fees are chosen: ``max_fee = base_fee · base_fee_multiplier + tip``.

    The tip is the node's ``eth_maxPriorityFeePerGas`` clamped to
    [``min_tip``, ``max_tip``]; a multiplier of 2 keeps a transaction
    includable through six consecutive full blocks (+12.5 % each).
    ``max_fee_cap`` bounds every fee field, replacements included.
    ``bump_percent`` is the raise of a replacement (nodes require ≥ 10 %)."""

    min_tip: int = GWEI // 10
    max_tip: int = 50 * GWEI
    base_fee_multiplier: int = 2
    max_fee_cap: int | None = None
    bump_percent: int = 20

    def cap(self, fees: Fees) -> Fees:
        """``fees`` bounded by :attr:`max_fee_cap`."""
        if self.max_fee_cap is None:
            return fees
        return Fees(
            min(fees.max_fee_per_gas, self.max_fee_cap),
            min(fees.max_priority_fee_per_gas, self.max_fee_cap),
        )


# ---------------------------------------------------------------- errors


class SendError(Exception):
    """The node refused a raw transaction; ``kind`` classifies why."""

    NONCE_TOO_LOW = "nonce_too_low"
    UNDERPRICED = "underpriced"
    FUNDS = "insufficient_funds"
    OTHER = "other"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _classify_send_error(message: str) -> str | None:
    """None when the message means the node already has this transaction."""
    m = message.lower()
    if "already known" in m or "known transaction" in m or "already imported" in m:
        return None
    if "nonce too low" in m or "nonce is too low" in m or "invalid nonce" in m:
        return SendError.NONCE_TOO_LOW
    if "underpriced" in m or "fee too low" in m or "max fee per gas less than block base fee" in m:
        return SendError.UNDERPRICED
    if "insufficient funds" in m:
        return SendError.FUNDS
    return SendError.OTHER


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, Mapping):
        return str(arg.get("message", arg))
    return str(arg)


# ---------------------------------------------------------------- the client


class L1Client:
    """One L1 JSON-RPC endpoint: web3 with retries, confirmation depth, bounded log queries.

    ``depth`` is the default confirmation depth (0: the head itself is
    "safe", fine for automining devnets; 12 or more on a public chain).
    ``log_range`` caps the blocks one ``eth_getLogs`` covers."""

    def __init__(
        self,
        url: str,
        *,
        depth: int = 0,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        log_range: int = 2_000,
        fee_policy: FeePolicy = FeePolicy(),
    ) -> None:
        if depth < 0 or log_range < 1:
            raise ValueError("depth must be >= 0 and log_range >= 1")
        self.url = url
        self.depth = depth
        self.log_range = log_range
        self.fee_policy = fee_policy
        self.provider = RetryingHTTPProvider(url, timeout=timeout, retry=retry)
        self.w3: Any = Web3(self.provider)
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        """The chain id (read once)."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    # -------------------------------------------------------- blocks and depth

    def head(self) -> int:
        """The latest block number."""
        return int(self.w3.eth.block_number)

    def block(self, number: int | str = "latest") -> Any:
        """A block (header and transaction hashes); None if the node has no such block."""
        from web3.exceptions import BlockNotFound

        try:
            return self.w3.eth.get_block(number)
        except BlockNotFound:
            return None

    def block_hash(self, number: int) -> bytes | None:
        """The canonical hash at height ``number``, or None above the head."""
        return self.block_hashes([number]).get(number)

    def block_hashes(self, numbers: Iterable[int], chunk: int = 200) -> dict[int, bytes | None]:
        """Canonical hashes of several heights, in batched round trips (None above the head)."""
        wanted = sorted(set(numbers))
        out: dict[int, bytes | None] = {}
        for i in range(0, len(wanted), chunk):
            part = wanted[i:i + chunk]
            replies = self.provider.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
            for n, reply in zip(part, replies, strict=True):
                block = reply.get("result")
                out[n] = bytes.fromhex(str(block["hash"])[2:]) if block else None
        return out

    def safe_head(self, depth: int | None = None, head: int | None = None) -> int:
        """The highest block with ``depth`` blocks on top of it (-1 when none yet)."""
        d = self.depth if depth is None else depth
        h = self.head() if head is None else head
        return h - d if h >= d else -1

    @staticmethod
    def confirmations(block_number: int, head: int) -> int:
        """Confirmations of a block at ``head``: 1 for the head itself, 0 above it."""
        return max(head - block_number + 1, 0)

    # -------------------------------------------------------- logs

    def get_logs(
        self,
        address: str | Sequence[str],
        topics: Sequence[Any] | None,
        from_block: int,
        to_block: int,
        *,
        max_range: int | None = None,
    ) -> list[Any]:
        """Logs of ``[from_block, to_block]`` in order, fetched ``max_range`` blocks at a time.

        A range the node refuses (too many results, range too large) is
        halved and retried; transport failures are retried by the provider."""
        step = max_range or self.log_range
        addr: str | list[str] = (
            Web3.to_checksum_address(address) if isinstance(address, str)
            else [Web3.to_checksum_address(a) for a in address]
        )
        out: list[Any] = []
        start = from_block
        while start <= to_block:
            end = min(start + step - 1, to_block)
            try:
                out.extend(self.w3.eth.get_logs({
                    "address": addr, "topics": list(topics) if topics else None,
                    "fromBlock": start, "toBlock": end,
                }))
            except Exception as exc:
                if end > start and _range_refused(exc):
                    step = max((end - start + 1) // 2, 1)
                    continue
                raise
            start = end + 1
        return out

    # -------------------------------------------------------- transactions

    def receipt(self, tx_hash: bytes) -> Any:
        """The receipt of ``tx_hash``, or None when it is not in a canonical block."""
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def transaction(self, tx_hash: bytes) -> Any:
        """The transaction (pending or mined), or None when the node does not know it."""
        from web3.exceptions import TransactionNotFound

        try:
            return self.w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return None

    def nonce(self, address: str, block: str = "pending") -> int:
        """The account's next nonce (``pending`` counts the pool's transactions)."""
        return int(self.w3.eth.get_transaction_count(address, block))

    def suggest_fees(self, policy: FeePolicy | None = None) -> Fees:
        """EIP-1559 fees from the latest base fee and the node's suggested tip (:class:`FeePolicy`)."""
        p = policy or self.fee_policy
        base = int(self.block("latest").get("baseFeePerGas", 0) or 0)
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # a node without eth_maxPriorityFeePerGas
            tip = p.min_tip
        tip = min(max(tip, p.min_tip), p.max_tip)
        return p.cap(Fees(base * p.base_fee_multiplier + tip, tip))

    def estimate_gas(self, tx: Mapping[str, Any]) -> int:
        """``eth_estimateGas``; a revert raises :class:`L1Error` with the contract's reason code."""
        from web3.exceptions import ContractLogicError

        try:
            return int(self.w3.eth.estimate_gas(dict(tx)))
        except ContractLogicError as exc:
            raise l1_error(bindings.revert_code(exc), str(exc)) from exc

    def call(self, tx: Mapping[str, Any], block: int | str | bytes = "latest") -> bytes:
        """``eth_call`` at ``block`` (a number, a tag or a block hash); a revert raises :class:`L1Error`."""
        from web3.exceptions import ContractLogicError

        try:
            return bytes(self.w3.eth.call(dict(tx), block))
        except ContractLogicError as exc:
            raise l1_error(bindings.revert_code(exc), str(exc)) from exc

    def send_raw(self, raw: bytes, tx_hash: bytes) -> bytes:
        """Broadcast a signed transaction; returns its hash.

        "already known" counts as sent; other refusals raise :class:`SendError`."""
        try:
            return bytes(self.w3.eth.send_raw_transaction(raw))
        except Exception as exc:
            if is_transient(exc):
                raise
            kind = _classify_send_error(_message(exc))
            if kind is None:
                return tx_hash
            raise SendError(kind, _message(exc)) from exc

    def sign_and_send(self, account: Any, tx: Mapping[str, Any]) -> bytes:
        """Sign ``tx`` (complete: nonce, gas, fees, chainId) with ``account`` and broadcast it."""
        signed = account.sign_transaction(dict(tx))
        return self.send_raw(bytes(signed.raw_transaction), bytes(signed.hash))


def _range_refused(exc: BaseException) -> bool:
    m = _message(exc).lower()
    return any(s in m for s in (
        "too many", "range", "limit exceeded", "query returned more than", "response size",
    ))


__all__ = [
    "GWEI", "NO_RETRY", "FeePolicy", "Fees", "L1Client", "L1Error", "RetryPolicy",
    "RetryingHTTPProvider", "SendError", "bindings", "error_code", "is_transient", "l1_error",
]
