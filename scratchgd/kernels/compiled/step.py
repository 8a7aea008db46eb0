"""The training step, the twin of ``Optimizer.step``: checked before anything is written.

With ``g = grad_sum / rows`` for every parameter, ``v <- momentum v + g`` and
``w <- w - lr v`` (PyTorch's convention), all or nothing:

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``Optimizer.step``              :func:`sgd_step` (in place, checked first), and
                                :func:`plain_step_into` (momentum 0, one pass:
                                the new weights go into other buffers); a span
                                takes either through :func:`take_step`
``Optimizer.step`` at batch 1   :func:`rank_one_step` (momentum 0, one row, no
                                accumulation: in place, only the weights of
                                non-zero inputs, no gradient arrays)
==============================  ==================================================

Both read the gradient sums of the weights' dtype: in the data-parallel step
(:func:`~.parallel.train_iterations_parallel_kernel`) from the sums reduced over the ranks
(``sWs, sbs``), in one process (``sWs`` is ``None``) from the buffers they
write, in place. The in-place case passes ONE array as both the sums and the
output of the inlined loops below: passed as two, LLVM cannot know they are
the same, checks at run time whether they overlap, finds that they do and runs
its scalar loop instead of the vector one (issue 29: that made the one-process
step at batch 1 take twice as long).
"""

from __future__ import annotations

import numpy as np

from .base import jit


@jit(inline="always")
def _divisor(rows: int, t: type) -> tuple[bool, float]:
    """Whether ``rows`` is a power of two (1 included), and ``1 / rows`` in the dtype ``t``.

    Dividing by a power of two and multiplying by its inverse, which is exact,
    round the same real number: the same bits, and a product costs a fraction
    of a division (batches of 8, 32, 128 rows; loops with a division run far
    slower, float64 ones most).
    """
    return rows & (rows - 1) == 0, t(1.0) / t(rows)


@jit(inline="always")
def _mean_and_check(w: np.ndarray, s: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float,
                    momentum: float, rows: int) -> bool:
    """``g <- s / rows``; whether ``w - lr (momentum v + g)`` is finite.

    Flat arrays; ``s`` may be ``g``.
    """
    t = w.dtype.type
    lr_, mu, m = t(lr), t(momentum), t(rows)
    power_of_two, inverse = _divisor(rows, t)
    finite = True
    for i in range(w.size):
        mean = s[i] * inverse if power_of_two else s[i] / m
        g[i] = mean
        new = w[i] - lr_ * (mu * v[i] + mean)
        finite &= new - new == 0  # False for inf and NaN
    return finite


@jit
def _commit(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, momentum: float) -> None:
    """``v <- momentum v + g``, ``w <- w - lr v`` (flat arrays)."""
    t = w.dtype.type
    lr_, mu = t(lr), t(momentum)
    for i in range(w.size):
        step = mu * v[i] + g[i]
        v[i] = step
        w[i] -= lr_ * step


@jit
def sgd_step(Ws: tuple, bs: tuple, sWs: tuple | None, sbs: tuple | None, gWs: tuple,
             gbs: tuple, vWs: tuple, vbs: tuple, lr: float, momentum: float, rows: int) -> bool:
    """One training step with momentum in place, PyTorch's convention; False if it would diverge.

    With ``g = sum / rows`` for every parameter (its gradient sum in ``sWs``,
    ``sbs``; ``None``: in ``gWs, gbs``)::

        v <- momentum * v + g
        w <- w - lr * v

    A step without momentum is :func:`plain_step_into` (:func:`take_step`
    chooses by whether there are momentum buffers).
    Invariant: all or nothing for weights and velocities. The means ``g`` are
    written into ``gWs, gbs`` first (which may be the sums themselves: they
    are used up) and every new weight is checked; if one is not finite, no
    weight or velocity is written and False is returned.
    Constants are cast to the weights' dtype, as NumPy does.
    """
    for layer in range(len(Ws)):
        g, gb = gWs[layer].reshape(-1), gbs[layer]
        if sWs is None:  # the sums are the means' buffers (numba prunes the other branch)
            ok = (_mean_and_check(Ws[layer].reshape(-1), g, g, vWs[layer].reshape(-1), lr,
                                  momentum, rows)
                  and _mean_and_check(bs[layer], gb, gb, vbs[layer], lr, momentum, rows))
        else:
            ok = (_mean_and_check(Ws[layer].reshape(-1), sWs[layer].reshape(-1), g,
                                  vWs[layer].reshape(-1), lr, momentum, rows)
                  and _mean_and_check(bs[layer], sbs[layer], gb, vbs[layer], lr, momentum, rows))
        if not ok:
            return False
    for layer in range(len(Ws)):
        _commit(Ws[layer].reshape(-1), gWs[layer].reshape(-1), vWs[layer].reshape(-1), lr,
                momentum)
        _commit(bs[layer], gbs[layer], vbs[layer], lr, momentum)
    return True


