"""The scikit-learn estimators: scikit-learn's own checks, and equal to ``sg.fit``
(docs/math.md, identity 11)."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgd as sg

pytest.importorskip("sklearn", reason="needs the 'sklearn' extra")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from test_dtypes import assert_same, features  # noqa: E402

from scratchgd.estimators import MLPClassifier, MLPRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["numpy", "numba"]

# Configurations run through scikit-learn's estimator checks: both estimators with their
# DEFAULT parameters (the regressor scales its targets and takes lr 0.002, see
# docs/estimators.md), then small networks in other configurations: both backends, batch
# sizes 1, 32 and "full", float32, momentum with accumulation. The small regressors (16
# hidden units, where the default rate learns too slowly for 20 epochs) get their own
# rates; "full" takes 200 epochs because 20 full-batch steps do not reach the checks'
# R^2 > 0.5.
CONFIGURATIONS = [
    ({"backend": "numba"}, {"backend": "numba", "learning_rate_init": 0.01}),
    ({"batch_size": 1, "backend": "numba"},
     {"batch_size": 1, "backend": "numba", "learning_rate_init": 0.0005}),
    ({"batch_size": "full"}, {"batch_size": "full", "learning_rate_init": 0.05, "max_iter": 200}),
    ({"dtype": "float32"}, {"dtype": "float32", "learning_rate_init": 0.01}),
    ({"momentum": 0.9, "accumulate": 2}, {"momentum": 0.9, "accumulate": 2}),
]
CHECKED = ([MLPClassifier(), MLPRegressor()]
           + [MLPClassifier(hidden_layer_sizes=(16,), **c) for c, _ in CONFIGURATIONS]
           + [MLPRegressor(hidden_layer_sizes=(16,), **r) for _, r in CONFIGURATIONS])

EXPECTED_FAILURES: dict[str, str] = {}
"""Checks these estimators are known to fail, with the reason: none at present."""


@pytest.mark.slow
@parametrize_with_checks(CHECKED, legacy=True,
                         expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def digits():
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    return train.X, train.y, test.X, test.y


def small(n=60):
    data = sg.datasets.blobs(n=n, centers=3, n_features=4, seed=1)
    labels = np.array(["cat", "dog", "emu"])
    return data.X, labels[data.y]


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert p.dtype == q.dtype and np.array_equal(p, q)


def library_fit(X, codes, n_outputs, loss, hidden=(8,), activation="relu", batch_size=32,
                lr=0.1, momentum=0.0, epochs=20, accumulate=1, seed=0, dtype=np.float64,
                backend="numpy", scale_targets=False):
    """What the module docstring says an estimator with random_state=seed does."""
    model = sg.MLP([X.shape[1], *hidden, n_outputs], activation, loss, seed=seed, dtype=dtype,
                   backend=backend)
    if scale_targets:
        sg.standardize_targets(model, codes)
    optimizer = (sg.GD(lr, momentum) if batch_size == "full"
                 else sg.MiniBatchSGD(lr, batch_size=batch_size, momentum=momentum))
    history = sg.fit(model, sg.Dataset(X, codes), optimizer, epochs=epochs,
                     accumulate=accumulate, seed=seed, progress=False)
    return model, history


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size, momentum, accumulate, dtype", [
    (1, 0.0, 1, "float64"), (32, 0.9, 1, "float64"), ("full", 0.5, 1, "float64"),
    (7, 0.0, 3, "float32")])
def test_classifier_equals_library_fit(backend, batch_size, momentum, accumulate, dtype):
    """Item 11: random_state=r fits exactly the weights of sg.MLP(seed=r) + sg.fit(seed=r)."""
    X, y = small()
    clf = MLPClassifier(hidden_layer_sizes=(8,), batch_size=batch_size, momentum=momentum,
                        accumulate=accumulate, max_iter=4, random_state=3, dtype=dtype,
                        backend=backend).fit(X, y)
    codes = np.searchsorted(clf.classes_, y)
    model, history = library_fit(X, codes, 3, "cross_entropy", batch_size=batch_size,
                                 momentum=momentum, accumulate=accumulate, epochs=4, seed=3,
                                 dtype=np.dtype(dtype).type, backend=backend)
    assert clf.classes_.tolist() == ["cat", "dog", "emu"]
    assert_same_arrays(clf.model_.params, model.params)
    assert clf.loss_curve_ == history.epoch_loss
    assert (clf.n_iter_, clf.t_) == (4, 4 * len(X))
    assert clf.history_.iteration_loss == history.iteration_loss


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("targets", [1, 3])
@pytest.mark.parametrize("scale_targets", [True, False])
def test_regressor_equals_library_fit(backend, targets, scale_targets):
    """Item 11 for the regressor: mse on targets (n, k); (n,) is k = 1; targets scaled or not."""
    X, _ = small()
    Y = np.stack([10 * np.sin(X[:, j]) + 100 * j for j in range(targets)], axis=1)
    y = Y[:, 0] if targets == 1 else Y
    reg = MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", learning_rate_init=0.005,
                       max_iter=3, random_state=2, backend=backend,
                       scale_targets=scale_targets).fit(X, y)
    model, history = library_fit(X, Y, targets, "mse", activation="tanh", lr=0.005, epochs=3,
                                 seed=2, backend=backend, scale_targets=scale_targets)
    assert_same_arrays(reg.model_.params, model.params)
    assert reg.loss_curve_ == history.epoch_loss
    assert (reg.model_.target_scaling is not None) == scale_targets
    prediction = reg.predict(X)
    assert prediction.shape == y.shape and prediction.dtype == np.float64
    assert np.array_equal(prediction.reshape(Y.shape), model.predict(X))
    if scale_targets:   # predictions in the targets' units: z * std + mean
        s = model.target_scaling
        np.testing.assert_allclose(s.mean, Y.mean(axis=0), rtol=1e-12)
        assert np.array_equal(prediction.reshape(Y.shape), model.forward(X) * s.std + s.mean)


def test_logistic_is_sigmoid():
    X, y = small()
    a = MLPClassifier(hidden_layer_sizes=(5,), activation="logistic", max_iter=2,
                      random_state=0).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(5,), activation="sigmoid", max_iter=2,
                      random_state=0).fit(X, y)
    assert a.model_.activation == "sigmoid"
    assert_same_arrays(a.coefs_, b.coefs_)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 16])
def test_partial_fit_n_times_equals_fit(backend, batch_size):
    """Item 11: N partial_fit calls == fit(max_iter=N): weights, momentum, loader, History."""
    X, y = small()
    params = dict(hidden_layer_sizes=(8,), batch_size=batch_size, momentum=0.9, max_iter=4,
                  random_state=5, backend=backend)
    whole = MLPClassifier(**params).fit(X, y)
    parts = MLPClassifier(**params)
    for _ in range(4):
        parts.partial_fit(X, y, classes=["cat", "dog", "emu"])
    assert_same_arrays(parts.model_.params, whole.model_.params)
    assert_same_arrays(parts._optimizer.velocity, whole._optimizer.velocity)
    for name in ("epochs", "iterations", "steps", "samples_seen", "iteration_loss",
                 "epoch_loss", "epoch_accuracy", "steps_at_epoch_end",
                 "iterations_at_epoch_end"):
        assert getattr(parts.history_, name) == getattr(whole.history_, name), name
    assert (parts.n_iter_, parts.t_, parts.loss_curve_) == (whole.n_iter_, whole.t_,
                                                            whole.loss_curve_)


def test_regressor_partial_fit_n_times_equals_fit():
    X, _ = small()
    y = np.cos(X[:, 0])
    params = dict(hidden_layer_sizes=(6,), batch_size=5, learning_rate_init=0.005, max_iter=3,
                  random_state=1)
    whole = MLPRegressor(**params).fit(X, y)
    parts = MLPRegressor(**params)
    for _ in range(3):
        parts.partial_fit(X, y)
    assert_same_arrays(parts.model_.params, whole.model_.params)
    assert parts.loss_curve_ == whole.loss_curve_


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_start_continues_weights_and_loader(backend):
    """warm_start: fit(max_iter=2) then fit(max_iter=3) == fit(max_iter=5)."""
    X, y = small()
    params = dict(hidden_layer_sizes=(8,), batch_size=4, momentum=0.5, random_state=0,
                  backend=backend)
    whole = MLPClassifier(max_iter=5, **params).fit(X, y)
    warm = MLPClassifier(max_iter=2, warm_start=True, **params).fit(X, y)
    model = warm.model_
    warm.set_params(max_iter=3).fit(X, y)
    assert warm.model_ is model
    assert_same_arrays(warm.model_.params, whole.model_.params)
    assert warm.loss_curve_ == whole.loss_curve_ and warm.n_iter_ == 5
    # without warm_start, fit starts afresh from random_state
    cold = MLPClassifier(max_iter=2, **params).fit(X, y)
    cold.set_params(max_iter=5).fit(X, y)
    assert_same_arrays(cold.model_.params, whole.model_.params)
    assert cold.n_iter_ == 5


def test_random_state_none_draws_from_numpy_global_generator():
    """None: one draw of check_random_state(None), as scikit-learn does; a RandomState alike."""
    X, y = small()
    seed = np.random.RandomState(11).randint(np.iinfo(np.int32).max)
    expected = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=seed).fit(X, y)
    np.random.seed(11)  # noqa: NPY002 (the legacy global generator is what None draws from)
    from_global = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(X, y)
    from_instance = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2,
                                  random_state=np.random.RandomState(11)).fit(X, y)
    assert_same_arrays(from_global.coefs_, expected.coefs_)
    assert_same_arrays(from_instance.coefs_, expected.coefs_)


def test_clone_is_unfitted_with_equal_parameters():
    X, y = small()
    clf = MLPClassifier(hidden_layer_sizes=(4, 3), batch_size="full", max_iter=2,
                        random_state=0).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "model_") and not hasattr(twin, "coefs_")
    assert_same_arrays(twin.fit(X, y).coefs_, clf.coefs_)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle_round_trip_predicts_and_continues_alike(backend):
    """Unpickled: same predictions, live coefs_, and it continues exactly as the original."""
    X, y = small()
    clf = MLPClassifier(hidden_layer_sizes=(6,), batch_size=8, momentum=0.9, max_iter=2,
                        random_state=0, backend=backend).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(copy.predict_proba(X), clf.predict_proba(X))
    assert np.array_equal(copy.predict(X), clf.predict(X))
    assert_same_arrays(copy.coefs_, clf.coefs_)
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert_same_arrays(copy.coefs_, clf.coefs_)
    assert all(c is p for c, p in zip(copy.coefs_, copy.model_.params[0::2], strict=True))


def test_coefs_and_intercepts_are_current_in_scikit_learn_layout():
    X, y = small()
    clf = MLPClassifier(hidden_layer_sizes=(5, 7), max_iter=1, random_state=0)
    clf.partial_fit(X, y, classes=np.unique(y))
    assert [W.shape for W in clf.coefs_] == [(4, 5), (5, 7), (7, 3)]
    assert [b.shape for b in clf.intercepts_] == [(5,), (7,), (3,)]
    before = [W.copy() for W in clf.coefs_]
    clf.partial_fit(X, y)
    assert not np.array_equal(before[0], clf.coefs_[0])  # training moved them
    assert_same_arrays(clf.coefs_ + clf.intercepts_,
                       clf.model_.params[0::2] + clf.model_.params[1::2])
    again = pickle.loads(pickle.dumps(clf))
    again.partial_fit(X, y)
    assert_same_arrays(again.coefs_, again.model_.params[0::2])
    assert not np.array_equal(again.coefs_[0], clf.coefs_[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_is_argmax_of_predict_proba(dtype):
    X, y, X_test, _ = digits()
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0, dtype=dtype)
    proba = clf.fit(X, y).predict_proba(X_test)
    assert proba.dtype == np.dtype(dtype) and proba.shape == (len(X_test), 10)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-6)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))


def test_pipeline_with_scaler():
    X, y, X_test, y_test = digits()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=5,
                                                         learning_rate_init=0.05, random_state=0))
    assert pipe.fit(X, y).score(X_test, y_test) > 0.9


def test_cross_val_score():
    X, y, _, _ = digits()
    scores = cross_val_score(MLPClassifier(hidden_layer_sizes=(32,), max_iter=5,
                                           random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_grid_search_over_batch_size_and_learning_rate():
    """GridSearchCV: every combination scored; the refit best equals a direct fit with its params."""
    X, y, _, _ = digits()
    grid = {"batch_size": [8, "full"], "learning_rate_init": [0.01, 0.1]}
    search = GridSearchCV(MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0),
                          grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_ == {"batch_size": 8, "learning_rate_init": 0.1}
    direct = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0,
                           **search.best_params_).fit(X, y)
    assert_same_arrays(search.best_estimator_.coefs_, direct.coefs_)


@pytest.mark.slow
def test_grid_search_in_worker_processes_with_numba():
    """n_jobs=2: the estimators travel to joblib's worker processes by pickle and back."""
    X, y, _, _ = digits()
    grid = {"batch_size": [16, 64]}
    estimator = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                              backend="numba")
    parallel = GridSearchCV(estimator, grid, cv=2, n_jobs=2).fit(X, y)
    serial = GridSearchCV(estimator, grid, cv=2).fit(X, y)
    assert np.array_equal(parallel.cv_results_["mean_test_score"],
                          serial.cv_results_["mean_test_score"])


