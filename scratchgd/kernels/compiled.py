"""Forward and backward pass of an MLP compiled by Numba: the twin of ``reference``.

The same notation as :mod:`scratchgd.kernels.reference` (``a_0 = X``,
``z_l = a_{l-1} W_l + b_l``, ``a_l = f(z_l)`` for hidden layers, ``params =
[W_1, b_1, ..., W_L, b_L]``) and the same two public functions, ``forward`` and
``loss_and_grads``, with the same arguments and results. Each NumPy expression
of the reference becomes one kernel here:

===========================  ==============================================
reference (NumPy)            compiled kernel
===========================  ==============================================
``f(a @ W + b)``             :func:`dense_forward` (bias and ``f`` fused)
``a.T @ delta``, ...         :func:`dense_backward` (``f'`` fused)
``losses.cross_entropy``     :func:`cross_entropy` (stable softmax)
``losses.mse``               :func:`mse`
``sq_norms += ...``          :func:`dense_sq_norms` (per-example gradient norms)
``reference.standardize``   :func:`gather_batch` (scaling while gathering)
``Optimizer.step``           :func:`sgd_step` (in place, checked first), and
                             :func:`plain_step_into` (momentum 0, one pass)
the loop of ``train.fit``    :func:`train_span` (many iterations, one call)
===========================  ==============================================

``train_span`` is what makes small batches cheap: a whole run of iterations
(gather a batch by index, forward, loss, backward, accumulate gradient sums,
a training step every ``k`` iterations) runs in one compiled call instead of
one Python round trip per batch.

Every kernel is compiled by the one decorator :data:`jit` (``numba.njit`` with
``cache=True``, so compiled code is stored in ``__pycache__`` and later runs
start warm). Products of small batches are written as loops that skip zero
inputs (half of the digits' pixels and of relu's outputs are zero); batches of
:data:`BLAS_MIN_ROWS` rows or more call BLAS through ``np.dot``. No kernel runs
in parallel (``prange``), so no two iterations ever add into the same output.

To step through a kernel in a debugger, run with ``NUMBA_DISABLE_JIT=1``: the
decorator then returns the plain Python functions (slow, but the same results).
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from .._arrays import views_like
from ..scaling import Scaling

jit = functools.partial(numba.njit, cache=True, nogil=True)
"""The one place where kernels are compiled: ``numba.njit(cache=True, nogil=True)``."""

REASSOCIATE = {"reassoc", "contract"}
"""Fast-math flags of the kernels with sums over a row: the additions may be
reordered (so they vectorize) and fused into FMAs. NaN and inf keep their IEEE
meaning (no ``nnan``/``ninf``), so divergence is still seen."""

RELU, TANH, SIGMOID, LINEAR = 0, 1, 2, 3
ACTIVATION_CODE = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}
CROSS_ENTROPY, MSE = 0, 1
LOSS_CODE = {"cross_entropy": CROSS_ENTROPY, "mse": MSE}
DONE, LOSS_NOT_FINITE, UPDATE_NOT_FINITE = 0, 1, 2
"""Status codes of :func:`train_span`: it ran to ``stop``; a batch loss was not
finite; a step would have made the weights non-finite."""

BLAS_MIN_ROWS = 4
"""Batches with at least this many rows multiply through BLAS (``np.dot``); smaller
ones use the loops below. Measured with ``python benchmarks/blas_threshold.py``
on the development machine (2-core AMD EPYC, shared, 1 BLAS thread): one epoch
of digits 64-128-10 in float32 takes 15.6 ms with the loops and 21.3 ms with
BLAS at batch 1, 10.4 and 3.2 ms at batch 4, 8.8 and 5.9 ms at batch 32 (the
machine was busy: single figures moved by 2x between runs, the crossing did
not); on 784-256-10 the loops won at 1 and 2 rows (0.78 s and 0.59 s against
1.11 s and 0.60 s per 8,192 rows). The loops pay off only where a batch is a
row or two: no call overhead, and zero inputs are skipped."""


def use_blas(rows: int) -> bool:
    """Whether a batch of ``rows`` rows multiplies through BLAS: ``rows >= BLAS_MIN_ROWS``."""
    return rows >= BLAS_MIN_ROWS


BLAS_THREADED_MIN_WORK = 2**22
"""Batches whose largest matrix product has fewer multiply-adds (``m n k``) than this run
BLAS on one thread. OpenBLAS splits a product over all its threads once ``m n k`` reaches
524,288 (digits 64-128-10 at batch 64), and on a small machine the threads' start-up and
synchronisation then cost more than they save: numba float32 fell from 1.2 M to 0.3 M
samples per second between batch 64 and 128. Measured with
``python benchmarks/blas_threads.py`` (see docs/performance.md)."""


def blas_threads_for(work: int) -> int | None:
    """BLAS threads for products of ``work = m n k`` multiply-adds at most.

    1 below :data:`BLAS_THREADED_MIN_WORK`; ``None`` (BLAS's own thread count, no
    limit) from there on.
    """
    return 1 if work < BLAS_THREADED_MIN_WORK else None


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries of this process, found once (``threadpool_limits`` searches each time).

    SciPy's BLAS, the one numba's ``np.dot`` calls, is loaded first: numba loads it
    only when a kernel first needs it, and a library loaded later would not be found.
    """
    import scipy.linalg.cython_blas  # noqa: F401

    return ThreadpoolController()


