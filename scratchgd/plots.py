"""Figures of training runs (matplotlib; the Agg backend when there is no display).

:func:`plot_history` draws one run. The other functions draw the figures of
the demos in ``demos/``, one per idea of the article, in its conventions: the
average loss in red; GD solid, SGD dotted, mini-batch SGD dashed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import matplotlib

if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .history import History  # noqa: E402


def plot_history(history: History, path: str | os.PathLike | None = None,
                 title: str | None = None) -> Figure:
    """Loss and accuracy (or R^2) curves of one run: a figure of two panels.

    Left: the batch loss of every iteration (faint), the epoch loss and, if
    recorded, the validation loss, against epochs. Right: training and
    validation accuracy against epochs (classification), or for a regressor
    validated every epoch, ``history.val_r2``. Saved to ``path`` when given.
    """
    fig, (ax_loss, ax_right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, history.epochs + 1)
    if history.iterations:
        x = [(t + 1) / history.iterations * history.epochs for t in range(history.iterations)]
        ax_loss.plot(x, history.iteration_loss, color="0.75", lw=0.6, label="batch loss")
    ax_loss.plot(epochs, history.epoch_loss, "o-", label="train (epoch)")
    if history.val_loss:
        ax_loss.plot(epochs, history.val_loss, "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    ax_loss.legend()
    if history.val_r2:
        ax_right.plot(epochs, history.val_r2, "s-", color="C1", label="validation")
        ax_right.axhline(0.0, color="0.6", lw=0.8)
        ax_right.legend()
        ax_right.set(xlabel="epoch", ylabel="R^2", title="R^2 (mean over outputs)")
        return _finish(fig, path, title)
    if any(not math.isnan(a) for a in history.epoch_accuracy):
        ax_right.plot(epochs, history.epoch_accuracy, "o-", label="train")
        if history.val_accuracy:
            ax_right.plot(epochs, history.val_accuracy, "s-", label="validation")
        ax_right.legend()
    ax_right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    return _finish(fig, path, title)


# The article's conventions: the average loss in red; GD solid, SGD dotted, mini-batch dashed.
AVERAGE_COLOR = "red"
LINESTYLE = {"GD": "-", "SGD": ":", "mini-batch": "--"}
DPI = 100


def linestyle(label: str) -> str:
    """The article's line style for a run whose label starts with GD, SGD or mini-batch."""
    for prefix, style in LINESTYLE.items():
        if label.startswith(prefix):
            return style
    return "-."


def _finish(fig: Figure, path: str | os.PathLike | None, title: str | None) -> Figure:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig


