"""The compiled data-parallel span (backend "numba" under ``fit(comm=)``) and ``reduce_dtype``.

``kernels.compiled.train_iterations_parallel_kernel`` runs a whole span of steps per call
and sums through a ``Group.reducer`` between steps: a ``SharedSum`` (memory
the ranks share: one machine, and ``ThreadComm``) or a ``MessageSum``
(messages: between machines). Both must give the bits of
``Group.sum_in_rank_order``, so the compiled span equals the NumPy reference
engine and one process, whatever the transport. ``tests/test_distributed.py``
holds the identities common to both backends; ``tests/test_mpi.py`` runs the
span under a real ``mpiexec``.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_distributed import assert_same_history, check_parallel, make_data, rank_buffers, train

import scratchgd as sg
from scratchgd import distributed
from scratchgd.distributed import Group, MessageSum, SharedSum, add_in_rank_order, run_threads
from scratchgd.kernels import compiled


def force_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``Group.reducer`` a ``MessageSum``, as between machines."""
    monkeypatch.setattr(distributed, "_shared_block", lambda comm, nbytes: None)


@pytest.fixture(params=["shared", "messages"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "messages":
        force_messages(monkeypatch)
    return request.param


def weights(model: sg.MLP) -> np.ndarray:
    return np.concatenate([p.ravel() for p in model.params])


@pytest.mark.parametrize(("dtype", "sum_dtype"), [(np.float64, np.float64),
                                                  (np.float32, np.float64),
                                                  (np.float32, np.float32)])
@pytest.mark.parametrize("add", [distributed.add_rows, compiled.add_rows])
@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 8])
def test_a_reducer_adds_in_rank_order_with_the_same_bits_on_every_rank(P, add, dtype, sum_dtype,
                                                                        transport):
    """``total``: the rank-order sum in ``sum_dtype`` rounded to ``dtype`` (float32 rows are
    added in float64: the bits of casting them first); ``total_extra`` in ``sum_dtype``.
    Fewer elements than ranks, divisible and not; the same reducer twice (a run reuses it);
    the NumPy ``add_rows`` and its compiled twin."""
    for n in sorted({1, max(P - 1, 1), P, 3 * P + 1, 1001}):
        calls = [(rank_buffers(P, n, seed).astype(dtype), rank_buffers(P, 7, seed + 2))
                 for seed in (0, 1)]

        def rank(comm, n=n, calls=calls):
            reducer = Group(comm).reducer(n, 7, dtype, sum_dtype, add)
            totals = []
            for rows, extra in calls:
                reducer.send[:] = rows[comm.Get_rank()]
                reducer.send_extra[:] = extra[comm.Get_rank()]
                reducer()
                totals.append((reducer.total.tobytes(), reducer.total_extra.tobytes()))
            kind = type(reducer)
            reducer.close()
            return kind, totals

        want = [(add_in_rank_order(rows.astype(sum_dtype)).astype(dtype).tobytes(),
                 add_in_rank_order(extra.astype(sum_dtype)).tobytes()) for rows, extra in calls]
        for kind, totals in run_threads(P, rank):
            assert kind is (SharedSum if transport == "shared" else MessageSum)
            assert totals == want, n


@pytest.mark.parametrize("P", [2, 3, 5, 8])
def test_shared_memory_and_messages_give_the_same_bits(P, monkeypatch):
    """Short last batch, empty shards (P = 8 on batches of 5), momentum, accumulation."""
    def run(comm):
        return train(comm, backend="numba", accumulate=2, optimizer=lambda: sg.MiniBatchSGD(
            lr=0.1, batch_size=5, momentum=0.5))

    shared = run_threads(P, run)
    force_messages(monkeypatch)
    for (model, hist), (want, want_hist) in zip(run_threads(P, run), shared, strict=True):
        assert weights(model).tobytes() == weights(want).tobytes()
        assert hist.iteration_loss == want_hist.iteration_loss


