"""The batching-interval model (docs/batching.md): how long the sequencer should keep a batch open.

Posting a batch costs L1 gas: a fixed part per batch (``postBatch``'s own
work and the later ``finalize``) and a part per byte of calldata. Posting
rarely saves the fixed part but leaves trades off L1 longer, which costs the
latency risk the margin must cover. With a flow of ``flow`` transactions per
second of ``bytes_per_tx`` bytes each and batches closed every ``T`` seconds,
the cost per second is::

    C(T) = gas_price · gas_per_batch / T              (fixed gas, spread over the batch)
         + gas_price · gas_per_byte · bytes_per_tx · flow   (data: paid whatever T is)
         + risk_cost · flow · T / 2                   (each trade waits T/2 on average)

``C`` is convex; its minimum is at ``T* = sqrt(2 · gas_price · gas_per_batch /
(risk_cost · flow))`` (the economic-order-quantity square root), clamped to
``[min_interval, max_interval]`` where ``max_interval`` also respects the
batch size limit (``flow · bytes_per_tx · T ≤ max_bytes``).
:func:`optimal_interval` is that, as a pure function the batcher can call.

``hfx batching-model`` prints the optimum for given (or measured) inputs and
draws the cost against the interval as a PNG (``--out``). ``--measure L1_URL
--deployment FILE`` fits ``gas = gas_per_batch + gas_per_byte · bytes`` to the
``postBatch`` transactions of a running deployment (a devnet) and adds the
mean ``finalize`` gas to the fixed part.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BatchingInputs", "GasFit", "ModelError", "cost_rate", "fit_gas", "main", "optimal_interval",
    "unclamped_optimum",
]

GWEI = 10**9
ETHER = 10**18

DEFAULT_GAS_PER_BATCH = 300_000.0
"""Fixed gas of one batch, measured on the devnet (docs/batching.md §3): ``postBatch`` 241–245k
beyond its data (with the bond top-up) plus ``finalize`` (56–63k)."""
DEFAULT_GAS_PER_BYTE = 28.0
"""Gas per batch byte, measured with packed order entries (27.9; 33.3 before packing):
calldata plus the contract's hashing of the data."""
DEFAULT_BYTES_PER_TX = 120.0
"""A trade step (15 bytes) with about one new packed order-table entry (~83 bytes): 114 measured
on the standard flow (docs/bench.md), rounded up."""


class ModelError(ValueError):
    """Inputs the model cannot use (negative, zero where a positive value is needed, NaN)."""


@dataclass(frozen=True)
class BatchingInputs:
    """The model's inputs, in wei, gas, bytes and seconds."""

    gas_per_batch: float
    """Fixed gas per batch (posting and finalizing), independent of its size."""
    gas_per_byte: float
    """Gas per byte of batch data."""
    gas_price: float
    """L1 gas price, wei per gas."""
    flow: float
    """Transactions per second entering batches."""
    risk_cost: float
    """Latency risk cost: wei per transaction per second it waits to reach L1."""
    bytes_per_tx: float = DEFAULT_BYTES_PER_TX
    min_interval: float = 1.0
    """Shortest useful interval: one L1 block (one post in flight at a time)."""
    max_interval: float = 600.0
    """Longest interval allowed whatever the flow (well inside the forced-inclusion delay)."""
    max_bytes: int = 120_000
    """The rollup's batch size limit."""

    def __post_init__(self) -> None:
        values = {
            "gas_per_batch": self.gas_per_batch, "gas_per_byte": self.gas_per_byte,
            "gas_price": self.gas_price, "flow": self.flow, "risk_cost": self.risk_cost,
            "bytes_per_tx": self.bytes_per_tx, "min_interval": self.min_interval,
            "max_interval": self.max_interval, "max_bytes": float(self.max_bytes),
        }
        for name, v in values.items():
            if not math.isfinite(v) or v < 0:
                raise ModelError(f"{name} must be a finite number >= 0, got {v}")
        for name in ("min_interval", "max_interval", "max_bytes"):
            if values[name] <= 0:
                raise ModelError(f"{name} must be positive")
        if self.min_interval > self.max_interval:
            raise ModelError("min_interval must not exceed max_interval")

    def upper_bound(self) -> float:
        """The longest allowed interval: ``max_interval``, or less if the batch would exceed ``max_bytes``."""
        rate = self.flow * self.bytes_per_tx
        if rate <= 0:
            return self.max_interval
        return max(self.min_interval, min(self.max_interval, self.max_bytes / rate))


def cost_rate(interval: float, m: BatchingInputs) -> float:
    """``C(T)``: wei per second of closing a batch every ``interval`` seconds."""
    if not interval > 0:
        raise ModelError("the interval must be positive")
    fixed = m.gas_price * m.gas_per_batch / interval
    data = m.gas_price * m.gas_per_byte * m.bytes_per_tx * m.flow
    risk = m.risk_cost * m.flow * interval / 2
    return fixed + data + risk


