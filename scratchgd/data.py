"""The data set and the one data loader every optimizer draws from.

Vocabulary (from the article):

* **data set** — features ``X: (n, d)`` and labels ``y: (n,)`` (integer classes)
  or targets ``y: (n, k)`` (real values).
* **batch size** — rows per iteration; ``None`` means the whole data set.
* **iteration** — one item of ``iter(loader)``: one batch.
* **epoch** — one full pass of ``iter(loader)``: every row exactly once
  (unless drawn with replacement), in a fresh random order if ``shuffle``.

The loader shuffles an index array, never the data, and gathers one batch at a
time, so ``X`` may be a memory map far larger than memory.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator

import numpy as np

from . import _checks, distributed, io
from .io import PathLike

__all__ = ["CHUNK_SIZE", "DataLoader", "Dataset"]

Index = slice | np.ndarray

CHUNK_SIZE = 1024
"""Default rows per block of ``shuffle="chunks"``."""


class Dataset:
    """Features and labels (or targets) of ``n`` samples.

    Parameters
    ----------
    X : array-like, (n, d)
        Real-valued features, all finite. Kept as given (no copy), so a
        memory-mapped array stays on disk.
    y : array-like, (n,) or (n, k)
        ``(n,)``: integer class labels ``>= 0`` (whole-number floats are
        accepted and converted). ``(n, k)``: real-valued regression targets.

    Raises
    ------
    TypeError
        If ``X`` or ``y`` are not real-valued arrays.
    ValueError
        If the shapes disagree, the data set is empty, a value is NaN or inf,
        or a label is negative or not a whole number.

    Other Parameters
    ----------------
    share : (int, int)
        ``(p, P)``: check the values (finite, labels) of the ``p``-th of ``P``
        contiguous shares of the rows only (:func:`scratchgd.distributed.shard`);
        the caller vouches for the others. Shapes are always checked whole. The
        ranks of a data-parallel run each check their share this way, the
        verdicts agreed by :func:`scratchgd.distributed.checked_in_shares`. The
        default ``(0, 1)`` checks every row.
    comm : mpi4py communicator, optional
        Deprecated (``DeprecationWarning``): the ranks' agreement on the data
        belongs to the data-parallel layer. ``Dataset(X, y, comm=comm)`` is
        ``checked_in_shares(lambda share: Dataset(X, y, share=share), comm)``.

    Examples
    --------
    >>> data = sg.Dataset(np.zeros((6, 2)), np.array([0, 1, 2, 0, 1, 2]))
    >>> len(data), data.X.shape, data.y.shape
    (6, (6, 2), (6,))
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, comm: object | None = None,
                 share: tuple[int, int] = (0, 1)) -> None:
        _deprecated_comm("Dataset(X, y, comm=...)", comm)
        self.X, self.y = _checked(X, y, comm, ("X", "y"), share)

    @classmethod
    def _read(cls, X: np.ndarray, y: np.ndarray, comm: object | None,
              names: tuple[str, str], share: tuple[int, int] = (0, 1)) -> Dataset:
        """``cls(X, y, comm, share)`` for arrays read from files: its refusals name them by ``names``."""
        data = cls.__new__(cls)
        data.X, data.y = _checked(X, y, comm, names, share)
        return data

    @classmethod
    def from_npy(cls, x_path: PathLike, y_path: PathLike, mmap: bool = True,
                 comm: object | None = None, share: tuple[int, int] = (0, 1)) -> Dataset:
        """``X`` and ``y`` from two ``.npy`` files, memory-mapped read-only if ``mmap``.

        With ``mmap`` nothing is loaded whole: the constructor's checks read the
        file once in blocks of rows (of ``share`` only, see :class:`Dataset`),
        and the data loader reads one batch at a time. ``comm``: deprecated, as
        :class:`Dataset`'s.
        """
        _deprecated_comm("Dataset.from_npy(..., comm=...)", comm)
        return cls._read(io.read_npy(x_path, mmap), io.read_npy(y_path, mmap), comm,
                         (f"X ({x_path})", f"y ({y_path})"), share)

    @classmethod
    def from_npz(cls, path: PathLike, x_key: str = "X", y_key: str = "y") -> Dataset:
        """Arrays ``x_key`` and ``y_key`` of a ``.npz`` archive (read into memory)."""
        return cls._read(*io.read_npz(path, x_key, y_key), None,
                         (f"X ({path}, array {x_key!r})", f"y ({path}, array {y_key!r})"))

    @classmethod
    def from_csv(cls, path: PathLike, label_column: int = -1, header: bool | None = None,
                 delimiter: str | None = None, targets: bool = False) -> Dataset:
        """A table of numbers; column ``label_column`` holds the labels or target (see ``io.read_csv``).

        Comma- or whitespace-separated (``delimiter=None`` detects which), plain
        or gzipped, a header line detected (``header=None``) or as ``header`` says.
        The column is class labels if it holds whole numbers ``>= 0``, else a
        regression target ``(n, 1)``; ``targets=True`` makes it a target always.
        """
        return cls._read(*io.read_csv(path, label_column, header, delimiter, targets), None,
                         (f"X ({path})", f"y ({path}, column {label_column})"))

    @classmethod
    def from_idx(cls, images_path: PathLike, labels_path: PathLike, scale: bool = True) -> Dataset:
        """MNIST / Fashion-MNIST IDX files, gzipped or not; ``X = pixels / 255`` (float32) if ``scale``.

        ``X`` has shape ``(n, rows * cols)``. ``scale=False`` keeps the raw
        pixels (0..255), memory-mapped when the file is uncompressed.
        """
        return cls._read(*io.read_idx_pair(images_path, labels_path, scale), None,
                         (f"X ({images_path})", f"y ({labels_path})"))

    @classmethod
    def from_file(cls, data_path: PathLike, labels_path: PathLike | None = None,
                  comm: object | None = None, header: bool | None = None,
                  targets: bool = False, share: tuple[int, int] = (0, 1)) -> Dataset:
        """Any of the formats above, chosen by the file's extension (see ``io.read_any``).

        Text tables (``.csv``, ``.txt``, either gzipped as ``.gz``) hold the
        labels in their last column, or come with ``labels_path``, a second
        table or ``.npy`` file of one row per row of features; ``header`` says
        whether their first line names the columns (``None``: detected).
        ``y`` is class labels ``(n,)`` when it is one column of whole numbers
        ``>= 0``, else regression targets ``(n, k)``; ``targets=True`` reads it
        as targets whatever its values (see ``io.labels_or_targets``).
        ``share``: check that share of the rows only (see :class:`Dataset`);
        ``comm``: deprecated, as :class:`Dataset`'s.
        """
        _deprecated_comm("Dataset.from_file(..., comm=...)", comm)
        return cls._read(*io.read_any(data_path, labels_path, header, targets), comm,
                         (f"X ({data_path})", f"y ({labels_path or data_path})"), share)

    def mapped(self) -> bool:
        """Whether ``X`` or ``y`` is (a view of) a memory map of a file."""
        return any(io.mapped_file(arr) is not None for arr in (self.X, self.y))

    def check_files(self) -> None:
        """Raise ``OSError`` if a file ``X`` or ``y`` is memory-mapped from has shrunk.

        Reading a memory map past its file's end kills the process (SIGBUS),
        so :func:`scratchgd.fit` calls this after every span: a file truncated
        under a run ends it with a message instead. Best effort: a file that
        shrinks while a span runs can still end it by SIGBUS.
        """
        for name, arr in (("X", self.X), ("y", self.y)):
            mapped = io.mapped_file(arr)
            if mapped is None:
                continue
            filename, needed = mapped
            try:
                size = os.stat(filename).st_size
            except OSError as exc:
                raise OSError(f"{filename}, memory-mapped as {name}: {exc.strerror} "
                              f"during training") from None
            if size < needed:
                raise OSError(f"{filename}, memory-mapped as {name}: shrank to {size} bytes "
                              f"during training, but {name} needs its first {needed}")

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: Index) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``index`` (a slice or an index array) as ``(X, y)``."""
        return self.X[index], self.y[index]

    @property
    def n_features(self) -> int:
        """``d``, the width of ``X``."""
        return self.X.shape[1]

    @property
    def is_classification(self) -> bool:
        """True when ``y`` holds integer class labels."""
        return self.y.ndim == 1

    @property
    def n_classes(self) -> int | None:
        """``max(y) + 1`` for class labels, ``None`` for regression targets."""
        return int(self.y.max()) + 1 if self.is_classification else None

    def __repr__(self) -> str:
        return f"Dataset(X={self.X.shape} {self.X.dtype}, y={self.y.shape} {self.y.dtype})"


def _deprecated_comm(call: str, comm: object | None) -> None:
    """Warn that ``comm=`` is deprecated, if given."""
    if comm is not None:
        warnings.warn(f"{call} is deprecated: the ranks' agreement on the data belongs to the "
                      f"data-parallel layer; use scratchgd.distributed.checked_in_shares("
                      f"lambda share: Dataset(X, y, share=share), comm)", DeprecationWarning,
                      stacklevel=3)


def _checked(X: np.ndarray, y: np.ndarray, comm: object | None, names: tuple[str, str],
             share: tuple[int, int] = (0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_validated` of ``share``'s rows, or (deprecated ``comm``) each rank's, agreed."""
    if (not isinstance(share, tuple) or len(share) != 2
            or not all(isinstance(v, int | np.integer) for v in share)
            or not 0 <= share[0] < share[1]):
        raise ValueError(f"share must be (p, P), whole numbers with 0 <= p < P, got {share!r}")
    if comm is None:
        return _validated(X, y, *share, names)
    return distributed.checked_in_shares(lambda mine: _validated(X, y, *mine, names), comm)


