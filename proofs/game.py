"""Positions of the k-ary dissection game (DESIGN §6, docs/l1.md)."""

from __future__ import annotations


def split_points(lo: int, hi: int, k: int) -> list[int]:
    """The dispute game's split points of [lo, hi]: lo + (hi - lo) * j // p, p = min(k, hi - lo)."""
    if hi <= lo:
        raise ValueError("empty range")
    parts = min(k, hi - lo)
    return [lo + (hi - lo) * j // parts for j in range(parts + 1)]


def dissection_rounds(n_steps: int, k: int) -> int:
    """Rounds of the game on an ``n_steps`` batch when the last part is always chosen (the longest)."""
    rounds, lo, hi = 0, 0, n_steps
    while hi - lo > 1:
        points = split_points(lo, hi, k)
        lo, hi = max(((points[j], points[j + 1]) for j in range(len(points) - 1)), key=lambda p: p[1] - p[0])
        rounds += 1
    return rounds
