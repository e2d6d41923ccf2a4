"""The heaviest steps of every kind: 64 markets, accounts of 16 positions.

Gas measurements of the STF twin and of the one-step prover (tests and
scripts/bench) run these.

States here are crafted leaf by leaf with the layouts of ``state.layout`` (no
history is replayed), so that each step kind meets its most expensive path:
16-position accounts with pending funding on every perpetual and short
options (the dearer margin formula), the 64-market params and prices leaves
(about 2 KB each), 80 oracle entries signed by 16 keys, 64 perpetuals to
accrue funding on. Every scenario of :func:`heavy_scenarios` is one step that
the Python STF accepts; :func:`heavy_oracle_refusals` are oracle steps that
are refused as late, or with as much to read, as the rules allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from state.constants import (
    KIND_CALL,
    KIND_PERP,
    KIND_PUT,
    MAX_UNDERLYINGS,
    ORACLE_UNDERLYING_BASE,
)
from state.context import ChainConfig, L1Deposit, L1Forced, ListQueues
from state.eip712 import address_of, sign_digest
from state.errors import Code
from state.keccak import keccak256
from state.layout import (
    GLOBAL_KEY,
    PARAMS_KEY,
    PRICES_KEY,
    Account,
    Config,
    Global,
    Market,
    MarketPrice,
    Params,
    Position,
    Prices,
    account_index_key,
    account_key,
)
from state.margin import assess, normalize
from state.signing import sign_order, signed_cancel, signed_oracle, signed_withdraw
from state.txs import (
    OracleEntry,
    OrderBody,
    encode_deleverage,
    encode_deposit,
    encode_forced,
    encode_forced_cancel,
    encode_forced_withdraw,
    encode_funding,
    encode_liquidate,
    encode_oracle,
    encode_settle,
    encode_trade,
)

NOW = 1_700_100_000
DAY = 86_400
EXPIRY = NOW + 7 * DAY
NEVER = (1 << 64) - 1
CONFIG = Config(
    taker_fee_bps=5, maker_rebate_bps=1, liquidation_penalty_bps=150, liquidator_bonus_bps=50,
    sync_buffer_bps=100, funding_cap_bps=75, max_oracle_age=60,
)
N_MARKETS = 64
PERPS = range(0, 32)
CALLS = range(32, 48)
PUTS = range(48, 64)
HELD = (*range(0, 8), 32, 33, 34, 35, 48, 49, 50, 51)
"""The 16 markets every heavy account holds: 8 perpetuals, 4 calls, 4 puts."""


def spot(underlying: int) -> int:
    """Index price of an underlying."""
    return 1_000_000 * (underlying + 1)


def heavy_markets(all_perps: bool = False) -> list[Market]:
    """64 markets on 16 underlyings: 32 perpetuals, 16 calls, 16 puts (or 64 perpetuals)."""
    out = []
    for i in range(N_MARKETS):
        u = i % MAX_UNDERLYINGS
        if all_perps or i in PERPS:
            out.append(Market(KIND_PERP, u, 1000, 500, 1, 1, 0, 0, 3))
        elif i in CALLS:
            out.append(Market(KIND_CALL, u, 1500, 1000, 1, 1, spot(u) * 11 // 10, EXPIRY, 3))
        else:
            out.append(Market(KIND_PUT, u, 1500, 1000, 1, 1, spot(u) * 9 // 10, EXPIRY, 3))
    return out


def heavy_prices(markets: list[Market], oracle_time: int, funding_time: int) -> Prices:
    """Marks 1% above the index for perpetuals (so funding accrues), 5% of spot for
    options; a non-zero funding index on every perpetual."""
    entries = []
    for i, m in enumerate(markets):
        if m.kind == KIND_PERP:
            entries.append(MarketPrice(spot(m.underlying) * 101 // 100, 7_000_000 * (i + 1), 0, 0))
        else:
            entries.append(MarketPrice(spot(m.underlying) // 20, 0, 600_000, 0))
    index = tuple(spot(u) for u in range(MAX_UNDERLYINGS))
    return Prices(oracle_time, funding_time, index, tuple(entries))


def key_of(name: str) -> bytes:
    """Private key of a named actor."""
    return keccak256(b"heavy:" + name.encode())


def owner_of(name: str) -> bytes:
    """Address of a named actor."""
    return address_of(key_of(name))


def heavy_positions(prices: Prices, perp_sign: int, scale: int = 1) -> tuple[Position, ...]:
    """16 positions: perpetuals of sign ``perp_sign`` with funding pending, short options."""
    out = []
    for m in HELD:
        mp = prices.markets[m]
        if m < 32:
            size = perp_sign * scale * (1_000 + m)
            out.append(Position(m, size, -size * mp.mark, mp.funding_index - 1_000_000))
        else:
            size = -scale * (500 + m)
            out.append(Position(m, size, -size * mp.mark, 0))
    return tuple(out)


@dataclass
class Scenario:
    """One step on a crafted state, with everything the STF reads besides the state."""

    name: str
    kind: str
    leaves: dict[bytes, bytes]
    step: bytes
    time: int
    chain: ChainConfig
    orders: list[bytes] = field(default_factory=list)
    queues: ListQueues = field(default_factory=ListQueues)


@dataclass
class HeavyWorld:
    """The crafted state all heavy scenarios start from."""

    markets: list[Market]
    prices: Prices
    leaves: dict[bytes, bytes]
    index: dict[str, int]
    chain: ChainConfig
    oracle_keys: list[bytes]

    def account(self, name: str) -> Account:
        return Account.decode(self.leaves[account_key(self.index[name])])

    def put_account(self, name: str, account: Account) -> None:
        self.leaves[account_key(self.index[name])] = account.encode()

    def order(self, name: str, market: int, is_buy: bool, price: int, size: int, flags: int = 0) -> bytes:
        body = OrderBody(self.index[name], market, is_buy, flags, price, size, NEVER, 7)
        return sign_order(key_of(name), owner_of(name), self.chain.domain, body).encode()

    def risk_of(self, name: str) -> tuple[int, int, int]:
        """Equity, initial requirement and liquidation threshold of an account."""
        params = Params.decode(self.leaves[PARAMS_KEY])
        norm = normalize(self.account(name), params.markets, self.prices)
        r = assess(norm, params.markets, self.prices, params.config)
        return r.equity, r.initial, r.liquidation_threshold


ACTORS = ("long", "short", "target", "liquidator", "broke", "counter")


def heavy_world(all_perps: bool = False, n_oracle_keys: int = 16, threshold: int = 16) -> HeavyWorld:
    """Six accounts of 16 positions on 64 markets, prices fresh at NOW, funding pending."""
    markets = heavy_markets(all_perps)
    prices = heavy_prices(markets, NOW - 1, NOW - 3_600)
    oracle_keys = [keccak256(b"heavy-oracle-%d" % i) for i in range(n_oracle_keys)]
    chain = ChainConfig(31337, b"\x42" * 20, frozenset(address_of(k) for k in oracle_keys), threshold)
    leaves = {
        GLOBAL_KEY: Global(NOW - 10, 40, 30, 5, len(ACTORS) + 1, 10**12, 10**9).encode(),
        PARAMS_KEY: Params(CONFIG, tuple(markets)).encode(),
        PRICES_KEY: prices.encode(),
    }
    world = HeavyWorld(markets, prices, leaves, {}, chain, oracle_keys)
    signs = {"long": 1, "short": -1, "target": 1, "liquidator": -1, "broke": 1, "counter": -1}
    for i, name in enumerate(ACTORS, start=1):
        world.index[name] = i
        leaves[account_index_key(owner_of(name))] = i.to_bytes(4, "big")
        acct = Account(owner_of(name), 3, 10**15, heavy_positions(prices, signs[name]))
        leaves[account_key(i)] = acct.encode()
    if not all_perps:
        # the target sits one unit below its liquidation threshold; "broke" is bankrupt
        equity, _, threshold_lt = world.risk_of("target")
        target = world.account("target")
        world.put_account("target", replace(target, collateral=target.collateral - (equity - threshold_lt) - 1))
        equity, _, _ = world.risk_of("broke")
        broke = world.account("broke")
        fund = Global.decode(leaves[GLOBAL_KEY]).insurance_fund
        world.put_account("broke", replace(broke, collateral=broke.collateral - equity - fund - 10**9))
    return world


def _scenario(w: HeavyWorld, name: str, kind: str, step: bytes, **kw: object) -> Scenario:
    return Scenario(name, kind, dict(w.leaves), step, NOW, w.chain, **kw)  # type: ignore[arg-type]


def heavy_scenarios() -> list[Scenario]:
    """The most expensive accepted step of every kind that the heavy world offers."""
    w = heavy_world()
    domain = w.chain.domain
    mark0 = w.prices.markets[0].mark
    out: list[Scenario] = []

    deposits = [L1Deposit(owner_of("long"), 5_000_000)] * 41
    out.append(_scenario(w, "deposit into a 16-position account", "deposit", encode_deposit(),
                         queues=ListQueues(deposits, [])))
    fresh = [L1Deposit(b"\x77" * 20, 5_000_000)] * 41
    out.append(_scenario(w, "deposit opening an account", "deposit", encode_deposit(),
                         queues=ListQueues(fresh, [])))

    recipient = b"\x99" * 20
    out.append(_scenario(
        w, "withdraw from a 16-position account", "withdraw",
        signed_withdraw(key_of("long"), owner_of("long"), domain, w.index["long"], recipient, 1_000_000, 3),
    ))

    maker = w.order("long", 0, False, mark0, 500)
    taker = w.order("short", 0, True, mark0, 500)
    out.append(_scenario(w, "trade between two 16-position accounts", "trade", encode_trade(0, 1, 500),
                         orders=[maker, taker]))

    body = OrderBody(w.index["long"], 0, True, 0, mark0, 10, NEVER, 99)
    entry = sign_order(key_of("long"), owner_of("long"), domain, body).encode()
    out.append(_scenario(w, "cancel", "cancel",
                         signed_cancel(key_of("long"), owner_of("long"), domain, 0, body), orders=[entry]))

    out.append(_scenario(w, "oracle: 80 entries, 16 of 16 signers", "oracle",
                         signed_oracle(w.oracle_keys, domain, NOW, all_oracle_entries(w))))

    perps = heavy_world(all_perps=True)
    out.append(Scenario("funding on 64 perpetuals", "funding", dict(perps.leaves), encode_funding(), NOW,
                        perps.chain))

    settled = dict(w.leaves)
    late = heavy_prices(w.markets, EXPIRY + 5, NOW - 3_600)
    settled[PRICES_KEY] = late.encode()
    out.append(Scenario("settle", "settle", settled, encode_settle(32), EXPIRY + 10, w.chain))

    liq_order = w.order("liquidator", 0, True, mark0, 1_000)
    out.append(_scenario(w, "liquidate a 16-position account into a 16-position one", "liquidate",
                         encode_liquidate(w.index["target"], 0, 1_000), orders=[liq_order]))

    out.append(_scenario(w, "deleverage a 16-position account against a 16-position one", "deleverage",
                         encode_deleverage(w.index["broke"], w.index["counter"], 0, 1_000)))

    forced = [L1Forced(owner_of("long"), encode_forced_withdraw(w.index["long"], recipient, 1_000_000))] * 31
    out.append(_scenario(w, "forced withdraw from a 16-position account", "forced", encode_forced(),
                         queues=ListQueues([], forced)))
    cancel_items = [L1Forced(owner_of("long"), encode_forced_cancel(body))] * 31
    out.append(_scenario(w, "forced cancel", "forced", encode_forced(), queues=ListQueues([], cancel_items)))
    return out


def all_oracle_entries(w: HeavyWorld) -> list[OracleEntry]:
    """The largest oracle update that can be accepted: every market and every underlying."""
    entries = [OracleEntry(m, w.prices.markets[m].mark + 1, 600_000 if m >= 32 else 0) for m in range(N_MARKETS)]
    entries += [OracleEntry(ORACLE_UNDERLYING_BASE + u, spot(u) + 1, 0) for u in range(MAX_UNDERLYINGS)]
    return entries


def oracle_signatures(keys: list[bytes], domain: bytes, entries: list[OracleEntry]) -> list[bytes]:
    """Each key's signature over the update of ``entries`` at NOW."""
    step = signed_oracle(keys, domain, NOW, entries)
    sig_at = 10 + 13 * len(entries) + 1
    return [step[sig_at + 65 * i: sig_at + 65 * (i + 1)] for i in range(len(keys))]


