"""Data parallel: many training steps on one rank in one call, the collective between steps.

The reference is ``engines.data_parallel.DataParallelEngine`` (backend
"numpy"): per training step, this rank's gradient sums over its shards, one
collective, the step on the reduced sums, in Python. Here one compiled call
runs many steps, as :func:`~.span.train_iterations_kernel` does in one
process, and leaves the compiled code only for the collective:

==================================  ==============================================
reference (NumPy)                   compiled kernel
==================================  ==============================================
``DataParallelEngine.run_span``     :func:`train_iterations_parallel_kernel`
                                    (many steps, one call), called by
                                    :func:`train_iterations_parallel`
``Group.sum_in_rank_order``         a ``Group.reducer``, called back from
                                    :func:`train_iterations_parallel_kernel`
                                    through :data:`CALLBACK`
``distributed.add_rows``            :func:`add_rows` (one rank's chunk of the
                                    sums, on one machine)
==================================  ==============================================

What a rank contributes to a step of ``m`` iterations ``first .. first + m - 1``
(the ``Reducer``'s buffers)::

    send        gradient sums of every parameter (flattened, params order),
                in the model's dtype
    send_extra  [loss sum of iteration first, its correct count, ...,
                 of iteration first + m - 1], in the sum dtype

The arithmetic is the reference's, number for number: the shards' gradient
sums in the model's dtype (:func:`~.span._forward_backward`, BLAS or the loops
by the step's widest shard), added over the ranks in rank order in the sum
dtype (float64; float32 with ``fit(reduce_dtype="float32")``), rounded to the
model's dtype (the reference casts the reduced float64 buffer) and divided by
the step's global rows (:func:`~.step.plain_step_into` or
:func:`~.step.sgd_step` reading ``total``).
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..._arrays import views_like
from ...scaling import Scaling
from .base import BLAS_MIN_ROWS, activation_code, blas_limit, jit, loss_code, use_blas
from .gather import gather_batch, scaling_inputs, span_input
from .span import (
    DONE,
    LOSS_NOT_FINITE,
    UPDATE_NOT_FINITE,
    _batch_buffers,
    _copy_back,
    _forward_backward,
)
from .step import take_step

COLLECTIVE_FAILED = 3
"""Status of :func:`train_iterations_parallel_kernel`: the collective raised
(see :func:`train_iterations_parallel`)."""

_collectives: dict[int, Callable[[], object]] = {}
"""The collective of each running span, by key: compiled code cannot hold a Python object."""
_failures: dict[int, BaseException] = {}
_keys = itertools.count()


class Reducer(Protocol):
    """Sums every rank's buffers in rank order when called (``Group.reducer``)."""

    send: np.ndarray
    send_extra: np.ndarray
    total: np.ndarray
    total_extra: np.ndarray

    def __call__(self) -> object: ...

    def close(self) -> None: ...


def _call_collective(key: int) -> int:
    """The collective of the span ``key``; 1 (the exception kept) if it raised."""
    try:
        _collectives[key]()
    except BaseException as exc:  # noqa: BLE001 (re-raised by train_iterations_parallel)
        _failures[key] = exc
        return 1
    return 0


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(_call_collective)
""":func:`_call_collective` as a C function pointer, which :func:`train_iterations_parallel_kernel`
takes as an argument and calls between steps (taking the GIL for it). Its numba
type is its signature alone, so the kernel is compiled once and cached like the
others (an object-mode block would be compiled again in every process)."""