def _validated(X: np.ndarray, y: np.ndarray, rank: int, size: int,
               names: tuple[str, str] = ("X", "y")) -> tuple[np.ndarray, np.ndarray]:
    """:class:`Dataset`'s checks; the values of rank ``rank``'s share of rows only.

    Shapes are checked whole; finiteness and labels on the rows
    ``shard(0, n, rank, size)`` (all of them for ``size == 1``). Returns ``X``
    and ``y``, whole-number float labels converted to int64. Messages call
    the arrays ``names`` (the readers add the file they came from).
    """
    xn, yn = names
    X = _checks.real_matrix(xn, X, ndim=(2,))
    y = _checks.real_matrix(yn, y, ndim=(1, 2))
    if len(X) != len(y):
        raise ValueError(f"{xn} and {yn} must have the same number of rows, "
                         f"got X {X.shape} and y {y.shape}")
    if len(X) == 0 or X.shape[1] == 0:
        raise ValueError(f"{xn} must have at least one row and one column, got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError(f"{yn} must have at least one column, got shape {y.shape}")
    lo, hi = distributed.shard(0, len(X), rank, size)
    _checks.all_finite(xn, X[lo:hi], lo)
    _checks.all_finite(yn, y[lo:hi], lo)
    if y.ndim == 1 and hi > lo:
        mine = y[lo:hi]
        if mine.dtype.kind in "bf":
            if not _checks.whole_numbers(mine):
                raise ValueError(f"{yn} with one dimension holds class labels and must be whole "
                                 "numbers; pass regression targets as shape (n, k)")
            largest = max(-float(mine.min()), float(mine.max()))   # streams; no |y| copy
            if largest > 2**53:
                raise ValueError(f"{yn} class labels must be below 2**53, found {largest}")
        if mine.min() < 0:
            raise ValueError(f"{yn} class labels must be >= 0, found {mine.min()}")
    if y.ndim == 1 and y.dtype.kind in "bf":
        y = y.astype(np.int64)
    return X, y


class DataLoader:
    """Iterate over a :class:`Dataset` in batches; one pass is one epoch.

    Parameters
    ----------
    dataset : Dataset
    batch_size : int or None
        Rows per batch. ``None`` means all ``n`` rows (full batch).
    shuffle : bool or "chunks"
        ``True``: draw a fresh random permutation of the rows at the start of
        every epoch. ``False``: the rows come in order, as contiguous slices (no
        copy). ``"chunks"``: cut the rows into contiguous blocks of
        ``chunk_size``, shuffle the order of the blocks and the rows within each
        block, every epoch. A batch then reads from one or two blocks of the
        file instead of from all over it, which a memory-mapped file on disk
        serves with sequential reads; the price is less randomness: rows of
        one block travel together, so if the file is sorted (say by class) the
        batches are too. Shuffle such a file once on disk, or use a block much
        larger than a batch.
    chunk_size : int
        Rows per block for ``shuffle="chunks"``.
    drop_last : bool
        Drop the last batch if it is shorter than ``batch_size``.
    replacement : bool
        Draw every batch's rows uniformly with replacement instead of walking a
        permutation; an "epoch" is then ``len(loader)`` such draws and need not
        show every row.
    seed : int
        Seed of the loader's one ``np.random.Generator``.

    Notes
    -----
    ``len(loader)`` is the number of iterations per epoch, as PyTorch defines
    it: ``ceil(n / batch_size)``, or ``floor(n / batch_size)`` with
    ``drop_last``. Only the last batch may be short.

    Examples
    --------
    >>> data = sg.Dataset(np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 0]))
    >>> loader = sg.DataLoader(data, batch_size=2, seed=0)
    >>> len(loader)                                  # iterations per epoch: ceil(5 / 2)
    3
    >>> [len(y) for X, y in loader]                  # one epoch: only the last batch is short
    [2, 2, 1]
    >>> sorted(int(x) for X, y in loader for x in X[:, 0])   # every row once, in a fresh order
    [0, 2, 4, 6, 8]
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = None, shuffle: bool | str = True,
                 drop_last: bool = False, replacement: bool = False, seed: int = 0,
                 chunk_size: int = CHUNK_SIZE) -> None:
        _checks.instance("dataset", dataset, Dataset)
        self.dataset = dataset
        self.batch_size = _checks.positive_int("batch_size", batch_size, allow_none=True)
        self.shuffle = _checks.shuffle_mode("shuffle", shuffle)
        self.chunk_size = _checks.positive_int("chunk_size", chunk_size)
        self.drop_last = _checks.boolean("drop_last", drop_last)
        self.replacement = _checks.boolean("replacement", replacement)
        self.rng = np.random.default_rng(_checks.seed("seed", seed))

    @property
    def rows_per_batch(self) -> int:
        """The batch size in rows (``n`` for a full batch, never more than ``n``)."""
        n = len(self.dataset)
        return n if self.batch_size is None else min(self.batch_size, n)

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size or len(self.dataset)
        return n // b if self.drop_last else math.ceil(n / b)

    def epoch_order(self) -> np.ndarray | None:
        """Draw the row order of one epoch: the rows its batches take, in turn.

        A fresh permutation of ``0..n-1`` with ``shuffle=True``; with
        ``shuffle="chunks"`` the blocks ``[s, s + c)``, ``s = 0, c, 2c, ...``,
        in random order, each block's rows in random order (still a permutation);
        ``len(loader) * b`` rows drawn uniformly with ``replacement``; ``None``
        (rows in order, read as contiguous slices) otherwise. Advances the
        loader's generator, so each call draws the next epoch.
        """
        n = len(self.dataset)
        if self.replacement:
            return self.rng.integers(0, n, size=len(self) * self.rows_per_batch)
        if self.shuffle != "chunks":
            return self.rng.permutation(n) if self.shuffle else None
        order, filled = np.empty(n, dtype=np.intp), 0
        for start in self.rng.permutation(np.arange(0, n, self.chunk_size)):
            size = min(self.chunk_size, n - start)
            order[filled:filled + size] = start + self.rng.permutation(size)
            filled += size
        return order

    def batch_index(self, order: np.ndarray | None, iteration: int) -> Index:
        """Rows of batch ``iteration`` (0-based) of an epoch drawn as ``order``.

        Batch ``i`` takes positions ``[i b, min((i + 1) b, n))`` of the order;
        only the last batch can be short.
        """
        b = self.rows_per_batch
        start = iteration * b
        if order is None:
            return slice(start, min(start + b, len(self.dataset)))
        return order[start:start + b]

    def batch_bounds(self, order: np.ndarray | None) -> np.ndarray:
        """Where each batch of an epoch drawn as ``order`` starts, and where the last ends.

        Batch ``i`` takes positions ``[bounds[i], bounds[i + 1])`` of the order
        (the same rows as :meth:`batch_index`): ``bounds[i] = min(i b, m)`` for
        ``i = 0..len(loader)``, ``m`` the length of ``order`` (``n`` for ``None``).
        """
        total = len(self.dataset) if order is None else len(order)
        return np.minimum(np.arange(len(self) + 1) * self.rows_per_batch, total)

    def batch_indices(self) -> Iterator[Index]:
        """One epoch of row indices: a slice or an index array per batch."""
        order = self.epoch_order()
        for iteration in range(len(self)):
            yield self.batch_index(order, iteration)

    def batches(self, order: np.ndarray | None, start: int = 0, stop: int | None = None,
                y: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches ``start .. stop - 1`` (0-based) of an epoch drawn as ``order``, as ``(X, y)``.

        Batch ``i`` is the rows :meth:`batch_index` gives, ``X[index]`` and
        ``y[index]``: the items of ``for X, y in loader`` (which is
        ``batches(epoch_order())``), here from any point of the epoch, as
        :func:`scratchgd.fit` needs when it resumes mid-epoch. ``stop``
        defaults to ``len(loader)``; ``y`` replaces the data set's labels (the
        run's prepared targets, one row per row of ``X``). The rows of an
        index array are a fresh copy (``order`` not ``None``); those of a
        slice are a view.
        """
        y = self.dataset.y if y is None else y
        for iteration in range(start, len(self) if stop is None else stop):
            index = self.batch_index(order, iteration)
            yield self.dataset.X[index], y[index]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of ``(X_batch, y_batch)`` pairs: :meth:`batches` of a fresh :meth:`epoch_order`."""
        yield from self.batches(self.epoch_order())

    def __repr__(self) -> str:
        return (f"DataLoader(n={len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle!r}, drop_last={self.drop_last}, iterations={len(self)})")
