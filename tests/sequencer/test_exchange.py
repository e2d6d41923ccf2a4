"""The core: fills through the STF, verdicts, cancels, L1 items, risk steps, batches, recovery."""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import pytest

from sequencer.exchange import Exchange, ExchangeConfig
from sequencer.intake import IntakeError, OrderSubmission
from sequencer.orders import (
    FLAG_IOC,
    FLAG_POST_ONLY,
    FLAG_REDUCE_ONLY,
    Order,
    Reason,
    Status,
    Verdict,
)
from sequencer.service import ExchangeService
from state.batch import Batch
from state.context import L1Deposit, L1Forced
from state.errors import Code
from state.signing import order_hash
from state.transition import apply_step
from state.txs import (
    KIND_CANCEL,
    KIND_TRADE,
    decode_order_entry,
    encode_forced_cancel,
    encode_forced_withdraw,
    encode_trade,
)
from tests.sequencer.harness import T0, USDC, Desk, replay_roots
from tests.world import BTC_PERP, ETH, ETH_CALL, ETH_PERP

MAX_BYTES = 120_000


def live_matches_book(ex: Exchange) -> None:
    """The core's record of live orders is exactly the engine's resting orders."""
    resting = {
        o.order.order_id for m in ex.engine.markets for b in (True, False) for o in ex.engine.book(m).orders(b)
    }
    assert set(ex._live) == resting


def digests(desk: Desk, encoded: bytes) -> set[bytes]:
    """The EIP-712 digests of a batch's order table."""
    owners = {index: desk.address(name) for name, index in desk.index.items()}
    out = set()
    for entry in Batch.decode(encoded).orders:
        order = decode_order_entry(entry)
        assert order is not None
        out.add(order_hash(desk.world.domain, owners[order.body.account], order.body))
    return out


def close_and_replay(desk: Desk) -> list[bytes]:
    desk.ex.close_batch(desk.now)
    batches = desk.ex.pending_batches()
    roots = replay_roots(desk.world, batches)
    assert roots == [b.post_root for b in batches]
    assert roots[-1] == desk.ex.root
    return roots


# ============================================================================ fills


def test_fills_go_through_the_stf() -> None:
    desk = Desk.create(traders=("m1", "m2", "taker"))
    ex = desk.ex
    a1 = desk.place("m1", ETH_PERP, False, 3_001_000, 4)
    a2 = desk.place("m2", ETH_PERP, False, 3_002_000, 4)
    fee_pool = ex.view.global_().fee_pool
    out = desk.place("taker", ETH_PERP, True, 3_005_000, 6)
    assert out.status is Status.FILLED and out.filled == 6
    assert [(f.maker, f.price, f.size) for f in out.fills] == [
        (a1.order_hash, 3_001_000, 4), (a2.order_hash, 3_002_000, 2)]
    batch = ex.open_batch
    assert batch is not None
    for f in out.fills:  # each fill is the trade step it names, with an OK receipt
        assert f.batch == batch.index and batch.steps[f.step][0] == KIND_TRADE
        assert batch.receipts[f.step].code is Code.OK
    # each order is posted once in the batch's table
    assert sorted(batch.table.refs) == sorted([a1.order_hash, a2.order_hash, out.order_hash])
    taker = ex.account(desk.index["taker"])
    assert taker is not None and taker.positions[0].size == 6
    assert ex.account(desk.index["m1"]).positions[0].size == -4  # type: ignore[union-attr]
    assert ex.view.global_().fee_pool > fee_pool
    assert ex.order_state(a1.order_hash).filled == 4 and ex.order(a2.order_hash).remaining == 2  # type: ignore[union-attr]
    live_matches_book(ex)
    close_and_replay(desk)


