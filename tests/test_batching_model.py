"""The batching-interval model: the closed form against a numeric minimum, the bounds, refusals, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer.batching_model import (
    GWEI,
    BatchingInputs,
    ModelError,
    cost_rate,
    fit_gas,
    main,
    optimal,
    optimal_interval,
    unclamped_optimum,
)


def golden_min(f, lo: float, hi: float, iterations: int = 200) -> float:  # type: ignore[no-untyped-def]
    """Golden-section search for the minimum of a unimodal ``f`` on [lo, hi] (log-spaced)."""
    a, b = math.log(lo), math.log(hi)
    r = (math.sqrt(5) - 1) / 2
    c, d = b - r * (b - a), a + r * (b - a)
    for _ in range(iterations):
        if f(math.exp(c)) < f(math.exp(d)):
            b = d
        else:
            a = c
        c, d = b - r * (b - a), a + r * (b - a)
    return math.exp((a + b) / 2)


def inputs(**kw: float) -> BatchingInputs:
    base: dict[str, float] = dict(gas_per_batch=300_000, gas_per_byte=33, gas_price=20 * GWEI, flow=50,
                                  risk_cost=10_000 * GWEI)
    base.update(kw)
    return BatchingInputs(**base)  # type: ignore[arg-type]


def test_the_closed_form_is_the_numeric_minimum() -> None:
    m = inputs(max_interval=10_000, max_bytes=10**9)
    closed = unclamped_optimum(m)
    assert closed == pytest.approx(math.sqrt(2 * 20 * GWEI * 300_000 / (10_000 * GWEI * 50)))
    numeric = golden_min(lambda t: cost_rate(t, m), 1e-3, 1e4)
    assert numeric == pytest.approx(closed, rel=1e-6)
    # at the optimum the fixed-gas term equals the risk term (the EOQ balance)
    assert 20 * GWEI * 300_000 / closed == pytest.approx(10_000 * GWEI * 50 * closed / 2)


@settings(max_examples=60, deadline=None)
@given(
    gas_per_batch=st.floats(1_000, 2_000_000), gas_per_byte=st.floats(0, 100),
    gwei=st.floats(0.01, 500), flow=st.floats(0.01, 5_000), risk_gwei=st.floats(1, 10**7),
    bytes_per_tx=st.floats(10, 500),
)
def test_optimal_interval_minimises_cost_within_the_bounds(
    gas_per_batch: float, gas_per_byte: float, gwei: float, flow: float, risk_gwei: float,
    bytes_per_tx: float,
) -> None:
    m = inputs(gas_per_batch=gas_per_batch, gas_per_byte=gas_per_byte, gas_price=gwei * GWEI, flow=flow,
               risk_cost=risk_gwei * GWEI, bytes_per_tx=bytes_per_tx)
    best = optimal(m)
    lo, hi = m.min_interval, m.upper_bound()
    assert lo <= best <= hi
    assert flow * bytes_per_tx * best <= m.max_bytes * (1 + 1e-9) or best == lo
    numeric = golden_min(lambda t: cost_rate(t, m), lo, hi) if hi > lo else lo
    assert cost_rate(best, m) <= cost_rate(numeric, m) * (1 + 1e-9)
    for t in (lo, hi, (lo + hi) / 2, best * 1.01, best * 0.99):
        if lo <= t <= hi:
            assert cost_rate(best, m) <= cost_rate(t, m) * (1 + 1e-12)


def test_bounds_clamp_the_optimum() -> None:
    # cheap gas, costly risk: the optimum is below one L1 block → the block time
    assert optimal(inputs(gas_price=1, min_interval=12)) == 12
    # negligible risk, heavy flow: the batch size limit binds (120,000 bytes at 200 tx/s × 120 bytes: 5 s)
    m = inputs(flow=200, risk_cost=1, bytes_per_tx=120)
    assert optimal(m) == pytest.approx(120_000 / (200 * 120))
    # no flow: nothing accrues risk, the cap applies
    assert optimal(inputs(flow=0)) == 600
    assert unclamped_optimum(inputs(risk_cost=0)) == math.inf


def test_the_pure_function_matches_the_inputs_form() -> None:
    kw = dict(gas_per_batch=250_000.0, gas_per_byte=30.0, gas_price=15 * GWEI, flow=8.0, risk_cost=2e12)
    assert optimal_interval(**kw) == optimal(BatchingInputs(**kw))  # type: ignore[arg-type]
    # more flow → shorter interval; dearer gas → longer
    assert optimal_interval(**{**kw, "flow": 32.0}) == pytest.approx(optimal_interval(**kw) / 2)
    assert optimal_interval(**{**kw, "gas_price": 60 * GWEI}) == pytest.approx(optimal_interval(**kw) * 2)


@pytest.mark.parametrize("bad", [
    {"flow": -1}, {"gas_price": float("nan")}, {"risk_cost": float("inf")}, {"min_interval": 0},
    {"min_interval": 700, "max_interval": 600}, {"max_bytes": 0},
])
def test_bad_inputs_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ModelError):
        inputs(**bad)


def test_a_zero_interval_is_refused() -> None:
    with pytest.raises(ModelError):
        cost_rate(0, inputs())


def test_gas_fit_recovers_a_line() -> None:
    fit = fit_gas([(100, 241_000 + 3_300), (1_000, 241_000 + 33_000), (5_000, 241_000 + 165_000)],
                  [56_000, 62_000])
    assert fit.per_batch == pytest.approx(241_000)
    assert fit.per_byte == pytest.approx(33)
    assert fit.finalize == 59_000 and fit.batches == 3
    with pytest.raises(ModelError):
        fit_gas([])


def test_cli_prints_the_optimum_and_draws_the_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "chart.png"
    assert main(["--flow", "50", "--gas-price-gwei", "20", "--risk-gwei", "10000", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    expected = optimal_interval(gas_per_batch=300_000, gas_per_byte=33, gas_price=20 * GWEI, flow=50,
                                risk_cost=10_000 * GWEI)
    assert f"optimal interval: {expected:.3f} s" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main(["--flow", "-3"]) == 2
    assert "flow must be" in capsys.readouterr().err
