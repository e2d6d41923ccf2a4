"""Black-Scholes prices, Greeks and implied volatility for the trader-facing risk view.

This module is *not* part of the consensus state-transition function: it uses
binary floating point and is meant for display, margin previews and similar
off-chain risk estimates only.

Model and conventions
---------------------
* European options on a spot price following a driftless geometric Brownian
  motion, with **zero interest rate and no dividends** (options are cash-settled
  in a stablecoin), so the forward price equals the spot price.
* ``spot`` and ``strike`` are in quote-currency units per unit of underlying
  (e.g. USD per BTC); every price returned is in the same units, per one unit of
  underlying.
* ``years`` is the time to expiry in years (ACT/365: one day is ``1 / 365``).
* ``vol`` is the annualised implied volatility as a fraction (``0.2`` = 20 %).
* ``delta`` is dPrice/dSpot (dimensionless), ``gamma`` is d2Price/dSpot2 (per
  unit of spot).
* ``vega`` is dPrice/dVol per **1.00** of volatility (i.e. per 100 volatility
  points); :attr:`Greeks.vega_per_pct` is per one volatility point.
* ``theta`` is the change in price per **year** of calendar time passing,
  ``theta = -dPrice/dYears`` (normally negative for a long option);
  :attr:`Greeks.theta_per_day` is per day (``theta / 365``).

Degenerate inputs
-----------------
All finite inputs and infinite ``years``/``vol`` are accepted and give finite
results, never ``NaN`` and never an exception:

* ``years <= 0`` (expired): price is the intrinsic value; delta is the payoff
  step (call: 1 in the money, 0 out of the money, 0.5 at the money; put: -1,
  0, -0.5); gamma, vega and theta are 0.
* ``vol <= 0`` (with ``years > 0``): the zero-volatility limit. With ``r = 0``
  the forward equals spot, so the price is the intrinsic value and delta is the
  same step as at expiry; gamma and theta are 0; vega is the ``vol -> 0+``
  limit, which is 0 except exactly at the money where it is
  ``spot * sqrt(years) / sqrt(2 * pi)``.
* ``spot <= 0`` or ``strike <= 0``: outside the lognormal model. A negative
  spot or strike is first replaced by 0, and the option is then treated as
  having a deterministic payoff: the price is the intrinsic value
  ``max(0, S - K)`` (call) or ``max(0, K - S)`` (put) of the clamped numbers,
  delta is the expiry step and gamma, vega and theta are 0. For a positive spot
  and a zero strike (or vice versa) this is the exact limit of the model.
* ``vol * sqrt(years)`` infinite (huge vol and/or time): the limit in which the
  call is worth ``spot`` and the put ``strike``; delta is 1 (call) or 0 (put);
  gamma, vega and theta are 0.
* A Greek whose exact value exceeds the floating-point range (e.g. gamma at the
  money as ``vol * sqrt(years) -> 0`` with a tiny spot) saturates at
  ``+/- sys.float_info.max``.

``NaN`` in any argument, or an infinite ``spot`` or ``strike``, is a caller
error and raises :class:`ValueError` in :func:`bs_price` and :func:`bs_greeks`
(:func:`implied_vol` returns ``None`` instead).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

__all__ = [
    "DAYS_PER_YEAR",
    "Greeks",
    "bs_greeks",
    "bs_price",
    "implied_vol",
]

DAYS_PER_YEAR = 365.0
"""Calendar days per year used by :attr:`Greeks.theta_per_day` (ACT/365)."""

_FLOAT_MAX = sys.float_info.max
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG2 = math.log(2.0)

# Implied-volatility solver limits, in total volatility v = vol * sqrt(years).
# At v = 2**14 every CDF term in the price is exactly 0 or 1 in binary64 for any
# representable spot/strike ratio, so the price has reached its upper bound.
_IV_V_MAX = 2.0**14
_IV_V_MIN = 1e-300
_IV_MAX_ITER = 200
_IV_REL_TOL = 4.0 * sys.float_info.epsilon


@dataclass(frozen=True, slots=True)
class Greeks:
    """Black-Scholes price and first/second-order sensitivities of one option.

    Attributes:
        price: Option value in quote units per unit of underlying.
        delta: dPrice/dSpot (dimensionless; call in [0, 1], put in [-1, 0]).
        gamma: d2Price/dSpot2, per unit of spot (>= 0).
        vega: dPrice/dVol per 1.00 (100 points) of annualised volatility (>= 0).
        theta: -dPrice/dYears, price change per year of calendar time (<= 0).
    """

    price: float
    delta: float
    gamma: float
    vega: float
    theta: float

    @property
    def vega_per_pct(self) -> float:
        """Vega per one volatility point (0.01 of vol): ``vega / 100``."""
        return self.vega / 100.0

    @property
    def theta_per_day(self) -> float:
        """Theta per calendar day: ``theta / 365``."""
        return self.theta / DAYS_PER_YEAR


def _norm_cdf(x: float) -> float:
    """Standard normal CDF, accurate in both tails (uses ``erfc``)."""
    return 0.5 * math.erfc(-x / _SQRT2)


def _exp_sat(x: float) -> float:
    """``exp(x)`` saturating at the largest finite float instead of overflowing."""
    try:
        return min(math.exp(x), _FLOAT_MAX)
    except OverflowError:
        return _FLOAT_MAX


def _check_args(spot: float, strike: float, years: float, vol: float) -> None:
    """Reject NaN arguments and infinite spot/strike."""
    if math.isnan(years) or math.isnan(vol):
        raise ValueError("years and vol must not be NaN")
    if not (math.isfinite(spot) and math.isfinite(strike)):
        raise ValueError("spot and strike must be finite numbers")


def _intrinsic(is_call: bool, spot: float, strike: float) -> float:
    """Payoff at expiry: ``max(0, S - K)`` for a call, ``max(0, K - S)`` for a put."""
    return max(0.0, spot - strike) if is_call else max(0.0, strike - spot)


def _step_delta(is_call: bool, spot: float, strike: float) -> float:
    """Delta of the expiry payoff, taking 0.5 (sign-adjusted) at the money."""
    if spot > strike:
        call_delta = 1.0
    elif spot < strike:
        call_delta = 0.0
    else:
        call_delta = 0.5
    return call_delta if is_call else call_delta - 1.0


def _intrinsic_greeks(is_call: bool, spot: float, strike: float, vega: float = 0.0) -> Greeks:
    """Greeks of a deterministic (intrinsic-value) option."""
    return Greeks(
        price=_intrinsic(is_call, spot, strike),
        delta=_step_delta(is_call, spot, strike),
        gamma=0.0,
        vega=vega,
        theta=0.0,
    )


def _clamp_price(is_call: bool, price: float, spot: float, strike: float) -> float:
    """Clamp a model price into its no-arbitrage range ``[intrinsic, S or K]``."""
    upper = spot if is_call else strike
    return min(max(price, _intrinsic(is_call, spot, strike)), upper)


def _d1_d2(log_moneyness: float, v: float) -> tuple[float, float]:
    """``d1, d2`` from ``ln(S/K)`` and total volatility ``v = vol * sqrt(T)`` (finite, >= 0)."""
    if v == 0.0:
        # vol * sqrt(T) underflowed: the distribution is a point mass at the forward.
        d = 0.0 if log_moneyness == 0.0 else math.copysign(math.inf, log_moneyness)
        return d, d
    d1 = log_moneyness / v + 0.5 * v
    return d1, d1 - v


def _otm_price(spot: float, strike: float, d1: float, d2: float) -> float:
    """Time value, computed from the out-of-the-money leg to avoid cancellation.

    For ``S >= K`` this is the put price ``K N(-d2) - S N(-d1)``, otherwise the
    call price ``S N(d1) - K N(d2)``; both equal the common time value of the
    call and the put (put-call parity with ``r = 0``). Never negative.
    """
    if spot >= strike:
        value = strike * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
    else:
        value = spot * _norm_cdf(d1) - strike * _norm_cdf(d2)
    return max(value, 0.0)


def _model_price(is_call: bool, spot: float, strike: float, d1: float, d2: float) -> float:
    """Price in the regular regime from ``d1, d2`` (positive spot, strike, years, vol)."""
    time_value = _otm_price(spot, strike, d1, d2)
    return _clamp_price(is_call, _intrinsic(is_call, spot, strike) + time_value, spot, strike)


def bs_price(is_call: bool, spot: float, strike: float, years: float, vol: float) -> float:
    """Black-Scholes value of a European option with zero rates and no dividends.

    Args:
        is_call: ``True`` for a call, ``False`` for a put.
        spot: Current price of the underlying (quote units per unit).
        strike: Strike price (quote units per unit).
        years: Time to expiry in years (ACT/365).
        vol: Annualised volatility as a fraction (0.2 = 20 %).

    Returns:
        The option value in quote units per unit of underlying. It always
        satisfies ``intrinsic <= price <= spot`` (call) or
        ``intrinsic <= price <= strike`` (put), and ``C - P = S - K`` up to
        rounding. Degenerate inputs (expired, zero/negative vol, non-positive
        spot or strike, infinite vol or time) are handled as described in the
        module docstring.

    Raises:
        ValueError: If any argument is NaN or ``spot``/``strike`` is infinite.
    """
    return bs_greeks(is_call, spot, strike, years, vol).price


def bs_greeks(is_call: bool, spot: float, strike: float, years: float, vol: float) -> Greeks:
    """Black-Scholes price and Greeks of a European option (``r = 0``, no dividends).

    With ``v = vol * sqrt(years)``, ``d1 = ln(S/K)/v + v/2``, ``d2 = d1 - v`` and
    ``phi`` the standard normal density:

    * ``delta = N(d1)`` (call) or ``N(d1) - 1`` (put);
    * ``gamma = phi(d1) / (S v)``;
    * ``vega = S phi(d1) sqrt(years)`` per 1.00 of vol;
    * ``theta = -S phi(d1) vol / (2 sqrt(years))`` per year, i.e.
      ``-dPrice/dYears`` (identical for calls and puts when ``r = 0``).

    Args:
        is_call: ``True`` for a call, ``False`` for a put.
        spot: Current price of the underlying (quote units per unit).
        strike: Strike price (quote units per unit).
        years: Time to expiry in years (ACT/365).
        vol: Annualised volatility as a fraction (0.2 = 20 %).

    Returns:
        A :class:`Greeks`; ``price`` equals :func:`bs_price` for the same
        arguments. All fields are finite; degenerate inputs follow the module
        docstring.

    Raises:
        ValueError: If any argument is NaN or ``spot``/``strike`` is infinite.
    """
    _check_args(spot, strike, years, vol)
    if spot <= 0.0 or strike <= 0.0:
        return _intrinsic_greeks(is_call, max(spot, 0.0), max(strike, 0.0))
    if years <= 0.0:
        return _intrinsic_greeks(is_call, spot, strike)
    if vol <= 0.0:
        # vol -> 0+ limit; vega stays positive exactly at the money.
        vega = 0.0
        if spot == strike:
            vega = _exp_sat(math.log(spot) + 0.5 * math.log(years) - _LOG_SQRT_2PI)
        return _intrinsic_greeks(is_call, spot, strike, vega)

    v = vol * math.sqrt(years)
    if math.isinf(v):
        return Greeks(
            price=spot if is_call else strike,
            delta=1.0 if is_call else 0.0,
            gamma=0.0,
            vega=0.0,
            theta=0.0,
        )

    log_spot = math.log(spot)
    log_years = math.log(years)
    log_vol = math.log(vol)
    log_v = log_vol + 0.5 * log_years
    d1, d2 = _d1_d2(log_spot - math.log(strike), v)
    price = _model_price(is_call, spot, strike, d1, d2)

    delta = _norm_cdf(d1) if is_call else 0.0 - _norm_cdf(-d1)
    # Densities are evaluated in log space so that tiny/huge factors neither
    # underflow to 0 * inf nor overflow.
    log_phi = -0.5 * d1 * d1 - _LOG_SQRT_2PI
    gamma = _exp_sat(log_phi - log_spot - log_v)
    vega = _exp_sat(log_spot + log_phi + 0.5 * log_years)
    theta = 0.0 - _exp_sat(log_spot + log_phi + log_vol - _LOG2 - 0.5 * log_years)
    return Greeks(price=price, delta=delta, gamma=gamma, vega=vega, theta=theta)


def _time_value_and_vega(spot: float, strike: float, v: float) -> tuple[float, float]:
    """Time value and its derivative w.r.t. total vol ``v`` (``S phi(d1)``)."""
    log_moneyness = math.log(spot) - math.log(strike)
    d1, d2 = _d1_d2(log_moneyness, v)
    dv = _exp_sat(math.log(spot) - 0.5 * d1 * d1 - _LOG_SQRT_2PI)
    return _otm_price(spot, strike, d1, d2), dv


def implied_vol(
    is_call: bool, price: float, spot: float, strike: float, years: float
) -> float | None:
    """Annualised volatility at which :func:`bs_price` reproduces ``price``.

    Solves ``bs_price(is_call, spot, strike, years, vol) == price`` for ``vol``
    with a safeguarded Newton iteration on the total volatility
    ``v = vol * sqrt(years)``: Newton steps are taken while they stay inside a
    bracket that always contains the root, otherwise the bracket is bisected
    (geometrically when it spans orders of magnitude). The call/put time value
    is used as the target, so the out-of-the-money leg sets the precision.

    Args:
        is_call: ``True`` for a call, ``False`` for a put.
        price: Observed option price (quote units per unit of underlying).
        spot: Current price of the underlying (> 0).
        strike: Strike price (> 0).
        years: Time to expiry in years (> 0, finite).

    Returns:
        The annualised volatility as a fraction (``0.0`` when ``price`` equals
        the intrinsic value exactly), or ``None`` when no finite volatility
        reproduces the price: ``price`` below the intrinsic value, at or above
        the upper bound (``spot`` for a call, ``strike`` for a put), any
        argument non-finite, or ``spot``, ``strike`` or ``years`` not positive
        (the price then does not depend on volatility).
    """
    if not all(math.isfinite(x) for x in (price, spot, strike, years)):
        return None
    if spot <= 0.0 or strike <= 0.0 or years <= 0.0:
        return None
    if price >= (spot if is_call else strike):
        return None  # only reached as vol -> infinity
    target = price - _intrinsic(is_call, spot, strike)
    upper = min(spot, strike)  # supremum of the time value (vol -> infinity)
    if target < 0.0 or target >= upper:
        return None
    if target == 0.0:
        return 0.0

    sqrt_years = math.sqrt(years)

    # Bracket the root in total vol: f(lo) <= target <= f(hi).
    x = 1.0
    f, _ = _time_value_and_vega(spot, strike, x)
    if f < target:
        lo = x
        hi = 2.0 * x
        while _time_value_and_vega(spot, strike, hi)[0] < target:
            lo = hi
            hi *= 2.0
            if hi > _IV_V_MAX:
                return None
    else:
        hi = x
        lo = 0.5 * x
        while _time_value_and_vega(spot, strike, lo)[0] > target:
            hi = lo
            lo *= 0.5
            if lo < _IV_V_MIN:
                lo = 0.0
                break
    if lo == 0.0 and hi < _IV_V_MIN:
        return hi / sqrt_years

    x = hi if lo == 0.0 else 0.5 * (lo + hi)
    for _ in range(_IV_MAX_ITER):
        f, dv = _time_value_and_vega(spot, strike, x)
        diff = f - target
        if diff == 0.0:
            break
        if diff > 0.0:
            hi = x
        else:
            lo = x
        if hi - lo <= _IV_REL_TOL * hi:
            break
        step = diff / dv if dv > 0.0 else math.inf
        candidate = x - step
        if not (lo < candidate < hi) or math.isinf(step):
            if lo > 0.0 and hi > 4.0 * lo:
                candidate = math.sqrt(lo * hi)
            elif lo == 0.0 and hi > 1e-8:
                candidate = 0.25 * hi
            else:
                candidate = 0.5 * (lo + hi)
        if abs(candidate - x) <= _IV_REL_TOL * x:
            x = candidate
            break
        x = candidate
    result = x / sqrt_years
    return result if math.isfinite(result) else None
