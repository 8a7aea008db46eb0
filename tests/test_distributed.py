"""Data parallel in one process: P simulated ranks (threads) take the one-process step.

``scratchgd.distributed.ThreadComm`` implements the mpi4py calls ``fit``
makes, so these tests of the identity (docs/math.md item 9) always run;
``tests/test_mpi.py`` repeats the key ones under a real ``mpiexec``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import scratchgd as sg
from scratchgd.distributed import (
    Group,
    add_in_rank_order,
    checked_in_shares,
    run_threads,
    shard,
)


def make_data(n: int = 23, d: int = 5, classes: int = 3, seed: int = 0) -> sg.Dataset:
    rng = np.random.default_rng(seed)
    return sg.Dataset(rng.normal(size=(n, d)), rng.integers(0, classes, size=n))


def train(comm=None, backend="numpy", optimizer: Callable | None = None, data=None, epochs=3,
          model_seed=0, scale=False, **kwargs):
    data = make_data() if data is None else data
    model = sg.MLP([data.n_features, 6, 3], seed=model_seed, backend=backend)
    if scale:
        sg.standardize(model, data)
    # a fresh optimizer per run: momentum buffers are state
    optimizer = optimizer() if optimizer is not None else sg.MiniBatchSGD(lr=0.1, batch_size=5)
    hist = sg.fit(model, data, optimizer, epochs=epochs, progress=False, seed=3, comm=comm,
                  **kwargs)
    return model, hist


def assert_same_history(got: sg.History, want: sg.History) -> None:
    for name in ("epochs", "iterations", "steps", "samples_seen", "steps_at_epoch_end",
                 "iterations_at_epoch_end"):
        assert getattr(got, name) == getattr(want, name), name
    for name in ("iteration_loss", "epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12,
                                   atol=0, err_msg=name)


def check_parallel(P: int, **kwargs) -> None:
    """P ranks end with the one-process weights (1e-12) and the same bits on every rank."""
    model_1, hist_1 = train(**kwargs)
    # ranks start from different draws: rank 0's weights are broadcast
    results = run_threads(P, lambda comm: train(comm, model_seed=comm.Get_rank(), **kwargs))
    w_1 = np.concatenate([p.ravel() for p in model_1.params])
    scale = max(1.0, np.abs(w_1).max())
    for model, hist in results:
        w_p = np.concatenate([p.ravel() for p in model.params])
        assert np.abs(w_p - w_1).max() <= 1e-12 * scale
        assert_same_history(hist, hist_1)
    first = results[0][0].params
    for model, hist in results[1:]:
        for a, b in zip(model.params, first, strict=True):
            assert a.tobytes() == b.tobytes()
        assert hist.iteration_loss == results[0][1].iteration_loss


def test_shard_cuts_a_batch_into_contiguous_near_equal_pieces():
    for n in range(0, 12):
        for P in range(1, 6):
            pieces = [shard(10, 10 + n, r, P) for r in range(P)]
            assert pieces[0][0] == 10 and pieces[-1][1] == 10 + n
            assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
            sizes = [hi - lo for lo, hi in pieces]
            assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


def rank_buffers(P: int, n: int, seed: int = 0) -> np.ndarray:
    """``(P, n)`` float64 rows of magnitudes 1e-12 .. 1e12: their sum depends on the order."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(P, n)) * 10.0 ** rng.integers(-12, 13, size=(P, n))


def reduce_on_threads(P: int, rows: np.ndarray, method: str = "sum_in_rank_order") -> list:
    """Every rank's ``(result, bytes received)`` of ``Group.method`` on its row of ``rows``."""
    def rank(comm):
        group = Group(comm)
        return getattr(group, method)(rows[group.rank]), comm.received

    return run_threads(P, rank)


@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 8])
def test_the_reduction_adds_in_rank_order_with_the_same_bits_on_every_rank(P):
    # n < P (empty chunks), n = P, n not divisible by P, an empty buffer
    for n in sorted({0, 1, max(P - 1, 1), P, 3 * P + 1, 1001}):
        rows = rank_buffers(P, n)
        want = add_in_rank_order(rows).tobytes()
        for method in ("sum_in_rank_order", "gather_sum", "scatter_sum"):
            for total, _ in reduce_on_threads(P, rows, method):
                assert total.dtype == np.float64 and total.shape == (n,)
                assert total.tobytes() == want, (method, n)
    if P >= 3:  # the check can fail: another order gives other bits
        rows = rank_buffers(P, 1001)
        assert add_in_rank_order(rows[::-1]).tobytes() != add_in_rank_order(rows).tobytes()


