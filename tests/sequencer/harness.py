"""Helpers for the sequencer tests: a genesis world, funded traders, signed requests, replays."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sequencer.exchange import ClosedBatch, Exchange, ExchangeConfig
from sequencer.intake import CancelSubmission, OrderSubmission, WithdrawSubmission
from state.batch import Batch
from state.context import BatchContext, L1Deposit, L1Forced, ListQueues
from state.db import StateDB
from state.eip712 import cancel_digest, sign_digest, withdraw_digest
from state.signing import order_hash, sign_order
from state.txs import OrderBody
from tests.world import BTC, BTC_PERP, ETH, ETH_CALL, ETH_PERP, ETH_PUT, NEVER, T0, USDC, World

__all__ = [
    "BTC_PERP", "ETH_PERP", "NEVER", "T0", "USDC", "Desk", "replay_roots",
]

PRICES = {ETH_PERP: 3_000_000, BTC_PERP: 6_000_000, ETH_CALL: 40_000, ETH_PUT: 30_000}
SPOTS = {ETH: 3_000_000, BTC: 6_000_000}
IVS = {ETH_CALL: 600_000, ETH_PUT: 650_000}


@dataclass
class Desk:
    """An exchange over the test world's genesis, with traders and signing helpers."""

    ex: Exchange
    world: World
    now: int = T0 + 10
    index: dict[str, int] = field(default_factory=dict)
    salts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @staticmethod
    def create(
        directory: Path | None = None, config: ExchangeConfig | None = None,
        traders: Sequence[str] = ("maker", "taker"), amount: int = 100_000 * USDC,
        prices: bool = True, world: World | None = None,
    ) -> Desk:
        world = world or World()
        if directory is None:
            ex = Exchange.in_memory(world.chain, dict(world.leaves), config=config)
        else:
            ex = Exchange.open(directory, world.chain, dict(world.leaves), config=config, sync=False)
        desk = Desk(ex, world)
        if traders:
            desk.fund(traders, amount)
        if prices:
            desk.prices()
        return desk

    def reopen(self, directory: Path, config: ExchangeConfig | None = None) -> Desk:
        """Close this exchange and recover a new one from ``directory``."""
        self.ex.close()
        ex = Exchange.open(directory, self.world.chain, dict(self.world.leaves), config=config, sync=False)
        return Desk(ex, self.world, self.now, dict(self.index), self.salts)

    # ---------------------------------------------------------------- actors

    def key(self, name: str) -> bytes:
        return self.world.key(name)

    def address(self, name: str) -> bytes:
        return self.world.address(name)

    def fund(self, names: Sequence[str], amount: int) -> None:
        deposits = [L1Deposit(self.address(n), amount) for n in names]
        self.ex.add_l1_items(deposits, [], self.now)
        for n in names:
            idx = self.ex.account_index(self.address(n))
            assert idx is not None
            self.index[n] = idx

    def prices(self, marks: dict[int, int] | None = None, spots: dict[int, int] | None = None) -> None:
        """Publish an oracle update timestamped ``now`` (advancing the clock by a second)."""
        self.now += 1
        step = self.world.oracle_step(
            marks or PRICES, spots or SPOTS, IVS, timestamp=self.now
        )
        self.ex.submit_oracle(step, self.now)

    # ---------------------------------------------------------------- requests

    def body(
        self, name: str, market: int, is_buy: bool, price: int, size: int, flags: int = 0,
        expiry: int = NEVER,
    ) -> OrderBody:
        return OrderBody(self.index[name], market, is_buy, flags, price, size, expiry, next(self.salts))

    def entry(self, name: str, body: OrderBody) -> bytes:
        return sign_order(self.key(name), self.address(name), self.world.domain, body).encode()

    def order(
        self, name: str, market: int, is_buy: bool, price: int, size: int, flags: int = 0,
        expiry: int = NEVER, market_order: bool = False,
    ) -> OrderSubmission:
        body = self.body(name, market, is_buy, price, size, flags, expiry)
        return OrderSubmission.from_entry(self.entry(name, body), market_order=market_order)

    def state(self) -> tuple[object, ...]:
        """Everything a refused request must leave unchanged."""
        ex = self.ex
        ob = ex.open_batch
        books = tuple(
            (m, b, tuple((o.order.order_id, o.remaining) for o in ex.engine.book(m).orders(b)))
            for m in ex.engine.markets for b in (True, False)
        )
        return (
            ex.root, ex.next_batch_index, ex.clock, ex.view.dirty_leaves(), books,
            None if ob is None else (ob.timestamp, tuple(ob.steps), tuple(ob.table.entries)),
            dict(ex._seen), len(ex.pending_batches()),
        )

    def digest(self, name: str, sub: OrderSubmission) -> bytes:
        body = OrderBody(
            self.index[name], sub.market, sub.is_buy, sub.flags, sub.price, sub.size, sub.expiry,
            sub.salt,
        )
        return order_hash(self.world.domain, self.address(name), body)

    def place(self, name: str, market: int, is_buy: bool, price: int, size: int, **kw: object):  # type: ignore[no-untyped-def]
        sub = self.order(name, market, is_buy, price, size, **kw)  # type: ignore[arg-type]
        return self.ex.place_order(sub, self.now)

    def cancel(self, name: str, digest: bytes, entry: bytes | None = None) -> CancelSubmission:
        sig = sign_digest(self.key(name), cancel_digest(self.world.domain, self.address(name), digest))
        return CancelSubmission(digest, sig, entry)

    def withdrawal(self, name: str, amount: int, nonce: int, recipient: bytes | None = None) -> WithdrawSubmission:
        to = recipient or self.address(name)
        sig = sign_digest(
            self.key(name), withdraw_digest(self.world.domain, self.address(name), to, amount, nonce)
        )
        return WithdrawSubmission(self.index[name], None, to, amount, nonce, sig)


def replay_roots(world: World, batches: Sequence[ClosedBatch]) -> list[bytes]:
    """Replay ``batches`` from genesis, as a node does from L1 data: post roots, in order.

    Each batch is decoded from its bytes and applied by ``StateDB.apply_batch``
    with a context whose queues hold exactly the L1 items it consumes.
    """
    db = StateDB.in_memory()
    db.initialize(dict(world.leaves))
    deposits: list[L1Deposit] = []
    forced: list[L1Forced] = []
    roots = []
    for closed in batches:
        assert closed.pre_root == db.root
        assert len(deposits) == closed.deposit_start and len(forced) == closed.forced_start
        deposits.extend(closed.deposits)
        forced.extend(closed.forced)
        batch = Batch.decode(closed.encoded)
        assert batch.timestamp == closed.timestamp
        queues = ListQueues(list(deposits), list(forced))
        ctx = BatchContext.create(batch.timestamp, world.chain, queues, batch.orders)
        result = db.apply_batch(batch, ctx)
        assert result.receipts == list(closed.receipts)
        roots.append(result.post_root)
    return roots
