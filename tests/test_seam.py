"""fit's hooks: spans of any length change nothing, StopTraining ends a run cleanly."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import scratchgd as sg
from scratchgd.hooks import Hook

DATA = sg.datasets.blobs(n=70, seed=1)
VALIDATION = sg.datasets.blobs(n=20, seed=2)

OPTIMIZERS = {
    "minibatch+momentum": lambda: sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9),
    "sgd": lambda: sg.SGD(lr=0.05),
    "gd": lambda: sg.GD(lr=0.5),
}


class Spans(Hook):
    """Cuts the run into spans of the given numbers of steps, in turn; records each span's end."""

    def __init__(self, lengths, model):
        self.lengths, self.model, self.calls, self.ends = lengths, model, 0, []

    def span_steps(self, history, at):
        self.calls += 1
        return self.lengths[(self.calls - 1) % len(self.lengths)]

    def end_of_span(self, history, at):
        self.ends.append((history.steps, [p.copy() for p in self.model.params]))


class StopAt(Hook):
    """Raises StopTraining once ``steps`` training steps are done (one-step spans)."""

    def __init__(self, steps):
        self.steps = steps

    def span_steps(self, history, at):
        return 1

    def end_of_span(self, history, at):
        if history.steps >= self.steps:
            raise sg.StopTraining


def train(backend="numpy", optimizer="minibatch+momentum", accumulate=1, epochs=3,
          hooks=lambda model: []):
    """A small run; ``hooks(model)`` gives its hooks."""
    model = sg.MLP([2, 7, 3], seed=0, backend=backend)
    history = sg.fit(model, DATA, OPTIMIZERS[optimizer](), epochs=epochs, accumulate=accumulate,
                     validation=VALIDATION, progress=False, seed=4, hooks=hooks(model))
    return model, history


def assert_same(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    for p, q in zip(model_a.params, model_b.params, strict=True):
        assert np.array_equal(p, q)
    fields_a, fields_b = dataclasses.asdict(history_a), dataclasses.asdict(history_b)
    for name in fields_a:
        if name != "epoch_seconds":
            np.testing.assert_array_equal(fields_a[name], fields_b[name], err_msg=name)


UNCUT = {}


def uncut(backend, optimizer, accumulate):
    key = backend, optimizer, accumulate
    if key not in UNCUT:
        UNCUT[key] = train(backend, optimizer, accumulate)
    return UNCUT[key]


@settings(max_examples=30)
@example(backend="numba", optimizer="minibatch+momentum", accumulate=1, lengths=[1])  # sum() of
# the span's losses compensated on Python 3.12+, one ulp off the uncut run's additions
@given(backend=st.sampled_from(["numpy", "numba"]),
       optimizer=st.sampled_from(sorted(OPTIMIZERS)),
       accumulate=st.sampled_from([1, 2, 3, "epoch"]),
       lengths=st.lists(st.integers(1, 6), min_size=1, max_size=5))
def test_spans_of_any_length_equal_the_uncut_run(backend, optimizer, accumulate, lengths):
    made = []
    assert_same(train(backend, optimizer, accumulate,
                      hooks=lambda model: made.append(Spans(lengths, model)) or made),
                uncut(backend, optimizer, accumulate))
    # the spans end in order, the last with the run
    done = [steps for steps, _ in made[0].ends]
    assert done == sorted(done) and done[-1] == uncut(backend, optimizer, accumulate)[1].steps


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("stop_at", [1, 5, 13])
def test_stop_training_leaves_a_consistent_history(backend, stop_at):
    spans = []
    train(backend, hooks=lambda model: spans.append(Spans([1], model)) or spans)  # every step's weights
    model, history = train(backend, hooks=lambda model: [StopAt(stop_at)])
    full = uncut(backend, "minibatch+momentum", 1)[1]
    per_epoch = len(full.iteration_loss) // full.epochs
    assert history.steps == history.iterations == stop_at  # accumulate=1: a step per batch
    assert history.iteration_loss == full.iteration_loss[:stop_at]
    assert history.samples_seen == sum(min(16, 70 - 16 * (i % per_epoch)) for i in range(stop_at))
    assert history.epochs == stop_at // per_epoch  # the finished epochs only
    for name in ("epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy", "epoch_seconds",
                 "steps_at_epoch_end", "iterations_at_epoch_end", "samples_at_epoch_end"):
        assert len(getattr(history, name)) == history.epochs, name
    steps, weights = spans[0].ends[stop_at - 1]
    assert steps == stop_at
    for p, q in zip(model.params, weights, strict=True):
        assert np.array_equal(p, q)


class StopAfterEpoch(Hook):
    def end_of_epoch(self, history, at):
        if history.epochs == 2:
            raise sg.StopTraining


def test_stop_at_an_epoch_end_equals_a_shorter_run():
    assert_same(train(hooks=lambda model: [StopAfterEpoch()]), train(epochs=2))


class ZeroSteps(Hook):
    def span_steps(self, history, at):
        return 0


@pytest.mark.parametrize("hooks, error, word", [
    (Hook(), TypeError, "list"), ([object()], TypeError, "Hook"), (3, TypeError, "list"),
    ([ZeroSteps()], ValueError, "ZeroSteps.span_steps"),
])
def test_bad_hooks_are_refused(hooks, error, word):
    model = sg.MLP([2, 7, 3], seed=0)
    before = [p.copy() for p in model.params]
    with pytest.raises(error, match=word):
        sg.fit(model, DATA, sg.SGD(lr=0.1), epochs=1, progress=False, hooks=hooks)
    for p, q in zip(model.params, before, strict=True):
        assert np.array_equal(p, q)


def test_a_hook_sees_the_counters_at_every_span():
    seen = []

    class Watch(Hook):
        def span_steps(self, history, at):
            return 2

        def end_of_span(self, history, at):
            seen.append((at.epoch, at.iteration, history.steps, history.samples_seen))

    _, history = train(hooks=lambda model: [Watch()], epochs=1)
    assert [s[1] for s in seen] == [2, 4, 5]  # 5 batches of 16, 16, 16, 16, 6
    assert seen[-1] == (1, 5, history.steps, 70) and not math.isnan(history.epoch_loss[0])
