"""The reference engine: the training cycle in Python, one batch at a time.

Read this one first: every step of the article's cycle is a numbered line
below, and an iteration is literally one item of the data loader
(:meth:`scratchgd.DataLoader.batches`). The backend's ``loss_and_grads`` does
the arithmetic (NumPy for ``backend="numpy"``, and for ``"numba"`` when the
compiled engines fall back, see :func:`scratchgd.engines.choose`; compiled for
``"numba"`` when ``fit(track_noise=True)`` needs per-example gradient norms);
the loop, the accumulation and the update are here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

import numpy as np

from ..data import DataLoader
from ..errors import TrainingDiverged
from ..history import History, Position
from ..mlp import MLP
from ..noise import RowNorms
from ..optim import Optimizer
from .base import Engine


class BatchObserver(Protocol):
    """Sees every batch's gradient sum and per-example squared gradient norms (track_noise)."""

    def add(self, grads: list[np.ndarray], sq_norms: np.ndarray) -> None: ...


class PythonEngine(Engine):
    """The training cycle as a Python loop over batches (see :class:`~.base.Engine`).

    ``noise``: an observer of every batch's gradients and per-example squared
    gradient norms ``|grad l_i|^2`` (``fit(track_noise=True)``,
    :class:`scratchgd.hooks.NoiseTracker`), or ``None``.
    """

    def __init__(self, model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                 k: int, noise: BatchObserver | None = None,
                 kernels: ModuleType | None = None) -> None:
        super().__init__(model, optimizer, loader, y, k, kernels)
        self.noise = noise

    def run_span(self, at: Position, stop: int, history: History,
                 advance: Callable[[int], object]) -> None:
        model, optimizer, loader, y, k = self.model, self.optimizer, self.loader, self.y, self.k
        grad_sum, rows = None, 0
        last = len(loader)
        # 1. draw a batch: an item of the loader (the batches of ``for X, y in loader``,
        #    from iteration at.iteration on); only its rows are read. The network's input
        #    is those rows scaled if the model scales its inputs, in the model's dtype
        #    (rows drawn by an index array are a fresh copy, scaled in place)
        for X_rows, y_batch in loader.batches(at.order, at.iteration, stop, y):
            at.iteration += 1
            X_batch = model.inputs(X_rows, fresh=at.order is not None)
            # 2-4. predict, loss, gradients: sums over the rows of the batch
            norms = None if self.noise is None else RowNorms(len(X_batch), self.kernels)
            batch_loss, grads, z = self.kernels.loss_and_grads(
                model.params, X_batch, y_batch, model.activation, model.loss, norms)
            batch_loss = float(batch_loss)
            if not math.isfinite(batch_loss):
                raise self.loss_not_finite(at, batch_loss / len(X_batch), history)
            if self.noise is not None:  # |grad l_i|^2 of every row, from the backward pass
                self.noise.add(grads, norms.sq_norms)
            # 5. accumulate gradient sums and row counts
            if grad_sum is None:
                grad_sum = grads
            else:
                for total, g in zip(grad_sum, grads, strict=True):
                    total += g
            rows += len(X_batch)
            at.loss_sum += batch_loss
            if model.classifier:
                at.correct += int(np.count_nonzero(z.argmax(axis=1) == y_batch))
            history.iterations += 1
            history.samples_seen += len(X_batch)
            history.iteration_loss.append(batch_loss / len(X_batch))
            advance(1)
            # 6. a training step every k iterations, and at the end of the epoch, with the
            #    mean gradient g = grad_sum / rows (one row's sum is its own mean: SGD divides
            #    nothing)
            if at.iteration % k == 0 or at.iteration == last:
                try:
                    optimizer.step(model.params,
                                   grad_sum if rows == 1 else [g / rows for g in grad_sum])
                except TrainingDiverged:
                    raise self.update_not_finite(at, batch_loss / len(X_batch), history) from None
                history.steps += 1
                grad_sum, rows = None, 0
