"""Many iterations of an epoch in one compiled call: the loop of ``engines.python``.

What makes small batches cheap: a whole run of iterations (gather a batch by
index, forward, loss, backward, accumulate gradient sums, a training step every
``k`` iterations) runs in one compiled call instead of one Python round trip
per batch:

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``PythonEngine.run_span``       :func:`train_iterations_kernel` (many iterations,
                                one call), called by :func:`train_iterations`
``reference.loss_and_grads``    :func:`_forward_backward` (one iteration, its
                                gradients added to the sums)
==============================  ==================================================

Each part of an iteration is a kernel of a sibling module, inlined or called:
:func:`~.gather.gather_batch`, :func:`~.layers.dense_forward`,
:func:`~.layers.cross_entropy` or :func:`~.layers.mse`,
:func:`~.layers.dense_backward`, and :func:`~.step.take_step`
(:func:`~.step.sgd_step` or :func:`~.step.plain_step_into`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...scaling import Scaling
from .base import (
    CROSS_ENTROPY,
    LINEAR,
    MSE,
    activation_code,
    blas_limit,
    borrowed,
    jit,
    loss_code,
    use_blas,
)
from .gather import gather_batch, scaling_inputs, span_input
from .layers import (
    cross_entropy,
    dense_backward,
    dense_delta_row,
    dense_forward,
    dense_forward_row,
    mse,
)
from .step import rank_one_step, take_step, weights_bound

DONE, LOSS_NOT_FINITE, UPDATE_NOT_FINITE = 0, 1, 2
"""Status codes of :func:`train_iterations_kernel`: it ran to ``stop``; a batch loss was not
finite; a step would have made the weights non-finite."""


@jit(inline="always")
def _forward_loss(Ws: tuple, bs: tuple, acts: list, deltas: list, labels: np.ndarray,
                  targets: np.ndarray, n: int, act: int, loss: int, blas: bool
                  ) -> tuple[float, int]:
    """Forward and loss on the batch in ``acts[0][:n]``: the outputs, ``dL/dz`` in ``deltas[-1]``.

    Returns ``(loss_sum, correct)`` where ``correct = #{r : argmax z_r = y_r}``
    (0 for mse).
    """
    L = len(Ws)
    for layer in range(L):
        dense_forward(acts[layer][:n], Ws[layer], bs[layer], act if layer < L - 1 else LINEAR,
                      acts[layer + 1][:n], blas)
    return _loss(acts[L][:n], deltas[L - 1][:n], labels, targets, n, loss)


@jit(inline="always")
def _loss(z: np.ndarray, dz: np.ndarray, labels: np.ndarray, targets: np.ndarray, n: int,
          loss: int) -> tuple[float, int]:
    """The batch's loss sum of the outputs ``z (n, k)``, ``dL/dz`` into ``dz``; its correct count."""
    correct = 0
    if loss == CROSS_ENTROPY:
        loss_sum = cross_entropy(z, labels[:n], dz)
        for r in range(n):
            correct += np.argmax(z[r]) == labels[r]
    else:
        loss_sum = mse(z, targets[:n], dz)
    return loss_sum, correct


@jit(inline="always")
def _forward_backward(Ws: tuple, bs: tuple, acts: list, deltas: list, gWs: tuple, gbs: tuple,
                      labels: np.ndarray, targets: np.ndarray, n: int, act: int, loss: int,
                      blas: bool, add: bool) -> tuple[float, int]:
    """One iteration on the batch in ``acts[0][:n]``: forward, loss, backward into the sums.

    ``add``: add to the gradient sums (False for the first batch of a step: write them).

    Returns :func:`_forward_loss`'s ``(loss_sum, correct)``. Stops after the
    loss (no backward, sums untouched) when the loss is not finite.
    """
    L = len(Ws)
    loss_sum, correct = _forward_loss(Ws, bs, acts, deltas, labels, targets, n, act, loss, blas)
    if not np.isfinite(loss_sum):
        return loss_sum, correct
    for layer in range(L - 1, -1, -1):
        below = deltas[layer - 1][:n] if layer > 0 else deltas[0][:0]
        dense_backward(acts[layer][:n], deltas[layer][:n], Ws[layer], act, gWs[layer],
                       gbs[layer], below, blas, add)
    return loss_sum, correct


