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
:func:`read_npz`, from a regular file only, which checks the zip's directory,
each entry's header and size, and their sizes against what ``meta`` implies
(:func:`model_entry_bytes`) before it reads any entry, with
``allow_pickle=False``: a file that holds pickled objects, is truncated or
forged, declares more than it may, or has weights of the wrong shape is
refused with a ``ValueError`` that names it, and nothing from it is ever run.
Writing is atomic (:func:`write_npz_atomic`).

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
import struct
import tempfile
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _files
from .scaling import Scaling

MODEL_FORMAT = "scratchgd-model"
MODEL_VERSION = 2
"""Version 2 added the target scaling (``target_mean``, ``target_std``); 1 had none."""


META_CAP = 1 << 20
"""Bytes the JSON text ``meta`` of a model file or checkpoint may hold (1 MiB)."""
HEADER_CAP = 1 << 16
"""Bytes of an entry's ``.npy`` header read at most (NumPy writes a few hundred)."""
DIRECTORY_CAP = 1 << 20
"""Bytes of a file's zip central directory read at most (about 20,000 entries)."""
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
"""The zip compression methods read: what ``np.savez`` and ``np.savez_compressed`` write."""


def read_npz(path: str | os.PathLike, what: str = "file", content: bytes | None = None,
             expected: Callable[[np.ndarray | None], dict[str, int]] | None = None
             ) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, read safely, in memory its entries declare.

    ``content``: the file's bytes, already read (rank 0 reads a checkpoint and
    broadcasts it); ``path`` then only names it in messages. The same checks apply.

    Before any array is read:

    1. ``path`` must be a regular file (:func:`scratchgd._files.open_regular`:
       a FIFO, a device, a folder is refused saying what it is, and never
       opened for reading, where a FIFO would block);
    2. its zip central directory (at most ``DIRECTORY_CAP`` bytes) must list
       only stored or deflated entries (``METHODS``; bzip2 and LZMA are
       refused: how much memory they take to decompress is not bounded by
       what they declare), each named ``*.npy``, no name twice;
    3. each entry's ``.npy`` header (at most ``HEADER_CAP`` bytes) must declare
       plain values (no Python objects, which NumPy could only read by
       unpickling) of a shape whose bytes, with the header, are exactly the
       entry's uncompressed size in the central directory;
    4. with ``expected``: it is called with the ``meta`` entry (a 0-d text
       array of at most ``META_CAP`` bytes, read first; ``None`` if there is
       none) and returns the most bytes each entry may hold by what ``meta``
       says (layer sizes, rows, iterations); an entry it does not list, or one
       larger, is refused. It raises its own ``ValueError`` for a ``meta`` it
       cannot use;
    5. the entries' sizes together must fit :func:`scratchgd._files.memory_limit`.

    Then each array is read with ``allow_pickle=False`` into exactly its declared size.

    Raises
    ------
    ValueError
        Naming ``what`` and ``path``, if the file is not a readable ``.npz`` of
        plain arrays (or is not a regular file). A missing file raises
        ``FileNotFoundError``.
    """
    def refused(exc: BaseException) -> ValueError:
        reason = str(exc) or type(exc).__name__
        return ValueError(f"{what} {os.fspath(path)!r} is not a readable .npz of plain "
                          f"arrays: {reason}")

    with contextlib.ExitStack() as stack:
        try:
            fh = stack.enter_context(io.BytesIO(content) if content is not None
                                     else _files.open_regular(path))
        except ValueError as exc:  # a FIFO, a device, a folder: says which
            raise ValueError(f"{what} {exc}") from None
        try:
            _check_directory_size(fh)
            archive = stack.enter_context(zipfile.ZipFile(fh))
            infos = _check_entries(archive)
            sizes = {name: _check_npy_header(archive, info) for name, info in infos.items()}
            if "meta" in infos and infos["meta"].file_size > META_CAP:
                raise ValueError(f"its meta entry holds {infos['meta'].file_size} bytes, more "
                                 f"than the cap of {META_CAP}")
            meta = _read_entry(archive, infos["meta"]) if "meta" in infos else None
        except Exception as exc:  # zip, zlib, header, EOF, recursion and memory errors alike
            raise refused(exc) from None
        most = None if expected is None else expected(meta)  # raises its own errors
        try:
            if most is not None:
                _check_expected(sizes, most)
            total = sum(sizes.values())
            limit = _files.memory_limit()
            if total > limit:
                raise ValueError(f"its entries declare {total} bytes, more than the {limit} "
                                 f"this process may use")
            return {name: _read_entry(archive, info) for name, info in infos.items()}
        except Exception as exc:
            raise refused(exc) from None


def _check_directory_size(fh: Any) -> None:
    """Refuse a zip whose end record declares a central directory over ``DIRECTORY_CAP`` bytes."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - (22 + 0xFFFF)))
    tail = fh.read()
    end = tail.rfind(b"PK\x05\x06")
    if end >= 0 and len(tail) >= end + 22:
        directory = struct.unpack("<L", tail[end + 12:end + 16])[0]
        if DIRECTORY_CAP < directory < 0xFFFFFFFF:  # (0xFFFFFFFF: a zip64 record, checked below)
            raise ValueError(f"its central directory declares {directory} bytes, more than "
                             f"the {DIRECTORY_CAP} a model file or checkpoint needs")
    fh.seek(0)