@pytest.mark.parametrize("P", [2, 3, 5])
def test_the_compiled_span_equals_the_numpy_reference_engine(P):
    for kwargs in ({"optimizer": lambda: sg.GD(lr=0.2, momentum=0.9)},
                   {"optimizer": lambda: sg.SGD(lr=0.05), "epochs": 1},
                   {"accumulate": 2, "optimizer": lambda: sg.MiniBatchSGD(lr=0.1, batch_size=4,
                                                                           momentum=0.5)},
                   {"accumulate": "epoch"}, {"scale": True}):
        compiled = run_threads(P, lambda comm, kw=kwargs: train(comm, backend="numba", **kw))
        reference = run_threads(P, lambda comm, kw=kwargs: train(comm, backend="numpy", **kw))
        for (model, hist), (want, want_hist) in zip(compiled, reference, strict=True):
            w = weights(want)
            np.testing.assert_allclose(weights(model), w, rtol=0,
                                       atol=1e-10 * max(1.0, np.abs(w).max()))
            assert_same_history(hist, want_hist)


@pytest.mark.parametrize("P", [2, 3, 5])
def test_the_compiled_span_by_messages_equals_one_process(P, monkeypatch):
    force_messages(monkeypatch)
    check_parallel(P, backend="numba")
    check_parallel(P, backend="numba", accumulate=2,
                   optimizer=lambda: sg.MiniBatchSGD(lr=0.1, batch_size=4, momentum=0.5))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_an_update_divergence_mid_run_stops_every_rank_where_one_process_stops(backend, momentum):
    """mse at a huge rate: some steps are taken first (the compiled span's weights may then
    live in its spare buffers), then a step would overflow; every rank raises what one
    process raises and keeps the one-process weights."""
    data = sg.datasets.regression_1d(n=64, seed=0)

    def run(comm=None):
        model = sg.MLP([1, 16, 1], loss="mse", activation="tanh", seed=0, backend=backend)
        optimizer = sg.MiniBatchSGD(lr=1e5, batch_size=8, momentum=momentum)
        with pytest.raises(sg.TrainingDiverged) as info:
            sg.fit(model, data, optimizer, epochs=50, accumulate=3, progress=False, comm=comm)
        exc = info.value
        return (exc.epoch, exc.iteration, exc.history.steps, str(exc)), weights(model)

    (want, w_1) = run()
    assert want[2] > 0  # steps were taken before the divergence
    for got, w in run_threads(3, run):
        assert got == want
        assert np.isfinite(w).all()
        np.testing.assert_allclose(w, w_1, rtol=0, atol=1e-12 * max(1.0, np.abs(w_1).max()))


class Failing(Exception):
    pass


class FailingReducer:
    """A ``Group.reducer`` whose ``calls``-th call raises ``Failing``."""

    def __init__(self, inner: object, calls: int, count: list) -> None:
        self.inner, self.calls, self.count = inner, calls, count
        self.send, self.total = inner.send, inner.total
        self.send_extra, self.total_extra = inner.send_extra, inner.total_extra

    def __call__(self) -> None:
        self.count.append(1)
        if len(self.count) == self.calls:
            raise Failing("collective lost")
        self.inner()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("momentum", [0.0, 0.5])