@jit(inline="always")
def _batch_buffers(Ws: tuple, widest: int, labels: np.ndarray, targets: np.ndarray, loss: int
                   ) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    """The buffers of a batch of up to ``widest`` rows, allocated once per span.

    ``acts`` (``a_0`` -- the gathered batch -- to ``z_L``) and ``deltas`` (one
    per layer), in the weights' dtype; the batch's labels (cross_entropy) or
    targets (mse; zero rows otherwise); and one row of ``X`` decoded to
    float64 (:func:`~.gather.gather_batch`'s ``values``).
    """
    dtype = Ws[0].dtype
    acts = [np.empty((widest, Ws[0].shape[0]), dtype)]
    deltas = []
    for layer in range(len(Ws)):
        acts.append(np.empty((widest, Ws[layer].shape[1]), dtype))
        deltas.append(np.empty((widest, Ws[layer].shape[1]), dtype))
    y_batch = np.empty(widest, labels.dtype)
    t_batch = np.empty((widest if loss == MSE else 0, targets.shape[1]), dtype)
    return acts, deltas, y_batch, t_batch, np.empty(Ws[0].shape[0])


@jit
def train_iterations_kernel(Ws: tuple, bs: tuple, vWs: tuple | None, vbs: tuple | None, X: np.ndarray,
               x_format: tuple | None, labels: np.ndarray,
               targets: np.ndarray, order: np.ndarray, bounds: np.ndarray, start: int, stop: int,
               k: int, lr: float, momentum: float, act: int, loss: int, blas: bool,
               loss_sums: np.ndarray, correct: np.ndarray, mean: np.ndarray,
               inv_std: np.ndarray) -> tuple[int, int, int]:
    """Iterations ``start, ..., stop - 1`` of one epoch of training, in one call.

    Batch ``t`` is the rows ``order[bounds[t]:bounds[t + 1]]`` of ``X`` (read as
    ``x_format`` says, see :func:`~.gather.span_input`) and of
    ``labels`` (cross_entropy) or ``targets`` (mse; the other is unused). For
    each iteration ``t``: gather the batch (:func:`gather_batch`: scaled by
    ``mean`` and ``inv_std`` unless they are empty, cast to the weights' dtype),
    forward, loss, backward; add the gradient SUMS and the row count to the
    accumulators; write the batch's loss sum to ``loss_sums[t - start]`` and
    its correct count to ``correct[t - start]``. After iteration ``t`` when
    ``(t + 1) % k == 0`` or ``t + 1 == len(bounds) - 1`` (the epoch's last),
    one :func:`~.step.take_step` with ``g = grad_sum / rows_accumulated``.

    Invariants: ``start`` is a step boundary (a multiple of ``k``), so the
    accumulators start at zero and the result does not depend on how an epoch
    is cut into spans; ``stop`` should be one too (else the partial sums are
    lost). ``blas`` chooses BLAS or the loops for every product (see
    ``use_blas``). ``vWs, vbs``: the momentum buffers, or ``None`` for no
    momentum (``momentum`` is then not read), so a run without momentum never
    compiles :func:`~.step.sgd_step`. Weights and velocities change only through a checked step:
    :func:`~.step.sgd_step` with momentum; without, :func:`~.step.plain_step_into` writes
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
    last = len(bounds) - 2
    widest = 0
    for t in range(start, stop):
        widest = max(widest, bounds[t + 1] - bounds[t])
    owned_acts, owned_deltas, y_batch, t_batch, values = _batch_buffers(Ws, widest, labels,
                                                                         targets, loss)
    owned_gWs = [np.empty_like(W) for W in Ws]
    owned_gbs = [np.empty_like(b) for b in bs]
    acts = [borrowed(a) for a in owned_acts]  # the loop works on borrowed views (see borrowed),
    deltas = [borrowed(d) for d in owned_deltas]  # the owned arrays kept alive to the end
    gWs = [borrowed(g) for g in owned_gWs]
    gbs = [borrowed(g) for g in owned_gbs]
    Wc = [borrowed(Ws[layer]) for layer in range(L)]  # the current weights: the caller's, or the
    bc = [borrowed(bs[layer]) for layer in range(L)]  # buffers they were swapped with
    swapped = False
    x_batch = acts[0]
    rows, steps = 0, 0
    done, status = stop - start, DONE
    for t in range(start, stop):
        n = bounds[t + 1] - bounds[t]
        gather_batch(X, x_format, labels, targets, order, bounds[t], n, loss, mean, inv_std,
                     x_batch, y_batch, t_batch, values)
        loss_sum, hits = _forward_backward(Wc, bc, acts, deltas, gWs, gbs, y_batch, t_batch,
                                           n, act, loss, blas, rows > 0)
        loss_sums[t - start] = loss_sum
        if not np.isfinite(loss_sum):
            done, status = t - start, LOSS_NOT_FINITE
            break
        correct[t - start] = hits
        rows += n
        if (t + 1) % k == 0 or t == last:
            ok, flipped = take_step(Wc, bc, None, None, gWs, gbs, vWs, vbs, lr, momentum, rows)
            swapped ^= flipped
            if not ok:
                done, status = t + 1 - start, UPDATE_NOT_FINITE
                break
            rows, steps = 0, steps + 1
    # one exit: the weights may live in owned_gWs (swapped), read through Wc by _copy_back, so
    # the owned arrays must outlive it; a return inside the loop would free them first
    _copy_back(Ws, bs, Wc, bc, swapped)
    _keep(owned_acts, owned_deltas, owned_gWs, owned_gbs)
    return done, steps, status


@jit
def train_iterations_rows_kernel(Ws: tuple, bs: tuple, X: np.ndarray, x_format: tuple | None,
                    labels: np.ndarray, targets: np.ndarray, order: np.ndarray,
                    bounds: np.ndarray, start: int, stop: int, lr: float, act: int, loss: int,
                    loss_sums: np.ndarray, correct: np.ndarray, mean: np.ndarray,
                    inv_std: np.ndarray, limit: float) -> tuple[int, int]:
    """:func:`train_iterations_kernel` for the article's SGD: one-row batches, a step each, no momentum.

    The same iterations and the same numbers as :func:`train_iterations_kernel` with
    ``k = 1``, ``vWs = None`` and every batch one row, without its per-step
    work that a single row does not need: for each iteration, gather the row,
    forward and loss (:func:`_forward_loss`, the loops), the delta of every
    layer (:func:`~.layers.dense_delta_row`, from the old weights), then
    :func:`~.step.rank_one_step`, which updates the weights in place from the
    layers' inputs and deltas: no gradient arrays, nothing zeroed, no pass
    over the weights of zero inputs, no second set of weights. ``limit``: a
    quarter of the largest value of the weights' dtype (see
    :func:`~.step.rank_one_step`).

    Returns ``(iterations, status)`` as :func:`train_iterations_kernel`: every iteration
    done is a step taken, but on UPDATE_NOT_FINITE the last one's; unless
    DONE, the weights are the last finite ones.
    """
    L = len(Ws)
    owned_acts, owned_deltas, y_batch, t_batch, values = _batch_buffers(Ws, 1, labels, targets,
                                                                         loss)
    owned_nzs = [np.empty(W.shape[0], np.int64) for W in Ws]  # each layer's non-zero inputs
    acts = [borrowed(a) for a in owned_acts]  # the loop works on borrowed views (see borrowed)
    deltas = [borrowed(d) for d in owned_deltas]
    nzs = [borrowed(nz) for nz in owned_nzs]
    Wv = [borrowed(Ws[layer]) for layer in range(L)]  # updated in place: the caller's arrays
    bv = [borrowed(bs[layer]) for layer in range(L)]
    bound = weights_bound(Wv, bv)
    counts = np.zeros(L, np.int64)
    done, status = stop - start, DONE
    for t in range(start, stop):
        gather_batch(X, x_format, labels, targets, order, bounds[t], 1, loss, mean, inv_std,
                     acts[0], y_batch, t_batch, values)
        for layer in range(L):
            counts[layer] = dense_forward_row(acts[layer], Wv[layer], bv[layer],
                                              act if layer < L - 1 else LINEAR,
                                              acts[layer + 1], nzs[layer])
        loss_sum, hits = _loss(acts[L], deltas[L - 1], y_batch, t_batch, 1, loss)
        loss_sums[t - start] = loss_sum
        if not np.isfinite(loss_sum):
            done, status = t - start, LOSS_NOT_FINITE
            break
        correct[t - start] = hits
        for layer in range(L - 1, 0, -1):
            dense_delta_row(acts[layer], deltas[layer], Wv[layer], act, deltas[layer - 1],
                            nzs[layer], counts[layer])
        ok, bound = rank_one_step(Wv, bv, acts, deltas, nzs, counts, lr, bound, limit)
        if not ok:
            done, status = t + 1 - start, UPDATE_NOT_FINITE
            break
    _keep(owned_acts, owned_deltas, owned_nzs)  # one exit, after every use of the views
    return done, status


@jit
def _keep(*arrays: list) -> None:
    """Nothing: a use of ``arrays`` that keeps them alive up to here, for their borrowed views."""


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


class SpanInputs(NamedTuple):
    """What every kernel call of a run reads, prepared once by :func:`span_inputs`.

    The weights and momentum buffers as the kernels take them (tuples of the
    caller's arrays, updated in place), the data set in its compiled layout
    (:func:`~.gather.span_input`), the input scaling, the activation's and the
    loss's codes, whether the products go through BLAS, the widest batch (which
    ``blas_limit`` sizes the threads by), whether the one-row kernel runs
    (``rows``), and that kernel's bound on the weights (``limit``).
    """

    params: list
    velocity: list | None
    Ws: tuple
    bs: tuple
    vWs: tuple | None
    vbs: tuple | None
    X: np.ndarray
    x_format: tuple | None
    labels: np.ndarray
    targets: np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray
    act: int
    loss: int
    blas: bool
    widest: int
    rows: bool
    limit: float


def span_inputs(params: list[np.ndarray], velocity: list[np.ndarray] | None, X: np.ndarray,
                y: np.ndarray, bounds: np.ndarray, k: int, activation: str, loss: str,
                blas: bool | None = None, scaling: Scaling | None = None) -> SpanInputs:
    """The :class:`SpanInputs` of :func:`train_iterations`'s arguments (see there)."""
    widest = int((bounds[1:] - bounds[:-1]).max(initial=0))  # np.diff: microseconds more
    if blas is None:
        blas = use_blas(widest)
    X, x_format, labels, targets = span_input(X, y, loss, params[0].dtype)
    Ws, bs = tuple(params[0::2]), tuple(params[1::2])
    vWs, vbs = (None, None) if velocity is None else (tuple(velocity[0::2]), tuple(velocity[1::2]))
    mean, inv_std = scaling_inputs(scaling)
    rows = widest == 1 and k == 1 and velocity is None and not blas  # the article's SGD
    return SpanInputs(list(params), None if velocity is None else list(velocity), Ws, bs, vWs,
                      vbs, X, x_format, labels, targets, mean, inv_std,
                      activation_code(activation), loss_code(loss), bool(blas), widest, rows,
                      float(np.finfo(Ws[0].dtype).max) / 4)


