"""L1 cost per fill on a standard flow: bytes of batch data and gas of ``Rollup.postBatch``.

The flow (docs/bench.md §Flow) runs through the real sequencer core
(:class:`sequencer.exchange.Exchange`, in memory): market makers quoting and
cancelling, takers crossing, the oracle feeder's heartbeat; batches close by
age (``max_batch_age``, 2 s) on a logical clock. The closed batches are then
posted, in order, to the real contracts in titanoboa's in-process EVM (token,
bridge and rollup deployed with the ``MAINNET`` constants; the traders'
deposits queued on the real bridge) with the real ``Rollup.postBatch``, from
the operator's account.

Figures, over the flow's batches (the setup batch with the deposits and the
first prices is posted but not counted):

- ``l1_bytes_per_fill``: batch bytes (the ``postBatch`` ``batch`` argument) per
  fill;
- ``l1_gas_per_fill``: the transactions' gas per fill: execution gas plus the
  intrinsic gas, which for calldata is the larger of EIP-2028's (4 per zero
  byte, 16 per other byte, plus execution) and EIP-7623's floor (10 per
  token, a token being a zero byte or a quarter of another byte), as a
  post-Prague L1 charges.

``python -m sequencer.flow_bench [seconds]`` prints the figures as JSON.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sequencer.exchange import Exchange, ExchangeConfig, PlaceOutcome
from sequencer.intake import CancelSubmission, IntakeError, OrderSubmission
from sequencer.open_batch import ClosedBatch
from state.batch import ENTRY_LENGTH_BYTES, Batch
from state.constants import FLAG_IOC, FLAG_POST_ONLY, KIND_PERP, ORACLE_UNDERLYING_BASE
from state.context import ChainConfig, L1Deposit
from state.db import StateDB
from state.eip712 import address_of, cancel_digest, sign_digest
from state.genesis import genesis_leaves
from state.keccak import keccak256
from state.layout import Config, Market
from state.signing import order_hash, sign_order, signed_oracle
from state.txs import KIND_CANCEL, KIND_ORACLE, KIND_TRADE, OracleEntry, OrderBody

__all__ = [
    "FlowRun",
    "FlowSpec",
    "FlowStats",
    "L1Cost",
    "PostCost",
    "flow_genesis",
    "flow_l1_cost",
    "intrinsic_gas",
    "run_flow",
]

TICK = 1_000
LOT = 1
MIDS = (3_000_000, 6_000_000)
DEPOSIT = 10_000_000 * 1_000_000
ORACLE_KEY = keccak256(b"flow-oracle")


@dataclass(frozen=True)
class FlowSpec:
    """The standard flow's parameters (docs/bench.md §Flow)."""

    seconds: int = 120
    """Logical seconds of trading."""
    messages_per_s: int = 200
    """Requests per logical second (places and cancels), all traders together."""
    makers: int = 8
    takers: int = 40
    taker_share: float = 0.15
    """Share of requests that are taker orders (IOC, crossing up to four ticks through the mid)."""
    cancel_share: float = 0.35
    """Share of requests that are a maker cancelling the oldest of its quotes that rested."""
    quote_levels: int = 10
    """Makers quote 1..quote_levels ticks from the mid."""
    quote_lots: int = 20
    """Maker quote size: 1..quote_lots lots."""
    take_lots: int = 10
    """Taker order size: 1..take_lots lots."""
    quote_ttl: int = 30
    """Seconds until a quote expires."""
    drift: float = 0.02
    """Chance per request that one market's mid moves one tick."""
    oracle_every: int = 5
    """Seconds between oracle updates (the feeder's heartbeat, at the current mids)."""
    seed: int = 11

    def __post_init__(self) -> None:
        if self.seconds < 1 or self.messages_per_s < 1 or self.makers < 1 or self.takers < 1:
            raise ValueError("seconds, messages_per_s, makers and takers must be positive")
        if not (0 <= self.taker_share and 0 <= self.cancel_share and self.taker_share + self.cancel_share < 1):
            raise ValueError("taker_share and cancel_share must be non-negative with a sum below 1")
        if min(self.quote_levels, self.quote_lots, self.take_lots, self.quote_ttl, self.oracle_every) < 1:
            raise ValueError("levels, lots, ttl and oracle period must be positive")


