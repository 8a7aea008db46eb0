"""Reading data sets from files: ``.npy``, ``.npz``, text tables (CSV, TXT) and IDX (MNIST).

Every reader returns ``(X, y)`` arrays for :class:`scratchgd.Dataset`, whose
classmethods ``from_npy``, ``from_npz``, ``from_csv``, ``from_idx`` and
``from_file`` call them. Nothing is ever unpickled (``allow_pickle=False``),
and a file that is truncated, corrupt or of the wrong kind raises a
``ValueError`` that names the file (and for a text table, the line).

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

import gzip
import itertools
import math
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from . import _checks

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


def _gzipped(path: PathLike) -> bool:
    """True if the file starts with gzip's magic bytes ``1f 8b`` (its content decides, not its name)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_text(path: PathLike) -> TextIO:
    """``path`` opened for reading text, decompressed if it is gzipped (:func:`_gzipped`).

    ``X.csv.gz`` and a compressed file without the suffix read alike.
    """
    if _gzipped(path):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 (the caller closes it)


def _content_lines(fh: TextIO) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line holding more than blanks and a ``#`` comment.

    Line numbers count from 1 and include skipped lines, as an editor shows them.
    """
    for number, line in enumerate(fh, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            yield number, text


def _numbers(line: str, delimiter: str | None) -> bool:
    """True if every field of ``line`` (split at ``delimiter``; at blanks for ``None``) is a number."""
    try:
        [float(field) for field in line.split(delimiter)]
    except ValueError:
        return False
    return True


def _delimiter_of(lines: list[str]) -> str | None:
    """The delimiter of a table whose first content lines are ``lines``: ``","`` or ``None`` (blanks).

    The first line whose fields are all numbers when split at commas (and
    holding one) decides ``","``; one that is all numbers split at blanks decides
    ``None``. A header line (not all numbers either way) leaves the decision to
    the next line; if no line decides, a comma anywhere means ``","``.
    """
    for line in lines:
        if "," in line and _numbers(line, ","):
            return ","
        if _numbers(line, None):
            return None
    return "," if any("," in line for line in lines) else None


def _describe(delimiter: str | None) -> str:
    return {",": "comma-separated", None: "whitespace-separated"}.get(delimiter,
                                                                       f"delimiter {delimiter!r}")


def read_table(path: PathLike, header: bool | None = None,
               delimiter: str | None = None) -> np.ndarray:
    """Every column of a text file of numbers, ``(n, columns)`` float64, in memory.

    The file may be gzipped (``_open_text``). Blank lines and ``#``
    comments are skipped. ``delimiter``: ``None`` detects it, a comma if the
    first line of numbers is comma-separated, else runs of blanks (spaces or
    tabs); any other string is used as given. ``header``: ``True`` skips the
    first line that is not blank or a comment, ``False`` reads it as data,
    ``None`` skips it only if one of its fields is not a number.

    Raises
    ------
    ValueError
        Naming the file and the line: a line whose number of fields differs
        from the first row's, a field that is not a number, a file without a
        row of numbers, or one that is not gzip or UTF-8 text.
    """
    path = Path(path)
    try:
        with _open_text(path) as fh:
            first = list(itertools.islice(_content_lines(fh), 2))
        if not first:
            raise ValueError(f"{path}: no rows of numbers (the file is empty, or blank lines "
                             f"and # comments only)")
        if delimiter is None:
            delimiter = _delimiter_of([line for _, line in first])
        if header is None:
            header = not _numbers(first[0][1], delimiter)
        skip = first[0][0] if header else 0   # loadtxt's skiprows counts comment lines too
        with _open_text(path) as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "input contained no data"
            try:
                table = np.loadtxt(fh, delimiter=delimiter, skiprows=skip, ndmin=2,
                                   dtype=np.float64)
            except ValueError as exc:
                raise ValueError(_first_bad_line(path, skip, delimiter)
                                 or f"{path}: not a table of numbers: {exc}") from None
    except FileNotFoundError:
        raise
    except (OSError, EOFError, UnicodeDecodeError) as exc:   # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a readable text table (plain or gzipped UTF-8 text): "
                         f"{exc}") from None
    if len(table) == 0:
        raise ValueError(f"{path}: no rows of numbers after the header line {skip}")
    return table


def _first_bad_line(path: Path, skip: int, delimiter: str | None) -> str | None:
    """What is wrong with the first faulty line of the table after line ``skip``, or ``None``.

    Faults: another number of fields than the first row, or a field that is
    not a number. Read again line by line only once the fast reader has failed.
    """
    width = None
    with _open_text(path) as fh:
        for number, line in _content_lines(fh):
            if number <= skip:
                continue
            fields = line.split(delimiter)
            if width is None:
                width, first = len(fields), number
            elif len(fields) != width:
                return (f"{path}, line {number}: {len(fields)} field"
                        f"{'s' * (len(fields) != 1)}, but line {first} has {width} "
                        f"({_describe(delimiter)})")
            for column, field in enumerate(fields, 1):
                try:
                    float(field)
                except ValueError:
                    return (f"{path}, line {number}: field {column}, {field.strip()!r}, is not a "
                            f"number ({_describe(delimiter)})")
    return None


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
    uint32 sizes, then the values, big-endian, row-major. Gzipped files
    (recognised by their content, not their name) are read into memory; an
    uncompressed file is memory-mapped read-only at the header's end if ``mmap``.
    """
    path = Path(path)
    gzipped = _gzipped(path)
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


def _kind(path: Path) -> str:
    """``"idx"`` for IDX files, else the suffix before any ``.gz``: ``X.csv.gz`` is ``".csv"``."""
    if _idx_name(path):
        return "idx"
    name = path.name.lower()
    return Path(name.removesuffix(".gz")).suffix if name.endswith(".gz") else path.suffix.lower()


TEXT = (".csv", ".txt")
"""Suffixes of text tables (each optionally followed by ``.gz``)."""

FORMATS = ".npy, .npz, .csv or .txt (optionally .gz), or IDX (-ubyte, .idx, optionally .gz)"


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
    raise ValueError(f"{data_path}: unknown file type {kind!r}; expected {FORMATS}")


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
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "X" not in archive.files:
                    raise ValueError(f"{path}: no array named 'X'; the archive holds "
                                     f"{archive.files}")
                return archive["X"]
        except (EOFError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable .npz archive: {exc}") from None
    if kind in TEXT:
        return read_table(path, header)
    raise ValueError(f"{path}: unknown file type {kind!r}; expected {FORMATS}")
