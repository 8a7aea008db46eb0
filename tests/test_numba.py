"""The numba backend equals the numpy reference (docs/math.md, identity 5).

float64 to 1e-10 relative, float32 to 1e-4, for losses, gradients, outputs,
and weights and History after a few epochs of ``fit``. The compiled training
kernel is compiled once per (dtype, depth); the cases below use float64 and
float32 two-layer networks and one three-layer network, so a cold run compiles
three variants (cached on disk afterwards).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ACTIVATIONS, LOSSES, labels, problems

import scratchgd as sg
from scratchgd.engines import compiled as compiled_engine
from scratchgd.kernels import compiled
from scratchgd.losses import LOSSES as LOSSES_TABLE

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")

RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def assert_close(actual, expected, dtype, what):
    """``max|a - e| <= rtol * max(max|e|, 1)``, array by array."""
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
        scale = max(float(np.abs(e).max(initial=0.0)), 1.0)
        err = float(np.abs(a - e).max(initial=0.0))
        assert err <= RTOL[dtype] * scale, f"{what}[{i}]: max error {err:.3g} (scale {scale:.3g})"


def twins(sizes, activation, loss, dtype, seed=0):
    return (sg.MLP(sizes, activation, loss, seed=seed, dtype=dtype, backend="numpy"),
            sg.MLP(sizes, activation, loss, seed=seed, dtype=dtype, backend="numba"))


@settings(max_examples=40)
@given(problems(max_rows=70, max_width=9))
def test_loss_and_grads_equal_reference_float64(problem):
    """Hypothesis over depths, widths, activations, losses and batch rows (loop and BLAS paths)."""
    sizes, activation, loss, X, y, seed = problem
    ref, fast = twins(sizes, activation, loss, np.float64, seed)
    for reduction in ("mean", "sum"):
        loss_ref, grads_ref = ref.loss_and_grads(X, y, reduction)
        loss_fast, grads_fast = fast.loss_and_grads(X, y, reduction)
        assert_close([loss_fast], [loss_ref], np.float64, "loss")
        assert_close(grads_fast, grads_ref, np.float64, "grads")
    assert_close([fast.forward(X)], [ref.forward(X)], np.float64, "forward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n", [1, compiled.BLAS_MIN_ROWS - 1, compiled.BLAS_MIN_ROWS + 9])
def test_kernels_equal_reference(dtype, activation, loss, n):
    rng = np.random.default_rng(n)
    ref, fast = twins([20, 16, 12, 4], activation, loss, dtype, seed=n)
    X = rng.standard_normal((n, 20))
    X[X < -0.5] = 0  # zero inputs take the loops' skip branch
    y = labels(loss, rng, n, 4)
    loss_ref, grads_ref = ref.loss_and_grads(X, y)
    loss_fast, grads_fast = fast.loss_and_grads(X, y)
    assert_close([loss_fast], [loss_ref], dtype, "loss")
    assert_close(grads_fast, grads_ref, dtype, "grads")
    assert all(g.dtype == dtype for g in grads_fast)
    assert_close([fast.forward(X)], [ref.forward(X)], dtype, "forward")
    if ref.classifier and dtype == np.float64:
        assert np.array_equal(fast.predict(X), ref.predict(X))


def test_no_kernel_computes_another_activation_than_the_one_asked_for(leaky_relu):
    """An activation without a compiled twin, or an unknown code, is refused, never run as another."""
    model = sg.MLP([3, 4, 2], "relu", seed=0)
    X, y = np.ones((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match="'leaky_relu' has no compiled twin"):
        compiled.forward(model.params, X, "leaky_relu")
    with pytest.raises(ValueError, match="'leaky_relu' has no compiled twin"):
        compiled.loss_and_grads(model.params, X, y, "leaky_relu", "cross_entropy")
    z = np.full((2, 3), -1.0)
    unknown = 1 + max(*compiled.ACTIVATION_KERNELS, compiled.LINEAR)
    with pytest.raises(ValueError, match="unknown activation code"):
        compiled.activate(z, unknown)
    assert (z == -1).all()
    grads = [np.empty_like(p) for p in model.params[:2]]
    with pytest.raises(ValueError, match="unknown activation code"):
        compiled.dense_backward(X, np.ones((2, 4)), model.params[0], unknown, grads[0], grads[1],
                                np.empty((2, 3)), False, False)


def test_gradient_check_passes_on_numba_backend():
    rng = np.random.default_rng(0)
    model = sg.MLP([5, 6, 3], "tanh", seed=1, backend="numba")
    assert sg.gradient_check(model, rng.standard_normal((4, 5)), rng.integers(0, 3, 4)) < 1e-6


def test_cross_entropy_kernel_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-5e3, 5e3, 0.0]])
    dz = np.empty_like(z)
    loss_sum = compiled.cross_entropy(z, np.array([0, 0]), dz)
    assert loss_sum == pytest.approx(1e4)
    assert np.allclose(dz, [[0, 0, 0], [-1, 1, 0]])


def small_digits(n=203):
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    return sg.Dataset(train.X[:n], train.y[:n])


def fit_both(dtype, optimizer_args, accumulate, epochs=3, sizes=(64, 24, 10), activation="relu",
             loss="cross_entropy", data=None):
    data = small_digits() if data is None else data
    results = []
    for model in twins(list(sizes), activation, loss, dtype, seed=3):
        lr, batch_size, momentum = optimizer_args
        optimizer = sg.MiniBatchSGD(lr, batch_size=batch_size, momentum=momentum)
        history = sg.fit(model, data, optimizer, epochs=epochs, accumulate=accumulate,
                         validation=data, progress=False, seed=7)
        results.append((model, history))
    return results


def assert_same_training(results, dtype):
    (ref, h_ref), (fast, h_fast) = results
    assert_close(fast.params, ref.params, dtype, "weights")
    for name in ("epochs", "iterations", "steps", "samples_seen", "steps_at_epoch_end",
                 "iterations_at_epoch_end"):
        assert getattr(h_fast, name) == getattr(h_ref, name), name
    assert len(h_fast.iteration_loss) == len(h_ref.iteration_loss)
    assert_close([h_fast.iteration_loss, h_fast.epoch_loss, h_fast.val_loss],
                 [h_ref.iteration_loss, h_ref.epoch_loss, h_ref.val_loss], dtype, "losses")
    # accuracies count argmax hits: equal, up to a near-tie flipping in float32
    tolerance = 0 if dtype == np.float64 else 2 / 203
    for name in ("epoch_accuracy", "val_accuracy"):
        got, want = getattr(h_fast, name), getattr(h_ref, name)
        assert np.allclose(got, want, rtol=0, atol=tolerance, equal_nan=True), name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch_size, accumulate, momentum", [
    (1, 1, 0.0),            # SGD
    (16, 1, 0.9),           # short last batch (203 = 12 * 16 + 11), momentum
    (3, 5, 0.0),            # accumulation, partial flush at the epoch's end (68 = 13 * 5 + 3)
    (64, "epoch", 0.5),     # one step per epoch
    (None, 1, 0.0),         # full batch
])
def test_fit_equals_reference(dtype, batch_size, accumulate, momentum):
    lr = 0.02 if batch_size == 1 else 0.2
    assert_same_training(fit_both(dtype, (lr, batch_size, momentum), accumulate), dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_fit_equals_reference_every_activation_and_loss(activation, loss):
    data = small_digits()
    if not LOSSES_TABLE[loss].classes:
        data = sg.Dataset(data.X, np.eye(10)[data.y])
    results = fit_both(np.float64, (0.1, 8, 0.5), 2, activation=activation, loss=loss, data=data)
    assert_same_training(results, np.float64)


def test_fit_equals_reference_three_layers():
    results = fit_both(np.float64, (0.1, 10, 0.0), 1, sizes=(64, 20, 15, 10), epochs=2)
    assert_same_training(results, np.float64)


def test_kernel_call_boundaries_do_not_change_a_bit(monkeypatch):
    """Kernel calls of any length (at step boundaries) give bit-identical weights and History."""
    def run(call_rows):
        monkeypatch.setattr(compiled_engine, "CALL_ROWS", call_rows)
        model = sg.MLP([64, 24, 10], seed=3, backend="numba")
        history = sg.fit(model, small_digits(), sg.MiniBatchSGD(0.1, 8, momentum=0.9), epochs=2,
                         accumulate=3, progress=False, seed=7)
        return model, history

    (m1, h1), (m2, h2) = run(1), run(10**9)
    assert all(np.array_equal(a, b) for a, b in zip(m1.params, m2.params, strict=True))
    assert h1.iteration_loss == h2.iteration_loss and h1.epoch_loss == h2.epoch_loss
    assert (h1.steps, h1.iterations) == (h2.steps, h2.iterations)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_weights_replaced_between_epochs_are_the_ones_trained(momentum):
    """The compiled engine prepares its inputs once a run; weights (or momentum buffers) that
    a callback replaces are taken up, not the old arrays trained on."""
    def run(replace):
        model = sg.MLP([64, 24, 10], seed=3, backend="numba")
        optimizer = sg.MiniBatchSGD(0.1, 8, momentum=momentum)
        replaced = []

        def swap(history):
            model.params = [p.copy() for p in model.params]   # equal values, new arrays
            if optimizer.velocity is not None:
                optimizer.velocity = [v.copy() for v in optimizer.velocity]
            replaced.append([p.copy() for p in model.params])

        sg.fit(model, small_digits(), optimizer, epochs=3, progress=False, seed=7,
               on_epoch_end=swap if replace else None)
        return model.params, replaced

    kept, _ = run(False)
    swapped, replaced = run(True)
    assert all(np.array_equal(a, b) for a, b in zip(kept, swapped, strict=True))
    assert not np.array_equal(replaced[0][0], replaced[1][0])  # epoch 2 trained the new arrays


def test_kernel_calls_are_whole_steps_and_cover_the_iterations():
    for first, stop, k, rows in [(0, 45, 1, 32), (0, 1437, 1, 1), (10, 13, 5, 16), (0, 7, 7, 1),
                                 (3, 100, 3, 1000), (6, 30000, 2, 1), (4, 20, 2, 1)]:
        runs = list(compiled_engine.kernel_calls(first, stop, k, rows))
        assert runs[0][0] == first and runs[-1][1] == stop
        assert all(a[1] == b[0] for a, b in zip(runs[:-1], runs[1:], strict=True))
        assert all(start % k == 0 for start, _ in runs)


@pytest.mark.parametrize("loader_args", [
    dict(batch_size=7, shuffle=True), dict(batch_size=7, shuffle=False),
    dict(batch_size=7, drop_last=True), dict(batch_size=5, replacement=True),
    dict(batch_size=4, shuffle="chunks", chunk_size=6),
])
def test_batch_bounds_are_the_batches_batch_index_takes(loader_args):
    data = sg.Dataset(np.zeros((23, 2)), np.zeros(23, dtype=int))
    loader = sg.DataLoader(data, seed=4, **loader_args)
    for _ in range(2):
        order = loader.epoch_order()
        bounds = loader.batch_bounds(order)
        rows = np.arange(23) if order is None else order
        assert len(bounds) == len(loader) + 1
        for t in range(len(loader)):
            assert np.array_equal(rows[bounds[t]:bounds[t + 1]],
                                  np.arange(23)[loader.batch_index(order, t)])


def diverge(model, epochs=50):
    data = sg.datasets.regression_1d(n=64)
    sg.fit(model, data, sg.MiniBatchSGD(50.0, 8), epochs=epochs, progress=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_divergence_stops_like_the_reference(dtype):
    stopped = []
    for model in twins([1, 16, 1], "relu", "mse", dtype):
        with pytest.raises(sg.TrainingDiverged, match=r"epoch \d+, iteration \d+.*smaller lear"
                           ) as info:
            diverge(model)
        assert all(np.isfinite(p).all() for p in model.params)
        stopped.append((str(info.value).split(":")[0], model))
    (where_ref, ref), (where_fast, fast) = stopped
    if dtype == np.float64:
        assert where_fast == where_ref  # "training diverged at epoch E, iteration I"
        assert_close(fast.params, ref.params, dtype, "last finite weights")


def test_divergence_keeps_history_of_completed_iterations():
    histories = []
    for model in twins([1, 16, 1], "relu", "mse", np.float64):
        with pytest.raises(sg.TrainingDiverged) as info:
            diverge(model)
        histories.append(info.value.history)
    ref, fast = histories
    assert fast.iterations == len(fast.iteration_loss) == ref.iterations >= 1
    assert (fast.steps, fast.samples_seen) == (ref.steps, ref.samples_seen)


@given(st.integers(1, 30), st.integers(1, 9), st.sampled_from([1, 2, "epoch"]))
@settings(max_examples=15)
def test_fit_counters_match_reference(n, batch_size, accumulate):
    data = sg.Dataset(np.random.default_rng(n).random((n, 64)), np.arange(n) % 10)
    results = fit_both(np.float64, (0.05, batch_size, 0.0), accumulate, epochs=2, data=data)
    (_, h_ref), (_, h_fast) = results
    assert (h_fast.iterations, h_fast.steps, h_fast.samples_seen) == \
        (h_ref.iterations, h_ref.steps, h_ref.samples_seen)
    assert_close([h_fast.iteration_loss], [h_ref.iteration_loss], np.float64, "iteration_loss")


def test_loops_and_blas_train_alike():
    """train_iterations's two ways of multiplying (forced) give the same epoch, float64 1e-10."""
    data = small_digits(60)
    results = []
    for blas in (False, True):
        model = sg.MLP([64, 24, 10], seed=3, backend="numba")
        loader = sg.DataLoader(data, batch_size=6, seed=1)
        order = loader.epoch_order()
        bounds = loader.batch_bounds(order)
        loss_sums, correct, steps, status = compiled.train_iterations(
            model.params, None, data.X, data.y, order, bounds, 0, len(loader), 2, 0.1, 0.0,
            "relu", "cross_entropy", blas=blas)
        assert (steps, status, len(loss_sums)) == (5, 0, 10)
        results.append((model.params, loss_sums, correct))
    (p_loops, l_loops, c_loops), (p_blas, l_blas, c_blas) = results
    assert_close(p_blas, p_loops, np.float64, "weights")
    assert_close([l_blas], [l_loops], np.float64, "losses")
    assert np.array_equal(c_blas, c_loops)


