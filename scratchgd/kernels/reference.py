"""Forward and backward pass of an MLP in plain NumPy: the reference.

Notation, for a network of ``L`` dense layers and a batch of ``n`` rows:

* ``a_0 = X``, shape ``(n, d)``;
* ``z_l = a_{l-1} @ W_l + b_l`` with ``W_l: (fan_in, fan_out)``, ``b_l: (fan_out,)``;
* ``a_l = f(z_l)`` for hidden layers ``l < L``; the output ``z_L`` has no
  activation (logits for cross-entropy, values for MSE).

``params`` is the flat list ``[W_1, b_1, ..., W_L, b_L]``.
"""

from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS
from ..losses import LOSSES

__all__ = ["backward", "forward", "loss_and_grads", "standardize"]


def standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype: type,
                fresh: bool = False) -> np.ndarray:
    """The input scaling, a fixed first operation: ``a_0 = (X - mean) / std``.

    ``mean`` and ``std`` are float64 ``(d,)`` (``MLP.scaling``); applied to
    each batch as it is gathered. The batch is copied once into the model's
    ``dtype`` and scaled in place, in that dtype (a float32 model subtracts
    and divides by the statistics rounded to float32: float32 arithmetic on a
    float32 batch, where mixing in the float64 statistics would cast every
    value to float64 and back, twice, and cost a fifth of an epoch), so the
    data set is never changed and no float64 temporary of the batch is made.
    ``fresh``: ``X`` is a batch just gathered, which nothing else holds
    (``data.X[index_array]``), so when it has the model's dtype it is scaled
    in place, without that copy (a second batch-sized allocation, which can
    cost as much as the scaling itself).
    """
    a0 = np.asarray(X, dtype=dtype) if fresh else np.array(X, dtype=dtype)  # the batch's own
    a0 -= np.asarray(mean, dtype=dtype)     # a_0 = (X - mean) / std
    a0 /= np.asarray(std, dtype=dtype)
    return a0


def forward(params: list[np.ndarray], X: np.ndarray, activation: str) -> list[np.ndarray]:
    """All layer outputs ``[a_0, a_1, ..., a_{L-1}, z_L]``.

    ``z_l = a_{l-1} W_l + b_l``;  ``a_l = f(z_l)`` for ``l < L``. The last item
    is the network's raw output; the others are kept for the backward pass.
    """
    f = ACTIVATIONS[activation].forward
    n_layers = len(params) // 2
    layers = [X]
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        z = layers[-1] @ W + b
        layers.append(f(z) if layer < n_layers - 1 else z)
    return layers


def backward(params: list[np.ndarray], layers: list[np.ndarray], dz: np.ndarray,
             activation: str, sq_norms: np.ndarray | None = None) -> list[np.ndarray]:
    """Gradients ``[dL/dW_1, dL/db_1, ...]`` by backpropagation.

    Starting from ``delta_L = dL/dz_L`` (``dz``), for ``l = L, ..., 1``::

        dL/dW_l = a_{l-1}^T delta_l              (fan_in, fan_out)
        dL/db_l = sum over rows of delta_l       (fan_out,)
        delta_{l-1} = (delta_l W_l^T) * f'(z_{l-1})

    where ``f'(z_{l-1})`` is computed from the stored output ``a_{l-1}``.

    ``sq_norms``, if given (shape ``(n,)``), receives the squared norm of every
    row's own gradient ``g_i = grad l_i``, from the same pass. Row ``i`` of
    ``delta_l`` is ``dl_i/dz_l`` alone (rows do not mix), so row ``i``'s share
    of ``dL/dW_l`` is the outer product ``a_{l-1,i} delta_{l,i}^T`` and of
    ``dL/db_l`` is ``delta_{l,i}``, and::

        |g_i|^2 = sum_l |delta_{l,i}|^2 (|a_{l-1,i}|^2 + 1)

    (``|u v^T|^2 = |u|^2 |v|^2``; the ``+ 1`` is the bias). Added to ``sq_norms``.
    """
    df = ACTIVATIONS[activation].derivative
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    delta = dz
    for layer in range(len(params) // 2 - 1, -1, -1):
        a_prev = layers[layer]
        grads[2 * layer] = a_prev.T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if sq_norms is not None:
            sq_norms += (delta * delta).sum(axis=1) * ((a_prev * a_prev).sum(axis=1) + 1)
        if layer > 0:
            delta = (delta @ params[2 * layer].T) * df(a_prev)
    return grads


def loss_and_grads(params: list[np.ndarray], X: np.ndarray, y: np.ndarray, activation: str,
                   loss: str, sq_norms: np.ndarray | None = None
                   ) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Summed loss over the rows of ``X``, its gradients, and the raw outputs.

    ``L = sum_i l_i``: forward pass, loss and ``dL/dz_L``, backward pass.
    Pure: reads ``params``, writes nothing but ``sq_norms``, which, if given
    (``(n,)`` zeros), receives every row's ``|grad l_i|^2`` (see :func:`backward`).
    """
    layers = forward(params, X, activation)
    loss_sum, dz = LOSSES[loss].function(layers[-1], y)
    return loss_sum, backward(params, layers, dz, activation, sq_norms), layers[-1]
