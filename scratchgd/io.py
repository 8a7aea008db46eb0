"""Reading data sets from files: ``.npy``, ``.npz``, text tables (CSV, TXT) and IDX (MNIST).

Every reader returns ``(X, y)`` arrays for :class:`scratchgd.Dataset`, whose
classmethods ``from_npy``, ``from_npz``, ``from_csv``, ``from_idx`` and
``from_file`` call them. Nothing is ever unpickled, only regular files are
opened (:func:`scratchgd._files.open_regular`: a FIFO, a device or a folder is
refused by what it is), and a file that is truncated, corrupt, forged or of
the wrong kind raises a ``ValueError`` that names the file (and for a text
table, the line: :mod:`scratchgd.tables`), never a traceback from deep inside:
sizes are read from the file's header and checked against the file and the
memory this process may use before any data is read.

Text tables are comma- or whitespace-separated (detected), plain or gzipped
(detected by content: ``X.csv.gz``, ``X.txt.gz``), with an optional header
line (detected by a field that is not a number). Features and labels may sit
in one table (the labels its last column) or in two files, as published
tables often come. What ``y`` is, class labels or regression targets, is
decided by :func:`labels_or_targets`.

Which readers keep the data on disk:

* ``.npy`` with ``mmap=True`` and uncompressed IDX files are memory-mapped,
  read-only: the data loader reads only the rows of each batch, so the file
  may be far larger than memory.
* ``.npz``, CSV and gzipped IDX files are read into memory whole.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from pathlib import Path

import numpy as np

from . import _checks, _files, npzfile
from .tables import read_table

PathLike = str | os.PathLike

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
"""IDX type codes (third byte of the magic number) and the big-endian dtypes they mean."""


def read_npy(path: PathLike, mmap: bool = True) -> np.ndarray:
    """One array of real numbers from a ``.npy`` file, memory-mapped read-only if ``mmap``.

    The header is read and checked before any data: the dtype must be real
    numbers (bool, integer or float; never Python objects, so nothing is
    unpickled), the shape's sizes ``>= 0``, and the file must hold exactly the
    bytes the shape declares. With ``mmap`` the array's rows stay on disk until
    indexed; without, the declared size must fit in the memory this process
    may use (:func:`scratchgd._files.memory_limit`) before it is read.
    """
    with _files.named_errors(path), _files.open_regular(path) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read_header(fh)
        except (ValueError, EOFError, SyntaxError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable .npy file: {exc}") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"{path}: holds values of dtype {dtype}, not real numbers "
                             f"(bool, integer or float){_PICKLED * dtype.hasobject}")
        if any(size < 0 for size in shape):
            raise ValueError(f"{path}: the header declares shape {shape}, with a negative size")
        offset, nbytes = fh.tell(), math.prod(shape) * dtype.itemsize
        _check_length(path, ".npy header", f"shape {shape} of {dtype}", offset + nbytes,
                      os.fstat(fh.fileno()).st_size)
        order = "F" if fortran else "C"
        if nbytes == 0:
            return np.empty(shape, dtype, order=order)
        if mmap:
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
        _fits(path, f"shape {shape} of {dtype}", nbytes)
        return _read_into(fh, np.empty(shape, dtype, order=order), path, ".npy header",
                          f"shape {shape} of {dtype}")


_PICKLED = "; objects are pickled data, which scratchgd never loads"


def _check_length(path: PathLike, header: str, declared: str, expected: int, actual: int
                  ) -> None:
    """Refuse a file whose ``actual`` byte count is not the ``expected`` its header declares."""
    if actual != expected:
        raise ValueError(f"{path}: {header} says {declared} ({expected} bytes with the "
                         f"header) but the file holds {actual} bytes: "
                         f"{'truncated' if actual < expected else 'trailing bytes'}")


def _fits(path: PathLike, declared: str, nbytes: int) -> None:
    """Refuse, naming the file, data of ``nbytes`` that the process's memory cannot hold."""
    limit = _files.memory_limit()
    if nbytes > limit:
        raise ValueError(f"{path}: {declared} needs {nbytes / 2**30:.3g} GiB, more than the "
                         f"{limit / 2**30:.3g} GiB of memory this process may use")


