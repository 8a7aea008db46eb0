"""The one interface of the engines: run a span of the training cycle.

:func:`scratchgd.fit` cuts every epoch into spans of whole training steps and
hands each to its engine, chosen once per run (:func:`scratchgd.engines.choose`).
For the iterations ``at.iteration + 1 .. stop`` of the epoch ``at.epoch``, an
engine runs the article's cycle::

    draw a batch (rows at.order[...]) -> predict -> loss -> gradients
        -> accumulate -> (every k iterations, and at the epoch's end) update the weights

and advances ``at`` (iteration, the epoch's loss sum and correct count) and
``history`` (iterations, samples seen, steps, the per-iteration losses)
exactly as the others do: the engines differ in where the arithmetic runs, not
in what it computes. ``stop`` is a step boundary, so a span ends with nothing
half-accumulated. A loss or an update that is not finite raises
:class:`~scratchgd.TrainingDiverged` with the last finite weights kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import ModuleType

import numpy as np

from ..data import DataLoader
from ..errors import TrainingDiverged
from ..history import History, Position
from ..mlp import MLP
from ..optim import Optimizer


class Engine:
    """Runs spans of the training cycle of one run.

    Parameters
    ----------
    model, optimizer, loader
        What the run trains, how it steps, what it draws batches from.
    y : array
        ``loader.dataset``'s labels or targets as the loss takes them
        (:meth:`scratchgd.MLP.check_y`).
    k : int
        Iterations per training step (``fit``'s ``accumulate``, ``"epoch"``
        resolved to the epoch's iterations).
    kernels : module or None
        The kernels the engine computes with (``kernels.reference`` when the
        compiled engines fall back, see :func:`scratchgd.engines.choose`);
        ``None``: the model's own.
    """

    def __init__(self, model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                 k: int, kernels: ModuleType | None = None) -> None:
        self.model, self.optimizer, self.loader, self.y, self.k = model, optimizer, loader, y, k
        self.kernels = model.kernels if kernels is None else kernels

    def start(self) -> None:
        """Called once, at the start of the run, before a checkpoint is resumed."""

    def running(self) -> contextlib.AbstractContextManager:
        """The context the run's spans execute in, entered once for the whole run (none here)."""
        return contextlib.nullcontext()

    def run_span(self, at: Position, stop: int, history: History,
                 advance: Callable[[int], object]) -> None:
        """Iterations ``at.iteration + 1 .. stop`` of the epoch, ``stop`` a step boundary.

        ``advance(n)`` is called as ``n`` more iterations are done (the progress bar).
        """
        raise NotImplementedError

    def loss_not_finite(self, at: Position, loss: float, history: History) -> TrainingDiverged:
        """The error of a run whose batch mean loss ``loss`` (at ``at``) is not finite."""
        return self._diverged(at, loss, history, "is not finite")

    def update_not_finite(self, at: Position, loss: float, history: History) -> TrainingDiverged:
        """The error of a run whose step after the batch loss ``loss`` would leave non-finite weights."""
        return self._diverged(at, loss, history,
                              "leads to an update that would make the weights non-finite")

    def _diverged(self, at: Position, loss: float, history: History,
                  what: str) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged at epoch {at.epoch}, iteration {at.iteration}: the batch loss "
            f"{loss:.6g} {what}. The model keeps its last finite weights; try a smaller "
            f"learning rate than lr={self.optimizer.lr:g}.", epoch=at.epoch,
            iteration=at.iteration, loss=loss, history=history)
