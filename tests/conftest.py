"""Shared pytest configuration: Hypothesis profiles.

``default`` is what a plain ``pytest`` run uses; ``HFX_FUZZ=long`` selects
``long``, which runs ten times as many examples. Tests with expensive examples
scale the active profile's ``max_examples`` down rather than hard-coding a
number, so the long profile raises them too.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