def heavy_oracle_refusals() -> list[tuple[Scenario, Code]]:
    """Oracle steps on the heavy world (16 keys, threshold 16) that are refused, each
    with its code: at the signature count (docs/stf.md §7.5 step 1) however many
    signatures follow, after all 16 recoveries, and after the 81st entry of the
    longest step."""
    w = heavy_world()
    domain = w.chain.domain
    entries = all_oracle_entries(w)
    valid = oracle_signatures(w.oracle_keys, domain, entries)
    stranger = oracle_signatures([keccak256(b"stranger")], domain, entries)[0]
    # ids 0..254: the id 80 (the 81st entry) is no market and no underlying
    too_many = [OracleEntry(i, 1_000, 0) for i in range(255)]
    return [
        (_scenario(w, "oracle: 80 entries, 255 signatures (239 foreign, then 16 valid)", "oracle",
                   encode_oracle(NOW, entries, [stranger] * 239 + valid)), Code.ORACLE_QUORUM),
        (_scenario(w, "oracle: 80 entries, 16 valid signatures and a repeat", "oracle",
                   encode_oracle(NOW, entries, valid + valid[:1])), Code.ORACLE_QUORUM),
        (_scenario(w, "oracle: 80 entries, 15 valid signatures, then a foreign one", "oracle",
                   encode_oracle(NOW, entries, valid[:15] + [stranger])), Code.ORACLE_QUORUM),
        (_scenario(w, "oracle: 255 entries, 16 signatures", "oracle",
                   encode_oracle(NOW, too_many, oracle_signatures(w.oracle_keys, domain, too_many))),
         Code.BAD_PRICE),
    ]


def signature_of(key: bytes, digest: bytes) -> bytes:
    """A signature (for tests that need one over an arbitrary digest)."""
    return sign_digest(key, digest)


# ---------------------------------------------------------------- random steps on the heavy world
