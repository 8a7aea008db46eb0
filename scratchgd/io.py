"""Reading data sets from files: ``.npy``, ``.npz``, CSV and IDX (MNIST).

Every reader returns ``(X, y)`` arrays for :class:`scratchgd.Dataset`, whose
classmethods ``from_npy``, ``from_npz``, ``from_csv``, ``from_idx`` and
``from_file`` call them. Nothing is ever unpickled (``allow_pickle=False``),
and a file that is truncated, corrupt or of the wrong kind raises a
``ValueError`` that names the file.

Which readers keep the data on disk:

* ``.npy`` with ``mmap=True`` and uncompressed IDX files are memory-mapped,
  read-only: the data loader reads only the rows of each batch, so the file
  may be far larger than memory.
* ``.npz``, CSV and gzipped IDX files are read into memory whole.
"""

from __future__ import annotations

import gzip
import math
import os
import zipfile
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
"""IDX type codes (third byte of the magic number) and the big-endian dtypes they mean."""

GZIP_MAGIC = b"\x1f\x8b"


def read_npy(path: PathLike, mmap: bool = True) -> np.ndarray:
    """One array from a ``.npy`` file, memory-mapped read-only if ``mmap``.

    ``np.load(path, mmap_mode="r", allow_pickle=False)``: with ``mmap`` the
    array's rows stay on disk until indexed, and the file is never loaded whole.
    """
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        # object arrays ("pickled data"), a truncated file, a bad header
        raise ValueError(f"{path}: not a readable .npy file of numbers: {exc}") from None


