"""Bad input gets a ValueError/TypeError naming the argument, and changes nothing."""

import numpy as np
import pytest

import scratchgd as sg


@pytest.fixture
def setup():
    data = sg.datasets.blobs(n=20, centers=3, n_features=4, seed=0)
    model = sg.MLP([4, 5, 3], seed=0)
    return data, model, [p.copy() for p in model.params]


def unchanged(model, before):
    return all(np.array_equal(p, q) for p, q in zip(model.params, before, strict=True))


@pytest.mark.parametrize("X, y, word", [
    (np.full((3, 4), np.nan), [0, 1, 2], "X must be finite"),
    (np.full((3, 4), np.inf), [0, 1, 2], "X must be finite"),
    (np.ones((3, 4)), [0, 1], "y must have 3 rows"),
    (np.ones((3, 5)), [0, 1, 2], "X must have 4 columns"),
    (np.ones((3, 4)), [0, 1, 3], r"labels must be in \[0, 3\)"),
    (np.ones((3, 4)), [0, -1, 2], r"labels must be in \[0, 3\)"),
    (np.ones((3, 4)), [0.5, 1, 2], "integer class labels"),
    (np.ones((0, 4)), np.zeros(0, dtype=int), "at least one row"),
    (np.ones((3, 4), dtype=object), [0, 1, 2], "X must hold real numbers"),
])
def test_loss_and_grads_refuses_bad_batches(setup, X, y, word):
    _, model, before = setup
    with pytest.raises((ValueError, TypeError), match=word):
        model.loss_and_grads(X, np.asarray(y))
    assert unchanged(model, before)


def test_bad_reduction(setup):
    data, model, _ = setup
    with pytest.raises(ValueError, match="reduction"):
        model.loss_and_grads(data.X, data.y, reduction="avg")


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"sizes": [4]}, ValueError, "sizes"),
    ({"sizes": [4, 0, 3]}, ValueError, r"sizes\[1\]"),
    ({"sizes": "4,3"}, TypeError, "sizes"),
    ({"sizes": [4, 3.5]}, TypeError, r"sizes\[1\]"),
    ({"activation": "gelu"}, ValueError, "activation"),
    ({"loss": "hinge"}, ValueError, "loss"),
    ({"backend": "cuda"}, ValueError, "backend"),
    ({"dtype": np.int32}, ValueError, "dtype"),
    ({"dtype": "nonsense"}, TypeError, "dtype"),
    ({"dtype": "0\x1b"}, TypeError, "dtype"),  # np.dtype raises ValueError/SyntaxError here
    ({"seed": -1}, ValueError, "seed"),
    ({"sizes": [4, 1], "loss": "cross_entropy"}, ValueError, "2 outputs"),
])
def test_bad_models_are_refused(kwargs, exc, word):
    args = {"sizes": [4, 5, 3], **kwargs}
    with pytest.raises(exc, match=word):
        sg.MLP(**args)


@pytest.mark.parametrize("make, exc, word", [
    (lambda: sg.MiniBatchSGD(0.1, batch_size=0), ValueError, "batch_size"),
    (lambda: sg.MiniBatchSGD(0.1, batch_size=-1), ValueError, "batch_size"),
    (lambda: sg.GD(0.0), ValueError, "lr"),
    (lambda: sg.GD(-0.1), ValueError, "lr"),
    (lambda: sg.SGD(float("nan")), ValueError, "lr"),
    (lambda: sg.SGD("0.1"), TypeError, "lr"),
    (lambda: sg.GD(0.1, momentum=1.0), ValueError, "momentum"),
    (lambda: sg.GD(0.1, momentum=-0.5), ValueError, "momentum"),
])
def test_bad_optimizers_are_refused(make, exc, word):
    with pytest.raises(exc, match=word):
        make()


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": -2}, ValueError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"accumulate": 0}, ValueError, "accumulate"),
    ({"accumulate": "all"}, ValueError, "accumulate"),
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
    ({"data": "digits"}, TypeError, "data"),
    ({"model": None}, TypeError, "model"),
    ({"validation": sg.datasets.blobs(n=5, n_features=3)}, ValueError, "validation"),
    ({"data": sg.datasets.blobs(n=9, centers=5, n_features=4)}, ValueError, "data.y"),
])
def test_bad_fit_arguments_change_nothing(setup, kwargs, exc, word):
    data, model, before = setup
    args = {"model": model, "data": data, "optimizer": sg.MiniBatchSGD(0.1, 4), "epochs": 2,
            "progress": False, **kwargs}
    with pytest.raises(exc, match=word):
        sg.fit(**args)
    assert unchanged(model, before)
