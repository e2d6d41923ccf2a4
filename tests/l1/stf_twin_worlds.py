"""Hypothesis strategies over the heavy world of ``l1_contracts.worst_cases``:
random steps of every kind between its 16-position accounts, on 64 markets."""

from __future__ import annotations

from hypothesis import strategies as st

from l1_contracts.worst_cases import (
    ACTORS,
    CALLS,
    EXPIRY,
    HELD,
    N_MARKETS,
    NEVER,
    NOW,
    PUTS,
    HeavyWorld,
    Scenario,
    key_of,
    owner_of,
    spot,
)
from state.constants import FLAG_POST_ONLY, FLAG_REDUCE_ONLY, ORACLE_UNDERLYING_BASE
from state.context import L1Deposit, L1Forced, ListQueues
from state.signing import sign_order, signed_cancel, signed_oracle, signed_withdraw
from state.txs import (
    OracleEntry,
    OrderBody,
    encode_deleverage,
    encode_deposit,
    encode_forced,
    encode_forced_withdraw,
    encode_funding,
    encode_liquidate,
    encode_settle,
    encode_trade,
)

HEAVY_KINDS = ("trade", "trade", "trade", "liquidate", "liquidate", "deleverage", "deleverage",
               "withdraw", "deposit", "forced", "oracle", "funding", "settle", "cancel")


@st.composite
def heavy_steps(draw: st.DrawFn, w: HeavyWorld) -> Scenario:
    """One step of a random kind between the heavy world's 16-position accounts, with
    random markets (held ones mostly), sizes, prices near the mark, flags and times."""
    kind = draw(st.sampled_from(HEAVY_KINDS))
    domain = w.chain.domain
    names = list(ACTORS)
    market = draw(st.one_of(st.sampled_from(HELD), st.integers(0, N_MARKETS)))
    mark = w.prices.markets[market].mark if market < N_MARKETS else 1_000
    size = draw(st.one_of(st.integers(1, 2_000), st.sampled_from([1_000 + market, 500 + market])))
    price = max(1, mark + draw(st.integers(-3, 3)) * max(1, mark // 1_000))
    flags = draw(st.sampled_from([0, 0, 0, FLAG_REDUCE_ONLY, FLAG_POST_ONLY]))
    time = NOW + draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 61, 3_600]))
    queues = ListQueues()
    orders: list[bytes] = []
    if kind == "trade":
        maker, taker = draw(st.permutations(names))[:2]
        maker_buys = draw(st.booleans())
        orders = [
            w.order(maker, market, maker_buys, price, size, flags),
            w.order(taker, market, not maker_buys, price + (-1 if maker_buys else 1) * draw(st.integers(0, 2)), size,
                    draw(st.sampled_from([0, 0, FLAG_REDUCE_ONLY]))),
        ]
        step = encode_trade(0, 1, draw(st.integers(1, size)))
    elif kind == "liquidate":
        target = draw(st.sampled_from(["target", "target", *names]))
        liquidator = draw(st.sampled_from([n for n in names if n != target]))
        held = w.account(target).position(market)
        is_buy = draw(st.booleans()) if held is None else held.size > 0
        orders = [w.order(liquidator, market, is_buy, mark + (1 if is_buy else -1) * draw(st.integers(0, 5)), size, flags)]
        step = encode_liquidate(w.index[target], 0, draw(st.integers(1, size)))
    elif kind == "deleverage":
        target = draw(st.sampled_from(["broke", "broke", *names]))
        counter = draw(st.sampled_from([n for n in names if n != target]))
        step = encode_deleverage(w.index[target], w.index[counter], market, size)
    elif kind == "withdraw":
        name = draw(st.sampled_from(names))
        amount = draw(st.one_of(st.integers(1, 10**9), st.integers(1, 2 * 10**15)))
        step = signed_withdraw(key_of(name), owner_of(name), domain, w.index[name], b"\x99" * 20, amount,
                               draw(st.sampled_from([3, 3, 4])))
    elif kind == "deposit":
        owner = draw(st.sampled_from([owner_of(n) for n in names] + [b"\x55" * 20]))
        queues = ListQueues([L1Deposit(owner, draw(st.integers(0, 10**12)))] * 41, [])
        step = encode_deposit()
    elif kind == "forced":
        name = draw(st.sampled_from(names))
        payload = encode_forced_withdraw(w.index[name], b"\x99" * 20, draw(st.integers(1, 2 * 10**15)))
        queues = ListQueues([], [L1Forced(owner_of(draw(st.sampled_from(names))), payload)] * 31)
        step = encode_forced()
    elif kind == "oracle":
        ids = draw(st.lists(st.integers(0, N_MARKETS - 1), max_size=8, unique=True))
        entries = [OracleEntry(m, max(1, w.prices.markets[m].mark + draw(st.integers(-100, 100))), 0) for m in sorted(ids)]
        entries += [OracleEntry(ORACLE_UNDERLYING_BASE + u, spot(u) + 7, 0)
                    for u in sorted(draw(st.lists(st.integers(0, 15), max_size=4, unique=True)))]
        # all 16 keys; one more signature than keys (refused before any recovery); any
        signers = draw(st.one_of(
            st.just(w.oracle_keys), st.permutations(w.oracle_keys).map(lambda keys: [*keys, keys[0]]),
            st.lists(st.sampled_from(w.oracle_keys), max_size=17),
        ))
        step = signed_oracle(signers, domain, time, entries)
    elif kind == "funding":
        step = encode_funding()
    elif kind == "settle":
        step = encode_settle(draw(st.sampled_from([*CALLS, *PUTS, 0, 64])))
        time = draw(st.sampled_from([time, EXPIRY, EXPIRY + 10]))
    else:
        body = OrderBody(w.index["long"], market, True, flags, price, size, NEVER, draw(st.integers(0, 9)))
        orders = [sign_order(key_of("long"), owner_of("long"), domain, body).encode()]
        step = signed_cancel(key_of("long"), owner_of("long"), domain, 0, body)
    return Scenario(f"random {kind}", kind, dict(w.leaves), step, time, w.chain, orders, queues)
