"""The numba backend runs small matrix products on one BLAS thread, and gives the threads back."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import scratchgd as sg
from scratchgd.kernels import compiled
from scratchgd.kernels.compiled import base, span


def test_blas_threads_for_is_one_below_the_threshold_and_unlimited_from_it():
    limit = compiled.BLAS_THREADED_MIN_WORK
    assert compiled.blas_threads_for(1) == 1
    assert compiled.blas_threads_for(limit - 1) == 1
    assert compiled.blas_threads_for(limit) is None
    assert compiled.blas_threads_for(100 * limit) is None


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("sizes, batch, expected", [
    ([64, 128, 10], 33, 1),        # 33 * 64 * 128 = 270,336 multiply-adds: one thread
    ([64, 128, 10], 32, 2),        # 262,144: OpenBLAS's own one-thread products, left alone
    ([784, 256, 10], 32, 2),       # 32 * 784 * 256 = 6,422,528: BLAS keeps its threads
    ([784, 256, 10], 2, 2),        # the compiled loops, no BLAS: nothing to limit
])
def test_fit_limits_blas_threads_during_the_compiled_span_only(monkeypatch, sizes, batch,
                                                               expected):
    seen = []
    original = compiled.train_iterations_kernel

    def spy(*args):
        seen.append(_blas_threads())
        return original(*args)

    monkeypatch.setattr(span, "train_iterations_kernel", spy)  # the name train_iterations calls
    rng = np.random.default_rng(0)
    data = sg.Dataset(rng.random((64, sizes[0]), dtype=np.float32), np.arange(64) % 10)
    model = sg.MLP(sizes, seed=0, dtype=np.float32, backend="numba")
    base._blas()  # loads numba's BLAS, so that the limit below reaches it too
    with threadpool_limits(2, user_api="blas"):
        sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=batch), epochs=1, progress=False)
        assert _blas_threads() == [2] * len(_blas_threads())   # given back
    assert seen and all(threads == [expected] * len(threads) for threads in seen), seen


def test_a_kernel_call_inside_a_run_finds_the_threads_set_and_leaves_them():
    base._blas()
    n = len(_blas_threads())
    with threadpool_limits(2, user_api="blas"):
        with base.BlasThreads(1):                 # what the compiled engine holds for a run
            assert _blas_threads() == [1] * n
            inner = base.BlasThreads(1)           # what each kernel call enters
            with inner:
                assert inner.changed is None      # nothing read, nothing set
            assert _blas_threads() == [1] * n     # and nothing restored on its way out
            with base.BlasThreads(2):             # another count is set, and undone
                assert _blas_threads() == [2] * n
            assert _blas_threads() == [1] * n
        assert _blas_threads() == [2] * n


def test_a_run_that_diverges_gives_the_threads_back():
    rng = np.random.default_rng(0)
    data = sg.Dataset(rng.random((64, 64), dtype=np.float32) * 1e3, np.arange(64) % 10)
    model = sg.MLP([64, 128, 10], seed=0, dtype=np.float32, backend="numba")
    base._blas()
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(sg.TrainingDiverged):
            sg.fit(model, data, sg.MiniBatchSGD(1e30, batch_size=32), epochs=3, progress=False)
        assert _blas_threads() == [2] * len(_blas_threads())


def test_products_openblas_runs_on_one_thread_itself_are_left_alone(monkeypatch):
    Ws = (np.empty((64, 128), np.float32),)
    rows = compiled.OPENBLAS_ONE_THREAD_WORK // Ws[0].size                 # 32 rows
    assert isinstance(base.blas_limit(True, rows + 1, Ws), base.BlasThreads)
    monkeypatch.setattr(base, "_only_openblas", lambda: True)
    assert not isinstance(base.blas_limit(True, rows, Ws), base.BlasThreads)
    monkeypatch.setattr(base, "_only_openblas", lambda: False)           # another BLAS: limited
    assert isinstance(base.blas_limit(True, rows, Ws), base.BlasThreads)
