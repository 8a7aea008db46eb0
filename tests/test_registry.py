"""The registries of activations, losses and optimizers: what reads them, and their checks.

A registered activation is everywhere at once (``MLP``, its initialisation, the
memory estimate, the command line); ``tests/strategies.py`` puts it under the
gradient check (``test_gradients.py`` shows that a wrong derivative is caught).
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import activations, losses, memory
from scratchgd.cli import build_parser
from scratchgd.cli.train import DEFAULT_LR
from scratchgd.optim import OPTIMIZERS


def subcommand(parser, name):
    return parser._subparsers._group_actions[0].choices[name]


def option(parser, flag):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_the_command_line_offers_what_the_registries_hold(leaky_relu):
    train = subcommand(build_parser(), "train")
    assert option(train, "--activation").choices == tuple(activations.ACTIVATIONS)
    assert "leaky_relu" in option(train, "--activation").choices
    assert option(train, "--loss").choices == tuple(losses.LOSSES)
    assert option(train, "--optimizer").choices == tuple(OPTIMIZERS)
    assert option(train, "--backend").choices == ("numpy", "numba", "torch", "cupy",
                                                  "array_api_strict")
    assert DEFAULT_LR == {"cross_entropy": {"minibatch": 0.1, "sgd": 0.01, "gd": 0.5},
                          "mse": {"minibatch": 0.002, "sgd": 0.0002, "gd": 0.01}}


def test_a_registered_activation_trains_with_its_initialisation_and_estimate(leaky_relu):
    he = sg.MLP([5, 8, 3], "leaky_relu", seed=4)
    relu = sg.MLP([5, 8, 3], "relu", seed=4)
    for p, q in zip(he.params, relu.params, strict=True):   # He, drawn as relu's are
        np.testing.assert_array_equal(p, q)
    glorot = sg.MLP([5, 8, 3], "tanh", seed=4)
    assert not np.array_equal(he.params[0], glorot.params[0])
    assert memory.estimate(he, 4096) > memory.estimate(relu, 4096)  # its own temporaries
    data = sg.datasets.blobs(n=60, centers=3, n_features=5, seed=0)
    history = sg.fit(he, data, sg.MiniBatchSGD(0.1, 8), epochs=3, progress=False)
    assert history.epoch_loss[-1] < history.epoch_loss[0]


def test_registration_is_checked_and_undone():
    relu = activations.ACTIVATIONS["relu"]
    with pytest.raises(ValueError, match="registered already"):
        activations.register(relu)
    with pytest.raises(ValueError, match="compiled code 0 is relu's"):
        activations.register(activations.Activation("mine", relu.forward, relu.derivative, "he",
                                                    relu.forward_steps, (), compiled=0))
    with pytest.raises(ValueError, match="init"):
        activations.register(activations.Activation("mine", relu.forward, relu.derivative,
                                                    "lecun", (), ()))
    with pytest.raises(ValueError, match="forward_steps"):
        activations.register(activations.Activation("mine", relu.forward, relu.derivative, "he",
                                                    (("alloc", "matrix"),), ()))
    with pytest.raises(TypeError, match="Activation"):
        activations.register("mine")
    with pytest.raises(ValueError, match="compiled code 1 is mse's"):
        losses.register(losses.Loss("mine", losses.mse, False, 1.0, (), compiled=1))
    with pytest.raises(ValueError, match="not registered"):
        activations.unregister("mine")
    assert "mine" not in activations.ACTIVATIONS and "mine" not in losses.LOSSES


def test_an_unregistered_activation_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="activation must be one of .*'relu'.*got 'leaky_relu'"):
        sg.MLP([2, 3, 2], "leaky_relu")


@pytest.fixture
def loss_twins():
    """cross_entropy and mse registered again under other names, without compiled twins: a
    classifier and a regressor the package knows only by their ``classes``."""
    for name, twin in (("ce_twin", "cross_entropy"), ("mse_twin", "mse")):
        entry = losses.LOSSES[twin]
        losses.register(losses.Loss(name, entry.function, entry.classes, entry.lr_scale,
                                    entry.steps))
    yield
    losses.unregister("ce_twin")
    losses.unregister("mse_twin")


@pytest.mark.parametrize("loss, twin", [("cross_entropy", "ce_twin"), ("mse", "mse_twin")])
def test_a_registered_loss_is_told_apart_by_its_classes_not_its_name(loss_twins, loss, twin):
    """Accuracy for a loss of class labels, R^2 for one of real targets, whatever its name:
    the twin's History and evaluation equal the original's."""
    if loss == "mse":
        data = sg.datasets.regression_1d(seed=0)
        sizes, optimizer = [1, 8, 1], lambda: sg.MiniBatchSGD(0.02, 16)
    else:
        data = sg.datasets.blobs(n=60, centers=3, n_features=5, seed=0)
        sizes, optimizer = [5, 8, 3], lambda: sg.MiniBatchSGD(0.1, 8)
    train, test = sg.datasets.random_split(data, test_size=0.25, seed=0)
    runs = {}
    for name in (loss, twin):
        model = sg.MLP(sizes, loss=name, seed=1)
        history = sg.fit(model, train, optimizer(), epochs=2, validation=test, progress=False)
        runs[name] = history, sg.evaluate(model, test)
    (h, ev), (h_twin, ev_twin) = runs[loss], runs[twin]
    np.testing.assert_array_equal(h_twin.epoch_accuracy, h.epoch_accuracy)
    np.testing.assert_array_equal(h_twin.val_accuracy, h.val_accuracy)
    np.testing.assert_array_equal(h_twin.val_r2, h.val_r2)
    np.testing.assert_array_equal(ev_twin, ev)
    assert (np.isnan(h.epoch_accuracy).all() if loss == "mse" else len(h.val_r2) == 0)


def test_a_checkpoint_naming_an_unregistered_loss_is_refused_in_one_line(tmp_path, loss_twins,
                                                                         monkeypatch):
    from scratchgd import checkpoint

    data = sg.datasets.blobs(n=40, centers=3, n_features=5, seed=0)
    path = tmp_path / "run.npz"
    sg.fit(sg.MLP([5, 8, 3], loss="ce_twin", seed=0), data, sg.MiniBatchSGD(0.1, 8), epochs=1,
           checkpoint=path, progress=False)
    assert checkpoint.load(path).meta["model"]["loss"] == "ce_twin"
    monkeypatch.delitem(losses.LOSSES, "ce_twin")   # a scratchgd without it
    with pytest.raises(ValueError) as refused:
        checkpoint.load(path)
    message = str(refused.value)
    assert "'ce_twin'" in message and "not registered" in message and "\n" not in message