def read_npz(path: PathLike, x_key: str = "X", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x_key`` and ``y_key`` of a ``.npz`` archive, read into memory."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (x_key, y_key) if key not in archive.files]
            if missing:
                raise ValueError(f"{path}: no array named {missing[0]!r}; the archive holds "
                                 f"{archive.files} (choose with x_key= and y_key=)")
            return archive[x_key], archive[y_key]
    except (EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz archive of numbers: {exc}") from None


def _is_header(line: str, delimiter: str) -> bool:
    """True if some field of ``line`` is not a number (so the line names the columns)."""
    try:
        [float(field) for field in line.split(delimiter)]
    except ValueError:
        return True
    return False


def read_table(path: PathLike, header: bool | None = None, delimiter: str = ",") -> np.ndarray:
    """Every column of a delimited text file of numbers, ``(n, columns)`` float64, in memory.

    ``header``: ``True`` skips the first line, ``False`` reads it as data,
    ``None`` skips it only if one of its fields is not a number.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    if header is None:
        header = _is_header(first, delimiter)
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=int(header), ndmin=2,
                           dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: not a table of numbers: {exc}") from None
    return table


def read_csv(path: PathLike, label_column: int = -1, header: bool | None = None,
             delimiter: str = ",") -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from a delimited text file, read into memory.

    Every field must be a number. Column ``label_column`` (negative counts from
    the end) is ``y``; the other columns, in order, are ``X`` (float64).
    ``header``: as :func:`read_table`.
    """
    table = read_table(path, header, delimiter)
    if table.shape[1] < 2:
        raise ValueError(f"{path}: needs a label column and at least one feature column, "
                         f"got {table.shape[1]} column(s) (delimiter={delimiter!r})")
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise ValueError(f"label_column={label_column} is out of range for the "
                         f"{table.shape[1]} columns of {path}")
    label_column %= table.shape[1]
    return np.delete(table, label_column, axis=1), table[:, label_column]


def read_idx(path: PathLike, mmap: bool = True) -> np.ndarray:
    """One array from an IDX file (the format of MNIST and Fashion-MNIST).

    Layout: magic number ``00 00 TT NN`` (``TT`` the type code of
    ``IDX_DTYPES``, ``NN`` the number of dimensions), then ``NN`` big-endian
    uint32 sizes, then the values, big-endian, row-major. Gzipped files
    (recognised by their content, not their name) are read into memory; an
    uncompressed file is memory-mapped read-only at the header's end if ``mmap``.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == GZIP_MAGIC
    try:
        if gzipped:
            with gzip.open(path, "rb") as fh:
                content = fh.read()
        else:
            with open(path, "rb") as fh:
                content = fh.read(4 + 4 * 255) if mmap else fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt gzip stream: {exc}") from None
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number {content[:4].hex(' ')}, "
                         f"expected 00 00 TT NN with type TT in "
                         f"{[f'{code:02x}' for code in IDX_DTYPES]})")
    dtype, ndim = IDX_DTYPES[content[2]], content[3]
    offset = 4 + 4 * ndim
    if ndim == 0 or len(content) < offset:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions)")
    shape = tuple(int(size) for size in np.frombuffer(content, ">u4", count=ndim, offset=4))
    expected = offset + math.prod(shape) * dtype.itemsize
    actual = path.stat().st_size if not gzipped and mmap else len(content)
    if actual != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} of {dtype} "
                         f"({expected} bytes with the header) but the data holds {actual} bytes: "
                         f"{'truncated' if actual < expected else 'trailing bytes'}")
    if not gzipped and mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return np.frombuffer(content, dtype=dtype, offset=offset).reshape(shape)


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


def read_any(data_path: PathLike, labels_path: PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a file chosen by its extension.

    ========================== ============================ =================
    ``data_path``              ``labels_path``              reader
    ========================== ============================ =================
    ``*.npy``                  ``*.npy`` (required)         :func:`read_npy`, memory-mapped
    ``*.npz``                  none (keys ``X`` and ``y``)  :func:`read_npz`
    ``*.csv``, ``*.txt``       none (last column = label)   :func:`read_csv`
    ``*-ubyte``, ``*.idx*``    IDX labels (required)        :func:`read_idx_pair`
    (each optionally ``.gz``)
    ========================== ============================ =================
    """
    data_path = Path(data_path)
    suffix = data_path.suffix.lower()
    kind = "idx" if _idx_name(data_path) else suffix
    needs_labels = kind in (".npy", "idx")
    if needs_labels and labels_path is None:
        raise ValueError(f"{data_path}: a {kind} file holds only X; give the labels file too")
    if not needs_labels and labels_path is not None:
        raise ValueError(f"{data_path}: a {suffix} file holds X and y together; "
                         f"do not give a labels file ({labels_path})")
    if kind == ".npy":
        return read_npy(data_path), read_npy(labels_path)
    if kind == ".npz":
        return read_npz(data_path)
    if kind in (".csv", ".txt"):
        return read_csv(data_path)
    if kind == "idx":
        return read_idx_pair(data_path, labels_path)
    raise ValueError(f"{data_path}: unknown file type {suffix!r}; expected .npy, .npz, .csv, "
                     f".txt or IDX (-ubyte, .idx, optionally .gz)")


def read_features(path: PathLike) -> np.ndarray:
    """The feature table of a file, for prediction: no labels needed.

    ``*.npy`` (memory-mapped), the array ``X`` of a ``*.npz``, every column of
    a ``*.csv``/``*.txt`` (a header line skipped), or IDX images (scaled as
    :func:`read_idx_pair` scales them). A table may still hold a label
    column; the caller tells by the column count.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if _idx_name(path):
        return read_idx_images(path)
    if suffix == ".npy":
        return read_npy(path)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "X" not in archive.files:
                    raise ValueError(f"{path}: no array named 'X'; the archive holds "
                                     f"{archive.files}")
                return archive["X"]
        except (EOFError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable .npz archive: {exc}") from None
    if suffix in (".csv", ".txt"):
        return read_table(path)
    raise ValueError(f"{path}: unknown file type {suffix!r}; expected .npy, .npz, .csv, "
                     f".txt or IDX (-ubyte, .idx, optionally .gz)")
