"""Loss functions: the per-sample loss ``l_i`` and its gradient ``dl_i/dz_i``.

``z`` are the network's raw outputs, shape ``(n, k)``. Both functions return the
SUM of the per-sample losses over the ``n`` rows and the gradient of that sum,
so a caller can add batches together and divide by the rows it actually saw
(``reduction="mean"`` is the sum divided by ``n``; see ``MLP.loss_and_grads``).

cross_entropy
    ``l_i = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_i[y_i]`` with integer
    labels ``y: (n,)``. ``dl_i/dz_i = softmax(z_i) - onehot(y_i)``.
mse
    ``l_i = (1/k) sum_j (z_ij - y_ij)**2`` with targets ``y: (n, k)``.
    ``dl_i/dz_i = (2/k) (z_i - y_i)``.

With ``reduction="mean"`` these equal PyTorch's ``CrossEntropyLoss()`` and
``MSELoss()`` (which averages over all ``n*k`` elements, i.e. the mean over rows
of the per-row mean above).

:data:`LOSSES` is the registry the rest of the package reads (``MLP``'s
choices, the reference kernels, ``memory.estimate``, the compiled kernels'
dispatch, the command line, the tests); a new loss is one :class:`Loss` passed
to :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._registry import Registry, check_steps

__all__ = ["LEDGER_UNITS", "LOSSES", "Loss", "cross_entropy", "log_softmax", "mse", "register",
           "unregister"]

LEDGER_UNITS = ("outputs", "rows", "index")
"""The arrays of a loss's memory walk: ``(n, k)`` and ``(n,)`` in the model's
dtype, and ``(n,)`` int64 (a row index)."""


@dataclass(frozen=True)
class Loss:
    """One loss: everything the package needs to know about it.

    Attributes
    ----------
    name : str
        What ``MLP(loss=...)``, model files and ``--loss`` call it.
    function : callable
        ``(z, y) -> (loss_sum, dz)``: the SUM of the per-sample losses over the
        rows of the outputs ``z: (n, k)`` and its gradient ``dL/dz``.
    classes : bool
        True: ``y`` are integer class labels ``(n,)`` (a classifier, at least
        2 outputs); False: real targets ``(n, k)`` (a regressor).
    lr_scale : float
        The command line's default learning rates are the optimizer's
        (``optim.OPTIMIZERS``) times this.
    steps : tuple of (str, str)
        The arrays ``function`` allocates and frees, in order, ending with
        ``dz`` alive (what ``memory.estimate`` counts): pairs ``(step, unit)``
        of ``_registry.LEDGER_STEPS`` and :data:`LEDGER_UNITS`.
    compiled : int or None
        Its code in the compiled kernels (``kernels/compiled``), or ``None``:
        no compiled twin, and ``backend="numba"`` runs the reference kernels
        with a :class:`~scratchgd.CompiledFallbackWarning`.
    """

    name: str
    function: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    classes: bool
    lr_scale: float
    steps: tuple[tuple[str, str], ...]
    compiled: int | None = None


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable ``log softmax(z)`` along the last axis.

    ``log softmax(z)_j = (z_j - m) - log(1 + sum_{c != c*} exp(z_c - m))`` with
    ``m = z_{c*} = max_c z_c``: subtracting the row maximum keeps every ``exp``
    <= 1, so nothing overflows; the maximum's own term ``exp(0) = 1`` is taken
    out of the sum and added back by ``log1p``, so a confident prediction
    (a loss near 0) keeps its full relative precision.
    """
    top = z.argmax(axis=1)
    rows = np.arange(len(z))
    shifted = z - z[rows, top][:, None]
    others = np.exp(shifted)
    others[rows, top] = 0
    return shifted - np.log1p(others.sum(axis=1, keepdims=True))


def cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Summed softmax cross-entropy and its gradient.

    .. math::

        L = -\sum_i \log \operatorname{softmax}(z_i)_{y_i}, \qquad
        \frac{\partial L}{\partial z} = \operatorname{softmax}(z) - \operatorname{onehot}(y)

    Parameters
    ----------
    z : (n, k) raw outputs (logits).
    y : (n,) integer class labels in ``[0, k)``.

    Returns
    -------
    loss_sum : float, the sum over the n rows.
    dz : (n, k), ``dL/dz``.
    """
    logp = log_softmax(z)
    rows = np.arange(len(y))
    loss_sum = -float(logp[rows, y].sum())
    dz = np.exp(logp)
    dz[rows, y] -= 1
    return loss_sum, dz


def mse(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Summed per-row mean squared error and its gradient.

    .. math::

        L = \sum_i \frac{1}{k} \sum_j (z_{ij} - y_{ij})^2, \qquad
        \frac{\partial L}{\partial z} = \frac{2}{k} (z - y)

    Parameters
    ----------
    z : (n, k) outputs.
    y : (n, k) targets.

    Returns
    -------
    loss_sum : float, the sum over the n rows.
    dz : (n, k), ``dL/dz``.
    """
    k = z.shape[1]
    diff = z - y
    return float((diff * diff).sum()) / k, (2 / k) * diff


LOSSES = Registry("loss", Loss)
"""The registered losses by name, in the order they were registered."""


def register(loss: Loss) -> Loss:
    """Add ``loss`` to :data:`LOSSES`; returns it. Undone by :func:`unregister`.

    Raises
    ------
    TypeError, ValueError
        If it is not a :class:`Loss`, its name is taken, its memory steps are
        unknown, or its compiled code is another's.
    """
    if isinstance(loss, Loss):
        check_steps("loss.steps", loss.steps, LEDGER_UNITS)
    return LOSSES.add(loss)


def unregister(name: str) -> None:
    """Remove the loss ``name`` from :data:`LOSSES`."""
    LOSSES.remove(name)


_A, _F = "alloc", "free"
register(Loss("cross_entropy", cross_entropy, classes=True, lr_scale=1.0, compiled=0, steps=(
    (_A, "rows"), (_A, "outputs"), (_F, "rows"),        # m = z[rows, top]; shifted = z - m
    (_A, "outputs"), (_A, "rows"), (_F, "outputs"),     # exp(shifted); .sum(axis=1)
    (_A, "rows"), (_F, "rows"),                         # log1p(...)
    (_A, "outputs"), (_F, "rows"), (_F, "outputs"),     # logp = shifted - log1p(...)
    (_A, "index"), (_A, "rows"), (_F, "rows"),          # rows = arange(n); logp[rows, y]
    (_A, "outputs"), (_A, "rows"), (_F, "rows"),        # dz = exp(logp); dz[rows, y] -= 1
    (_F, "outputs"), (_F, "index"))))                   # logp, rows
register(Loss("mse", mse, classes=False, lr_scale=0.02, compiled=1, steps=(
    (_A, "outputs"), (_A, "outputs"), (_F, "outputs"),  # diff = z - y; diff * diff
    (_A, "outputs"), (_F, "outputs"))))                 # dz = (2/k) diff; diff freed
