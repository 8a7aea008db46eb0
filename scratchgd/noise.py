"""The gradient noise scale: which batch sizes pay off, measured from the gradients.

McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training"
(2018, arXiv:1812.06162). With ``g_i`` the gradient of the per-example loss
``l_i`` and ``G`` their mean, a batch of ``B`` rows estimates ``G`` with noise
whose summed variance is ``tr(Sigma) / B``. The *simple noise scale*::

    B_simple = tr(Sigma) / |G|^2

is the batch size at which that noise is as large as the gradient itself. The
paper's model of training, with ``S`` the training steps and ``E = B S`` the
examples needed to reach a given loss::

    S = S_min (1 + B_noise / B),    E = E_min (1 + B / B_noise),    B_noise ~ B_simple

Below ``B_noise`` doubling the batch nearly halves the steps at no extra
computation; above it, a larger batch buys almost nothing.

Every quantity comes out of the ordinary backward pass: the per-example
squared gradient norm of a dense layer is ``|delta_i|^2 (|a_i|^2 + 1)``, built
here (:class:`RowNorms`) from the activations and deltas the backward pass
shows it (``scratchgd.kernels.reference.backward``, argument ``observe``), so
no per-example gradient is ever stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import _checks
from ._arrays import NUMPY, Array
from .data import Dataset
from .mlp import MLP, to_numpy

__all__ = [
    "BLOCK_ROWS", "GradientNoise", "advice_table", "advise_batch_size", "batch_estimates",
    "default_batch_sizes", "gradient_noise", "noise_scale", "predicted_cost"
]

BLOCK_ROWS = 4096
"""Rows per backward pass of :func:`gradient_noise`: memory stays bounded by one
block's activations (``BLOCK_ROWS`` times the layer widths), whatever ``n``."""


@dataclass(frozen=True)
class GradientNoise:
    """The gradient noise of a model on a data set, at its current weights.

    Attributes
    ----------
    grad_sq : float
        ``|G|^2``, the squared norm of the mean gradient ``G = (1/n) sum_i g_i``.
    trace_cov : float
        ``tr(Sigma) = (1/n) sum_i |g_i - G|^2``, the summed variance of the
        per-example gradients.
    b_simple : float
        ``trace_cov / grad_sq`` (see :func:`noise_scale` for ``grad_sq <= 0``).
    rows : int
        Rows the figures were computed from.
    """

    grad_sq: float
    trace_cov: float
    b_simple: float
    rows: int


def noise_scale(grad_sq: float, trace_cov: float) -> float:
    """``B_simple = trace_cov / grad_sq``, never a division by zero.

    When ``grad_sq <= 0`` -- at a minimum, or an estimate of ``|G|^2`` that
    came out at or below zero because the noise swamps the gradient -- the
    result is ``inf`` (no batch is large enough to average the noise away) if
    ``trace_cov > 0``, and ``nan`` (nothing to measure) if not.
    """
    if grad_sq > 0:
        return trace_cov / grad_sq
    return math.inf if trace_cov > 0 else math.nan


def batch_estimates(grad_sums: list[np.ndarray], sq_norms: np.ndarray) -> tuple[float, float]:
    """Unbiased ``|G|^2`` and ``tr(Sigma)`` from one batch of ``B >= 2`` rows.

    The paper's two-size estimators (its appendix A.1) with ``B_small = 1`` and
    ``B_big = B``, from what one backward pass gives: ``grad_sums``, the
    gradient SUM of the batch (a list of arrays like ``params``), and
    ``sq_norms``, ``|g_i|^2`` for its ``B`` rows. With
    ``S_small = (1/B) sum_i |g_i|^2`` and ``S_big = |(1/B) sum_i g_i|^2``::

        |G|^2     ~  (B S_big - S_small) / (B - 1)
        tr(Sigma) ~  (S_small - S_big) / (1 - 1/B)

    Both are unbiased when the rows are drawn independently (``E S_big =
    |G|^2 + tr(Sigma) / B``, ``E S_small = |G|^2 + tr(Sigma)``). A batch drawn
    without replacement from ``n`` rows biases them by
    ``-tr(Sigma) / (n - 1)`` and a factor ``n / (n - 1)``: negligible for
    ``n`` in the hundreds. The first can be negative; the second cannot.
    """
    B = len(sq_norms)
    s_small = float(sq_norms.sum()) / B
    s_big = sum(float(np.vdot(g, g)) for g in grad_sums) / (B * B)
    return (B * s_big - s_small) / (B - 1), (s_small - s_big) / (1 - 1 / B)


