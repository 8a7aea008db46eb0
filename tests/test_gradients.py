"""The gradient math (docs/math.md, identities 0-2): losses, backprop vs finite
differences, and accumulation over arbitrary batch partitions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    ACTIVATIONS,
    LOSSES,
    assert_backprop_matches_differences,
    fixed_problem,
    partitions,
    problems,
)

import scratchgd as sg
from scratchgd import activations
from scratchgd.losses import cross_entropy, log_softmax, mse

ACCUM_TOL = 1e-10  # docs/math.md, identity 2


def rel_err(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(
        np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


# -- item 0: the losses ------------------------------------------------------

def test_cross_entropy_is_minus_log_softmax_of_the_label():
    z = np.array([[2.0, 1.0, -1.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss_sum, dz = cross_entropy(z, y)
    assert loss_sum == pytest.approx(-np.log(p[0, 0]) - np.log(p[1, 2]), rel=1e-14)
    expected = p.copy()
    expected[[0, 1], y] -= 1
    np.testing.assert_allclose(dz, expected, rtol=1e-14)


def test_log_softmax_does_not_overflow():
    z = np.array([[1000.0, 0.0, -1000.0]])
    out = log_softmax(z)
    assert np.isfinite(out).all()
    assert out[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_mse_is_mean_over_outputs_summed_over_rows():
    z = np.array([[1.0, 2.0], [3.0, 5.0]])
    y = np.array([[0.0, 2.0], [3.0, 3.0]])
    loss_sum, dz = mse(z, y)
    assert loss_sum == pytest.approx((1 + 0) / 2 + (0 + 4) / 2)
    np.testing.assert_allclose(dz, (2 / 2) * (z - y))


@given(problems())
def test_sum_reduction_is_n_times_mean(problem):
    sizes, activation, loss, X, y, seed = problem
    model = sg.MLP(sizes, activation, loss, seed=seed)
    mean_loss, mean_grads = model.loss_and_grads(X, y, reduction="mean")
    sum_loss, sum_grads = model.loss_and_grads(X, y, reduction="sum")
    assert sum_loss == pytest.approx(len(X) * mean_loss, rel=1e-12)
    for gm, gs in zip(mean_grads, sum_grads, strict=True):
        np.testing.assert_allclose(gs, len(X) * gm, rtol=1e-12, atol=1e-300)


# -- item 1: backprop equals central differences ----------------------------

@given(problems())
def test_backprop_equals_central_differences(problem):
    assert_backprop_matches_differences(*problem)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_backprop_equals_central_differences_for_every_registered_pair(activation, loss):
    """Every activation and loss of the registries, whatever Hypothesis draws."""
    assert_backprop_matches_differences(*fixed_problem(activation, loss))


def test_a_wrong_derivative_of_a_registered_activation_fails_the_check(leaky_relu):
    """The net works: an activation registered with a planted wrong derivative is caught."""
    for loss in LOSSES:
        assert_backprop_matches_differences(*fixed_problem("leaky_relu", loss))
    wrong = activations.Activation(
        "leaky_relu_wrong", leaky_relu.forward,
        lambda a, xp: (a > 0).astype(a.dtype),  # slope 0, not 0.01
        "he", leaky_relu.forward_steps, leaky_relu.derivative_steps)
    activations.register(wrong)
    try:
        for loss in LOSSES:
            with pytest.raises(AssertionError, match="relative error"):
                assert_backprop_matches_differences(*fixed_problem("leaky_relu_wrong", loss))
    finally:
        activations.unregister("leaky_relu_wrong")
    assert "leaky_relu_wrong" not in activations.ACTIVATIONS


def test_gradient_check_detects_a_wrong_gradient(monkeypatch):
    model = sg.MLP([3, 4, 2], "tanh", seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    y = np.array([0, 1, 1, 0, 1])
    right = model.loss_and_grads

    def wrong(X, y, reduction="mean"):
        loss, grads = right(X, y, reduction)
        grads[0] = grads[0] * 1.01
        return loss, grads

    monkeypatch.setattr(model, "loss_and_grads", wrong)
    assert sg.gradient_check(model, X, y) > 1e-3


def test_loss_and_grads_is_pure():
    model = sg.MLP([4, 5, 3], seed=1)
    before = [p.copy() for p in model.params]
    X = np.random.default_rng(1).standard_normal((6, 4))
    model.loss_and_grads(X, np.arange(6) % 3)
    for p, q in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(p, q)


# -- item 2: accumulation over any partition ----------------------------------

@given(st.data())
def test_summed_batch_gradients_over_any_partition_equal_full_batch(data):
    sizes, activation, loss, X, y, seed = data.draw(problems(max_rows=20))
    model = sg.MLP(sizes, activation, loss, seed=seed)
    cuts = data.draw(partitions(len(X)))
    full_loss, full_grads = model.loss_and_grads(X, y, reduction="mean")
    total = [np.zeros_like(p) for p in model.params]
    loss_total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        batch_loss, grads = model.loss_and_grads(X[a:b], y[a:b], reduction="sum")
        loss_total += batch_loss
        for t, g in zip(total, grads, strict=True):
            t += g
    assert loss_total / len(X) == pytest.approx(full_loss, rel=ACCUM_TOL)
    for t, g in zip(total, full_grads, strict=True):
        assert rel_err(t / len(X), g) < ACCUM_TOL


def test_mean_of_batch_means_is_wrong_with_a_short_last_batch():
    """The bug this library must not have: averaging batch means over-weights a short batch."""
    model = sg.MLP([3, 4, 2], seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    _, full = model.loss_and_grads(X, y)
    means = [model.loss_and_grads(X[s], y[s])[1] for s in (slice(0, 4), slice(4, 5))]
    mean_of_means = [(a + b) / 2 for a, b in zip(*means, strict=True)]
    assert rel_err(mean_of_means[0], full[0]) > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_close_to_float64(dtype):
    model64 = sg.MLP([5, 7, 3], "sigmoid", seed=3)
    model = sg.MLP([5, 7, 3], "sigmoid", seed=3, dtype=dtype)
    X = np.random.default_rng(3).standard_normal((8, 5))
    y = np.arange(8) % 3
    loss64, grads64 = model64.loss_and_grads(X, y)
    loss, grads = model.loss_and_grads(X, y)
    assert all(g.dtype == dtype for g in grads)
    assert loss == pytest.approx(loss64, rel=1e-5)
    for g, g64 in zip(grads, grads64, strict=True):
        np.testing.assert_allclose(g, g64, rtol=1e-4, atol=1e-5)