@jit
def train_iterations_parallel_kernel(Ws: tuple, bs: tuple, vWs: tuple | None, vbs: tuple | None,
                        X: np.ndarray, x_format: tuple | None, labels: np.ndarray,
                        targets: np.ndarray,
                        order: np.ndarray, bounds: np.ndarray, lo: np.ndarray,
                        counts: np.ndarray, start: int, stop: int, k: int, lr: float,
                        momentum: float, act: int, loss: int, gWs: tuple, gbs: tuple,
                        send_extra: np.ndarray, sWs: tuple, sbs: tuple,
                        total_extra: np.ndarray, collective: Callable[[int], int], key: int,
                        loss_sums: np.ndarray, correct: np.ndarray, mean: np.ndarray,
                        inv_std: np.ndarray) -> tuple[int, int, int]:
    """Training steps of iterations ``start .. stop - 1`` on this rank, one collective per step.

    Iteration ``t``'s global batch is ``order[bounds[t]:bounds[t + 1]]`` (rows of
    ``X`` read as ``x_format`` says, see :func:`~.gather.span_input`); this
    rank's shard of it is ``order[lo[t - start]:lo[t - start] + counts[t - start]]``.
    For each step (``k`` iterations, or fewer at the epoch's end):

    1. :func:`_shard_sums`: this rank's gradient sums into ``gWs, gbs`` (views
       of the reducer's ``send``), its loss sums and correct counts into
       ``send_extra``;
    2. ``collective(key)`` (:data:`CALLBACK`: the span's ``Reducer``, which
       owns the buffers): the sums over ranks into ``total`` (``sWs, sbs``
       view it) and ``total_extra``;
    3. from ``total_extra``: each iteration's loss sum into
       ``loss_sums[t - start]`` and correct count into ``correct[t - start]``;
       a non-finite loss stops the span before the step;
    4. the step with ``g = total / m``, ``m`` the step's global rows
       ``bounds[end] - bounds[first]``: without momentum
       the new weights go into spare buffers, which then swap roles with the
       weights (as in :func:`~.span.train_iterations_kernel`).

    Invariants: as :func:`~.span.train_iterations_kernel`: ``start`` and ``stop`` are step
    boundaries, weights and velocities change only through a checked step,
    and the current weights are in ``Ws, bs`` when it returns. Every rank
    computes the same ``total`` and therefore the same step and status.

    Returns ``(iterations, steps, status)`` as :func:`~.span.train_iterations_kernel`, or
    status COLLECTIVE_FAILED (the collective of the step starting at
    ``start + iterations`` raised; its exception is kept under ``key``).
    """
    L = len(Ws)
    widest = 1
    for t in range(stop - start):
        widest = max(widest, counts[t])
    acts, deltas, y_batch, t_batch, values = _batch_buffers(Ws, widest, labels, targets, loss)
    Wc = [Ws[layer] for layer in range(L)]  # the current weights, swapped with Wn, bn
    bc = [bs[layer] for layer in range(L)]
    Wn = [np.empty_like(W) for W in Ws]
    bn = [np.empty_like(b) for b in bs]
    swapped = False
    steps, done, status = 0, stop - start, DONE
    for first in range(start, stop, k):
        end = min(first + k, stop)
        _shard_sums(Wc, bc, acts, deltas, gWs, gbs, X, x_format, labels, targets, order,
                    lo[first - start:end - start], counts[first - start:end - start], act, loss,
                    mean, inv_std, y_batch, t_batch, values, send_extra)
        if collective(key):
            done, status = first - start, COLLECTIVE_FAILED
            break
        bad = _record(total_extra, first - start, end - start, loss_sums, correct)
        if bad >= 0:
            done, status = bad, LOSS_NOT_FINITE
            break
        ok, flipped = take_step(Wc, bc, sWs, sbs, Wn, bn, vWs, vbs, lr, momentum,
                                bounds[end] - bounds[first])
        swapped ^= flipped
        if not ok:
            done, status = end - start, UPDATE_NOT_FINITE
            break
        steps += 1
    _copy_back(Ws, bs, Wc, bc, swapped)
    return done, steps, status


