# pragma version ~=0.4.3
"""
@title StfMath
@license MIT
@notice The four rounding helpers of docs/stf.md §2 on the EVM's int256,
        matching state/arith.py exactly.
@dev Vyper's `//` and `%` on int256 truncate towards zero (sdiv, smod), unlike
     Python's flooring `//`. The divisor is always positive here (a constant
     or a quantity checked > 0 by the caller). Stateless module.
"""

from . import StfTypes as T


@internal
@pure
def _div_floor(a: int256, b: int256) -> int256:
    """
    @notice ⌊a / b⌋ for b > 0 (towards −∞, Python's `//`).
    @param a The dividend.
    @param b The divisor, > 0.
    @return The floored quotient.
    """
    q: int256 = a // b
    if a < 0 and q * b != a:
        # q * b cannot overflow: |q * b| <= |a|; q - 1 > min_value(int256) since b > 0
        return unsafe_sub(q, 1)
    return q


@internal
@pure
def _div_ceil(a: int256, b: int256) -> int256:
    """
    @notice ⌈a / b⌉ for b > 0.
    @param a The dividend.
    @param b The divisor, > 0.
    @return The ceiled quotient.
    """
    q: int256 = a // b
    if a > 0 and q * b != a:
        # q + 1 <= a < max_value(int256) since b >= 1 and q * b < a
        return unsafe_add(q, 1)
    return q


@internal
@pure
def _div_trunc(a: int256, b: int256) -> int256:
    """
    @notice a / b rounded towards zero for b > 0 (the EVM's sdiv).
    @param a The dividend.
    @param b The divisor, > 0.
    @return The truncated quotient.
    """
    return a // b


@internal
@pure
def _bps_ceil(x: int256, r: uint256) -> int256:
    """
    @notice `div_ceil(x × r, BPS)` for x >= 0 (a charge to the trader).
    @param x The amount, >= 0.
    @param r The rate in basis points (u16).
    @return The rounded-up product.
    """
    return self._div_ceil(x * convert(r, int256), T.BPS_S)


@internal
@pure
def _bps_floor(x: int256, r: uint256) -> int256:
    """
    @notice `div_floor(x × r, BPS)` for x >= 0 (a payment to the trader).
    @param x The amount, >= 0.
    @param r The rate in basis points (u16).
    @return The rounded-down product.
    """
    return self._div_floor(x * convert(r, int256), T.BPS_S)


@internal
@pure
def _abs(x: int256) -> int256:
    """
    @notice |x|; every caller's x is far from min_value(int256).
    @param x A signed integer.
    @return Its absolute value.
    """
    if x < 0:
        return -x
    return x
