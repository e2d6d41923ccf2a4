"""Differential tests of the Vyper STF twin (l1_contracts/contracts/stf/) against state/.

Every step is run by the Python STF on a recording view (which gives the exact
keys it touches) and by the twin with those keys' pre-values as its witness;
the twin's written leaves applied to the pre-state must equal Python's
post-state byte for byte, with the same outcome code (tests/l1/stf_twin.py).

* every step of every stored vector (tests/vectors/*.json);
* Hypothesis: hostile batches of every kind on a populated world, random and
  kind-prefixed bytes, fields at their bounds, random steps on a 64-market
  world of 16-position accounts;
* the arithmetic and codec helpers against state/arith.py and state/layout.py;
* witnesses that lack a leaf, an order entry or the right queue item revert;
* code size (EIP-170) and gas of every kind's heaviest step (run with ``-s``).

Environment: ``HFX_FUZZ=long`` runs ten times as many examples.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import boa
import pytest
from boa.contracts.vyper.vyper_contract import VyperContract
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from l1_contracts.worst_cases import Scenario, heavy_oracle_refusals, heavy_scenarios, heavy_world
from state.arith import div_ceil, div_floor, div_trunc, mul_bps_ceil, mul_bps_floor
from state.batch import decode_written_order, pack_entry
from state.constants import (
    ACCOUNT_LIMIT,
    COLLATERAL_LIMIT,
    FUNDING_INDEX_LIMIT,
    POOL_LIMIT,
    U64_LIMIT,
)
from state.context import BatchContext, ChainConfig, L1Deposit, L1Forced, ListQueues
from state.eip712 import (
    SECP256K1_N,
    cancel_digest,
    domain_separator,
    oracle_digest,
    order_digest,
    recover_signer,
    sign_digest,
    withdraw_digest,
)
from state.errors import Code
from state.keccak import keccak256
from state.layout import (
    GLOBAL_KEY,
    PRICES_KEY,
    Account,
    Global,
    MarketPrice,
    Position,
    Prices,
    account_index_key,
    account_key,
    order_key,
    withdrawal_key,
)
from state.signing import signed_oracle
from state.txs import KIND_NAMES, OracleEntry, decode_order_entry, encode_deposit, encode_trade
from tests.l1 import stf_twin as tw
from tests.l1.stf_twin_worlds import heavy_steps
from tests.strategies import (
    ALL_KINDS,
    Actors,
    HostileBatch,
    clone_world,
    hostile_batches,
    kind_prefixed_steps,
    packable_entries,
    populated_world,
    random_steps,
    scaled_examples,
)
from tests.world import World

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTORS = sorted(VECTOR_DIR.glob("*.json"))
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
EXECUTION_BUDGET = 400_000
"""Gas the execution of one step may take within a 1,000,000-gas one-step proof."""

I256 = st.integers(-(1 << 255) + 1, (1 << 255) - 1)
DIVISORS = st.one_of(st.sampled_from([1, 2, 3, 7, 10_000, 20_000, 28_800, 10**9]), st.integers(1, 1 << 128))


# ============================================================================ fixtures


@pytest.fixture(scope="module")
def twin() -> tw.Twin:
    """The dispatcher and its four step contracts, deployed once."""
    return tw.deploy()


@pytest.fixture(scope="module")
def helpers() -> VyperContract:
    """The helper harness, deployed once."""
    return tw.harness()


@cache
def template() -> World:
    """The populated world (positions in every market, a liquidatable and a bankrupt
    account) the hostile strategies are drawn against."""
    return populated_world()


ACTORS = Actors.of(template())


def run_hostile(twin: tw.Twin, world: World, batch: HostileBatch) -> None:
    """Check every step of a hostile batch on a copy of ``world``."""
    w = clone_world(world)
    w.queues.deposits.extend(batch.deposits)
    w.queues.forced_txs.extend(batch.forced)
    _, results = tw.run_batch(twin, dict(w.leaves), batch.steps, batch.time, w.chain, batch.orders, w.queues)
    for py, _ in results:
        kind = KIND_NAMES.get(py.receipt.kind, "unknown")
        event(f"{kind} {py.receipt.code.name}")


def check_scenario(twin: tw.Twin, s: Scenario) -> tuple[tw.PyStep, tw.Outcome]:
    """Check one crafted step."""
    ctx = BatchContext.create(s.time, s.chain, s.queues, s.orders)
    return tw.check_step(twin, s.leaves, s.step, ctx, s.orders, s.queues)


# ============================================================================ size


def test_every_contract_fits_eip170(twin: tw.Twin) -> None:
    sizes = twin.runtime_sizes()
    print("\nruntime bytecode sizes:", ", ".join(f"{k} {v}" for k, v in sizes.items()))
    for name, size in sizes.items():
        code = boa.env.evm.get_code((twin.stf if name == "Stf" else twin.parts[name]).address)
        assert len(code) == size
        assert size <= tw.EIP170_LIMIT, f"{name} is {size} bytes"


# ============================================================================ 1. vectors


def _unhx(text: str) -> bytes:
    assert text.startswith("0x")
    return bytes.fromhex(text[2:])


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_steps_agree(twin: tw.Twin, path: Path) -> None:
    """Every step of the vector: same code, same leaves; and the final leaves are the
    vector's post-state."""
    vector: dict[str, Any] = json.loads(path.read_text())
    c = vector["context"]
    chain = ChainConfig(
        c["chain_id"], _unhx(c["rollup"]), frozenset(_unhx(k) for k in c["oracle_keys"]),
        c["oracle_threshold"],
    )
    queues = ListQueues(
        [L1Deposit(_unhx(d["owner"]), d["amount"]) for d in c["deposits"]],
        [L1Forced(_unhx(f["sender"]), _unhx(f["payload"])) for f in c["forced"]],
    )
    pre = {_unhx(k): _unhx(v) for k, v in vector["pre"]["leaves"].items()}
    steps = [_unhx(s) for s in vector["steps"]]
    leaves, results = tw.run_batch(twin, dict(pre), steps, c["time"], chain, [_unhx(o) for o in c["orders"]], queues)
    assert [int(py.receipt.code) for py, _ in results] == [r["code"] for r in vector["receipts"]]
    expected = dict(pre)
    expected.update({_unhx(k): _unhx(v) for k, v in vector["post"]["leaves"].items()})
    assert leaves == expected


