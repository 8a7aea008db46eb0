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
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOSS", "LOSSES", "cross_entropy", "log_softmax", "mse"]

LOSSES = ("cross_entropy", "mse")


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
    """Summed softmax cross-entropy and its gradient.

    ``L = sum_i -log softmax(z_i)[y_i]``;  ``dL/dz = softmax(z) - onehot(y)``.

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
    """Summed per-row mean squared error and its gradient.

    ``L = sum_i (1/k) sum_j (z_ij - y_ij)**2``;  ``dL/dz = (2/k) (z - y)``.

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


LOSS = {"cross_entropy": cross_entropy, "mse": mse}
