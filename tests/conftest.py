"""Test-wide settings: Hypothesis never fails a test on timing (CI has 2 busy cores)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "rtc64",
    deadline=None,
    suppress_health_check=(HealthCheck.too_slow,),
)
settings.load_profile("rtc64")