def plot_three_losses(w: np.ndarray, losses: np.ndarray, paths: dict[str, np.ndarray],
                      w_star: float, path: str | os.PathLike | None = None,
                      title: str | None = None) -> Figure:
    """The article's first figure: per-sample losses, their average, and the iterates on it.

    Left: ``f_i(w)`` for every column of ``losses: (m, n)`` over the grid
    ``w: (m,)``, their average ``L(w) = (1/n) sum_i f_i(w)`` in red, and the
    iterates ``w_t`` of each run in ``paths`` (label -> ``(T,)``) drawn on it
    at ``(w_t, L(w_t))`` (for SGD runs only the last half, where they
    settle). Right: ``w_t`` against the training step, with the minimum
    ``w_star`` of ``L`` as a horizontal line.
    """
    fig, (ax_f, ax_w) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i in range(losses.shape[1]):
        ax_f.plot(w, losses[:, i], lw=1.2, label=f"$f_{i + 1}$")
    average = losses.mean(axis=1)
    ax_f.plot(w, average, color=AVERAGE_COLOR, lw=2.5, label="average $L$", zorder=1)
    ax_f.axvline(w_star, color=AVERAGE_COLOR, lw=0.8, ls="--")
    runs = zip(paths.items(), ("black", "tab:purple", "tab:cyan"), ("o", "v", "^"), strict=False)
    for (label, w_t), color, marker in runs:
        shown = w_t if label.startswith("GD") else w_t[len(w_t) // 2:]
        ax_f.plot(shown, np.interp(shown, w, average), ls="none", marker=marker, ms=4,
                  color=color, alpha=0.7,
                  label=label if label.startswith("GD") else f"{label} (last half)")
        ax_w.plot(np.arange(len(w_t)), w_t, ls=linestyle(label), color=color, lw=1.4, label=label)
    top = 1.6 * np.quantile(losses, 0.6)
    ax_f.set(xlabel="weight $w$", ylabel="loss", ylim=(-0.05 * top, top),
             title=f"per-sample losses $f_i$ and their average (minimum at $w$ = {w_star:.2f})")
    ax_f.legend(fontsize=8, loc="upper right", ncol=2)
    ax_w.axhline(w_star, color=AVERAGE_COLOR, lw=1, label=f"minimum of $L$ ({w_star:.2f})")
    ax_w.set(xlabel="training step", ylabel="weight $w$", title="iterates against training steps")
    ax_w.legend(fontsize=8)
    return _finish(fig, path, title)


def plot_loss_paths(loss: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    extent: tuple[float, float, float, float], paths: dict[str, np.ndarray],
                    optimum: tuple[float, float], path: str | os.PathLike | None = None,
                    title: str | None = None, points: int = 200) -> Figure:
    """The article's second figure: optimizer paths over the contour lines of the full loss.

    ``loss(w, b)`` is the full loss on grids of one shape (``np.meshgrid``);
    ``extent = (w_min, w_max, b_min, b_max)`` is the left panel's window;
    ``paths`` maps a label to the ``(T, 2)`` array of ``(w_t, b_t)``. All paths
    should share their first row; each end is marked with an ``x`` drawn over
    the minimum's hollow star (the first path's on top), so an end at the
    minimum stays visible, and its legend entry gives its distance to the
    minimum. Left: the whole window. Right: a square around the minimum just
    large enough to hold every end.
    Each panel draws its contour lines from a grid of its own, ``points`` by
    ``points``, so the zoomed one is as smooth as the whole.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    first = next(iter(paths.values()))[0]
    zoom = 1.3 * max(np.abs(p[-1] - optimum).max() for p in paths.values())
    windows = (extent, (optimum[0] - zoom, optimum[0] + zoom, optimum[1] - zoom, optimum[1] + zoom))
    for ax, (w0, w1, b0, b1) in zip(axes, windows, strict=True):
        w, b = np.meshgrid(np.linspace(w0, w1, points), np.linspace(b0, b1, points))
        surface = loss(w, b)
        levels = np.quantile(surface, np.linspace(0, 1, 30) ** 3)[1:]
        ax.contour(w, b, surface, levels=levels, colors="0.6", linewidths=0.6)
        ax.plot(*optimum, "*", mfc="none", mec=AVERAGE_COLOR, ms=22, mew=1.8,
                label="minimum of $L$", zorder=4)
        for i, ((label, p), color) in enumerate(zip(paths.items(), ("tab:blue", "tab:orange",
                                                                    "tab:green"), strict=False)):
            ax.plot(p[:, 0], p[:, 1], ls=linestyle(label), lw=1.8, color=color, label=label)
            distance = float(np.linalg.norm(p[-1] - optimum))
            ax.plot(*p[-1], "X", color=color, ms=10, mec="black", mew=0.8, zorder=9 - i,
                    label=f"end of {label.split()[0]}, {distance:.2g} from the minimum")
        ax.set(xlim=(w0, w1), ylim=(b0, b1), xlabel="weight $w$", ylabel="bias $b$")
    axes[0].plot(*first, "o", color="black", ms=7, label="start")
    axes[0].set_title("contour lines of the full loss $L(w, b)$")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[1].set_title("close to the minimum: where each run ends")
    return _finish(fig, path, title)


def plot_epochs(history: History, best_epoch: int, path: str | os.PathLike | None = None,
                title: str | None = None) -> Figure:
    """:func:`plot_history` with the epoch of the best validation accuracy marked."""
    fig = plot_history(history, title=title)
    for ax in fig.axes:
        ax.axvline(best_epoch, color="0.4", ls="--", lw=1,
                   label=f"best validation accuracy (epoch {best_epoch})")
    fig.axes[1].legend(fontsize=8)
    return _finish(fig, path, None)


def plot_batch_sweep(runs: dict[str, History], path: str | os.PathLike | None = None,
                     title: str | None = None) -> Figure:
    """Loss after every epoch against epochs, training steps and seconds, one line per run.

    ``runs`` maps a label (``"SGD (b=1)"``, ``"mini-batch b=32"``, ``"GD (full)"``)
    to a :class:`History` whose ``val_loss`` is the loss to draw, measured after
    each epoch (GD in black). The x axes are ``epochs``, ``steps_at_epoch_end`` and the
    cumulative ``epoch_seconds``.
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.92, len(runs)))
    for (label, h), color in zip(runs.items(), colors, strict=True):
        color = "black" if label.startswith("GD") else color
        style = {"ls": linestyle(label), "color": color, "lw": 1.6, "label": label}
        axes[0].plot(range(1, h.epochs + 1), h.val_loss, **style)
        axes[1].plot(h.steps_at_epoch_end, h.val_loss, **style)
        axes[2].plot(np.cumsum(h.epoch_seconds), h.val_loss, **style)
    axes[0].set(xlabel="epoch", ylabel="training loss (whole set, after each epoch)",
                yscale="log", title="against epochs")
    axes[1].set(xlabel="training steps", xscale="log", title="against training steps")
    axes[2].set(xlabel="seconds", xscale="log", title="against wall-clock time")
    axes[2].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_throughput(batch_sizes: list[int], throughput: dict[str, np.ndarray],
                    interval: tuple[float, float] | None = None,
                    path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """Samples per second of a training step against batch size, one line per backend.

    ``throughput`` maps a label to the median throughput at each batch size.
    Runs of consecutive sizes (``31, 32, 33``) are drawn side by side with a
    gap between runs, powers of two on grey. Right: for every power of two
    ``p`` present with both neighbours, the ratio of its throughput to the mean
    of those at ``p - 1`` and ``p + 1`` (1 = no advantage), with ``interval``
    (a 95% interval of their mean) as a band when given.
    """
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.5),
                                       gridspec_kw={"width_ratios": [3, 2]})
    sizes = np.asarray(batch_sizes)
    group = np.concatenate([[0], np.cumsum(np.diff(sizes) != 1)])
    x = np.arange(len(sizes)) + group
    powers = [int(p) for p in sizes if p & (p - 1) == 0 and p - 1 in sizes and p + 1 in sizes]
    for p in powers:
        ax.axvline(x[sizes == p][0], color="0.88", lw=12, zorder=0)
    width = 0.8 / max(len(throughput), 1)
    for j, (label, rate) in enumerate(throughput.items()):
        color = f"C{j}"
        for g in np.unique(group):
            ax.plot(x[group == g], rate[group == g], "o-", ms=5, color=color,
                    label=label if g == 0 else None)
        ratios = [throughput_ratio(sizes, rate, p) for p in powers]
        ax_ratio.bar(np.arange(len(powers)) + (j - (len(throughput) - 1) / 2) * width, ratios,
                     width, color=color, label=label)
    ax.set_xticks(x, [str(b) for b in sizes], fontsize=8)
    ax.set(xlabel="batch size (grey: powers of two)", ylabel="samples / second",
           title="throughput of training steps (median of repeats)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax_ratio.axhline(1.0, color="black", lw=1)
    if interval is not None:
        ax_ratio.axhspan(*interval, color="0.85", zorder=0, label="95% interval of the mean ratio")
    ax_ratio.set_xticks(range(len(powers)), [str(p) for p in powers])
    ax_ratio.set(xlabel="power of two $p$", ylabel="throughput(p) / mean(p-1, p+1)",
                 title="is the power of two faster than its neighbours?")
    ax_ratio.set_ylim(0.75, 1.25)
    ax_ratio.legend(fontsize=8, loc="upper left")
    return _finish(fig, path, title)


def throughput_ratio(batch_sizes: np.ndarray, rate: np.ndarray, p: int) -> float:
    """``rate(p) / ((rate(p - 1) + rate(p + 1)) / 2)`` for batch sizes that hold all three."""
    at = {int(b): r for b, r in zip(batch_sizes, rate, strict=True)}
    return float(at[p] / ((at[p - 1] + at[p + 1]) / 2))


def plot_accumulation(iteration_loss: dict[str, np.ndarray], step_loss: dict[str, np.ndarray],
                      max_difference: float, path: str | os.PathLike | None = None,
                      title: str | None = None) -> Figure:
    """Loss against iterations (left) and against training steps (right) of two runs.

    ``iteration_loss`` maps a label to the batch loss of every iteration,
    ``step_loss`` to the loss of the rows behind every training step. Runs that
    take the same steps coincide on the right and not on the left.
    """
    fig, (ax_it, ax_st) = plt.subplots(1, 2, figsize=(12, 4.3), sharey=True)
    for (label, loss), ls in zip(iteration_loss.items(), ("-", "--"), strict=False):
        ax_it.plot(np.arange(1, len(loss) + 1), loss, ls=ls, lw=1, label=label)
    for (label, loss), (ls, lw) in zip(step_loss.items(), (("-", 3), ("--", 1.3)), strict=False):
        ax_st.plot(np.arange(1, len(loss) + 1), loss, ls=ls, lw=lw, label=label)
    counts = " vs ".join(str(len(loss)) for loss in iteration_loss.values())
    ax_it.set(xlabel="iteration (forward + backward pass)", ylabel="loss", yscale="log",
              title=f"against iterations: {counts} iterations")
    ax_st.set(xlabel="training step (weight update)",
              title=f"against steps: the same run (max weight difference {max_difference:.1e})")
    for ax in (ax_it, ax_st):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_memory(batch_sizes: np.ndarray, measured: np.ndarray, estimated: np.ndarray,
                chunks: list[str], chunk_peaks: np.ndarray, path: str | os.PathLike | None = None,
                title: str | None = None) -> Figure:
    """Memory of one training step against batch size, and full-batch GD in chunks.

    Left: peak bytes allocated by one training step, measured and estimated,
    against batch size. Right: peak bytes of one full-batch GD epoch computed
    in the chunks named by ``chunks`` (``"one shot"`` first), as bars.
    """
    fig, (ax, ax_chunks) = plt.subplots(1, 2, figsize=(12, 4.5))
    mib = 2.0 ** 20
    ax.plot(batch_sizes, measured / mib, "o-", label="measured (tracemalloc peak)")
    ax.plot(batch_sizes, estimated / mib, "s--", label="estimated (scratchgd.memory.estimate)")
    ax.set(xlabel="batch size (rows)", ylabel="MiB", title="memory of one training step")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    colors = ["0.35"] + ["tab:blue"] * (len(chunks) - 1)
    bars = ax_chunks.bar(range(len(chunks)), chunk_peaks / mib, color=colors)
    ax_chunks.bar_label(bars, fmt="%.1f MiB", fontsize=8)
    ax_chunks.set_xticks(range(len(chunks)), chunks, fontsize=8)
    ax_chunks.set(ylabel="peak MiB while training",
                  title="full-batch GD: one shot vs accumulated chunks")
    return _finish(fig, path, title)


def plot_advice(table: list[dict], b_simple_per_epoch: list[float],
                path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """The batch size advice of ``scratchgd advise``: a figure of two panels.

    Left: the predicted ``S / S_min`` and ``E / E_min`` of
    :func:`scratchgd.advise_batch_size`'s ``table`` against the batch size, the
    recommended range shaded. Right: ``History.b_simple``, the noise scale of
    each training epoch, and the final measurement (the table's).
    """
    fig, (ax_cost, ax_noise) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = [row["batch_size"] for row in table]
    ax_cost.plot(sizes, [row["steps_ratio"] for row in table], "o-", label="steps S / S_min")
    ax_cost.plot(sizes, [row["examples_ratio"] for row in table], "s-",
                 label="examples E / E_min")
    chosen = [row["batch_size"] for row in table if row["recommended"]]
    if chosen:
        ax_cost.axvspan(min(chosen), max(chosen), color="green", alpha=0.15, label="recommended")
    b = table[0]["b_simple"]
    if math.isfinite(b):
        ax_cost.axvline(b, color="0.3", ls=":", label=f"B_simple = {b:.3g}")
    ax_cost.set(xscale="log", yscale="log", xlabel="batch size B",
                ylabel="predicted cost over its minimum", title="prediction of the model")
    ax_cost.legend(fontsize=8)
    epochs = range(1, len(b_simple_per_epoch) + 1)
    ax_noise.plot(epochs, b_simple_per_epoch, "o-", label="from each epoch's batches")
    ax_noise.axhline(b, color="0.3", ls=":", label="measured after training")
    ax_noise.set(xlabel="epoch", ylabel="B_simple", yscale="log",
                 title="simple noise scale during training")
    ax_noise.legend(fontsize=8)
    for ax in (ax_cost, ax_noise):
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_critical_batch(tasks: dict[str, dict], path: str | os.PathLike | None = None,
                        title: str | None = None) -> Figure:
    """The critical batch size experiment of ``demos/critical_batch_size.py``, one row per task.

    Left: for each target loss, the steps ``S`` against the examples ``E = B S``
    each batch size needed (points) and the fitted model
    ``S = S_min (1 + B_crit / B)``, ``E = E_min (1 + B / B_crit)`` (line).
    Right: ``B_crit`` (with its 95% bootstrap interval) and ``B_simple``
    measured at the weights that first reached the target, against the target,
    and ``B_noise`` there if given. ``tasks`` maps a name to a dict with
    ``targets``, ``points`` (target -> ``(B, S)``), ``fits`` (target ->
    ``(S_min, E_min)``), ``b_crit``, ``b_simple``, ``interval`` and optionally
    ``b_noise`` (lists over the targets).
    """
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.6 * len(tasks)), squeeze=False)
    for (name, task), (ax_se, ax_b) in zip(tasks.items(), axes, strict=True):
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(task["targets"]), 1)))
        for target, color in zip(task["targets"], colors, strict=True):
            B, S = task["points"][target]
            s_min, e_min = task["fits"][target]
            ax_se.plot(B * S, S, "o", color=color, label=f"loss {target:.3g}")
            grid = np.geomspace(B.min() / 2, B.max() * 2, 200)
            ax_se.plot(s_min * grid + e_min, s_min + e_min / grid, "-", color=color, lw=1)
        ax_se.set(xscale="log", yscale="log", xlabel="examples E = B S",
                  ylabel="steps S", title=f"{name}: steps against examples")
        ax_se.legend(fontsize=8)
        if task["targets"]:
            low, high = np.array(task["interval"]).T
            b_crit = np.array(task["b_crit"])
            ax_b.errorbar(task["targets"], b_crit, yerr=[b_crit - np.minimum(low, b_crit),
                                                         np.maximum(high, b_crit) - b_crit],
                          fmt="o-", capsize=3, label="B_crit = E_min / S_min (fit, 95% bootstrap)")
            ax_b.plot(task["targets"], task["b_simple"], "s--", label="B_simple (gradient_noise)")
            if "b_noise" in task:
                ax_b.plot(task["targets"], task["b_noise"], "^:",
                          label="B_noise = tr(H $\\Sigma$) / G$^T$ H G (Hessian-weighted)")
        ax_b.set(xscale="log", yscale="log", xlabel="target training loss",
                 ylabel="batch size", title=f"{name}: measured and predicted")
        ax_b.set_xticks(task["targets"], [f"{t:.3g}" for t in task["targets"]])
        ax_b.minorticks_off()
        ax_b.invert_xaxis()
        ax_b.legend(fontsize=8)
        for ax in (ax_se, ax_b):
            ax.grid(alpha=0.3, which="both")
    return _finish(fig, path, title)


