"""The toy models behind the article's two figures: their math, and that they train like fit."""

import numpy as np
import pytest

import scratchgd as sg
from scratchgd.toy import Line, descend, linear_loss_surface


def line_data(seed=0, n=7):
    rng = np.random.default_rng(seed)
    return sg.Dataset(rng.uniform(-2, 2, (n, 1)), rng.normal(size=(n, 1)))


def test_line_gradient_matches_central_differences():
    data, eps = line_data(), 1e-6
    for w in (-1.3, 0.0, 0.7):
        _, (grad,) = Line(w).loss_and_grads(data.X, data.y)
        plus, _ = Line(w + eps).loss_and_grads(data.X, data.y)
        minus, _ = Line(w - eps).loss_and_grads(data.X, data.y)
        assert grad[0] == pytest.approx((plus - minus) / (2 * eps), rel=1e-7)


def test_line_losses_and_minimum_agree():
    data = line_data(1)
    w = np.linspace(-3, 3, 7)
    losses = Line.per_sample_losses(w, data)
    assert losses.shape == (7, len(data))
    for j, wj in enumerate(w):
        mean, _ = Line(wj).loss_and_grads(data.X, data.y)
        total, _ = Line(wj).loss_and_grads(data.X, data.y, reduction="sum")
        assert losses[j].mean() == pytest.approx(mean) and total == pytest.approx(len(data) * mean)
    _, (grad,) = Line(Line.minimum(data)).loss_and_grads(data.X, data.y)
    assert abs(grad[0]) < 1e-12  # the average loss is flat at its minimum


def test_linear_loss_surface_is_the_mlp_mse_loss():
    data = line_data(2, n=11)
    model = sg.MLP([1, 1], loss="mse")
    rng = np.random.default_rng(3)
    for w, b in rng.normal(size=(5, 2)):
        model.params[0][...], model.params[1][...] = w, b
        loss, _ = model.loss_and_grads(data.X, data.y)
        assert linear_loss_surface(np.array([w]), np.array([b]), data)[0] == pytest.approx(loss)


@pytest.mark.parametrize("make_optimizer", [lambda: sg.GD(0.1), lambda: sg.SGD(0.05),
                                            lambda: sg.MiniBatchSGD(0.1, batch_size=3)])
def test_descend_takes_the_steps_fit_takes(make_optimizer):
    data = line_data(4, n=9)
    epochs = 3
    optimizer = make_optimizer()
    steps = epochs * len(optimizer.loader(data))
    walked, trained = sg.MLP([1, 1], loss="mse", seed=1), sg.MLP([1, 1], loss="mse", seed=1)
    path = descend(walked, data, optimizer, steps, seed=5)
    sg.fit(trained, data, make_optimizer(), epochs=epochs, progress=False, seed=5)
    assert path.shape == (steps + 1, 2)
    np.testing.assert_allclose(path[-1], np.concatenate([p.ravel() for p in trained.params]),
                               rtol=0, atol=1e-12)
    assert optimizer.lr == make_optimizer().lr  # restored after a run


def test_descend_decay_shrinks_the_steps():
    data = line_data(5)
    constant = np.abs(np.diff(descend(Line(1.0), data, sg.SGD(0.05), 200, seed=0)[:, 0]))
    decaying = np.abs(np.diff(descend(Line(1.0), data, sg.SGD(0.05), 200, seed=0,
                                      lr_decay=1.0)[:, 0]))
    assert decaying[100:].mean() < constant[100:].mean() / 10


@pytest.mark.parametrize("kwargs, error", [({"steps": 0}, ValueError), ({"steps": 2.5}, TypeError),
                                           ({"steps": 3, "lr_decay": -1.0}, ValueError)])
def test_descend_rejects_bad_arguments(kwargs, error):
    model = Line(0.5)
    with pytest.raises(error):
        descend(model, line_data(), sg.SGD(0.1), **kwargs)
    assert model.params[0][0] == 0.5


def test_line_data_must_be_one_column():
    with pytest.raises(ValueError, match="one feature"):
        Line.minimum(sg.Dataset(np.ones((3, 2)), np.ones((3, 1))))
