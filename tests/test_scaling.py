"""Input scaling: streaming statistics, the model's fixed first operation, both backends.

The identity (docs/math.md): training a model whose scaling is ``(x - mean) / std``
on raw rows equals training a model without scaling on a pre-standardized copy,
float64 to 1e-12, on both backends and through a memory map.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import scaling as scaling_module

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")


def wild_data(n=90, seed=0):
    """Three classes, features on scales from 1e-3 to 1e4, one constant column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    scales = np.array([1e-3, 1.0, 50.0, 1e4])
    X = (rng.normal(size=(n, 4)) + y[:, None]) * scales + np.array([0.0, 5.0, -300.0, 2e4])
    X = np.column_stack([X, np.full(n, 7.0)])
    return X, y


def test_streaming_stats_equal_numpy_float64(monkeypatch):
    X, _ = wild_data(1000)
    monkeypatch.setattr(scaling_module, "BLOCK_VALUES", 37)   # many uneven blocks
    mean, variance = scaling_module.feature_stats(X)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(variance, X.var(axis=0), rtol=1e-10, atol=1e-20)


def test_streaming_stats_with_huge_values_and_a_large_offset(monkeypatch):
    """1e150 scales (squares near 1e300, no overflow) and 1e9 offsets with unit spread."""
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(size=500) * 1e150, 1e9 + rng.normal(size=500),
                         rng.uniform(-3e38, 3e38, 500).astype(np.float32)])
    monkeypatch.setattr(scaling_module, "BLOCK_VALUES", 30)
    mean, variance = scaling_module.feature_stats(X)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(variance, X.var(axis=0), rtol=1e-10)
    assert np.isfinite(sg.scaling.fit_scaling(X).std).all()


def test_constant_and_overflowing_features_get_std_one():
    X = np.column_stack([np.full(6, 3.0), np.arange(6.0), [1e200, -1e200] * 3])
    s = sg.scaling.fit_scaling(X)
    np.testing.assert_array_equal(s.std[[0, 2]], [1.0, 1.0])
    assert s.std[1] == pytest.approx(np.arange(6.0).std())
    model = sg.MLP([3, 2])
    model.scaling = s
    assert (model.inputs(X)[:, 0] == 0).all()


def test_stats_of_a_memory_map_stay_on_disk(tmp_path):
    X, y = wild_data(300)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    assert isinstance(data.X, np.memmap)
    model = sg.MLP([5, 4, 3])
    s = sg.standardize(model, data)
    np.testing.assert_allclose(s.mean, X.mean(axis=0), rtol=1e-12)
    assert model.scaling is s
    np.testing.assert_array_equal(data.X, X)   # nothing written back


def test_standardize_leaves_in_memory_data_untouched():
    X, _ = wild_data(50)
    before = X.copy()
    sg.standardize(sg.MLP([5, 3]), X)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("shuffle", [True, False, "chunks"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_training_with_scaling_never_writes_into_the_data(shuffle, dtype):
    """The Python engine scales a batch gathered by an index array in place (``fresh``): that
    batch is a copy; rows taken as a slice (no shuffling) are a view, and are copied."""
    X, y = wild_data(40)
    X = X.astype(dtype)
    before = X.copy()
    model = sg.MLP([5, 4, 3], dtype=dtype)
    sg.standardize(model, X)
    sg.fit(model, sg.Dataset(X, y), sg.MiniBatchSGD(0.1, batch_size=8, shuffle=shuffle),
           epochs=2, progress=False)
    np.testing.assert_array_equal(X, before)
    rows = X[[3, 1]]
    assert model.inputs(rows, fresh=True) is rows          # scaled in place, no copy
    assert model.inputs(X[:2]) is not X[:2] and np.array_equal(X, before)


def test_bad_scaling_is_refused():
    model = sg.MLP([5, 3])
    with pytest.raises(ValueError, match="scaling has statistics of 2 features"):
        model.scaling = sg.Scaling(np.zeros(2), np.ones(2))
    with pytest.raises(TypeError, match="scaling"):
        model.scaling = (np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="std must be > 0"):
        sg.Scaling(np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="std must be finite"):
        sg.Scaling(np.zeros(2), np.array([1.0, np.inf]))
    with pytest.raises(TypeError, match="model"):
        sg.standardize("model", np.zeros((3, 5)))


def standardized_copy(X, s):
    return (X - s.mean) / s.std


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("where", ["memory", "mmap"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_training_on_scaled_batches_equals_training_on_a_standardized_copy(
        tmp_path, backend, where, momentum):
    X, y = wild_data(90)
    if where == "mmap":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        data = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    else:
        data = sg.Dataset(X, y)
    scaled = sg.MLP([5, 8, 3], seed=3, backend=backend)
    s = sg.standardize(scaled, data)
    plain = sg.MLP([5, 8, 3], seed=3, backend=backend)
    copy = sg.Dataset(standardized_copy(X, s), y)
    runs = []
    for model, d in ((scaled, data), (plain, copy)):
        opt = sg.MiniBatchSGD(0.05, batch_size=7, momentum=momentum)
        runs.append(sg.fit(model, d, opt, epochs=3, validation=d, progress=False, seed=2))
    for a, b in zip(scaled.params, plain.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(runs[0].iteration_loss, runs[1].iteration_loss, rtol=1e-12)
    np.testing.assert_allclose(runs[0].val_loss, runs[1].val_loss, rtol=1e-12)
    np.testing.assert_allclose(scaled.forward(X), plain.forward(copy.X), rtol=1e-12, atol=1e-12)
    assert sg.evaluate(scaled, data)[1] == sg.evaluate(plain, copy)[1]


def test_the_backends_agree_with_scaling():
    X, y = wild_data(60)
    data = sg.Dataset(X, y)
    models = [sg.MLP([5, 6, 3], seed=1, backend=b) for b in ("numpy", "numba")]
    for model in models:
        sg.standardize(model, data)
        sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=8), epochs=2, progress=False)
    for a, b in zip(*(m.params for m in models), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_scaling_the_compiled_gathering_is_unchanged(dtype):
    """No scaling: the batch is the rows themselves, so numba equals numpy as before."""
    X, y = wild_data(40)
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1)
    data = sg.Dataset(X, y)
    models = [sg.MLP([5, 4, 3], seed=0, dtype=dtype, backend=b) for b in ("numpy", "numba")]
    for model in models:
        assert model.scaling is None
        sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=5), epochs=2, progress=False)
    tol = 1e-4 if dtype is np.float32 else 1e-10
    for a, b in zip(*(m.params for m in models), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_the_model_applies_its_scaling_everywhere():
    """forward, predict, loss_and_grads, copy and pickling all carry the scaling."""
    X, y = wild_data(30)
    model = sg.MLP([5, 4, 3], seed=0)
    s = sg.standardize(model, X)
    plain = model.copy()
    plain.scaling = None
    Z = standardized_copy(X, s)
    np.testing.assert_array_equal(model.forward(X), plain.forward(Z))
    np.testing.assert_array_equal(model.predict(X), plain.predict(Z))
    assert model.loss_and_grads(X, y)[0] == plain.loss_and_grads(Z, y)[0]
    assert model.copy().scaling is s
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.scaling.mean, s.mean)
    np.testing.assert_array_equal(clone.forward(X), model.forward(X))
    assert "scaling=standard" in repr(model)
