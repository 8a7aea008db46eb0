"""Model files: MLP.save / sg.load_model round trips; forged files refused; checkpoints as models.

The forgeries are the checkpoint tests' own (``test_checkpoint.MakesMarker``,
``rewrite``): the same validated reader reads both kinds of file.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_checkpoint import MakesMarker, rewrite, write_forged_header

import scratchgd as sg
from scratchgd import activations
from scratchgd import checkpoint as ck
from scratchgd.losses import LOSSES


def trained(backend="numpy", dtype=np.float64, scale=True, loss="cross_entropy"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)) * [1, 10, 100, 1000]
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    if not LOSSES[loss].classes:
        y = X[:, :2] / [1, 10]
    model = sg.MLP([4, 6, 3 if y.ndim == 1 else y.shape[1]], loss=loss, seed=1, dtype=dtype,
                   backend=backend)
    data = sg.Dataset(X, y)
    if scale:
        sg.standardize(model, data)
    lr = 0.05 if scale else 1e-8    # unscaled, these features make plain SGD diverge
    sg.fit(model, data, sg.MiniBatchSGD(lr, batch_size=8), epochs=2, progress=False)
    return model, X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("loss", tuple(LOSSES))
def test_save_and_load_predict_exactly_the_same(tmp_path, dtype, scale, loss):
    model, X = trained(dtype=dtype, scale=scale, loss=loss)
    model.save(tmp_path / "model.npz")
    loaded = sg.load_model(tmp_path / "model.npz")
    assert loaded.sizes == model.sizes and loaded.dtype == model.dtype
    assert loaded.loss == model.loss and loaded.activation == model.activation
    assert (loaded.scaling is None) == (not scale)
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    fast = sg.load_model(tmp_path / "model.npz", backend="numba")
    assert fast.backend == "numba"
    np.testing.assert_allclose(fast.forward(X), model.forward(X), rtol=1e-4)


def test_a_file_naming_an_unregistered_activation_is_refused_in_one_line(tmp_path, leaky_relu,
                                                                        monkeypatch):
    model = sg.MLP([3, 4, 2], "leaky_relu", seed=0)
    model.save(tmp_path / "model.npz")
    assert sg.load_model(tmp_path / "model.npz").activation == "leaky_relu"
    monkeypatch.delitem(activations.ACTIVATIONS, "leaky_relu")   # a scratchgd without it
    with pytest.raises(ValueError) as refused:
        sg.load_model(tmp_path / "model.npz")
    message = str(refused.value)
    assert "'leaky_relu'" in message and "not registered" in message and "\n" not in message


def test_a_checkpoint_is_a_model_file(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)) * [1, 50, 2000], rng.integers(0, 2, 40)
    model = sg.MLP([3, 5, 2], seed=0)
    sg.standardize(model, X)
    sg.fit(model, sg.Dataset(X, y), sg.MiniBatchSGD(0.1, batch_size=8), epochs=2,
           progress=False, checkpoint=tmp_path / "run.npz")
    loaded = sg.load_model(tmp_path / "run.npz")
    np.testing.assert_array_equal(loaded.scaling.std, model.scaling.std)
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))


def test_checkpoints_hold_the_scaling_and_refuse_another_mode(tmp_path):
    rng = np.random.default_rng(0)
    data = sg.Dataset(rng.normal(size=(40, 3)) * [1, 50, 2000], rng.integers(0, 2, 40))
    path = tmp_path / "run.npz"

    def run(scale, epochs):
        model = sg.MLP([3, 5, 2], seed=0)
        if scale:
            sg.standardize(model, data)
        sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=8), epochs=epochs, progress=False,
               checkpoint=path, resume=True)
        return model

    first = run(True, 1)
    with pytest.raises(ValueError, match="scale='standard', not 'none'"):
        run(False, 2)
    resumed = run(True, 2)
    again = sg.MLP([3, 5, 2], seed=0)
    sg.standardize(again, data)
    sg.fit(again, data, sg.MiniBatchSGD(0.1, batch_size=8), epochs=2, progress=False)
    for a, b in zip(resumed.params, again.params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.scaling is not None


def test_an_older_checkpoint_version_is_refused_naming_it(tmp_path):
    model, _ = trained()
    path = tmp_path / "old.npz"
    sg.fit(model, sg.Dataset(np.zeros((4, 4)), np.zeros(4, int)), sg.GD(0.1), epochs=1,
           progress=False, checkpoint=path)
    meta = json.loads(str(ck.read_npz(path)["meta"]))
    meta["version"] = 2
    rewrite(path, meta=np.array(json.dumps(meta)))
    for read in (ck.load, sg.load_model):
        with pytest.raises(ValueError, match="old.npz.*version 2"):
            read(path)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.npz"
    trained()[0].save(path)
    return path


def test_pickled_entries_are_refused_without_running_them(tmp_path, model_file):
    marker = tmp_path / "marker"
    rewrite(model_file, param_0=np.array([MakesMarker(marker)], dtype=object))
    with pytest.raises(ValueError, match="model.npz.*Python objects"):
        sg.load_model(model_file)
    raw = tmp_path / "raw.npz"
    np.save(raw, np.array([MakesMarker(marker)], dtype=object), allow_pickle=True)
    os.replace(str(raw) + ".npy", raw)
    with pytest.raises(ValueError, match="raw.npz"):
        sg.load_model(raw)
    assert not marker.exists()


def test_truncated_files_and_forged_headers_are_refused(tmp_path, model_file):
    data = model_file.read_bytes()
    broken = tmp_path / "broken.npz"
    for size in [0, 1, 22, len(data) // 2, len(data) - 1]:
        broken.write_bytes(data[:size])
        with pytest.raises(ValueError, match="broken.npz"):
            sg.load_model(broken)
    write_forged_header(tmp_path / "forged.npz", "param_0")
    with pytest.raises(ValueError, match="forged.npz.*truncated"):
        sg.load_model(tmp_path / "forged.npz")


@pytest.mark.parametrize("change, word", [
    ({"param_0": np.zeros((3, 6))}, "param_0"),
    ({"param_1": np.zeros(6, dtype=np.float32)}, "param_1"),
    ({"param_2": np.full((6, 3), np.inf)}, "non-finite"),
    ({"param_3": None}, "param_3"),
    ({"scale_std": np.zeros(4)}, "std must be > 0"),
    ({"scale_mean": np.zeros(3)}, "scale_mean"),
    ({"scale_std": None}, "scale_std"),
    ({"meta": np.array("{not json")}, "meta"),
    ({"meta": np.array(json.dumps({"format": "other"}))}, "neither"),
    ({"meta": np.array(json.dumps({"format": "scratchgd-model", "version": 0}))}, "version 0"),
    ({"meta": np.array(json.dumps({"format": "scratchgd-model", "version": True}))}, "version True"),
    ({"meta": np.array(json.dumps({"format": "scratchgd-model", "version": 1.0}))}, "version 1.0"),
    ({"meta": np.array(json.dumps({"format": "scratchgd-model", "version": "2"}))}, "version '2'"),
    ({"meta": None}, "meta"),
    ({"extra": np.zeros(1)}, "unexpected"),
])
def test_wrong_entries_are_refused(model_file, change, word):
    rewrite(model_file, **change)
    with pytest.raises(ValueError, match=f"model.npz.*{word}"):
        sg.load_model(model_file)


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        sg.load_model(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="backend"):
        sg.load_model(tmp_path / "missing.npz", backend="cuda")
    with pytest.raises(TypeError, match="path"):
        sg.load_model(3)
