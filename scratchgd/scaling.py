"""Input scaling: the fixed, untrained first operation of a model, ``(x - mean) / std``.

Plain SGD trains poorly when features differ in scale by orders of magnitude
(one feature near 1000, another near 1: the gradient of the first layer is
dominated by the large ones and a learning rate small enough for them is too
small for the rest). Standardizing every feature to mean 0 and variance 1 over
the training rows removes that. Here it is part of the model, not a copy of
the data:

* :func:`feature_stats` computes each feature's mean and standard deviation
  in one streaming pass over blocks of rows, with float64 accumulators, so a
  memory-mapped ``X`` stays on disk and large values do not overflow;
* :func:`scratchgd.standardize` (in :mod:`scratchgd.mlp`, which knows both the
  model and the data) stores them in ``model.scaling``; from then on every
  batch is scaled as it is gathered, ``a_0 = (x - mean) / std``
  (:func:`scratchgd.kernels.reference.apply_scaling`, and the gathering loop of
  the compiled backend), by ``fit``, ``evaluate``, ``predict`` and the
  estimators alike, and the statistics are saved with the weights.

A constant feature (standard deviation 0, or one that overflows float64) gets
``std = 1``: it becomes ``x - mean = 0`` for the training rows, so it adds
nothing, as it carried nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks

BLOCK_VALUES = 1 << 15
"""Values per block of :func:`feature_stats` (256 KiB of float64 temporaries)."""


@dataclass(frozen=True, eq=False)
class Scaling:
    """Per-feature statistics of the input scaling ``a_0 = (x - mean) / std``.

    Attributes
    ----------
    mean : (d,) float64
    std : (d,) float64, every value finite, > 0 and normal (constant features hold 1).
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = _checks.real_matrix(name, getattr(self, name), ndim=(1,))
            _checks.all_finite(name, value)
            object.__setattr__(self, name, np.array(value, dtype=np.float64))
        if self.mean.shape != self.std.shape or len(self.mean) == 0:
            raise ValueError(f"mean and std must be two arrays of one length d >= 1, got "
                             f"shapes {self.mean.shape} and {self.std.shape}")
        if (self.std < np.finfo(np.float64).tiny).any():  # 0, negative or subnormal
            raise ValueError(f"std must be > 0 and normal (>= 2.2e-308: x / std of a "
                             f"subnormal std is inf), found {self.std.min()}")

    def __len__(self) -> int:
        return len(self.mean)


def feature_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of every column of ``X``, in one streaming pass.

    ``X`` is read in blocks of about ``BLOCK_VALUES`` values (a memory map is
    never loaded whole); each block's mean and sum of squared deviations
    ``M2 = sum_i (x_i - mean)^2`` are taken in float64 and merged into the
    running ones by Chan et al.'s parallel formula, for blocks ``a`` and ``b``::

        n = n_a + n_b,  delta = mean_b - mean_a
        mean = mean_a + delta n_b / n
        M2 = M2_a + M2_b + delta^2 n_a n_b / n

    which never forms ``sum x^2`` (that loses every digit when the mean is large
    against the spread). The rows are first shifted by the first row ``x_0``
    (the variance does not change; the mean is shifted back at the end), so a
    large offset such as ``1e9 + N(0, 1)`` keeps the digits of its spread.
    Returns ``(mean, M2 / n)``, both ``(d,)`` float64.
    """
    n, d = X.shape
    rows = max(1, BLOCK_VALUES // max(1, d))
    shift = np.array(X[0], dtype=np.float64) if n else np.zeros(d)
    mean, m2, seen = np.zeros(d), np.zeros(d), 0
    for start in range(0, n, rows):
        block = np.array(X[start:start + rows], dtype=np.float64)  # a copy: changed below
        block -= shift
        n_b = len(block)
        mean_b = block.mean(axis=0)
        block -= mean_b
        m2_b = np.einsum("ij,ij->j", block, block)
        total = seen + n_b
        delta = mean_b - mean
        mean += delta * (n_b / total)
        m2 += m2_b + delta * delta * (seen * n_b / total)
        seen = total
    return mean + shift, m2 / max(seen, 1)


def fit_scaling(X: np.ndarray) -> Scaling:
    """The :class:`Scaling` that standardizes the rows ``X``: their mean, their std.

    ``std = sqrt(variance)`` from :func:`feature_stats`; where that is 0 or not
    finite (a constant feature, or values so large that the squares overflow),
    ``std = 1``, so the feature becomes ``x - mean``.
    """
    X = _checks.real_matrix("X", X, ndim=(2,))
    if len(X) == 0:
        raise ValueError(f"X must have at least one row to compute statistics, got {X.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        mean, variance = feature_stats(X)
        std = np.sqrt(variance)
    if not np.isfinite(mean).all():
        column = int(np.argmin(np.isfinite(mean)))
        raise ValueError(f"the mean of feature {column} overflows float64; rescale the data")
    std[~np.isfinite(std) | (std == 0)] = 1.0
    return Scaling(mean, std)


def range_spread(X: np.ndarray) -> tuple[float, int, int]:
    """How far apart the features' ranges ``max - min`` are: ``(ratio, widest, narrowest)``.

    Constant features are left aside; ``ratio`` is 1 when fewer than two vary.
    Streams over ``X`` in blocks, like :func:`feature_stats`.
    """
    d = X.shape[1]
    rows = max(1, BLOCK_VALUES // max(1, d))
    low, high = np.full(d, np.inf), np.full(d, -np.inf)
    for start in range(0, len(X), rows):
        block = np.asarray(X[start:start + rows], dtype=np.float64)
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
    span = high - low
    varying = np.flatnonzero(span > 0)
    if len(varying) < 2:
        return 1.0, 0, 0
    widest, narrowest = varying[np.argmax(span[varying])], varying[np.argmin(span[varying])]
    return float(span[widest] / span[narrowest]), int(widest), int(narrowest)