def _read_into(stream: object, out: np.ndarray, path: PathLike, header: str,
               declared: str) -> np.ndarray:
    """Fill ``out``'s bytes from ``stream``, as they come (memory grows only with what is read).

    Refuses a stream that ends early, or goes on after them: ``header`` says ``declared``.
    """
    view = memoryview(out.reshape(-1, order="A")).cast("B")
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    if filled < len(view) or stream.read(1):
        raise ValueError(f"{path}: {header} says {declared} ({len(view)} bytes of data) but "
                         f"the data holds {'fewer' if filled < len(view) else 'more'}: "
                         f"{'truncated' if filled < len(view) else 'trailing bytes'}")
    return out


def mapped_file(arr: np.ndarray) -> tuple[str, int] | None:
    """``(file name, bytes needed)`` if ``arr`` is (a view of) a memory map of a file, else ``None``.

    The bytes needed are the map's end in the file: its offset plus its size.
    """
    while isinstance(arr, np.ndarray):
        if isinstance(arr, np.memmap) and isinstance(arr.base, mmap.mmap):
            return arr.filename, arr.offset + arr.nbytes
        arr = arr.base
    return None


def read_npz(path: PathLike, x_key: str = "X", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x_key`` and ``y_key`` of a ``.npz`` archive, read into memory.

    Read by :func:`scratchgd.npzfile.read_npz`, the validated reader of model
    files and checkpoints (every entry's header checked against its size and
    the memory limit before anything is inflated; nothing unpickled).
    """
    with _files.named_errors(path):
        _files.regular_size(path)
        arrays = npzfile.read_npz(path, "data file")
    missing = [key for key in (x_key, y_key) if key not in arrays]
    if missing:
        raise ValueError(f"{path}: no array named {missing[0]!r}; the archive holds "
                         f"{sorted(arrays)} (choose with x_key= and y_key=)")
    for key in (x_key, y_key):
        if arrays[key].dtype.kind not in "biuf":
            raise ValueError(f"{path}: array {key!r} holds values of dtype {arrays[key].dtype}, "
                             f"not real numbers (bool, integer or float)")
    return arrays[x_key], arrays[y_key]


def labels_or_targets(y: np.ndarray, targets: bool = False) -> np.ndarray:
    """``y`` read from a file, as class labels ``(n,)`` or regression targets ``(n, k)``.

    One column (shape ``(n,)`` or ``(n, 1)``) of whole numbers ``>= 0`` is class
    labels, returned as ``(n,)``; anything else (a value with a fraction or
    below 0, or ``k > 1`` columns) is targets, returned as ``(n, k)``, float64
    unless already floating point. ``targets=True`` makes ``y`` targets whatever
    its values: whole-number targets (ages, counts, the diabetes table's
    disease progression) would otherwise be read as classes.
    """
    column = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
    if (not targets and column and y.dtype.kind in "biuf" and _checks.whole_numbers(y)
            and (len(y) == 0 or y.min() >= 0)):
        return y.reshape(len(y))
    if y.ndim == 1:
        y = y[:, None]
    return y.astype(np.float64) if y.dtype.kind in "biu" else y


def read_csv(path: PathLike, label_column: int = -1, header: bool | None = None,
             delimiter: str | None = None, targets: bool = False
             ) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels (or targets) from one text table, read into memory.

    Every field must be a number. Column ``label_column`` (negative counts from
    the end) is ``y``, class labels or a target as :func:`labels_or_targets`
    decides (``targets``); the other columns, in order, are ``X`` (float64).
    ``header`` and ``delimiter``: as :func:`read_table`.
    """
    table = read_table(path, header, delimiter)
    if table.shape[1] < 2:
        raise ValueError(f"{path}: needs a label column and at least one feature column, "
                         f"got {table.shape[1]} column(s) (delimiter={delimiter!r}); with "
                         f"the labels in a file of their own, give both files")
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise ValueError(f"label_column={label_column} is out of range for the "
                         f"{table.shape[1]} columns of {path}")
    label_column %= table.shape[1]
    return (np.delete(table, label_column, axis=1),
            labels_or_targets(table[:, label_column], targets))


def read_idx(path: PathLike, mmap: bool = True) -> np.ndarray:
    """One array from an IDX file (the format of MNIST and Fashion-MNIST).

    Layout: magic number ``00 00 TT NN`` (``TT`` the type code of
    ``IDX_DTYPES``, ``NN`` the number of dimensions), then ``NN`` big-endian
    uint32 sizes, then the values, big-endian, row-major. An uncompressed file
    is memory-mapped read-only at the header's end if ``mmap``, after its size
    is checked against the header's. A gzipped file (recognised by its content,
    not its name) is read into memory: the size the header declares is checked
    against the memory limit before the data, which is read up to that size
    (then the stream must end), inflating with the bound of
    :class:`scratchgd._files.Inflating`.
    """
    path = Path(path)
    with _files.named_errors(path), _files.open_data(path) as (stream, gzipped):
        try:
            head = stream.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_DTYPES:
                raise ValueError(f"{path}: not an IDX file (magic number {head.hex(' ')}, "
                                 f"expected 00 00 TT NN with type TT in "
                                 f"{[f'{code:02x}' for code in IDX_DTYPES]})")
            dtype, ndim = IDX_DTYPES[head[2]], head[3]
            sizes = stream.read(4 * ndim)
            if ndim == 0 or len(sizes) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions)")
            shape = tuple(int(size) for size in np.frombuffer(sizes, ">u4"))
            offset, nbytes = 4 + 4 * ndim, math.prod(shape) * dtype.itemsize
            declared = f"shape {shape} of {dtype}"
            if not gzipped:
                _check_length(path, "IDX header", declared, offset + nbytes,
                              os.fstat(stream.fileno()).st_size)
                if mmap and nbytes:
                    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            _fits(path, declared, nbytes)
            return _read_into(stream, np.empty(shape, dtype), path, "IDX header", declared)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{path}: corrupt gzip stream: {exc}") from None