@pytest.mark.parametrize("calls", [1, 2, 3])
def test_a_collective_that_raises_leaves_the_weights_of_the_last_step(calls, momentum,
                                                                      monkeypatch):
    """The error comes out of the compiled span unchanged, and the weights are the NumPy
    reference's when its ``calls``-th reduction raises: those after ``calls - 1`` steps
    (after an odd number the span held them in its spare buffers)."""
    def run(backend):
        model = sg.MLP([5, 6, 3], seed=0, backend=backend)
        optimizer = sg.MiniBatchSGD(lr=0.1, batch_size=5, momentum=momentum)
        with pytest.raises(Failing):
            run_threads(1, lambda comm: sg.fit(model, make_data(), optimizer, epochs=1,
                                              progress=False, seed=3, comm=comm))
        return weights(model)

    start = weights(sg.MLP([5, 6, 3], seed=0))
    reducer, count = Group.reducer, []
    monkeypatch.setattr(Group, "reducer", lambda self, *args: FailingReducer(
        reducer(self, *args), calls, count))
    compiled = run("numba")
    monkeypatch.setattr(Group, "reducer", reducer)
    summed, reference_count = Group.sum_in_rank_order, []

    def failing_sum(self, buf, out=None):
        reference_count.append(1)
        if len(reference_count) == calls:
            raise Failing("collective lost")
        return summed(self, buf, out)

    monkeypatch.setattr(Group, "sum_in_rank_order", failing_sum)
    reference = run("numpy")
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-12)
    assert np.array_equal(compiled, start) == (calls == 1)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_run_cut_mid_epoch_resumes_to_the_bits_of_an_uninterrupted_one(backend, tmp_path,
                                                                       monkeypatch):
    """3 ranks, 5 steps an epoch, a checkpoint every 2 steps; rank 0's 9th reduction fails,
    after the checkpoint of step 8 (epoch 2, iteration 3), and the others stop in theirs;
    the rerun with resume=True ends as a run never cut, bit for bit, on every rank."""
    path = tmp_path / "run.npz"
    whole = run_threads(3, lambda comm: train(comm, backend, epochs=4))
    reducer, summed, count = Group.reducer, Group.sum_in_rank_order, []

    def failing_reducer(self, *args):
        inner = reducer(self, *args)
        return FailingReducer(inner, 9, count) if self.rank == 0 else inner

    def failing_sum(self, buf, out=None):
        count.append(self.rank == 0)
        if sum(count) == 9 and self.rank == 0:
            raise Failing("collective lost")
        return summed(self, buf, out)

    monkeypatch.setattr(Group, "reducer", failing_reducer)
    monkeypatch.setattr(Group, "sum_in_rank_order", failing_sum)
    with pytest.raises(Failing):
        run_threads(3, lambda comm: train(comm, backend, epochs=4, checkpoint=path,
                                          checkpoint_every=2))
    saved = sg.checkpoint.load(path)
    assert (saved.position["epoch"], saved.position["iteration"]) == (2, 3)
    monkeypatch.setattr(Group, "reducer", reducer)
    monkeypatch.setattr(Group, "sum_in_rank_order", summed)
    resumed = run_threads(3, lambda comm: train(comm, backend, epochs=4, checkpoint=path,
                                                checkpoint_every=2, resume=True))
    for (model, hist), (want, want_hist) in zip(resumed, whole, strict=True):
        assert weights(model).tobytes() == weights(want).tobytes()
        assert hist.iteration_loss == want_hist.iteration_loss


@pytest.mark.parametrize("P", [4, 5, 8])
def test_more_ranks_than_rows_on_the_compiled_span(P):
    check_parallel(P, backend="numba", optimizer=lambda: sg.MiniBatchSGD(lr=0.1, batch_size=2))


# --- reduce_dtype ------------------------------------------------------------------------------

def float32_run(comm=None, backend="numba", reduce_dtype=None, **kwargs):
    """A float32 model trained in one process, or on the ranks of ``comm`` with these sums."""
    data = make_data(40)
    model = sg.MLP([5, 6, 3], seed=0 if comm is None else comm.Get_rank(), backend=backend,
                   dtype=np.float32)
    extra = {} if comm is None else {"comm": comm, "reduce_dtype": reduce_dtype}
    kwargs = {"epochs": 4, **extra, **kwargs}
    hist = sg.fit(model, data, sg.MiniBatchSGD(lr=0.1, batch_size=6, momentum=0.5),
                  progress=False, seed=3, accumulate=2, **kwargs)
    return model, hist


@pytest.mark.parametrize("value", ["float16", "int32", 32, True, "floats", object()])
def test_an_invalid_reduce_dtype_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="reduce_dtype must be None, 'float64' or 'float32', got"):
        train(reduce_dtype=value)
    with pytest.raises(ValueError, match="reduce_dtype must be"):
        run_threads(2, lambda comm: train(comm, reduce_dtype=value))


def test_float32_sums_are_refused_for_a_float64_model_and_without_comm():
    with pytest.raises(ValueError, match="reduce_dtype='float32' needs a float32 model, got a "
                                         "float64 one"):
        run_threads(2, lambda comm: train(comm, reduce_dtype="float32"))
    with pytest.raises(ValueError, match="applies to data-parallel training only"):
        sg.fit(sg.MLP([5, 6, 3], dtype=np.float32), make_data(), sg.GD(lr=0.1), progress=False,
               reduce_dtype="float32")


def test_float64_spelled_any_way_is_the_default():
    model, hist = train()
    for value in ("float64", np.float64, np.dtype("float64")):
        again, again_hist = train(reduce_dtype=value)
        assert weights(again).tobytes() == weights(model).tobytes()
    results = run_threads(2, lambda comm: train(comm, backend="numba", reduce_dtype="float64"))
    default = run_threads(2, lambda comm: train(comm, backend="numba"))
    assert weights(results[1][0]).tobytes() == weights(default[1][0]).tobytes()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("P", [2, 3, 5])
