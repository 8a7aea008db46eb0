"""Argument checks shared by the public API.

Every public entry point validates its arguments here before it changes any
state, and raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message that names the argument and the value.
"""

from __future__ import annotations

import numbers

import numpy as np


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


def all_finite(name: str, arr: np.ndarray) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or inf."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} must be finite, found {arr[tuple(bad)]} at index {tuple(bad)}")