def read_idx_pair(images_path: PathLike, labels_path: PathLike,
                  scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style images and labels: ``X`` of shape ``(n, rows * cols)``, ``y`` of shape ``(n,)``.

    ``scale=True``: ``X = pixels / 255`` as float32 in ``[0, 1]``, a copy in
    memory (4 bytes per pixel). ``scale=False``: the raw pixels, flattened, and
    memory-mapped when the file is uncompressed (nothing read until a batch is
    drawn; the loader casts each batch to the model's dtype, so values stay in
    ``0..255``).
    """
    X = read_idx_images(images_path, scale)
    labels = read_idx(labels_path)
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: IDX labels need 1 dimension, got shape {labels.shape}")
    if len(X) != len(labels):
        raise ValueError(f"{images_path} holds {len(X)} images but {labels_path} holds "
                         f"{len(labels)} labels")
    return X, np.asarray(labels)


def read_idx_images(path: PathLike, scale: bool = True) -> np.ndarray:
    """IDX images as rows ``(n, rows * cols)``: ``pixels / 255`` (float32) if ``scale``, as
    :func:`read_idx_pair` reads them."""
    images = read_idx(path)
    if images.ndim < 2:
        raise ValueError(f"{path}: IDX images need at least 2 dimensions, "
                         f"got shape {images.shape}")
    X = images.reshape(len(images), -1)
    if scale:
        X = np.divide(X, np.float32(255), dtype=np.float32)
    return X


def _idx_name(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(("ubyte", ".idx")) or ".idx" in name


def _kind(path: Path) -> str:
    """``"idx"`` for IDX files, else the suffix before any ``.gz``: ``X.csv.gz`` is ``".csv"``."""
    if _idx_name(path):
        return "idx"
    name = path.name.lower()
    return Path(name.removesuffix(".gz")).suffix if name.endswith(".gz") else path.suffix.lower()


TEXT = (".csv", ".txt")
"""Suffixes of text tables (each optionally followed by ``.gz``)."""

FORMATS = ".npy, .npz, .csv or .txt (optionally .gz), or IDX (-ubyte, .idx, optionally .gz)"


def _unknown_kind(path: Path, kind: str) -> ValueError:
    """The error for a file of no known kind; first, one that is no regular file says what it is.

    A FIFO, a device or a folder is refused as such (:func:`_files.regular_size`) whatever its
    name, before its name is blamed.
    """
    with contextlib.suppress(FileNotFoundError):
        _files.regular_size(path)
    return ValueError(f"{path}: unknown file type {kind!r}; expected {FORMATS}")


def read_labels(path: PathLike, header: bool | None = None, targets: bool = False) -> np.ndarray:
    """``y`` from a file of its own: ``*.npy`` (memory-mapped) or a text table, as
    :func:`labels_or_targets` reads it (``targets``).
    """
    path = Path(path)
    kind = _kind(path)
    if kind == ".npy":
        return labels_or_targets(read_npy(path), targets)
    if kind in TEXT:
        return labels_or_targets(read_table(path, header), targets)
    raise ValueError(f"{path}: a labels file must be .npy, .csv or .txt (optionally .gz), "
                     f"got {path.name!r}")


def read_any(data_path: PathLike, labels_path: PathLike | None = None,
             header: bool | None = None, targets: bool = False
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a file, or a file of features and one of labels, chosen by extension.

    =============================== ====================================== =================
    ``data_path``                   ``labels_path``                        reader
    =============================== ====================================== =================
    ``*.npy``                       ``*.npy`` or a text table (required)   :func:`read_npy` (mmap)
    ``*.npz``                       none (keys ``X`` and ``y``)            :func:`read_npz`
    ``*.csv``, ``*.txt`` (``.gz``)  none: the last column is ``y``         :func:`read_csv`
    ``*.csv``, ``*.txt`` (``.gz``)  ``*.npy`` or a text table              :func:`read_table`
    ``*-ubyte``, ``*.idx*``         IDX labels (required)                  :func:`read_idx_pair`
    (each optionally ``.gz``)
    =============================== ====================================== =================

    Text tables are comma- or whitespace-separated (detected), plain or
    gzipped, with an optional header line (``header``: as :func:`read_table`,
    for both files). ``y`` is class labels ``(n,)`` or targets ``(n, k)`` as
    :func:`labels_or_targets` decides; ``targets=True`` makes it targets.
    """
    data_path = Path(data_path)
    kind = _kind(data_path)
    if kind in (".npy", "idx") and labels_path is None:
        raise ValueError(f"{data_path}: a {kind} file holds only X; give the labels file too")
    if kind == ".npz" and labels_path is not None:
        raise ValueError(f"{data_path}: a .npz file holds X and y together; "
                         f"do not give a labels file ({labels_path})")
    if kind in (".npz", "idx"):
        X, y = read_npz(data_path) if kind == ".npz" else read_idx_pair(data_path, labels_path)
        return X, labels_or_targets(y, targets)
    if kind in TEXT and labels_path is None:
        return read_csv(data_path, header=header, targets=targets)
    if kind in (".npy", *TEXT):
        X = read_npy(data_path) if kind == ".npy" else read_table(data_path, header)
        y = read_labels(labels_path, header, targets)
        if len(X) != len(y):
            raise ValueError(f"{labels_path} holds {len(y)} rows of labels but {data_path} "
                             f"holds {len(X)} rows of features: one row of labels per row")
        return X, y
    raise _unknown_kind(data_path, kind)


def read_features(path: PathLike, header: bool | None = None) -> np.ndarray:
    """The feature table of a file, for prediction: no labels needed.

    ``*.npy`` (memory-mapped), the array ``X`` of a ``*.npz``, every column of
    a text table (:func:`read_table`: plain or gzipped, comma- or
    whitespace-separated, a header line detected or as ``header`` says), or IDX
    images (scaled as :func:`read_idx_pair` scales them). A table may still
    hold a label column; the caller tells by the column count.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "idx":
        return read_idx_images(path)
    if kind == ".npy":
        return read_npy(path)
    if kind == ".npz":
        with _files.named_errors(path):
            _files.regular_size(path)
            arrays = npzfile.read_npz(path, "data file")
        if "X" not in arrays:
            raise ValueError(f"{path}: no array named 'X'; the archive holds {sorted(arrays)}")
        return arrays["X"]
    if kind in TEXT:
        return read_table(path, header)
    raise _unknown_kind(path, kind)
