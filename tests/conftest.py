"""Shared test settings: Hypothesis without deadlines (JIT compilation and a
shared machine make single examples slow now and then), and SciPy's array API
support switched on before anything imports SciPy, so scikit-learn's
array-API estimator checks run on the estimators instead of skipping."""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from scratchgd import activations  # noqa: E402

settings.register_profile(
    "scratchgd", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "scratchgd"))


@pytest.fixture
def leaky_relu():
    """A throwaway activation, leaky relu (slope 0.01 below 0, no compiled twin), registered
    for one test and unregistered after it, so no other test sees it."""
    def forward(z, xp):
        return xp.where(z > 0, z, 0.01 * z)

    def derivative(a, xp):
        return xp.asarray(xp.where(a > 0, 1.0, 0.01), dtype=a.dtype)

    mask, array = ("alloc", "mask"), ("alloc", "array")
    forward_steps = (mask, array, array, ("free", "array"), ("free", "mask"))  # z > 0, 0.01 z, where
    derivative_steps = (mask, array, ("free", "mask"), array, ("free", "array"))  # a > 0, where, astype
    entry = activations.register(activations.Activation(
        "leaky_relu", forward, derivative, "he", forward_steps, derivative_steps))
    yield entry
    activations.unregister("leaky_relu")
