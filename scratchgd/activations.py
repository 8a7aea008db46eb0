"""Hidden-layer activation functions and their derivatives.

Each activation ``f`` is applied element-wise to the pre-activation ``z`` of a
hidden layer, ``a = f(z)``. Backpropagation needs ``f'(z)``; for the three
activations here it can be written in terms of the output ``a`` alone, so the
forward pass only has to keep the activations, not the pre-activations::

    | name    | f(z)                 | f'(z) written with a = f(z) |
    |---------|----------------------|-----------------------------|
    | relu    | max(0, z)            | 1 if a > 0 else 0           |
    | tanh    | tanh(z)              | 1 - a**2                    |
    | sigmoid | 1 / (1 + exp(-z))    | a * (1 - a)                 |
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid")


def relu(z: np.ndarray) -> np.ndarray:
    """Rectified linear unit, ``a = max(0, z)``, element-wise."""
    return np.maximum(z, 0)


def tanh(z: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent, ``a = tanh(z)``, element-wise."""
    return np.tanh(z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, ``a = 1 / (1 + exp(-z))``, element-wise.

    Written as ``(1 + tanh(z / 2)) / 2``, the same function without the
    overflow that ``exp(-z)`` hits for large negative ``z``.
    """
    return 0.5 * (1 + np.tanh(0.5 * z))


def relu_grad(a: np.ndarray) -> np.ndarray:
    """``f'(z)`` of relu from its output: ``1`` where ``a > 0``, else ``0``."""
    return (a > 0).astype(a.dtype)


def tanh_grad(a: np.ndarray) -> np.ndarray:
    """``f'(z)`` of tanh from its output: ``1 - a**2``."""
    return 1 - a * a


def sigmoid_grad(a: np.ndarray) -> np.ndarray:
    """``f'(z)`` of the sigmoid from its output: ``a * (1 - a)``."""
    return a * (1 - a)


FORWARD = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid}
DERIVATIVE = {"relu": relu_grad, "tanh": tanh_grad, "sigmoid": sigmoid_grad}
