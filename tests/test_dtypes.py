"""Features of any real dtype train, on both backends, as their cast to the model's dtype.

``Dataset`` keeps ``X`` as given (bool, signed and unsigned integers, float16,
big-endian values as raw IDX files hold). The numpy backend casts each batch
(``MLP.inputs``); the compiled kernels read float32, float64 and uint8 as they
are and decode every other dtype from its bytes as each batch is gathered
(``kernels.compiled.gather``). Either way, training on ``X`` must give, bit for
bit, what training on ``X.astype(model dtype)`` gives, wherever that cast is
exact, and the two backends must agree as they do on float data.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from test_numba import assert_close

import scratchgd as sg
from scratchgd.distributed import checked_in_shares, run_threads
from scratchgd.kernels import compiled

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")

BACKENDS = ("numpy", "numba")
FEATURE_DTYPES = ("float16", ">f2", "int8", "int16", ">i2", "uint16", "int32", ">i4", "int64",
                  "uint64", "bool", ">f4", ">f8")
"""What the tests train on: every kind and size, both byte orders."""


def features(dtype, n=48, d=5, seed=0):
    """``(n, d)`` features of ``dtype`` whose cast to float32 is exact, and 3-class labels."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        X = rng.integers(0, 2, (n, d)).astype(dtype)
    elif dtype.kind == "f":
        X = (rng.standard_normal((n, d)) * 2).astype(np.float16).astype(dtype)
    else:
        low = 0 if dtype.kind == "u" else -20
        X = rng.integers(low, 20, (n, d)).astype(dtype)
    y = (X.astype(np.float64).sum(axis=1) > np.median(X.astype(np.float64).sum(axis=1))) + \
        (X[:, 0].astype(np.float64) > 0)
    return X, y.astype(np.int64)


def train(X, y, backend, dtype=np.float32, scale=False, comm=None, momentum=0.0):
    """A model trained for 2 epochs on ``(X, y)``; its weights, History, evaluation, outputs."""
    model = sg.MLP([X.shape[1], 6, 3], seed=1, dtype=dtype, backend=backend)
    data = sg.Dataset(X, y) if comm is None else checked_in_shares(
        lambda share: sg.Dataset(X, y, share=share), comm)
    if scale:
        sg.standardize(model, data)
    history = sg.fit(model, data, sg.MiniBatchSGD(0.05, batch_size=7, momentum=momentum),
                     epochs=2, accumulate=2, progress=False, comm=comm)
    noise = sg.gradient_noise(model, data)
    return (model.params, history.iteration_loss, sg.evaluate(model, data), model.forward(X),
            model.predict(X), (noise.grad_sq, noise.trace_cov))


def assert_same(got, expected):
    """Every array and number of two :func:`train` results equal, bit for bit."""
    for a, b in zip(got, expected, strict=True):
        if isinstance(a, list):
            assert_same(a, b)
        else:
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def gathered(X, dtype, scaled=False):
    """``X`` gathered whole by the compiled ``gather_batch``, as the training kernels gather a batch."""
    x_in, x_format, labels, targets = compiled.span_input(X, np.zeros(len(X)), "cross_entropy",
                                                          np.dtype(dtype))
    n, d = X.shape
    mean, inv_std = (np.zeros(d), np.ones(d)) if scaled else (np.empty(0), np.empty(0))
    out = np.empty((n, d), dtype)
    compiled.gather_batch(x_in, x_format, labels, targets, np.arange(n), 0, n,
                          compiled.CROSS_ENTROPY, mean, inv_std, out, np.empty(n, np.int64),
                          np.empty((0, 1), dtype), np.empty(d))
    return out


def assert_bits_equal(got, expected):
    """Same values, bit for bit (signed zeros included); NaN where NaN (payloads aside)."""
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    word = np.uint32 if got.dtype == np.float32 else np.uint64
    assert np.array_equal(got[~nan].view(word), expected[~nan].view(word))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["<", ">"])
