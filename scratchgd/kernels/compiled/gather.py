"""A batch gathered by index from the data set, scaled on the way, in one layout.

The reference slices a batch with NumPy (``X[order[lo:hi]]``), casts it to the
model's dtype and scales it with :func:`~scratchgd.kernels.reference.apply_scaling`;
here all three happen in one copy, and the arrays are first brought into the few
types the kernels are compiled for:

==============================  ==================================================
reference (NumPy)               compiled kernel
==============================  ==================================================
``reference.apply_scaling``     :func:`gather_batch` (scaling while gathering
                                the batch's rows into reused buffers)
``X[rows].astype(dtype)``       :func:`decode_row` (a row's bytes decoded:
                                ints, float16, big-endian values)
``MLP.scaling``                 :func:`scaling_inputs` (``mean``, ``1 / std``)
``X``, ``y`` as given           :func:`span_input` (one layout, three types of
                                ``X``: float32, float64, uint8)
==============================  ==================================================

Features come in any real dtype, but numba has no float16 and no big-endian
arrays, and each dtype of ``X`` would compile the training kernels once more
(docs/performance.md, "Start-up"). So ``X`` reaches them as float32, float64 or uint8 only,
never copied: native float32, float64 and uint8 (bool too, viewed as uint8)
are read as they are; every other dtype is passed as a uint8 view of its
bytes, with its :data:`X_FORMAT`, and each row is decoded as it is gathered,
to the values NumPy's ``astype`` gives, bit for bit.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from ...scaling import Scaling
from .base import CROSS_ENTROPY, jit, loss_code

AS_IS, UNSIGNED, SIGNED, FLOAT = 0, 1, 2, 3
"""Kinds of :data:`X_FORMAT`: ``X`` read as it is (uint8); or its bytes decoded as an
unsigned integer, a two's-complement integer, or an IEEE 754 float (binary16, 32 or 64)."""

X_FORMAT = tuple[int, int, int]
"""``(kind, size, big_endian)``: how :func:`gather_batch` reads a uint8 ``X``. ``kind``
one of AS_IS, UNSIGNED, SIGNED, FLOAT; ``size`` the bytes per value; ``big_endian``
1 when a value's most significant byte comes first (as in IDX files), else 0.
Float32 and float64 ``X`` come with ``None`` instead: numba then compiles none of
the decoding into their kernels."""


@jit(inline="always")
def value_bits(raw: np.ndarray, c: int, size: int, big_endian: int) -> int:
    """The ``size`` bytes of value ``c`` of ``raw`` (a row's bytes) as one int64.

    The least significant byte first (the last of a big-endian value): byte
    ``i`` is worth ``2^(8 i)``; 8 bytes wrap around into the sign bit, so an
    int64 or uint64 keeps its bits.
    """
    bits = 0
    first = c * size
    for i in range(size):
        bits |= np.int64(raw[first + (size - 1 - i if big_endian else i)]) << (8 * i)
    return bits


@jit(inline="always")
def ieee_float64(bits: int, size: int) -> float:
    """The IEEE 754 float of ``size`` bytes (2, 4 or 8) whose bits are ``bits``, as a float64.

    The bits are ``sign | exponent e | mantissa m`` (5 and 10 bits for binary16,
    8 and 23 for binary32, 11 and 52 for binary64), the value::

        (-1)^sign 2^(e - bias) (1 + m / 2^mbits)    0 < e < e_max (normal)
        (-1)^sign 2^(1 - bias) (m / 2^mbits)        e = 0 (zero, subnormal)
        +-inf (m = 0), NaN                          e = e_max

    with ``bias = 2^(ebits - 1) - 1``. Every binary16 and binary32 value is a
    float64, so this is exact: a normal value, inf or NaN is the float64 of
    bits ``sign | e - bias + 1023 (2047 for e_max) | m`` followed by zeros; a
    subnormal one is ``m 2^(1 - bias - mbits)``, a product that rounds nothing.
    """
    mbits = 10 if size == 2 else (23 if size == 4 else 52)
    ebits = 8 * size - 1 - mbits
    bias = (1 << (ebits - 1)) - 1
    sign = (bits >> (8 * size - 1)) & 1
    exponent = (bits >> mbits) & ((1 << ebits) - 1)
    mantissa = bits & ((1 << mbits) - 1)
    if exponent == 0:
        value = math.ldexp(float(mantissa), 1 - bias - mbits)
        return -value if sign else value
    exponent = 2047 if exponent == (1 << ebits) - 1 else exponent - bias + 1023
    return np.int64((sign << 63) | (exponent << 52) | (mantissa << (52 - mbits))).view(np.float64)