def test_checkpoints_and_mid_epoch_resume_are_bit_identical(tmp_path, monkeypatch):
    """A numba run stopped right after a mid-epoch checkpoint, then resumed, equals one never stopped."""
    data = small_digits()  # 13 iterations of 16 rows, accumulate=2: 7 steps per epoch

    def run(**kwargs):
        model = sg.MLP([64, 24, 10], seed=3, backend="numba")
        optimizer = sg.MiniBatchSGD(0.1, 16, momentum=0.9)
        history = sg.fit(model, data, optimizer, epochs=3, accumulate=2, progress=False,
                         seed=7, **kwargs)
        return model, history

    whole_model, whole = run()
    path = tmp_path / "run.npz"
    save, saves = sg.checkpoint.save, []

    class Crash(Exception):
        pass

    def save_then_crash(*args, **kwargs):
        save(*args, **kwargs)
        saves.append(args[-2].iteration)  # the position saved
        if len(saves) == 2:  # step 8: epoch 2, iteration 2
            raise Crash

    monkeypatch.setattr(sg.checkpoint, "save", save_then_crash)
    with pytest.raises(Crash):
        run(checkpoint=path, checkpoint_every=4)
    assert saves == [8, 2]
    monkeypatch.setattr(sg.checkpoint, "save", save)
    model, history = run(checkpoint=path, checkpoint_every=4, resume=True)
    assert all(np.array_equal(a, b) for a, b in zip(model.params, whole_model.params, strict=True))
    assert history.iteration_loss == whole.iteration_loss
    assert history.epoch_loss == whole.epoch_loss
    assert (history.steps, history.iterations) == (whole.steps, whole.iterations)


def test_a_borrowed_view_is_the_array_itself_without_a_reference_count():
    import numba

    from scratchgd.kernels.compiled.base import borrowed

    @numba.njit
    def write_through(a):
        view = borrowed(a)
        view[1, 2] = 7.0
        return view.shape, view.ctypes.data == a.ctypes.data

    a = np.zeros((3, 4), dtype=np.float32)
    shape, same_memory = write_through(a)
    assert shape == (3, 4) and same_memory and a[1, 2] == 7
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous"):
        write_through(np.zeros((3, 8))[:, ::2])   # a strided view cannot be borrowed as C