def test_refused_step_leaves_view_unchanged_and_out_of_the_batch() -> None:
    desk = Desk.create()
    ex = desk.ex
    maker = desk.place("maker", ETH_PERP, False, 3_001_000, 2)
    desk.place("taker", ETH_PERP, True, 3_001_000, 1)
    batch = ex.open_batch
    assert batch is not None
    before = ex.view.dirty_leaves()
    ref = batch.table.refs[maker.order_hash]
    other = next(r for d, r in batch.table.refs.items() if d != maker.order_hash)
    receipt = apply_step(ex.view, encode_trade(ref, other, 5), batch.ctx)  # overfills both
    assert receipt.code is Code.ORDER_OVERFILL
    assert ex.view.dirty_leaves() == before


def test_reject_maker_lacking_margin_taker_continues() -> None:
    desk = Desk.create(traders=("poor", "rich", "taker"))
    ex = desk.ex
    bad = desk.place("poor", ETH_PERP, False, 3_001_000, 30_000)  # 90k notional on 100k
    good = desk.place("rich", ETH_PERP, False, 3_002_000, 20_000)
    ex.withdraw(desk.withdrawal("poor", 95_000 * USDC, 0), desk.now)  # no position: allowed
    steps_before = len(ex.open_batch.steps)  # type: ignore[union-attr]
    # 20k units = 60k USDC: the poor maker's 10% requirement (6k) exceeds its 5k
    out = desk.place("taker", ETH_PERP, True, 3_002_000, 20_000)
    assert out.status is Status.FILLED
    assert [f.maker for f in out.fills] == [good.order_hash]
    assert [(r.order_id, r.reason) for r in out.removed] == [(bad.order_hash, Reason.STF_REJECTED)]
    assert ex.order(bad.order_hash) is None
    batch = ex.open_batch
    assert batch is not None and len(batch.steps) == steps_before + 1  # only the accepted fill
    assert bad.order_hash not in batch.table.refs
    # it never reached a batch, so it is remembered off-chain
    assert ex.known(bad.order_hash) == "DUPLICATE_ORDER"
    live_matches_book(ex)
    close_and_replay(desk)


def test_blame_of_a_refused_fill() -> None:
    desk = Desk.create()
    ex = desk.ex
    maker = desk.place("maker", ETH_PERP, False, 3_001_000, 10)
    tsub = desk.order("taker", ETH_PERP, True, 3_001_000, 5)
    digest = desk.digest("taker", tsub)
    mk = Order(maker.order_hash, desk.index["maker"], ETH_PERP, False, 3_001_000, 10)
    tk = Order(digest, desk.index["taker"], ETH_PERP, True, 3_001_000, 5)
    from sequencer.exchange import _Live

    order = decode_order_entry(tsub.entry or b"")
    assert order is not None
    ex._live[digest] = _Live(order, tsub.entry or b"", digest, desk.address("taker"), False)
    try:
        before = desk.state()
        # 6 > the taker's signed 5: the taker overfills, the maker alone is fine
        assert ex._check_fill(mk, tk, 3_001_000, 6) is Verdict.REJECT_TAKER
        assert desk.state() == before  # nothing applied, nothing posted
        ex.withdraw(desk.withdrawal("maker", 100_000 * USDC - 10_000, 0), desk.now)  # 0.01 USDC left
        desk.prices({ETH_PERP: 3_500_000})  # selling at 3.001M now loses ~2.5 USDC at once
        assert ex._check_fill(mk, tk, 3_001_000, 5) is Verdict.REJECT_MAKER
    finally:
        del ex._live[digest]


def test_market_and_reduce_only_orders() -> None:
    desk = Desk.create()
    ex = desk.ex
    desk.place("maker", ETH_PERP, False, 3_001_000, 5)
    out = desk.place("taker", ETH_PERP, True, 3_300_000, 10, market_order=True)
    assert out.status is Status.CANCELLED and out.reason is Reason.IOC_REMAINDER and out.filled == 5
    # the taker is long 5 now: a reduce-only sell of 10 rests (capped when it fills)
    ro = desk.place("taker", ETH_PERP, False, 3_010_000, 10, flags=FLAG_REDUCE_ONLY)
    assert ro.status is Status.RESTING
    fill = desk.place("maker", ETH_PERP, True, 3_010_000, 10)
    assert fill.filled == 5 and ex.account(desk.index["taker"]).positions == ()  # type: ignore[union-attr]
    live_matches_book(ex)
    close_and_replay(desk)


