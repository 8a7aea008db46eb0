"""Hypothesis strategies for small networks, data and batch partitions, read from the
registries (``activations.ACTIVATIONS``, ``losses.LOSSES``), and the checks the
parametrized tests share, so a newly registered activation or loss is under them
without editing a test."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import scratchgd as sg
from scratchgd import activations, losses

ACTIVATIONS = tuple(activations.ACTIVATIONS)
LOSSES = tuple(losses.LOSSES)
EPS = 1e-6         # step of the central differences
GRAD_TOL = 1e-6    # docs/math.md, identity 1: relative error of backprop in float64


def labels(loss: str, rng: np.random.Generator, n: int, k: int, dtype: type = np.float64
           ) -> np.ndarray:
    """``n`` rows of what ``loss`` takes: class labels in ``[0, k)`` or ``(n, k)`` targets."""
    if losses.LOSSES[loss].classes:
        return rng.integers(0, k, size=n)
    return rng.standard_normal((n, k)).astype(dtype)


def min_outputs(loss: str) -> int:
    """The fewest outputs a model with ``loss`` may have."""
    return 2 if losses.LOSSES[loss].classes else 1


@st.composite
def problems(draw, max_rows: int = 12, max_width: int = 6, max_hidden_layers: int = 2):
    """A float64 model spec and a data batch ``(sizes, activation, loss, X, y, seed)``."""
    loss = draw(st.sampled_from(LOSSES))
    activation = draw(st.sampled_from(ACTIVATIONS))
    d = draw(st.integers(1, max_width))
    hidden = draw(st.lists(st.integers(1, max_width), min_size=0, max_size=max_hidden_layers))
    k = draw(st.integers(min_outputs(loss), max_width))
    n = draw(st.integers(1, max_rows))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return [d, *hidden, k], activation, loss, X, labels(loss, rng, n, k), seed


@st.composite
def partitions(draw, n: int):
    """Cut points splitting ``range(n)`` into consecutive non-empty batches."""
    cuts = draw(st.sets(st.integers(1, n - 1), max_size=n - 1)) if n > 1 else set()
    return [0, *sorted(cuts), n]


def assert_backprop_matches_differences(sizes, activation, loss, X, y, seed) -> None:
    """Backprop equals central differences (docs/math.md, identity 1) for one problem.

    A small random offset on every weight and bias keeps relu-like units off
    their kink at exactly ``z = 0``.
    """
    model = sg.MLP(sizes, activation, loss, seed=seed)
    rng = np.random.default_rng(seed + 1)
    model.params = [p + 0.1 * rng.standard_normal(p.shape) for p in model.params]
    error = sg.gradient_check(model, X, y, eps=EPS)
    assert error < GRAD_TOL, f"{activation}/{loss}: backprop vs differences, relative error {error:.3g}"


def fixed_problem(activation: str, loss: str, seed: int = 0):
    """A problem every activation's whole input range shows in: 2 hidden layers, 16 rows of N(0, 4)."""
    rng = np.random.default_rng(seed)
    X = 2 * rng.standard_normal((16, 5))
    k = max(3, min_outputs(loss))
    return [5, 7, 6, k], activation, loss, X, labels(loss, rng, 16, k), seed
