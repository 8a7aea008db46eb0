"""Fuzz the public API with malformed arguments.

Every call must either work or raise ``ValueError``/``TypeError`` whose message names
the argument that was malformed -- never another exception, a hang, NaN weights, or a
model changed by a call that failed. One argument at a time is replaced by a value
drawn from a zoo of wrong things (``WEIRD``, ``weird_arrays``); the others stay valid.
About 600 examples in all, each a few milliseconds.
"""

import numbers
import os
import re
import tempfile

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchgd as sg


def fuzz(examples):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

HUGE = [10**12, 10**30, 2**63, -(10**30)]
WEIRD = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, -1, 1, 2, 3, *HUGE]),
    st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(max_magnitude=1e3),
    st.text(max_size=4),
    st.sampled_from(["epoch", "relu", "mse", "float32", "numpy", "1", "", "0.5", "True"]),
    st.sampled_from([b"1", np.int64(2), np.int32(-3), np.uint8(0), np.float32(0.5),
                     np.float64(np.nan), np.bool_(True), np.str_("epoch"), 1.5, -0.0, 1e308,
                     object(), [1, 2], (3,), {"a": 1}, range(3), np.array(2), np.array([1.0])]),
)

DTYPES = st.sampled_from(["f8", "f4", "f2", "i8", "u1", "?", "c16", "U3", "M8[s]", "O"])


@st.composite
def weird_arrays(draw, max_dims=3):
    """Arrays of any dtype (object and str included) and shape (empty sides included)."""
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if dtype.kind == "O":
        return np.array([object()] * int(np.prod(shape)), dtype=object).reshape(shape)
    return draw(hnp.arrays(dtype, shape))


ANYTHING = st.one_of(WEIRD, weird_arrays(),
                     st.just([[1.0, 2.0], [3.0]]), st.just([["a", "b"], ["c", "d"]]))


def names(message, *argument):
    """True if ``message`` names one of the arguments (as a word, or ``name[i]``/``name.x``)."""
    return any(re.search(rf"(?<![\w.]){re.escape(a)}\b", message) for a in argument)


def weights(model):
    return [p.copy() for p in model.params]


def unchanged(model, before):
    return all(np.array_equal(p, q) for p, q in zip(model.params, before, strict=True))


def attempt(call, *argument):
    """Run ``call``: its result, or None after a ValueError/TypeError naming ``argument``."""
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        assert names(str(exc), *argument), f"{exc!r} does not name {argument}"
        event(f"{argument[0]}: {type(exc).__name__}")
        return None
    event(f"{argument[0]}: works")
    return result


# -- data --------------------------------------------------------------------------------


@fuzz(100)
@given(which=st.sampled_from(["X", "y"]), value=ANYTHING, rows=st.sampled_from([1, 4]))
def test_dataset(which, value, rows):
    args = {"X": np.arange(rows * 2, dtype=float).reshape(rows, 2), "y": np.arange(rows) % 2}
    args[which] = value
    data = attempt(lambda: sg.Dataset(**args), which)
    if data is not None:
        assert len(data) == len(data.X) == len(data.y) >= 1
        assert data.X.dtype.kind in "biuf" and np.isfinite(data.X).all()
        assert data.y.ndim == 2 or (data.y.dtype.kind in "iu" and data.y.min() >= 0)


@fuzz(80)
@given(which=st.sampled_from(["dataset", "batch_size", "shuffle", "drop_last", "replacement",
                              "seed"]),
       value=st.one_of(WEIRD, st.sampled_from([6, 7, 8]), weird_arrays(max_dims=1)))