# ============================================================================ cancels


def test_cancel_policy() -> None:
    desk = Desk.create()
    ex = desk.ex
    # never posted: taken off the book only, and remembered
    quiet = desk.place("maker", ETH_PERP, False, 3_003_000, 5)
    out = ex.cancel_order(desk.cancel("maker", quiet.order_hash), desk.now)
    assert out.step is None and out.remaining == 5 and ex.order(quiet.order_hash) is None
    assert ex.known(quiet.order_hash) == "DUPLICATE_ORDER"
    # partly filled in the open batch: a cancel step reusing its entry
    part = desk.place("maker", ETH_PERP, False, 3_001_000, 5)
    desk.place("taker", ETH_PERP, True, 3_001_000, 2)
    entries = len(ex.open_batch.table)  # type: ignore[union-attr]
    out = ex.cancel_order(desk.cancel("maker", part.order_hash), desk.now)
    assert out.step is not None and out.remaining == 3 and len(ex.open_batch.table) == entries  # type: ignore[union-attr]
    assert ex.order_state(part.order_hash).cancelled
    # partly filled in an earlier batch, still resting: posted again in the new batch
    old = desk.place("maker", ETH_PERP, False, 3_002_000, 5)
    desk.place("taker", ETH_PERP, True, 3_002_000, 1)
    ex.close_batch(desk.now)
    out = ex.cancel_order(desk.cancel("maker", old.order_hash), desk.now)
    batch = ex.open_batch
    assert out.step is not None and batch is not None and old.order_hash in batch.table.refs
    assert batch.steps[out.step.step][0] == KIND_CANCEL
    with pytest.raises(IntakeError, match="ORDER_CANCELLED"):
        ex.place_order(OrderSubmission.from_entry(batch.table.entries[batch.table.refs[old.order_hash]]), desk.now)
    # an IOC partly filled in an earlier batch no longer rests: its entry comes with the cancel
    desk.place("maker", ETH_PERP, True, 2_999_000, 1)
    ioc_sub = desk.order("taker", ETH_PERP, False, 2_999_000, 3, flags=FLAG_IOC)
    ioc = ex.place_order(ioc_sub, desk.now)
    assert ioc.filled == 1
    ex.close_batch(desk.now)
    with pytest.raises(IntakeError, match="UNKNOWN_ORDER"):
        ex.cancel_order(desk.cancel("taker", ioc.order_hash), desk.now)
    out = ex.cancel_order(desk.cancel("taker", ioc.order_hash, ioc_sub.entry), desk.now)
    assert out.step is not None and out.remaining == 0 and ex.order_state(ioc.order_hash).cancelled
    live_matches_book(ex)
    close_and_replay(desk)


# ============================================================================ withdrawals and L1 items


def test_withdraw() -> None:
    desk = Desk.create()
    ex = desk.ex
    before = ex.account(desk.index["maker"])
    out = ex.withdraw(desk.withdrawal("maker", 7 * USDC, 0, b"\x99" * 20), desk.now)
    after = ex.account(desk.index["maker"])
    assert before is not None and after is not None
    assert (after.collateral, after.nonce) == (before.collateral - 7 * USDC, 1)
    record = ex.view.withdrawal(out.withdrawal_id or 0)
    assert record is not None and (record.recipient, record.amount) == (b"\x99" * 20, 7 * USDC)
    assert ex.withdraw(desk.withdrawal("maker", USDC, 1), desk.now).withdrawal_id == 1
    close_and_replay(desk)