def blas_limit(blas: bool, rows: int, Ws: tuple) -> Any:
    """The context a kernel runs in: BLAS limited to :func:`blas_threads_for` threads.

    ``rows``: the widest batch; the largest product is ``rows x (largest W)``.
    Without BLAS (``blas`` false) nothing is limited. The limit is lifted on exit.
    """
    threads = blas_threads_for(rows * max(W.size for W in Ws)) if blas else None
    return _blas().limit(limits=threads, user_api="blas")


@jit
def activate(z: np.ndarray, act: int) -> None:
    """``z <- f(z)`` in place, element-wise; ``act`` is a code of ``ACTIVATION_CODE`` or LINEAR.

    relu ``max(0, z)`` (NaN stays NaN, as in NumPy); tanh ``tanh(z)``;
    sigmoid ``(1 + tanh(z / 2)) / 2``; LINEAR leaves ``z`` alone. Constants are
    cast to ``z``'s dtype, so float32 stays float32.
    """
    if act == LINEAR:
        return
    t = z.dtype.type
    half, one, zero = t(0.5), t(1.0), t(0.0)
    n, m = z.shape
    for r in range(n):
        for j in range(m):
            v = z[r, j]
            if act == RELU:
                z[r, j] = zero if v < zero else v
            elif act == TANH:
                z[r, j] = np.tanh(v)
            else:
                z[r, j] = half * (one + np.tanh(half * v))


@jit
def dense_forward(a: np.ndarray, W: np.ndarray, b: np.ndarray, act: int, out: np.ndarray,
                  blas: bool) -> None:
    """One dense layer, fused: ``out = f(a W + b)``.

    Shapes: ``a (n, fan_in)``, ``W (fan_in, fan_out)``, ``b (fan_out,)``,
    ``out (n, fan_out)``, all C-contiguous, one dtype. Invariants: reads ``a``,
    ``W``, ``b``; writes only ``out``; rows are independent. With ``blas``
    False, ``out_r = b + sum_{i: a_ri != 0} a_ri W_i`` (a zero input adds
    nothing, so it is skipped); with ``blas``, ``np.dot`` then the bias.
    """
    n, fan_in = a.shape
    fan_out = W.shape[1]
    if blas:
        np.dot(a, W, out)
        for r in range(n):
            for j in range(fan_out):
                out[r, j] += b[j]
    else:
        for r in range(n):
            for j in range(fan_out):
                out[r, j] = b[j]
            for i in range(fan_in):
                x = a[r, i]
                if x != 0:
                    for j in range(fan_out):
                        out[r, j] += x * W[i, j]
    activate(out, act)


