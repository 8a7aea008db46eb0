"""Target scaling (issue 20, item 2): a regressor trained on ``t = (y - mean) / std``.

The identity (docs/math.md item 13): training with ``model.target_scaling`` equals training
a model without it on the pre-scaled targets, and its predictions equal that model's
unscaled, ``z * std + mean``: float64, 1e-12, both backends, one process and ThreadComm.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from test_checkpoint import rewrite

import scratchgd as sg
from scratchgd import checkpoint as ck
from scratchgd.distributed import run_threads


def table(n=70, k=2, seed=0):
    """Features near unit size, targets far from it: means 1e3 and -50, spreads 300 and 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.stack([np.tanh(X @ rng.normal(size=4)) for _ in range(k)], axis=1)
    return X, y * [300.0, 0.1][:k] + [1e3, -50.0][:k]


def prescaled(data, scaling):
    return sg.Dataset(data.X, (np.asarray(data.y) - scaling.mean) / scaling.std)


def model(backend="numpy", k=2, seed=3, dtype=np.float64):
    return sg.MLP([4, 8, k], activation="tanh", loss="mse", seed=seed, dtype=dtype,
                  backend=backend)


def fit(m, data, validation, comm=None, momentum=0.9, epochs=3, **kwargs):
    return sg.fit(m, data, sg.MiniBatchSGD(0.05, batch_size=9, momentum=momentum),
                  epochs=epochs, validation=validation, progress=False, seed=2, comm=comm,
                  **kwargs)


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def assert_identity(scaled_model, scaled_hist, plain_model, plain_hist, X, scaling):
    for a, b in zip(scaled_model.params, plain_model.params, strict=True):
        close(a, b)
    for name in ("iteration_loss", "epoch_loss", "val_loss", "val_r2"):
        close(getattr(scaled_hist, name), getattr(plain_hist, name))
    close(scaled_model.forward(X), plain_model.forward(X))   # the outputs: scaled units
    close(scaled_model.predict(X), plain_model.predict(X) * scaling.std + scaling.mean)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_scaled_run_equals_training_on_prescaled_targets_and_unscaling(backend, momentum):
    X, y = table()
    data, validation = sg.Dataset(X[:50], y[:50]), sg.Dataset(X[50:], y[50:])
    scaled = model(backend)
    s = sg.standardize_targets(scaled, data)
    plain = model(backend)
    runs = [fit(scaled, data, validation, momentum=momentum),
            fit(plain, prescaled(data, s), prescaled(validation, s), momentum=momentum)]
    assert_identity(scaled, runs[0], plain, runs[1], X, s)
    assert len(runs[0].val_r2) == 3
    # R^2 does not depend on the units: History's equals the report's in the targets' own
    report = sg.regression_report(scaled, validation)
    assert isinstance(report, sg.RegressionReport)
    close(runs[0].val_r2[-1], report.r2.mean(), 1e-10)
    assert report.rmse[0] > 10 > report.rmse[1]          # in the targets' units


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("P", [2, 3])
def test_data_parallel_with_target_scaling_equals_prescaled_targets(backend, P):
    """Under comm every rank scales by rank 0's statistics, whatever its own."""
    X, y = table(61)
    data, validation = sg.Dataset(X[:45], y[:45]), sg.Dataset(X[45:], y[45:])
    first = model(backend)
    s = sg.standardize_targets(first, data)
    plain = model(backend)
    plain_hist = fit(plain, prescaled(data, s), prescaled(validation, s))

    def rank(comm):
        m = model(backend, seed=3 + 10 * comm.Get_rank())   # rank 0's weights are broadcast
        # rank 0 has the statistics of the training rows, the others of some other rows
        sg.standardize_targets(m, data if comm.Get_rank() == 0 else y[::2] * 3)
        return m, fit(m, data, validation, comm=comm)

    results = run_threads(P, rank)
    for m, hist in results:
        assert np.array_equal(m.target_scaling.mean, s.mean)
        assert np.array_equal(m.target_scaling.std, s.std)
        assert_identity(m, hist, plain, plain_hist, X, s)
    for m, _ in results[1:]:
        for a, b in zip(m.params, results[0][0].params, strict=True):
            assert a.tobytes() == b.tobytes()