def test_data_loader(which, value):
    n = 7
    args = {"dataset": sg.Dataset(np.zeros((n, 2)), np.arange(n) % 2), "batch_size": 3}
    args[which] = value
    loader = attempt(lambda: sg.DataLoader(**args), which)
    if loader is None:
        return
    rows = [np.arange(n)[index] for index in loader.batch_indices()]
    assert len(rows) == len(loader)
    drawn = np.concatenate(rows) if rows else np.array([], dtype=int)
    if not loader.replacement:
        assert len(set(drawn.tolist())) == len(drawn)  # no row twice in an epoch
        if not loader.drop_last:
            assert sorted(drawn.tolist()) == list(range(n))  # every row once


@fuzz(80)
@given(fn=st.sampled_from(["blobs", "spirals", "regression_1d", "digits", "stratified_split"]),
       slot=st.integers(0, 4), value=st.one_of(WEIRD, st.just(sg.datasets.regression_1d(n=5))))
def test_datasets(fn, slot, value):
    params = {"blobs": ["n", "centers", "n_features", "spread", "seed"],
              "spirals": ["n", "arms", "noise", "seed"], "regression_1d": ["n", "noise", "seed"],
              "digits": ["test_size", "seed"], "stratified_split": ["data", "test_size", "seed"]}
    which = params[fn][slot % len(params[fn])]
    args = {"data": sg.datasets.blobs(n=20)} if fn == "stratified_split" else {}
    if fn == "stratified_split":
        args["test_size"] = 0.25
    args[which] = value
    result = attempt(lambda: getattr(sg.datasets, fn)(**args), which)
    for part in result if isinstance(result, tuple) else [result] if result else []:
        assert isinstance(part, sg.Dataset) and np.isfinite(part.X).all()


# -- model -------------------------------------------------------------------------------


@fuzz(80)
@given(which=st.sampled_from(["sizes", "activation", "loss", "seed", "dtype", "backend"]),
       value=st.one_of(WEIRD, st.lists(st.one_of(WEIRD, st.integers(1, 6)), max_size=4),
                       st.lists(st.sampled_from([1, 2, 3, 10**6, 10**12, 10**30]), min_size=2,
                                max_size=4)))
def test_mlp(which, value):
    args = {"sizes": [3, 4, 2]}
    args[which] = value
    if which == "backend" and isinstance(value, str) and value == "numba":
        return  # a valid backend that compiles: not what this test is about
    model = attempt(lambda: sg.MLP(**args), which)
    if model is not None:
        assert all(np.isfinite(p).all() for p in model.params)
        assert [p.shape[-1] for p in model.params[1::2]] == model.sizes[1:]


MODELS = {"cross_entropy": sg.MLP([3, 4, 2], seed=0),
          "mse": sg.MLP([3, 4, 2], loss="mse", seed=0, dtype=np.float32)}


@fuzz(120)
@given(loss=st.sampled_from(sorted(MODELS)),
       method=st.sampled_from(["forward", "predict", "loss_and_grads", "gradient_check",
                               "evaluate"]),
       which=st.sampled_from(["X", "y", "reduction", "eps", "model", "data"]),
       value=st.one_of(ANYTHING, st.just(np.full((2, 3), 1e39)), st.just(np.ones((2, 3))),
                       st.just(np.array([0, 1])), st.just(np.array([0, 5])),
                       st.sampled_from([sg.Dataset(np.ones((2, 3)), [0, 1]),
                                        sg.Dataset(np.ones((2, 4)), [0, 1]),
                                        sg.Dataset(np.ones((2, 3)), np.ones((2, 2)))])))
def test_model_methods(loss, method, which, value):
    model = MODELS[loss]
    before = weights(model)
    y = np.array([0, 1]) if loss == "cross_entropy" else np.zeros((2, 2))
    args = {"X": np.ones((2, 3)), "y": y}
    if method == "loss_and_grads":
        args["reduction"] = "mean"
    if method == "gradient_check":
        args.update(model=model, eps=1e-6)
    if method in ("forward", "predict"):
        args.pop("y")
    if method == "evaluate":
        args = {"model": model, "data": sg.Dataset(args["X"], y)}
    if which not in args:
        return
    args[which] = value
    function = getattr(sg, method) if "model" in args else getattr(model, method)
    result = attempt(lambda: function(**args), which)
    assert unchanged(model, before)
    if result is not None and method == "loss_and_grads":
        loss_value, grads = result
        assert [g.shape for g in grads] == [p.shape for p in model.params]