def test_vectors_are_all_there() -> None:
    assert len(VECTORS) >= 140


# ============================================================================ 2. Hypothesis


@settings(max_examples=scaled_examples(60), deadline=None, suppress_health_check=SLOW_OK)
@given(batch=hostile_batches(ACTORS, max_steps=10))
def test_hostile_batches_agree(twin: tw.Twin, batch: HostileBatch) -> None:
    """Well-formed steps of every kind with hostile fields, against positions in every
    market, a liquidatable and a bankrupt account."""
    run_hostile(twin, template(), batch)


@settings(max_examples=scaled_examples(60), deadline=None, suppress_health_check=SLOW_OK)
@given(kind=st.sampled_from(ALL_KINDS), data=st.data())
def test_kind_prefixed_bytes_agree(twin: tw.Twin, kind: int, data: st.DataObject) -> None:
    """Random bodies at and around each kind's length, with a deposit and a forced item
    (whose payload is the step's head) queued."""
    step = data.draw(kind_prefixed_steps(kind), label="step")
    w = clone_world(template())
    w.queues.deposits.append(L1Deposit(b"\x22" * 20, data.draw(st.integers(0, 1 << 70))))
    w.queues.forced_txs.append(L1Forced(w.address("alice"), step[: data.draw(st.integers(0, tw.MAX_PAYLOAD))]))
    tw.run_batch(twin, dict(w.leaves), [step], ACTORS.time, w.chain, [], w.queues)


@settings(max_examples=scaled_examples(30), deadline=None, suppress_health_check=SLOW_OK)
@given(step=st.one_of(random_steps(300), st.binary(min_size=19_890, max_size=19_910)))
def test_random_bytes_agree(twin: tw.Twin, step: bytes) -> None:
    """Any bytes (empty, unknown kinds, lengths past every kind's)."""
    w = clone_world(template())
    tw.run_batch(twin, dict(w.leaves), [step], ACTORS.time, w.chain, [], w.queues)


