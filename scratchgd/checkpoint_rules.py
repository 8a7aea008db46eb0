"""The rule of every field of a checkpoint's position and History: nothing a file says is believed.

:func:`scratchgd.checkpoint.load` applies them to what it reads, so a forged or
damaged checkpoint is refused with one line naming the field (a correct count
of 10^9, a NaN loss sum, a counter too large for the next save), never
believed. The rules follow what :func:`scratchgd.fit` writes: finite where it
writes finite values, NaN only where it writes NaN, counts in range. What
needs the run's loader (the row order, the rows drawn so far) is checked by
:meth:`scratchgd.checkpoint.Checkpoint.check`.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from .losses import LOSSES
from .npzfile import is_whole

COUNT_LIMIT = 2**62
"""The largest count a checkpoint may hold: int64 with room for what the next run adds."""

NAN_ONLY = {"low": math.inf, "high": -math.inf, "nan": True}
"""Bounds of :func:`_real` that only NaN meets (what ``fit`` writes where a figure has no meaning)."""


def _real(values: list, low: float = -math.inf, high: float = math.inf, nan: bool = False,
          infinite: bool = False) -> bool:
    """Whether every value is in ``[low, high]`` and finite (``infinite``: or inf), or NaN (``nan``)."""
    array = np.asarray(values, dtype=np.float64)
    inside = (low <= array) & (array <= high) & (np.isfinite(array) | infinite)
    return bool((inside | (np.isnan(array) & nan)).all())


def regression(meta: dict[str, Any], fail: Any) -> bool:
    """Whether the checkpoint's model learns real targets: its loss takes no class labels.

    Raises ``fail(...)`` if the loss it names is not registered in this scratchgd.
    """
    name = meta["model"]["loss"]
    if not isinstance(name, str) or name not in LOSSES:
        raise fail(f"names the loss {name!r}, which is not registered in this scratchgd "
                   f"(registered: {', '.join(LOSSES)})")
    return not LOSSES[name].classes


def check_history(history: dict[str, Any], meta: dict[str, Any], fail: Any) -> None:
    """Every field of a checkpoint's History by its own rule; ``fail(message)`` names the first
    that breaks it (``meta``: the checkpoint's, for its loss and settings).

    Counters ``0 <= steps <= iterations <= samples_seen <= COUNT_LIMIT``; each
    list as long as ``fit`` makes it (per iteration, per epoch; validation
    empty or per epoch; ``b_simple`` per epoch with ``track_noise``, else
    empty); losses and seconds finite and ``>= 0`` (a validation loss may
    overflow to inf); accuracies in ``[0, 1]``, ``val_r2 <= 1``, NaN where
    ``fit`` writes NaN (accuracies of mse, ``val_r2`` of cross_entropy, an
    epoch without validation, ``b_simple`` of an epoch without an estimate);
    the counters at each epoch's end non-decreasing whole numbers up to the counter.
    """
    epochs, regressor = history["epochs"], regression(meta, fail)
    if not history["steps"] <= history["iterations"] <= history["samples_seen"]:
        raise fail(f"has history steps={history['steps']}, iterations="
                      f"{history['iterations']}, samples_seen={history['samples_seen']}: a "
                      f"step takes at least one iteration, an iteration at least one row")
    lengths = {"iteration_loss": history["iterations"]}
    for name in ("epoch_loss", "epoch_accuracy", "epoch_seconds", "steps_at_epoch_end",
                 "iterations_at_epoch_end", "samples_at_epoch_end"):
        lengths[name] = epochs
    lengths["b_simple"] = epochs if meta["settings"].get("track_noise") else 0
    for name, length in lengths.items():
        if len(history[name]) != length:
            raise fail(f"has {len(history[name])} values of history {name}, expected {length}")
    for name in ("val_loss", "val_accuracy", "val_r2"):
        if len(history[name]) not in (0, epochs):
            raise fail(f"has {len(history[name])} values of history {name}, expected 0 "
                          f"or one per epoch ({epochs})")
    accuracy = NAN_ONLY if regressor else {"low": 0.0, "high": 1.0}
    rules = {
        "iteration_loss": ({"low": 0.0}, "finite and >= 0"),
        "epoch_loss": ({"low": 0.0}, "finite and >= 0"),
        "epoch_seconds": ({"low": 0.0}, "finite and >= 0"),
        "epoch_accuracy": (accuracy, "NaN for mse, in [0, 1] for cross_entropy"),
        "val_loss": ({"low": 0.0, "nan": True, "infinite": True}, ">= 0 or NaN"),
        "val_accuracy": ({**accuracy, "nan": True}, "NaN for mse, in [0, 1] or NaN else"),
        "val_r2": ({"high": 1.0, "nan": True, "infinite": True} if regressor else NAN_ONLY,
                   "<= 1 or NaN for mse, NaN for cross_entropy"),
        "b_simple": ({"low": -sys.float_info.max, "nan": True, "infinite": True},
                     "a number, inf or NaN"),
    }
    for name, (bounds, rule) in rules.items():
        if not _real(history[name], **bounds):
            raise fail(f"has history {name} that is not {rule}")
    for name, counter in (("steps_at_epoch_end", "steps"), ("iterations_at_epoch_end",
                                                            "iterations"),
                          ("samples_at_epoch_end", "samples_seen")):
        values = history[name]
        if (not all(is_whole(v, 0, history[counter]) for v in values)
                or any(np.diff(values) < 0)):
            raise fail(f"has history {name} that is not whole numbers rising to at most "
                          f"{counter}={history[counter]}")


def check_position(at: dict[str, Any], history: dict[str, Any], meta: dict[str, Any],
                   fail: Any) -> None:
    """Every field of a checkpoint's position ``at`` by its own rule (against the run's loader:
    :meth:`scratchgd.checkpoint.Checkpoint.check`).

    ``epoch = History.epochs + 1``; ``iteration``, ``correct`` and ``noise_batches``
    whole numbers (``correct`` 0 for mse, ``noise_batches <= iteration``);
    ``loss_sum`` finite and ``>= 0``, the noise sums finite (0 without
    ``track_noise`` or before the epoch's first noise estimate); at iteration 0
    every running sum 0.
    """
    regressor = regression(meta, fail)
    counts = {"epoch": (1, COUNT_LIMIT), "iteration": (0, COUNT_LIMIT),
              "correct": (0, 0 if regressor else COUNT_LIMIT),
              "noise_batches": (0, at["iteration"] if is_whole(at["iteration"], 0) else 0)}
    for key, (low, high) in counts.items():
        if not is_whole(at[key], low, high):
            raise fail(f"has position {key}={at[key]!r}, not a whole number in [{low}, {high}]")
    for key, low in (("loss_sum", 0.0), ("noise_grad_sq", -math.inf), ("noise_trace_cov",
                                                                        -math.inf)):
        if not isinstance(at[key], float) or not (math.isfinite(at[key]) and at[key] >= low):
            raise fail(f"has position {key}={at[key]!r}, not a finite number >= {low}")
    if at["epoch"] != history["epochs"] + 1:
        raise fail(f"records {history['epochs']} finished epochs but is in epoch "
                      f"{at['epoch']}")
    if at["iteration"] == 0 and (at["loss_sum"] or at["correct"]):
        raise fail(f"has running sums loss_sum={at['loss_sum']!r}, correct={at['correct']!r} "
                      f"before its epoch's first iteration")
    if ((not at["noise_batches"] or not meta["settings"].get("track_noise"))
            and (at["noise_batches"] or at["noise_grad_sq"] or at["noise_trace_cov"])):
        raise fail(f"has noise sums {at['noise_grad_sq']!r}, {at['noise_trace_cov']!r} over "
                      f"{at['noise_batches']} batches, which its settings cannot make")
