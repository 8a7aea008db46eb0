"""The training loop: accumulation, counters, momentum, determinism (items 3, 6, 7, 8)."""

import math
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import ACTIVATIONS

import scratchgd as sg


def blobs(n=37, seed=0):
    return sg.datasets.blobs(n=n, centers=3, n_features=4, seed=seed)


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


@given(batch_size=st.integers(1, 40), momentum=st.sampled_from([0.0, 0.9]),
       activation=st.sampled_from(ACTIVATIONS))
def test_accumulate_epoch_is_one_full_batch_gd_step(batch_size, momentum, activation):
    """Item 3: one step via accumulate="epoch" with any batch size == one GD step."""
    data = blobs()
    a = sg.MLP([4, 6, 3], activation, seed=1)
    b = a.copy()
    sg.fit(a, data, sg.MiniBatchSGD(0.5, batch_size, momentum), epochs=2, accumulate="epoch",
           progress=False)
    sg.fit(b, data, sg.GD(0.5, momentum), epochs=2, progress=False)
    for p, q in zip(a.params, b.params, strict=True):
        assert rel_err(p, q) < 1e-10


@given(n=st.integers(1, 40), batch_size=st.integers(1, 45), k=st.integers(1, 7),
       epochs=st.integers(1, 3))
def test_counters_and_steps_per_epoch(n, batch_size, k, epochs):
    """Item 7: steps per epoch = ceil(iterations / k); every row reaches the weights."""
    data = blobs(n)
    hist = sg.fit(sg.MLP([4, 3, 3], seed=0), data, sg.MiniBatchSGD(0.1, batch_size), epochs=epochs,
                  accumulate=k, progress=False)
    iterations = math.ceil(n / batch_size)
    assert hist.epochs == epochs
    assert hist.iterations == epochs * iterations == len(hist.iteration_loss)
    assert hist.steps == epochs * math.ceil(iterations / k)
    assert hist.samples_seen == epochs * n
    assert hist.steps_at_epoch_end[-1] == hist.steps
    assert len(hist.epoch_loss) == len(hist.epoch_seconds) == epochs


def test_partial_accumulation_is_normalised_by_its_own_rows():
    """10 rows, batches of 3, k=2: steps over rows 0-5 and then 6-9 (4 rows, not 6)."""
    data = blobs(10)
    model = sg.MLP([4, 5, 3], seed=2)
    manual = model.copy()
    sg.fit(model, data, sg.MiniBatchSGD(0.3, 3, shuffle=False), epochs=1, accumulate=2,
           progress=False)
    for rows in (slice(0, 6), slice(6, 10)):
        _, grads = manual.loss_and_grads(data.X[rows], data.y[rows], reduction="mean")
        for p, g in zip(manual.params, grads, strict=True):
            p -= 0.3 * g
    for p, q in zip(model.params, manual.params, strict=True):
        assert rel_err(p, q) < 1e-12


def test_sgd_steps_with_each_rows_own_gradient_bit_for_bit():
    """SGD: w <- w - lr g_i after every row, its gradient sum being its mean (nothing divided)."""
    data = blobs(6)
    model = sg.MLP([4, 5, 3], seed=3)
    manual = model.copy()
    sg.fit(model, data, sg.SGD(0.3, shuffle=False), epochs=1, progress=False)
    for row in range(6):
        _, grads = manual.loss_and_grads(data.X[row:row + 1], data.y[row:row + 1],
                                         reduction="sum")
        manual.params = [p - 0.3 * g for p, g in zip(manual.params, grads, strict=True)]
    for p, q in zip(model.params, manual.params, strict=True):
        assert np.array_equal(p, q)


def test_epoch_loss_is_weighted_by_batch_length():
    data = blobs(10)
    hist = sg.fit(sg.MLP([4, 5, 3], seed=2), data, sg.MiniBatchSGD(0.3, 4), epochs=1,
                  progress=False)
    sizes = np.array([4, 4, 2])
    assert hist.epoch_loss[0] == pytest.approx(np.dot(hist.iteration_loss, sizes) / 10, rel=1e-12)


def test_gd_sgd_minibatch_differ_only_in_batches():
    data = blobs(12)
    for opt, iterations in ((sg.GD(0.1), 1), (sg.SGD(0.1), 12), (sg.MiniBatchSGD(0.1, 5), 3)):
        hist = sg.fit(sg.MLP([4, 3, 3]), data, opt, epochs=1, progress=False)
        assert hist.iterations == hist.steps == iterations