def layer_sq_norms(a_prev: np.ndarray, delta: np.ndarray, sq_norms: np.ndarray) -> None:
    """Add one dense layer's share of every row's squared gradient norm to ``sq_norms``.

    Row ``i`` of ``delta_l`` is ``dl_i/dz_l`` alone (rows do not mix), so row
    ``i``'s own gradient of the layer is the outer product ``a_{l-1,i}
    delta_{l,i}^T`` (weights) and ``delta_{l,i}`` (bias), and, since
    ``|u v^T|^2 = |u|^2 |v|^2``::

        |g_i|^2 = sum_l |delta_{l,i}|^2 (|a_{l-1,i}|^2 + 1)

    ``a_prev``: ``a_{l-1}`` ``(n, fan_in)``; ``delta``: ``delta_l`` ``(n, fan_out)``;
    ``sq_norms``: ``(n,)`` float64, added to.
    """
    sq_norms += (delta * delta).sum(axis=1) * ((a_prev * a_prev).sum(axis=1) + 1)


class RowNorms:
    """``|g_i|^2`` of every row of a batch, summed layer by layer as the backward pass runs.

    Pass it as ``observe`` to a backend's ``loss_and_grads``: called with each
    layer's ``(a_{l-1}, delta_l)``, it adds that layer's share
    (:func:`layer_sq_norms`, or the numba backend's compiled twin
    ``dense_sq_norms``) to ``sq_norms``, ``(n,)`` float64 zeros at the start.
    """

    def __init__(self, rows: int, kernels: ModuleType) -> None:
        self.sq_norms = np.zeros(rows)
        self._add = getattr(kernels, "dense_sq_norms", layer_sq_norms)
        self.xp = getattr(kernels, "xp", NUMPY)
        if self.xp is not NUMPY:  # an array-API backend: each layer's share computed there
            self._add = self._add_from_device

    def _add_from_device(self, a_prev: Array, delta: Array, sq_norms: np.ndarray) -> None:
        """:func:`layer_sq_norms` on the device's arrays; the ``(n,)`` share read back."""
        xp = self.xp
        share = xp.sum(delta * delta, axis=1) * (xp.sum(a_prev * a_prev, axis=1) + 1)
        sq_norms += to_numpy(share)

    def __call__(self, a_prev: np.ndarray, delta: np.ndarray) -> None:
        self._add(a_prev, delta, self.sq_norms)


def _moments(model: MLP, data: Dataset, y: np.ndarray, index: np.ndarray | None
             ) -> tuple[float, float, int]:
    """``|sum_i g_i|^2`` and ``sum_i |g_i|^2`` over the rows ``index`` (all if ``None``).

    One backward pass per block of ``BLOCK_ROWS`` rows; the gradient sums are
    accumulated in float64, so memory stays bounded by one block.
    """
    m = len(data) if index is None else len(index)
    grad_sum = [np.zeros(p.shape) for p in model.params]
    sq_sum = 0.0
    for start in range(0, m, BLOCK_ROWS):
        rows = (slice(start, min(start + BLOCK_ROWS, m)) if index is None
                else index[start:start + BLOCK_ROWS])
        X = model.inputs(data.X[rows])
        norms = RowNorms(len(X), model.kernels)
        X, y_rows = model.to_device([X, y[rows]])
        _, grads, _ = model.kernels.loss_and_grads(model.params, X, y_rows, model.activation,
                                                    model.loss, norms)
        for total, g in zip(grad_sum, model.to_host(grads), strict=True):
            total += g
        sq_sum += float(norms.sq_norms.sum())
    return sum(float(np.vdot(g, g)) for g in grad_sum), sq_sum, m


def gradient_noise(model: MLP, data: Dataset, rows: int | None = None,
                   seed: int = 0) -> GradientNoise:
    """Measure ``|G|^2``, ``tr(Sigma)`` and ``B_simple`` at the model's current weights.

    ``g_i`` is the gradient of the per-example loss ``l_i`` (the loss of
    ``reduction="mean"`` is their mean). Nothing is changed.

    ``rows=None``: every one of the ``n`` rows, exact for the data set taken as
    the population, with ``G = (1/n) sum_i g_i``::

        grad_sq   = |G|^2
        trace_cov = (1/n) sum_i |g_i|^2 - |G|^2  =  (1/n) sum_i |g_i - G|^2

    ``rows=m`` (``2 <= m <= n``): ``m`` rows drawn without replacement
    (``numpy.random.default_rng(seed)``) give unbiased estimates of those two
    full-data figures. With ``gbar`` the sample's mean gradient and
    ``s^2 = (1/m) sum |g_i|^2 - |gbar|^2`` over the sample, the finite-population
    correction of sampling without replacement, ``E |gbar - G|^2 =
    (tr(Sigma) / m) (n - m) / (n - 1)``, gives
    ``E s^2 = tr(Sigma) n (m - 1) / (m (n - 1))``, hence::

        trace_cov = s^2 m (n - 1) / (n (m - 1))
        grad_sq   = |gbar|^2 - s^2 (n - m) / (n (m - 1))

    (both reduce to the exact figures at ``m = n``). ``b_simple`` is their
    ratio (a ratio of unbiased estimates: consistent, not itself unbiased);
    when ``grad_sq <= 0`` it is ``inf`` (see :func:`noise_scale`).

    Per-example norms come from the backward pass (``|delta_i|^2 (|a_i|^2 +
    1)`` per layer), in blocks of ``BLOCK_ROWS`` rows, so a memory-mapped data
    set is read block by block and never held whole.

    Raises
    ------
    ValueError
        If ``rows`` is not ``None`` or an integer in ``[2, n]``, or ``data`` does
        not suit ``model``.
    """
    _checks.instance("model", model, MLP)
    y = model.check_data(data, "data")
    seed = _checks.seed("seed", seed)
    rows = _checks.positive_int("rows", rows, allow_none=True)
    n = len(data)
    if n == 0:
        raise ValueError("data has no rows: the gradient noise needs at least one")
    if rows is not None and not 2 <= rows <= n:
        raise ValueError(f"rows must be None or between 2 and the {n} rows of data, got {rows}")
    y = model.targets(y)  # as training sees them
    if rows is None or rows == n:
        big, sq_sum, m = _moments(model, data, y, None)
        grad_sq = big / (m * m)
        trace_cov = sq_sum / m - grad_sq
        return GradientNoise(grad_sq, trace_cov, noise_scale(grad_sq, trace_cov), m)
    index = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    big, sq_sum, m = _moments(model, data, y, index)
    mean_sq = big / (m * m)
    s2 = sq_sum / m - mean_sq
    trace_cov = s2 * m * (n - 1) / (n * (m - 1))
    grad_sq = mean_sq - s2 * (n - m) / (n * (m - 1))
    return GradientNoise(grad_sq, trace_cov, noise_scale(grad_sq, trace_cov), m)