def _at_bounds(name: str) -> World:
    """A copy of the template with one field at (or next to) its bound."""
    w = clone_world(template())
    g = w.global_()
    if name == "fee_pool":
        w.leaves[GLOBAL_KEY] = replace(g, fee_pool=POOL_LIMIT - 1).encode()
    elif name == "insurance_fund":
        w.leaves[GLOBAL_KEY] = replace(g, insurance_fund=POOL_LIMIT - 1).encode()
    elif name == "counters":
        w.leaves[GLOBAL_KEY] = replace(g, withdrawal_count=U64_LIMIT - 2, account_count=ACCOUNT_LIMIT - 2).encode()
    elif name == "collateral":
        for index in range(1, g.account_count):
            acct = w.account(index)
            w.leaves[account_key(index)] = replace(acct, collateral=COLLATERAL_LIMIT - 2, nonce=U64_LIMIT - 1).encode()
    elif name == "debt":
        for index in range(1, g.account_count):
            acct = w.account(index)
            w.leaves[account_key(index)] = replace(acct, collateral=-COLLATERAL_LIMIT + 2).encode()
    elif name == "funding_index":
        p = w.prices()
        markets = tuple(
            replace(mp, funding_index=(FUNDING_INDEX_LIMIT - 5) * (-1) ** i) for i, mp in enumerate(p.markets)
        )
        w.leaves[PRICES_KEY] = Prices(p.oracle_time, p.funding_time - 3_000, p.index, markets).encode()
    return w


BOUNDS = ("fee_pool", "insurance_fund", "counters", "collateral", "debt", "funding_index")


@cache
def bound_world(name: str) -> World:
    return _at_bounds(name)


