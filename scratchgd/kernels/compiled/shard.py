"""Data parallel: one rank's gradient sums over its shards, between two collectives.

The reference computes a shard as ``engines.data_parallel.shard_sums`` does for backend
"numpy": ``reference.loss_and_grads`` per shard, the gradients added up. Here
one compiled call does all of a step's shards; the step itself follows the
collective (:func:`~.step.step_from_sums`):

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``reference.loss_and_grads``    :func:`shard_sums` (every shard of a step in
                                one call, the gradients added up)
``data_parallel.shard_sums``    :func:`fit_shard` (one flat float64 buffer)
==============================  ==================================================
"""

from __future__ import annotations

import numpy as np

from ..._arrays import views_like
from ...scaling import Scaling
from .base import ACTIVATION_CODE, LOSS_CODE, MSE, blas_limit, jit, use_blas
from .gather import gather_batch, scaling_inputs, span_input
from .span import _forward_backward


@jit
def shard_sums(Ws: tuple, bs: tuple, X: np.ndarray, x_format: tuple | None, labels: np.ndarray,
               targets: np.ndarray, order: np.ndarray, lo: np.ndarray, counts: np.ndarray,
               act: int, loss: int, blas: bool, gWs: tuple, gbs: tuple, loss_sums: np.ndarray,
               correct: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> None:
    """One rank's sums over its shards of the ``k`` batches of one training step.

    Shard ``t`` is the rows ``order[lo[t]:lo[t] + counts[t]]``. For each shard:
    gather (:func:`gather_batch`, scaled by ``mean`` and ``inv_std`` unless they
    are empty), forward, loss, backward, adding its gradient
    SUMS to ``gWs, gbs``; ``loss_sums[t]`` and ``correct[t]`` get its loss sum
    and correct count. An empty shard adds nothing; if every shard is empty the
    sums are zero. After a non-finite loss it stops (the later figures stay as
    they were, zero): the reduced loss is non-finite too. The weights are only
    read: the step is taken after the collective, on the reduced sums.
    """
    dtype = Ws[0].dtype
    widest = max(1, counts.max())
    acts = [np.empty((widest, Ws[0].shape[0]), dtype)]
    deltas = []
    for layer in range(len(Ws)):
        acts.append(np.empty((widest, Ws[layer].shape[1]), dtype))
        deltas.append(np.empty((widest, Ws[layer].shape[1]), dtype))
    y_batch = np.empty(widest, labels.dtype)
    t_batch = np.empty((widest if loss == MSE else 0, targets.shape[1]), dtype)
    rows = 0
    for t in range(len(lo)):
        n = counts[t]
        if n == 0:
            continue
        gather_batch(X, x_format, labels, targets, order, lo[t], n, loss, mean, inv_std, acts[0],
                     y_batch, t_batch)
        loss_sum, hits = _forward_backward(Ws, bs, acts, deltas, gWs, gbs, y_batch, t_batch,
                                           n, act, loss, blas, rows > 0)
        loss_sums[t] = loss_sum
        if not np.isfinite(loss_sum):
            break
        correct[t] = hits
        rows += n
    if rows == 0:
        for layer in range(len(Ws)):
            gWs[layer][:] = 0
            gbs[layer][:] = 0


def fit_shard(params: list[np.ndarray], X: np.ndarray, y: np.ndarray, order: np.ndarray | None,
              lo: np.ndarray, counts: np.ndarray, activation: str, loss: str,
              scaling: Scaling | None = None) -> np.ndarray:
    """:func:`shard_sums` as ``engines.data_parallel.shard_sums`` packs them: one flat float64 buffer.

    ``[gradient sums (params order, flattened), rows, loss sums, correct counts]``.
    For float64 weights the gradient sums are written straight into the buffer.
    """
    dtype = params[0].dtype
    m = len(lo)
    size = sum(p.size for p in params)
    buf = np.zeros(size + 1 + 2 * m)
    sums = buf[:size] if dtype == np.float64 else np.empty(size, dtype)
    grads = views_like(sums, params)
    if order is None:
        order = np.arange(int((lo + counts).max(initial=0)))
    X, x_format, labels, targets = span_input(X, y, loss, dtype)
    mean, inv_std = scaling_inputs(scaling)
    loss_sums, correct = np.zeros(m), np.zeros(m, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    widest = int(counts.max(initial=0))
    blas = use_blas(widest)
    Ws = tuple(params[0::2])
    with blas_limit(blas, widest, Ws):
        shard_sums(Ws, tuple(params[1::2]), X, x_format, labels, targets,
                   np.ascontiguousarray(order, dtype=np.int64),
                   np.ascontiguousarray(lo, dtype=np.int64), counts, ACTIVATION_CODE[activation],
                   LOSS_CODE[loss], blas, tuple(grads[0::2]), tuple(grads[1::2]), loss_sums,
                   correct, mean, inv_std)
    buf[:size] = sums
    buf[size] = counts.sum()
    buf[size + 1:size + 1 + m] = loss_sums
    buf[size + 1 + m:] = correct
    return buf