def train_iterations(params: list[np.ndarray], velocity: list[np.ndarray] | None, X: np.ndarray,
             y: np.ndarray, order: np.ndarray | None, bounds: np.ndarray, start: int, stop: int,
             k: int, lr: float, momentum: float, activation: str, loss: str,
             blas: bool | None = None, scaling: Scaling | None = None
             ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Run iterations ``[start, stop)`` of an epoch with :func:`train_iterations_kernel`.

    ``order`` comes from ``DataLoader.epoch_order`` (``None``: rows in stored
    order) and ``bounds`` from ``DataLoader.batch_bounds(order)``; ``y`` is
    ``MLP.check_y``'s labels or targets; ``params`` and ``velocity`` (momentum
    buffers, ``None`` when ``momentum == 0``) are updated in place. ``start``
    must be a step boundary (a multiple of ``k``). ``blas``: multiply
    through BLAS or the loops; ``None`` chooses by the batch size (:func:`use_blas`).
    BLAS runs on one thread when the largest product of the widest batch is small
    (:func:`blas_threads_for`), and is restored afterwards; nothing is set where
    OpenBLAS runs that product on one thread by itself (``blas_limit``).
    ``scaling`` (``MLP.scaling``): scale every batch as it is gathered.
    :func:`span_inputs` and :func:`run_iterations` are its two halves: a run
    prepares its inputs once and calls the kernel with them span after span.

    Returns
    -------
    loss_sums : (iterations done,) float64, each batch's summed loss; on
        LOSS_NOT_FINITE one more item, the non-finite loss.
    correct : (iterations done,) int64, correct predictions per batch.
    steps : int, training steps taken.
    status : int, DONE, LOSS_NOT_FINITE or UPDATE_NOT_FINITE (see ``train_iterations_kernel``).
    """
    inputs = span_inputs(params, velocity, X, y, bounds, k, activation, loss, blas, scaling)
    return run_iterations(inputs, order, bounds, start, stop, k, lr, momentum)


def run_iterations(inputs: SpanInputs, order: np.ndarray | None, bounds: np.ndarray, start: int,
                   stop: int, k: int, lr: float, momentum: float
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`train_iterations` on inputs prepared by :func:`span_inputs` (the same returns)."""
    if order is None:
        order = np.arange(bounds[-1])
    loss_sums = np.zeros(stop - start)
    correct = np.zeros(stop - start, dtype=np.int64)
    order = np.ascontiguousarray(order, dtype=np.int64)
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    i = inputs
    if i.rows:
        done, status = train_iterations_rows_kernel(
            i.Ws, i.bs, i.X, i.x_format, i.labels, i.targets, order, bounds, start, stop,
            float(lr), i.act, i.loss, loss_sums, correct, i.mean, i.inv_std, i.limit)
        steps = done - (status == UPDATE_NOT_FINITE)  # a step per iteration, but the last
        return loss_sums[:done + (status == LOSS_NOT_FINITE)], correct[:done], steps, status
    with blas_limit(i.blas, i.widest, i.Ws):
        done, steps, status = train_iterations_kernel(
            i.Ws, i.bs, i.vWs, i.vbs, i.X, i.x_format, i.labels, i.targets, order, bounds, start,
            stop, k, float(lr), float(momentum), i.act, i.loss, i.blas, loss_sums, correct,
            i.mean, i.inv_std)
    return loss_sums[:done + (status == LOSS_NOT_FINITE)], correct[:done], steps, status
