"""Hypothesis strategies for small networks, data and batch partitions."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

ACTIVATIONS = ("relu", "tanh", "sigmoid")
LOSSES = ("cross_entropy", "mse")


@st.composite
def problems(draw, max_rows: int = 12, max_width: int = 6, max_hidden_layers: int = 2):
    """A float64 model spec and a data batch ``(sizes, activation, loss, X, y, seed)``."""
    loss = draw(st.sampled_from(LOSSES))
    activation = draw(st.sampled_from(ACTIVATIONS))
    d = draw(st.integers(1, max_width))
    hidden = draw(st.lists(st.integers(1, max_width), min_size=0, max_size=max_hidden_layers))
    k = draw(st.integers(2 if loss == "cross_entropy" else 1, max_width))
    n = draw(st.integers(1, max_rows))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, k, size=n) if loss == "cross_entropy" else rng.standard_normal((n, k))
    return [d, *hidden, k], activation, loss, X, y, seed


@st.composite
def partitions(draw, n: int):
    """Cut points splitting ``range(n)`` into consecutive non-empty batches."""
    cuts = draw(st.sets(st.integers(1, n - 1), max_size=n - 1)) if n > 1 else set()
    return [0, *sorted(cuts), n]
