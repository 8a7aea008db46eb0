"""The memory model: estimate vs tracemalloc, batch size from a budget, budgeted GD == GD."""

import tracemalloc

import numpy as np
import pytest
from strategies import ACTIVATIONS, LOSSES, labels

import scratchgd as sg
from scratchgd import memory


def _traced_peak(function, *args, **kwargs):
    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("batch_size", [1, 64, 1024, 4096])
def test_estimate_within_25_percent_of_measured(batch_size):
    model = sg.MLP([784, 512, 10], seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    X = rng.random((batch_size, 784))
    y = rng.integers(0, 10, batch_size)
    _, peak = _traced_peak(model.loss_and_grads, X, y)
    measured = sum(p.nbytes for p in model.params) + X.nbytes + y.nbytes + peak
    assert abs(memory.estimate(model, batch_size) - measured) <= 0.25 * measured


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("sizes", [[30, 40, 20, 3], [30, 300, 200, 4]])
def test_estimate_follows_every_activation_and_loss(sizes, activation, loss):
    model = sg.MLP(sizes, activation=activation, loss=loss, seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    for n in (8, 2000):
        X = rng.random((n, sizes[0]), dtype=np.float32)
        y = labels(loss, rng, n, sizes[-1], np.float32)
        _, peak = _traced_peak(model.loss_and_grads, X, y)
        measured = sum(p.nbytes for p in model.params) + X.nbytes + y.nbytes + peak
        assert abs(memory.estimate(model, n) - measured) <= 0.25 * measured


def test_estimate_counts_dtype_and_momentum():
    model = sg.MLP([100, 50, 10], seed=0)
    params = sum(p.nbytes for p in model.params)
    plain = memory.estimate(model, 32)
    assert memory.estimate(model, 32, optimizer=sg.GD(0.1)) == plain
    assert memory.estimate(model, 32, optimizer=sg.GD(0.1, momentum=0.9)) == plain + params
    single = memory.estimate(model, 32, dtype=np.float32)
    assert single == memory.estimate(model.copy(dtype=np.float32), 32)
    assert plain / 2 < single < plain / 2 + 32 * (8 + 1 + 8)   # labels, relu mask, row index


@pytest.mark.parametrize("text, nbytes", [("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29),
                                          (" 64 kib", 65536), ("100", 100), ("2b", 2), (4096, 4096)])
def test_parse_bytes(text, nbytes):
    assert memory.parse_bytes(text) == nbytes


@pytest.mark.parametrize("bad, error", [("lots", ValueError), ("5 XB", ValueError), (0, ValueError),
                                        (1.5, TypeError), (True, TypeError)])
def test_parse_bytes_refuses(bad, error):
    with pytest.raises(error, match="memory_budget"):
        memory.parse_bytes(bad)


def test_max_batch_size_is_the_largest_that_fits():
    model = sg.MLP([784, 512, 10], seed=0)
    for budget in ("20MB", "64MB", "1GiB", 10**7 + 17):
        n = memory.max_batch_size(model, budget)
        limit = memory.parse_bytes(budget)
        assert memory.estimate(model, n) <= limit < memory.estimate(model, n + 1)
    momentum = sg.MiniBatchSGD(0.1, momentum=0.9)
    assert memory.max_batch_size(model, "64MB", momentum) < memory.max_batch_size(model, "64MB")
    with pytest.raises(ValueError, match="too small .* even a batch of 1 row needs 9.8 MB"):
        memory.max_batch_size(model, "5MB")


def test_budgeted_gd_equals_full_batch_gd_in_less_memory():
    rng = np.random.default_rng(0)
    n = 3001
    data = sg.Dataset(rng.random((n, 100)), rng.integers(0, 5, n))
    full, budgeted = sg.MLP([100, 256, 5], seed=1), sg.MLP([100, 256, 5], seed=1)
    chunk = memory.max_batch_size(budgeted, "8MB")
    assert chunk < n and n % chunk != 0                  # several chunks, a short last one
    history, full_peak = _traced_peak(sg.fit, full, data, sg.GD(0.5, momentum=0.5), epochs=3,
                                      progress=False)
    chunked, budget_peak = _traced_peak(sg.fit, budgeted, data, sg.GD(0.5, momentum=0.5), epochs=3,
                                        progress=False, memory_budget="8MB")
    for w_full, w_budget in zip(full.params, budgeted.params, strict=True):
        np.testing.assert_allclose(w_budget, w_full, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(chunked.epoch_loss, history.epoch_loss, rtol=1e-10)
    assert chunked.steps == history.steps == 3
    assert chunked.iterations == 3 * -(-n // memory.max_batch_size(budgeted, "8MB", sg.GD(0.5, 0.5)))
    assert budget_peak < 8e6 < full_peak / 2


def test_budget_for_minibatch_is_a_limit_not_a_change():
    rng = np.random.default_rng(0)
    data = sg.Dataset(rng.random((200, 784)), rng.integers(0, 10, 200))
    model = sg.MLP([784, 512, 10], seed=0)
    before = [p.copy() for p in model.params]
    with pytest.raises(ValueError, match="batch_size=4096 needs .* the largest batch that fits is"):
        sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=4096), memory_budget="64MB",
               progress=False)
    for w, w0 in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(w, w0)
    history = sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=32), epochs=1,
                     memory_budget="64MB", progress=False)
    assert history.iterations == 7


@pytest.mark.parametrize("kwargs, error", [({"model": "mlp"}, TypeError),
                                           ({"optimizer": "sgd"}, TypeError),
                                           ({"batch_size": 0}, ValueError),
                                           ({"dtype": np.int32}, ValueError)])
def test_estimate_checks_its_arguments(kwargs, error):
    arguments = {"model": sg.MLP([4, 3, 2]), "batch_size": 8, **kwargs}
    with pytest.raises(error, match=next(iter(kwargs))):
        memory.estimate(**arguments)