@jit(fastmath=REASSOCIATE)
def dense_backward(a_prev: np.ndarray, delta: np.ndarray, W: np.ndarray, act: int,
                   gW: np.ndarray, gb: np.ndarray, delta_prev: np.ndarray, blas: bool,
                   add: bool) -> None:
    """Backward through one dense layer, fused with the previous layer's ``f'``.

    Adds (``add``) or writes this batch's gradient SUMS into the accumulators
    and, when ``delta_prev`` has rows, writes the delta of the layer below::

        gW (+)= a_prev^T delta                            (fan_in, fan_out)
        gb (+)= sum over rows of delta                    (fan_out,)
        delta_prev = (delta W^T) * f'(a_prev)             (n, fan_in)

    ``f'`` is computed from the stored output ``a_prev`` (relu: ``a > 0``, tanh:
    ``1 - a^2``, sigmoid: ``a (1 - a)``). Invariants: reads ``a_prev``,
    ``delta``, ``W``; with ``add``, ``gW`` and ``gb`` only grow by this
    batch's terms; without, they hold exactly this batch's gradient (the first
    batch of an accumulation, so the sums never need zeroing); rows are
    processed one after another.
    Pass ``delta_prev`` with zero rows for the first layer (no delta needed).
    ``blas`` picks ``np.dot`` for the two products instead of the loops.
    """
    n, fan_in = a_prev.shape
    fan_out = W.shape[1]
    t = W.dtype.type
    one, zero = t(1.0), t(0.0)
    if not add:
        gb[:] = zero
    for r in range(n):
        for j in range(fan_out):
            gb[j] += delta[r, j]
    if blas:
        if add:  # one product into a scratch array, then a loop (no array expression to compile)
            batch = np.empty_like(gW)
            np.dot(a_prev.T, delta, batch)
            for i in range(fan_in):
                for j in range(fan_out):
                    gW[i, j] += batch[i, j]
        else:
            np.dot(a_prev.T, delta, gW)
        if delta_prev.shape[0]:
            np.dot(delta, W.T, delta_prev)
    else:
        if not add:
            gW[:] = zero
        for r in range(n):
            for i in range(fan_in):
                x = a_prev[r, i]
                if x != 0:
                    for j in range(fan_out):
                        gW[i, j] += x * delta[r, j]
            if delta_prev.shape[0]:
                for i in range(fan_in):
                    s = zero
                    if act != RELU or a_prev[r, i] > 0:
                        for j in range(fan_out):
                            s += W[i, j] * delta[r, j]
                    delta_prev[r, i] = s
    if delta_prev.shape[0]:
        for r in range(n):
            for i in range(fan_in):
                x = a_prev[r, i]
                if act == RELU:
                    if x <= 0:
                        delta_prev[r, i] = 0
                elif act == TANH:
                    delta_prev[r, i] *= one - x * x
                else:
                    delta_prev[r, i] *= x * (one - x)


@jit(fastmath=REASSOCIATE)
def dense_sq_norms(a_prev: np.ndarray, delta: np.ndarray, sq_norms: np.ndarray) -> None:
    """Add one dense layer's share of every row's squared gradient norm to ``sq_norms``.

    ``sq_norms_r += |delta_r|^2 (|a_prev_r|^2 + 1)``: row ``r``'s own gradient of
    this layer is ``a_prev_r delta_r^T`` (weights) and ``delta_r`` (bias).
    Shapes: ``a_prev (n, fan_in)``, ``delta (n, fan_out)``, ``sq_norms (n,)``
    float64. Invariants: reads ``a_prev`` and ``delta``; writes only ``sq_norms``;
    each row's sums are taken in the layer's dtype, as the reference does.
    """
    n, fan_in = a_prev.shape
    fan_out = delta.shape[1]
    t = delta.dtype.type
    for r in range(n):
        d2, a2 = t(0.0), t(0.0)
        for j in range(fan_out):
            d2 += delta[r, j] * delta[r, j]
        for i in range(fan_in):
            a2 += a_prev[r, i] * a_prev[r, i]
        sq_norms[r] += d2 * (a2 + t(1.0))


