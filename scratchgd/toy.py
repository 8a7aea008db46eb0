"""Models small enough to draw: the training cycle on one or two parameters.

The article explains GD and SGD with two pictures: per-sample loss curves of a
one-parameter model, and the paths of GD and SGD over the contour lines of a
two-parameter loss. This module holds what those pictures need and ``MLP``
does not give:

* :class:`Line` — the one-parameter model ``y_hat = w x`` (an MLP always has
  a bias), with per-sample losses ``f_i(w) = (w x_i - y_i)^2``;
* :func:`descend` — the training cycle that keeps the weights after every
  training step, drawing its batches from the optimizer's own ``DataLoader``,
  with an optional decaying learning rate;
* :func:`linear_loss_surface` — the full loss of ``y_hat = w x + b`` on a grid,
  which is what ``MLP([1, 1], loss="mse")`` minimises.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from . import _checks
from .data import DataLoader, Dataset
from .optim import Optimizer


class Model(Protocol):
    """Anything with ``params`` and a mean ``loss_and_grads``: :class:`Line` or ``MLP``."""

    params: list[np.ndarray]

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray,
                       reduction: str = "mean") -> tuple[float, list[np.ndarray]]: ...


class Line:
    """The one-parameter model ``y_hat = w x`` under squared error.

    For data points ``(x_i, y_i)`` the per-sample loss and its derivative are::

        f_i(w) = (w x_i - y_i)^2,        f_i'(w) = 2 x_i (w x_i - y_i).

    ``f_i`` is smallest at ``w = y_i / x_i``; the average
    ``L(w) = (1/n) sum_i f_i(w)`` is smallest at
    ``w* = sum_i x_i y_i / sum_i x_i^2``: a mean of the per-sample minima
    weighted by ``x_i^2``, so it lies between them.

    Parameters
    ----------
    w : float
        Starting weight. ``params`` is ``[w]`` with ``w`` of shape ``(1,)``.
    """

    def __init__(self, w: float = 0.0) -> None:
        w = _checks.finite_float("w", w, low=-np.inf, low_inclusive=False)
        self.params = [np.array([w])]

    @staticmethod
    def per_sample_losses(w: np.ndarray, data: Dataset) -> np.ndarray:
        """``f_i(w)`` for every weight in ``w: (m,)`` and every row: shape ``(m, n)``."""
        x, y = _columns(data)
        return (np.asarray(w, dtype=np.float64).reshape(-1, 1) * x - y) ** 2

    @staticmethod
    def minimum(data: Dataset) -> float:
        """``w* = sum_i x_i y_i / sum_i x_i^2``, the minimum of the average loss."""
        x, y = _columns(data)
        return float((x * y).sum() / (x * x).sum())

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray,
                       reduction: str = "mean") -> tuple[float, list[np.ndarray]]:
        """``L = (1/n) sum_i f_i(w)`` (or the sum) and ``[dL/dw]`` for the rows ``X: (n, 1)``."""
        reduction = _checks.choice("reduction", reduction, ("mean", "sum"))
        x, target = np.asarray(X, dtype=np.float64)[:, 0], np.asarray(y, dtype=np.float64).ravel()
        residual = self.params[0][0] * x - target
        scale = len(x) if reduction == "mean" else 1
        loss = float((residual ** 2).sum()) / scale
        return loss, [np.array([(2 * x * residual).sum() / scale])]


def _columns(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    if data.X.shape[1] != 1 or data.y.ndim != 2 or data.y.shape[1] != 1:
        raise ValueError(f"data must have one feature and one target column, got {data}")
    return data.X[:, 0].astype(np.float64), data.y[:, 0].astype(np.float64)


def _endless(loader: DataLoader) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches from ``loader``, epoch after epoch."""
    while True:
        yield from loader


def descend(model: Model, data: Dataset, optimizer: Optimizer, steps: int, seed: int = 0,
            lr_decay: float = 0.0) -> np.ndarray:
    """Take ``steps`` training steps; return the weights before and after each.

    Every step is one iteration of the training cycle: draw a batch from
    ``optimizer.loader(data, seed)`` (starting a new epoch when one runs out),
    compute the mean loss gradient, update. So ``GD`` steps on the average
    loss, ``SGD`` on one randomly drawn ``f_i``, ``MiniBatchSGD`` on a random
    subset. With ``lr_decay = c`` step ``t = 0, 1, ...`` uses the learning rate
    ``lr / (1 + c t)``: its sum diverges while the sum of its squares does
    not, which is what lets SGD converge instead of hovering.

    Returns
    -------
    path : (steps + 1, p) array
        Row ``t`` holds all ``p`` parameters, flattened, after ``t`` steps.
    """
    steps = _checks.positive_int("steps", steps)
    lr_decay = _checks.finite_float("lr_decay", lr_decay, low=0.0, low_inclusive=True)
    batches = _endless(optimizer.loader(data, seed=seed))
    lr = optimizer.lr
    path = [np.concatenate([p.ravel() for p in model.params])]
    try:
        for t in range(steps):
            X, y = next(batches)
            optimizer.lr = lr / (1 + lr_decay * t)
            _, grads = model.loss_and_grads(X, y)
            optimizer.step(model.params, grads)
            path.append(np.concatenate([p.ravel() for p in model.params]))
    finally:
        optimizer.lr = lr
    return np.array(path)


def linear_loss_surface(w: np.ndarray, b: np.ndarray, data: Dataset) -> np.ndarray:
    """Full mean squared error of ``y_hat = w x + b`` at every grid point.

    ``L(w, b) = (1/n) sum_i (w x_i + b - y_i)^2``, the loss of
    ``MLP([1, 1], loss="mse")`` with weight ``w`` and bias ``b``. ``w`` and
    ``b`` are arrays of one shape (e.g. from ``np.meshgrid``); so is the result.
    Expanded into sums over the data so the grid costs no more than the data.
    """
    x, y = _columns(data)
    w, b = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
    sxx, sx, sy, sxy, syy = (x * x).mean(), x.mean(), y.mean(), (x * y).mean(), (y * y).mean()
    return w * w * sxx + 2 * w * b * sx + b * b - 2 * w * sxy - 2 * b * sy + syy
