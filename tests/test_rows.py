"""The span of the article's SGD (batch 1, no momentum, no accumulation) is the general span.

``kernels.compiled.train_iterations`` runs batches of one row through ``train_iterations_rows_kernel``
(the step in place, only the weights of non-zero inputs, a bound instead of a
checking pass); ``train_iterations_kernel`` with the loops computes the same numbers through
gradient arrays. Both must give the same bits: weights, loss sums, correct
counts, where a diverging run stops, and the last finite weights it keeps.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import ACTIVATIONS, LOSSES

import scratchgd as sg
from scratchgd.kernels import compiled
from scratchgd.losses import LOSSES as LOSSES_TABLE
from scratchgd.scaling import fit_scaling

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")


def problem(loss, n=60, d=64, seed=0):
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    X, y = train.X[seed:seed + n, :d], train.y[seed:seed + n]
    return X, (y if LOSSES_TABLE[loss].classes else np.eye(10)[y])


def general_span(params, X, y, order, lr, activation, loss, scaling=None):
    """``train_iterations_kernel``'s loops on batches of one row: the path every other batch takes."""
    n = len(order)
    bounds = np.arange(n + 1)
    Xs, x_format, labels, targets = compiled.span_input(X, y, loss, params[0].dtype)
    mean, inv_std = compiled.scaling_inputs(scaling)
    loss_sums, correct = np.zeros(n), np.zeros(n, dtype=np.int64)
    done, steps, status = compiled.train_iterations_kernel(
        tuple(params[0::2]), tuple(params[1::2]), None, None, Xs, x_format, labels, targets,
        order, bounds, 0, n, 1, lr, 0.0, compiled.activation_code(activation),
        compiled.loss_code(loss), False, loss_sums, correct, mean, inv_std)
    return loss_sums[:done + (status == compiled.LOSS_NOT_FINITE)], correct[:done], steps, status


def rows_span(params, X, y, order, lr, activation, loss, scaling=None, limit=None):
    """``train_iterations`` on one-row batches: ``train_iterations_rows_kernel`` (or, given
    ``limit``, that kernel called directly)."""
    bounds = np.arange(len(order) + 1)
    if limit is None:
        return compiled.train_iterations(params, None, X, y, order, bounds, 0, len(order), 1, lr, 0.0,
                                 activation, loss, scaling=scaling)
    n = len(order)
    Xs, x_format, labels, targets = compiled.span_input(X, y, loss, params[0].dtype)
    mean, inv_std = compiled.scaling_inputs(scaling)
    loss_sums, correct = np.zeros(n), np.zeros(n, dtype=np.int64)
    done, status = compiled.train_iterations_rows_kernel(
        tuple(params[0::2]), tuple(params[1::2]), Xs, x_format, labels, targets, order, bounds,
        0, n, lr, compiled.activation_code(activation), compiled.loss_code(loss), loss_sums,
        correct, mean, inv_std, limit)
    steps = done - (status == compiled.UPDATE_NOT_FINITE)
    return loss_sums[:done + (status == compiled.LOSS_NOT_FINITE)], correct[:done], steps, status


def assert_same_bits(a, b):
    (pa, (la, ca, sa, za)), (pb, (lb, cb, sb, zb)) = a, b
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True)), "weights"
    assert np.array_equal(la, lb, equal_nan=True), "loss sums"
    assert np.array_equal(ca, cb) and (sa, za) == (sb, zb), "correct, steps, status"


def both(sizes, activation, loss, dtype, lr, X, y, order, scaling=None, **rows):
    out = []
    for span, options in ((general_span, {}), (rows_span, rows)):
        model = sg.MLP(sizes, activation, loss, seed=1, dtype=dtype, backend="numba")
        out.append((model.params, span(model.params, X, y, order, lr, activation, loss,
                                       scaling, **options)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_rows_span_equals_the_general_span_bit_for_bit(dtype, activation, loss):
    X, y = problem(loss)
    order = np.random.default_rng(2).permutation(len(X))
    result = both([64, 24, 10], activation, loss, dtype, 0.05, X, y, order)
    assert result[1][1][3] == compiled.DONE
    assert_same_bits(*result)


@pytest.mark.parametrize("sizes", [[64, 10], [64, 20, 15, 10]])
def test_rows_span_equals_the_general_span_any_depth(sizes):
    X, y = problem("cross_entropy")
    assert_same_bits(*both(sizes, "relu", "cross_entropy", np.float64, 0.05, X, y,
                           np.arange(len(X))))


def test_rows_span_equals_the_general_span_with_scaling_and_integer_pixels():
    X, y = problem("cross_entropy")
    pixels = (X * 16).astype(np.int16)
    scaling = fit_scaling(pixels)
    assert_same_bits(*both([64, 24, 10], "relu", "cross_entropy", np.float32, 0.01, pixels, y,
                           np.arange(len(X))[::-1].copy(), scaling))


STOPS = [(0.05, compiled.DONE), (1e3, compiled.LOSS_NOT_FINITE),
         ("huge", compiled.UPDATE_NOT_FINITE)]
"""Learning rates and where they stop a run on targets 1000 times the one-hot rows: a
huge one (the dtype's largest value / 100) makes the first step overflow."""


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("limit", [None, 0.0])
@pytest.mark.parametrize("lr, status", STOPS)
def test_a_diverging_rows_span_stops_where_the_general_span_stops(dtype, limit, lr, status):
    """Same iteration, same last finite weights; ``limit`` 0: no bound is low enough, so
    each new value is checked before one is written, as the general span does."""
    X, y = problem("mse", n=40)
    lr = float(np.finfo(dtype).max) / 100 if lr == "huge" else lr
    result = both([64, 24, 10], "relu", "mse", dtype, lr, X, 1000 * y, np.arange(40),
                  limit=limit)
    assert result[1][1][3] == status
    assert all(np.isfinite(p).all() for p in result[1][0])
    assert_same_bits(*result)


def test_the_row_kernels_refuse_an_unknown_activation_code():
    W, a, d = np.ones((3, 2)), np.ones((1, 3)), np.ones((1, 2))
    out = np.full((1, 3), 7.0)
    unknown = 1 + max(*compiled.ACTIVATION_KERNELS, compiled.LINEAR)
    for call in (lambda: compiled.dense_delta(a, d, W, unknown, out),
                 lambda: compiled.dense_delta_row(a, d, W, unknown, out, np.arange(3), 3),
                 lambda: compiled.times_derivative(a, unknown, out)):
        with pytest.raises(ValueError, match="unknown activation code"):
            call()
        assert (out == 7).all()


def test_nonzero_lists_the_non_zero_indices_in_order():
    a = np.array([0.0, 1.5, 0.0, -2.0, np.nan, 0.0, 3.0])
    nz = np.empty(len(a), np.int64)
    count = compiled.nonzero(a, nz)
    assert list(nz[:count]) == [1, 3, 4, 6]