@pytest.mark.parametrize("bound", BOUNDS)
@settings(max_examples=scaled_examples(15), deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_fields_at_bounds_agree(twin: tw.Twin, bound: str, data: st.DataObject) -> None:
    """Hostile batches on states with pools, counters, collateral, nonces or funding
    indices at their bounds (OVERFLOW, ACCOUNT_LIMIT and their neighbours)."""
    world = bound_world(bound)
    batch = data.draw(hostile_batches(ACTORS, max_steps=6), label="batch")
    run_hostile(twin, world, batch)


@cache
def heavy() -> Any:
    return heavy_world()


@settings(max_examples=scaled_examples(60), deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_heavy_world_steps_agree(twin: tw.Twin, data: st.DataObject) -> None:
    """Random steps between 16-position accounts on 64 markets."""
    s = data.draw(heavy_steps(heavy()), label="scenario")
    py, _ = check_scenario(twin, s)
    event(f"{s.kind} {py.receipt.code.name}")


# ============================================================================ 3. helpers against Python


@settings(max_examples=scaled_examples(100), deadline=None)
@given(a=I256, b=DIVISORS)
def test_divisions_match_python(helpers: VyperContract, a: int, b: int) -> None:
    assert helpers.div_floor(a, b) == div_floor(a, b)
    assert helpers.div_ceil(a, b) == div_ceil(a, b)
    assert helpers.div_trunc(a, b) == div_trunc(a, b)


@pytest.mark.parametrize("a", [0, 1, -1, 9_999, -9_999, 10_000, -10_000, 10_001, -10_001, (1 << 255) - 1, -(1 << 255) + 1])
@pytest.mark.parametrize("b", [1, 2, 10_000, (1 << 255) - 1])
def test_divisions_at_edges(helpers: VyperContract, a: int, b: int) -> None:
    assert (helpers.div_floor(a, b), helpers.div_ceil(a, b), helpers.div_trunc(a, b)) == (
        div_floor(a, b), div_ceil(a, b), div_trunc(a, b)
    )


@settings(max_examples=scaled_examples(50), deadline=None)
@given(x=st.integers(0, 1 << 200), r=st.integers(0, 0xFFFF))
def test_bps_match_python(helpers: VyperContract, x: int, r: int) -> None:
    assert tuple(helpers.bps(x, r)) == (mul_bps_ceil(x, r), mul_bps_floor(x, r))


@settings(max_examples=scaled_examples(50), deadline=None)
@given(bits=st.sampled_from([64, 88, 96, 128]), data=st.data())
def test_signed_fields_round_trip(helpers: VyperContract, bits: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    raw = int.from_bytes(x.to_bytes(bits // 8, "big", signed=True), "big")
    junk = data.draw(st.integers(0, (1 << (256 - bits)) - 1)) << bits
    assert helpers.twos(x, bits) == raw
    assert helpers.signed(raw | junk, bits) == x


def _global(data: st.DataObject) -> Global:
    def u(bits: int) -> int:
        return data.draw(st.integers(0, (1 << bits) - 1))

    return Global(u(64), u(64), u(64), u(64), u(32), u(127), u(127))


def _position(data: st.DataObject, market: int) -> Position:
    return Position(
        market, data.draw(st.integers(-(1 << 40) + 1, (1 << 40) - 1).filter(bool)),
        data.draw(st.integers(-(1 << 95) + 1, (1 << 95) - 1)), data.draw(st.integers(-(1 << 87) + 1, (1 << 87) - 1)),
    )


@settings(max_examples=scaled_examples(50), deadline=None)
@given(data=st.data())
def test_leaf_codecs_round_trip(helpers: VyperContract, data: st.DataObject) -> None:
    """Global and account leaves decode as state/layout.py decodes them and encode back
    to the same bytes; position words give their fields."""
    g = _global(data)
    decoded, encoded = helpers.global_leaf(g.encode())
    assert tuple(decoded) == (
        g.l2_time, g.next_deposit, g.next_forced, g.withdrawal_count, g.account_count,
        g.insurance_fund, g.fee_pool,
    )
    assert encoded == g.encode()
    markets = sorted(data.draw(st.lists(st.integers(0, 63), max_size=16, unique=True)))
    acct = Account(
        data.draw(st.binary(min_size=20, max_size=20)), data.draw(st.integers(0, U64_LIMIT - 1)),
        data.draw(st.integers(-COLLATERAL_LIMIT + 1, COLLATERAL_LIMIT - 1)),
        tuple(_position(data, m) for m in markets),
    )
    (owner, nonce, collateral, words), encoded = helpers.account_leaf(acct.encode())
    assert (bytes.fromhex(owner[2:]) if isinstance(owner, str) else owner) == acct.owner
    assert (nonce, collateral) == (acct.nonce, acct.collateral)
    assert encoded == acct.encode()
    for word, p in zip(words, acct.positions, strict=True):
        assert word == int.from_bytes(p.encode(), "big")
        market, size, cost, snapshot, rebuilt = helpers.position(word)
        assert (market, size, cost, snapshot, rebuilt) == (p.market, p.size, p.cost, p.funding_snapshot, word)


@settings(max_examples=scaled_examples(30), deadline=None)
@given(data=st.data())
def test_prices_leaf_round_trip(helpers: VyperContract, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 64))
    markets = tuple(
        MarketPrice(
            data.draw(st.integers(0, U64_LIMIT - 1)), data.draw(st.integers(-(1 << 127), (1 << 127) - 1)),
            data.draw(st.integers(0, (1 << 32) - 1)), data.draw(st.integers(0, 255)),
        )
        for _ in range(n)
    )
    index = tuple(data.draw(st.integers(0, U64_LIMIT - 1)) for _ in range(16))
    p = Prices(data.draw(st.integers(0, U64_LIMIT - 1)), data.draw(st.integers(0, U64_LIMIT - 1)), index, markets)
    raw = p.encode()
    assert helpers.prices_leaf(raw, n) == raw
    m = data.draw(st.integers(0, n - 1))
    mark, findex, iv, flags, entry = helpers.price_entry(raw, m)
    assert (mark, findex, iv, flags) == (markets[m].mark, markets[m].funding_index, markets[m].iv, markets[m].flags)
    assert entry == int.from_bytes(markets[m].encode(), "big")


@settings(max_examples=scaled_examples(30), deadline=None)
@given(data=st.data())
def test_small_leaves_and_keys(helpers: VyperContract, data: st.DataObject) -> None:
    value = data.draw(st.binary(max_size=32))
    assert helpers.small(value) == int.from_bytes(value, "big")
    index = data.draw(st.integers(0, (1 << 32) - 1))
    owner = data.draw(st.binary(min_size=20, max_size=20))
    digest = data.draw(st.binary(min_size=32, max_size=32))
    wid = data.draw(st.integers(0, U64_LIMIT - 1))
    assert tuple(helpers.keys(index, tw.to_address(owner), digest, wid)) == (
        account_key(index), account_index_key(owner), order_key(digest), withdrawal_key(wid)
    )


@settings(max_examples=scaled_examples(60), deadline=None)
@given(written=st.one_of(
    packable_entries().map(pack_entry),
    packable_entries().flatmap(lambda e: st.binary(min_size=1, max_size=4).map(
        lambda junk: pack_entry(e)[:4] + junk + pack_entry(e)[4:])),  # extra bytes, head unchanged
    st.binary(max_size=105),
))
def test_written_entries_decode_as_python(helpers: VyperContract, written: bytes) -> None:
    """The twin decodes written entries (docs/stf.md §5.2) as decode_written_order does:
    packed or whole, and malformed unless the bytes are exactly one entry."""
    o = helpers.order_entry(written)
    order = decode_written_order(written)
    assert bool(o.ok) == (order is not None)
    if order is not None:
        b, sig = order.body, order.signature
        assert (o.account, o.market, o.is_buy, o.flags, o.price, o.size, o.expiry, o.salt) == (
            b.account, b.market, b.is_buy, b.flags, b.price, b.size, b.expiry, b.salt
        )
        assert (o.r, o.s, o.v) == (int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64])


@settings(max_examples=scaled_examples(30), deadline=None)
@given(entry=st.binary(min_size=104, max_size=104), side=st.integers(0, 3))
def test_order_entries_and_digests(helpers: VyperContract, entry: bytes, side: int) -> None:
    """Order entries decode as state/txs.py decodes them (is_buy outside {0, 1} is
    malformed) and every §10 digest matches state/eip712.py."""
    raw = entry[:5] + bytes([side]) + entry[6:]
    o = helpers.order_entry(pack_entry(raw))
    order = decode_order_entry(raw)
    assert bool(o.ok) == (order is not None)
    if order is None:
        return
    b = order.body
    assert (o.account, o.market, o.is_buy, o.flags, o.price, o.size, o.expiry, o.salt) == (
        b.account, b.market, b.is_buy, b.flags, b.price, b.size, b.expiry, b.salt
    )
    assert (o.r, o.s, o.v) == (
        int.from_bytes(raw[39:71], "big"), int.from_bytes(raw[71:103], "big"), raw[103]
    )
    domain = keccak256(raw)
    trader, recipient = raw[:20], raw[20:40]
    got = helpers.digests(domain, tw.to_address(trader), o, tw.to_address(recipient), b.price, b.size)
    od = order_digest(domain, trader, b.market, b.is_buy, b.price, b.size, b.flags, b.expiry, b.salt)
    assert tuple(got) == (
        od, cancel_digest(domain, trader, od), withdraw_digest(domain, trader, recipient, b.price, b.size),
        oracle_digest(domain, b.price, od),
    )


@settings(max_examples=scaled_examples(20), deadline=None)
@given(chain_id=st.integers(0, (1 << 256) - 1), rollup=st.binary(min_size=20, max_size=20))
def test_domain_separator(helpers: VyperContract, twin: tw.Twin, chain_id: int, rollup: bytes) -> None:
    assert helpers.domain_separator(chain_id, tw.to_address(rollup)) == domain_separator(chain_id, rollup)
    assert twin.stf.domain_separator(chain_id, tw.to_address(rollup)) == domain_separator(chain_id, rollup)


def _signature_variants(sig: bytes, rng: random.Random) -> list[bytes]:
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]

    def mk(r_: int, s_: int, v_: int) -> bytes:
        return r_.to_bytes(32, "big") + s_.to_bytes(32, "big") + bytes([v_])

    return [
        sig, mk(r, s, v - 27), mk(r, SECP256K1_N - s, v ^ 1), mk(r, s, 2), mk(r, s, 29), mk(0, s, v),
        mk(r, 0, v), mk(SECP256K1_N, s, v), mk(r, SECP256K1_N // 2, v), mk(r, SECP256K1_N // 2 + 1, v),
        mk(rng.getrandbits(256), rng.getrandbits(255), rng.choice([0, 1, 27, 28])), bytes(65),
    ]


@settings(max_examples=scaled_examples(15), deadline=None)
@given(key=st.binary(min_size=32, max_size=32).filter(lambda k: 0 < int.from_bytes(k, "big") < SECP256K1_N),
       digest=st.binary(min_size=32, max_size=32), seed=st.integers(0, 1 << 32))
def test_recover_matches_python(helpers: VyperContract, key: bytes, digest: bytes, seed: int) -> None:
    """ecrecover with §10's rules (low s, v in {27, 28, 0, 1}, r and s in range) gives
    recover_signer's answer, the zero address standing for its None."""
    for sig in _signature_variants(sign_digest(key, digest), random.Random(seed)):
        expected = recover_signer(digest, sig)
        got = helpers.recover(digest, sig)
        assert tw.from_address(got) == (expected or bytes(20)), sig.hex()


# ============================================================================ 4. bad witnesses revert


def _deposit_case(twin: tw.Twin) -> tuple[dict[bytes, bytes], bytes, tuple[Any, ...], list[tw.LeafTuple]]:
    w = clone_world(template())
    w.queues.deposits.append(L1Deposit(b"\x33" * 20, 10))
    ctx = BatchContext.create(ACTORS.time, w.chain, w.queues, [])
    py = tw.run_python(w.leaves, encode_deposit(), ctx)
    assert py.receipt.code == Code.OK
    context = tw.vyper_context(w.leaves, encode_deposit(), ACTORS.time, w.chain, [], w.queues)
    return w.leaves, encode_deposit(), context, tw.witness(w.leaves, py.touched)


def test_missing_leaf_reverts(twin: tw.Twin) -> None:
    leaves, step, context, wit = _deposit_case(twin)
    for i in range(len(wit)):
        with boa.reverts():
            twin.stf.execute(step, context, wit[:i] + wit[i + 1:])


def test_wrong_queue_item_reverts(twin: tw.Twin) -> None:
    leaves, step, context, wit = _deposit_case(twin)
    queue = list(context[6])
    queue[0] += 1
    with boa.reverts("STF: deposit item is not the one at next_deposit"):
        twin.stf.execute(step, (*context[:6], tuple(queue)), wit)


def test_missing_order_entry_reverts(twin: tw.Twin) -> None:
    w = clone_world(template())
    orders = [w.order("alice", 0, True, 2_820_000, 10), w.order("bob", 0, False, 2_820_000, 10)]
    step = encode_trade(0, 1, 10)
    ctx = BatchContext.create(ACTORS.time, w.chain, w.queues, orders)
    py = tw.run_python(w.leaves, step, ctx)
    context = tw.vyper_context(w.leaves, step, ACTORS.time, w.chain, orders, w.queues)
    wit = tw.witness(w.leaves, py.touched)
    twin.stf.execute(step, context, wit)
    with boa.reverts("STF: context lacks a referenced order entry"):
        twin.stf.execute(step, (*context[:5], context[5][:1], context[6]), wit)


def test_kind_contracts_refuse_foreign_kinds(twin: tw.Twin) -> None:
    """A step contract reverts on another contract's kind; like the dispatcher, it
    answers UNKNOWN_KIND for an empty step or an unknown kind byte."""
    leaves, step, context, wit = _deposit_case(twin)
    for name in ("StfTrade", "StfPrices", "StfLiquidation"):
        with boa.reverts("STF: kind executed by another contract"):
            twin.parts[name].execute(step, context, wit)
    for part in twin.parts.values():
        for unknown in (b"", b"\x00", b"\x0b", b"\xff\x01"):
            code, writes = part.execute(unknown, context, wit)
            assert (code, list(writes)) == (int(Code.UNKNOWN_KIND), [])


# ============================================================================ 5. heavy states and gas


HEAVY = heavy_scenarios()
HEAVY_REFUSALS = heavy_oracle_refusals()


@pytest.mark.parametrize("scenario", HEAVY, ids=[s.name for s in HEAVY])
def test_heavy_scenarios_agree(twin: tw.Twin, scenario: Scenario) -> None:
    py, out = check_scenario(twin, scenario)
    assert py.receipt.code == Code.OK, py.receipt


@pytest.mark.parametrize(("scenario", "code"), HEAVY_REFUSALS, ids=[s.name for s, _ in HEAVY_REFUSALS])
def test_heavy_oracle_refusals_agree(twin: tw.Twin, scenario: Scenario, code: Code) -> None:
    """The dearest refused oracle steps: refused alike, and writing nothing."""
    py, out = check_scenario(twin, scenario)
    assert py.receipt.code == code, py.receipt
    assert out.writes == []


def test_too_many_oracle_signatures_read_no_leaf(twin: tw.Twin) -> None:
    """More signatures than keys is refused before any leaf is read (docs/stf.md §7.5
    step 1): the Python touches nothing and the twin needs an empty witness."""
    s, code = HEAVY_REFUSALS[0]
    py, out = check_scenario(twin, s)
    assert (py.receipt.code, py.touched, out.code) == (code, frozenset(), int(code))


def test_gas_per_kind(twin: tw.Twin) -> None:
    """Execution gas of each kind's heaviest step, and of the dearest refused oracle
    steps: through the dispatcher and called on its step contract directly. Run
    with ``-s`` to see the table."""
    rows = []
    worst: dict[str, int] = {}
    for s in [*HEAVY, *(s for s, _ in HEAVY_REFUSALS)]:
        ctx = BatchContext.create(s.time, s.chain, s.queues, s.orders)
        py = tw.run_python(s.leaves, s.step, ctx)
        context = tw.vyper_context(s.leaves, s.step, s.time, s.chain, s.orders, s.queues)
        wit = tw.witness(s.leaves, py.touched)
        via = tw.run_twin(twin, s.step, context, wit).gas
        part = twin.parts[tw.PART_OF[s.kind]]
        part.execute(s.step, context, wit)
        direct = int(part._computation.get_gas_used())
        rows.append(f"  {s.kind:<11} {direct:>9,} {via:>9,}  {s.name}")
        worst[s.kind] = max(worst.get(s.kind, 0), direct)
    print("\nexecution gas: kind, step contract, via dispatcher, scenario\n" + "\n".join(rows))
    assert set(worst) == set(KIND_NAMES.values())
    for kind, gas in worst.items():
        assert gas <= EXECUTION_BUDGET, f"{kind}: {gas}"


def test_oracle_quorum_stops_at_threshold(twin: tw.Twin) -> None:
    """Signatures after the quorum is reached are not recovered: same outcome, less gas."""
    w = heavy_world(n_oracle_keys=16, threshold=2)
    entries = [OracleEntry(0, w.prices.markets[0].mark + 1, 0)]
    short = signed_oracle(w.oracle_keys[:2], w.chain.domain, w.prices.oracle_time + 1, entries)
    long_ = signed_oracle(w.oracle_keys, w.chain.domain, w.prices.oracle_time + 1, entries)
    gas = []
    for step in (short, long_):
        s = Scenario("oracle", "oracle", dict(w.leaves), step, w.prices.oracle_time + 1, w.chain)
        py, out = check_scenario(twin, s)
        assert py.receipt.code == Code.OK
        gas.append(out.gas)
    assert gas[1] - gas[0] < 14 * 3_000


class _EndlessQueues:
    """L1 queues with an item at every position (for pointers next to 2^64)."""

    def deposit(self, index: int) -> L1Deposit | None:
        return L1Deposit(keccak256(b"depositor%d" % index)[:20], 1)

    def forced(self, index: int) -> L1Forced | None:
        return L1Forced(b"\x33" * 20, b"junk")


@pytest.mark.parametrize("field", ["next_deposit", "next_forced"])
def test_queue_pointer_at_u64_bound_agrees(twin: tw.Twin, field: str) -> None:
    """At queue position 2^64-1 both refuse with OVERFLOW and write nothing."""
    from state.txs import encode_forced

    w = clone_world(template())
    g = w.global_()
    w.leaves[GLOBAL_KEY] = replace(g, **{field: U64_LIMIT - 1}).encode()
    step = encode_deposit() if field == "next_deposit" else encode_forced()
    queues: Any = _EndlessQueues()
    ctx = BatchContext.create(ACTORS.time, w.chain, queues, [])
    py, out = tw.check_step(twin, dict(w.leaves), step, ctx, [], queues)
    assert py.receipt.code == Code.OVERFLOW and out.writes == []