@pytest.mark.parametrize("P", [2, 3, 4, 5, 8])
def test_bytes_received_per_rank_follow_2_P_minus_1_over_P_of_the_buffer(P):
    """``S = 8 n`` bytes: the reduce-scatter receives ``2 (P - 1) ceil(n / P) 8`` bytes.

    Rounding: the buffer is cut into P chunks of ``ceil(n / P)`` elements, so
    the count exceeds ``2 (P - 1) / P S`` by less than ``16 (P - 1)`` bytes;
    the Allgather receives ``(P - 1) S``; P <= 2 keeps the Allgather.
    """
    for n in (3, 1000, 1003):  # fewer elements than ranks, divisible, not divisible
        S, chunk = 8 * n, -(-n // P)
        rows = rank_buffers(P, n)
        for _, received in reduce_on_threads(P, rows, "scatter_sum"):
            assert received == 2 * (P - 1) * 8 * chunk
            assert 2 * (P - 1) / P * S <= received < 2 * (P - 1) / P * S + 16 * (P - 1)
        for _, received in reduce_on_threads(P, rows, "gather_sum"):
            assert received == (P - 1) * S
        used = reduce_on_threads(P, rows)[0][1]
        assert used == ((P - 1) * S if P <= 2 else 2 * (P - 1) * 8 * chunk)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 8])
def test_minibatch_with_short_last_batch_equals_one_process(P, backend):
    check_parallel(P, backend=backend)  # 23 rows, batches of 5: the last has 3


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("P", [2, 3, 5])
def test_gd_sgd_momentum_and_accumulation_equal_one_process(P, backend):
    check_parallel(P, backend=backend, optimizer=lambda: sg.GD(lr=0.2, momentum=0.9))
    check_parallel(P, backend=backend, optimizer=lambda: sg.SGD(lr=0.05), epochs=1)  # shards empty
    check_parallel(P, backend=backend, accumulate=2,
                   optimizer=lambda: sg.MiniBatchSGD(lr=0.1, batch_size=4, momentum=0.5))
    check_parallel(P, backend=backend, accumulate="epoch")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_input_scaling_applies_on_every_rank(backend):
    check_parallel(2, backend=backend, scale=True)