def test_feature_names_in_from_a_data_frame():
    pd = pytest.importorskip("pandas", reason="needs the 'oracle' extra")
    X, y = small()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(frame, y)
    assert clf.feature_names_in_.tolist() == ["a", "b", "c", "d"]


@pytest.mark.parametrize("params, error, message", [
    ({"hidden_layer_sizes": (4, 0)}, ValueError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "4"}, TypeError, "hidden_layer_sizes"),
    ({"activation": "identity"}, ValueError, "activation"),
    ({"batch_size": "auto"}, ValueError, "batch_size"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"learning_rate_init": -0.1}, ValueError, "lr"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"accumulate": "step"}, ValueError, "accumulate"),
    ({"shuffle": "yes"}, ValueError, "shuffle"),
    ({"random_state": -1}, ValueError, "random_state"),
    ({"random_state": "0"}, ValueError, "cannot be used to seed"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"backend": "torch"}, ValueError, "backend"),
    ({"warm_start": "no"}, TypeError, "warm_start"),
    ({"verbose": 1}, TypeError, "verbose"),
])
def test_bad_parameters_are_refused_in_fit_before_any_state(params, error, message):
    X, y = small()
    clf = MLPClassifier(**params)  # __init__ only stores
    with pytest.raises(error, match=message):
        clf.fit(X, y)
    assert not hasattr(clf, "model_") and not hasattr(clf, "n_features_in_")


