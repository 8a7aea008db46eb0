"""Forward and backward pass of an MLP, written once against the array API: the reference.

Every function takes ``xp``, the array namespace of its arrays: ``numpy``
itself for ``backend="numpy"`` (the default), the namespace of torch, CuPy or
array_api_strict for those backends (:mod:`scratchgd.kernels.array_api`,
resolved once when the model is made). The lines are the same for all of
them: ``a @ W + b``, ``xp.sum``, the activation's and the loss's own ``xp``
functions (see docs/gpu.md).

Notation, for a network of ``L`` dense layers and a batch of ``n`` rows:

* ``a_0 = X``, shape ``(n, d)``;
* ``z_l = a_{l-1} @ W_l + b_l`` with ``W_l: (fan_in, fan_out)``, ``b_l: (fan_out,)``;
* ``a_l = f(z_l)`` for hidden layers ``l < L``; the output ``z_L`` has no
  activation (logits for cross-entropy, values for MSE).

``params`` is the flat list ``[W_1, b_1, ..., W_L, b_L]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._arrays import NUMPY, Array, Namespace
from ..activations import ACTIVATIONS
from ..losses import LOSSES

__all__ = ["LayerObserver", "apply_scaling", "backward", "forward", "loss_and_grads"]

LayerObserver = Callable[[Array, Array], object]
"""Called as ``observe(a_prev, delta)`` for each layer by :func:`backward`."""


def apply_scaling(X: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype: type,
                  fresh: bool = False) -> np.ndarray:
    """The input scaling, a fixed first operation: ``a_0 = (X - mean) / std``.

    ``mean`` and ``std`` are float64 ``(d,)`` (``MLP.scaling``, which
    :func:`scratchgd.standardize` fits); applied to each batch as it is
    gathered. The batch is copied once into the model's ``dtype`` and scaled
    in place, in that dtype (a float32 model divides by the statistics rounded
    to float32), so the data set is never changed and no float64 temporary of
    the batch is made. ``fresh``: ``X`` is a batch just gathered, which nothing
    else holds (``data.X[index_array]``), so when it has the model's dtype it
    is scaled in place, without that copy.
    """
    a0 = np.asarray(X, dtype=dtype) if fresh else np.array(X, dtype=dtype)  # the batch's own
    a0 -= np.asarray(mean, dtype=dtype)     # a_0 = (X - mean) / std
    a0 /= np.asarray(std, dtype=dtype)
    return a0


def forward(params: list[Array], X: Array, activation: str, xp: Namespace = NUMPY) -> list[Array]:
    r"""All layer outputs ``[a_0, a_1, ..., a_{L-1}, z_L]``.

    .. math:: z_l = a_{l-1} W_l + b_l, \qquad a_l = f(z_l) \quad (l < L)

    The last item
    is the network's raw output; the others are kept for the backward pass.
    """
    f = ACTIVATIONS[activation].forward
    n_layers = len(params) // 2
    layers = [X]
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        z = layers[-1] @ W + b
        layers.append(f(z, xp) if layer < n_layers - 1 else z)
    return layers


def backward(params: list[Array], layers: list[Array], dz: Array, activation: str,
             observe: LayerObserver | None = None, xp: Namespace = NUMPY) -> list[Array]:
    r"""Gradients ``[dL/dW_1, dL/db_1, ...]`` by backpropagation.

    Starting from ``delta_L = dL/dz_L`` (``dz``), for ``l = L, ..., 1``:

    .. math::

        \frac{\partial L}{\partial W_l} = a_{l-1}^\top \delta_l, \qquad
        \frac{\partial L}{\partial b_l} = \sum_i \delta_{l,i}, \qquad
        \delta_{l-1} = (\delta_l W_l^\top) \odot f'(z_{l-1})

    (shapes ``(fan_in, fan_out)``, ``(fan_out,)`` and that of ``a_{l-1}``), where
    ``f'(z_{l-1})`` is computed from the stored output ``a_{l-1}``.
    ``observe``, if given, is shown what each layer's step has in hand, as
    ``observe(a_{l-1}, delta_l)`` (the gradient noise builds its per-example
    norms from them: :class:`scratchgd.noise.RowNorms`).
    """
    df = ACTIVATIONS[activation].derivative
    grads: list[Array] = [None] * len(params)
    delta = dz
    for layer in range(len(params) // 2 - 1, -1, -1):
        a_prev = layers[layer]
        grads[2 * layer] = a_prev.T @ delta
        grads[2 * layer + 1] = xp.sum(delta, axis=0)
        if observe is not None:
            observe(a_prev, delta)
        if layer > 0:
            delta = (delta @ params[2 * layer].T) * df(a_prev, xp)
    return grads


def loss_and_grads(params: list[Array], X: Array, y: Array, activation: str, loss: str,
                   observe: LayerObserver | None = None, xp: Namespace = NUMPY
                   ) -> tuple[Array, list[Array], Array]:
    """Summed loss over the rows of ``X``, its gradients, and the raw outputs.

    ``L = sum_i l_i`` (a 0-d array, so on a GPU it stays there until it is
    read): forward pass, loss and ``dL/dz_L``, backward pass (``observe``: see
    :func:`backward`). Pure: reads ``params``, writes nothing.
    """
    layers = forward(params, X, activation, xp)
    loss_sum, dz = LOSSES[loss].function(layers[-1], y, xp)
    return loss_sum, backward(params, layers, dz, activation, observe, xp), layers[-1]
