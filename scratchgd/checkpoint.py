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
mode in ``settings["scale_targets"]``) and ``History.val_r2``; version 5 the
data set's identity (``meta["data"]``, :func:`fingerprint`), which a resume
must match, and validation lists as long as the epochs (NaN for an epoch
trained without ``validation``). Versions 3 to 5 are read (a version 3 file
has no target scaling, and a regressor's ``val_r2`` reads as NaN; a file of
version 4 or older has no fingerprint, and is not checked for one, and its
validation lists, if shorter than the epochs, are taken as the first epochs'
and padded with NaN); a file of another version is refused with a message naming it.

Every field of the position and the History is checked by a rule of its own
(:func:`load`: finite where ``fit`` writes finite values, NaN where it writes
NaN, counts in range; :meth:`Checkpoint.check`: against the run's loader), so
a forged or damaged file is refused with one line naming the field, never
believed.

Arrays are stored as arrays; everything else (settings, generator state,
counters) as one JSON text in the entry ``meta``: the format family of model
files, read and written by :mod:`scratchgd.npzfile`, whose reader checks every
entry's size against what ``meta`` implies (:func:`entry_bytes`) before it
reads any, with ``allow_pickle=False``: no code from a file ever runs.

Writing is atomic: the file is written under a temporary name in the same
folder, flushed and ``fsync``-ed, then renamed over the old checkpoint with
``os.replace`` (and the folder is ``fsync``-ed), so at every instant the path
holds either the previous complete checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from .checkpoint_rules import COUNT_LIMIT, check_history, check_position, regression
from .npzfile import (
    describe_model,
    is_whole,
    model_arrays,
    model_entry_bytes,
    parse_meta,
    read_meta,
    read_npz,
    read_scaling,
    read_weights,
    write_npz_atomic,
)
from .scaling import Scaling

FORMAT = "scratchgd-checkpoint"
VERSION = 5
OLDEST_VERSION = 3
"""The oldest format version :func:`~scratchgd.checkpoint.load` reads (see the module docstring)."""
FINGERPRINT_ROWS = 1024
"""Rows of the data set :func:`fingerprint` hashes, at most."""


def fingerprint(data: Any) -> dict[str, Any]:
    """The data set's identity a checkpoint records and a resume must match.

    The shapes of ``X`` ``(n, d)`` and of ``y`` as ``(n, k)``, and the SHA-256
    of ``m = min(n, FINGERPRINT_ROWS)`` rows of ``X`` and ``y``, rows
    ``r_j = floor(j (n - 1) / (m - 1))`` for ``j = 0..m-1`` (every row of a
    small set; the first, the last and evenly spaced ones of a large one), as
    little-endian float64 with ``-0.0`` as ``0.0``: the same table read from a
    CSV or a float64 ``.npy`` has the same fingerprint. An edit of a row outside
    the sample goes unnoticed; only the shape covers those.
    """
    n = len(data)
    m = min(n, FINGERPRINT_ROWS)
    k = 1 if np.ndim(data.y) == 1 else data.y.shape[1]
    rows = np.arange(m, dtype=np.int64) * (n - 1) // max(m - 1, 1)
    X = np.ascontiguousarray(data.X[rows], dtype="<f8") + 0.0
    y = np.ascontiguousarray(data.y[rows], dtype="<f8").reshape(m, k) + 0.0
    digest = hashlib.sha256(f"{n},{X.shape[1]},{k};".encode())
    digest.update(X.tobytes())
    digest.update(y.tobytes())
    return {"rows": n, "features": X.shape[1], "targets": k, "sampled_rows": m,
            "sha256": digest.hexdigest()}


NOISE = {"noise_grad_sq": 0.0, "noise_trace_cov": 0.0, "noise_batches": 0}
"""The gradient-noise sums of the epoch in progress, stored with the position (format
version 2 on; ``fit(track_noise=True)``'s :class:`scratchgd.hooks.NoiseTracker`): zero without."""


def save(path: str | os.PathLike, model: Any, optimizer: Any, loader: Any, history: Any,
         position: Any, settings: dict[str, Any], data: dict[str, Any] | None = None,
         noise: dict[str, float | int] | None = None) -> None:
    """Write the state of a training run to ``path`` atomically.

    ``history`` and ``position`` are dataclasses (``History`` and the loop's
    position in the epoch, with an ``order`` field holding the epoch's row
    order or ``None``); ``settings`` are the ``fit`` arguments a resumed run
    must share (checked by :meth:`Checkpoint.check`); ``data`` the
    :func:`fingerprint` of ``loader.dataset`` (computed if not given);
    ``noise`` the sums of :data:`NOISE` (zeros if ``None``), stored with the position.
    """
    arrays = model_arrays(model)
    for i, v in enumerate(model.to_host(optimizer.velocity or [])):  # NumPy, from any device
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
    place.update(NOISE if noise is None else noise)
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
        "data": fingerprint(loader.dataset) if data is None else data,
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
    position : dict of the loop's position fields (``order`` excluded) and the :data:`NOISE` sums.
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

    def check(self, model: Any, optimizer: Any, loader: Any, settings: dict[str, Any],
              data: dict[str, Any] | None = None) -> None:
        """Raise ``ValueError`` unless this checkpoint continues exactly this run.

        The model (sizes, activation, loss, dtype), the optimizer's settings, the
        ``fit`` settings (``accumulate``, ``seed``, the data set's shape, the
        input and target scaling modes) and the loader's generator must match;
        from version 5 the data set's :func:`fingerprint` too (``data``:
        ``loader.dataset``'s, computed if not given). The position must be one
        of this loader's epochs (its iteration a step boundary, ``correct`` at
        most the rows drawn so far, the stored row order indexing the data: a
        permutation unless drawn with replacement), ``samples_seen`` at most
        ``n`` plus one batch per epoch begun, and the generator state one the
        generator takes. The run's targets were scaled when it started
        (:func:`scratchgd.plan.training_targets`), so the model's target
        statistics must be the checkpoint's, bit for bit.
        """
        wanted = {"model": describe_model(model),
                  "optimizer": optimizer_settings(optimizer), "settings": settings}
        for part, values in wanted.items():
            for key, value in values.items():
                stored = self.meta[part].get(key)
                if stored != value:
                    raise self.fail(f"was written for {part} {key}={stored!r}, not {value!r}; "
                                    f"delete it or resume with the same settings")
        if self.meta["version"] >= 5:
            data = fingerprint(loader.dataset) if data is None else data
            if self.meta["data"] != data:
                raise self.fail(f"was written for another data set: the SHA-256 of its "
                                f"{data['sampled_rows']} sampled rows of X and y differs "
                                f"(same shape); resume on the same data, or delete it")
        mine, saved = model.target_scaling, self.target_scaling
        if mine is not None and saved is not None and not (
                np.array_equal(mine.mean, saved.mean) and np.array_equal(mine.std, saved.std)):
            raise self.fail(f"was written with the target statistics mean={saved.mean.tolist()}, "
                            f"std={saved.std.tolist()}, not the model's mean={mine.mean.tolist()}, "
                            f"std={mine.std.tolist()}; resume with the same training targets")
        self._check_generator(loader)
        self._check_against_loader(loader, settings)

    def _check_generator(self, loader: Any) -> None:
        """The stored state must be one the loader's kind of generator takes (tried on a fresh one)."""
        name = type(loader.rng.bit_generator).__name__
        if not isinstance(self.meta["rng"], dict) or self.meta["rng"].get("bit_generator") != name:
            raise self.fail(f"holds no {name} generator state")
        try:
            type(loader.rng.bit_generator)().state = self.meta["rng"]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise self.fail(f"holds an unusable generator state: {exc}") from None

    def _check_against_loader(self, loader: Any, settings: dict[str, Any]) -> None:
        """The position and counters must be possible for an epoch of ``loader``."""
        at, history, n = self.position, self.history, len(loader.dataset)
        iteration = at["iteration"]
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
            if not loader.replacement and not np.array_equal(np.sort(order), np.arange(n)):
                raise self.fail(f"has a row order that is not a permutation of the {n} rows, "
                                f"which the loader draws without replacement")
        drawn = int(loader.batch_bounds(self.order)[iteration])
        if at["correct"] > drawn:
            raise self.fail(f"has position correct={at['correct']}, more than the {drawn} rows "
                            f"drawn in its {iteration} iterations")
        # an epoch draws n rows, or len(loader) batches with replacement (< n + one batch);
        # counted per epoch, so a resume with another memory budget (other GD chunks) holds too
        most = (history["epochs"] + 1) * (n + loader.rows_per_batch)
        if history["iterations"] < iteration or history["samples_seen"] > most:
            raise self.fail(f"has history iterations={history['iterations']}, samples_seen="
                            f"{history['samples_seen']}: impossible in epoch {at['epoch']}, "
                            f"iteration {iteration}, of a data set of {n} rows")

    def restore(self, model: Any, optimizer: Any, loader: Any) -> None:
        """Put the weights, momentum buffers and generator state into the run (after :meth:`check`)."""
        loader.rng.bit_generator.state = self.meta["rng"]  # a usable state: check
        for p, saved in zip(model.params, model.to_device(self.params), strict=True):
            p[...] = saved  # into the model's own arrays, on its device
        model.scaling = self.scaling  # (the target scaling is the model's already: check)
        optimizer.velocity = (None if self.velocity is None
                              else model.to_device([v.copy() for v in self.velocity]))


def load(path: str | os.PathLike, content: bytes | None = None) -> Checkpoint:
    """Read and validate the checkpoint at ``path`` (or its bytes ``content``, see ``read_npz``).

    Checks that the file is a checkpoint of this format, that every weight and
    momentum buffer has the shape its layer sizes give and is finite, and that
    every field of the position and the History follows its rule
    (:mod:`scratchgd.checkpoint_rules`; a field that needs the run's loader:
    :meth:`Checkpoint.check`). Nothing of a run is changed;
    :meth:`Checkpoint.check` and :meth:`Checkpoint.restore` do that part.

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it.
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.fspath(_checks.path("checkpoint", path))
    ck = Checkpoint(path, {}, [], None, None, {}, {})
    arrays = read_npz(path, "checkpoint", content,
                      expected=lambda meta: entry_bytes(parse_meta(meta, ck.fail), ck.fail))
    meta = read_meta(arrays, ck.fail)
    version = _check_format(meta, ck.fail)
    try:
        ck.meta = meta
        for part in ("model", "optimizer", "settings", "position", "history", "history_lists"):
            if not isinstance(meta[part], dict):
                raise ck.fail(f"has a malformed {part!r} entry")
        if version >= 5 and not isinstance(meta["data"], dict):
            raise ck.fail("has a malformed 'data' entry")
        weights = read_weights(arrays, meta["model"], ("param", "velocity")
                               if meta["momentum_buffers"] else ("param",), ck.fail)
        ck.params, ck.velocity = weights["param"], weights.get("velocity")
        sizes = meta["model"]["sizes"]
        ck.scaling = read_scaling(arrays, sizes[0], ck.fail)
        if version >= 4:
            ck.target_scaling = read_scaling(arrays, sizes[-1], ck.fail, "target")
        else:  # version 3: no target scaling, no val_r2
            meta["settings"].setdefault("scale_targets", "none")
        ck.order = arrays.pop("order", None) if meta["has_order"] else None
        if ck.order is not None and (ck.order.dtype.kind not in "iu" or ck.order.ndim != 1):
            raise ck.fail(f"has a row order of {ck.order.dtype} {ck.order.shape}, not 1-d integers")
        ck.history = _read_history(ck, arrays)
        ck.position = dict(meta["position"])
        check_position(ck.position, ck.history, ck.meta, ck.fail)
    except (KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise ck.fail(f"misses or mangles the entry {exc}") from None
    if arrays.keys() - {"order"}:
        raise ck.fail(f"holds unexpected entries {sorted(arrays)}")
    return ck


def _check_format(meta: dict[str, Any], fail: Any) -> int:
    """The format version of a checkpoint's ``meta``, if this is a checkpoint of a version read."""
    if meta.get("format") != FORMAT:
        raise fail("is not a scratchgd checkpoint")
    version = meta.get("version")
    if not is_whole(version, OLDEST_VERSION, VERSION):
        raise fail(f"has format version {version!r}; this scratchgd reads versions "
                   f"{OLDEST_VERSION} to {VERSION}: start the run afresh (without resume)")
    return version


def entry_bytes(meta: dict[str, Any], fail: Any) -> dict[str, int]:
    """The most bytes of each entry of a checkpoint whose ``meta`` is ``meta`` (see ``read_npz``).

    The model's entries (:func:`scratchgd.npzfile.model_entry_bytes`, momentum
    buffers included); the row order, int64, at most ``rows + batch_size``
    values (``len(loader) * batch`` drawn with replacement); each History
    list of ``meta["history_lists"]`` one float64 or int64 per iteration
    (``iteration_loss``) or per epoch.
    """
    _check_format(meta, fail)
    parts = [meta.get(part) for part in ("settings", "optimizer", "history", "history_lists")]
    if not all(isinstance(part, dict) for part in parts):
        raise fail("has a malformed 'settings', 'optimizer', 'history' or 'history_lists' entry")
    settings, optimizer, history, lists = parts
    most = model_entry_bytes(meta.get("model"), fail, ("param", "velocity"))
    rows, batch = settings.get("rows"), optimizer.get("batch_size")
    if not is_whole(rows, 1, COUNT_LIMIT):
        raise fail(f"has settings rows={rows!r}")
    most["order"] = 8 * (rows + (batch if is_whole(batch, 1, rows) else rows))
    for counter in ("iterations", "epochs"):
        if not is_whole(history.get(counter), 0, COUNT_LIMIT):
            raise fail(f"has history counter {counter}={history.get(counter)!r}")
    for name in lists:
        most[f"history_{name}"] = 8 * history["iterations" if name == "iteration_loss"
                                              else "epochs"]
    return most


def _read_history(ck: Checkpoint, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The History's fields: counters from ``meta``, lists from their arrays, each checked."""
    history = dict(ck.meta["history"])
    for key, value in history.items():
        if not is_whole(value, 0, COUNT_LIMIT):
            raise ck.fail(f"has history counter {key}={value!r}")
    for name, kind in ck.meta["history_lists"].items():
        array = arrays.pop(f"history_{name}", None)
        want = "i" if kind == "int" else "f"
        if array is None or array.ndim != 1 or array.dtype.kind != want:
            raise ck.fail(f"has a malformed history list {name!r}")
        history[name] = array.tolist()
    epochs, regressor = history["epochs"], regression(ck.meta, ck.fail)
    if ck.meta["version"] < 4:  # before val_r2, which a regressor records at each validation
        history["val_r2"] = [math.nan] * len(history["val_loss"]) if regressor else []
    if ck.meta["version"] < 5:  # epochs without validation recorded nothing: taken as the last
        for name in ("val_loss", "val_accuracy", "val_r2"):
            if 0 < len(history[name]) < epochs:
                history[name] = history[name] + [math.nan] * (epochs - len(history[name]))
    check_history(history, ck.meta, ck.fail)
    return history