# -- optimizers and fit ------------------------------------------------------------------


@fuzz(60)
@given(cls=st.sampled_from([sg.GD, sg.SGD, sg.MiniBatchSGD, sg.Optimizer]),
       which=st.sampled_from(["lr", "momentum", "batch_size", "shuffle"]), value=WEIRD)
def test_optimizers(cls, which, value):
    args = {"lr": 0.1}
    if cls in (sg.MiniBatchSGD, sg.Optimizer):
        args.update(batch_size=4, shuffle=True)
    args[which] = value
    if which not in ("lr", "momentum") and cls in (sg.GD, sg.SGD):
        return
    opt = attempt(lambda: cls(**args), which)
    if opt is not None:
        assert 0 < opt.lr < np.inf and 0 <= opt.momentum < 1
        assert isinstance(opt.shuffle, bool)


TRAIN = sg.Dataset(np.random.default_rng(0).normal(size=(12, 3)), np.arange(12) % 3)
DATASETS = [TRAIN, sg.Dataset(np.ones((4, 5)), np.zeros(4)),      # wrong width
            sg.Dataset(np.ones((4, 3)), np.array([0, 1, 2, 7])),    # label out of range
            sg.Dataset(np.ones((4, 3)), np.ones((4, 3))),           # targets, not labels
            sg.Dataset(np.full((4, 3), 1e39), np.zeros(4)),         # beyond float32
            (np.ones((4, 3)), np.zeros(4))]                         # not a Dataset


@fuzz(120)
@given(which=st.sampled_from(["model", "data", "optimizer", "epochs", "accumulate", "validation",
                              "progress", "seed", "checkpoint", "checkpoint_every", "resume"]),
       value=st.one_of(WEIRD, st.sampled_from(DATASETS), st.sampled_from(["dir", "missing"]),
                       st.builds(sg.MiniBatchSGD, lr=st.just(0.1), momentum=st.just(0.5),
                                 batch_size=st.sampled_from([1, 11, 12, 13, 10**30])),
                       st.builds(sg.GD, lr=st.just(0.1)), st.builds(sg.SGD, lr=st.just(0.1))),
       dtype=st.sampled_from([np.float32, np.float64]),
       lr=st.sampled_from([0.1, 1e6, 1e300]))
def test_fit(which, value, dtype, lr):
    if which == "epochs" and isinstance(value, numbers.Integral) and value > 3:
        value = 3  # a huge epoch count is a valid request for a long run, not an error
    model = sg.MLP([3, 5, 3], seed=0, dtype=dtype)
    optimizer = sg.MiniBatchSGD(lr=lr, batch_size=5, momentum=0.9)
    before = weights(model)
    with tempfile.TemporaryDirectory() as folder:
        paths = {"dir": folder, "missing": os.path.join(folder, "no", "x.npz")}
        args = {"model": model, "data": TRAIN, "optimizer": optimizer, "epochs": 2,
                "progress": False, "checkpoint": os.path.join(folder, "run.npz")}
        if which == "checkpoint" and isinstance(value, str):
            value = paths.get(value, os.path.join(folder, value.replace(os.sep, "_")))
        args[which] = value
        try:
            history = attempt(lambda: sg.fit(**args), which)
        except sg.TrainingDiverged:
            history = "diverged"
        assert all(np.isfinite(p).all() for p in model.params)
        if history is None:  # refused: nothing changed, nothing written
            assert unchanged(model, before) and optimizer.velocity is None
            assert os.listdir(folder) == []
        elif history != "diverged":
            assert history.epochs == len(history.epoch_loss) >= 1
            assert history.iterations == len(history.iteration_loss)
