"""Argument checks shared by the public API.

Every public entry point validates its arguments here before it changes any
state, and raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message that names the argument and the value.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator

import numpy as np

from . import _files


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive_int(name: str, value: object, *, allow_none: bool = False) -> int | None:
    """Return ``value`` as an ``int`` >= 1 (or ``None`` if allowed), else raise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_show(value)}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def count_or_epoch(name: str, value: object) -> int | str:
    """Return ``value`` as an ``int`` >= 1, or ``"epoch"`` unchanged, else raise."""
    if isinstance(value, str):
        if value != "epoch":
            raise ValueError(f"{name} must be a positive integer or 'epoch', got {value!r}")
        return value
    return positive_int(name, value)


def seed(name: str, value: object) -> int:
    """Return ``value`` as an ``int`` >= 0 (a seed of ``np.random.default_rng``), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer, got {_show(value)}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")
    return int(value)


def boolean(name: str, value: object) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (Python or NumPy), else raise.

    A string such as ``"False"`` is refused rather than read as true.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {_show(value)}")
    return bool(value)


def path(name: str, value: object) -> str | os.PathLike:
    """Return ``value`` if it is a file path (``str`` or ``os.PathLike``), else raise."""
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise TypeError(f"{name} must be a file path, got {_show(value)}")
    if "\0" in os.fsdecode(os.fspath(value)):
        raise ValueError(f"{name} must not contain a null byte, got {_show(value)}")
    return value


def fits_in_memory(name: str, value: object, nbytes: int) -> None:
    """Raise ``ValueError`` if ``nbytes`` needed for ``value`` exceed the memory this process
    may use (:func:`scratchgd._files.memory_limit`: physical memory, cgroup, ``ulimit -v``).

    Checked before allocating, so an impossible size is a clear error rather
    than a ``MemoryError`` (or a machine that swaps) half-way through.
    """
    limit = _files.memory_limit()
    if nbytes > limit:
        raise ValueError(f"{name}={_show(value)} needs {nbytes / 2**30:.3g} GiB, more than "
                         f"the {limit / 2**30:.3g} GiB of memory this process may use")


def float_dtype(name: str, value: object) -> type:
    """Return ``value`` as ``np.float32`` or ``np.float64`` (any spelling NumPy knows), else raise."""
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError, SyntaxError):  # np.dtype parses strings such as "0\x1b"
        raise TypeError(f"{name} must be float32 or float64, got {_show(value)}") from None
    if dtype.type not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {dtype.name}")
    return dtype.type


def instance(name: str, value: object, cls: type) -> None:
    """Raise ``TypeError`` unless ``value`` is a ``cls`` (a scratchgd class)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a scratchgd.{cls.__name__}, got {type(value).__name__}")


def finite_float(name: str, value: object, *, low: float, low_inclusive: bool,
                 high: float = np.inf, high_inclusive: bool = False) -> float:
    """Return ``value`` as a finite ``float`` inside the given bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_show(value)}")
    value = float(value)
    too_low = value < low if low_inclusive else value <= low
    too_high = value > high if high_inclusive else value >= high
    if not np.isfinite(value) or too_low or too_high:
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be finite and in {lo}{low}, {high}{hi}, got {value}")
    return value


def choice(name: str, value: object, options: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``options``, else raise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {options}, got {_show(value)}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def shuffle_mode(name: str, value: object) -> bool | str:
    """Return ``value`` as ``True``/``False`` or ``"chunks"``, else raise."""
    if isinstance(value, str):
        return choice(name, value, ("chunks",))
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True, False or 'chunks', got {_show(value)}")
    return bool(value)


def real_matrix(name: str, value: object, *, ndim: tuple[int, ...] = (2,)) -> np.ndarray:
    """Return ``value`` as a real-valued array (bool, int or float) of an allowed ndim.

    Object, string and complex arrays are refused: the network only computes
    with real numbers, and a silent conversion would hide a mistake.
    """
    try:
        arr = np.asanyarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, "
                         f"got shape {arr.shape}")
    return arr


BLOCK_ELEMENTS = 1 << 20
"""Elements per block of the chunked checks: their temporaries stay near 8 MB."""


def row_blocks(arr: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, arr[start:start + m])`` for consecutive blocks of rows.

    ``m`` rows hold about ``BLOCK_ELEMENTS`` values, so a check that builds a
    temporary per block needs bounded memory even when ``arr`` is a memory map
    of many gigabytes: only one block is read at a time.
    """
    row = max(1, arr.size // max(1, len(arr)))
    m = max(1, BLOCK_ELEMENTS // row)
    for start in range(0, len(arr), m):
        yield start, arr[start:start + m]


def all_finite(name: str, arr: np.ndarray, first_row: int = 0) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or inf; checked block by block.

    ``first_row``: ``arr`` is the rows from ``first_row`` on of a larger array
    (one rank's share, see ``Dataset(share=...)``); the message names the row
    of the larger array.
    """
    if arr.dtype.kind != "f":
        return
    for start, block in row_blocks(arr):
        finite = np.isfinite(block)
        if not finite.all():
            bad = tuple(int(i) for i in np.argwhere(~finite)[0])
            bad = (bad[0] + start, *bad[1:])
            value = arr[bad]
            bad = (bad[0] + first_row, *bad[1:])
            raise ValueError(f"{name} must be finite, found {value} at index {bad}")


def whole_numbers(arr: np.ndarray) -> bool:
    """True if every value of ``arr`` is a whole number; checked block by block."""
    return arr.dtype.kind not in "f" or all(np.array_equal(block, np.round(block))
                                            for _, block in row_blocks(arr))
