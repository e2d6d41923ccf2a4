"""Shared pytest configuration: Hypothesis profiles, and a guard against stale compiled modules.

``default`` is what a plain ``pytest`` run uses; ``HFX_FUZZ=long`` selects
``long``, which runs ten times as many examples. Tests with expensive examples
scale the active profile's ``max_examples`` down rather than hard-coding a
number, so the long profile raises them too.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from node.compiled_state import stale_warning

settings.register_profile(
    "default",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=1_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("long" if os.environ.get("HFX_FUZZ", "").lower() == "long" else "default")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled state/ modules older than their sources (an edit not rebuilt)."""
    warning = stale_warning()
    if warning is not None:
        raise pytest.UsageError(warning)
