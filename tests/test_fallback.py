"""No silent fallback: what the compiled engines do not implement runs the reference, and says so.

An optimizer that overrides ``step``, ``buffers`` or ``reset``, a loader that
overrides how batches are drawn, an activation without a compiled twin: on
``backend="numba"`` each trains on the Python engine and the reference kernels
with a ``CompiledFallbackWarning`` naming why, and ends with the weights of
``backend="numpy"``, bit for bit (docs/architecture.md, "Where a new piece goes").
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("numba", reason="needs the 'numba' extra")

import scratchgd as sg  # noqa: E402
from scratchgd.threadcomm import run_threads  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")


class Nesterov(sg.MiniBatchSGD):
    """Nesterov momentum: ``v <- mu v + g``, ``w <- w - lr (g + mu v)``."""

    def step(self, params, grads):
        for w, g, v in zip(params, grads, self.buffers(params), strict=True):
            v *= self.momentum
            v += g
            w -= self.lr * (g + self.momentum * v)


class OwnBuffers(sg.MiniBatchSGD):
    def buffers(self, params):
        return super().buffers(params)


class OwnReset(sg.MiniBatchSGD):
    def reset(self):
        super().reset()


class ByLabel(sg.DataLoader):
    """Every epoch in order of the labels (a curriculum), ties in random order."""

    def epoch_order(self):
        return np.argsort(self.dataset.y[self.rng.permutation(len(self.dataset))], kind="stable")


class Curriculum(sg.MiniBatchSGD):
    def loader(self, data, seed=0):
        return ByLabel(data, batch_size=self.batch_size, seed=seed)


def blobs():
    return sg.datasets.blobs(n=61, centers=3, n_features=4, seed=0)


def train(backend, optimizer, activation="relu", comm=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.CompiledFallbackWarning)  # the MLP's own, if any
        model = sg.MLP([4, 6, 5, 3], activation, seed=1, backend=backend)
    history = sg.fit(model, blobs(), optimizer, epochs=3, accumulate=2, progress=False, seed=2,
                     comm=comm, **kwargs)
    return model, history


def assert_bit_equal(a, b):
    (model_a, hist_a), (model_b, hist_b) = a, b
    for p, q in zip(model_a.params, model_b.params, strict=True):
        assert p.tobytes() == q.tobytes()
    assert hist_a.iteration_loss == hist_b.iteration_loss


@pytest.mark.parametrize("make, method", [
    (lambda: Nesterov(0.1, batch_size=8, momentum=0.9), "step"),
    (lambda: OwnBuffers(0.1, batch_size=8, momentum=0.9), "buffers"),
    (lambda: OwnReset(0.1, batch_size=8, momentum=0.9), "reset"),
])
def test_an_optimizer_that_overrides_the_update_runs_the_reference(make, method):
    name = type(make()).__name__
    with pytest.warns(sg.CompiledFallbackWarning, match=f"{name} overrides Optimizer.{method}"):
        fast = train("numba", make())
    assert_bit_equal(fast, train("numpy", make()))


def test_nesterov_on_numba_is_not_plain_momentum():
    """What the compiled engine did before: plain momentum's weights, silently."""
    with pytest.warns(sg.CompiledFallbackWarning):
        nesterov, _ = train("numba", Nesterov(0.1, batch_size=8, momentum=0.9))
    plain, _ = train("numba", sg.MiniBatchSGD(0.1, batch_size=8, momentum=0.9))
    assert not np.array_equal(nesterov.params[0], plain.params[0])


def test_a_loader_that_draws_otherwise_runs_the_reference():
    with pytest.warns(sg.CompiledFallbackWarning, match="ByLabel overrides DataLoader.epoch_order"):
        fast = train("numba", Curriculum(0.1, batch_size=8))
    assert_bit_equal(fast, train("numpy", Curriculum(0.1, batch_size=8)))


def test_an_activation_without_a_compiled_twin_runs_the_reference(leaky_relu):
    with pytest.warns(sg.CompiledFallbackWarning, match="'leaky_relu' .* no compiled twin"):
        model = sg.MLP([4, 6, 3], "leaky_relu", backend="numba")
    X = blobs().X
    np.testing.assert_array_equal(model.forward(X), sg.MLP([4, 6, 3], "leaky_relu").forward(X))
    with pytest.warns(sg.CompiledFallbackWarning, match="fit\\(backend='numba'\\).*no compiled twin"):
        fast = train("numba", sg.MiniBatchSGD(0.1, batch_size=8, momentum=0.5), "leaky_relu")
    assert_bit_equal(fast, train("numpy", sg.MiniBatchSGD(0.1, batch_size=8, momentum=0.5),
                                 "leaky_relu"))


@pytest.mark.filterwarnings("ignore::scratchgd.CompiledFallbackWarning")
@pytest.mark.parametrize("make", [lambda: Nesterov(0.1, batch_size=8, momentum=0.9),
                                  lambda: Curriculum(0.1, batch_size=8)])
def test_the_data_parallel_engine_falls_back_alike(make):
    fast = run_threads(2, lambda comm: train("numba", make(), comm=comm))
    reference = run_threads(2, lambda comm: train("numpy", make(), comm=comm))
    for got, want in zip(fast, reference, strict=True):
        assert_bit_equal(got, want)


def test_what_the_compiled_engines_implement_runs_there_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.CompiledFallbackWarning)
        for optimizer in (sg.GD(0.5, momentum=0.9), sg.SGD(0.01),
                          sg.MiniBatchSGD(0.1, batch_size=8, momentum=0.5, shuffle="chunks")):
            train("numba", optimizer)