def test_continuing_refuses_a_changed_network_and_unknown_labels():
    X, y = small()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0,
                        warm_start=True).fit(X, y)
    before = [p.copy() for p in clf.model_.params]
    with pytest.raises(ValueError, match="cannot continue training"):
        clf.set_params(hidden_layer_sizes=(5,)).fit(X, y)
    clf.set_params(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, np.where(y == "cat", "cow", y))
    with pytest.raises(ValueError, match="differs from classes_"):
        clf.partial_fit(X, y, classes=["cat", "dog"])
    assert_same_arrays(clf.model_.params, before)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, np.full(len(X), "cat"))


def test_regressor_refuses_a_changed_number_of_targets():
    X, _ = small()
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0,
                       learning_rate_init=0.01).fit(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="2 target columns"):
        reg.partial_fit(X, np.ones((len(X), 2)))


def test_regressor_keeps_the_target_scaling_of_its_first_fit():
    """partial_fit and warm_start keep the first statistics; a changed scale_targets is refused."""
    X, _ = small()
    y = 1e3 + 100 * np.sin(X[:, 0])
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0, warm_start=True)
    first = reg.fit(X, y).model_.target_scaling
    np.testing.assert_allclose(first.mean, [y.mean()], rtol=1e-12)
    reg.partial_fit(X[:10], y[:10] + 500)
    assert reg.model_.target_scaling is first
    assert abs(reg.predict(X).mean() - y.mean()) < 0.5 * y.std()   # in the targets' units
    with pytest.raises(ValueError, match="targets scaled"):
        reg.set_params(scale_targets=False).fit(X, y)
    bad = MLPRegressor(scale_targets="yes")
    with pytest.raises(TypeError, match="scale_targets"):
        bad.fit(X, y)
    assert not hasattr(bad, "n_features_in_")      # refused before any state