def test_momentum_follows_pytorch_convention():
    """Item 8: v <- mu v + g; w <- w - lr v, checked by hand over two steps."""
    data = blobs(8)
    model = sg.MLP([4, 3, 3], seed=4)
    manual = model.copy()
    sg.fit(model, data, sg.GD(0.2, momentum=0.9), epochs=2, progress=False)
    v = [np.zeros_like(p) for p in manual.params]
    for _ in range(2):
        _, grads = manual.loss_and_grads(data.X, data.y)
        for p, vi, g in zip(manual.params, v, grads, strict=True):
            vi *= 0.9
            vi += g
            p -= 0.2 * vi
    for p, q in zip(model.params, manual.params, strict=True):
        assert rel_err(p, q) < 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_bit_identical(dtype):
    """Item 6: same seeds, bit-identical weights and history."""
    train, test = sg.datasets.digits()

    def run():
        model = sg.MLP([64, 16, 10], seed=5, dtype=dtype)
        hist = sg.fit(model, train, sg.MiniBatchSGD(0.1, 64, momentum=0.5), epochs=2,
                      validation=test, progress=False, seed=3)
        return model, hist

    (m1, h1), (m2, h2) = run(), run()
    for p, q in zip(m1.params, m2.params, strict=True):
        assert p.dtype == dtype
        np.testing.assert_array_equal(p, q)
    for field in ("iteration_loss", "epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy"):
        assert getattr(h1, field) == getattr(h2, field)
    m3 = sg.MLP([64, 16, 10], seed=5, dtype=dtype)
    sg.fit(m3, train, sg.MiniBatchSGD(0.1, 64, momentum=0.5), epochs=2, progress=False, seed=4)
    assert not np.array_equal(m3.params[0], m1.params[0])


def test_training_learns_digits():
    train, test = sg.datasets.digits()
    model = sg.MLP([64, 32, 10], seed=0)
    hist = sg.fit(model, train, sg.MiniBatchSGD(0.1, 32), epochs=10, validation=test,
                  progress=False)
    assert hist.epoch_loss[-1] < hist.epoch_loss[0] / 3
    assert hist.val_accuracy[-1] > 0.9
    assert sg.evaluate(model, test)[1] == hist.val_accuracy[-1]


def test_mse_regression_learns_and_reports_nan_accuracy():
    data = sg.datasets.regression_1d(n=100)
    model = sg.MLP([1, 16, 1], "tanh", "mse", seed=0)
    hist = sg.fit(model, data, sg.MiniBatchSGD(0.1, 10), epochs=50, progress=False)
    assert hist.epoch_loss[-1] < 0.5 * hist.epoch_loss[0]
    assert math.isnan(hist.epoch_accuracy[-1])


def test_divergence_stops_and_keeps_finite_weights():
    data = sg.datasets.regression_1d(n=64)
    model = sg.MLP([1, 16, 1], "relu", "mse", seed=0)
    with pytest.raises(sg.TrainingDiverged, match=r"epoch \d+, iteration \d+.*smaller learning"):
        sg.fit(model, data, sg.MiniBatchSGD(50.0, 8), epochs=50, progress=False)
    assert all(np.isfinite(p).all() for p in model.params)


def test_progress_prints_one_line_per_epoch(capsys):
    sg.fit(sg.MLP([4, 3, 3]), blobs(), sg.GD(0.1), epochs=3, progress=True)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 3 and "loss" in lines[0]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_evaluation_and_the_reports_are_one_pass_in_blocks(loss, monkeypatch):
    """evaluate, the validation of fit and the reports share one loop: one forward per block."""
    n = 2 * sg.train.EVAL_BATCH + 5
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.normal(size=(n, 2))
    data = sg.Dataset(X, y)
    model = sg.MLP([3, 4, 3 if loss == "cross_entropy" else 2], loss=loss, seed=0)
    expected = model.predict(X)
    kernels, calls = model.kernels, []

    def forward(*args):
        calls.append(len(args[1]))
        return kernels.forward(*args)

    monkeypatch.setattr(model, "kernels", types.SimpleNamespace(forward=forward))
    loss_value, accuracy = sg.evaluate(model, data)
    report = (sg.classification_report if loss == "cross_entropy" else sg.regression_report)(
        model, data)
    assert calls == [sg.train.EVAL_BATCH, sg.train.EVAL_BATCH, 5] * 2
    if loss == "cross_entropy":
        assert (report.loss, report.accuracy) == (loss_value, accuracy)
        assert report.confusion.sum() == n and np.trace(report.confusion) == (expected == y).sum()
    else:
        np.testing.assert_allclose(report.mae, np.abs(expected - y).mean(axis=0), rtol=1e-12)
        assert report.loss == pytest.approx(((expected - y) ** 2).mean(), rel=1e-12)
