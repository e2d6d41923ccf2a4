"""Everything the STF reads from outside the state, through one interface (docs/stf.md §3).

The node, the sequencer, the challenger and the witness builder all hand the
STF the same kind of context: the batch's timestamp and order table, the L1
chain configuration (chain id, rollup address, oracle key set) and read access
to the L1 bridge's deposit and forced-transaction queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mypy_extensions import mypyc_attr

from state.eip712 import domain_separator, order_digest, recover_signer
from state.layout import Account
from state.txs import SignedOrder, decode_order_entry


@dataclass(frozen=True, slots=True)
class L1Deposit:
    """One item of the bridge's deposit queue."""

    owner: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class L1Forced:
    """One item of the bridge's forced-transaction queue: an L2 payload and its L1 sender."""

    sender: bytes
    payload: bytes


class L1Queues(Protocol):
    """Read access to the bridge's queues, by 0-based queue position."""

    def deposit(self, index: int) -> L1Deposit | None:
        """The deposit at ``index``, or None past the end of the queue."""
        ...

    def forced(self, index: int) -> L1Forced | None:
        """The forced transaction at ``index``, or None past the end of the queue."""
        ...


@dataclass
class ListQueues:
    """In-memory queues (used by tests, and by nodes that mirror the L1 bridge)."""

    deposits: list[L1Deposit] = field(default_factory=list)
    forced_txs: list[L1Forced] = field(default_factory=list)

    def deposit(self, index: int) -> L1Deposit | None:
        """The deposit at ``index``, or None past the end of the queue."""
        return self.deposits[index] if 0 <= index < len(self.deposits) else None

    def forced(self, index: int) -> L1Forced | None:
        """The forced transaction at ``index``, or None past the end of the queue."""
        return self.forced_txs[index] if 0 <= index < len(self.forced_txs) else None


@dataclass(frozen=True)
class ChainConfig:
    """Per-deployment constants fixed on L1: the EIP-712 domain and the oracle key set."""

    chain_id: int
    rollup: bytes
    oracle_keys: frozenset[bytes]
    oracle_threshold: int

    @property
    def domain(self) -> bytes:
        """The EIP-712 domain separator of this deployment (computed once per deployment:
        a compiled class has no instance dictionary for ``cached_property``)."""
        key = (self.chain_id, self.rollup)
        domain = _DOMAINS.get(key)
        if domain is None:
            domain = _DOMAINS[key] = domain_separator(self.chain_id, self.rollup)
        return domain


_DOMAINS: dict[tuple[int, bytes], bytes] = {}
"""Domain separators by ``(chain_id, rollup)``: a pure function's results, kept."""


@dataclass(frozen=True, slots=True)
class SignatureJob:
    """One order signature to recover: which entry, the owner it must match, digest, signature."""

    ref: int
    owner: bytes
    digest: bytes
    signature: bytes


class AccountReader(Protocol):
    """Anything that returns accounts by index (a state view)."""

    def account(self, index: int) -> Account | None:
        """Account ``index``, or None."""
        ...


@mypyc_attr(allow_interpreted_subclasses=True)
class OrderTable:
    """A batch's order table, decoded lazily, with each signer recovered at most once."""

    def __init__(self, entries: Sequence[bytes], domain: bytes) -> None:
        self._entries = entries
        self._domain = domain
        self._decoded: dict[int, SignedOrder | None] = {}
        self._signed_entries: dict[tuple[int, bytes], tuple[bytes, bool]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ref: int) -> SignedOrder | None:
        """The decoded entry ``ref``, or None when out of range or malformed."""
        try:
            return self._decoded[ref]
        except KeyError:
            pass
        order = decode_order_entry(self._entries[ref]) if 0 <= ref < len(self._entries) else None
        self._decoded[ref] = order
        return order

    def signature_jobs(self, view: AccountReader) -> list[SignatureJob]:
        """The order signatures this batch will check, for recovery ahead of time.

        Covers every well-formed entry whose account already exists (an account's
        owner never changes, so the digest is final); entries of accounts created
        later in the batch are checked lazily. Feed the recovered addresses, in
        order, to :meth:`accept_recovered`.
        """
        jobs = []
        for ref in range(len(self._entries)):
            order = self.get(ref)
            if order is None:
                continue
            account = view.account(order.body.account)
            if account is None or (ref, account.owner) in self._signed_entries:
                continue
            b = order.body
            digest = order_digest(
                self._domain, account.owner, b.market, b.is_buy, b.price, b.size, b.flags,
                b.expiry, b.salt,
            )
            jobs.append(SignatureJob(ref, account.owner, digest, order.signature))
        return jobs

    def accept_recovered(self, jobs: Sequence[SignatureJob], signers: Sequence[bytes | None]) -> None:
        """Record signers recovered (by any means) for :meth:`signature_jobs`' jobs."""
        if len(jobs) != len(signers):
            raise ValueError("one recovered signer per job")
        for job, signer in zip(jobs, signers, strict=True):
            self._signed_entries[(job.ref, job.owner)] = (job.digest, signer == job.owner)

    def digest_and_check(self, ref: int, order: SignedOrder, owner: bytes) -> tuple[bytes, bool]:
        """The order's EIP-712 digest with ``owner`` as trader, and whether ``owner`` signed it."""
        key = (ref, owner)
        hit = self._signed_entries.get(key)
        if hit is None:
            b = order.body
            digest = order_digest(
                self._domain, owner, b.market, b.is_buy, b.price, b.size, b.flags, b.expiry, b.salt
            )
            hit = (digest, recover_signer(digest, order.signature) == owner)
            self._signed_entries[key] = hit
        return hit


@dataclass
class BatchContext:
    """The context of one batch: its time, its order table and the L1 view."""

    time: int
    chain: ChainConfig
    queues: L1Queues
    orders: OrderTable

    @staticmethod
    def create(
        time: int, chain: ChainConfig, queues: L1Queues, orders: Sequence[bytes]
    ) -> BatchContext:
        """Build a context, precomputing the domain separator once."""
        return BatchContext(time, chain, queues, OrderTable(orders, chain.domain))