@jit(inline="always")
def _new_weights_into(w: np.ndarray, s: np.ndarray, out: np.ndarray, lr: float,
                      rows: int) -> bool:
    """``out <- w - lr (s / rows)`` (flat arrays; ``out`` may be ``s``); whether all are finite."""
    t = w.dtype.type
    lr_, m = t(lr), t(rows)
    power_of_two, inverse = _divisor(rows, t)
    finite = True
    for i in range(w.size):
        step = s[i] * inverse if power_of_two else s[i] / m
        new = w[i] - lr_ * step
        out[i] = new
        finite &= new - new == 0  # False for inf and NaN
    return finite


@jit(inline="always")
def plain_step_into(Ws: list, bs: list, sWs: tuple | None, sbs: tuple | None, outWs: list,
                    outbs: list, lr: float, rows: int) -> bool:
    """A training step without momentum written into other buffers: one pass.

    ``outW <- W - lr sW / rows`` (and the same for ``b``; ``sW`` the gradient
    sums; ``sWs`` ``None``: the sums are in ``outWs, outbs``, overwritten), so
    ``outWs, outbs`` then hold the new weights and the caller swaps the two
    sets' roles. Equals :func:`sgd_step` with ``momentum=0`` number for number,
    reading and writing each value once instead of twice. Invariant: ``Ws``
    and ``bs`` are never written, so when it returns False (a new weight is
    not finite) the weights are the last finite ones.
    """
    for layer in range(len(Ws)):
        out, outb = outWs[layer].reshape(-1), outbs[layer]
        if sWs is None:  # the sums are the output (numba prunes the other branch)
            ok = (_new_weights_into(Ws[layer].reshape(-1), out, out, lr, rows)
                  and _new_weights_into(bs[layer], outb, outb, lr, rows))
        else:
            ok = (_new_weights_into(Ws[layer].reshape(-1), sWs[layer].reshape(-1), out, lr, rows)
                  and _new_weights_into(bs[layer], sbs[layer], outb, lr, rows))
        if not ok:
            return False
    return True


@jit(inline="always")
def take_step(Wc: list, bc: list, sWs: tuple | None, sbs: tuple | None, Wn: list, bn: list,
              vWs: tuple | None, vbs: tuple | None, lr: float, momentum: float,
              rows: int) -> tuple[bool, bool]:
    """One checked training step of the weights ``Wc, bc`` on the gradient sums ``sWs, sbs``.

    ``sWs, sbs`` ``None``: the sums are in ``Wn, bn`` (one process), used up.

    With momentum (``vWs`` given): :func:`sgd_step` in place, its means written
    into ``Wn, bn``. Without (``vWs is None``; numba compiles only the branch
    the types allow): :func:`plain_step_into` writes the new weights into
    ``Wn, bn`` in one pass, and the two lists then swap their arrays, so
    ``Wc, bc`` hold the new weights and ``Wn, bn`` the old ones.

    Returns ``(ok, swapped)``: whether the step was taken (all or nothing) and
    whether the lists swapped their arrays.
    """
    if vWs is None:
        ok = plain_step_into(Wc, bc, sWs, sbs, Wn, bn, lr, rows)
        if ok:
            for layer in range(len(Wc)):
                Wc[layer], Wn[layer] = Wn[layer], Wc[layer]
                bc[layer], bn[layer] = bn[layer], bc[layer]
        return ok, ok
    return sgd_step(Wc, bc, sWs, sbs, Wn, bn, vWs, vbs, lr, momentum, rows), False