def test_statistics_are_those_of_the_training_targets():
    X, y = table(40)
    m = model()
    s = sg.standardize_targets(m, sg.Dataset(X, y))
    close(s.mean, y.mean(axis=0))
    close(s.std, y.std(axis=0))                        # population std, like the inputs'
    assert m.target_scaling is s and "target_scaling=standard" in repr(m)
    one = sg.MLP([4, 3, 1], loss="mse")
    t = sg.standardize_targets(one, np.full(6, 7.0))   # (n,) targets, one output; constant
    assert t.mean.tolist() == [7.0] and t.std.tolist() == [1.0]
    assert np.array_equal(sg.standardize_targets(one, y[:, :1]).mean, y[:, :1].mean(axis=0))


def test_bad_target_scaling_is_refused():
    X, y = table(20)
    classifier = sg.MLP([4, 3])
    with pytest.raises(ValueError, match="standardize_targets needs a regressor"):
        sg.standardize_targets(classifier, sg.Dataset(X, np.zeros(20, dtype=int)))
    with pytest.raises(ValueError, match="target_scaling needs a regressor"):
        classifier.target_scaling = sg.Scaling(np.zeros(3), np.ones(3))
    m = model()
    with pytest.raises(ValueError, match="statistics of 3 targets but the model has 2 outputs"):
        m.target_scaling = sg.Scaling(np.zeros(3), np.ones(3))
    with pytest.raises(TypeError, match="target_scaling"):
        m.target_scaling = (np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="targets must be targets of shape"):
        sg.standardize_targets(m, y[:, :1])
    with pytest.raises(ValueError, match="at least one row"):
        sg.standardize_targets(m, np.zeros((0, 2)))
    with pytest.raises(TypeError, match="model"):
        sg.standardize_targets("model", y)
    assert m.target_scaling is None


def test_the_model_applies_its_target_scaling_everywhere():
    """loss_and_grads, evaluate, gradient_noise: scaled units; predict, regression_report: the
    targets' own; copy, pickling and the gradient check carry the scaling."""
    X, y = table(30)
    data = sg.Dataset(X, y)
    m = model()
    s = sg.standardize_targets(m, data)
    plain = m.copy()
    plain.target_scaling = None
    scaled_data = prescaled(data, s)
    assert m.loss_and_grads(X, y)[0] == plain.loss_and_grads(X, scaled_data.y)[0]
    assert sg.evaluate(m, data)[0] == pytest.approx(sg.evaluate(plain, scaled_data)[0], 1e-14)
    close(sg.gradient_noise(m, data).b_simple, sg.gradient_noise(plain, scaled_data).b_simple)
    errors = m.predict(X) - y
    close(sg.regression_report(m, data).rmse, np.sqrt((errors ** 2).mean(axis=0)))
    assert m.copy().target_scaling is s
    clone = pickle.loads(pickle.dumps(m))
    assert np.array_equal(clone.predict(X), m.predict(X))
    assert sg.gradient_check(m, X[:5], y[:5]) < 1e-6
    assert m.predict(X).dtype == np.float64
    assert model(dtype=np.float32).copy().predict(X).dtype == np.float32