@jit
def cross_entropy(z: np.ndarray, labels: np.ndarray, dz: np.ndarray) -> float:
    """Summed softmax cross-entropy; writes its gradient ``dz``; returns the sum.

    ``l_r = logsumexp(z_r) - z_r[y_r]``, computed stably as ``losses.log_softmax``
    does: ``log p_r = (z_r - m_r) - log1p(sum_{c != c*} exp(z_rc - m_r))`` with
    ``m_r = z_rc* = max_c z_rc`` (every ``exp`` is at most 1; the maximum's own
    term 1 goes to ``log1p``, so a loss near 0 keeps its relative precision).
    ``dz_r = exp(log p_r) - onehot(y_r)``.
    Shapes: ``z, dz (n, k)``, ``labels (n,)`` integers in ``[0, k)``. The sum
    is accumulated in float64; a non-finite ``z`` gives a non-finite sum.
    """
    n, k = z.shape
    total = 0.0
    for r in range(n):
        top, m = 0, z[r, 0]
        for j in range(1, k):
            if z[r, j] > m:
                top, m = j, z[r, j]
        s = z.dtype.type(0.0)
        for j in range(k):
            if j != top:
                s += np.exp(z[r, j] - m)
        log_s = np.log1p(s)
        for j in range(k):
            dz[r, j] = np.exp((z[r, j] - m) - log_s)
        y = labels[r]
        total -= (z[r, y] - m) - log_s
        dz[r, y] -= 1
    return total


@jit
def mse(z: np.ndarray, targets: np.ndarray, dz: np.ndarray) -> float:
    """Summed per-row mean squared error; writes its gradient ``dz``; returns the sum.

    ``l_r = (1/k) sum_j (z_rj - y_rj)^2``;  ``dz_r = (2/k) (z_r - y_r)``.
    Shapes: ``z, targets, dz (n, k)``. The sum is accumulated in float64.
    """
    n, k = z.shape
    scale = z.dtype.type(2.0 / k)
    total = 0.0
    for r in range(n):
        for j in range(k):
            diff = z[r, j] - targets[r, j]
            total += diff * diff
            dz[r, j] = scale * diff
    return total / k


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


@jit(inline="always")
def _forward_backward(Ws: tuple, bs: tuple, acts: list, deltas: list, gWs: tuple, gbs: tuple,
                      labels: np.ndarray, targets: np.ndarray, n: int, act: int, loss: int,
                      blas: bool, add: bool) -> tuple[float, int]:
    """One iteration on the batch in ``acts[0][:n]``: forward, loss, backward into the sums.

    ``add``: add to the gradient sums (False for the first batch of a step: write them).

    Returns ``(loss_sum, correct)`` where ``correct = #{r : argmax z_r = y_r}``
    (0 for mse). Stops after the loss (no backward, sums untouched) when the
    loss is not finite.
    """
    L = len(Ws)
    for layer in range(L):
        dense_forward(acts[layer][:n], Ws[layer], bs[layer], act if layer < L - 1 else LINEAR,
                      acts[layer + 1][:n], blas)
    z, dz = acts[L][:n], deltas[L - 1][:n]
    correct = 0
    if loss == CROSS_ENTROPY:
        loss_sum = cross_entropy(z, labels[:n], dz)
        for r in range(n):
            correct += np.argmax(z[r]) == labels[r]
    else:
        loss_sum = mse(z, targets[:n], dz)
    if not np.isfinite(loss_sum):
        return loss_sum, correct
    for layer in range(L - 1, -1, -1):
        below = deltas[layer - 1][:n] if layer > 0 else deltas[0][:0]
        dense_backward(acts[layer][:n], deltas[layer][:n], Ws[layer], act, gWs[layer],
                       gbs[layer], below, blas, add)
    return loss_sum, correct


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


