"""Engine test configuration: a Hypothesis profile without deadlines (CI machines vary)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "veto-core",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("veto-core")
