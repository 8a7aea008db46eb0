"""The compiled engine (backend "numba"): many iterations of the cycle per kernel call.

The cycle of :mod:`scratchgd.engines.python`, run by
``kernels.compiled.train_iterations``: one call draws the batches of ``at.order``,
predicts, backpropagates, accumulates and steps exactly as the Python loop
does, and hands back every batch's loss sum and correct count; the engine then
advances ``history`` and ``at`` as the Python loop advances them, batch by
batch. A span of :func:`scratchgd.fit` is cut into kernel calls of about
``CALL_ROWS`` rows each (:func:`kernel_calls`), so the progress bar moves
every few milliseconds. ("Span" names only what ``fit`` hands an engine,
:meth:`~.base.Engine.run_span`; a kernel call runs part of one.)
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..history import History, Position
from .base import Engine

if TYPE_CHECKING:  # the compiled kernels (numba) are imported only when a model asks for them
    from ..kernels.compiled import SpanInputs

CALL_ROWS = 16384
"""Rows per call of the compiled training kernel (backend "numba"), about."""


def kernel_calls(first: int, stop: int, k: int, rows_per_batch: int
                 ) -> Iterator[tuple[int, int]]:
    """Cut iterations ``[first, stop)`` of an epoch into kernel calls of whole training steps.

    Every call ``[start, end)`` but the last holds a multiple of ``k``
    iterations and about ``CALL_ROWS`` rows (at least ``k`` iterations), so
    with ``first`` on a step boundary every call starts on one, and the
    progress bar moves every few milliseconds.
    """
    size = k * max(1, CALL_ROWS // (k * rows_per_batch))
    for start in range(first, stop, size):
        yield start, min(start + size, stop)


class CompiledEngine(Engine):
    """The training cycle in compiled code: a span cut into :func:`kernel_calls`."""

    def start(self) -> None:
        """A fresh cache of the epochs' batch bounds (by the length of their row order) and
        of the kernels' inputs."""
        super().start()
        self.bounds: dict[int | None, tuple[np.ndarray, list[int]]] = {}
        self.inputs: tuple[np.ndarray, SpanInputs] | None = None

    def running(self) -> contextlib.AbstractContextManager:
        """BLAS on the threads the run's batches call for (``kernels.blas_limit``), set once.

        Each kernel call sets and restores them too, but inside this context
        it finds them set and does nothing.
        """
        kernels, rows = self.model.kernels, self.loader.rows_per_batch
        return kernels.blas_limit(kernels.use_blas(rows), rows, tuple(self.model.params[0::2]))

    def run_span(self, at: Position, stop: int, history: History,
                 advance: Callable[[int], object]) -> None:
        kernels = self.model.kernels
        bounds, sizes = self._bounds(at.order)
        for start, end in kernel_calls(at.iteration, stop, self.k, self.loader.rows_per_batch):
            loss_sums, hits, steps, status = self.run_kernel(at.order, bounds, start, end)
            done = len(hits)
            losses = loss_sums[:done].tolist()
            at.iteration += done
            history.iterations += done
            history.samples_seen += int(bounds[start + done] - bounds[start])
            history.steps += steps
            history.iteration_loss.extend(map(operator.truediv, losses, sizes[start:start + done]))
            # one addition each, left to right, as the Python engine (sum() compensates on 3.12+)
            at.loss_sum = functools.reduce(operator.add, losses, at.loss_sum)
            at.correct += sum(hits.tolist())
            advance(done)
            if status == kernels.LOSS_NOT_FINITE:
                at.iteration += 1
                raise self.loss_not_finite(at, loss_sums[done] / sizes[start + done], history)
            if status == kernels.UPDATE_NOT_FINITE:
                raise self.update_not_finite(at, losses[-1] / sizes[start + done - 1], history)

    def _bounds(self, order: np.ndarray | None) -> tuple[np.ndarray, list[int]]:
        """``loader.batch_bounds(order)`` and the batches' sizes, made once per run: every
        epoch's order has one length."""
        length = None if order is None else len(order)
        if length not in self.bounds:
            bounds = self.loader.batch_bounds(order)
            self.bounds[length] = bounds, np.diff(bounds).tolist()
        return self.bounds[length]

    def run_kernel(self, order: np.ndarray | None, bounds: np.ndarray, start: int, end: int
                 ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Iterations ``[start, end)`` in one call of ``kernels.compiled.train_iterations``.

        Its inputs (``kernels.span_inputs``: the weights as the kernel takes them,
        the data set's compiled layout, ...) are prepared on the run's first call
        and again only if the weights or momentum buffers were replaced since.
        """
        model, optimizer, kernels = self.model, self.optimizer, self.model.kernels
        velocity = optimizer.buffers(model.params) if optimizer.momentum else None
        if self.inputs is None or self.inputs[0] is not bounds or not (
                _same(self.inputs[1].params, model.params)
                and _same(self.inputs[1].velocity, velocity)):
            self.inputs = bounds, kernels.span_inputs(
                model.params, velocity, self.loader.dataset.X, self.y, bounds, self.k,
                model.activation, model.loss, scaling=model.scaling)
        return kernels.run_iterations(self.inputs[1], order, bounds, start, end, self.k,
                                      optimizer.lr, optimizer.momentum)


def _same(held: list | None, arrays: list | None) -> bool:
    """Whether ``held`` are the very arrays of ``arrays`` (or both are ``None``)."""
    if held is None or arrays is None:
        return held is arrays
    return len(held) == len(arrays) and all(map(operator.is_, held, arrays))
