"""A batch gathered by index from the data set, scaled on the way, in one layout.

The reference slices a batch with NumPy (``X[order[lo:hi]]``) and scales it with
:func:`~scratchgd.kernels.reference.standardize`; here both happen in one copy,
and the arrays are first brought into the one layout the kernels are compiled for:

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``reference.standardize``       :func:`gather_batch` (scaling while gathering
                                the batch's rows into reused buffers)
``MLP.scaling``                 :func:`scaling_inputs` (``mean``, ``1 / std``)
``X``, ``y`` as given           :func:`span_input` (one layout, one type)
==============================  ==================================================
"""

from __future__ import annotations

import numpy as np

from ...scaling import Scaling
from .base import CROSS_ENTROPY, jit


@jit(inline="always")
def gather_batch(X: np.ndarray, labels: np.ndarray, targets: np.ndarray, order: np.ndarray,
                 lo: int, n: int, loss: int, mean: np.ndarray, inv_std: np.ndarray,
                 x_batch: np.ndarray, y_batch: np.ndarray, t_batch: np.ndarray) -> None:
    """Copy the batch of rows ``order[lo:lo + n]`` into the first ``n`` rows of the buffers.

    ``x_batch[r] = X[order[lo + r]]`` cast to ``x_batch``'s dtype, or with the
    input scaling (``mean`` and ``inv_std = 1 / std`` of length ``d``; empty
    arrays for none) ``x_batch[r] = (X[row] - mean) * inv_std``, computed in
    float64 and rounded once to ``x_batch``'s dtype (``reference.standardize``
    rounds after its subtraction too, and divides by ``std``, so the two may
    differ in the last bit). The label
    (``y_batch``, cross_entropy) or target row (``t_batch``, mse) goes along.
    Invariants: reads ``X``, ``labels``, ``targets`` only at the batch's rows;
    writes only the buffers; without scaling the values are copied untouched.
    """
    scaled = len(mean) > 0
    for r in range(n):
        row = order[lo + r]
        if scaled:
            for c in range(X.shape[1]):
                x_batch[r, c] = (np.float64(X[row, c]) - mean[c]) * inv_std[c]
        else:
            for c in range(X.shape[1]):
                x_batch[r, c] = X[row, c]
        if loss == CROSS_ENTROPY:
            y_batch[r] = labels[row]
        else:
            for j in range(targets.shape[1]):
                t_batch[r, j] = targets[row, j]


def scaling_inputs(scaling: Scaling | None) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``inv_std = 1 / std`` as :func:`gather_batch` takes them (empty: no scaling).

    Fresh writable float64 arrays, so the scaling adds no compiled type whatever
    the flags of the model's arrays.
    """
    if scaling is None:
        return np.empty(0), np.empty(0)
    return np.array(scaling.mean, np.float64), 1.0 / scaling.std


def span_input(X: np.ndarray, y: np.ndarray, loss: str, dtype: np.dtype
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X``, labels and targets in the one layout :func:`train_span` is compiled for.

    Numba compiles a kernel once per combination of argument types, and an
    array's type includes its layout and whether it may be written. So ``X``
    becomes a C-contiguous READ-ONLY view (in memory, memory-mapped or read
    from a read-only file: one type, no copy unless ``X`` was not C-contiguous),
    labels int64 and targets the model's ``dtype``; the one the loss does not
    use is an empty placeholder of the same type. ``X`` keeps its dtype (float32,
    float64 or uint8 pixels): the kernel casts each gathered batch.
    """
    X = np.ascontiguousarray(X).view()
    X.flags.writeable = False
    if loss == "cross_entropy":
        return X, np.ascontiguousarray(y, dtype=np.int64), np.empty((0, 1), dtype)
    return X, np.empty(0, np.int64), np.ascontiguousarray(y, dtype=dtype)