def test_model_files_carry_the_target_scaling(tmp_path):
    X, y = table(30)
    for dtype in (np.float64, np.float32):
        m = model(dtype=dtype)
        sg.standardize(m, X)
        sg.standardize_targets(m, y)
        fit(m, sg.Dataset(X, y), None)
        m.save(tmp_path / "m.npz")
        loaded = sg.load_model(tmp_path / "m.npz")
        assert np.array_equal(loaded.target_scaling.std, m.target_scaling.std)
        assert np.array_equal(loaded.predict(X), m.predict(X))
    meta = json.loads(str(ck.read_npz(tmp_path / "m.npz")["meta"]))
    assert meta["version"] == 2
    # a version 1 file, as written before target scaling, still reads; with target entries
    # it would not be a version 1 file
    meta["version"] = 1
    rewrite(tmp_path / "m.npz", meta=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="unexpected entries.*target_mean"):
        sg.load_model(tmp_path / "m.npz")
    rewrite(tmp_path / "m.npz", target_mean=None, target_std=None)
    assert sg.load_model(tmp_path / "m.npz").target_scaling is None
    for change, word in (({"target_std": np.zeros(2)}, "std must be > 0"),
                         ({"target_mean": np.zeros(3)}, "target_mean"),
                         ({"meta": np.array(json.dumps({**meta, "version": 3}))}, "version 3")):
        m.save(tmp_path / "m.npz")
        rewrite(tmp_path / "m.npz", **change)
        with pytest.raises(ValueError, match=f"m.npz.*{word}"):
            sg.load_model(tmp_path / "m.npz")


def test_checkpoints_carry_the_target_scaling_and_refuse_another(tmp_path):
    X, y = table(40)
    data, validation = sg.Dataset(X[:30], y[:30]), sg.Dataset(X[30:], y[30:])
    path = tmp_path / "run.npz"

    def run(epochs, targets=data, **kwargs):
        m = model()
        if targets is not None:
            sg.standardize_targets(m, targets)
        return m, fit(m, data, validation, checkpoint=path, resume=True, epochs=epochs,
                      **kwargs)

    run(1)
    assert sg.load_model(path).target_scaling is not None
    with pytest.raises(ValueError, match="scale_targets='standard', not 'none'"):
        run(2, targets=None)
    with pytest.raises(ValueError, match="target statistics mean=.*not the model's"):
        run(2, targets=y[:20])
    resumed, resumed_hist = run(3)
    path.unlink()
    whole, whole_hist = run(3)
    for a, b in zip(resumed.params, whole.params, strict=True):
        assert np.array_equal(a, b)
    assert resumed_hist.val_r2 == whole_hist.val_r2 and len(whole_hist.val_r2) == 3


def test_a_version_3_checkpoint_still_resumes(tmp_path):
    """Written before target scaling: no target entries, settings or val_r2 (read as NaN)."""
    X, y = table(40)
    data, validation = sg.Dataset(X[:30], y[:30]), sg.Dataset(X[30:], y[30:])
    path = tmp_path / "run.npz"
    m = model()
    fit(m, data, validation, checkpoint=path, epochs=1)
    arrays = ck.read_npz(path)
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 3
    del meta["settings"]["scale_targets"], meta["history_lists"]["val_r2"]
    rewrite(path, meta=np.array(json.dumps(meta)), history_val_r2=None)
    saved = ck.load(path)
    assert saved.target_scaling is None and saved.meta["settings"]["scale_targets"] == "none"
    assert len(saved.history["val_r2"]) == 1 and np.isnan(saved.history["val_r2"][0])
    resumed = model()
    hist = fit(resumed, data, validation, epochs=2, checkpoint=path, resume=True)
    whole = model()
    fit(whole, data, validation, epochs=2)
    for a, b in zip(resumed.params, whole.params, strict=True):
        assert np.array_equal(a, b)
    assert np.isnan(hist.val_r2[0]) and not np.isnan(hist.val_r2[1])


def test_val_r2_is_recorded_for_regressors_only():
    X, y = table(30)
    data = sg.Dataset(X, y)
    hist = fit(model(), data, data)
    assert len(hist.val_r2) == 3 and hist.to_dict()["val_r2"] == hist.val_r2
    assert "val_R^2" in sg.history.epoch_line(hist, 3)
    labels = sg.Dataset(X, (X[:, 0] > 0).astype(int))
    classified = sg.fit(sg.MLP([4, 5, 2]), labels, sg.GD(0.1), epochs=2, validation=labels,
                        progress=False)
    assert classified.val_r2 == [] and np.isnan(classified.to_dict()["val_r2"]).all()
    assert "val_R^2" not in sg.history.epoch_line(classified, 2)
