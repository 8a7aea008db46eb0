"""Continuing a run without a checkpoint file (``fit(..., rng=)``) and pickling an MLP."""

import copy
import pickle

import numpy as np
import pytest

import scratchgd as sg

BACKENDS = ["numpy", "numba"]


def blobs(n=37):
    return sg.datasets.blobs(n=n, centers=3, n_features=4, seed=0)


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert p.dtype == q.dtype and np.array_equal(p, q)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size, accumulate, momentum, shuffle", [
    (1, 1, 0.0, True), (5, 2, 0.9, True), (8, 3, 0.5, "chunks"), (None, 1, 0.9, False)])
def test_fit_continued_with_rng_equals_one_fit(backend, batch_size, accumulate, momentum,
                                               shuffle):
    """fit(epochs=a, rng=g) then fit(epochs=b, rng=g) == fit(epochs=a+b, seed=s), bit for bit.

    g = default_rng(s); the same model and optimizer objects carry the weights
    and the momentum buffers from the first call to the second.
    """
    data = blobs()

    def optimizer():
        return sg.Optimizer(0.2, batch_size, momentum, shuffle=shuffle, chunk_size=4)

    one, two = sg.MLP([4, 6, 3], seed=1, backend=backend), sg.MLP([4, 6, 3], seed=1,
                                                                  backend=backend)
    opt_one, opt_two = optimizer(), optimizer()
    whole = sg.fit(one, data, opt_one, epochs=5, accumulate=accumulate, seed=7, progress=False)
    g = np.random.default_rng(7)
    first = sg.fit(two, data, opt_two, epochs=2, accumulate=accumulate, rng=g, progress=False)
    second = sg.fit(two, data, opt_two, epochs=3, accumulate=accumulate, rng=g, progress=False)
    assert_same_arrays(one.params, two.params)
    if momentum:
        assert_same_arrays(opt_one.velocity, opt_two.velocity)
    assert first.iteration_loss + second.iteration_loss == whole.iteration_loss
    assert first.epoch_loss + second.epoch_loss == whole.epoch_loss
    assert first.steps + second.steps == whole.steps


def test_rng_replaces_the_seed():
    """With rng given, the loader draws from it: default_rng(5) is seed=5, whatever seed says."""
    data = blobs()
    a, b = sg.MLP([4, 5, 3], seed=0), sg.MLP([4, 5, 3], seed=0)
    sg.fit(a, data, sg.MiniBatchSGD(0.1, 4), epochs=2, seed=5, progress=False)
    sg.fit(b, data, sg.MiniBatchSGD(0.1, 4), epochs=2, seed=0, rng=np.random.default_rng(5),
           progress=False)
    assert_same_arrays(a.params, b.params)


def test_a_continued_rng_differs_from_a_fresh_seed():
    """Without the generator the second call would repeat the first call's orders."""
    data = blobs()
    a, b = sg.MLP([4, 5, 3], seed=0), sg.MLP([4, 5, 3], seed=0)
    g = np.random.default_rng(0)
    sg.fit(a, data, sg.MiniBatchSGD(0.1, 4), epochs=1, rng=g, progress=False)
    continued = sg.fit(a, data, sg.MiniBatchSGD(0.1, 4), epochs=1, rng=g, progress=False)
    sg.fit(b, data, sg.MiniBatchSGD(0.1, 4), epochs=1, seed=0, progress=False)
    restarted = sg.fit(b, data, sg.MiniBatchSGD(0.1, 4), epochs=1, seed=0, progress=False)
    assert continued.iteration_loss != restarted.iteration_loss


@pytest.mark.parametrize("rng", [0, np.random.RandomState(0), "0"])
def test_rng_must_be_a_generator(rng):
    model = sg.MLP([4, 5, 3], seed=0)
    before = [p.copy() for p in model.params]
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        sg.fit(model, blobs(), sg.SGD(0.1), epochs=1, rng=rng, progress=False)
    assert_same_arrays(model.params, before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_pickles_and_copies(backend, dtype):
    """An MLP survives pickle and deepcopy: same weights, settings, backend kernels, outputs."""
    data = blobs()
    model = sg.MLP([4, 5, 3], activation="tanh", seed=3, dtype=dtype, backend=backend)
    sg.fit(model, data, sg.MiniBatchSGD(0.1, 8), epochs=1, progress=False)
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert repr(other) == repr(model)
        assert other.kernels is model.kernels
        assert_same_arrays(other.params, model.params)
        assert np.array_equal(other.forward(data.X), model.forward(data.X))
        # training the copy leaves the original alone
        sg.fit(other, data, sg.SGD(0.1), epochs=1, progress=False)
        assert not np.array_equal(other.params[0], model.params[0])


def test_pickled_mlp_holds_no_module():
    assert b"scratchgd.kernels" not in pickle.dumps(sg.MLP([2, 3, 2], backend="numba"))
