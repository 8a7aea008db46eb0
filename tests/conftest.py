"""Shared test settings: Hypothesis without deadlines (JIT compilation and a
shared machine make single examples slow now and then)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "scratchgd", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "scratchgd"))
