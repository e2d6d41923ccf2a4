"""HFX benchmarks. Every figure is printed next to baselines measured in the same run.

Baselines: keccak-256 of 64 bytes, secp256k1 signature recovery to an address,
and per-key ``trie.HexaryTrie`` updates. Figures:

- ``stf_trades_per_s``: signed trades through the STF, both signatures
  recovered (every trade has two fresh orders), committed every 1,000 trades
  to the on-disk state (LMDB); each batch's signers are recovered in worker
  processes while the previous batch is applied, as a node replays batches;
- ``stf_trades_serial_per_s``: the same, recovering every signer in-line;
- ``commit_leaves_per_s``: dirty leaves committed to the on-disk trie, in
  batches of 4,000 into a growing trie.

L1 figures (gas is deterministic, so these need no baseline), in a state of
1,000,000 filler leaves (10,000 with ``--quick``):

- ``onestep_gas_max``: the most expensive one-step proof (execution and
  intrinsic gas) of the heaviest step of every kind (16-position accounts,
  64 markets); ``onestep_gas.<kind>`` lines give each;
- ``mpt_get_gas_1m_keys``: mean execution gas of an MPT lookup (``MPT._get``
  through its test harness) of a present key;
- ``dispute_rounds_4096``: dissection rounds of a 4,096-step game, walking
  the deployed rollup's split points.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.sigpool import SignaturePool  # noqa: E402
from state.batch import Batch  # noqa: E402
from state.constants import KIND_PERP  # noqa: E402
from state.context import BatchContext, ChainConfig, L1Deposit, ListQueues  # noqa: E402
from state.db import StateDB  # noqa: E402
from state.eip712 import address_of, ecrecover_baseline_rate  # noqa: E402
from state.genesis import genesis_leaves  # noqa: E402
from state.keccak import keccak256  # noqa: E402
from state.layout import Config, Market  # noqa: E402
from state.signing import sign_order, signed_oracle  # noqa: E402
from state.trie_bench import bench_commit_leaves, bench_naive_trie_updates  # noqa: E402
from state.txs import OracleEntry, OrderBody, encode_deposit, encode_trade  # noqa: E402

NEVER = (1 << 64) - 1
T0 = 1_700_000_000


def keccak_rate(n: int) -> float:
    """keccak-256 hashes of 64-byte inputs per second."""
    data = [i.to_bytes(64, "big") for i in range(n)]
    start = time.perf_counter()
    for d in data:
        keccak256(d)
    return n / (time.perf_counter() - start)


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """The best of ``runs`` measurements (the least disturbed by a shared machine)."""
    return max(fn() for _ in range(runs))


def stf_trades_rate(
    n_trades: int, pool: SignaturePool | None = None, batch_size: int = 1_000, traders: int = 100
) -> float:
    """Signed trades per second through the STF with a commit every ``batch_size`` trades.

    With ``pool``, each batch's signers are recovered in the pool while the
    previous batch is applied."""
    with tempfile.TemporaryDirectory() as tmp:
        db = StateDB.open(Path(tmp) / "state", sync=False)
        try:
            return _stf_trades(db, n_trades, pool, batch_size, traders)
        finally:
            db.close()


def _stf_trades(
    db: StateDB, n_trades: int, pool: SignaturePool | None, batch_size: int, traders: int
) -> float:
    config = Config(5, 1, 150, 50, 100, 75, 3_600)
    markets = [Market(KIND_PERP, 0, 1000, 500, 1_000, 1, 0, 0, 3), Market(KIND_PERP, 1, 1000, 500, 1_000, 1, 0, 0, 4)]
    oracle_key = keccak256(b"bench-oracle")
    chain = ChainConfig(1, b"\x42" * 20, frozenset({address_of(oracle_key)}), 1)
    keys = [keccak256(b"bench-trader-%d" % i) for i in range(traders)]
    owners = [address_of(k) for k in keys]
    queues = ListQueues([L1Deposit(o, 10**12) for o in owners])
    db.initialize(genesis_leaves(config, markets, T0))
    setup = [encode_deposit()] * traders + [
        signed_oracle([oracle_key], chain.domain, T0, [
            OracleEntry(0, 3_000_000, 0), OracleEntry(1, 6_000_000, 0),
            OracleEntry(64, 3_000_000, 0), OracleEntry(65, 6_000_000, 0)])
    ]
    result = db.apply_batch(Batch(T0, (), tuple(setup)), BatchContext.create(T0, chain, queues, []))
    if any(r.code for r in result.receipts):
        raise RuntimeError("benchmark setup failed")
    rng = random.Random(7)
    batches = []
    for b in range(0, n_trades, batch_size):
        orders: list[bytes] = []
        steps: list[bytes] = []
        for _ in range(min(batch_size, n_trades - b)):
            maker = rng.randrange(traders)
            taker = (maker + 1 + rng.randrange(traders - 1)) % traders
            market = rng.randrange(2)
            mid = 3_000_000 if market == 0 else 6_000_000
            price = mid + 1_000 * rng.randrange(-20, 21)
            size = rng.randrange(1, 20)
            maker_buys = rng.random() < 0.5
            salt = len(batches) * 10**6 + len(orders)
            for who, buys, limit in ((maker, maker_buys, price), (taker, not maker_buys, price)):
                body = OrderBody(who + 1, market, buys, 0, limit, size, NEVER, salt)
                orders.append(sign_order(keys[who], owners[who], chain.domain, body).encode())
                salt += 1
            steps.append(encode_trade(len(orders) - 2, len(orders) - 1, size))
        batches.append((tuple(orders), tuple(steps)))
    ok = 0
    start = time.perf_counter()
    contexts = [BatchContext.create(T0, chain, queues, orders_t) for orders_t, _ in batches]
    pending = None
    if pool is not None:
        jobs = contexts[0].orders.signature_jobs(db.view)
        pending = pool.submit(jobs)
    for i, (ctx, (_, steps_t)) in enumerate(zip(contexts, batches, strict=True)):
        if pending is not None and pool is not None:
            ctx.orders.accept_recovered(pending.jobs, pending.result())
            if i + 1 < len(contexts):
                pending = pool.submit(contexts[i + 1].orders.signature_jobs(db.view))
        receipts = db.apply_steps(steps_t, ctx)
        db.commit()
        ok += sum(1 for r in receipts if r.code == 0)
    elapsed = time.perf_counter() - start
    if ok != n_trades:
        raise RuntimeError(f"only {ok} of {n_trades} benchmark trades applied")
    return n_trades / elapsed


def l1_figures(filler: int) -> dict[str, float]:
    """One-step proof gas, MPT lookup gas and dispute rounds (see the module docstring)."""
    from l1_contracts.gas_bench import dispute_rounds, mpt_get_gas, onestep_gas
    from l1_contracts.onestep_gas import FillerState

    base = FillerState.build(filler)
    onestep = onestep_gas(base)
    for name, gas in onestep.by_scenario.items():
        print(f"onestep_gas | {name} | {gas:,}")
    return {
        "onestep_gas_max": float(onestep.max),
        "mpt_get_gas_1m_keys": mpt_get_gas(base, filler),
        "dispute_rounds_4096": float(dispute_rounds(4_096)),
    }


def main() -> int:
    """Run every benchmark, print the table, and with --json a final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    parser.add_argument("--quick", action="store_true", help="smaller samples (noisier)")
    args = parser.parse_args()
    scale = 1 if args.quick else 4
    runs = 2 if args.quick else 3

    figures: dict[str, float] = {}
    figures["keccak_per_s"] = best_of(runs, lambda: keccak_rate(50_000 * scale))
    figures["ecrecover_per_s"] = best_of(runs, lambda: ecrecover_baseline_rate(1_000 * scale))
    figures["naive_trie_updates_per_s"] = best_of(runs, lambda: bench_naive_trie_updates(1_000 * scale))
    with SignaturePool() as pool:
        stf_trades_rate(1_000, pool)  # start the workers
        figures["stf_trades_per_s"] = best_of(runs, lambda: stf_trades_rate(2_000 * scale, pool))
    figures["stf_trades_serial_per_s"] = best_of(runs, lambda: stf_trades_rate(1_000 * scale))
    figures["commit_leaves_per_s"] = best_of(runs, lambda: bench_commit_leaves(8_000 * scale))

    l1 = l1_figures(10_000 if args.quick else 1_000_000)
    figures.update(l1)

    ratios: dict[str, tuple[str, float | None]] = {
        "stf_trades_per_s": ("ecrecover_per_s", 0.35),
        "stf_trades_serial_per_s": ("ecrecover_per_s", None),
        "commit_leaves_per_s": ("naive_trie_updates_per_s", 5.0),
    }
    print(f"{'figure':<28}{'value':>14}  {'ratio to baseline':<40}")
    limits = {"onestep_gas_max": 1_000_000, "mpt_get_gas_1m_keys": 285_000, "dispute_rounds_4096": 4}
    for name, value in figures.items():
        note = "baseline"
        if name in limits:
            note = f"gas/rounds ({'meets' if value <= limits[name] else 'ABOVE'} target <= {limits[name]:,})"
        elif name in ratios:
            base, target = ratios[name]
            ratio = value / figures[base]
            note = f"{ratio:6.3f} x {base}"
            if target is not None:
                note += f" ({'meets' if ratio >= target else 'BELOW'} target {target})"
        print(f"{name:<28}{value:>14,.0f}  {note}")
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in figures.items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