def plot_grid_search(labels: list[str], accuracy: np.ndarray, accuracy_std: np.ndarray,
                     seconds: np.ndarray, learning_rates: list[float],
                     path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """A grid search over batch size, one point per batch size at its best learning rate.

    Left: mean cross-validated accuracy (error bars: the standard deviation
    over the folds), each point labelled with its learning rate. Right: mean
    time of one fit (log scale). ``labels`` name the batch sizes in order.
    """
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(labels))
    ax_acc.errorbar(x, accuracy, yerr=accuracy_std, fmt="o-", capsize=3)
    for xi, acc, lr in zip(x, accuracy, learning_rates, strict=True):
        ax_acc.annotate(f"lr {lr:g}", (xi, acc), textcoords="offset points", xytext=(0, 8),
                        ha="center", fontsize=8)
    best = int(np.argmax(accuracy))
    ax_acc.plot(x[best], accuracy[best], "*", color=AVERAGE_COLOR, ms=14, label="best")
    ax_acc.set(xlabel="batch size", ylabel="mean CV accuracy",
               title="accuracy at each batch size's best learning rate")
    ax_acc.legend(fontsize=8)
    bars = ax_time.bar(x, seconds, color="tab:blue")
    ax_time.bar_label(bars, fmt="%.2f s", fontsize=8)
    ax_time.set(xlabel="batch size", ylabel="seconds per fit", yscale="log",
                title="mean fit time (same epochs)")
    for ax in (ax_acc, ax_time):
        ax.set_xticks(x, labels)
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_confusion(confusion: np.ndarray, path: str | os.PathLike | None = None,
                   title: str | None = None) -> Figure:
    """The confusion matrix ``confusion[true, predicted]`` as a heat map with counts."""
    k = len(confusion)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * max(k, 4), 1.0 + 0.5 * max(k, 4)))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(xlabel="predicted class", ylabel="true class", xticks=range(k), yticks=range(k))
    high = confusion.max(initial=0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center",
                    color="white" if confusion[i, j] > high / 2 else "black")
    return _finish(fig, path, title)