def test_deposits_and_forced_items() -> None:
    desk = Desk.create(traders=("maker", "taker"))
    ex = desk.ex
    out = ex.add_l1_items([L1Deposit(desk.address("new"), 5 * USDC)], [], desk.now)
    assert [r.receipt.code for r in out.deposits] == [Code.OK]
    idx = ex.account_index(desk.address("new"))
    assert idx == 3 and ex.account(idx).collateral == 5 * USDC  # type: ignore[union-attr]
    # handing the same items again (e.g. after an L1 watcher restart) adds nothing
    again = ex.add_l1_items([L1Deposit(desk.address("new"), 5 * USDC)], [], desk.now, deposit_start=2)
    assert again.deposits == () and ex.account(idx).collateral == 5 * USDC  # type: ignore[union-attr]
    # forced cancel of a resting order, forced withdraw, and a forced item from a stranger
    resting = desk.place("maker", ETH_PERP, False, 3_004_000, 5)
    body = next(iter(ex._live.values())).order.body
    forced = [
        L1Forced(desk.address("maker"), encode_forced_cancel(body)),
        L1Forced(desk.address("taker"), encode_forced_withdraw(desk.index["taker"], desk.address("taker"), USDC)),
        L1Forced(desk.address("taker"), encode_forced_withdraw(desk.index["maker"], desk.address("taker"), USDC)),
    ]
    collateral = ex.account(desk.index["taker"]).collateral  # type: ignore[union-attr]
    out = ex.add_l1_items([], forced, desk.now)
    assert [r.receipt.code for r in out.forced] == [Code.OK, Code.OK, Code.NOT_OWNER]
    assert [r.order_id for r in out.removed] == [resting.order_hash]
    assert ex.order(resting.order_hash) is None and ex.order_state(resting.order_hash).cancelled
    taker = ex.account(desk.index["taker"])
    assert taker is not None and taker.collateral == collateral - USDC and taker.nonce == 0
    assert ex.view.global_().next_forced == 3
    roots = close_and_replay(desk)
    assert ex.pending_batches()[-1].forced_count == 3 and len(roots) >= 2


# ============================================================================ oracle, funding, settle, risk steps


def test_oracle_hook_and_batch_time() -> None:
    desk = Desk.create()
    ex = desk.ex
    seen: list[int] = []
    ex.oracle_hooks.append(lambda core, outcome: seen.append(outcome.step.batch))
    desk.place("maker", ETH_PERP, False, 3_001_000, 5)
    open_index = ex.open_batch.index  # type: ignore[union-attr]
    desk.now += 3
    desk.prices()  # newer than the open batch: that batch is closed first
    assert ex.pending_batches()[-1].index == open_index
    assert seen == [open_index + 1] and ex.open_batch.timestamp == desk.now  # type: ignore[union-attr]
    close_and_replay(desk)


def test_funding_settle_and_option_orders() -> None:
    desk = Desk.create()
    ex = desk.ex
    desk.now += 100
    desk.prices({ETH_PERP: 3_010_000, ETH_CALL: 40_000})
    assert ex.funding(desk.now).step.receipt.code is Code.OK
    call = desk.place("maker", ETH_CALL, False, 40_000, 5)
    desk.now = T0 + 7 * 86_400 + 10
    desk.prices({ETH_PERP: 3_000_000}, {ETH: 3_300_000})
    out = ex.settle(ETH_CALL, desk.now)
    assert out.step.receipt.code is Code.OK and [r.order_id for r in out.removed] == [call.order_hash]
    assert ex.view.prices().markets[ETH_CALL].mark == 100_000  # 3.3M spot - 3.2M strike
    live_matches_book(ex)
    close_and_replay(desk)


def _underwater(desk: Desk) -> None:
    """'whale' (10k USDC) buys 30k units (90k USDC) from 'maker' at 3.0M."""
    desk.fund(["whale"], 10_000 * USDC)
    desk.place("maker", ETH_PERP, False, 3_000_000, 30_000)
    assert desk.place("whale", ETH_PERP, True, 3_000_000, 30_000).filled == 30_000