@dataclass
class FlowStats:
    """What the flow sent and what came of it (flow batches only)."""

    places: int = 0
    taker_orders: int = 0
    cancels: int = 0
    refused: int = 0
    """Requests the intake refused (a cancel of a quote that had filled or expired, say)."""
    fills: int = 0
    cancel_steps: int = 0
    oracle_steps: int = 0
    batches: int = 0
    batch_bytes: int = 0
    table_bytes: int = 0
    """Bytes of the packed order-table entries (docs/stf.md §5.2)."""
    entries: int = 0

    @property
    def requests(self) -> int:
        """Places and cancels sent."""
        return self.places + self.cancels

    @property
    def order_to_trade(self) -> float:
        """Requests per fill."""
        return self.requests / max(self.fills, 1)


@dataclass
class FlowRun:
    """A flow that ran: everything a verifier needs to replay its batches."""

    chain: ChainConfig
    genesis: dict[bytes, bytes]
    genesis_root: bytes
    deposits: list[L1Deposit]
    batches: list[ClosedBatch]
    """Every closed batch, the setup batch first."""
    setup_batches: int
    """How many leading batches are setup (deposits, first prices), not flow."""
    stats: FlowStats = field(default_factory=FlowStats)

    @property
    def flow_batches(self) -> list[ClosedBatch]:
        """The batches the figures count."""
        return self.batches[self.setup_batches :]


def _keys(prefix: bytes, n: int) -> list[bytes]:
    return [keccak256(prefix + b"-%d" % i) for i in range(n)]


def flow_genesis(t0: int) -> dict[bytes, bytes]:
    """The flow's genesis leaves at L2 time ``t0``: two perpetual markets."""
    config = Config(
        taker_fee_bps=5, maker_rebate_bps=1, liquidation_penalty_bps=150, liquidator_bonus_bps=50,
        sync_buffer_bps=100, funding_cap_bps=75, max_oracle_age=3_600,
    )
    markets = [
        Market(KIND_PERP, 0, 1000, 500, TICK, LOT, 0, 0, 3),
        Market(KIND_PERP, 1, 1000, 500, TICK, LOT, 0, 0, 4),
    ]
    return genesis_leaves(config, markets, t0)


def flow_traders(spec: FlowSpec) -> tuple[list[bytes], list[bytes]]:
    """Private keys of the makers and of the takers."""
    return _keys(b"flow-maker", spec.makers), _keys(b"flow-taker", spec.takers)


def oracle_address() -> bytes:
    """The address of the flow's single oracle key."""
    return address_of(ORACLE_KEY)