def cost_parts(interval: float, m: BatchingInputs) -> tuple[float, float, float]:
    """The three terms of :func:`cost_rate`: fixed gas, data gas, latency risk (wei/s)."""
    return (m.gas_price * m.gas_per_batch / interval,
            m.gas_price * m.gas_per_byte * m.bytes_per_tx * m.flow,
            m.risk_cost * m.flow * interval / 2)


def unclamped_optimum(m: BatchingInputs) -> float:
    """``sqrt(2 · gas_price · gas_per_batch / (risk_cost · flow))`` (``inf`` when no risk accrues)."""
    denominator = m.risk_cost * m.flow
    if denominator <= 0:
        return math.inf
    return math.sqrt(2 * m.gas_price * m.gas_per_batch / denominator)


def optimal(m: BatchingInputs) -> float:
    """The cost-minimising interval within ``[min_interval, upper_bound()]`` (C is convex: clamp)."""
    return min(max(unclamped_optimum(m), m.min_interval), m.upper_bound())


def optimal_interval(
    *, gas_per_batch: float, gas_per_byte: float, gas_price: float, flow: float, risk_cost: float,
    bytes_per_tx: float = DEFAULT_BYTES_PER_TX, min_interval: float = 1.0,
    max_interval: float = 600.0, max_bytes: int = 120_000,
) -> float:
    """Seconds between batch closes that minimise :func:`cost_rate`; pure, raises :class:`ModelError`.

    ``gas_price`` in wei per gas, ``flow`` in transactions per second,
    ``risk_cost`` in wei per transaction per second of waiting."""
    return optimal(BatchingInputs(
        gas_per_batch=gas_per_batch, gas_per_byte=gas_per_byte, gas_price=gas_price, flow=flow,
        risk_cost=risk_cost, bytes_per_tx=bytes_per_tx, min_interval=min_interval,
        max_interval=max_interval, max_bytes=max_bytes,
    ))


# ---------------------------------------------------------------- measuring gas


@dataclass(frozen=True)
class GasFit:
    """``gas = per_batch + per_byte · bytes`` fitted to posted batches, plus the mean finalize gas."""

    per_batch: float
    per_byte: float
    finalize: float
    batches: int
    mean_bytes: float


def fit_gas(samples: Sequence[tuple[int, int]], finalize: Sequence[int] = ()) -> GasFit:
    """Least squares over ``(batch bytes, postBatch gas)``; one sample or equal sizes: per_byte from calldata (16)."""
    if not samples:
        raise ModelError("no postBatch transactions to fit")
    n = len(samples)
    xs = [float(b) for b, _ in samples]
    ys = [float(g) for _, g in samples]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx > 0:
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    else:
        slope = 16.0
    slope = max(slope, 0.0)
    fin = sum(finalize) / len(finalize) if finalize else 0.0
    return GasFit(per_batch=my - slope * mx, per_byte=slope, finalize=fin, batches=n, mean_bytes=mx)