def _check_entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The entries by name (``.npy`` dropped), each stored or deflated, no name twice."""
    infos: dict[str, zipfile.ZipInfo] = {}
    listed = archive.infolist()
    if len(listed) > DIRECTORY_CAP // 46:  # 46 bytes: the smallest central directory record
        raise ValueError(f"it lists {len(listed)} entries")
    for info in listed:
        if info.compress_type not in METHODS:
            raise ValueError(f"entry {info.filename!r} is compressed with method "
                             f"{info.compress_type} (only stored and deflated entries, what "
                             f"np.savez and np.savez_compressed write, are read)")
        if not info.filename.endswith(".npy"):
            raise ValueError(f"entry {info.filename!r} is not a .npy array")
        name = info.filename[:-4]
        if name in infos:
            raise ValueError(f"entry {info.filename!r} appears twice")
        infos[name] = info
    return infos


def _check_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes of the array the entry ``info`` declares, after its header is checked."""
    with archive.open(info) as member:  # only the header is read: magic, its length, itself
        start = member.read(8)
        size = member.read(2 if start[6:7] == b"\x01" else 4)
        length = int.from_bytes(size, "little")
        if length > HEADER_CAP:
            raise ValueError(f"entry {info.filename!r} declares a .npy header of {length} bytes")
        head = io.BytesIO(start + size + member.read(length))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(head)
    else:
        raise ValueError(f"entry {info.filename!r} has unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"entry {info.filename!r} holds Python objects (pickled data); "
                         f"refusing to load it")
    if any(dim < 0 for dim in shape):
        raise ValueError(f"entry {info.filename!r} declares the shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if head.tell() + nbytes != info.file_size:
        problem = "truncated" if head.tell() + nbytes > info.file_size else "longer"
        raise ValueError(f"entry {info.filename!r} declares shape {shape} of {dtype} "
                         f"({nbytes} bytes) but holds {info.file_size - head.tell()} bytes: "
                         f"{problem}")
    return nbytes


def _check_expected(sizes: dict[str, int], most: dict[str, int]) -> None:
    """Each entry at most the bytes ``most`` allows it (what the file's ``meta`` implies)."""
    for name, nbytes in sizes.items():
        if name not in most:
            raise ValueError(f"it holds the unexpected entry {name!r}")
        if nbytes > most[name]:
            raise ValueError(f"entry {name!r} declares {nbytes} bytes, more than the "
                             f"{most[name]} its meta implies")


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """The array of the entry ``info`` (header checked), read with ``allow_pickle=False``."""
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` so that it is never half-written.

    Writes ``.<name>.<random>.tmp`` in the same folder, flushes and fsyncs it,
    renames it over ``path`` (atomic on POSIX and Windows), then fsyncs the
    folder so the rename itself survives a power cut. A process killed before
    the rename leaves the old file untouched (and possibly the temporary file,
    which :func:`remove_temporaries` deletes). A ``path`` that exists and is not
    a regular file (a FIFO, a device, a folder) is refused (``ValueError``), not replaced.
    """
    path = os.fspath(path)
    if os.path.exists(path):  # a FIFO or a device such as /dev/null is never replaced by a file
        _files.regular_size(path)
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


def parse_meta(meta_array: np.ndarray | None, fail: Any) -> dict[str, Any]:
    """The JSON text ``meta`` of a checkpoint or model file (a 0-d text array), as a dict.

    ``fail(message)`` makes the ``ValueError`` that names the file; JSON nested
    too deeply for Python's parser is refused like any other malformed text.
    """
    if meta_array is None or meta_array.dtype.kind != "U" or meta_array.ndim != 0:
        raise fail("has no 'meta' text: it is not a scratchgd file")
    try:
        meta = json.loads(str(meta_array))
    except (ValueError, RecursionError, MemoryError) as exc:
        raise fail(f"has unreadable meta: {str(exc) or type(exc).__name__}") from None
    if not isinstance(meta, dict):
        raise fail("has a malformed 'meta' entry")
    return meta


def read_meta(arrays: dict[str, np.ndarray], fail: Any) -> dict[str, Any]:
    """The JSON text ``meta`` of a checkpoint or model file, as a dict (popped from ``arrays``).

    ``fail(message)`` makes the ``ValueError`` that names the file (:func:`parse_meta`).
    """
    return parse_meta(arrays.pop("meta", None), fail)


def model_entry_bytes(model: Any, fail: Any, names: tuple[str, ...] = ("param",)
                      ) -> dict[str, int]:
    """The most bytes of each entry of a file whose ``meta["model"]`` is ``model``.

    For :func:`read_npz`'s ``expected``: the arrays ``{name}_0, {name}_1, ...``
    of each of ``names`` (weights, momentum buffers) in the shapes the layer
    sizes give (:func:`layer_shapes`), the input and target scaling (float64,
    ``d`` and ``k`` values) and ``meta`` (``META_CAP``).
    """
    if not isinstance(model, dict):
        raise fail("has a malformed 'model' entry")
    shapes = layer_shapes(model, fail)
    itemsize = np.dtype(model["dtype"]).itemsize
    most = {f"{name}_{i}": math.prod(shape) * itemsize for name in names
            for i, shape in enumerate(shapes)}
    d, k = model["sizes"][0], model["sizes"][-1]
    most.update(scale_mean=8 * d, scale_std=8 * d, target_mean=8 * k, target_std=8 * k,
                meta=META_CAP)
    return most


def is_whole(value: Any, low: int, high: float = math.inf) -> bool:
    """Whether a value read from a file's ``meta`` is a whole number in ``[low, high]``.

    JSON's ``true`` reads as a bool, which Python counts as an int: it is not a number here.
    """
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def layer_shapes(model: dict[str, Any], fail: Any) -> list[tuple[int, ...]]:
    """The shapes ``[W_1, b_1, ...]`` of the model a file describes, its sizes and dtype checked."""
    sizes, dtype = model.get("sizes"), model.get("dtype")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(is_whole(s, 1) for s in sizes)):
        raise fail(f"has layer sizes {sizes!r}")
    if dtype not in ("float32", "float64"):
        raise fail(f"has dtype {dtype!r}")
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def read_weights(arrays: dict[str, np.ndarray], model: dict[str, Any], names: tuple[str, ...],
                 fail: Any) -> dict[str, list[np.ndarray]]:
    """The arrays ``{name}_0, {name}_1, ...`` for each of ``names``, popped from ``arrays``.

    ``model`` is the file's description (``sizes``, ``dtype``): every array
    must have the shape ``[W_1, b_1, ...]`` its layer sizes give, that dtype,
    and finite values, else ``fail(message)`` is raised.
    """
    sizes, dtype, shapes = model["sizes"], model["dtype"], layer_shapes(model, fail)
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