def test_liquidation_and_reduce_only_sweep() -> None:
    desk = Desk.create(traders=("maker", "liq"))
    _underwater(desk)
    ex = desk.ex
    whale = desk.index["whale"]
    ro = desk.place("whale", ETH_PERP, False, 3_100_000, 30_000, flags=FLAG_REDUCE_ONLY)
    desk.prices({ETH_PERP: 2_800_000})
    entry = desk.entry("liq", desk.body("liq", ETH_PERP, True, 2_800_000, 30_000))
    out = ex.liquidate(whale, entry, 30_000, desk.now)
    assert out.step.receipt.code is Code.OK
    assert ex.account(whale).positions == ()  # type: ignore[union-attr]
    assert [(r.order_id, r.reason) for r in out.removed] == [(ro.order_hash, Reason.REDUCE_ONLY)]
    assert ex.account(desk.index["liq"]).positions[0].size == 30_000  # type: ignore[union-attr]
    live_matches_book(ex)
    close_and_replay(desk)


def test_deleverage() -> None:
    desk = Desk.create(traders=("maker", "liq"))
    _underwater(desk)
    ex = desk.ex
    whale, maker = desk.index["whale"], desk.index["maker"]
    desk.prices({ETH_PERP: 2_500_000})  # a 15k loss on 10k: bankrupt, the fund is empty
    entry = desk.entry("liq", desk.body("liq", ETH_PERP, True, 2_500_000, 30_000))
    with pytest.raises(IntakeError, match="DELEVERAGE_REQUIRED"):
        ex.liquidate(whale, entry, 30_000, desk.now)
    out = ex.deleverage(whale, maker, ETH_PERP, 30_000, desk.now)
    assert out.step.receipt.code is Code.OK
    assert ex.account(whale).positions == () and ex.account(maker).positions == ()  # type: ignore[union-attr]
    close_and_replay(desk)


# ============================================================================ batches


def _random_session(desk: Desk, rng: random.Random, n: int, close_every: int = 0) -> None:
    """Makers quote, takers cross (some sweeping many levels), some cancels and withdrawals."""
    ex = desk.ex
    names = list(desk.index)
    resting: list[tuple[str, bytes]] = []
    nonces = dict.fromkeys(names, 0)
    for i in range(n):
        who = rng.choice(names)
        roll = rng.random()
        try:
            if roll < 0.08 and resting:
                name, digest = resting.pop(rng.randrange(len(resting)))
                ex.cancel_order(desk.cancel(name, digest), desk.now)
            elif roll < 0.10:
                ex.withdraw(desk.withdrawal(who, USDC, nonces[who]), desk.now)
                nonces[who] += 1
            elif roll < 0.65:
                is_buy = rng.random() < 0.5
                price = 3_000_000 + (-1 if is_buy else 1) * 1_000 * rng.randint(1, 8)
                out = desk.place(who, ETH_PERP, is_buy, price, rng.randint(1, 6), flags=FLAG_POST_ONLY)
                if out.status is Status.RESTING:
                    resting.append((who, out.order_hash))
            else:
                is_buy = rng.random() < 0.5
                price = 3_000_000 + (1 if is_buy else -1) * 1_000 * rng.randint(1, 9)
                flags = FLAG_IOC if rng.random() < 0.5 else 0
                out = desk.place(who, ETH_PERP, is_buy, price, rng.randint(1, 40), flags=flags)
                if out.status is Status.RESTING:
                    resting.append((who, out.order_hash))
        except IntakeError:
            pass
        if close_every and i % close_every == close_every - 1:
            desk.now += 1
            ex.close_batch(desk.now)


def test_batches_close_by_size_and_replay_to_the_same_roots() -> None:
    config = ExchangeConfig(max_batch_bytes=2_400, reserve_bytes=400)
    desk = Desk.create(config=config, traders=tuple(f"t{i}" for i in range(6)), amount=1_000_000 * USDC)
    _random_session(desk, random.Random(5), 400)
    ex = desk.ex
    close_and_replay(desk)
    batches = ex.pending_batches()
    assert len(batches) > 10
    stamps = [b.timestamp for b in batches]
    assert stamps == sorted(stamps) and stamps[-1] <= desk.now
    split = False
    for b in batches:
        assert len(b.encoded) <= 2_400 and b.step_count == len(b.receipts)
        decoded = Batch.decode(b.encoded)
        assert len(set(decoded.orders)) == len(decoded.orders)  # each order once per batch
        split |= len(b.encoded) > 2_400 - 400
    assert split  # some batch filled up within a command
    live_matches_book(ex)


