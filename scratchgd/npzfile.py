"""Pickle-free ``.npz`` files: the validated reader, the atomic writer, and the model's entries.

Model files (``model.save``, :func:`scratchgd.load_model`) and checkpoints
(:mod:`scratchgd.checkpoint`) are one format family, written and read here:

* the weights ``param_0, param_1, ...`` (``[W_1, b_1, ...]``);
* the input scaling, if any (``scale_mean``, ``scale_std``, float64), and the
  target scaling, if any (``target_mean``, ``target_std``, float64; from
  model format version 2 and checkpoint format version 4);
* one JSON text ``meta`` with the format, its version and the model's
  description ``{"sizes", "activation", "loss", "dtype"}`` (:func:`describe_model`);
  a checkpoint adds the run's state (see :mod:`scratchgd.checkpoint`).

A model file is exactly these entries (format ``MODEL_FORMAT``, version
``MODEL_VERSION``; version 1, without target scaling, is still read), written
by :func:`write_model`. Every file is read by
:func:`read_npz`, which checks each entry's header before reading it with
``allow_pickle=False``: a file that holds pickled objects, is truncated or
forged, or has weights of the wrong shape is refused with a ``ValueError``
that names it, and nothing from it is ever run. Writing is atomic
(:func:`write_npz_atomic`).

This module imports nothing of scratchgd above its foundation (a model is
read through its attributes), so the model itself can save through it.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from . import _checks
from .scaling import Scaling

MODEL_FORMAT = "scratchgd-model"
MODEL_VERSION = 2
"""Version 2 added the target scaling (``target_mean``, ``target_std``); 1 had none."""


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


def describe_model(model: Any) -> dict[str, Any]:
    """The model's description a file stores in ``meta["model"]``: sizes, activation, loss, dtype."""
    return {"sizes": list(model.sizes), "activation": model.activation, "loss": model.loss,
            "dtype": np.dtype(model.dtype).name}


def write_model(path: str | os.PathLike, model: Any) -> None:
    """Write ``model`` (weights, description, input and target scaling) to ``path`` atomically."""
    arrays = model_arrays(model)
    meta = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "model": describe_model(model)}
    arrays["meta"] = np.array(json.dumps(meta))
    write_npz_atomic(path, arrays)


SCALINGS = {"scaling": "scale", "target_scaling": "target"}
"""The model's scalings and the prefix of their entries ``{prefix}_mean``, ``{prefix}_std``."""


def model_arrays(model: Any) -> dict[str, np.ndarray]:
    """The entries that store a model, in a model file and in a checkpoint alike.

    Its weights (``param_0``, ``param_1``, ...), ``model.scaling``
    (``scale_mean``, ``scale_std``) and ``model.target_scaling``
    (``target_mean``, ``target_std``); none for a scaling that is ``None``.
    """
    arrays = {f"param_{i}": p for i, p in enumerate(model.to_host(model.params))}  # NumPy
    for attribute, prefix in SCALINGS.items():
        scaling = getattr(model, attribute)
        if scaling is not None:
            arrays.update({f"{prefix}_mean": scaling.mean, f"{prefix}_std": scaling.std})
    return arrays


def read_scaling(arrays: dict[str, np.ndarray], width: int, fail: Any,
                 prefix: str = "scale") -> Scaling | None:
    """The :class:`~scratchgd.Scaling` stored by :func:`model_arrays` (popped), or ``None``.

    ``prefix``: ``"scale"`` for the input scaling (``width`` = inputs ``d``),
    ``"target"`` for the target scaling (``width`` = outputs ``k``).
    ``fail(message)`` makes the ``ValueError`` that names the file.
    """
    names = (f"{prefix}_mean", f"{prefix}_std")
    mean, std = (arrays.pop(name, None) for name in names)
    if mean is None and std is None:
        return None
    for name, value in zip(names, (mean, std), strict=True):
        if value is None or value.dtype != np.float64 or value.shape != (width,):
            got = "nothing" if value is None else f"{value.dtype} {value.shape}"
            raise fail(f"has {got} for {name}, expected float64 ({width},)")
    try:
        return Scaling(mean, std)
    except ValueError as exc:
        raise fail(f"has an unusable scaling: {exc}") from None


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


def is_whole(value: Any, low: int, high: float = math.inf) -> bool:
    """Whether a value read from a file's ``meta`` is a whole number in ``[low, high]``.

    JSON's ``true`` reads as a bool, which Python counts as an int: it is not a number here.
    """
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def read_weights(arrays: dict[str, np.ndarray], model: dict[str, Any], names: tuple[str, ...],
                 fail: Any) -> dict[str, list[np.ndarray]]:
    """The arrays ``{name}_0, {name}_1, ...`` for each of ``names``, popped from ``arrays``.

    ``model`` is the file's description (``sizes``, ``dtype``): every array
    must have the shape ``[W_1, b_1, ...]`` its layer sizes give, that dtype,
    and finite values, else ``fail(message)`` is raised.
    """
    sizes, dtype = model["sizes"], model["dtype"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(is_whole(s, 1) for s in sizes)):
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
