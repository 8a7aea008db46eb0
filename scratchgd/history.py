"""What a training run records and where it stands.

:class:`History` is what :func:`scratchgd.fit` returns: counters, per-iteration
and per-epoch figures. :class:`Position` is where a run stands inside an epoch,
with the epoch's running sums; the engines advance both, and a checkpoint
stores both (:mod:`scratchgd.checkpoint`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np


@dataclass
class History:
    """What happened during :func:`fit`.

    Counters: ``epochs`` (full passes over the data), ``iterations`` (batches
    drawn: forward + backward passes), ``steps`` (weight updates) and
    ``samples_seen`` (rows drawn, counting repeats).

    ``iteration_loss[t]`` is the mean loss of the ``t``-th batch, before the
    update it leads to. ``epoch_loss`` and ``epoch_accuracy`` are the training
    figures of each epoch weighted by batch length, ``sum(batch loss sums) / n``,
    measured on the fly while the weights change; ``val_loss`` and
    ``val_accuracy`` (and for mse ``val_r2``, R^2 averaged over the outputs;
    empty for cross_entropy) are measured on the validation set after each
    epoch; once one epoch is validated they hold one value per epoch, NaN for
    an epoch trained without validation (a run resumed with or without it). With a target
    scaling (mse) the losses are in its scaled units, the units the network
    is trained in; R^2 does not depend on them.
    ``epoch_seconds`` times each epoch's training pass (validation excluded).
    ``steps_at_epoch_end``, ``iterations_at_epoch_end`` and
    ``samples_at_epoch_end`` give the counters after each epoch, for plotting
    against steps. Accuracies are NaN for mse.
    ``b_simple`` (with ``fit(track_noise=True)``, else empty) holds each epoch's
    estimate of the gradient noise scale from its own batches (see :func:`fit`).
    """

    epochs: int = 0
    iterations: int = 0
    steps: int = 0
    samples_seen: int = 0
    iteration_loss: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    steps_at_epoch_end: list[int] = field(default_factory=list)
    iterations_at_epoch_end: list[int] = field(default_factory=list)
    b_simple: list[float] = field(default_factory=list)
    samples_at_epoch_end: list[int] = field(default_factory=list)
    val_r2: list[float] = field(default_factory=list)

    COLUMNS = ("epoch", "iterations", "steps", "samples", "loss", "accuracy", "val_loss",
               "val_accuracy", "val_r2", "seconds")
    """The per-epoch columns of :meth:`to_dict` and :meth:`to_csv`."""

    def to_dict(self) -> dict[str, list]:
        """The per-epoch table: one list per column of ``COLUMNS``, one item per epoch.

        ``iterations``, ``steps`` and ``samples`` are the counters at the end of
        each epoch; ``val_loss``, ``val_accuracy`` and ``val_r2`` are NaN
        without validation (accuracies are NaN for mse, ``val_r2`` for
        cross_entropy). ``pandas.DataFrame(history.to_dict())``
        makes it a data frame.
        """
        nan = [math.nan] * self.epochs
        return {"epoch": list(range(1, self.epochs + 1)),
                "iterations": list(self.iterations_at_epoch_end),
                "steps": list(self.steps_at_epoch_end),
                "samples": list(self.samples_at_epoch_end),
                "loss": list(self.epoch_loss), "accuracy": list(self.epoch_accuracy),
                "val_loss": list(self.val_loss) or nan,
                "val_accuracy": list(self.val_accuracy) or nan,
                "val_r2": list(self.val_r2) or nan,
                "seconds": list(self.epoch_seconds)}

    def csv_rows(self, first: int = 1) -> list[str]:
        """Lines of the CSV table of :meth:`to_dict` for epochs ``first`` onwards (no header)."""
        table = self.to_dict()
        return [",".join(str(int(table[c][e])) if c in self.COLUMNS[:4]
                         else repr(float(table[c][e])) for c in self.COLUMNS) + "\n"
                for e in range(first - 1, self.epochs)]

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` to ``path`` as CSV: a header line, then one row per epoch.

        Floats are written with ``repr``, so they read back exactly.
        """
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(",".join(self.COLUMNS) + "\n")
            fh.writelines(self.csv_rows())


@dataclass
class Position:
    """Where a run stands: in epoch ``epoch`` (1-based), ``iteration`` batches done.

    ``order`` is the epoch's row order (``DataLoader.epoch_order``), drawn when
    the epoch starts; ``loss_sum`` and ``correct`` are the epoch's running sums.
    A checkpoint stores this, always at a step boundary.
    """

    epoch: int = 1
    iteration: int = 0
    order: np.ndarray | None = None
    loss_sum: float = 0.0
    correct: int = 0

    def next_epoch(self) -> Position:
        """The position at the start of the epoch after this one."""
        return Position(epoch=self.epoch + 1)


def epoch_line(history: History, epochs: int) -> str:
    """The line ``fit(progress=True)`` prints when an epoch ends: its figures and seconds."""
    width = len(str(epochs))
    line = (f"epoch {history.epochs:>{width}}/{epochs}  loss {history.epoch_loss[-1]:.4f}")
    if not math.isnan(history.epoch_accuracy[-1]):
        line += f"  acc {history.epoch_accuracy[-1]:.4f}"
    if history.val_loss and not math.isnan(history.val_loss[-1]):  # NaN: not validated
        line += f"  val_loss {history.val_loss[-1]:.4f}"
        if not math.isnan(history.val_accuracy[-1]):
            line += f"  val_acc {history.val_accuracy[-1]:.4f}"
        if history.val_r2:
            line += f"  val_R^2 {history.val_r2[-1]:.4f}"
    if history.b_simple:
        line += f"  B_simple {history.b_simple[-1]:.4g}"
    return line + f"  {history.epoch_seconds[-1]:.3f}s"