def test_fills_of_one_order_straddle_batches() -> None:
    config = ExchangeConfig(max_batch_bytes=600, reserve_bytes=100)
    desk = Desk.create(config=config, traders=tuple(f"m{i}" for i in range(8)) + ("taker",))
    ex = desk.ex
    ex.close_batch(desk.now)
    for i in range(8):
        desk.place(f"m{i}", ETH_PERP, False, 3_001_000 + 1_000 * i, 2)
    out = desk.place("taker", ETH_PERP, True, 3_010_000, 16)
    assert out.filled == 16 and len({f.batch for f in out.fills}) >= 2
    # a maker filled in two batches is posted in each batch's table
    first = desk.place("m0", ETH_PERP, False, 3_020_000, 4)
    desk.place("taker", ETH_PERP, True, 3_020_000, 1)
    ex.close_batch(desk.now)
    desk.place("taker", ETH_PERP, True, 3_020_000, 1)
    ex.close_batch(desk.now)
    for b in ex.pending_batches()[-2:]:
        assert first.order_hash in digests(desk, b.encoded)
    assert ex.order(first.order_hash).remaining == 2  # type: ignore[union-attr]
    close_and_replay(desk)


def test_should_close_timestamps_and_confirm(tmp_path: Path) -> None:
    desk = Desk.create(tmp_path / "seq", config=ExchangeConfig(max_batch_age=2))
    ex = desk.ex
    ex.close_batch(desk.now)
    assert not ex.should_close(desk.now + 100)
    assert desk.place("maker", ETH_PERP, False, 3_001_000, 1).status is Status.RESTING
    assert ex.open_batch is None  # a resting order is no step

    def batch_time() -> int:
        b = ex.open_batch
        assert b is not None
        return b.timestamp

    ex.withdraw(desk.withdrawal("maker", 1, 0), desk.now)
    opened = batch_time()
    assert opened == desk.now and not ex.should_close(desk.now + 1) and ex.should_close(desk.now + 2)
    # a clock running backwards never makes a batch time run backwards
    ex.withdraw(desk.withdrawal("maker", 1, 1), desk.now - 50)
    closed = ex.close_batch(desk.now - 50)
    assert closed is not None and closed.timestamp == opened
    ex.withdraw(desk.withdrawal("maker", 1, 2), desk.now - 60)
    assert batch_time() == opened
    ex.close_batch(desk.now + 7)
    ex.withdraw(desk.withdrawal("maker", 1, 3), desk.now + 7)
    assert batch_time() == desk.now + 7
    pending = ex.pending_batches()
    ex.confirm_published(pending[0].index)
    assert [b.index for b in ex.pending_batches()] == [b.index for b in pending[1:]]
    desk = desk.reopen(tmp_path / "seq")
    assert [b.index for b in desk.ex.pending_batches()] == [b.index for b in pending[1:]]
    desk.ex.close()


# ============================================================================ recovery


def test_recovery_after_a_clean_close(tmp_path: Path) -> None:
    directory = tmp_path / "seq"
    desk = Desk.create(directory, config=ExchangeConfig(max_batch_bytes=2_500, reserve_bytes=400, checkpoint_every=3),
                       traders=("a", "b", "c"), amount=1_000_000 * USDC)
    _random_session(desk, random.Random(9), 150, close_every=40)
    before = desk.state()
    desk = desk.reopen(directory, config=ExchangeConfig(max_batch_bytes=2_500, reserve_bytes=400, checkpoint_every=3))
    assert desk.state() == before
    _random_session(desk, random.Random(10), 80)
    live_matches_book(desk.ex)
    close_and_replay(desk)
    desk.ex.close()


