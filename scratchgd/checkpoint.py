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
(``settings["processes"]``, ``fit(comm=...)``), which a resume must match. A
file of another version is refused with a message naming it.

Arrays are stored as arrays; everything else (settings, generator state,
counters) as one JSON text in the entry ``meta``. The file is read with
``np.load(allow_pickle=False)`` after its headers are checked, so a file that
holds pickled objects, is truncated or declares impossible shapes is refused
with a ``ValueError`` naming the file, and no code from it ever runs.

Writing is atomic: the file is written under a temporary name in the same
folder, flushed and ``fsync``-ed, then renamed over the old checkpoint with
``os.replace`` (and the folder is ``fsync``-ed), so at every instant the path
holds either the previous complete checkpoint or the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from .scaling import Scaling

FORMAT = "scratchgd-checkpoint"
VERSION = 3


def read_npz(path: str | os.PathLike, what: str = "file", content: bytes | None = None
             ) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, read safely.

    ``content``: the file's bytes, already read (rank 0 reads a checkpoint and
    broadcasts it); ``path`` then only names it in messages. The same checks apply.

    Before any array is read, each entry's ``.npy`` header is checked: an
    entry of Python objects (which NumPy could only read by unpickling) is
    refused, and so is one whose declared shape needs more bytes than the
    entry holds (a truncated or forged file) or than the machine has. Then the
    arrays are read with ``allow_pickle=False``.

    Raises
    ------
    ValueError
        Naming ``what`` and ``path``, if the file is not a readable ``.npz`` of
        plain arrays. A missing file raises ``FileNotFoundError``.
    """
    def source() -> str | os.PathLike | io.BytesIO:
        return path if content is None else io.BytesIO(content)

    try:
        with zipfile.ZipFile(source()) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    _check_npy_header(member, info)
        with np.load(source(), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # zip, zlib, header and EOF errors of a damaged file alike
        raise ValueError(f"{what} {os.fspath(path)!r} is not a readable .npz of plain "
                         f"arrays: {exc}") from None


def _check_npy_header(member: Any, info: zipfile.ZipInfo) -> None:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"entry {info.filename!r} has unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"entry {info.filename!r} holds Python objects (pickled data); "
                         f"refusing to load it")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise ValueError(f"entry {info.filename!r} declares shape {shape} of {dtype} "
                         f"({nbytes} bytes) but holds {info.file_size} bytes: truncated")
    _checks.fits_in_memory(f"entry {info.filename!r}", shape, nbytes)


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` so that it is never half-written.

    Writes ``.<name>.<random>.tmp`` in the same folder, flushes and fsyncs it,
    renames it over ``path`` (atomic on POSIX and Windows), then fsyncs the
    folder so the rename itself survives a power cut. A process killed before
    the rename leaves the old file untouched (and possibly the temporary file,
    which :func:`remove_temporaries` deletes).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename durable
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)


def remove_temporaries(path: str | os.PathLike) -> None:
    """Delete temporary files that a killed :func:`write_npz_atomic` left beside ``path``."""
    path = os.path.abspath(os.fspath(path))
    pattern = os.path.join(glob.escape(os.path.dirname(path)),
                           f".{glob.escape(os.path.basename(path))}.*.tmp")
    for temporary in glob.glob(pattern):
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def save(path: str | os.PathLike, model: Any, optimizer: Any, loader: Any, history: Any,
         position: Any, settings: dict[str, Any]) -> None:
    """Write the state of a training run to ``path`` atomically.

    ``history`` and ``position`` are dataclasses (``History`` and the loop's
    position in the epoch, with an ``order`` field holding the epoch's row
    order or ``None``); ``settings`` are the ``fit`` arguments a resumed run
    must share (checked by :meth:`Checkpoint.check`).
    """
    arrays: dict[str, np.ndarray] = {}
    for i, p in enumerate(model.params):
        arrays[f"param_{i}"] = p
    for i, v in enumerate(optimizer.velocity or []):
        arrays[f"velocity_{i}"] = v
    arrays.update(scaling_arrays(model))
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
        "model": {"sizes": list(model.sizes), "activation": model.activation,
                  "loss": model.loss, "dtype": np.dtype(model.dtype).name},
        "optimizer": optimizer_settings(optimizer),
        "momentum_buffers": optimizer.velocity is not None,
        "settings": settings,
        "rng": loader.rng.bit_generator.state,
        "position": place, "has_order": order is not None,
        "history": counters, "history_lists": lists,
    }
    arrays["meta"] = np.array(json.dumps(meta, default=_plain))
    write_npz_atomic(path, arrays)


def scaling_arrays(model: Any) -> dict[str, np.ndarray]:
    """The entries that store ``model.scaling``: ``scale_mean`` and ``scale_std``, or none."""
    if model.scaling is None:
        return {}
    return {"scale_mean": model.scaling.mean, "scale_std": model.scaling.std}


def read_scaling(arrays: dict[str, np.ndarray], n_inputs: int, fail: Any) -> Scaling | None:
    """The :class:`~scratchgd.Scaling` stored by :func:`scaling_arrays` (popped), or ``None``.

    ``fail(message)`` makes the ``ValueError`` that names the file.
    """
    mean, std = arrays.pop("scale_mean", None), arrays.pop("scale_std", None)
    if mean is None and std is None:
        return None
    for name, value in (("scale_mean", mean), ("scale_std", std)):
        if value is None or value.dtype != np.float64 or value.shape != (n_inputs,):
            got = "nothing" if value is None else f"{value.dtype} {value.shape}"
            raise fail(f"has {got} for {name}, expected float64 ({n_inputs},)")
    try:
        return Scaling(mean, std)
    except ValueError as exc:
        raise fail(f"has an unusable scaling: {exc}") from None


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
    """A checkpoint read by :func:`load`: well-formed, not yet checked against a run.

    Attributes
    ----------
    path : str
    meta : dict
        The JSON part: model, optimizer and fit settings, generator state, counters.
    params : list of arrays, shaped like ``MLP(meta["model"]["sizes"]).params``.
    scaling : Scaling or None, the model's input scaling.
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

    def fail(self, message: str) -> ValueError:
        """A ``ValueError`` that names this checkpoint's file."""
        return ValueError(f"checkpoint {self.path!r} {message}")

    def check(self, model: Any, optimizer: Any, loader: Any, settings: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless this checkpoint continues exactly this run.

        The model (sizes, activation, loss, dtype), the optimizer's settings, the
        ``fit`` settings (``accumulate``, ``seed``, the data set's shape) and the
        loader's generator must match; the stored row order must index the data.
        """
        wanted = {"model": {"sizes": list(model.sizes), "activation": model.activation,
                            "loss": model.loss, "dtype": np.dtype(model.dtype).name},
                  "optimizer": optimizer_settings(optimizer), "settings": settings}
        for part, values in wanted.items():
            for key, value in values.items():
                stored = self.meta[part].get(key)
                if stored != value:
                    raise self.fail(f"was written for {part} {key}={stored!r}, not {value!r}; "
                                    f"delete it or resume with the same settings")
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
        model.scaling = self.scaling
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
    if meta.get("version") != VERSION:
        raise ck.fail(f"has format version {meta.get('version')!r}; this scratchgd reads version "
                      f"{VERSION} only: start the run afresh (without resume)")
    try:
        ck.meta = meta
        weights = read_weights(arrays, meta["model"], ("param", "velocity")
                               if meta["momentum_buffers"] else ("param",), ck.fail)
        ck.params, ck.velocity = weights["param"], weights.get("velocity")
        ck.scaling = read_scaling(arrays, meta["model"]["sizes"][0], ck.fail)
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


def read_meta(arrays: dict[str, np.ndarray], fail: Any) -> dict[str, Any]:
    """The JSON text ``meta`` of a checkpoint or model file, as a dict (popped from ``arrays``).

    ``fail(message)`` makes the ``ValueError`` that names the file.
    """
    meta_array = arrays.pop("meta", None)
    if meta_array is None or meta_array.dtype.kind != "U" or meta_array.ndim != 0:
        raise fail("has no 'meta' text: it is not a scratchgd file")
    try:
        meta = json.loads(str(meta_array))
    except ValueError as exc:
        raise fail(f"has unreadable meta: {exc}") from None
    if not isinstance(meta, dict):
        raise fail("has a malformed 'meta' entry")
    return meta


def read_weights(arrays: dict[str, np.ndarray], model: dict[str, Any], names: tuple[str, ...],
                 fail: Any) -> dict[str, list[np.ndarray]]:
    """The arrays ``{name}_0, {name}_1, ...`` for each of ``names``, popped from ``arrays``.

    ``model`` is the file's description (``sizes``, ``dtype``): every array
    must have the shape ``[W_1, b_1, ...]`` its layer sizes give, that dtype,
    and finite values, else ``fail(message)`` is raised.
    """
    sizes, dtype = model["sizes"], model["dtype"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                       for s in sizes)):
        raise fail(f"has layer sizes {sizes!r}")
    if dtype not in ("float32", "float64"):
        raise fail(f"has dtype {dtype!r}")
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        shapes += [(fan_in, fan_out), (fan_out,)]
    found: dict[str, list[np.ndarray]] = {}
    for name in names:
        found[name] = []
        for i, shape in enumerate(shapes):
            array = arrays.pop(f"{name}_{i}", None)
            if array is None or array.shape != shape or array.dtype != np.dtype(dtype):
                got = "nothing" if array is None else f"{array.dtype} {array.shape}"
                raise fail(f"has {got} for {name}_{i}, expected {dtype} {shape} "
                           f"from sizes {sizes}")
            if not np.isfinite(array).all():
                raise fail(f"has non-finite values in {name}_{i}")
            found[name].append(array)
    return found


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
    lengths = {"iteration_loss": history["iterations"]}
    for name in ("epoch_loss", "epoch_accuracy", "epoch_seconds", "steps_at_epoch_end",
                 "iterations_at_epoch_end", "samples_at_epoch_end"):
        lengths[name] = history["epochs"]
    for name, length in lengths.items():
        if len(history[name]) != length:
            raise ck.fail(f"has {len(history[name])} values of history {name}, expected {length}")
    for name in ("val_loss", "val_accuracy", "b_simple"):
        if len(history[name]) not in (0, history["epochs"]):
            raise ck.fail(f"has {len(history[name])} values of history {name}")
    return history