@jit
def decode_row(raw: np.ndarray, x_format: X_FORMAT, out: np.ndarray) -> None:
    """``out[c]`` = value ``c`` of ``raw``, one row of ``X`` as bytes, in ``out``'s dtype.

    ``x_format = (kind, size, big_endian)`` (:data:`X_FORMAT`). Each value's
    bits (:func:`value_bits`) are read as an unsigned integer, a signed one
    (two's complement: minus ``2^(8 size)`` when the top bit is set) or a float
    (:func:`ieee_float64`); an integer is converted to ``out``'s dtype directly,
    so it is rounded once, as NumPy's ``astype`` rounds it (through float64
    it could round twice). So ``out`` holds what ``X[row].astype(out.dtype)``
    holds, bit for bit (a NaN, which no data set holds, aside).
    """
    kind, size, big_endian = x_format
    t = out.dtype.type
    if kind == UNSIGNED:
        for c in range(len(out)):
            out[c] = t(np.uint64(value_bits(raw, c, size, big_endian)))
    elif kind == SIGNED:
        top = 8 * size - 1
        for c in range(len(out)):
            bits = value_bits(raw, c, size, big_endian)
            if size < 8 and bits >> top:
                bits -= 1 << (top + 1)
            out[c] = t(bits)
    else:
        for c in range(len(out)):
            out[c] = t(ieee_float64(value_bits(raw, c, size, big_endian), size))


@jit(inline="always")
def gather_batch(X: np.ndarray, x_format: X_FORMAT | None, labels: np.ndarray,
                 targets: np.ndarray, order: np.ndarray, lo: int, n: int, loss: int,
                 mean: np.ndarray, inv_std: np.ndarray, x_batch: np.ndarray,
                 y_batch: np.ndarray, t_batch: np.ndarray, values: np.ndarray) -> None:
    """Copy the batch of rows ``order[lo:lo + n]`` into the first ``n`` rows of the buffers.

    ``x_batch[r] = X[order[lo + r]]`` cast to ``x_batch``'s dtype, or with the
    input scaling (``mean`` and ``inv_std = 1 / std`` of length ``d``; empty
    arrays for none) ``x_batch[r] = (X[row] - mean) * inv_std``, computed in
    float64 and rounded once to ``x_batch``'s dtype. ``reference.apply_scaling``
    rounds after its subtraction too and divides by ``std``: for a float64
    model the two may differ in the last bit; for a float32 one the reference
    works in float32 (``X``, ``mean`` and ``std`` rounded to float32 first), so
    the two differ by up to about ``|mean| / std * 2^-24``. ``X`` is read as it
    is (``x_format`` ``None`` or AS_IS) or its rows decoded from their bytes
    (:func:`decode_row`; ``values``, ``d`` float64 elements, holds a decoded
    row to scale: a buffer of the caller's, not allocated per batch). The
    label (``y_batch``, cross_entropy) or target row (``t_batch``, mse) goes
    along.
    Invariants: reads ``X``, ``labels``, ``targets`` only at the batch's rows;
    writes only the buffers; without scaling ``x_batch[r]`` is what
    ``X[row].astype(x_batch.dtype)`` holds.
    """
    scaled = len(mean) > 0
    d = x_batch.shape[1]
    for r in range(n):
        row = order[lo + r]
        if x_format is None or x_format[0] == AS_IS:  # numba prunes the rest for None
            if scaled:
                for c in range(d):
                    x_batch[r, c] = (np.float64(X[row, c]) - mean[c]) * inv_std[c]
            else:
                for c in range(d):
                    x_batch[r, c] = X[row, c]
        elif scaled:
            decode_row(X[row], x_format, values)
            for c in range(d):
                x_batch[r, c] = (values[c] - mean[c]) * inv_std[c]
        else:
            decode_row(X[row], x_format, x_batch[r])
        if loss == CROSS_ENTROPY:
            y_batch[r] = labels[row]
        else:
            for j in range(targets.shape[1]):
                t_batch[r, j] = targets[row, j]