class _Flow:
    """Drives an :class:`Exchange` with the standard flow."""

    def __init__(self, spec: FlowSpec, ex: Exchange, maker_keys: list[bytes], taker_keys: list[bytes]) -> None:
        self.spec = spec
        self.ex = ex
        self.domain = ex.chain.domain
        self.rng = random.Random(spec.seed)
        self.mids = list(MIDS)
        self.makers = [(k, address_of(k)) for k in maker_keys]
        self.takers = [(k, address_of(k)) for k in taker_keys]
        self.accounts: dict[bytes, int] = {}
        self.quotes: list[deque[bytes]] = [deque() for _ in maker_keys]
        self.stats = FlowStats()
        self._salt_rng = random.Random(spec.seed + 1)
        self._salts: dict[bytes, itertools.count[int]] = {}

    def account(self, owner: bytes) -> int:
        index = self.accounts.get(owner)
        if index is None:
            found = self.ex.account_index(owner)
            if found is None:
                raise RuntimeError("a flow trader has no account")
            index = self.accounts[owner] = found
        return index

    def oracle(self, now: int) -> None:
        entries = [OracleEntry(m, self.mids[m], 0) for m in range(2)]
        entries += [OracleEntry(ORACLE_UNDERLYING_BASE + m, self.mids[m], 0) for m in range(2)]
        self.ex.submit_oracle(signed_oracle([ORACLE_KEY], self.domain, now, entries), now)

    def _order(self, who: tuple[bytes, bytes], market: int, is_buy: bool, flags: int, price: int,
               size: int, expiry: int) -> tuple[bytes, OrderSubmission]:
        key, owner = who
        salts = self._salts.get(owner)
        if salts is None:  # as sequencer.client does: a counter from a random 40-bit start
            salts = self._salts[owner] = itertools.count(self._salt_rng.getrandbits(40))
        body = OrderBody(self.account(owner), market, is_buy, flags, price, size, expiry, next(salts))
        signed = sign_order(key, owner, self.domain, body)
        return order_hash(self.domain, owner, body), OrderSubmission.from_entry(signed.encode())

    def quote(self, now: int) -> None:
        s, rng = self.spec, self.rng
        m = rng.randrange(len(self.makers))
        market = rng.randrange(2)
        is_buy = rng.random() < 0.5
        offset = TICK * rng.randint(1, s.quote_levels)
        price = self.mids[market] - offset if is_buy else self.mids[market] + offset
        digest, sub = self._order(
            self.makers[m], market, is_buy, FLAG_POST_ONLY, price, LOT * rng.randint(1, s.quote_lots),
            now + s.quote_ttl,
        )
        self.stats.places += 1
        outcome = self._send(lambda: self.ex.place_order(sub, now))
        if isinstance(outcome, PlaceOutcome) and outcome.resting:
            self.quotes[m].append(digest)

    def take(self, now: int) -> None:
        s, rng = self.spec, self.rng
        who = self.takers[rng.randrange(len(self.takers))]
        market = rng.randrange(2)
        is_buy = rng.random() < 0.5
        through = TICK * rng.randint(1, 4)
        price = self.mids[market] + through if is_buy else self.mids[market] - through
        _, sub = self._order(who, market, is_buy, FLAG_IOC, price, LOT * rng.randint(1, s.take_lots), now + 60)
        self.stats.places += 1
        self.stats.taker_orders += 1
        self._send(lambda: self.ex.place_order(sub, now))

    def cancel(self, now: int) -> None:
        m = self.rng.randrange(len(self.makers))
        if not self.quotes[m]:
            self.quote(now)
            return
        digest = self.quotes[m].popleft()
        key, owner = self.makers[m]
        signature = sign_digest(key, cancel_digest(self.domain, owner, digest))
        self.stats.cancels += 1
        self._send(lambda: self.ex.cancel_order(CancelSubmission(digest, signature), now))

    def _send(self, command: Callable[[], object]) -> object | None:
        """Run one request; a refusal is counted and gives None."""
        try:
            return command()
        except IntakeError:
            self.stats.refused += 1
            return None

    def run(self, t_start: int) -> None:
        s, rng = self.spec, self.rng
        next_oracle = t_start + s.oracle_every
        for i in range(s.seconds * s.messages_per_s):
            now = t_start + i // s.messages_per_s
            if now >= next_oracle:
                self.oracle(now)
                next_oracle = now + s.oracle_every
            if rng.random() < s.drift:
                self.mids[rng.randrange(2)] += TICK * rng.choice((-1, 1))
            roll = rng.random()
            if roll < s.taker_share:
                self.take(now)
            elif roll < s.taker_share + s.cancel_share:
                self.cancel(now)
            else:
                self.quote(now)
            if self.ex.should_close(now):
                self.ex.close_batch(now)
        self.ex.close_batch(t_start + s.seconds)


