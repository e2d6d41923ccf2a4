"""The challenger's own roots for one batch, computed on demand from the derivation's state.

A game reads the trace at a handful of step counts per round (the split
points), so :class:`BatchTrace` computes only those, in one replay of the
batch's first steps per round (:meth:`node.derive.Derivation.roots_at`),
and caches them. Computing every root (``StateDB.roots_after_each``) would
hash the growing set of dirty leaves once per step.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.derive import Derivation


class BatchTrace:
    """``trace[i]``: the node's root after the first ``i`` steps of batch ``index``."""

    def __init__(self, derivation: Derivation, index: int) -> None:
        self.derivation = derivation
        self.index = index
        self._roots: dict[int, bytes] = {}
        self.replays = 0

    def prefetch(self, points: Iterable[int]) -> None:
        """Compute the roots at ``points`` not known yet, in one replay."""
        missing = [p for p in points if p not in self._roots]
        if missing:
            self.replays += 1
            self._roots.update(self.derivation.roots_at(self.index, missing))

    def __getitem__(self, steps: int) -> bytes:
        """The root after ``steps`` steps."""
        if steps not in self._roots:
            self.prefetch([steps])
        return self._roots[steps]