@jit(inline="always")
def _shard_sums(Ws: list, bs: list, acts: list, deltas: list, gWs: tuple, gbs: tuple,
                X: np.ndarray, x_format: tuple | None, labels: np.ndarray,
                targets: np.ndarray, order: np.ndarray,
                lo: np.ndarray, counts: np.ndarray, act: int, loss: int, mean: np.ndarray,
                inv_std: np.ndarray, y_batch: np.ndarray, t_batch: np.ndarray,
                values: np.ndarray, loss_hits: np.ndarray) -> None:
    """This rank's part of one step: its shards' gradient sums, loss sums, correct counts.

    Shard ``j`` (the step's ``j``-th iteration) is ``order[lo[j]:lo[j] + counts[j]]``.
    For each: gather, forward, loss, backward, adding its gradient SUMS into
    ``gWs, gbs``, its loss sum into ``loss_hits[2 j]`` and correct count into
    ``loss_hits[2 j + 1]``. BLAS or the loops by the step's widest shard. An
    empty shard adds nothing (all empty: zero sums); after a non-finite loss
    it stops, its later loss sums and counts 0 (the reduced loss is not finite either).

    Inlined into :func:`train_iterations_parallel_kernel`: numba links a called kernel's
    code into its caller and LLVM optimizes it there again, so a separate
    kernel compiled slower (docs/performance.md, "Start-up").
    Loops rather than ``counts.max()`` and slice assignments, which compile
    slower.
    """
    widest = 0
    for j in range(len(counts)):
        widest = max(widest, counts[j])
    blas = widest >= BLAS_MIN_ROWS  # computed, not a literal False: one compiled type
    for j in range(2 * len(counts)):
        loss_hits[j] = 0
    rows = 0
    for j in range(len(counts)):
        n = counts[j]
        if n == 0:
            continue
        gather_batch(X, x_format, labels, targets, order, lo[j], n, loss, mean, inv_std,
                     acts[0], y_batch, t_batch, values)
        loss_sum, hits = _forward_backward(Ws, bs, acts, deltas, gWs, gbs, y_batch, t_batch, n,
                                           act, loss, blas, rows > 0)
        loss_hits[2 * j] = loss_sum
        if not np.isfinite(loss_sum):
            break
        loss_hits[2 * j + 1] = hits
        rows += n
    if rows == 0:
        for layer in range(len(gWs)):
            for part in (gWs[layer].reshape(-1), gbs[layer]):
                for i in range(part.size):
                    part[i] = 0


@jit(inline="always")
def _record(loss_hits: np.ndarray, first: int, end: int, loss_sums: np.ndarray,
            correct: np.ndarray) -> int:
    """``loss_sums[t]``, ``correct[t]`` for ``t = first .. end - 1`` from a step's reduced ``loss_hits``.

    ``loss_hits[2 (t - first)]`` and the element after it. Returns the first
    ``t`` whose loss sum is not finite (its correct count not written), or -1.
    """
    for t in range(first, end):
        loss_sums[t] = loss_hits[2 * (t - first)]
        if not np.isfinite(loss_sums[t]):
            return t
        correct[t] = int(loss_hits[2 * (t - first) + 1])
    return -1


@jit
def add_rows(rows: np.ndarray, total: np.ndarray, wide: np.ndarray) -> None:
    """``total[j] <- ((rows[0, j] + rows[1, j]) + ...)`` in ``wide``'s dtype, rounded to ``total``'s.

    The twin of :func:`scratchgd.distributed.add_rows`: each element's
    additions in rank order in ``wide`` (the accumulator), then one rounding,
    the same bits. Row by row, so that every loop runs over contiguous
    elements and vectorizes; with two rows (P = 2, the common case on one
    machine) one pass, ``total[j] = rows[0, j] + rows[1, j]`` (what that
    saves: docs/distributed.md, "Measured").
    """
    t = wide.dtype.type
    n = total.size
    first = rows[0]
    if rows.shape[0] == 1:
        for j in range(n):
            total[j] = first[j]
        return
    second = rows[1]
    if rows.shape[0] == 2:
        for j in range(n):
            total[j] = t(first[j]) + t(second[j])
        return
    for j in range(n):
        wide[j] = t(first[j]) + t(second[j])
    for p in range(2, rows.shape[0]):
        row = rows[p]
        for j in range(n):
            wide[j] += t(row[j])
    for j in range(n):
        total[j] = wide[j]


