"""Property tests of the state-transition function.

* Totality: ``apply_step`` returns a receipt for any bytes, for any body after a
  valid kind byte, and for well-formed steps of every kind with hostile field
  values in random order; ``Batch.decode`` returns a batch or raises
  ``InvalidBatchError`` and nothing else, and its encoding is canonical.
* No partial writes: a refused step leaves every leaf byte-identical, except
  that a deposit or forced step that found its queue item consumes it.
* Determinism: a mixed scenario of a few hundred steps replayed in two fresh
  interpreters with different hash seeds gives the same leaves as in-process.
* Conservation (docs/stf.md §11) and rounding direction (§2).

Every step of the world-based tests goes through :class:`CheckedRun`, which
checks after each step: the receipt, the refusal rule, value conservation, that
the sizes in each market sum to zero, pools and position counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from state.arith import mul_bps_ceil, mul_bps_floor
from state.batch import Batch
from state.constants import (
    AMOUNT_LIMIT,
    BPS,
    COLLATERAL_LIMIT,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    FUNDING_INDEX_LIMIT,
    FUNDING_SCALE,
    KIND_PERP,
    MAX_POSITIONS,
    ORACLE_UNDERLYING_BASE,
    POOL_LIMIT,
    PRICE_LIMIT,
    SIZE_LIMIT,
)
from state.context import BatchContext, L1Deposit, L1Forced
from state.errors import Code, InvalidBatchError
from state.keccak import keccak256
from state.layout import (
    GLOBAL_KEY,
    PRICES_KEY,
    Account,
    Config,
    Global,
    Market,
    Prices,
    account_key,
)
from state.margin import assess, normalize
from state.signing import signed_cancel, signed_oracle, signed_withdraw
from state.transition import Receipt, apply_step
from state.txs import (
    KIND_DEPOSIT,
    KIND_FUNDING,
    Deposit,
    Forced,
    OracleEntry,
    OrderBody,
    decode_order_entry,
    decode_step,
    encode_deleverage,
    encode_deposit,
    encode_forced,
    encode_forced_cancel,
    encode_forced_withdraw,
    encode_funding,
    encode_liquidate,
    encode_settle,
    encode_trade,
)
from state.view import StateView
from tests.determinism_worker import Scenario, report
from tests.pure_state import pure_sources_copy
from tests.strategies import (
    ALL_KINDS,
    FIXED_STEP_SIZES,
    Actors,
    HostileBatch,
    batch_like_bytes,
    batches,
    clone_world,
    hostile_batches,
    kind_prefixed_steps,
    mixed_scenarios,
    populated_world,
    random_steps,
    scaled_examples,
)
from tests.world import (
    BTC,
    ETH,
    ETH_CALL,
    ETH_PERP,
    ETH_PUT,
    USDC,
    World,
    default_markets,
    standard_world,
)

SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

# ============================================================================ measuring a state


@dataclass(frozen=True)
class Measure:
    """What the invariants look at in one state."""

    floored: int
    """V of docs/stf.md §11: Σ normalised equity + fee pool + insurance fund."""
    exact: Fraction
    """V with pending funding counted exactly instead of rounded per position."""
    perp_positions: int
    accounts: dict[int, Account]
    equity: dict[int, int]
    """Normalised equity of every account."""
    g: Global
    prices: Prices


def measure(view: StateView, sparse: bool = False) -> Measure:
    """Value, positions and equities of the state ``view`` currently shows.

    ``sparse`` is for synthetic states whose account_count is near its bound: only
    the first and the last few indices are looked at, and gaps are allowed."""
    params, prices, g = view.params(), view.prices(), view.global_()
    floored = g.fee_pool + g.insurance_fund
    exact = Fraction(floored)
    perp_positions = 0
    accounts: dict[int, Account] = {}
    equity: dict[int, int] = {}
    indices: Sequence[int] = range(1, g.account_count)
    if sparse:
        indices = sorted({*range(1, min(g.account_count, 64)), *range(max(1, g.account_count - 2), g.account_count)})
    for index in indices:
        acct = view.account(index)
        if acct is None and sparse:
            continue
        assert acct is not None, f"account {index} < account_count is missing"
        accounts[index] = acct
        e = assess(normalize(acct, params.markets, prices), params.markets, prices, params.config).equity
        equity[index] = e
        floored += e
        exact += acct.collateral
        for p in acct.positions:
            mp = prices.markets[p.market]
            exact += p.size * mp.mark + p.cost
            if params.markets[p.market].kind == KIND_PERP:
                perp_positions += 1
                exact += Fraction(-p.size * (mp.funding_index - p.funding_snapshot), FUNDING_SCALE)
    return Measure(floored, exact, perp_positions, accounts, equity, g, prices)


def check_shape(view: StateView, m: Measure) -> None:
    """Pools within bounds; accounts with at most 16 sorted non-empty positions; the
    sizes of every unsettled market summing to zero."""
    assert 0 <= m.g.fee_pool < POOL_LIMIT, m.g
    assert 0 <= m.g.insurance_fund < POOL_LIMIT, m.g
    sums: dict[int, int] = {}
    for index, acct in m.accounts.items():
        assert len(acct.positions) <= MAX_POSITIONS, (index, acct)
        markets = [p.market for p in acct.positions]
        assert markets == sorted(set(markets)), (index, acct)
        for p in acct.positions:
            assert 0 < abs(p.size) < SIZE_LIMIT, (index, p)
            sums[p.market] = sums.get(p.market, 0) + p.size
    # Positions in a settled option market are closed lazily, one account at a
    # time (§7.9), so only unsettled markets must balance in the stored accounts.
    unbalanced = {k: v for k, v in sums.items() if v != 0 and not m.prices.markets[k].settled}
    assert not unbalanced, unbalanced


def check_refusal_writes_nothing(
    step: bytes, receipt: Receipt, before: dict[bytes, bytes], after: dict[bytes, bytes], time: int
) -> None:
    """A refused step leaves every leaf as it was, except a deposit or forced step that
    found its queue item: that advances its pointer and sets l2_time, nothing else."""
    if receipt.code == Code.OK:
        return
    tx = decode_step(step)
    if isinstance(tx, Deposit | Forced) and receipt.code != Code.QUEUE_EMPTY:
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert changed <= {GLOBAL_KEY}, (receipt, len(changed))
        g0, g1 = Global.decode(before[GLOBAL_KEY]), Global.decode(after[GLOBAL_KEY])
        if isinstance(tx, Deposit):
            expected = replace(g0, next_deposit=g0.next_deposit + 1, l2_time=time)
        else:
            expected = replace(g0, next_forced=g0.next_forced + 1, l2_time=time)
        assert g1 == expected, (receipt, g0, g1)
        return
    assert after == before, (receipt, step.hex())


def check_value(
    step: bytes, receipt: Receipt, ctx: BatchContext, view: StateView, before: Measure, after: Measure
) -> None:
    """Conservation (§11) across one step.

    Outside funding, V moves by exactly deposits − withdrawals; the exact value
    moves by that less the rounding dust that normalisation realised (at most
    one unit per open perpetual position, never in the traders' favour).
    Across funding the exact value does not move; V moves by less than one unit
    per open perpetual position."""
    flow = 0
    if receipt.code == Code.OK and receipt.kind == KIND_DEPOSIT:
        item = ctx.queues.deposit(before.g.next_deposit)
        assert item is not None
        flow += item.amount
    for wid in range(before.g.withdrawal_count, after.g.withdrawal_count):
        record = view.withdrawal(wid)
        assert record is not None
        flow -= record.amount
    if receipt.code == Code.OK and receipt.kind == KIND_FUNDING:
        assert after.exact == before.exact, (before.exact, after.exact)
        moved = after.floored - before.floored
        assert moved == 0 or abs(moved) < before.perp_positions, (moved, before.perp_positions)
        return
    assert after.floored - before.floored == flow, (receipt, step.hex(), before.floored, after.floored, flow)
    dust = flow - (after.exact - before.exact)
    assert dust == 0 or 0 < dust < before.perp_positions, (receipt, dust, before.perp_positions)
    # what V does not count yet is pending funding dust: never more than a unit per position
    gap = after.exact - after.floored
    assert gap == 0 or 0 < gap < after.perp_positions, (gap, after.perp_positions)


@dataclass(frozen=True)
class StepRecord:
    """One step as :class:`CheckedRun` saw it."""

    step: bytes
    receipt: Receipt
    before: Measure
    after: Measure


class CheckedRun:
    """Runs batches on a world, one step at a time, checking every invariant after each step."""

    def __init__(self, world: World, sparse: bool = False) -> None:
        self.w = world
        self.sparse = sparse
        self.codes: dict[tuple[int, Code], int] = {}

    def run(self, steps: Sequence[bytes], orders: Sequence[bytes] = (), time: int | None = None) -> list[StepRecord]:
        """Apply one batch through the real STF and commit it as ``World.run`` does."""
        w = self.w
        if time is not None:
            w.time = time
        view = w.view()
        ctx = BatchContext.create(w.time, w.chain, w.queues, list(orders))
        base = w.leaves
        leaves = dict(base)
        m = measure(view, self.sparse)
        records = []
        for step in steps:
            receipt = apply_step(view, step, ctx)
            assert isinstance(receipt, Receipt) and isinstance(receipt.code, Code)
            assert receipt.kind == (step[0] if step else 0)
            after_m = measure(view, self.sparse)
            check_shape(view, after_m)
            after_leaves = {**base, **view.dirty_leaves()}
            check_refusal_writes_nothing(step, receipt, leaves, after_leaves, w.time)
            check_value(step, receipt, ctx, view, m, after_m)
            records.append(StepRecord(step, receipt, m, after_m))
            key = (receipt.kind, receipt.code)
            self.codes[key] = self.codes.get(key, 0) + 1
            leaves, m = after_leaves, after_m
        w.leaves.update(view.dirty_leaves())
        if self.sparse:
            return records
        # the world's own accounting agrees once the batch is committed
        settled = {i for i, mp in enumerate(m.prices.markets) if mp.settled}
        assert all(total == 0 for market, total in w.sizes_by_market().items() if market not in settled)
        assert w.total_value() == m.floored
        return records

    def run1(self, step: bytes, orders: Sequence[bytes] = ()) -> StepRecord:
        """Apply a batch of one step."""
        return self.run([step], orders)[0]


# ============================================================================ 1. totality


@lru_cache(maxsize=1)
def template() -> World:
    """The populated world the hostile tests start from (built once)."""
    return populated_world()


ACTORS = Actors.of(template())


def fresh_run(deposits: Sequence[L1Deposit] = (), forced: Sequence[L1Forced] = ()) -> CheckedRun:
    """A checked run on a copy of the template, with extra L1 queue items."""
    w = clone_world(template())
    w.queues.deposits.extend(deposits)
    w.queues.forced_txs.extend(forced)
    return CheckedRun(w)


@pytest.mark.parametrize("queued", [False, True], ids=["empty-queues", "queued-items"])
@pytest.mark.parametrize("step", [b"", b"\x00", b"\x01", b"\x06", b"\x0a", b"\x0b", b"\xff"])
def test_apply_step_total_on_short_steps(step: bytes, queued: bool) -> None:
    deposits = [L1Deposit(b"\x11" * 20, 5 * USDC)] if queued else []
    forced = [L1Forced(b"\x11" * 20, b"\x02junk")] if queued else []
    fresh_run(deposits, forced).run1(step)


@pytest.mark.parametrize("time_offset", [0, 10**6], ids=["fresh-oracle", "stale-oracle"])
@settings(deadline=None, suppress_health_check=SLOW_OK)
@given(step=random_steps(300))
def test_apply_step_total_on_random_bytes(time_offset: int, step: bytes) -> None:
    """Any bytes of length 0..300 get a receipt, with a deposit and a forced item queued."""
    runner = fresh_run([L1Deposit(b"\x22" * 20, 7)], [L1Forced(b"\x22" * 20, step[:40])])
    runner.run([step], time=ACTORS.time + time_offset)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=[f"kind{k:#04x}" for k in ALL_KINDS])
@settings(deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_apply_step_total_on_kind_prefixed_bytes(kind: int, data: st.DataObject) -> None:
    """Random bodies at and around each kind's exact length. The length alone decides
    INVALID_ENCODING (the queues are empty, so a forced step that decodes is
    QUEUE_EMPTY, never a payload error)."""
    step = data.draw(kind_prefixed_steps(kind), label="step")
    record = fresh_run().run1(step)
    code = record.receipt.code
    if kind in FIXED_STEP_SIZES:
        assert (code == Code.INVALID_ENCODING) == (len(step) != FIXED_STEP_SIZES[kind]), code
    else:
        n = step[9] if len(step) > 9 else 0
        m = step[10 + 13 * n] if len(step) > 10 + 13 * n else 0
        assert (code == Code.INVALID_ENCODING) == (len(step) != 11 + 13 * n + 65 * m), code


@settings(deadline=None, suppress_health_check=SLOW_OK)
@given(batch=hostile_batches(ACTORS))
def test_hostile_batches_are_total_and_refusals_write_nothing(batch: HostileBatch) -> None:
    """Well-formed steps of every kind with hostile fields, in random order within a
    batch, against a world with positions, prices, a liquidatable and a bankrupt
    account: every step gets a receipt and every invariant of CheckedRun holds
    (a refused step writes nothing but a consumed queue item; value is conserved)."""
    runner = fresh_run(batch.deposits, batch.forced)
    runner.run(batch.steps, batch.orders, time=batch.time)
    for kind, code in runner.codes:
        event(f"{kind:#04x} {code.name}")


def test_hostile_template_reaches_deep_paths() -> None:
    """The template offers the deep paths the hostile steps aim near: a liquidation of
    "weak" and a deleveraging of "broke" succeed."""
    w = clone_world(template())
    runner = CheckedRun(w)
    weak, broke = w.index["weak"], w.index["broke"]
    mark = w.prices().markets[ETH_PERP].mark
    liq = runner.run([encode_liquidate(weak, 0, 4_000)], [w.order("alice", ETH_PERP, True, mark, 4_000)])[0]
    assert liq.receipt.code == Code.OK, liq.receipt
    adl = runner.run1(encode_deleverage(broke, w.index["carol"], 1, 5_000))
    assert adl.receipt.code == Code.OK, adl.receipt


@settings(deadline=None)
@given(data=st.one_of(st.binary(max_size=400), batch_like_bytes()))
def test_batch_decode_returns_batch_or_invalid_batch_error(data: bytes) -> None:
    try:
        batch = Batch.decode(data)
    except InvalidBatchError:
        event("refused")
        return
    event("parsed")
    assert isinstance(batch, Batch)
    assert batch.encode() == data  # the encoding is canonical


@settings(deadline=None)
@given(batch=batches())
def test_batch_encode_decode_round_trip(batch: Batch) -> None:
    assert Batch.decode(batch.encode()) == batch


# ---------------------------------------------------------------------------- fields at their bounds


class EndlessQueues:
    """L1 queues with an item at every position (for pointers near 2^64)."""

    def deposit(self, index: int) -> L1Deposit | None:
        return L1Deposit(keccak256(b"depositor%d" % index)[:20], 1)

    def forced(self, index: int) -> L1Forced | None:
        return L1Forced(b"\x33" * 20, b"junk")


def at_bounds(
    globals_: dict[str, int] | None = None, account: tuple[str, dict[str, Any]] | None = None,
    funding_index: int | None = None,
) -> World:
    """A copy of the template with global fields, one account's fields or the ETH-PERP
    funding index overwritten (a state only a long history could reach)."""
    w = clone_world(template())
    if globals_:
        w.leaves[GLOBAL_KEY] = replace(w.global_(), **globals_).encode()
    if account:
        name, changes = account
        w.leaves[account_key(w.index[name])] = replace(w.account(name), **changes).encode()
    if funding_index is not None:
        prices = w.prices()
        markets = list(prices.markets)
        markets[ETH_PERP] = replace(markets[ETH_PERP], funding_index=funding_index)
        w.leaves[PRICES_KEY] = replace(prices, markets=tuple(markets)).encode()
    return w


def _withdraw(w: World, name: str) -> bytes:
    nonce = w.account(name).nonce
    return signed_withdraw(w.key(name), w.address(name), w.domain, w.index[name], w.address(name), 1, nonce)


def test_counters_and_pools_at_their_bounds_refuse_with_overflow() -> None:
    """Each bounded field one step from its limit: the step that would cross it is
    refused with OVERFLOW, and every state in between commits (encodes)."""
    w = at_bounds({"withdrawal_count": (1 << 64) - 2})
    runner = CheckedRun(w)
    assert [r.receipt.code for r in runner.run([_withdraw(w, "alice")])] == [Code.OK]
    assert runner.run1(_withdraw(w, "alice")).receipt.code == Code.OVERFLOW

    w = at_bounds(account=("alice", {"nonce": (1 << 64) - 2}))
    runner = CheckedRun(w)
    assert runner.run1(_withdraw(w, "alice")).receipt.code == Code.OK
    assert runner.run1(_withdraw(w, "alice")).receipt.code == Code.OVERFLOW

    w = at_bounds({"fee_pool": POOL_LIMIT - 1})
    mark = w.prices().markets[ETH_PERP].mark
    fill = [w.order("alice", ETH_PERP, False, mark, 5), w.order("bob", ETH_PERP, True, mark, 5)]
    assert CheckedRun(w).run([encode_trade(0, 1, 5)], fill)[0].receipt.code == Code.OVERFLOW

    w = at_bounds({"insurance_fund": POOL_LIMIT - 1})
    liq = [w.order("alice", ETH_PERP, True, mark, 4_000)]
    record = CheckedRun(w).run([encode_liquidate(w.index["weak"], 0, 4_000)], liq)[0]
    assert record.receipt.code == Code.OVERFLOW

    w = at_bounds(account=("alice", {"collateral": COLLATERAL_LIMIT - 1}))
    w.queues.deposits.append(L1Deposit(w.address("alice"), 1))
    assert CheckedRun(w).run1(encode_deposit()).receipt.code == Code.OVERFLOW

    w = at_bounds(funding_index=FUNDING_INDEX_LIMIT - 1)
    w.time += 1
    oracle = w.oracle_step({ETH_PERP: 2_830_000}, {ETH: 2_820_000}, signers=w.oracle_keys[:2])
    records = CheckedRun(w).run([oracle, encode_funding()])
    assert [r.receipt.code for r in records] == [Code.OK, Code.OVERFLOW]


def test_last_account_indices() -> None:
    """Account 2^32 - 2 is the last one: creating it leaves account_count = 2^32 - 1
    (the u32 maximum); the next new owner is refused with ACCOUNT_LIMIT, its deposit
    consumed."""
    w = at_bounds({"account_count": (1 << 32) - 2})
    w.queues.deposits += [L1Deposit(b"\x44" * 20, 1), L1Deposit(b"\x45" * 20, 1)]
    records = CheckedRun(w, sparse=True).run([encode_deposit(), encode_deposit()])
    assert [r.receipt.code for r in records] == [Code.OK, Code.ACCOUNT_LIMIT]
    assert w.global_().account_count == (1 << 32) - 1
    assert w.view().account_index(b"\x44" * 20) == (1 << 32) - 2


@pytest.mark.parametrize("field", ["next_deposit", "next_forced"])
def test_queue_pointer_at_u64_bound_leaves_an_encodable_state(field: str) -> None:
    # Regression: a deposit or forced step at queue position 2^64-1 once set its
    # u64 pointer to 2^64, and the global leaf could no longer be encoded.
    w = at_bounds({field: (1 << 64) - 1})
    w.queues = EndlessQueues()  # type: ignore[assignment]
    before = dict(w.leaves)
    step = encode_deposit() if field == "next_deposit" else encode_forced()
    assert w.run1(step).code == Code.OVERFLOW
    assert w.leaves == before


# ============================================================================ 3. determinism

WORKER = Path(__file__).resolve().with_name("determinism_worker.py")
REPO = WORKER.parent.parent


@settings(max_examples=scaled_examples(3), deadline=None, suppress_health_check=SLOW_OK)
@given(scenario=mixed_scenarios())
def test_replay_is_identical_across_processes_and_hash_seeds(scenario: Scenario) -> None:
    """A mixed scenario of a few hundred steps is replayed in two fresh interpreters
    (PYTHONHASHSEED 1 and 2) and in a third on the pure-Python sources of state/
    (tests/pure_state.py); all print the same receipts, leaves, keccak and trie
    root as the in-process replay."""
    expected = "\n".join(report(scenario)) + "\n"
    assert sum(len(b.steps) for b in scenario.batches) >= 300
    applied = sum(line.count(":0 ") for line in expected.splitlines() if line.startswith("receipts"))
    assert applied >= 30, "the scenario should change the state substantially"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.json"
        path.write_text(scenario.to_json())
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), str(path), *extra], cwd=REPO, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONHASHSEED": seed},
            )
            for seed, extra in (("1", []), ("2", []), ("3", [str(pure_sources_copy(Path(tmp) / "pure"))]))
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0], "replays differ between hash seeds"
    assert outputs[0][0] == expected, "a subprocess replay differs from the in-process one"
    assert outputs[2][0] == expected, "the pure-Python state/ differs from the compiled one"


# ============================================================================ 4. conservation


def wide_markets() -> list[Market]:
    """The four default markets plus 16 more perpetuals: 20 markets, more than an
    account may hold positions in."""
    return default_markets() + [Market(KIND_PERP, i % 2, 1000, 500, 1_000, 1, 0, 0, 3) for i in range(16)]


TRADERS = ("whale", "mm", "a", "b", "c")
FUNDS = {"whale": 5_000_000, "mm": 1_000_000, "a": 50_000, "b": 20_000, "c": 5_000}


@lru_cache(maxsize=1)
def wide_template() -> World:
    """Five traders from well funded to thin, prices published in all 20 markets."""
    w = World(markets=wide_markets())
    for name in TRADERS:
        w.deposit(name, FUNDS[name] * USDC)
    marks = {m: (3_000_000 if w.markets[m].underlying == ETH else 6_000_000) for m in range(len(w.markets))}
    marks[ETH_CALL], marks[ETH_PUT] = 40_000, 30_000
    assert w.set_prices(marks, {ETH: 3_000_000, BTC: 6_000_000}).code == Code.OK
    return w


class ConservationMachine(RuleBasedStateMachine):
    """Random valid-ish activity; CheckedRun checks the invariants after every step, and
    the trade and liquidate rules check the rounding direction of what they charge."""

    def __init__(self) -> None:
        super().__init__()
        self.w = clone_world(wide_template())
        self.runner = CheckedRun(self.w)
        self.resting: list[tuple[bytes, OrderBody, str]] = []
        self.newcomers = 0

    # ---------------------------------------------------------------- helpers

    def names(self) -> list[str]:
        return sorted(self.w.index, key=lambda n: self.w.index[n])

    def price_grid(self, market: int, ticks_away: int) -> int:
        tick = self.w.markets[market].tick
        mark = self.w.prices().markets[market].mark
        return max(tick, mark - mark % tick + ticks_away * tick)

    def live_markets(self) -> list[int]:
        prices = self.w.prices()
        return [m for m in range(len(self.w.markets)) if not prices.markets[m].settled]

    # ---------------------------------------------------------------- rules

    @rule(data=st.data())
    def trade(self, data: st.DataObject) -> None:
        maker, taker = data.draw(st.permutations(self.names()))[:2]
        live = self.live_markets()
        market = data.draw(st.one_of(st.sampled_from([m for m in live if m < 4] or live), st.sampled_from(live)))
        price = self.price_grid(market, data.draw(st.integers(-30, 30)))
        size = data.draw(st.one_of(st.integers(1, 100), st.integers(1, 20_000)))
        maker_buys = data.draw(st.booleans())
        maker_flags = data.draw(st.sampled_from([0, 0, 0, FLAG_POST_ONLY, FLAG_REDUCE_ONLY]))
        taker_flags = data.draw(st.sampled_from([0, 0, 0, 0, FLAG_REDUCE_ONLY]))
        if self.resting and data.draw(st.integers(0, 3)) == 0:
            entry, body, maker = data.draw(st.sampled_from(self.resting))
            market, price, maker_buys, size = body.market, body.price, body.is_buy, body.size
            taker = data.draw(st.sampled_from([n for n in self.names() if n != maker]))
        else:
            entry = self.w.order(maker, market, maker_buys, price, size, maker_flags)
            order = decode_order_entry(entry)
            assert order is not None
            self.resting.append((entry, order.body, maker))
        tick = self.w.markets[market].tick
        slack = data.draw(st.integers(0, 3)) * tick
        taker_price = max(1, price - slack) if maker_buys else price + slack
        taker_entry = self.w.order(taker, market, not maker_buys, taker_price, size, taker_flags)
        fill = data.draw(st.integers(1, size))
        record = self.runner.run1(encode_trade(0, 1, fill), [entry, taker_entry])
        if record.receipt.code == Code.OK:
            self.check_trade_rounding(record, maker, taker, market, maker_buys, price, fill)

    @rule(data=st.data())
    def spread(self, data: st.DataObject) -> None:
        """One trader opens small positions in many markets against the others, in one
        batch: an account hits the 16-position limit."""
        name = data.draw(st.sampled_from(self.names()))
        others = [n for n in self.names() if n != name]
        live = self.live_markets()
        markets = data.draw(st.permutations(live))[: data.draw(st.integers(1, len(live)))]
        orders: list[bytes] = []
        steps: list[bytes] = []
        for market in markets:
            counter = data.draw(st.sampled_from(others))
            price = self.price_grid(market, 0)
            buys = data.draw(st.booleans())
            orders += [self.w.order(counter, market, not buys, price, 1), self.w.order(name, market, buys, price, 1)]
            steps.append(encode_trade(len(orders) - 2, len(orders) - 1, 1))
        records = self.runner.run(steps, orders)
        for r in records:
            if r.receipt.code == Code.TOO_MANY_POSITIONS:
                event("an account hit the 16-position limit")

    @rule(data=st.data())
    def oracle(self, data: st.DataObject) -> None:
        w = self.w
        w.time += data.draw(st.integers(1, 30))
        vol = data.draw(st.sampled_from([10, 100, 500, 1_500, 3_000]))  # bps
        prices = w.prices()
        spots = {
            u: max(1_000, prices.index[u] * (BPS + data.draw(st.integers(-vol, vol))) // BPS) for u in (ETH, BTC)
        }
        marks: dict[int, int] = {}
        for m in self.live_markets():
            market = w.markets[m]
            if market.kind == KIND_PERP:
                marks[m] = max(1, spots[market.underlying] * (BPS + data.draw(st.integers(-100, 100))) // BPS)
            else:
                marks[m] = max(1, prices.markets[m].mark * (BPS + data.draw(st.integers(-vol, vol))) // BPS)
        self.runner.run1(w.oracle_step(marks, spots))

    @rule(data=st.data())
    def leverage_and_shock(self, data: st.DataObject) -> None:
        """A thin trader opens a perpetual position near its initial-margin limit, then
        the oracle moves against it: liquidations and deleveraging become possible."""
        w = self.w
        name = data.draw(st.sampled_from([n for n in self.names() if n not in ("whale", "mm")] or ["c"]))
        counter = data.draw(st.sampled_from(["whale", "mm"]))
        market = data.draw(st.sampled_from([m for m in self.live_markets() if w.markets[m].kind == KIND_PERP]))
        view = w.view()
        params, prices = view.params(), view.prices()
        acct = normalize(w.account(name), params.markets, prices)
        risk = assess(acct, params.markets, prices, params.config)
        price = self.price_grid(market, 0)
        room = (risk.equity - risk.initial) * BPS // (w.markets[market].im_bps * price + price)
        size = max(1, room * data.draw(st.integers(50, 99)) // 100)
        buys = data.draw(st.booleans())
        orders = [w.order(counter, market, not buys, price, size), w.order(name, market, buys, price, size)]
        self.runner.run([encode_trade(0, 1, size)], orders)
        drop = data.draw(st.integers(200, 2_500))  # bps against the new position
        underlying = w.markets[market].underlying
        factor = BPS - drop if buys else BPS + drop
        spots = {u: prices.index[u] for u in (ETH, BTC)}
        spots[underlying] = max(1_000, spots[underlying] * factor // BPS)
        marks = {
            m: (spots[w.markets[m].underlying] if w.markets[m].kind == KIND_PERP else max(1, prices.markets[m].mark))
            for m in self.live_markets()
        }
        w.time += 1
        self.runner.run1(w.oracle_step(marks, spots))
        if data.draw(st.booleans()):
            self.liquidate(data)
        else:
            self.deleverage(data)

    @rule(data=st.data())
    def funding(self, data: st.DataObject) -> None:
        self.w.time += data.draw(st.one_of(st.sampled_from([0, 1, 3_600, 28_800, 100_000]), st.integers(0, 40_000)))
        self.runner.run1(encode_funding())

    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        w = self.w
        name = data.draw(st.sampled_from(self.names()))
        index = w.index[name]
        acct = w.account(index)
        view = w.view()
        cash = max(1, normalize(acct, view.params().markets, view.prices()).collateral)
        amount = data.draw(st.one_of(st.integers(1, cash), st.integers(1, max(1, cash // 10)), st.just(cash + 1)))
        amount = min(amount, AMOUNT_LIMIT - 1)
        recipient = w.address(name)
        if data.draw(st.booleans()):
            w.force(name, encode_forced_withdraw(index, recipient, amount))
            self.runner.run1(encode_forced())
        else:
            self.runner.run1(signed_withdraw(w.key(name), w.address(name), w.domain, index, recipient, amount, acct.nonce))

    @rule(data=st.data())
    def deposit(self, data: st.DataObject) -> None:
        w = self.w
        if data.draw(st.integers(0, 4)) == 0:
            self.newcomers += 1
            name = f"newcomer{self.newcomers}"
        else:
            name = data.draw(st.sampled_from(self.names()))
        w.queues.deposits.append(L1Deposit(w.address(name), data.draw(st.integers(1, 100_000 * USDC))))
        record = self.runner.run1(encode_deposit())
        index = w.view().account_index(w.address(name))
        if record.receipt.code == Code.OK and index is not None:
            w.index[name] = index

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if not self.resting:
            return
        entry, body, name = data.draw(st.sampled_from(self.resting))
        w = self.w
        if data.draw(st.booleans()):
            w.force(name, encode_forced_cancel(body))
            self.runner.run1(encode_forced())
        else:
            self.runner.run1(signed_cancel(w.key(name), w.address(name), w.domain, 0, body), [entry])

    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        w = self.w
        expiry = w.markets[ETH_CALL].expiry
        if w.time < expiry:
            w.time = expiry + data.draw(st.integers(0, 100))
        prices = w.prices()
        marks = {m: max(1, prices.markets[m].mark) for m in self.live_markets()}
        spots = {u: prices.index[u] for u in (ETH, BTC)}
        spots[ETH] = max(1_000, spots[ETH] * (BPS + data.draw(st.integers(-2_000, 2_000))) // BPS)
        w.time += 1
        self.runner.run([w.oracle_step(marks, spots), encode_settle(ETH_CALL), encode_settle(ETH_PUT)])

    def _risks(self) -> dict[int, tuple[Account, int, int]]:
        view = self.w.view()
        params, prices = view.params(), view.prices()
        out = {}
        for index in self.w.index.values():
            acct = normalize(self.w.account(index), params.markets, prices)
            risk = assess(acct, params.markets, prices, params.config)
            out[index] = (acct, risk.equity, risk.liquidation_threshold)
        return out

    @rule(data=st.data())
    def liquidate(self, data: st.DataObject) -> None:
        w = self.w
        risks = self._risks()
        fund = w.global_().insurance_fund
        candidates = [
            (index, p) for index, (acct, equity, lt) in risks.items() if equity < lt
            for p in acct.positions if not w.prices().markets[p.market].settled
        ]
        use_candidate = data.draw(st.integers(0, 4)) > 0
        if candidates and use_candidate:
            target, position = data.draw(st.sampled_from(candidates))
            bankrupt = risks[target][1] + fund < 0
            event("liquidate a liquidatable account" + (" (bankrupt)" if bankrupt else ""))
        else:
            target = data.draw(st.sampled_from(sorted(risks)))
            held = risks[target][0].positions
            if not held:
                market = data.draw(st.sampled_from(self.live_markets()))
                order = w.order(self.names()[0], market, True, self.price_grid(market, 0), 1)
                self.runner.run1(encode_liquidate(target, 0, 1), [order])
                return
            position = data.draw(st.sampled_from(held))
        liquidator = data.draw(st.sampled_from([n for n in self.names() if w.index[n] != target]))
        mark = w.prices().markets[position.market].mark
        is_buy = position.size > 0
        size = data.draw(st.integers(1, abs(position.size)))
        order = w.order(liquidator, position.market, is_buy, mark, abs(position.size))
        record = self.runner.run1(encode_liquidate(target, 0, size), [order])
        if record.receipt.code == Code.OK:
            event("liquidation applied")
            self.check_liquidation_rounding(record, target, w.index[liquidator], size * mark)

    @rule(data=st.data())
    def deleverage(self, data: st.DataObject) -> None:
        w = self.w
        risks = self._risks()
        fund = w.global_().insurance_fund
        bankrupt = [i for i, (_, equity, _) in risks.items() if equity + fund < 0]
        pairs = [
            (t, c, p.market, min(abs(p.size), abs(q.size)))
            for t in bankrupt for p in risks[t][0].positions
            for c, (acct, _, _) in risks.items() if c != t
            for q in acct.positions if q.market == p.market and (q.size > 0) != (p.size > 0)
        ]
        use_pair = data.draw(st.integers(0, 4)) > 0
        if pairs and use_pair:
            target, counter, market, most = data.draw(st.sampled_from(pairs))
            size = data.draw(st.integers(1, most))
        else:
            target, counter = data.draw(st.permutations(sorted(risks)))[:2]
            market = data.draw(st.sampled_from(self.live_markets()))
            size = data.draw(st.integers(1, 1_000))
        record = self.runner.run1(encode_deleverage(target, counter, market, size))
        if record.receipt.code == Code.OK:
            event("deleveraging applied")

    # ---------------------------------------------------------------- rounding (property 5)

    def check_trade_rounding(
        self, record: StepRecord, maker: str, taker: str, market: int, maker_buys: bool, price: int, size: int
    ) -> None:
        """The fill moves equity by Δ × (mark − price) exactly; what is left is the
        rebate (maker) and minus the fee (taker)."""
        mark = record.before.prices.markets[market].mark
        delta = size if maker_buys else -size
        m_i, t_i = self.w.index[maker], self.w.index[taker]
        rebate = record.after.equity[m_i] - record.before.equity[m_i] - delta * (mark - price)
        fee = -(record.after.equity[t_i] - record.before.equity[t_i] + delta * (mark - price))
        config = self.w.config
        notional = size * price
        exact_fee = Fraction(notional * config.taker_fee_bps, BPS)
        exact_rebate = Fraction(notional * config.maker_rebate_bps, BPS)
        assert exact_fee <= fee < exact_fee + 1, (fee, exact_fee)
        assert exact_rebate - 1 < rebate <= exact_rebate, (rebate, exact_rebate)
        assert record.after.g.fee_pool - record.before.g.fee_pool == fee - rebate

    def check_liquidation_rounding(self, record: StepRecord, target: int, liquidator: int, notional: int) -> None:
        """The liquidator gains exactly its bonus (at most the exact bps, capped by the
        fund); while the target keeps positions, it loses exactly the penalty (at
        least the exact bps)."""
        config = self.w.config
        bonus = record.after.equity[liquidator] - record.before.equity[liquidator]
        assert 0 <= bonus <= Fraction(notional * config.liquidator_bonus_bps, BPS), bonus
        if record.after.accounts[target].positions:
            penalty = record.before.equity[target] - record.after.equity[target]
            exact = Fraction(notional * config.liquidation_penalty_bps, BPS)
            assert exact <= penalty < exact + 1, (penalty, exact)


TestConservation = ConservationMachine.TestCase
TestConservation.settings = settings(
    max_examples=scaled_examples(40), deadline=None, suppress_health_check=SLOW_OK
)


def test_funding_dust_is_counted_until_settled() -> None:
    """Why the conservation check bounds |ΔV| across funding instead of requiring
    ΔV ≤ 0 as §11 words it: V rounds each position's *pending* funding down, so a
    funding step that makes a pending amount whole again raises V by the unit an
    earlier step had counted away. Nothing is created: the exact value never
    moves, and settling both sides realises exactly what is owed."""
    w = standard_world()
    runner = CheckedRun(w)
    fill = [w.order("maker", ETH_PERP, False, 3_000_000, 1), w.order("taker", ETH_PERP, True, 3_000_000, 1)]
    assert runner.run([encode_trade(0, 1, 1)], fill)[0].receipt.code == Code.OK
    w.time += 1
    assert runner.run1(w.oracle_step({ETH_PERP: 3_001_001}, {ETH: 3_000_000})).receipt.code == Code.OK
    start = w.total_value()
    half_period = 14_400  # the odd premium 1 001 accrues half a unit per size unit
    w.time = w.prices().funding_time + half_period
    first = runner.run1(encode_funding())
    w.time += half_period
    second = runner.run1(encode_funding())
    assert (first.receipt.code, second.receipt.code) == (Code.OK, Code.OK)
    assert (first.after.floored - start, second.after.floored - start) == (-1, 0)
    assert first.before.exact == first.after.exact == second.after.exact
    # settle both sides (a withdrawal of 1 normalises): the long pays 1 001, the short gets 1 001
    before = {n: w.account(n).collateral for n in ("maker", "taker")}
    w.time += 1
    assert runner.run1(w.oracle_step({ETH_PERP: 3_001_001}, {ETH: 3_000_000})).receipt.code == Code.OK
    for name in ("maker", "taker"):
        nonce = w.account(name).nonce
        step = signed_withdraw(w.key(name), w.address(name), w.domain, w.index[name], w.address(name), 1, nonce)
        assert runner.run1(step).receipt.code == Code.OK
    assert {n: w.account(n).collateral + 1 - c for n, c in before.items()} == {"maker": 1_001, "taker": -1_001}


# ============================================================================ 5. rounding direction


@settings(deadline=None)
@given(amount=st.integers(0, 1 << 130), bps=st.integers(0, (1 << 16) - 1))
def test_bps_helpers_bracket_the_exact_value(amount: int, bps: int) -> None:
    exact = Fraction(amount * bps, BPS)
    assert exact <= mul_bps_ceil(amount, bps) < exact + 1
    assert exact - 1 < mul_bps_floor(amount, bps) <= exact


def _fee_world(taker_bps: int, rebate_bps: int) -> World:
    config = Config(
        taker_fee_bps=taker_bps, maker_rebate_bps=rebate_bps, liquidation_penalty_bps=150,
        liquidator_bonus_bps=50, sync_buffer_bps=0, funding_cap_bps=75, max_oracle_age=60,
    )
    return World(config=config, markets=[Market(KIND_PERP, ETH, 1, 1, 1, 1, 0, 0, 0)])


@settings(deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_trade_fee_and_rebate_round_toward_the_protocol(data: st.DataObject) -> None:
    """Any fee rates and any notional the collateral carries (up to ~2^76): the taker
    pays ceil(N × fee / 10 000), at least the exact fee, the maker gets
    floor(N × rebate / 10 000), at most the exact rebate, and the fee pool the
    difference."""
    taker_bps = data.draw(st.one_of(st.integers(0, 100), st.integers(0, (1 << 16) - 1)), label="taker_bps")
    rebate_bps = data.draw(st.integers(0, taker_bps), label="rebate_bps")
    w = _fee_world(taker_bps, rebate_bps)
    funds = AMOUNT_LIMIT - 1
    w.deposit("maker", funds)
    w.deposit("taker", funds)
    max_notional = funds * BPS // (taker_bps + 2)
    size = data.draw(st.integers(1, min(SIZE_LIMIT - 1, max_notional)), label="size")
    price = data.draw(st.integers(1, min(PRICE_LIMIT - 1, max_notional // size)), label="price")
    maker_buys = data.draw(st.booleans(), label="maker_buys")
    w.time += 1
    oracle = signed_oracle(
        w.oracle_keys[:1], w.domain, w.time,
        [OracleEntry(0, price, 0), OracleEntry(ORACLE_UNDERLYING_BASE + ETH, price, 0)],
    )
    orders = [w.order("maker", 0, maker_buys, price, size), w.order("taker", 0, not maker_buys, price, size)]
    records = CheckedRun(w).run([oracle, encode_trade(0, 1, size)], orders)
    assert [r.receipt.code for r in records] == [Code.OK, Code.OK], records[-1].receipt
    notional = size * price
    fee = funds - w.account("taker").collateral
    rebate = w.account("maker").collateral - funds
    exact_fee = Fraction(notional * taker_bps, BPS)
    exact_rebate = Fraction(notional * rebate_bps, BPS)
    assert exact_fee <= fee < exact_fee + 1
    assert exact_rebate - 1 < rebate <= exact_rebate
    assert w.global_().fee_pool == fee - rebate
