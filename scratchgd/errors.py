"""Exceptions of scratchgd."""

from __future__ import annotations

from typing import Any


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss, gradient or weight and was stopped.

    The model keeps the last weights that were finite. The usual cure is a
    smaller learning rate.

    Attributes
    ----------
    epoch, iteration : int or None
        Where it happened (1-based), when raised by :func:`scratchgd.fit`.
    loss : float or None
        The batch's mean loss at that iteration.
    history : History or None
        What :func:`scratchgd.fit` recorded up to that iteration.
    """

    def __init__(self, message: str, epoch: int | None = None, iteration: int | None = None,
                 loss: float | None = None, history: Any = None) -> None:
        super().__init__(message)
        self.epoch, self.iteration, self.loss, self.history = epoch, iteration, loss, history


class StopTraining(Exception):
    """Raised by a hook of :func:`scratchgd.fit` to end the run where it stands.

    A :class:`scratchgd.hooks.Hook` raises it from ``end_of_span`` or
    ``end_of_epoch`` (so always at a training-step boundary); ``fit`` calls
    the remaining hooks of that point, finishes the epoch if its last step was
    taken, and returns the :class:`~scratchgd.History` so far: its counters and
    ``iteration_loss`` up to that step, its per-epoch lists for the epochs
    finished. The model keeps the weights of that step.
    """


class CompiledFallbackWarning(UserWarning):
    """``backend="numba"`` met something its compiled code does not implement exactly.

    An optimizer that overrides ``Optimizer.step``, ``buffers`` or ``reset``; a
    data loader that overrides how batches are drawn; an activation or loss
    without a compiled twin. The model or the run then uses the NumPy reference
    kernels (:func:`scratchgd.fit`: the Python engine on them), so the weights
    are those of ``backend="numpy"``, bit for bit; the message says why. Turn
    it into an error with ``warnings.simplefilter("error", CompiledFallbackWarning)``.
    """