def run_flow(spec: FlowSpec, chain: ChainConfig, t0: int) -> FlowRun:
    """Run the flow through an in-memory :class:`Exchange` whose genesis is at L2 time ``t0``.

    ``chain`` must trust :func:`oracle_address` alone (threshold 1). The setup
    batch (every trader's deposit, the first prices) is closed at ``t0 + 1``;
    trading starts at ``t0 + 2``."""
    if chain.oracle_keys != frozenset({oracle_address()}) or chain.oracle_threshold != 1:
        raise ValueError("the chain must trust the flow's oracle key alone, threshold 1")
    genesis = flow_genesis(t0)
    ex = Exchange.in_memory(chain, genesis, config=ExchangeConfig())
    try:
        genesis_root = ex.root
        maker_keys, taker_keys = flow_traders(spec)
        deposits = [L1Deposit(address_of(k), DEPOSIT) for k in maker_keys + taker_keys]
        ex.add_l1_items(deposits, [], t0 + 1)
        flow = _Flow(spec, ex, maker_keys, taker_keys)
        flow.oracle(t0 + 1)
        ex.close_batch(t0 + 1)
        setup = len(ex.pending_batches())
        flow.run(t0 + 2)
        batches = ex.pending_batches()
    finally:
        ex.close()
    stats = flow.stats
    for b in batches[setup:]:
        _count(b, stats)
    return FlowRun(chain, genesis, genesis_root, deposits, batches, setup, stats)


def _count(closed: ClosedBatch, stats: FlowStats) -> None:
    batch = Batch.decode(closed.encoded)
    stats.batches += 1
    stats.batch_bytes += len(closed.encoded)
    stats.entries += len(batch.orders)
    stats.table_bytes += sum(ENTRY_LENGTH_BYTES + len(w) for w in batch.written)
    for step in batch.steps:
        kind = step[0]
        if kind == KIND_TRADE:
            stats.fills += 1
        elif kind == KIND_CANCEL:
            stats.cancel_steps += 1
        elif kind == KIND_ORACLE:
            stats.oracle_steps += 1


# ============================================================================ the L1


def intrinsic_gas(calldata: bytes, execution_gas: int) -> int:
    """Total gas of a call transaction: the larger of the EIP-2028 charge (21,000 + 4 per
    zero byte + 16 per other byte + execution) and the EIP-7623 floor (21,000 + 10 per
    token, a zero byte one token, another byte four)."""
    zeros = calldata.count(0)
    tokens = zeros + 4 * (len(calldata) - zeros)
    return 21_000 + max(4 * tokens + execution_gas, 10 * tokens)


@dataclass(frozen=True)
class PostCost:
    """One ``postBatch`` transaction."""

    index: int
    batch_bytes: int
    calldata_bytes: int
    execution_gas: int
    total_gas: int
    fills: int


@dataclass(frozen=True)
class L1Cost:
    """The flow's L1 figures."""

    run: FlowRun
    posts: list[PostCost]
    """Every batch posted, setup first."""

    def _flow_posts(self) -> list[PostCost]:
        return self.posts[self.run.setup_batches :]

    @property
    def fills(self) -> int:
        """Fills in the counted batches."""
        return sum(p.fills for p in self._flow_posts())

    @property
    def bytes_per_fill(self) -> float:
        """Batch bytes per fill."""
        return sum(p.batch_bytes for p in self._flow_posts()) / max(self.fills, 1)

    @property
    def gas_per_fill(self) -> float:
        """Transaction gas (execution and intrinsic) per fill."""
        return sum(p.total_gas for p in self._flow_posts()) / max(self.fills, 1)

    @property
    def execution_gas_per_fill(self) -> float:
        """Execution gas alone per fill."""
        return sum(p.execution_gas for p in self._flow_posts()) / max(self.fills, 1)

    def figures(self) -> dict[str, float]:
        """The benchmark keys."""
        s = self.run.stats
        return {
            "l1_bytes_per_fill": round(self.bytes_per_fill, 1),
            "l1_gas_per_fill": round(self.gas_per_fill, 1),
            "l1_exec_gas_per_fill": round(self.execution_gas_per_fill, 1),
            "l1_exec_gas_per_batch": round(
                sum(p.execution_gas for p in self._flow_posts()) / max(len(self._flow_posts()), 1), 1
            ),
            "flow_fills": float(self.fills),
            "flow_batches": float(len(self._flow_posts())),
            "flow_order_to_trade": round(s.order_to_trade, 2),
            "flow_entries_per_fill": round(s.entries / max(s.fills, 1), 3),
            "flow_table_bytes_per_fill": round(s.table_bytes / max(s.fills, 1), 1),
        }


