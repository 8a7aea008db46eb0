"""Checkpoints: the whole state of a training run in one ``.npz`` file, no pickle.

A checkpoint holds what :func:`scratchgd.fit` needs to continue a run as if it
had never stopped:

* the model's weights, and its sizes, activation, loss and dtype to check them against;
* the optimizer's settings and momentum buffers;
* the data loader's random generator state, the row order of the epoch in
  progress and how many of its iterations are done;
* the :class:`~scratchgd.History` so far and the running sums (loss, correct
  predictions, gradient noise estimates) of the epoch in progress.

Format version 2 added the noise sums (``fit(track_noise=True)``); version 3
the model's input scaling (entries ``scale_mean``, ``scale_std``) and the
scaling mode in the settings, and the number of data-parallel processes
(``settings["processes"]``, ``fit(comm=...)``), which a resume must match;
version 4 the target scaling (entries ``target_mean``, ``target_std``, the
mode in ``settings["scale_targets"]``) and ``History.val_r2``. Versions 3 and
4 are read (a version 3 file has no target scaling, and a regressor's
``val_r2`` reads as NaN); a file of another version is refused with a message naming it.

Arrays are stored as arrays; everything else (settings, generator state,
counters) as one JSON text in the entry ``meta``: the format family of model
files, read and written by :mod:`scratchgd.npzfile`. The file is read with
``np.load(allow_pickle=False)`` after its headers are checked, so a file that
holds pickled objects, is truncated or declares impossible shapes is refused
with a ``ValueError`` naming the file, and no code from it ever runs.

Writing is atomic: the file is written under a temporary name in the same
folder, flushed and ``fsync``-ed, then renamed over the old checkpoint with
``os.replace`` (and the folder is ``fsync``-ed), so at every instant the path
holds either the previous complete checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from .npzfile import (
    describe_model,
    is_whole,
    model_arrays,
    read_meta,
    read_npz,
    read_scaling,
    read_weights,
    write_npz_atomic,
)
from .scaling import Scaling

FORMAT = "scratchgd-checkpoint"
VERSION = 4
OLDEST_VERSION = 3
"""The oldest format version :func:`~scratchgd.checkpoint.load` reads (see the module docstring)."""


def save(path: str | os.PathLike, model: Any, optimizer: Any, loader: Any, history: Any,
         position: Any, settings: dict[str, Any]) -> None:
    """Write the state of a training run to ``path`` atomically.

    ``history`` and ``position`` are dataclasses (``History`` and the loop's
    position in the epoch, with an ``order`` field holding the epoch's row
    order or ``None``); ``settings`` are the ``fit`` arguments a resumed run
    must share (checked by :meth:`Checkpoint.check`).
    """
    arrays = model_arrays(model)
    for i, v in enumerate(optimizer.velocity or []):
        arrays[f"velocity_{i}"] = v
    counters, lists = {}, {}
    for name, value in dataclasses.asdict(history).items():
        if isinstance(value, list):
            is_int = bool(value) and all(isinstance(x, int) for x in value)
            arrays[f"history_{name}"] = np.asarray(value, dtype=np.int64 if is_int else np.float64)
            lists[name] = "int" if is_int else "float"
        else:
            counters[name] = value
    place = {f.name: getattr(position, f.name) for f in dataclasses.fields(position)}
    order = place.pop("order")
    if order is not None:
        arrays["order"] = order
    meta = {
        "format": FORMAT, "version": VERSION,
        "model": describe_model(model),
        "optimizer": optimizer_settings(optimizer),
        "momentum_buffers": optimizer.velocity is not None,
        "settings": settings,
        "rng": loader.rng.bit_generator.state,
        "position": place, "has_order": order is not None,
        "history": counters, "history_lists": lists,
    }
    arrays["meta"] = np.array(json.dumps(meta, default=_plain))
    write_npz_atomic(path, arrays)


def _plain(value: Any) -> int | float:
    """NumPy scalars as the Python numbers JSON can hold."""
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """The settings of ``optimizer`` a checkpoint records and a resume must match."""
    return {"type": type(optimizer).__name__, "lr": optimizer.lr, "momentum": optimizer.momentum,
            "batch_size": optimizer.batch_size, "shuffle": optimizer.shuffle,
            "chunk_size": optimizer.chunk_size}


@dataclass
class Checkpoint:
    """A checkpoint read by :func:`~scratchgd.checkpoint.load` (not yet checked against a run).

    Attributes
    ----------
    path : str
    meta : dict
        The JSON part: model, optimizer and fit settings, generator state, counters.
    params : list of arrays, shaped like ``MLP(meta["model"]["sizes"]).params``.
    scaling : Scaling or None, the model's input scaling.
    target_scaling : Scaling or None, the model's target scaling.
    velocity : list of arrays like ``params``, or ``None`` before the first momentum step.
    order : int array or None, the row order of the epoch in progress.
    history : dict of ``History`` fields.
    position : dict of the loop's position fields (``order`` excluded).
    """

    path: str
    meta: dict[str, Any]
    params: list[np.ndarray]
    velocity: list[np.ndarray] | None
    order: np.ndarray | None
    history: dict[str, Any]
    position: dict[str, Any]
    scaling: Scaling | None = None
    target_scaling: Scaling | None = None

    def fail(self, message: str) -> ValueError:
        """A ``ValueError`` that names this checkpoint's file."""
        return ValueError(f"checkpoint {self.path!r} {message}")

    def check(self, model: Any, optimizer: Any, loader: Any, settings: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless this checkpoint continues exactly this run.

        The model (sizes, activation, loss, dtype), the optimizer's settings, the
        ``fit`` settings (``accumulate``, ``seed``, the data set's shape, the
        input and target scaling modes) and the loader's generator must match;
        the stored row order must index the data. The run's targets were scaled
        when it started (:func:`scratchgd.plan.training_targets`), so the
        model's target statistics must be the checkpoint's, bit for bit.
        """
        wanted = {"model": describe_model(model),
                  "optimizer": optimizer_settings(optimizer), "settings": settings}
        for part, values in wanted.items():
            for key, value in values.items():
                stored = self.meta[part].get(key)
                if stored != value:
                    raise self.fail(f"was written for {part} {key}={stored!r}, not {value!r}; "
                                    f"delete it or resume with the same settings")
        mine, saved = model.target_scaling, self.target_scaling
        if mine is not None and saved is not None and not (
                np.array_equal(mine.mean, saved.mean) and np.array_equal(mine.std, saved.std)):
            raise self.fail(f"was written with the target statistics mean={saved.mean.tolist()}, "
                            f"std={saved.std.tolist()}, not the model's mean={mine.mean.tolist()}, "
                            f"std={mine.std.tolist()}; resume with the same training targets")
        name = type(loader.rng.bit_generator).__name__
        if not isinstance(self.meta["rng"], dict) or self.meta["rng"].get("bit_generator") != name:
            raise self.fail(f"holds no {name} generator state")
        iteration, n = self.position["iteration"], len(loader.dataset)
        k = len(loader) if settings["accumulate"] == "epoch" else settings["accumulate"]
        if not 0 <= iteration < len(loader) or iteration % k:
            raise self.fail(f"stopped at iteration {iteration}, which is not a step boundary "
                            f"of an epoch of {len(loader)} iterations with accumulate={k}")
        if iteration and (self.order is None) != (not loader.shuffle and not loader.replacement):
            raise self.fail("has no row order for the epoch in progress" if self.order is None
                            else "has a row order but the loader does not shuffle")
        if self.order is not None:
            expected = len(loader) * loader.rows_per_batch if loader.replacement else n
            order = self.order
            if order.shape != (expected,) or not 0 <= order.min() <= order.max() < n:
                raise self.fail(f"has a row order of shape {self.order.shape} that does not "
                                f"index {expected} rows of a data set of {n}")

    def restore(self, model: Any, optimizer: Any, loader: Any) -> None:
        """Put the weights, momentum buffers and generator state into the run (after :meth:`check`)."""
        try:
            loader.rng.bit_generator.state = self.meta["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise self.fail(f"holds an unusable generator state: {exc}") from None
        for p, saved in zip(model.params, self.params, strict=True):
            p[...] = saved
        model.scaling = self.scaling  # (the target scaling is the model's already: check)
        optimizer.velocity = None if self.velocity is None else [v.copy() for v in self.velocity]


def load(path: str | os.PathLike, content: bytes | None = None) -> Checkpoint:
    """Read and validate the checkpoint at ``path`` (or its bytes ``content``, see ``read_npz``).

    Checks that the file is a checkpoint of this format, that every weight and
    momentum buffer has the shape its layer sizes give and is finite, and that
    the History's lists agree with its counters. Nothing of a run is changed;
    :meth:`Checkpoint.check` and :meth:`Checkpoint.restore` do that part.

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it.
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.fspath(_checks.path("checkpoint", path))
    arrays = read_npz(path, "checkpoint", content)
    ck = Checkpoint(path, {}, [], None, None, {}, {})
    meta = read_meta(arrays, ck.fail)
    if meta.get("format") != FORMAT:
        raise ck.fail("is not a scratchgd checkpoint")
    version = meta.get("version")
    if not is_whole(version, OLDEST_VERSION, VERSION):
        raise ck.fail(f"has format version {version!r}; this scratchgd reads versions "
                      f"{OLDEST_VERSION} to {VERSION}: start the run afresh (without resume)")
    try:
        ck.meta = meta
        weights = read_weights(arrays, meta["model"], ("param", "velocity")
                               if meta["momentum_buffers"] else ("param",), ck.fail)
        ck.params, ck.velocity = weights["param"], weights.get("velocity")
        sizes = meta["model"]["sizes"]
        ck.scaling = read_scaling(arrays, sizes[0], ck.fail)
        if version >= 4:
            ck.target_scaling = read_scaling(arrays, sizes[-1], ck.fail, "target")
        elif isinstance(meta["settings"], dict):  # version 3: no target scaling, no val_r2
            meta["settings"].setdefault("scale_targets", "none")
        ck.order = arrays.pop("order", None) if meta["has_order"] else None
        if ck.order is not None and (ck.order.dtype.kind not in "iu" or ck.order.ndim != 1):
            raise ck.fail(f"has a row order of {ck.order.dtype} {ck.order.shape}, not 1-d integers")
        ck.history = _read_history(ck, arrays)
        ck.position = dict(meta["position"])
        for key in ("epoch", "iteration", "correct"):
            if not isinstance(ck.position[key], int) or ck.position[key] < (key == "epoch"):
                raise ck.fail(f"has position {key}={ck.position[key]!r}")
        for key in ("loss_sum", "noise_grad_sq", "noise_trace_cov"):
            if not isinstance(ck.position[key], float):
                raise ck.fail(f"has position {key}={ck.position[key]!r}")
        if not isinstance(ck.position["noise_batches"], int) or ck.position["noise_batches"] < 0:
            raise ck.fail(f"has position noise_batches={ck.position['noise_batches']!r}")
        if ck.history["epochs"] != ck.position["epoch"] - 1:
            raise ck.fail(f"records {ck.history['epochs']} finished epochs but is in epoch "
                          f"{ck.position['epoch']}")
        for part in ("model", "optimizer", "settings"):
            if not isinstance(meta[part], dict):
                raise ck.fail(f"has a malformed {part!r} entry")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ck.fail(f"misses or mangles the entry {exc}") from None
    if arrays.keys() - {"order"}:
        raise ck.fail(f"holds unexpected entries {sorted(arrays)}")
    return ck


def _read_history(ck: Checkpoint, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    history = dict(ck.meta["history"])
    for key, value in history.items():
        if not isinstance(value, int) or value < 0:
            raise ck.fail(f"has history counter {key}={value!r}")
    for name, kind in ck.meta["history_lists"].items():
        array = arrays.pop(f"history_{name}", None)
        want = "i" if kind == "int" else "f"
        if array is None or array.ndim != 1 or array.dtype.kind != want:
            raise ck.fail(f"has a malformed history list {name!r}")
        history[name] = array.tolist()
    if ck.meta["version"] < 4:  # before val_r2, which a regressor records at each validation
        regressor = ck.meta["model"]["loss"] == "mse"
        history["val_r2"] = [math.nan] * len(history["val_loss"]) if regressor else []
    lengths = {"iteration_loss": history["iterations"]}
    for name in ("epoch_loss", "epoch_accuracy", "epoch_seconds", "steps_at_epoch_end",
                 "iterations_at_epoch_end", "samples_at_epoch_end"):
        lengths[name] = history["epochs"]
    for name, length in lengths.items():
        if len(history[name]) != length:
            raise ck.fail(f"has {len(history[name])} values of history {name}, expected {length}")
    for name in ("val_loss", "val_accuracy", "val_r2", "b_simple"):
        if len(history[name]) not in (0, history["epochs"]):
            raise ck.fail(f"has {len(history[name])} values of history {name}")
    return history
