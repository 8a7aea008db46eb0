"""Check backpropagation against central finite differences."""

from __future__ import annotations

import numpy as np

from . import _checks
from .mlp import MLP


def numerical_grads(model: MLP, X: np.ndarray, y: np.ndarray, eps: float = 1e-6,
                    reduction: str = "mean") -> list[np.ndarray]:
    """Central differences ``(L(w + eps) - L(w - eps)) / (2 eps)`` for every weight.

    Perturbs one weight at a time of a float64 copy of ``model`` (on its
    backend and device; a device without float64 is refused); ``model``
    itself is not touched. Costs two forward passes per weight. NumPy arrays.
    """
    _checks.instance("model", model, MLP)
    eps = _checks.finite_float("eps", eps, low=0.0, low_inclusive=False, high=1.0)
    model.loss_and_grads(X, y, reduction)  # validates X, y and reduction before the loops
    try:
        probe = model.copy(dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"the gradient check differentiates in float64, which this model's "
                         f"device lacks: {error}") from None
    grads = []
    for p in probe.params:
        g = np.empty(tuple(p.shape))
        for i in np.ndindex(p.shape):
            saved = float(p[i])  # a number: a torch 0-d tensor would be a view
            p[i] = saved + eps
            up, _ = probe.loss_and_grads(X, y, reduction)
            p[i] = saved - eps
            down, _ = probe.loss_and_grads(X, y, reduction)
            p[i] = saved
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def gradient_check(model: MLP, X: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """Relative error between backprop and central differences, over all weights.

    With ``g`` every gradient of :meth:`MLP.loss_and_grads` stacked into one
    vector and ``g_num`` the same of :func:`numerical_grads` (both of the mean
    loss)::

        err = ||g - g_num|| / max(||g|| + ||g_num||, 1e-12)

    In float64 a correct backward pass gives about 1e-8 or less: the
    truncation error of the differences is ``O(eps**2)`` and their rounding
    error ``O(1e-16 |L| / eps)``. The error is taken over the whole vector, not
    per array, because one array's gradient can be as small as that rounding
    error (a layer behind dead relu units) without anything being wrong.

    Examples
    --------
    >>> model = sg.MLP([4, 8, 3], activation="tanh", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(5, 4))
    >>> y = np.array([0, 1, 2, 1, 0])
    >>> bool(sg.gradient_check(model, X, y) < 1e-6)   # backprop == central differences
    True
    """
    _checks.instance("model", model, MLP)
    grads = model.to_host(model.loss_and_grads(X, y)[1])
    g = np.concatenate([p.ravel() for p in grads])
    g_num = np.concatenate([p.ravel() for p in numerical_grads(model, X, y, eps)])
    scale = max(np.linalg.norm(g) + np.linalg.norm(g_num), 1e-12)
    return float(np.linalg.norm(g - g_num) / scale)