def predicted_cost(batch_size: float, b_noise: float) -> tuple[float, float]:
    """The paper's model: ``(S / S_min, E / E_min) = (1 + B_noise / B, 1 + B / B_noise)``.

    ``B_noise = 0`` (no noise) gives ``E / E_min = inf``; ``nan`` gives ``nan``.
    """
    if b_noise == 0:
        return 1.0, math.inf
    return 1 + b_noise / batch_size, 1 + batch_size / b_noise


def advice_table(b_simple: float, batch_sizes: list[int]) -> list[dict]:
    """:func:`advise_batch_size`'s table for a measured ``b_simple``."""
    table = []
    for b in batch_sizes:
        steps, examples = predicted_cost(b, b_simple)
        table.append({"batch_size": b, "steps_ratio": steps, "examples_ratio": examples,
                      "recommended": bool(steps <= 3 and examples <= 3), "b_simple": b_simple})
    return table


def advise_batch_size(model: MLP, data: Dataset, batch_sizes: list[int] | None = None,
                      rows: int | None = None, seed: int = 0) -> list[dict]:
    """Predicted training steps and examples per batch size, from ``B_simple`` now.

    ``B_simple`` is measured by :func:`gradient_noise` (``rows``, ``seed``) at
    the current weights, so it predicts the cost of reaching a loss a little
    below the current one. For each batch size ``B`` the paper's model gives::

        S / S_min = 1 + B_simple / B        (steps, over the fewest possible)
        E / E_min = 1 + B / B_simple        (examples, over the fewest possible)

    ``B = B_simple`` costs ``2 S_min`` steps and ``2 E_min`` examples. A batch
    size is *recommended* when it costs at most 1.5 times that in both, that is
    ``S <= 3 S_min`` and ``E <= 3 E_min``, i.e. ``B_simple / 2 <= B <= 2 B_simple``.
    These are predictions of the model, not measurements; when ``B_simple`` is
    not finite, no batch size is recommended.

    What the range estimates: the critical batch size of the training from the
    current weights on, if ``B_simple`` were the paper's ``B_noise`` and the
    learning rate were tuned for each batch size. ``B_simple`` grows as the
    loss falls, so the range moves up during training. Measured against the
    steps each batch size needed to reach a loss (docs/batch_size.md), it held
    within about 3 times on a linear regression and over-estimated the critical
    batch size of a ReLU network on the digits 1.4 to 35 times: an upper bound
    there, not the batch size to use.

    Parameters
    ----------
    batch_sizes : list of int, optional
        Default: the powers of two below ``n`` and ``n`` itself (the full batch).

    Returns
    -------
    list of dict, one per batch size, with keys ``batch_size``, ``steps_ratio``
    (``S / S_min``), ``examples_ratio`` (``E / E_min``), ``recommended`` (bool)
    and ``b_simple`` (the same measured value in every row).
    """
    _checks.instance("data", data, Dataset)
    if batch_sizes is None:
        batch_sizes = default_batch_sizes(len(data))
    elif isinstance(batch_sizes, str | bytes) or not hasattr(batch_sizes, "__iter__"):
        raise TypeError(f"batch_sizes must be a list of positive integers, got {batch_sizes!r}")
    sizes = [_checks.positive_int(f"batch_sizes[{i}]", b) for i, b in enumerate(batch_sizes)]
    return advice_table(gradient_noise(model, data, rows=rows, seed=seed).b_simple, sizes)


def default_batch_sizes(n: int) -> list[int]:
    """The powers of two below ``n``, then ``n``: ``[1, 2, 4, ..., n]``."""
    return [2 ** i for i in range(max(n - 1, 1).bit_length()) if 2 ** i < n] + [n]
