"""Array helpers shared by the kernels and the training engines (imports nothing of scratchgd)."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
"""An array of the model's namespace: a NumPy array, a torch tensor, a CuPy array, ..."""

Namespace = ModuleType
"""An array API namespace (``numpy``, ``array_api_compat.torch``, ``array_api_strict``, ...)."""


def views_like(flat: np.ndarray, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``flat`` cut into consecutive views shaped like ``arrays``, in order (no copy).

    The flat buffer of one step holds every parameter's gradient sum this way.
    """
    views, offset = [], 0
    for a in arrays:
        views.append(flat[offset:offset + a.size].reshape(a.shape))
        offset += a.size
    return views


class NumPyNamespace:
    """NumPy as the reference kernels' array namespace: ``xp`` of ``backend="numpy"``.

    Every name is NumPy's own (``xp.exp`` is ``numpy.exp``), except a few that
    the array API standard spells differently from NumPy 1, or that NumPy
    wraps in a Python dispatch costing microseconds per call (its reductions,
    ``take_along_axis``): those call the ufunc's reduction, the array's own
    method or an index, with the same results, bit for bit. Those microseconds
    are a tenth of an SGD iteration on a small network; this keeps the NumPy
    backend as fast as before it was written against the array API.
    """

    __name__ = "numpy"

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        setattr(self, name, value)  # found once: later lookups are plain attributes
        return value

    @staticmethod
    def sum(x: np.ndarray, /, *, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
        """``numpy.sum``: the reduction it calls, ``numpy.add.reduce``, called directly."""
        return np.add.reduce(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def all(x: np.ndarray, /, *, axis: int | None = None) -> np.ndarray:
        """``numpy.all``: the reduction it calls, ``numpy.logical_and.reduce``, called directly."""
        return np.logical_and.reduce(x, axis=axis)

    @staticmethod
    def argmax(x: np.ndarray, /, *, axis: int | None = None) -> np.ndarray:
        """``numpy.argmax``, as the method."""
        return x.argmax(axis=axis)

    @staticmethod
    def astype(x: np.ndarray, dtype: Any, /, *, copy: bool = True) -> np.ndarray:
        """The standard's ``astype(x, dtype)``: the method (``numpy.astype`` is NumPy 2.1's)."""
        return x.astype(dtype, copy=copy)

    @staticmethod
    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None,
                copy: bool | None = None) -> np.ndarray:
        """``numpy.asarray`` (``device``: the CPU, NumPy's only one)."""
        return np.array(obj, dtype=dtype) if copy else np.asarray(obj, dtype=dtype)

    @staticmethod
    def arange(*args: Any, device: Any = None, **kwargs: Any) -> np.ndarray:
        """``numpy.arange`` (``device``: the CPU; NumPy 1 has no such argument)."""
        return np.arange(*args, **kwargs)

    @staticmethod
    def take(x: np.ndarray, indices: np.ndarray, /, *, axis: int | None = None) -> np.ndarray:
        """``numpy.take``, as the method."""
        return x.take(indices, axis=axis)

    @staticmethod
    def take_along_axis(x: np.ndarray, indices: np.ndarray, /, *, axis: int = -1) -> np.ndarray:
        """``numpy.take_along_axis``; one item of each row of a matrix, as one index."""
        if x.ndim == 2 and axis in (1, -1) and indices.shape[1] == 1:
            return x[np.arange(len(x)), indices[:, 0]][:, None]
        return np.take_along_axis(x, indices, axis)

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None,
            device: Any = None) -> np.ndarray:
        """``numpy.eye``, made once per shape and dtype and read-only (the losses' one-hots)."""
        identity = np.eye(n_rows, n_cols, k=k, dtype=dtype)
        identity.flags.writeable = False
        return identity


NUMPY = NumPyNamespace()
"""The array namespace of NumPy arrays in the reference (see :class:`NumPyNamespace`)."""