@jit
def train_span(Ws: tuple, bs: tuple, vWs: tuple | None, vbs: tuple | None, X: np.ndarray,
               labels: np.ndarray,
               targets: np.ndarray, order: np.ndarray, bounds: np.ndarray, start: int, stop: int,
               k: int, lr: float, momentum: float, act: int, loss: int, blas: bool,
               loss_sums: np.ndarray, correct: np.ndarray, mean: np.ndarray,
               inv_std: np.ndarray) -> tuple[int, int, int]:
    """Iterations ``start, ..., stop - 1`` of one epoch of training, in one call.

    Batch ``t`` is the rows ``order[bounds[t]:bounds[t + 1]]`` of ``X`` and of
    ``labels`` (cross_entropy) or ``targets`` (mse; the other is unused). For
    each iteration ``t``: gather the batch (:func:`gather_batch`: scaled by
    ``mean`` and ``inv_std`` unless they are empty, cast to the weights' dtype),
    forward, loss, backward; add the gradient SUMS and the row count to the
    accumulators; write the batch's loss sum to ``loss_sums[t - start]`` and
    its correct count to ``correct[t - start]``. After iteration ``t`` when
    ``(t + 1) % k == 0`` or ``t + 1 == len(bounds) - 1`` (the epoch's last),
    one :func:`sgd_step` with ``g = grad_sum / rows_accumulated``.

    Invariants: ``start`` is a step boundary (a multiple of ``k``), so the
    accumulators start at zero and the result does not depend on how an epoch
    is cut into spans; ``stop`` should be one too (else the partial sums are
    lost). ``blas`` chooses BLAS or the loops for every product (see
    ``use_blas``). ``vWs, vbs``: the momentum buffers, or ``None`` for no
    momentum (``momentum`` is then not read), so a run without momentum never
    compiles :func:`sgd_step`. Weights and velocities change only through a checked step:
    :func:`sgd_step` with momentum; without, :func:`plain_step_into` writes
    the new weights into the gradient buffers and the two sets of arrays swap
    roles (the next batch's gradient overwrites the old weights), so during the
    call ``Ws`` may hold gradients; the current weights are copied into
    ``Ws``, ``bs`` before it returns.

    Returns ``(iterations, steps, status)``: iterations completed (their
    losses are written), steps taken, and ``status``: DONE, LOSS_NOT_FINITE (the
    loss of iteration ``start + iterations`` is not finite; only that loss was
    written) or UPDATE_NOT_FINITE (the step after iteration
    ``start + iterations - 1`` would make the weights non-finite; not taken).
    Unless DONE, the weights are the last finite ones.
    """
    L = len(Ws)
    dtype = Ws[0].dtype
    last = len(bounds) - 2
    widest = 0
    for t in range(start, stop):
        widest = max(widest, bounds[t + 1] - bounds[t])
    acts = [np.empty((widest, X.shape[1]), dtype)]
    deltas = []
    for layer in range(L):
        acts.append(np.empty((widest, Ws[layer].shape[1]), dtype))
        deltas.append(np.empty((widest, Ws[layer].shape[1]), dtype))
    Wc = [Ws[layer] for layer in range(L)]  # the current weights: the caller's, or the
    bc = [bs[layer] for layer in range(L)]  # buffers they were swapped with
    gWs = [np.empty_like(W) for W in Ws]
    gbs = [np.empty_like(b) for b in bs]
    swapped = False
    y_batch = np.empty(widest, labels.dtype)
    t_batch = np.empty((widest if loss == MSE else 0, targets.shape[1]), dtype)
    x_batch = acts[0]
    rows, steps = 0, 0
    for t in range(start, stop):
        n = bounds[t + 1] - bounds[t]
        gather_batch(X, labels, targets, order, bounds[t], n, loss, mean, inv_std, x_batch,
                     y_batch, t_batch)
        loss_sum, hits = _forward_backward(Wc, bc, acts, deltas, gWs, gbs, y_batch, t_batch,
                                           n, act, loss, blas, rows > 0)
        loss_sums[t - start] = loss_sum
        if not np.isfinite(loss_sum):
            _copy_back(Ws, bs, Wc, bc, swapped)
            return t - start, steps, LOSS_NOT_FINITE
        correct[t - start] = hits
        rows += n
        if (t + 1) % k == 0 or t == last:
            if vWs is None:  # no momentum (numba compiles only the branch the types allow)
                ok = plain_step_into(Wc, bc, gWs, gbs, lr, rows)
                if ok:
                    for layer in range(L):
                        Wc[layer], gWs[layer] = gWs[layer], Wc[layer]
                        bc[layer], gbs[layer] = gbs[layer], bc[layer]
                    swapped = not swapped
            else:
                ok = sgd_step(Wc, bc, gWs, gbs, vWs, vbs, lr, momentum, rows)
            if not ok:
                _copy_back(Ws, bs, Wc, bc, swapped)
                return t + 1 - start, steps, UPDATE_NOT_FINITE
            rows, steps = 0, steps + 1
    _copy_back(Ws, bs, Wc, bc, swapped)
    return stop - start, steps, DONE


