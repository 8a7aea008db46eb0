"""Shared test settings: Hypothesis without deadlines (JIT compilation and a
shared machine make single examples slow now and then), and SciPy's array API
support switched on before anything imports SciPy, so scikit-learn's
array-API estimator checks run on the estimators instead of skipping."""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

from hypothesis import HealthCheck, settings  # noqa: E402 (after the environment is set)

settings.register_profile(
    "scratchgd", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "scratchgd"))
