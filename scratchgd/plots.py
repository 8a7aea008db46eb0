"""Figures of training runs (matplotlib; the Agg backend when there is no display)."""

from __future__ import annotations

import math
import os

import matplotlib

if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .train import History  # noqa: E402


def plot_history(history: History, path: str | os.PathLike | None = None,
                 title: str | None = None) -> Figure:
    """Loss and accuracy curves of one run: a figure of two panels.

    Left: the batch loss of every iteration (faint), the epoch loss and, if
    recorded, the validation loss, against epochs. Right: training and
    validation accuracy against epochs (classification only). Saved to
    ``path`` when given.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, history.epochs + 1)
    if history.iterations:
        x = [(t + 1) / history.iterations * history.epochs for t in range(history.iterations)]
        ax_loss.plot(x, history.iteration_loss, color="0.75", lw=0.6, label="batch loss")
    ax_loss.plot(epochs, history.epoch_loss, "o-", label="train (epoch)")
    if history.val_loss:
        ax_loss.plot(epochs, history.val_loss, "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    ax_loss.legend()
    if any(not math.isnan(a) for a in history.epoch_accuracy):
        ax_acc.plot(epochs, history.epoch_accuracy, "o-", label="train")
        if history.val_accuracy:
            ax_acc.plot(epochs, history.val_accuracy, "s-", label="validation")
        ax_acc.legend()
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
