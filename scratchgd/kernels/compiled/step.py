"""The training step, the twin of ``Optimizer.step``: checked before anything is written.

With ``g = grad_sum / rows`` for every parameter, ``v <- momentum v + g`` and
``w <- w - lr v`` (PyTorch's convention), all or nothing:

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``Optimizer.step``              :func:`sgd_step` (in place, checked first), and
                                :func:`plain_step_into` (momentum 0, one pass:
                                the new weights go into the gradient buffers)
``Optimizer.step`` on sums      :func:`step_from_sums` (the data-parallel step,
                                on the reduced gradient sums)
==============================  ==================================================
"""

from __future__ import annotations

import numpy as np

from ..._arrays import views_like
from .base import jit


@jit
def _mean_and_check(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, momentum: float,
                    rows: int) -> bool:
    """``g <- g / rows`` in place; whether ``w - lr (momentum v + g)`` is finite (flat arrays)."""
    t = w.dtype.type
    lr_, mu, m = t(lr), t(momentum), t(rows)
    finite = True
    for i in range(w.size):
        if rows != 1:
            g[i] = g[i] / m
        step = mu * v[i] + g[i] if momentum else g[i]
        new = w[i] - lr_ * step
        finite &= new - new == 0  # False for inf and NaN
    return finite


@jit
def _commit(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, momentum: float) -> None:
    """``v <- momentum v + g`` (if momentum), ``w <- w - lr v`` (flat arrays)."""
    t = w.dtype.type
    lr_, mu = t(lr), t(momentum)
    for i in range(w.size):
        step = g[i]
        if momentum:
            step = mu * v[i] + step
            v[i] = step
        w[i] -= lr_ * step


@jit
def sgd_step(Ws: tuple, bs: tuple, gWs: tuple, gbs: tuple, vWs: tuple, vbs: tuple,
             lr: float, momentum: float, rows: int) -> bool:
    """One training step in place, PyTorch's momentum convention; False if it would diverge.

    With ``g = grad_sum / rows`` for every parameter::

        v <- momentum * v + g          (skipped when momentum == 0: v is g)
        w <- w - lr * v

    Invariant: all or nothing for weights and velocities. The sums are divided
    by ``rows`` in place (they are used up: the next batch overwrites them) and
    every new weight is checked first; if one is not finite, no weight or
    velocity is written and False is returned.
    ``vWs, vbs`` are not read or written when momentum is 0.
    Constants are cast to the weights' dtype, as NumPy does.
    """
    for layer in range(len(Ws)):
        if not (_mean_and_check(Ws[layer].reshape(-1), gWs[layer].reshape(-1),
                                vWs[layer].reshape(-1), lr, momentum, rows)
                and _mean_and_check(bs[layer], gbs[layer], vbs[layer], lr, momentum, rows)):
            return False
    for layer in range(len(Ws)):
        _commit(Ws[layer].reshape(-1), gWs[layer].reshape(-1), vWs[layer].reshape(-1), lr,
                momentum)
        _commit(bs[layer], gbs[layer], vbs[layer], lr, momentum)
    return True


@jit
def _new_weights_into(w: np.ndarray, g: np.ndarray, lr: float, rows: int) -> bool:
    """``g <- w - lr (g / rows)`` in place (flat arrays); whether every new value is finite."""
    t = w.dtype.type
    lr_, m = t(lr), t(rows)
    finite = True
    for i in range(w.size):
        step = g[i] / m if rows != 1 else g[i]
        new = w[i] - lr_ * step
        g[i] = new
        finite &= new - new == 0  # False for inf and NaN
    return finite


@jit(inline="always")
def plain_step_into(Ws: list, bs: list, gWs: list, gbs: list, lr: float, rows: int) -> bool:
    """A training step without momentum written into the gradient buffers: one pass.

    ``gW <- W - lr gW / rows`` (and the same for ``b``), so the buffers then
    hold the new weights and the caller swaps the two sets' roles. Equals
    :func:`sgd_step` with ``momentum=0`` number for number, reading and writing
    each value once instead of twice. Invariant: ``Ws`` and ``bs`` are never
    written, so when it returns False (a new weight is not finite) the weights
    are the last finite ones.
    """
    for layer in range(len(Ws)):
        if not (_new_weights_into(Ws[layer].reshape(-1), gWs[layer].reshape(-1), lr, rows)
                and _new_weights_into(bs[layer], gbs[layer], lr, rows)):
            return False
    return True


def step_from_sums(params: list[np.ndarray], velocity: list[np.ndarray] | None,
                   sums: np.ndarray, lr: float, momentum: float, rows: int) -> bool:
    """One :func:`sgd_step` with the reduced gradient sums ``sums`` (flat, params order).

    ``g = sums / rows`` per parameter, then ``v <- momentum v + g``, ``w <- w - lr v``
    in place, all or nothing; False (nothing written) if a weight would not be
    finite. ``sums`` must have the weights' dtype; it is used up (divided in place).
    """
    grads = views_like(sums, params)
    Ws, bs = tuple(params[0::2]), tuple(params[1::2])
    vWs, vbs = (Ws, bs) if velocity is None else (tuple(velocity[0::2]), tuple(velocity[1::2]))
    return sgd_step(Ws, bs, tuple(grads[0::2]), tuple(grads[1::2]), vWs, vbs, lr, momentum, rows)