def test_float32_sums_keep_replicas_identical_and_stay_near_one_process(P, backend):
    """Replicas bit-identical; weights within float32 rounding of one process (and of float64
    sums); with P >= 3 the float32 additions round where the float64 ones did not."""
    w_1 = weights(float32_run(backend=backend)[0])
    scale = max(1.0, np.abs(w_1).max())
    f32 = run_threads(P, lambda comm: float32_run(comm, backend, "float32"))
    f64 = run_threads(P, lambda comm: float32_run(comm, backend, "float64"))
    for model, hist in f32:
        assert weights(model).tobytes() == weights(f32[0][0]).tobytes()
        assert hist.iteration_loss == f32[0][1].iteration_loss
        assert np.abs(weights(model) - w_1).max() <= 1e-5 * scale
        assert np.abs(weights(model) - weights(f64[0][0])).max() <= 1e-5 * scale
    if P >= 3:
        assert f32[0][1].iteration_loss != f64[0][1].iteration_loss  # float32 loss sums


@pytest.mark.parametrize("P", [2, 3])
def test_the_compiled_span_with_float32_sums_equals_the_numpy_reference(P):
    compiled = run_threads(P, lambda comm: float32_run(comm, "numba", "float32"))
    reference = run_threads(P, lambda comm: float32_run(comm, "numpy", "float32"))
    w = weights(reference[0][0])
    np.testing.assert_allclose(weights(compiled[0][0]), w, rtol=0,
                               atol=1e-5 * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("P", [2, 3])
def test_float32_sums_move_half_the_bytes(P, backend, monkeypatch):
    """Bytes each rank receives: rank 0's weights once (Bcast), then per step one reduction
    of ``n = parameters + 2`` sums (loss sum and correct count of the step's one batch):
    ``(P - 1) n`` elements by the Allgather of P = 2, ``2 (P - 1) ceil(n / P)`` by the
    reduce-scatter; 8 bytes each in float64, 4 in float32."""
    force_messages(monkeypatch)

    def run(comm, reduce_dtype):
        model = sg.MLP([5, 6, 3], seed=0, backend=backend, dtype=np.float32)
        hist = sg.fit(model, make_data(), sg.MiniBatchSGD(lr=0.1, batch_size=5), epochs=2,
                      progress=False, comm=comm, reduce_dtype=reduce_dtype)
        return (comm.received, hist.steps, sum(p.nbytes for p in model.params),
                sum(p.size for p in model.params))

    for reduce_dtype, itemsize in (("float64", 8), ("float32", 4)):
        for rank, (received, steps, weight_bytes, n_params) in enumerate(
                run_threads(P, lambda comm, r=reduce_dtype: run(comm, r))):
            n = n_params + 2
            per_step = (P - 1) * n if P <= 2 else 2 * (P - 1) * -(-n // P)
            assert received == (weight_bytes if rank else 0) + steps * per_step * itemsize


def test_float32_sums_are_recorded_by_a_checkpoint_and_must_match_on_resume(tmp_path):
    path = tmp_path / "run.npz"
    run_threads(2, lambda comm: float32_run(comm, reduce_dtype="float32", checkpoint=path,
                                            checkpoint_every=3))
    assert sg.checkpoint.load(path).meta["settings"]["reduce_dtype"] == "float32"

    def resume(comm, reduce_dtype):
        try:
            float32_run(comm, reduce_dtype=reduce_dtype, checkpoint=path, resume=True, epochs=6)
        except ValueError as exc:
            return str(exc)
        return None

    for message in run_threads(2, lambda comm: resume(comm, None)):
        assert "reduce_dtype='float32', not None" in message
    resumed = run_threads(2, lambda comm: float32_run(comm, reduce_dtype="float32",
                                                      checkpoint=path, resume=True, epochs=6))
    whole = run_threads(2, lambda comm: float32_run(comm, reduce_dtype="float32", epochs=6))
    assert weights(resumed[1][0]).tobytes() == weights(whole[1][0]).tobytes()
    path_64 = tmp_path / "run64.npz"
    run_threads(2, lambda comm: float32_run(comm, checkpoint=path_64))
    assert sg.checkpoint.load(path_64).meta["settings"]["reduce_dtype"] is None  # as if absent


def test_the_ranks_must_agree_on_reduce_dtype():
    def run(comm):
        try:
            float32_run(comm, reduce_dtype="float32" if comm.Get_rank() else "float64")
        except ValueError as exc:
            return str(exc)
        return None

    assert all("disagree on reduce_dtype" in m for m in run_threads(2, run))