def train_iterations_parallel(params: list[np.ndarray], velocity: list[np.ndarray] | None,
                      X: np.ndarray, y: np.ndarray, order: np.ndarray | None,
                      bounds: np.ndarray, shards: np.ndarray, start: int, stop: int, k: int,
                      lr: float, momentum: float, activation: str, loss: str,
                      reducer: Callable[..., Reducer],
                      sum_dtype: type = np.float64, scaling: Scaling | None = None
                      ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Run iterations ``[start, stop)`` of an epoch with :func:`train_iterations_parallel_kernel`.

    As :func:`~.span.train_iterations`, with this rank's shards of the span's batches
    (``shards``: ``(stop - start, 2)`` positions ``[lo, hi)`` into ``order``,
    from :func:`scratchgd.distributed.shard`) and a collective between steps:
    ``reducer(n, m, dtype, sum_dtype, add_rows)``
    (:meth:`scratchgd.distributed.Group.reducer`, called once per span on
    every rank) gives the buffers of the ``n`` parameters' gradient sums (the
    model's ``dtype``) and of ``m = 2 min(k, iterations per epoch)`` loss
    sums and correct counts, and calling it sums every rank's into the
    totals. ``sum_dtype``: float64, or float32 for a float32 model.

    Returns ``(loss_sums, correct, steps, status)`` as :func:`~.span.train_iterations`
    (every rank the same). An exception of the collective is re-raised, the
    weights those before the step it was part of (and the reducer is not
    closed: closing is collective, and the other ranks may not get there).
    """
    dtype = params[0].dtype
    size = sum(p.size for p in params)
    collective = reducer(size, 2 * min(k, len(bounds) - 1), dtype, sum_dtype, add_rows)
    grads, sums = views_like(collective.send, params), views_like(collective.total, params)
    lo = np.ascontiguousarray(shards[:, 0], dtype=np.int64)
    counts = np.ascontiguousarray(shards[:, 1] - shards[:, 0], dtype=np.int64)
    widest = int(counts.max(initial=0))
    if order is None:
        order = np.arange(bounds[-1])
    X, x_format, labels, targets = span_input(X, y, loss, dtype)
    Ws, bs = tuple(params[0::2]), tuple(params[1::2])
    vWs, vbs = (None, None) if velocity is None else (tuple(velocity[0::2]), tuple(velocity[1::2]))
    mean, inv_std = scaling_inputs(scaling)
    loss_sums = np.zeros(stop - start)
    correct = np.zeros(stop - start, dtype=np.int64)
    key = next(_keys)
    _collectives[key] = collective
    try:
        with blas_limit(use_blas(widest), widest, Ws):
            done, steps, status = train_iterations_parallel_kernel(
                Ws, bs, vWs, vbs, X, x_format, labels, targets,
                np.ascontiguousarray(order, dtype=np.int64),
                np.ascontiguousarray(bounds, dtype=np.int64), lo, counts, start, stop, k,
                float(lr), float(momentum), activation_code(activation), loss_code(loss),
                tuple(grads[0::2]), tuple(grads[1::2]), collective.send_extra,
                tuple(sums[0::2]), tuple(sums[1::2]), collective.total_extra, CALLBACK, key,
                loss_sums, correct, mean, inv_std)
    finally:
        del _collectives[key]
    if status == COLLECTIVE_FAILED:
        raise _failures.pop(key)
    collective.close()
    return loss_sums[:done + (status == LOSS_NOT_FINITE)], correct[:done], steps, status