def test_recovery_equals_the_live_core_at_every_point(tmp_path: Path) -> None:
    """After any command, a copy of the directory (as a crash would leave it once the
    WAL is synced) recovers to exactly the live core's state."""
    config = ExchangeConfig(max_batch_bytes=2_000, reserve_bytes=300, checkpoint_every=2)
    directory = tmp_path / "live"
    desk = Desk.create(directory, config=config, traders=("a", "b", "c", "d"), amount=1_000_000 * USDC)
    rng = random.Random(3)
    for round_ in range(60):
        _random_session(desk, rng, rng.randint(1, 9), close_every=7 if round_ % 3 == 0 else 0)
        if round_ % 5 == 4:
            desk.prices()
        assert desk.ex.wal is not None
        desk.ex.wal.sync()
        copy = tmp_path / f"copy{round_}"
        shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("LOCK"))
        twin = Exchange.open(copy, desk.world.chain, dict(desk.world.leaves), config=config, sync=False)
        other = Desk(twin, desk.world, desk.now, dict(desk.index), desk.salts)
        assert other.state() == desk.state(), round_
        twin.close()
        shutil.rmtree(copy)
    live_matches_book(desk.ex)
    close_and_replay(desk)
    desk.ex.close()


# ============================================================================ async API


def test_service_acknowledges_durable_commands(tmp_path: Path) -> None:
    async def main() -> None:
        desk = Desk.create(tmp_path / "seq")
        desk.ex.close()
        clock = [desk.now]
        svc = ExchangeService.open(tmp_path / "seq", desk.world.chain, dict(desk.world.leaves),
                                   clock=lambda: clock[0], sync=False)
        desk.ex = svc.core
        wal = svc.core.wal
        assert wal is not None
        subs = [desk.order("maker", ETH_PERP, False, 3_001_000 + 1_000 * i, 2) for i in range(20)]
        outs = await asyncio.gather(*(svc.place_order(s) for s in subs))
        assert all(o.status is Status.RESTING and o.seq <= wal.durable_seq for o in outs)
        assert wal.stats.fsyncs < 20  # acknowledgments shared fsyncs
        taker = await svc.place_order(desk.order("taker", ETH_PERP, True, 3_005_000, 9))
        assert taker.filled == 9 and taker.seq <= wal.durable_seq
        with pytest.raises(IntakeError, match="DUPLICATE_ORDER"):
            await svc.place_order(subs[0])
        svc.start_batcher(interval=0.01)
        clock[0] += 5
        for _ in range(100):
            await asyncio.sleep(0.01)
            if svc.core.open_batch is None:
                break
        assert svc.core.open_batch is None
        await svc.aclose()

    asyncio.run(main())


def test_two_markets_in_one_batch() -> None:
    desk = Desk.create()
    desk.place("maker", BTC_PERP, False, 6_001_000, 3)
    desk.place("maker", ETH_PERP, True, 2_999_000, 3)
    assert desk.place("taker", BTC_PERP, True, 6_001_000, 3).filled == 3
    assert desk.place("taker", ETH_PERP, False, 2_999_000, 2).filled == 2
    taker = desk.ex.account(desk.index["taker"])
    assert taker is not None and [(p.market, p.size) for p in taker.positions] == [(ETH_PERP, -2), (BTC_PERP, 3)]
    close_and_replay(desk)


def test_bench_smoke() -> None:
    from sequencer.intake_bench import bench_intake_orders

    assert bench_intake_orders(300) > 0


# ============================================================================ sealing thread