@jit
def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst <- src`` element by element (flat arrays of one size).

    A loop, not ``dst[:] = src``: numba compiles a slice assignment together with
    the formatted message of its shape-mismatch error, seconds of compile time.
    """
    for i in range(dst.size):
        dst[i] = src[i]


@jit(inline="always")
def _copy_back(Ws: tuple, bs: tuple, Wc: list, bc: list, swapped: bool) -> None:
    """``Ws, bs <- Wc, bc`` when the current weights live in the swapped buffers."""
    if swapped:
        for layer in range(len(Ws)):
            _copy(Ws[layer].reshape(-1), Wc[layer].reshape(-1))
            _copy(bs[layer], bc[layer])


# --- the public twins of reference.forward and reference.loss_and_grads ---------------------

def forward(params: list[np.ndarray], X: np.ndarray, activation: str) -> list[np.ndarray]:
    """All layer outputs ``[a_0, a_1, ..., a_{L-1}, z_L]``, as ``reference.forward``.

    ``z_l = a_{l-1} W_l + b_l``;  ``a_l = f(z_l)`` for ``l < L``, one
    :func:`dense_forward` call per layer.
    """
    act = ACTIVATION_CODE[activation]
    n_layers = len(params) // 2
    a = np.require(X, requirements="CW")  # one layout (a read-only X is copied): one signature
    layers = [a]
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        out = np.empty((len(a), W.shape[1]), dtype=W.dtype)
        dense_forward(a, W, b, act if layer < n_layers - 1 else LINEAR, out, use_blas(len(a)))
        layers.append(out)
        a = out
    return layers


def loss_and_grads(params: list[np.ndarray], X: np.ndarray, y: np.ndarray, activation: str,
                   loss: str, sq_norms: np.ndarray | None = None
                   ) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Summed loss over the rows of ``X``, its gradients, and the raw outputs.

    ``L = sum_i l_i``, as ``reference.loss_and_grads``: :func:`forward`, then
    :func:`cross_entropy` or :func:`mse` for ``dL/dz_L``, then
    :func:`dense_backward` layer by layer. Pure: reads ``params``, writes nothing
    but ``sq_norms``, which, if given (``(n,)`` float64 zeros), receives every
    row's ``|grad l_i|^2`` through :func:`dense_sq_norms`, layer by layer.
    """
    act = ACTIVATION_CODE[activation]
    layers = forward(params, X, activation)
    z = layers[-1]
    delta = np.empty_like(z)
    if loss == "cross_entropy":
        loss_sum = cross_entropy(z, np.ascontiguousarray(y), delta)
    else:
        loss_sum = mse(z, np.ascontiguousarray(y, dtype=z.dtype), delta)
    grads = [np.empty_like(p) for p in params]
    for layer in range(len(params) // 2 - 1, -1, -1):
        a_prev = layers[layer]
        below = np.empty_like(a_prev) if layer > 0 else np.empty((0, a_prev.shape[1]), z.dtype)
        if sq_norms is not None:
            dense_sq_norms(a_prev, delta, sq_norms)
        dense_backward(a_prev, delta, params[2 * layer], act, grads[2 * layer],
                       grads[2 * layer + 1], below, use_blas(len(a_prev)), False)
        delta = below
    return float(loss_sum), grads, z


def fit_span(params: list[np.ndarray], velocity: list[np.ndarray] | None, X: np.ndarray,
             y: np.ndarray, order: np.ndarray | None, bounds: np.ndarray, start: int, stop: int,
             k: int, lr: float, momentum: float, activation: str, loss: str,
             blas: bool | None = None, scaling: Scaling | None = None
             ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Run iterations ``[start, stop)`` of an epoch with :func:`train_span`.

    ``order`` comes from ``DataLoader.epoch_order`` (``None``: rows in stored
    order) and ``bounds`` from ``DataLoader.batch_bounds(order)``; ``y`` is
    ``MLP.check_y``'s labels or targets; ``params`` and ``velocity`` (momentum
    buffers, ``None`` when ``momentum == 0``) are updated in place. ``start``
    must be a step boundary (a multiple of ``k``). ``blas``: multiply
    through BLAS or the loops; ``None`` chooses by the batch size (:func:`use_blas`).
    BLAS runs on one thread when the largest product of the widest batch is small
    (:func:`blas_threads_for`), and is restored afterwards.
    ``scaling`` (``MLP.scaling``): scale every batch as it is gathered.

    Returns
    -------
    loss_sums : (iterations done,) float64, each batch's summed loss; on
        LOSS_NOT_FINITE one more item, the non-finite loss.
    correct : (iterations done,) int64, correct predictions per batch.
    steps : int, training steps taken.
    status : int, DONE, LOSS_NOT_FINITE or UPDATE_NOT_FINITE (see ``train_span``).
    """
    widest = int(np.diff(bounds).max(initial=0))
    if blas is None:
        blas = use_blas(widest)
    if order is None:
        order = np.arange(bounds[-1])
    X, labels, targets = span_input(X, y, loss, params[0].dtype)
    Ws, bs = tuple(params[0::2]), tuple(params[1::2])
    vWs, vbs = (None, None) if velocity is None else (tuple(velocity[0::2]), tuple(velocity[1::2]))
    mean, inv_std = scaling_inputs(scaling)
    loss_sums = np.zeros(stop - start)
    correct = np.zeros(stop - start, dtype=np.int64)
    with blas_limit(blas, widest, Ws):
        done, steps, status = train_span(
            Ws, bs, vWs, vbs, X, labels, targets,
            np.ascontiguousarray(order, dtype=np.int64),
            np.ascontiguousarray(bounds, dtype=np.int64), start, stop, k, float(lr),
            float(momentum), ACTIVATION_CODE[activation], LOSS_CODE[loss], bool(blas),
            loss_sums, correct, mean, inv_std)
    return loss_sums[:done + (status == LOSS_NOT_FINITE)], correct[:done], steps, status


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


# --- data parallel: one rank's shard sums, the step between two collectives -----------------

@jit
def shard_sums(Ws: tuple, bs: tuple, X: np.ndarray, labels: np.ndarray, targets: np.ndarray,
               order: np.ndarray, lo: np.ndarray, counts: np.ndarray, act: int, loss: int,
               blas: bool, gWs: tuple, gbs: tuple, loss_sums: np.ndarray,
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
    acts = [np.empty((widest, X.shape[1]), dtype)]
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
        gather_batch(X, labels, targets, order, lo[t], n, loss, mean, inv_std, acts[0], y_batch,
                     t_batch)
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
    """:func:`shard_sums` as ``train._shard_sums`` packs them: one flat float64 buffer.

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
    X, labels, targets = span_input(X, y, loss, dtype)
    mean, inv_std = scaling_inputs(scaling)
    loss_sums, correct = np.zeros(m), np.zeros(m, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    widest = int(counts.max(initial=0))
    blas = use_blas(widest)
    Ws = tuple(params[0::2])
    with blas_limit(blas, widest, Ws):
        shard_sums(Ws, tuple(params[1::2]), X, labels, targets,
                   np.ascontiguousarray(order, dtype=np.int64),
                   np.ascontiguousarray(lo, dtype=np.int64), counts, ACTIVATION_CODE[activation],
                   LOSS_CODE[loss], blas, tuple(grads[0::2]), tuple(grads[1::2]), loss_sums,
                   correct, mean, inv_std)
    buf[:size] = sums
    buf[size] = counts.sum()
    buf[size + 1:size + 1 + m] = loss_sums
    buf[size + 1 + m:] = correct
    return buf


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