MAX_PANELS = 9
"""Outputs :func:`plot_predicted` draws at most (the first ones)."""


def plot_predicted(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike | None = None,
                   title: str | None = None, r2: np.ndarray | None = None) -> Figure:
    """Predicted against true values of a regressor, one panel per output (the first ``MAX_PANELS``).

    ``y_true`` and ``y_pred``: ``(n, k)``. Each panel shows the rows as points
    and the line ``predicted = true`` on which a perfect model's points lie;
    ``r2`` (per output), if given, is written in each panel's title.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
    k = min(y_true.shape[1], MAX_PANELS)
    columns = min(k, 3)
    rows = math.ceil(k / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.8 * rows), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= k:
            ax.set_visible(False)
            continue
        ax.scatter(y_true[:, j], y_pred[:, j], s=10, alpha=0.6)
        low = min(y_true[:, j].min(), y_pred[:, j].min())
        high = max(y_true[:, j].max(), y_pred[:, j].max())
        ax.plot([low, high], [low, high], color=AVERAGE_COLOR, lw=1, label="predicted = true")
        name = f"output {j}" + (f": R^2 {r2[j]:.4f}" if r2 is not None else "")
        ax.set(xlabel="true", ylabel="predicted", title=name)
        ax.legend(loc="upper left")
    return _finish(fig, path, title)