def measure_gas(l1_url: str, rollup: str, from_block: int, to_block: int | None = None) -> GasFit:
    """Fit :class:`GasFit` to the ``postBatch`` and ``finalize`` transactions sent to ``rollup``."""
    from eth_abi.abi import decode as abi_decode
    from eth_utils.crypto import keccak
    from web3 import Web3

    w3: Any = Web3(Web3.HTTPProvider(l1_url, request_kwargs={"timeout": 30}))
    post_sel = keccak(text="postBatch(bytes,bytes32,uint256)")[:4]
    fin_sel = keccak(text="finalize(uint256)")[:4]
    target = Web3.to_checksum_address(rollup)
    last = w3.eth.block_number if to_block is None else to_block
    samples: list[tuple[int, int]] = []
    finalize: list[int] = []
    for number in range(from_block, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx.get("to") is None or Web3.to_checksum_address(tx["to"]) != target:
                continue
            data = bytes(tx["input"])
            if data[:4] not in (post_sel, fin_sel):
                continue
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            if receipt["status"] != 1:
                continue
            if data[:4] == post_sel:
                batch, _, _ = abi_decode(["bytes", "bytes32", "uint256"], data[4:])
                samples.append((len(batch), int(receipt["gasUsed"])))
            else:
                finalize.append(int(receipt["gasUsed"]))
    return fit_gas(samples, finalize)


# ---------------------------------------------------------------- the command


def draw(m: BatchingInputs, path: str) -> None:
    """Cost per hour against the interval (log scale), each term and the total, the optimum marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = optimal(m)
    lo = max(m.min_interval / 2, 0.05)
    hi = max(m.upper_bound() * 2, best * 10)
    n = 200
    xs = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    parts = [cost_parts(x, m) for x in xs]
    per_hour = 3600 / ETHER
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(xs, [p[0] * per_hour for p in parts], label="fixed gas per batch / T")
    ax.plot(xs, [p[1] * per_hour for p in parts], label="data gas (independent of T)")
    ax.plot(xs, [p[2] * per_hour for p in parts], label="latency risk · T / 2")
    ax.plot(xs, [sum(p) * per_hour for p in parts], label="total", linewidth=2.5, color="black")
    ax.axvline(best, linestyle="--", color="grey")
    ax.axvspan(m.upper_bound(), hi, color="grey", alpha=0.12, label="not allowed (size or age limit)")
    if m.min_interval > lo:
        ax.axvspan(lo, m.min_interval, color="grey", alpha=0.12)
    ax.annotate(f"T* = {best:.2f} s", (best, cost_rate(best, m) * per_hour),
                textcoords="offset points", xytext=(8, 12))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch interval T (s)")
    ax.set_ylabel("cost (ETH per hour)")
    ax.set_title(f"HFX batching: {m.flow:g} tx/s, {m.gas_price / GWEI:g} gwei, "
                 f"risk {m.risk_cost / GWEI:g} gwei per tx·s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The ``hfx batching-model`` command line."""
    p = argparse.ArgumentParser(prog="hfx batching-model",
                                description="the optimal batch interval (docs/batching.md) and its cost chart")
    p.add_argument("--gas-per-batch", type=float, default=DEFAULT_GAS_PER_BATCH)
    p.add_argument("--gas-per-byte", type=float, default=DEFAULT_GAS_PER_BYTE)
    p.add_argument("--bytes-per-tx", type=float, default=DEFAULT_BYTES_PER_TX)
    p.add_argument("--gas-price-gwei", type=float, default=20.0)
    p.add_argument("--flow", type=float, default=50.0, help="transactions per second")
    p.add_argument("--risk-gwei", type=float, default=10_000.0,
                   help="latency risk cost, gwei per transaction per second unsettled")
    p.add_argument("--min-interval", type=float, default=1.0, help="seconds (an L1 block)")
    p.add_argument("--max-interval", type=float, default=600.0, help="seconds")
    p.add_argument("--max-bytes", type=int, default=120_000)
    p.add_argument("--measure", metavar="L1_URL", help="fit the gas figures to a deployment's batches")
    p.add_argument("--deployment", help="deployment JSON (with --measure)")
    p.add_argument("--out", help="write the cost chart here (PNG)")
    args = p.parse_args(list(argv))
    if (args.measure is None) != (args.deployment is None):
        p.error("--measure and --deployment go together")
    return args


def main(argv: Sequence[str]) -> int:
    """Print the optimum (and the chart with ``--out``); 2 on bad inputs."""
    args = parse_args(argv)
    gas_per_batch, gas_per_byte = args.gas_per_batch, args.gas_per_byte
    try:
        if args.measure:
            from l1_contracts.deploy import Deployment

            with open(args.deployment) as handle:
                d = Deployment.from_json(handle.read())
            fit = measure_gas(args.measure, d.rollup, d.block)
            gas_per_batch, gas_per_byte = fit.per_batch + fit.finalize, fit.per_byte
            print(f"measured {fit.batches} batches (mean {fit.mean_bytes:.0f} bytes): postBatch "
                  f"{fit.per_batch:,.0f} gas + {fit.per_byte:.1f} gas/byte; finalize {fit.finalize:,.0f} gas")
        m = BatchingInputs(
            gas_per_batch=gas_per_batch, gas_per_byte=gas_per_byte, gas_price=args.gas_price_gwei * GWEI,
            flow=args.flow, risk_cost=args.risk_gwei * GWEI, bytes_per_tx=args.bytes_per_tx,
            min_interval=args.min_interval, max_interval=args.max_interval, max_bytes=args.max_bytes,
        )
    except (ModelError, OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best = optimal(m)
    fixed, data, risk = cost_parts(best, m)
    print(f"gas per batch {m.gas_per_batch:,.0f}, per byte {m.gas_per_byte:g}, {m.bytes_per_tx:g} bytes/tx, "
          f"gas price {args.gas_price_gwei:g} gwei, flow {m.flow:g} tx/s, risk {args.risk_gwei:g} gwei/(tx·s)")
    print(f"unclamped optimum {unclamped_optimum(m):.3f} s; allowed [{m.min_interval:g}, {m.upper_bound():.3f}] s")
    print(f"optimal interval: {best:.3f} s ({m.flow * best:.0f} tx, {m.flow * best * m.bytes_per_tx:,.0f} bytes a batch)")
    print(f"cost at the optimum: {3600 * (fixed + data + risk) / ETHER:.6f} ETH/hour "
          f"(fixed gas {3600 * fixed / ETHER:.6f}, data {3600 * data / ETHER:.6f}, risk {3600 * risk / ETHER:.6f})")
    if args.out:
        draw(m, args.out)
        print(f"chart written to {args.out}")
    return 0
