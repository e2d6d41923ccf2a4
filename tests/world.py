"""A small in-memory HFX world for tests: genesis, actors, signed steps, one batch at a time.

Leaves live in a plain dict (the trie is tested separately and against this);
each ``run`` applies one batch through the real STF and folds the dirty leaves
back into the dict, as the once-per-batch commit does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from state.constants import KIND_CALL, KIND_PERP, KIND_PUT, ORACLE_UNDERLYING_BASE
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.eip712 import address_of
from state.genesis import genesis_leaves
from state.keccak import keccak256
from state.layout import Account, Config, Global, Market, Prices
from state.signing import order_hash, sign_order, signed_oracle
from state.transition import Receipt, apply_step
from state.txs import OracleEntry, OrderBody, encode_deposit
from state.view import StateView

T0 = 1_700_000_000
DAY = 86_400
NEVER = (1 << 64) - 1

ETH_PERP, BTC_PERP, ETH_CALL, ETH_PUT = 0, 1, 2, 3
ETH, BTC = 0, 1
USDC = 1_000_000


def default_config() -> Config:
    """Fees 5/1 bps, penalty 150 bps (bonus 50), buffer 100 bps, funding cap 75 bps, 60 s oracle."""
    return Config(
        taker_fee_bps=5, maker_rebate_bps=1, liquidation_penalty_bps=150,
        liquidator_bonus_bps=50, sync_buffer_bps=100, funding_cap_bps=75, max_oracle_age=60,
    )


def default_markets() -> list[Market]:
    """ETH-PERP, BTC-PERP, an ETH 3200 call and an ETH 2800 put expiring a week after T0."""
    expiry = T0 + 7 * DAY
    return [
        Market(KIND_PERP, ETH, 1000, 500, 1_000, 1, 0, 0, 3),
        Market(KIND_PERP, BTC, 1000, 500, 1_000, 1, 0, 0, 4),
        Market(KIND_CALL, ETH, 1500, 1000, 100, 1, 3_200_000, expiry, 3),
        Market(KIND_PUT, ETH, 1500, 1000, 100, 1, 2_800_000, expiry, 3),
    ]


class DictSource:
    """A leaf source over a plain dict."""

    def __init__(self, leaves: dict[bytes, bytes]) -> None:
        self.leaves = leaves

    def get(self, key: bytes) -> bytes | None:
        return self.leaves.get(key)


@dataclass
class World:
    """Genesis plus helpers to run batches against the real STF."""

    config: Config = field(default_factory=default_config)
    markets: list[Market] = field(default_factory=default_markets)
    time: int = T0
    oracle_threshold: int = 1

    def __post_init__(self) -> None:
        self.leaves = genesis_leaves(self.config, self.markets, self.time)
        self.queues = ListQueues()
        self.oracle_keys = [keccak256(b"oracle-%d" % i) for i in range(3)]
        self.chain = ChainConfig(
            31337, b"\x42" * 20, frozenset(address_of(k) for k in self.oracle_keys),
            self.oracle_threshold,
        )
        self.domain = self.chain.domain
        self.index: dict[str, int] = {}
        self.salt = 0

    # ---------------------------------------------------------------- actors

    @staticmethod
    def key(name: str) -> bytes:
        return keccak256(b"actor:" + name.encode())

    def address(self, name: str) -> bytes:
        return address_of(self.key(name))

    # ---------------------------------------------------------------- running

    def view(self, record: bool = False) -> StateView:
        return StateView(DictSource(self.leaves), record=record)

    def run(self, steps: Sequence[bytes], orders: Sequence[bytes] = (), time: int | None = None) -> list[Receipt]:
        """Apply one batch (at ``time``, default the world's clock) and commit its leaves."""
        if time is not None:
            self.time = time
        view = self.view()
        ctx = BatchContext.create(self.time, self.chain, self.queues, list(orders))
        receipts = [apply_step(view, s, ctx) for s in steps]
        self.leaves.update(view.dirty_leaves())
        return receipts

    def run1(self, step: bytes, orders: Sequence[bytes] = (), time: int | None = None) -> Receipt:
        return self.run([step], orders, time)[0]

    # ---------------------------------------------------------------- reading

    def account(self, name_or_index: str | int) -> Account:
        index = self.index[name_or_index] if isinstance(name_or_index, str) else name_or_index
        acct = self.view().account(index)
        if acct is None:
            raise KeyError(name_or_index)
        return acct

    def global_(self) -> Global:
        return self.view().global_()

    def prices(self) -> Prices:
        return self.view().prices()

    # ---------------------------------------------------------------- building

    def deposit(self, name: str, amount: int) -> Receipt:
        self.queues.deposits.append(L1Deposit(self.address(name), amount))
        receipt = self.run1(encode_deposit())
        idx = self.view().account_index(self.address(name))
        if idx is not None:
            self.index[name] = idx
        return receipt

    def force(self, name: str, payload: bytes) -> None:
        self.queues.forced_txs.append(L1Forced(self.address(name), payload))

    def oracle_step(
        self, marks: dict[int, int] | None = None, spots: dict[int, int] | None = None,
        ivs: dict[int, int] | None = None, timestamp: int | None = None,
        signers: Iterable[bytes] | None = None,
    ) -> bytes:
        entries = [OracleEntry(m, p, (ivs or {}).get(m, 0)) for m, p in sorted((marks or {}).items())]
        entries += [OracleEntry(ORACLE_UNDERLYING_BASE + u, p, 0) for u, p in sorted((spots or {}).items())]
        keys = list(signers) if signers is not None else self.oracle_keys[:1]
        return signed_oracle(keys, self.domain, self.time if timestamp is None else timestamp, entries)

    def set_prices(self, marks: dict[int, int], spots: dict[int, int] | None = None, ivs: dict[int, int] | None = None) -> Receipt:
        """Publish an oracle update at the current time (advancing the clock by 1 s first)."""
        self.time += 1
        return self.run1(self.oracle_step(marks, spots, ivs))

    def body(
        self, name: str, market: int, is_buy: bool, price: int, size: int, flags: int = 0,
        expiry: int = NEVER,
    ) -> OrderBody:
        self.salt += 1
        return OrderBody(self.index[name], market, is_buy, flags, price, size, expiry, self.salt)

    def order(self, name: str, market: int, is_buy: bool, price: int, size: int, flags: int = 0, expiry: int = NEVER) -> bytes:
        """A signed order-table entry."""
        b = self.body(name, market, is_buy, price, size, flags, expiry)
        return sign_order(self.key(name), self.address(name), self.domain, b).encode()

    def order_hash(self, name: str, body: OrderBody) -> bytes:
        return order_hash(self.domain, self.address(name), body)

    def total_value(self) -> int:
        """Σ collateral + fee pool + insurance fund + Σ unrealised PnL (incl. pending funding)."""
        from state.margin import assess, normalize

        view = self.view()
        params, prices, g = view.params(), view.prices(), view.global_()
        total = g.fee_pool + g.insurance_fund
        for index in range(1, g.account_count):
            acct = view.account(index)
            if acct is not None:
                norm = normalize(acct, params.markets, prices)
                total += assess(norm, params.markets, prices, params.config).equity
        return total

    def sizes_by_market(self) -> dict[int, int]:
        view = self.view()
        g = view.global_()
        sums: dict[int, int] = {}
        for index in range(1, g.account_count):
            acct = view.account(index)
            if acct is not None:
                for p in acct.positions:
                    sums[p.market] = sums.get(p.market, 0) + p.size
        return sums


def standard_world(traders: Sequence[str] = ("maker", "taker"), amount: int = 100_000 * USDC) -> World:
    """A world with prices published and each trader funded with ``amount``."""
    w = World()
    for name in traders:
        w.deposit(name, amount)
    w.set_prices(
        {ETH_PERP: 3_000_000, BTC_PERP: 6_000_000, ETH_CALL: 40_000, ETH_PUT: 30_000},
        {ETH: 3_000_000, BTC: 6_000_000},
        {ETH_CALL: 600_000, ETH_PUT: 650_000},
    )
    return w
