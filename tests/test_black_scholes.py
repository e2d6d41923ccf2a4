"""Tests for state.black_scholes (risk-view Black-Scholes pricing, r = 0)."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.black_scholes import DAYS_PER_YEAR, Greeks, bs_greeks, bs_price, implied_vol

INF = math.inf
FMAX = sys.float_info.max

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

spots = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
log_moneyness = st.floats(min_value=-2.0, max_value=2.0)
years_st = st.floats(min_value=1.0 / (365.0 * 24.0), max_value=10.0)
vols = st.floats(min_value=0.01, max_value=3.0)
sides = st.booleans()


@st.composite
def market(draw: st.DrawFn) -> tuple[float, float, float, float]:
    """Regular (non-degenerate) inputs: spot, strike, years, vol."""
    spot = draw(spots)
    strike = spot * math.exp(draw(log_moneyness))
    return spot, strike, draw(years_st), draw(vols)


any_float = st.floats(allow_nan=False, allow_infinity=False)
any_float_or_inf = st.floats(allow_nan=False)


def _finite_greeks(g: Greeks) -> bool:
    return all(math.isfinite(getattr(g, f.name)) for f in dataclasses.fields(g))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _quadrature_price(is_call: bool, s: float, k: float, t: float, vol: float) -> float:
    """Independent reference: integrate the payoff against the normal density (Simpson).

    The integration starts at the exercise boundary z* so that the integrand is smooth.
    """
    v = vol * math.sqrt(t)
    z_star = (math.log(k / s) + 0.5 * v * v) / v
    a, b = (z_star, z_star + 40.0) if is_call else (z_star - 40.0, z_star)
    n = 20000
    h = (b - a) / n
    total = 0.0
    for i in range(n + 1):
        z = a + i * h
        s_t = s * math.exp(v * z - 0.5 * v * v)
        payoff = max(s_t - k, 0.0) if is_call else max(k - s_t, 0.0)
        w = 1.0 if i in (0, n) else (4.0 if i % 2 else 2.0)
        total += w * payoff * _norm_pdf(z)
    return total * h / 3.0


# --------------------------------------------------------------------------- textbook values


def test_textbook_atm_values() -> None:
    # S = K = 100, T = 1, vol = 0.2, r = 0: d1 = 0.1, d2 = -0.1.
    call = bs_greeks(True, 100.0, 100.0, 1.0, 0.2)
    put = bs_greeks(False, 100.0, 100.0, 1.0, 0.2)
    assert call.price == pytest.approx(7.965567455405804, rel=1e-13)
    assert put.price == pytest.approx(7.965567455405804, rel=1e-13)
    assert call.delta == pytest.approx(0.539827837277029, rel=1e-13)  # N(0.1)
    assert put.delta == pytest.approx(0.539827837277029 - 1.0, rel=1e-13)
    phi = 0.3969525474770118  # phi(0.1)
    assert call.gamma == pytest.approx(phi / (100.0 * 0.2), rel=1e-13)
    assert put.gamma == pytest.approx(call.gamma, rel=1e-15)
    assert call.vega == pytest.approx(100.0 * phi, rel=1e-13)
    assert call.vega_per_pct == pytest.approx(phi, rel=1e-13)
    assert call.theta == pytest.approx(-100.0 * phi * 0.2 / 2.0, rel=1e-13)
    assert put.theta == pytest.approx(call.theta, rel=1e-15)
    assert call.theta_per_day == pytest.approx(call.theta / 365.0, rel=1e-15)
    assert DAYS_PER_YEAR == 365.0


def test_hull_example_via_forward() -> None:
    # Hull, "Options, Futures and Other Derivatives", S=42, K=40, r=10%, vol=20%, T=0.5:
    # c = 4.76, p = 0.81. With r = 0 pricing on the forward F = S e^{rT} and
    # discounting gives the same Black-76 values.
    r, t = 0.10, 0.5
    fwd = 42.0 * math.exp(r * t)
    disc = math.exp(-r * t)
    assert bs_price(True, fwd, 40.0, t, 0.2) * disc == pytest.approx(4.7594, abs=1e-4)
    assert bs_price(False, fwd, 40.0, t, 0.2) * disc == pytest.approx(0.8086, abs=1e-4)


@pytest.mark.parametrize(
    ("is_call", "s", "k", "t", "vol"),
    [
        (True, 100.0, 100.0, 1.0, 0.2),
        (True, 100.0, 130.0, 0.25, 0.8),
        (False, 100.0, 130.0, 0.25, 0.8),
        (False, 2500.0, 1800.0, 2.0, 0.6),
        (True, 30000.0, 31000.0, 7.0 / 365.0, 0.55),
    ],
)
def test_matches_numerical_integration(
    is_call: bool, s: float, k: float, t: float, vol: float
) -> None:
    ref = _quadrature_price(is_call, s, k, t, vol)
    assert bs_price(is_call, s, k, t, vol) == pytest.approx(ref, rel=1e-8, abs=1e-10 * s)


# --------------------------------------------------------------------------- properties


@PROFILE
@given(market())
def test_put_call_parity(m: tuple[float, float, float, float]) -> None:
    s, k, t, vol = m
    c = bs_price(True, s, k, t, vol)
    p = bs_price(False, s, k, t, vol)
    assert abs((c - p) - (s - k)) <= 1e-12 * max(s, k)
    gc = bs_greeks(True, s, k, t, vol)
    gp = bs_greeks(False, s, k, t, vol)
    # Parity differentiated: delta_C - delta_P = 1, other Greeks equal.
    assert gc.delta - gp.delta == pytest.approx(1.0, abs=1e-14)
    assert gc.gamma == gp.gamma
    assert gc.vega == gp.vega
    assert gc.theta == gp.theta


@PROFILE
@given(market())
def test_price_bounds(m: tuple[float, float, float, float]) -> None:
    s, k, t, vol = m
    c = bs_price(True, s, k, t, vol)
    p = bs_price(False, s, k, t, vol)
    assert max(0.0, s - k) <= c <= s
    assert max(0.0, k - s) <= p <= k
    g = bs_greeks(True, s, k, t, vol)
    assert 0.0 <= g.delta <= 1.0
    assert g.gamma >= 0.0 and g.vega >= 0.0 and g.theta <= 0.0
    assert -1.0 <= bs_greeks(False, s, k, t, vol).delta <= 0.0


@PROFILE
@given(sides, market())
def test_greeks_price_field_equals_bs_price(
    is_call: bool, m: tuple[float, float, float, float]
) -> None:
    s, k, t, vol = m
    assert bs_greeks(is_call, s, k, t, vol).price == bs_price(is_call, s, k, t, vol)


@PROFILE
@given(sides, market())
def test_greeks_match_finite_differences(
    is_call: bool, m: tuple[float, float, float, float]
) -> None:
    s, k, t, vol = m
    g = bs_greeks(is_call, s, k, t, vol)
    v = vol * math.sqrt(t)
    # Round-off in one price evaluation (prices carry an intrinsic part of size ~max(S, K)).
    noise = 8.0 * sys.float_info.epsilon * max(s, k)

    def price(s_: float = s, t_: float = t, vol_: float = vol) -> float:
        return bs_price(is_call, s_, k, t_, vol_)

    # Delta: step proportional to the spot's natural scale S * v.
    h = 1e-4 * s * min(1.0, v)
    fd_delta = (price(s_=s + h) - price(s_=s - h)) / (2.0 * h)
    assert abs(fd_delta - g.delta) <= 1e-5 * abs(g.delta) + 1e-7 + noise / h

    # Gamma: larger step to keep round-off (eps * price / h^2) small.
    h = 1e-3 * s * min(1.0, v)
    fd_gamma = (price(s_=s + h) - 2.0 * price() + price(s_=s - h)) / (h * h)
    assert abs(fd_gamma - g.gamma) <= 1e-4 * g.gamma + 1e-7 / (s * v) + 4.0 * noise / (h * h)

    # Vega per 1.00 of vol.
    h = 1e-4 * vol
    fd_vega = (price(vol_=vol + h) - price(vol_=vol - h)) / (2.0 * h)
    assert abs(fd_vega - g.vega) <= 1e-5 * g.vega + 1e-9 * s * math.sqrt(t) + noise / h
    assert g.vega_per_pct == g.vega / 100.0

    # Theta per year, theta = -dPrice/dYears.
    h = 1e-4 * t
    fd_theta = -(price(t_=t + h) - price(t_=t - h)) / (2.0 * h)
    assert (
        abs(fd_theta - g.theta) <= 1e-5 * abs(g.theta) + 1e-9 * s * vol / math.sqrt(t) + noise / h
    )
    assert g.theta_per_day == g.theta / 365.0


@PROFILE
@given(sides, market())
def test_implied_vol_round_trip(is_call: bool, m: tuple[float, float, float, float]) -> None:
    s, k, t, vol = m
    g = bs_greeks(is_call, s, k, t, vol)
    iv = implied_vol(is_call, g.price, s, k, t)
    upper = s if is_call else k
    if g.price >= upper:
        # Time value indistinguishable from its supremum in binary64.
        assert iv is None
        return
    assert iv is not None
    assert iv >= 0.0
    # The solved vol reproduces the price to (near) float precision ...
    assert bs_price(is_call, s, k, t, iv) == pytest.approx(
        g.price, rel=1e-12, abs=1e-13 * max(s, k)
    )
    # ... and recovers the input vol wherever the price is sensitive enough to it.
    tol = 1e-8 * vol + 1e-12 * max(s, k) / g.vega if g.vega > 0.0 else INF
    assert abs(iv - vol) <= tol


@pytest.mark.parametrize("vol", [1e-4, 0.05, 0.2, 1.0, 5.0, 20.0])
@pytest.mark.parametrize("k", [50.0, 90.0, 100.0, 110.0, 200.0])
@pytest.mark.parametrize("is_call", [True, False])
def test_implied_vol_grid(is_call: bool, k: float, vol: float) -> None:
    s, t = 100.0, 0.5
    p = bs_price(is_call, s, k, t, vol)
    iv = implied_vol(is_call, p, s, k, t)
    if p >= (s if is_call else k):
        assert iv is None
        return
    assert iv is not None
    assert bs_price(is_call, s, k, t, iv) == pytest.approx(p, rel=1e-12, abs=1e-12)
    vega = bs_greeks(is_call, s, k, t, vol).vega
    if vega > 1e-6:
        assert iv == pytest.approx(vol, rel=1e-7)


def test_implied_vol_unreachable_prices() -> None:
    s, k, t = 100.0, 90.0, 1.0
    # Below intrinsic.
    assert implied_vol(True, 9.999, s, k, t) is None
    assert implied_vol(False, -0.01, s, k, t) is None
    # At or above the upper bound (spot for a call, strike for a put).
    assert implied_vol(True, 100.0, s, k, t) is None
    assert implied_vol(True, 150.0, s, k, t) is None
    assert implied_vol(False, 90.0, s, k, t) is None
    # Exactly intrinsic: the zero-vol limit.
    assert implied_vol(True, 10.0, s, k, t) == 0.0
    assert implied_vol(False, 0.0, s, k, t) == 0.0
    # Vol-independent or invalid inputs.
    assert implied_vol(True, 12.0, s, k, 0.0) is None
    assert implied_vol(True, 12.0, s, k, -1.0) is None
    assert implied_vol(True, 12.0, 0.0, k, t) is None
    assert implied_vol(True, 12.0, s, -5.0, t) is None
    assert implied_vol(True, math.nan, s, k, t) is None
    assert implied_vol(True, 12.0, s, k, INF) is None
    assert implied_vol(True, INF, s, k, t) is None


@settings(max_examples=200, deadline=None)
@given(sides, any_float_or_inf, any_float, any_float, any_float_or_inf)
def test_implied_vol_never_raises(
    is_call: bool, price: float, s: float, k: float, t: float
) -> None:
    iv = implied_vol(is_call, price, s, k, t)
    assert iv is None or (math.isfinite(iv) and iv >= 0.0)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("t", [0.0, -1.0, -INF])
def test_expired(t: float) -> None:
    itm_call = bs_greeks(True, 110.0, 100.0, t, 0.5)
    assert itm_call == Greeks(price=10.0, delta=1.0, gamma=0.0, vega=0.0, theta=0.0)
    otm_call = bs_greeks(True, 90.0, 100.0, t, 0.5)
    assert otm_call == Greeks(price=0.0, delta=0.0, gamma=0.0, vega=0.0, theta=0.0)
    itm_put = bs_greeks(False, 90.0, 100.0, t, 0.5)
    assert itm_put == Greeks(price=10.0, delta=-1.0, gamma=0.0, vega=0.0, theta=0.0)
    otm_put = bs_greeks(False, 110.0, 100.0, t, 0.5)
    assert otm_put == Greeks(price=0.0, delta=0.0, gamma=0.0, vega=0.0, theta=0.0)
    assert bs_greeks(True, 100.0, 100.0, t, 0.5).delta == 0.5
    assert bs_greeks(False, 100.0, 100.0, t, 0.5).delta == -0.5
    assert bs_price(True, 100.0, 100.0, t, 0.5) == 0.0


@pytest.mark.parametrize("vol", [0.0, -0.3, -INF])
def test_zero_vol_is_forward_intrinsic(vol: float) -> None:
    # r = 0: the forward equals spot, so the zero-vol price is the intrinsic value.
    assert bs_greeks(True, 110.0, 100.0, 1.0, vol) == Greeks(10.0, 1.0, 0.0, 0.0, 0.0)
    assert bs_greeks(False, 110.0, 100.0, 1.0, vol) == Greeks(0.0, 0.0, 0.0, 0.0, 0.0)
    assert bs_greeks(True, 90.0, 100.0, 1.0, vol) == Greeks(0.0, 0.0, 0.0, 0.0, 0.0)
    assert bs_greeks(False, 90.0, 100.0, 1.0, vol) == Greeks(10.0, -1.0, 0.0, 0.0, 0.0)
    atm = bs_greeks(True, 100.0, 100.0, 4.0, vol)
    assert atm.price == 0.0 and atm.delta == 0.5 and atm.gamma == 0.0 and atm.theta == 0.0
    # vol -> 0+ limit of vega at the money: S sqrt(T) phi(0).
    assert atm.vega == pytest.approx(100.0 * 2.0 / math.sqrt(2.0 * math.pi), rel=1e-14)
    assert bs_greeks(False, 100.0, 100.0, 4.0, vol).delta == -0.5


def test_zero_vol_is_limit_of_small_vol() -> None:
    for is_call in (True, False):
        for k in (90.0, 100.0, 110.0):
            g0 = bs_greeks(is_call, 100.0, k, 1.0, 0.0)
            g = bs_greeks(is_call, 100.0, k, 1.0, 1e-9)
            assert g.price == pytest.approx(g0.price, abs=1e-6)
            assert g.delta == pytest.approx(g0.delta, abs=1e-6)
            assert g.vega == pytest.approx(g0.vega, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("s", "k"), [(0.0, 100.0), (-5.0, 100.0), (100.0, 0.0), (100.0, -5.0), (0.0, 0.0)]
)
@pytest.mark.parametrize("is_call", [True, False])
def test_non_positive_spot_or_strike(is_call: bool, s: float, k: float) -> None:
    g = bs_greeks(is_call, s, k, 1.0, 0.5)
    # Negative inputs are clamped to zero before taking the intrinsic value.
    s0, k0 = max(s, 0.0), max(k, 0.0)
    intrinsic = max(0.0, s0 - k0) if is_call else max(0.0, k0 - s0)
    assert g.price == intrinsic == bs_price(is_call, s, k, 1.0, 0.5)
    assert g.gamma == g.vega == g.theta == 0.0
    assert _finite_greeks(g)


def test_zero_strike_call_is_the_underlying() -> None:
    # Exact model limit: a zero-strike call pays S_T, worth S today, delta 1.
    assert bs_greeks(True, 100.0, 0.0, 1.0, 0.5) == Greeks(100.0, 1.0, 0.0, 0.0, 0.0)
    assert bs_greeks(True, 100.0, 1e-300, 1.0, 0.5).price == pytest.approx(100.0)
    assert bs_greeks(False, 100.0, 0.0, 1.0, 0.5) == Greeks(0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("t", "vol"), [(1.0, 1e6), (1e6, 1.0), (INF, 0.5), (1.0, INF), (INF, INF), (1e300, 1e300)]
)
def test_huge_vol_or_time_limit(t: float, vol: float) -> None:
    c = bs_greeks(True, 100.0, 80.0, t, vol)
    p = bs_greeks(False, 100.0, 80.0, t, vol)
    assert _finite_greeks(c) and _finite_greeks(p)
    assert c.price == pytest.approx(100.0) and p.price == pytest.approx(80.0)
    assert c.delta == pytest.approx(1.0) and p.delta == pytest.approx(0.0, abs=1e-12)
    assert c.gamma == pytest.approx(0.0, abs=1e-12)


def test_tiny_total_vol_saturates_instead_of_overflowing() -> None:
    g = bs_greeks(True, 1e-310, 1e-310, 1e-300, 1e-200)
    assert _finite_greeks(g)
    assert g.gamma == FMAX
    g = bs_greeks(False, 100.0, 100.0, INF, 0.0)
    assert _finite_greeks(g) and g.vega == FMAX


@settings(max_examples=500, deadline=None)
@given(sides, any_float, any_float, any_float_or_inf, any_float_or_inf)
def test_any_input_gives_finite_greeks(
    is_call: bool, s: float, k: float, t: float, vol: float
) -> None:
    g = bs_greeks(is_call, s, k, t, vol)
    assert _finite_greeks(g)
    assert g.price >= 0.0
    assert -1.0 <= g.delta <= 1.0
    assert g.gamma >= 0.0 and g.vega >= 0.0 and g.theta <= 0.0
    if s > 0.0 and k > 0.0:
        assert g.price <= (s if is_call else k)


@pytest.mark.parametrize(
    ("s", "k", "t", "vol"),
    [
        (math.nan, 1.0, 1.0, 1.0),
        (1.0, math.nan, 1.0, 1.0),
        (1.0, 1.0, math.nan, 1.0),
        (1.0, 1.0, 1.0, math.nan),
        (INF, 1.0, 1.0, 1.0),
        (1.0, -INF, 1.0, 1.0),
    ],
)
def test_invalid_inputs_raise_value_error(s: float, k: float, t: float, vol: float) -> None:
    with pytest.raises(ValueError):
        bs_price(True, s, k, t, vol)
    with pytest.raises(ValueError):
        bs_greeks(False, s, k, t, vol)


def test_greeks_is_frozen() -> None:
    g = bs_greeks(True, 100.0, 100.0, 1.0, 0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.price = 1.0  # type: ignore[misc]