def _fills(encoded: bytes) -> int:
    return sum(1 for step in Batch.decode(encoded).steps if step[0] == KIND_TRADE)


def flow_l1_cost(spec: FlowSpec) -> L1Cost:
    """Deploy the contracts in titanoboa, queue the deposits on the bridge, run the flow on
    a chain config naming the deployed rollup, and post every batch with ``postBatch``."""
    import boa

    from l1_contracts.config import ETHER, MAINNET
    from l1_contracts.deploy import Genesis, deploy_boa

    t0 = int(boa.env.evm.patch.timestamp)
    genesis = flow_genesis(t0)
    genesis_root = StateDB.in_memory().initialize(genesis)
    oracle = "0x" + oracle_address().hex()
    operator = boa.env.generate_address("flow-operator")
    d = deploy_boa(Genesis(genesis_root, t0, [oracle], 1), MAINNET, operator, test_prover=True)
    chain = ChainConfig(int(boa.env.evm.patch.chain_id), bytes.fromhex(str(d.rollup.address)[2:]),
                        frozenset({oracle_address()}), 1)
    maker_keys, taker_keys = flow_traders(spec)
    for key in maker_keys + taker_keys:
        who = "0x" + address_of(key).hex()
        boa.env.set_balance(who, ETHER)
        with boa.env.prank(boa.env.eoa):
            d.token.mint(who, DEPOSIT)
        with boa.env.prank(who):
            d.token.approve(d.bridge.address, DEPOSIT)
            d.bridge.deposit(DEPOSIT)
    run = run_flow(spec, chain, t0)
    if run.genesis_root != genesis_root:
        raise RuntimeError("the flow's genesis is not the deployed one")
    boa.env.set_balance(operator, (len(run.batches) + 1) * MAINNET.proposer_bond + 100 * ETHER)
    with boa.env.prank(operator):
        d.rollup.depositBond(value=(len(run.batches) + 1) * MAINNET.proposer_bond)
    return L1Cost(run, [_post(d.rollup, operator, b) for b in run.batches])


def _post(rollup: Any, operator: str, closed: ClosedBatch) -> PostCost:
    import boa

    ahead = closed.timestamp - int(boa.env.evm.patch.timestamp)
    if ahead > 0:
        boa.env.time_travel(seconds=ahead)
    calldata = bytes(rollup.postBatch.prepare_calldata(closed.encoded, closed.post_root, closed.step_count))
    with boa.env.prank(operator):
        rollup.postBatch(closed.encoded, closed.post_root, closed.step_count)
    execution = int(rollup._computation.get_gas_used())
    return PostCost(
        closed.index, len(closed.encoded), len(calldata), execution, intrinsic_gas(calldata, execution),
        _fills(closed.encoded),
    )


def main(argv: list[str]) -> None:
    """Print the figures of a flow of ``argv[0]`` logical seconds (default 120) as JSON."""
    seconds = int(argv[0]) if argv else 120
    cost = flow_l1_cost(FlowSpec(seconds=seconds))
    s = cost.run.stats
    out: dict[str, Any] = dict(cost.figures())
    out.update(places=s.places, cancels=s.cancels, taker_orders=s.taker_orders, refused=s.refused,
               cancel_steps=s.cancel_steps, oracle_steps=s.oracle_steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