def scaling_inputs(scaling: Scaling | None) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``inv_std = 1 / std`` as :func:`gather_batch` takes them (empty: no scaling).

    Fresh writable float64 arrays, so the scaling adds no compiled type whatever
    the flags of the model's arrays.
    """
    if scaling is None:
        return np.empty(0), np.empty(0)
    return np.array(scaling.mean, np.float64), 1.0 / scaling.std


def x_input(X: np.ndarray) -> tuple[np.ndarray, X_FORMAT | None]:
    """``X`` as :func:`gather_batch` reads it: a float32, float64 or uint8 array, and its format.

    Native float32 and float64 arrays pass as they are (format ``None``),
    uint8 too, and bool as a uint8 view (``True`` is the byte 1), both AS_IS;
    any other integer or float dtype (float16, int8 to uint64, big-endian as
    raw IDX files hold) as a uint8 view of its bytes, ``(n, d * size)``, with
    ``(kind, size, big_endian)``. A view, never a copy: a memory-mapped ``X``
    stays on disk. ``X`` must be C-contiguous.

    Raises ``TypeError`` for a dtype the kernels cannot decode (long double).
    """
    dtype = X.dtype
    if dtype.isnative and dtype.type in (np.float32, np.float64):
        return X, None
    if dtype.type in (np.uint8, np.bool_):
        return X.view(np.uint8), (AS_IS, 1, 0)
    kind = {"u": UNSIGNED, "i": SIGNED, "f": FLOAT}.get(dtype.kind)
    if kind is None or dtype.itemsize > 8:
        raise TypeError(f"X of dtype {dtype} cannot be read by the numba backend's kernels; "
                        f"pass X.astype(np.float64), or use backend='numpy'")
    big_endian = dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
    return X.view(np.uint8), (kind, dtype.itemsize, int(big_endian))


def span_input(X: np.ndarray, y: np.ndarray, loss: str, dtype: np.dtype
               ) -> tuple[np.ndarray, X_FORMAT | None, np.ndarray, np.ndarray]:
    """``X`` and its format, labels and targets in the layout the training kernels are compiled for.

    Numba compiles a kernel once per combination of argument types, and an
    array's type includes its dtype, its layout and whether it may be written.
    So ``X`` becomes a C-contiguous READ-ONLY view (in memory, memory-mapped or
    read from a read-only file: one type, no copy unless ``X`` was not
    C-contiguous) of float32, float64 or uint8 (:func:`x_input`: bool, other
    integers, float16 and big-endian values pass as their bytes, decoded as
    each batch is gathered); labels int64 and targets the model's ``dtype``;
    the one the loss does not use is an empty placeholder of the same type.
    """
    X, x_format = x_input(np.ascontiguousarray(X))
    X = X.view()
    X.flags.writeable = False
    if loss_code(loss) == CROSS_ENTROPY:
        labels, targets = np.ascontiguousarray(y, dtype=np.int64), np.empty((0, 1), dtype)
    else:
        labels, targets = np.empty(0, np.int64), np.ascontiguousarray(y, dtype=dtype)
    return X, x_format, labels, targets