@jit(inline="always")
def max_abs(x: np.ndarray) -> float:
    """``max |x_i|`` of a flat array, as a float64 (0 when empty); ``inf`` if any is NaN."""
    m = 0.0
    for i in range(x.size):
        v = abs(np.float64(x[i]))
        if v > m:
            m = v
        elif v != v:
            return np.inf
    return m


@jit(inline="always")
def _rank_one(W: np.ndarray, b: np.ndarray, a: np.ndarray, d: np.ndarray, nz: np.ndarray,
              count: int, lr: float, write: bool) -> bool:
    """``W <- W - lr (a^T d)``, ``b <- b - lr d`` (written if ``write``); whether all are finite.

    ``a (fan_in,)`` one row's input, ``nz[:count]`` the indices of its non-zero
    values, ``d (fan_out,)`` its delta. Only the rows ``nz[:count]`` of ``W``
    change (the gradient of the others is zero).
    """
    t = W.dtype.type
    lr_ = t(lr)
    finite = True
    for j in range(len(b)):
        new = b[j] - lr_ * d[j]
        finite &= new - new == 0  # False for inf and NaN
        if write:
            b[j] = new
    for k in range(count):
        i = nz[k]
        x = a[i]
        for j in range(len(b)):
            new = W[i, j] - lr_ * (x * d[j])
            finite &= new - new == 0
            if write:
                W[i, j] = new
    return finite


@jit(inline="always")
def rank_one_step(Ws: tuple, bs: tuple, acts: list, deltas: list, nzs: list,
                  counts: np.ndarray, lr: float, bound: float, limit: float
                  ) -> tuple[bool, float]:
    """The training step of batch 1 without momentum, in place, all or nothing.

    For every layer ``l``, with ``a = acts[l][0]`` (its input row) and
    ``d = deltas[l][0]`` (its delta, all computed from the old weights), the
    indices of the non-zero values of ``a`` in ``nzs[l][:counts[l]]``::

        W_l <- W_l - lr a^T d        b_l <- b_l - lr d

    the numbers of :func:`plain_step_into` on the sums of
    :func:`~.layers.dense_backward` with ``rows = 1`` (``g = a_i d_j``, then
    ``w - lr g``), without the sums: no gradient arrays are written, zeroed or
    read, and the weights of a zero input (half the digits' pixels, half of
    relu's outputs) are not touched.

    Invariant: all or nothing, without a pass that checks every new value
    first, as long as ``bound``, a bound on every ``|w|`` (float64), says they
    are finite: a new value is at most ``bound + |lr| max|a| max|d|`` (the
    rounding of three operations inside the margin), so while that stays
    below ``limit`` (a quarter of the dtype's largest value) nothing can
    overflow. Otherwise (or with a NaN anywhere) every new value is computed
    and checked before one is written, and the bound is measured again.

    Returns ``(ok, bound)``: whether the step was taken (False: nothing
    written) and the bound of the new weights.
    """
    growth = 0.0
    for layer in range(len(Ws)):
        reach = abs(lr) * max(max_abs(acts[layer][0]), 1.0) * max_abs(deltas[layer][0])
        growth = max(growth, reach * (1.0 + 2.0 ** -20))
    bound = (bound + growth) * (1.0 + 2.0 ** -20)
    safe = bound < limit  # False for NaN and inf too
    if not safe:
        for layer in range(len(Ws)):
            if not _rank_one(Ws[layer], bs[layer], acts[layer][0], deltas[layer][0], nzs[layer],
                             counts[layer], lr, False):
                return False, bound
    for layer in range(len(Ws)):
        _rank_one(Ws[layer], bs[layer], acts[layer][0], deltas[layer][0], nzs[layer],
                  counts[layer], lr, True)
    if not safe:
        bound = weights_bound(Ws, bs)
    return True, bound


@jit(inline="always")
def weights_bound(Ws: tuple, bs: tuple) -> float:
    """``max |w|`` over every weight and bias (float64; ``inf`` if one is NaN)."""
    m = 0.0
    for layer in range(len(Ws)):
        m = max(m, max_abs(Ws[layer].reshape(-1)), max_abs(bs[layer]))
    return m