@pytest.mark.parametrize("P", [4, 5, 8])
def test_more_ranks_than_rows_in_a_batch(P):
    check_parallel(P, optimizer=lambda: sg.MiniBatchSGD(lr=0.1, batch_size=2))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_validation_and_mse_equal_one_process(backend):
    check_parallel(3, backend=backend, validation=make_data(7, seed=1))
    rng = np.random.default_rng(2)
    regression = sg.Dataset(rng.normal(size=(13, 5)), rng.normal(size=(13, 3)))

    def fit_mse(comm=None):
        model = sg.MLP([5, 4, 3], loss="mse", seed=0, backend=backend)
        sg.fit(model, regression, sg.MiniBatchSGD(lr=0.05, batch_size=4), epochs=2,
               progress=False, comm=comm)
        return np.concatenate([p.ravel() for p in model.params])

    want = fit_mse()
    for got in run_threads(3, fit_mse):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_memory_budget_applies_per_rank(backend):
    data = make_data(40)
    budget = sg.memory.estimate(sg.MLP([5, 6, 3]), 8, optimizer=sg.GD(lr=0.1))
    model_1, hist_1 = train(data=data, backend=backend, optimizer=lambda: sg.GD(lr=0.1),
                            memory_budget=budget)
    results = run_threads(2, lambda comm: train(comm, backend, data=data,
                                                optimizer=lambda: sg.GD(lr=0.1),
                                                memory_budget=budget))
    for model, hist in results:
        # each rank computes half of a chunk: the chunks are twice one process's 8 rows
        assert hist_1.iterations_at_epoch_end[0] == 5
        assert hist.iterations_at_epoch_end[0] == 3  # ceil(40 / 16)
        assert hist.steps == hist_1.steps
        for a, b in zip(model.params, model_1.params, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_mismatched_ranks_are_refused_on_every_rank():
    def run(comm):
        rank = comm.Get_rank()
        try:
            train(comm, optimizer=lambda: sg.MiniBatchSGD(lr=0.1 if rank == 0 else 0.2,
                                                          batch_size=5))
        except ValueError as exc:
            return str(exc)
        return None

    messages = run_threads(3, run)
    assert all(m is not None and "optimizer settings" in m and "rank 1" in m for m in messages)

    def run_rows(comm):
        try:
            train(comm, data=make_data(23 + comm.Get_rank()))
        except ValueError as exc:
            return str(exc)
        return None

    assert all("rows" in m for m in run_threads(2, run_rows))


def test_a_file_missing_on_one_rank_is_reported_on_every_rank(tmp_path):
    """Group.agree: a FileNotFoundError of one rank ends every rank alike (no rank waits)."""
    from scratchgd.distributed import Group

    np.save(tmp_path / "there.npy", np.zeros(3))

    def run(comm):
        path = tmp_path / ("missing.npy" if comm.Get_rank() == 1 else "there.npy")
        try:
            Group(comm).agree(lambda: np.load(path, allow_pickle=False))
        except (ValueError, FileNotFoundError) as exc:
            return type(exc).__name__, str(exc), getattr(exc, "all_ranks", False)
        return None

    results = run_threads(3, run)
    assert results[1][0] == "FileNotFoundError" and results[1][2]
    for rank in (0, 2):
        kind, message, all_ranks = results[rank]
        assert kind == "ValueError" and "rank 1 of 3" in message and "missing.npy" in message
        assert all_ranks


def test_a_rank_that_fails_its_checks_stops_every_rank():
    def run(comm):
        data = make_data(d=5 if comm.Get_rank() == 0 else 4)
        try:
            sg.fit(sg.MLP([5, 6, 3]), data, sg.GD(lr=0.1), progress=False, comm=comm)
        except ValueError as exc:
            return str(exc)
        return None

    messages = run_threads(2, run)
    assert "features" in messages[1] and "rank 1 of 2 refused" in messages[0]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_divergence_stops_every_rank_alike(backend):
    data = make_data()
    data.X[17] = 1e300  # one row overflows: only the rank holding it sees the inf

    def run(comm=None):
        try:
            train(comm, data=data, backend=backend, optimizer=lambda: sg.GD(lr=0.1))
        except sg.TrainingDiverged as exc:
            return exc.epoch, exc.iteration, exc.history.steps
        return None

    want = run()
    assert want is not None
    assert run_threads(3, run) == [want] * 3


def test_not_supported_with_comm():
    with pytest.raises(ValueError, match="track_noise"):
        run_threads(2, lambda comm: train(comm, track_noise=True))
    with pytest.raises(TypeError, match="communicator"):
        train(comm=object())


def test_distributed_flag_without_mpi4py_says_what_to_install(monkeypatch, capsys):
    import sys

    from scratchgd.cli import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    assert main(["train", "--distributed", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "scratchgd[mpi]"' in err[0]


def test_import_does_not_start_mpi():
    import subprocess
    import sys

    code = "import sys, scratchgd; sys.exit('mpi4py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_rank_0_checkpoints_and_a_resume_with_another_P_is_refused(tmp_path, backend):
    path = tmp_path / "run.npz"
    results = run_threads(2, lambda comm: train(comm, backend, checkpoint=path,
                                                checkpoint_every=2))
    saved = sg.checkpoint.load(path)
    assert saved.meta["settings"]["processes"] == 2 and saved.meta["version"] == sg.checkpoint.VERSION
    # resuming with P = 2 continues to the weights of an uninterrupted 5-epoch run
    resumed = run_threads(2, lambda comm: train(comm, backend, checkpoint=path, resume=True,
                                                epochs=5))
    whole = run_threads(2, lambda comm: train(comm, backend, epochs=5))
    for a, b in zip(resumed[1][0].params, whole[1][0].params, strict=True):
        assert a.tobytes() == b.tobytes()
    assert results[0][1].iteration_loss == resumed[0][1].iteration_loss[:len(
        results[0][1].iteration_loss)]

    def resume_on_3(comm):
        try:
            train(comm, backend, checkpoint=path, resume=True, epochs=6)
        except ValueError as exc:
            return str(exc)
        return None

    for message in run_threads(3, resume_on_3):
        assert "processes=2, not 3" in message
    with pytest.raises(ValueError, match="processes=2, not 1"):
        train(backend=backend, checkpoint=path, resume=True, epochs=6)


def test_a_version_2_checkpoint_is_refused_naming_its_version(tmp_path):
    import json

    path = tmp_path / "run.npz"
    train(checkpoint=path)
    arrays = sg.npzfile.read_npz(path)
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 2
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="format version 2"):
        sg.checkpoint.load(path)


def test_dataset_checks_split_between_ranks_and_name_the_true_row(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 3, 10).astype(float)
    X[8, 1] = np.nan  # in rank 2's share of 10 rows on 3 ranks: rows 7..9

    def build(comm):
        try:
            checked_in_shares(lambda share: sg.Dataset(X, y, share=share), comm)
        except ValueError as exc:
            return str(exc)
        return None

    messages = run_threads(3, build)
    assert "at index (8, 1)" in messages[2]
    assert all("rank 2 of 3 refused" in m and "(8, 1)" in m for m in messages[:2])
    # each rank checks only its share: rows 7..9 are rank 2's of 3
    sg.Dataset(X, y, share=(0, 3))
    with pytest.raises(ValueError, match=r"\(8, 1\)"):
        sg.Dataset(X, y, share=(2, 3))
    np.save(tmp_path / "X.npy", np.nan_to_num(X))
    np.save(tmp_path / "y.npy", y)
    loaded = run_threads(2, lambda comm: checked_in_shares(lambda share: sg.Dataset.from_file(
        tmp_path / "X.npy", tmp_path / "y.npy", share=share), comm))
    for data in loaded:
        assert data.y.dtype == np.int64 and np.array_equal(data.y, y)


@pytest.mark.parametrize("share", [(2, 2), (-1, 2), (0, 0), (0.0, 1), [0, 1], (0, 1, 2)])
def test_a_share_that_is_not_p_of_P_is_refused(share):
    with pytest.raises(ValueError, match="share must be"):
        sg.Dataset(np.ones((3, 2)), np.zeros(3), share=share)


def makers(comm, folder):
    """The three deprecated ways of checking a data set on the ranks of ``comm``."""
    return (lambda: sg.Dataset(np.load(folder / "X.npy"), np.load(folder / "y.npy"), comm=comm),
            lambda: sg.Dataset.from_npy(folder / "X.npy", folder / "y.npy", comm=comm),
            lambda: sg.Dataset.from_file(folder / "X.npy", folder / "y.npy", comm=comm))


def test_dataset_comm_is_deprecated_naming_what_replaces_it(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((6, 2)))
    np.save(tmp_path / "y.npy", np.zeros(6))

    def build(comm):  # one rank: no other thread touches the warnings filters
        for make in makers(comm, tmp_path):
            with pytest.warns(DeprecationWarning, match="checked_in_shares") as caught:
                assert len(make()) == 6
            assert caught[0].filename == __file__  # the warning points at the caller
        return True

    assert run_threads(1, build) == [True]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dataset_comm_still_splits_the_checks_between_the_ranks(tmp_path):
    X = np.ones((6, 2))
    X[5, 0] = np.inf  # rank 1's share of 6 rows on 2 ranks
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.zeros(6))

    def build(comm):
        messages = []
        for make in makers(comm, tmp_path):
            with pytest.raises(ValueError) as caught:
                make()
            messages.append(str(caught.value))
        return messages

    for rank, messages in enumerate(run_threads(2, build)):
        assert all("(5, 0)" in m and ("rank 1 of 2 refused" in m) == (rank == 0)
                   for m in messages)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_input_scaling_is_rank_zeros_and_equals_one_process(backend):
    """Every rank scales its shards by rank 0's statistics (broadcast), as one process does."""
    rng = np.random.default_rng(1)
    data = sg.Dataset(rng.normal(size=(23, 5)) * [1, 10, 100, 1e3, 1e4] + 50,
                      rng.integers(0, 3, size=23))

    def run(comm=None):
        model = sg.MLP([5, 6, 3], seed=0 if comm is None else comm.Get_rank(), backend=backend)
        sg.standardize(model, data)
        if comm is not None and comm.Get_rank():  # a wrong scaling, replaced by rank 0's
            model.scaling = sg.Scaling(model.scaling.mean + 1, model.scaling.std * 2)
        sg.fit(model, data, sg.MiniBatchSGD(lr=0.1, batch_size=5), epochs=2, progress=False,
               seed=3, comm=comm)
        return model

    one = run()
    w_1 = np.concatenate([p.ravel() for p in one.params])
    for model in run_threads(3, run):
        np.testing.assert_array_equal(model.scaling.std, one.scaling.std)
        w_p = np.concatenate([p.ravel() for p in model.params])
        assert np.abs(w_p - w_1).max() <= 1e-12 * max(1.0, np.abs(w_1).max())
