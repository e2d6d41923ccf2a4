"""Integer division helpers shared by the STF and its tests against the Vyper twin.

Python's ``//`` floors towards minus infinity while the EVM's ``sdiv`` truncates
towards zero; the STF never uses ``//`` on possibly negative numbers directly,
only these helpers, each of which is specified in docs/stf.md §2.
"""


def div_floor(a: int, b: int) -> int:
    """Largest integer <= a / b, for b > 0."""
    return a // b


def div_ceil(a: int, b: int) -> int:
    """Smallest integer >= a / b, for b > 0."""
    return -((-a) // b)


def div_trunc(a: int, b: int) -> int:
    """a / b rounded towards zero (the EVM's sdiv), for b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def mul_bps_ceil(amount: int, bps: int) -> int:
    """ceil(amount * bps / 10_000) for amount >= 0: a charge to the trader."""
    return -((-amount * bps) // 10_000)


def mul_bps_floor(amount: int, bps: int) -> int:
    """floor(amount * bps / 10_000) for amount >= 0: a payment to the trader."""
    return (amount * bps) // 10_000