@pytest.mark.parametrize("sealer", ["thread", "sliced"])
def test_sealing_thread_gives_the_same_batches_roots_and_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sealer: str
) -> None:
    """The closing work on a sealer — a sealing thread, or slices of two leaves run
    between the commands (``SlicedSealer``, as the service does on its loop) — overlaps
    the next batch's commands and gives byte-identical batches and roots, a leaf cache
    reset and checkpoints included, and the directory it leaves recovers to the same
    root."""
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    import sequencer.exchange
    from sequencer.exchange import SlicedSealer

    slices: list[Callable[[], None]] = []
    executor: ThreadPoolExecutor | SlicedSealer
    if sealer == "thread":
        executor = ThreadPoolExecutor(max_workers=1)
    else:
        monkeypatch.setattr(sequencer.exchange, "SEAL_SLICE_LEAVES", 2)
        def later(callback: Callable[[], None]) -> bool:
            slices.append(callback)
            return True

        executor = SlicedSealer(later)

    config = ExchangeConfig(max_batch_bytes=2_000, reserve_bytes=300, checkpoint_every=2,
                            cache_reset_batches=3)
    inline = Desk.create(tmp_path / "inline", config=config)
    threaded = Desk.create(tmp_path / "threaded", config=config)
    executor = ThreadPoolExecutor(max_workers=1)
    threaded.ex.seal_in_background(executor)
    rng = random.Random(5)
    overlapped = 0
    for i in range(120):
        if slices:  # one slice between two commands
            slices.pop(0)()
        side = rng.random() < 0.5
        price = 3_000_000 + 1_000 * rng.randint(-3, 3)
        who = "maker" if i % 2 else "taker"
        size = rng.randint(1, 4)
        outs = [d.place(who, ETH_PERP, side, price, size) for d in (inline, threaded)]
        assert [(o.status, o.filled, [(f.batch, f.step) for f in o.fills]) for o in outs][0] == \
            [(o.status, o.filled, [(f.batch, f.step) for f in o.fills]) for o in outs][1]
        overlapped += threaded.ex.sealing is not None  # the next command runs meanwhile
        if i % 17 == 0:
            threaded.ex.collect_sealed()
        if i % 40 == 39:
            for d in (inline, threaded):
                d.now += 3
                d.ex.close_batch(d.now, wait=False)
    assert threaded.ex.next_batch_index >= 6 and overlapped > 0
    for d in (inline, threaded):
        d.ex.close_batch(d.now)
    a, b = inline.ex.pending_batches(), threaded.ex.pending_batches()
    assert [(x.index, x.encoded, x.pre_root, x.post_root) for x in a] == \
        [(x.index, x.encoded, x.pre_root, x.post_root) for x in b]
    assert replay_roots(threaded.world, b) == [x.post_root for x in b]
    assert threaded.ex.root == inline.ex.root == b[-1].post_root
    threaded.ex.seal_in_background(None)
    executor.shutdown()
    reopened = threaded.reopen(tmp_path / "threaded", config=config)
    assert reopened.ex.root == inline.ex.root
    assert [x.encoded for x in reopened.ex.pending_batches()] == [x.encoded for x in a]
    reopened.ex.close()
    inline.ex.close()


def test_sliced_sealer_runs_jobs_in_order_one_slice_per_call() -> None:
    """``SlicedSealer`` runs one slice per scheduled call, jobs in submission order; a
    future's ``result`` runs what is left of it and of the jobs before it; an error
    reaches the future; without a scheduler (``schedule`` returns False) the work runs
    at once."""
    from collections.abc import Callable, Generator

    from sequencer.exchange import SlicedSealer

    ran: list[str] = []
    calls: list[Callable[[], None]] = []

    def job(name: str, slices: int) -> Generator[None, None, str]:
        for k in range(slices):
            if k:
                yield
            ran.append(f"{name}{k}")
        return name

    def failing() -> Generator[None, None, str]:
        yield
        raise ValueError("boom")

    def later(callback: Callable[[], None]) -> bool:
        calls.append(callback)
        return True

    sealer = SlicedSealer(later)
    first, second = sealer.submit(job, "a", 3), sealer.submit(job, "b", 2)
    assert ran == [] and len(calls) == 1
    calls.pop()()
    assert ran == ["a0"] and len(calls) == 1 and not first.done()
    assert second.result() == "b"
    assert ran == ["a0", "a1", "a2", "b0", "b1"] and first.result() == "a"
    calls.pop()()  # a stale call finds nothing left
    assert calls == []
    bad = sealer.submit(failing)
    assert isinstance(bad.exception(), ValueError)
    inline = SlicedSealer(lambda callback: False)
    assert inline.submit(job, "c", 2).done() and ran[-2:] == ["c0", "c1"]
