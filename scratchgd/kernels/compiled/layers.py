"""One dense layer forward and backward, the two losses, and the public twins.

The notation of :mod:`scratchgd.kernels.reference`; each of its NumPy
expressions becomes one kernel, and its two public functions have twins here
with the same arguments and results:

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``f(a @ W + b)``                :func:`dense_forward` (bias and ``f`` fused);
                                :func:`dense_forward_row` (one row, its non-zero inputs listed)
``f(z)``                        :func:`activate` (in place)
``a.T @ delta``, ...            :func:`dense_backward` (``f'`` fused)
``(delta @ W.T) * f'(a)``       :func:`dense_delta` (by loops; :func:`dense_delta_row` for
                                one row), :func:`times_derivative`
``noise.layer_sq_norms``        :func:`dense_sq_norms` (per-example gradient norms)
``losses.cross_entropy``        :func:`cross_entropy` (stable softmax)
``losses.mse``                  :func:`mse`
``reference.forward``           :func:`forward` (one ``dense_forward`` per layer)
``reference.loss_and_grads``    :func:`loss_and_grads`
==============================  ==================================================

Products of small batches are written as loops that skip zero inputs (half of
the digits' pixels and of relu's outputs are zero); batches of
:data:`~.base.BLAS_MIN_ROWS` rows or more call BLAS through ``np.dot``
(:func:`~.base.use_blas`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import (
    CROSS_ENTROPY,
    LINEAR,
    REASSOCIATE,
    RELU,
    SIGMOID,
    TANH,
    activation_code,
    jit,
    loss_code,
    use_blas,
)


@jit
def activate(z: np.ndarray, act: int) -> None:
    """``z <- f(z)`` in place, element-wise; ``act`` is RELU, TANH, SIGMOID or LINEAR.

    relu ``max(0, z)`` (NaN stays NaN, as in NumPy); tanh ``tanh(z)``;
    sigmoid ``(1 + tanh(z / 2)) / 2``; LINEAR leaves ``z`` alone. Constants are
    cast to ``z``'s dtype, so float32 stays float32. Any other code raises
    ``ValueError`` before a value is written.
    """
    if act == LINEAR:
        return
    if act != RELU and act != TANH and act != SIGMOID:
        raise ValueError("activate: unknown activation code")
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


@jit(inline="always")
def nonzero(a: np.ndarray, nz: np.ndarray) -> int:
    """The indices ``i`` with ``a_i != 0``, ascending, into ``nz[:count]``; returns ``count``.

    Without a branch per value: where the zeros fall (half the digits' pixels,
    half of relu's outputs) cannot be predicted, and a mispredicted branch
    costs more than listing every index.
    """
    count = 0
    for i in range(len(a)):
        nz[count] = i
        count += a[i] != 0
    return count


@jit
def dense_forward_row(a: np.ndarray, W: np.ndarray, b: np.ndarray, act: int, out: np.ndarray,
                      nz: np.ndarray) -> int:
    """:func:`dense_forward` of one row by the loops, its non-zero inputs listed first.

    ``out_0 = f(b + sum_{i: a_0i != 0} a_0i W_i)``, the same numbers in the same
    order as :func:`dense_forward` (``a (1, fan_in)``, ``out (1, fan_out)``).
    The indices of the non-zero inputs go into ``nz`` (:func:`nonzero`), whose
    count it returns, for the step that updates only their weights.
    """
    count = nonzero(a[0], nz)
    for j in range(W.shape[1]):
        out[0, j] = b[j]
    for k in range(count):
        i = nz[k]
        x = a[0, i]
        for j in range(W.shape[1]):
            out[0, j] += x * W[i, j]
    activate(out, act)
    return count


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
    ``blas`` picks ``np.dot`` for the two products instead of the loops. A code
    ``act`` other than RELU, TANH, SIGMOID raises ``ValueError`` before a value is written.
    """
    if act != RELU and act != TANH and act != SIGMOID:
        raise ValueError("dense_backward: unknown activation code")
    n, fan_in = a_prev.shape
    fan_out = W.shape[1]
    zero = W.dtype.type(0.0)
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
            times_derivative(a_prev, act, delta_prev)
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
            dense_delta(a_prev, delta, W, act, delta_prev)


@jit(fastmath=REASSOCIATE)
def dense_delta(a_prev: np.ndarray, delta: np.ndarray, W: np.ndarray, act: int,
                delta_prev: np.ndarray) -> None:
    """The delta of the layer below, by loops: ``delta_prev = (delta W^T) * f'(a_prev)``.

    Shapes: ``a_prev, delta_prev (n, fan_in)``, ``delta (n, fan_out)``, ``W
    (fan_in, fan_out)``. Invariants: reads ``a_prev``, ``delta``, ``W``; writes
    only ``delta_prev``; a relu output of zero gets a zero delta without its
    sum. :func:`dense_backward` calls it for batches that skip BLAS, and
    :func:`dense_delta_row` for one row: each sum is :func:`_row_dot`, compiled
    with the same flags (``REASSOCIATE``: it may be reordered), so both give
    the same bits. A code ``act``
    other than RELU, TANH, SIGMOID raises ``ValueError`` before a value is written.
    """
    if act != RELU and act != TANH and act != SIGMOID:
        raise ValueError("dense_delta: unknown activation code")
    n, fan_in = a_prev.shape
    for r in range(n):
        for i in range(fan_in):
            if act != RELU or a_prev[r, i] > 0:
                delta_prev[r, i] = _row_dot(W, i, delta[r])
            else:
                delta_prev[r, i] = 0
    times_derivative(a_prev, act, delta_prev)


@jit(inline="always")
def _row_dot(W: np.ndarray, i: int, d: np.ndarray) -> float:
    """``sum_j W_ij d_j`` in ``W``'s dtype (inlined: its caller's fast-math flags apply)."""
    s = W.dtype.type(0.0)
    for j in range(W.shape[1]):
        s += W[i, j] * d[j]
    return s


@jit(fastmath=REASSOCIATE)
def dense_delta_row(a_prev: np.ndarray, delta: np.ndarray, W: np.ndarray, act: int,
                    delta_prev: np.ndarray, nz: np.ndarray, count: int) -> None:
    """:func:`dense_delta` of one row, the same numbers; for relu only the listed inputs' sums.

    ``nz[:count]``: the indices of the non-zero values of ``a_prev[0]``
    (:func:`dense_forward_row`'s list). A relu output is zero or positive, so
    its delta is the sum at those indices and zero elsewhere, without a
    branch per value; other activations go through :func:`dense_delta`.
    """
    if act != RELU:
        dense_delta(a_prev, delta, W, act, delta_prev)
        return
    for i in range(delta_prev.shape[1]):
        delta_prev[0, i] = 0
    for k in range(count):
        i = nz[k]
        delta_prev[0, i] = _row_dot(W, i, delta[0])


@jit(fastmath=REASSOCIATE)
def times_derivative(a_prev: np.ndarray, act: int, delta_prev: np.ndarray) -> None:
    """``delta_prev <- delta_prev * f'(a_prev)`` in place, ``f'`` from the layer's output.

    relu: ``a > 0`` (a zero where ``a <= 0``), tanh: ``1 - a^2``, sigmoid:
    ``a (1 - a)``. Shapes: ``a_prev, delta_prev (n, fan_in)``. A code ``act``
    other than RELU, TANH, SIGMOID raises ``ValueError`` before a value is written.
    """
    if act != RELU and act != TANH and act != SIGMOID:
        raise ValueError("times_derivative: unknown activation code")
    n, fan_in = a_prev.shape
    one = a_prev.dtype.type(1.0)
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
    each row's sums are taken in the layer's dtype, as its NumPy twin
    :func:`scratchgd.noise.layer_sq_norms` does, which picks this kernel for the
    numba backend.
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


# --- the public twins of reference.forward and reference.loss_and_grads ---------------------

def forward(params: list[np.ndarray], X: np.ndarray, activation: str) -> list[np.ndarray]:
    """All layer outputs ``[a_0, a_1, ..., a_{L-1}, z_L]``, as ``reference.forward``.

    ``z_l = a_{l-1} W_l + b_l``;  ``a_l = f(z_l)`` for ``l < L``, one
    :func:`dense_forward` call per layer. ``X`` of another dtype than the
    weights' (ints, bool, float16) is first cast to theirs, as ``MLP.inputs``
    casts (a copy of these rows; ``MLP`` passes ``X`` cast already).
    """
    act = activation_code(activation)
    n_layers = len(params) // 2
    # one dtype and layout (a read-only X is copied): one signature
    a = np.require(X, params[0].dtype, requirements="CW")
    layers = [a]
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        out = np.empty((len(a), W.shape[1]), dtype=W.dtype)
        dense_forward(a, W, b, act if layer < n_layers - 1 else LINEAR, out, use_blas(len(a)))
        layers.append(out)
        a = out
    return layers


def loss_and_grads(params: list[np.ndarray], X: np.ndarray, y: np.ndarray, activation: str,
                   loss: str, observe: Callable[[np.ndarray, np.ndarray], object] | None = None
                   ) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Summed loss over the rows of ``X``, its gradients, and the raw outputs.

    ``L = sum_i l_i``, as ``reference.loss_and_grads``: :func:`forward`, then
    :func:`cross_entropy` or :func:`mse` for ``dL/dz_L``, then
    :func:`dense_backward` layer by layer, ``observe(a_prev, delta)`` (if given)
    shown each layer's input and delta first, as ``reference.backward`` shows
    them. Pure: reads ``params``, writes nothing.
    """
    act = activation_code(activation)
    layers = forward(params, X, activation)
    z = layers[-1]
    delta = np.empty_like(z)
    if loss_code(loss) == CROSS_ENTROPY:
        loss_sum = cross_entropy(z, np.ascontiguousarray(y), delta)
    else:
        loss_sum = mse(z, np.ascontiguousarray(y, dtype=z.dtype), delta)
    grads = [np.empty_like(p) for p in params]
    for layer in range(len(params) // 2 - 1, -1, -1):
        a_prev = layers[layer]
        below = np.empty_like(a_prev) if layer > 0 else np.empty((0, a_prev.shape[1]), z.dtype)
        if observe is not None:
            observe(a_prev, delta)
        dense_backward(a_prev, delta, params[2 * layer], act, grads[2 * layer],
                       grads[2 * layer + 1], below, use_blas(len(a_prev)), False)
        delta = below
    return float(loss_sum), grads, z