def test_divergence_is_reported_not_hidden():
    """Plain SGD at a large rate on raw targets diverges: TrainingDiverged, never NaN weights."""
    X, _ = small()
    with pytest.raises(sg.TrainingDiverged, match="smaller learning rate"):
        MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=5.0,
                     random_state=0).fit(X, 1e4 * X[:, 0])


def test_import_scratchgd_does_not_import_sklearn():
    code = "import sys, scratchgd; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = small()
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, verbose=True).fit(X, y)
    printed = capsys.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines()
             if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["int64", "bool", "uint8", "float16"])
def test_estimators_take_integer_and_bool_features(backend, dtype):
    X, y = features(dtype)
    cast = X.astype(np.float64)
    params = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0, backend=backend)
    clf, ref = MLPClassifier(**params).fit(X, y), MLPClassifier(**params).fit(cast, y)
    assert_same(clf.model_.params, ref.model_.params)
    assert np.array_equal(clf.predict(X), ref.predict(cast))
    assert clf.score(X, y) == ref.score(cast, y)
    targets = X[:, :2].astype(np.float64) @ np.array([0.5, -0.25])
    params["learning_rate_init"] = 1e-3  # unscaled inputs up to 20
    reg = MLPRegressor(**params).fit(X, targets)
    assert_same(reg.model_.params, MLPRegressor(**params).fit(cast, targets).model_.params)
    assert np.isfinite(reg.predict(X)).all()