def test_every_float16_decodes_as_astype_does(dtype, order):
    """All 65,536 bit patterns: normals, subnormals, signed zeros, infinities, NaNs."""
    X = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(order + "f2").reshape(-1, 64)
    assert X.dtype.byteorder in "=|" if order == "<" else X.dtype.byteorder == ">"
    assert_bits_equal(gathered(X, dtype), X.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("source", ["<f4", ">f4", "<f8", ">f8"])
def test_float32_and_float64_bits_of_either_order_decode_as_astype_does(dtype, source):
    rng = np.random.default_rng(0)
    size = np.dtype(source).itemsize
    bits = rng.integers(0, 2**(8 * size), 4000, dtype=np.uint64 if size == 8 else np.uint32,
                        endpoint=False)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-40, 5e-324, 3.4e38, 1e308],
                           dtype=source)
        # astype last: concatenate returns this machine's byte order
        X = np.concatenate([special, bits.view(source[1:])]).astype(source)
        X = X[:len(X) // 4 * 4].reshape(-1, 4)
        expected = X.astype(dtype)
    assert X.dtype == np.dtype(source)
    assert_bits_equal(gathered(X, dtype), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("source", ["bool", "uint8", "int8", "int16", ">i2", "uint16", ">u2",
                                    "int32", ">i4", "uint32", "int64", ">i8", "uint64", ">u8"])
def test_integers_decode_as_astype_rounds_them(dtype, source):
    """Converted straight to the model's dtype, so rounded once: 2**53 + 1 and 2**24 + 1 included."""
    source = np.dtype(source)
    rng = np.random.default_rng(0)
    if source.kind == "b":
        X = rng.integers(0, 2, 400).astype(source)
    else:
        info = np.iinfo(source)
        edges = [info.min, info.min + 1, -1, 0, 1, 2**24 + 1, 2**24 + 3, 2**53 + 1, 2**62 + 2**39,
                 info.max - 1, info.max]
        edges = [v for v in edges if info.min <= v <= info.max]
        drawn = rng.integers(info.min, info.max, 400, dtype=source.newbyteorder("="),
                             endpoint=True)
        X = np.concatenate([np.array(edges, dtype=source), drawn]).astype(source)
    X = X[:len(X) // 4 * 4].reshape(-1, 4)
    assert X.dtype == source
    assert_bits_equal(gathered(X, dtype), X.astype(dtype))
    # scaled (here by mean 0, std 1): each value in float64, as it was before decoding existed
    assert_bits_equal(gathered(X, dtype, scaled=True), X.astype(np.float64).astype(dtype))


def test_dataset_keeps_features_of_any_dtype_as_given():
    for dtype in FEATURE_DTYPES:
        X, y = features(dtype)
        data = sg.Dataset(X, y)
        assert data.X is X, dtype
        assert repr(data) == f"Dataset(X={X.shape} {X.dtype}, y=(48,) int64)"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FEATURE_DTYPES)
def test_training_on_any_dtype_equals_training_on_its_cast(backend, dtype):
    """fit, evaluate, forward, predict and gradient_noise, with and without input scaling."""
    X, y = features(dtype)
    for scale in (False, True):
        assert_same(train(X, y, backend, scale=scale),
                    train(X.astype(np.float32), y, backend, scale=scale))


@pytest.mark.parametrize("dtype", ["float16", "int16", "bool", "uint64"])
def test_float64_model_and_momentum_on_any_dtype(dtype):
    X, y = features(dtype)
    for backend in BACKENDS:
        assert_same(train(X, y, backend, np.float64, momentum=0.9),
                    train(X.astype(np.float64), y, backend, np.float64, momentum=0.9))


@pytest.mark.parametrize("model_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", ["float16", "int8", "int64", "bool", ">i2"])
def test_numba_equals_numpy_on_any_dtype(model_dtype, dtype):
    X, y = features(dtype)
    params_ref, losses_ref, *_ = train(X, y, "numpy", model_dtype, scale=True)
    params, losses, *_ = train(X, y, "numba", model_dtype, scale=True)
    assert_close(params, params_ref, model_dtype, "weights")
    assert_close([losses], [losses_ref], model_dtype, "iteration losses")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "int16", "bool", ">i4"])
def test_data_parallel_on_any_dtype_equals_its_cast(backend, dtype):
    """``fit(comm=ThreadComm)`` with P = 2 ranks: the compiled shard sums decode too."""
    X, y = features(dtype)

    def run(X):
        return run_threads(2, lambda comm: train(X, y, backend, comm=comm, scale=True)[:2])

    got, expected = run(X), run(X.astype(np.float32))
    for rank in range(2):
        assert_same(got[rank], expected[rank])
    assert_same(got[0], got[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_mapped_float16_npy_trains_in_place(tmp_path, backend):
    """The kernels read the file's own pages: no copy of ``X``, in memory or on disk."""
    X, y = features("float16", n=300)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    assert isinstance(data.X, np.memmap) and data.X.dtype == np.float16
    x_in, x_format, _, _ = compiled.span_input(data.X, data.y, "cross_entropy",
                                               np.dtype(np.float32))
    assert np.shares_memory(x_in, data.X) and x_format == (compiled.FLOAT, 2, 0)
    assert_same(train(data.X, data.y, backend), train(X.astype(np.float32), y, backend))


def _write_idx(path, array, code):
    """An IDX file: magic ``00 00 code ndim``, big-endian sizes, big-endian values."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(sg.io.IDX_DTYPES[code]).tobytes())


@pytest.mark.parametrize("code", [0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_raw_idx_files_of_every_type_train_on_numba(tmp_path, code):
    """``from_idx(scale=False)`` memory-maps int8 or big-endian int16/int32/float32/float64."""
    X, y = features("int8", n=40, d=4)
    _write_idx(tmp_path / "images.idx", X.reshape(40, 2, 2), code)
    _write_idx(tmp_path / "labels.idx", y.astype(np.uint8), 0x08)
    data = sg.Dataset.from_idx(tmp_path / "images.idx", tmp_path / "labels.idx", scale=False)
    assert data.X.dtype == sg.io.IDX_DTYPES[code] and np.array_equal(data.X, X)
    assert_same(train(data.X, data.y, "numba"), train(X.astype(np.float32), y, "numba"))


def test_compiled_forward_casts_other_dtypes_to_the_weights():
    model = sg.MLP([5, 6, 3], dtype=np.float32)
    X, _ = features("int16")
    for dtype in ("int16", "bool", "float16", ">f4"):
        Xd = X.astype(dtype)
        got = compiled.forward(model.params, Xd, "relu")
        expected = compiled.forward(model.params, Xd.astype(np.float32), "relu")
        assert all(a.dtype == np.float32 for a in got)
        assert_same(got, expected)
