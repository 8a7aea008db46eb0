"""Data parallel under a real ``mpiexec``: 2 and 3 processes on tiny problems.

Each test runs ``tests/mpi_worker.py`` under ``mpiexec -n P`` in its own
process group, with a timeout after which the whole group is killed. MPI is
configured only through environment variables (never launcher flags, which
differ between MPICH and Open MPI). Skipped when mpi4py or ``mpiexec`` is
missing, unless ``SCRATCHGD_REQUIRE_MPI=1`` (as ``.ci/run`` sets) makes that a
failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import distributed

WORKER = Path(__file__).with_name("mpi_worker.py")
ROOT = Path(__file__).resolve().parents[1]

if not (importlib.util.find_spec("mpi4py") and shutil.which("mpiexec")):
    if os.environ.get("SCRATCHGD_REQUIRE_MPI") == "1":
        raise RuntimeError("SCRATCHGD_REQUIRE_MPI=1 but mpi4py or mpiexec is missing: "
                           'pip install "scratchgd[mpi]"')
    pytest.skip("needs the 'mpi' extra (mpi4py and mpiexec)", allow_module_level=True)

pytestmark = pytest.mark.slow


def start(P: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``mpiexec -n P python mpi_worker.py ARGS`` in a new process group."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(["mpiexec", "-n", str(P), sys.executable, str(WORKER), *args],
                            env=environment, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(job: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Wait for ``job``; on timeout kill its whole process group and fail."""
    try:
        output, _ = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        pytest.fail(f"mpiexec did not finish within {timeout} s:\n{output}")
    return job.returncode, output


def run(P: int, *args: str, env: dict | None = None) -> str:
    code, output = finish(start(P, *args, env=env))
    assert code == 0, output
    return output


def worker_module():
    """``tests/mpi_worker.py`` imported as a module (for its problem and buffers)."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        import mpi_worker
    finally:
        sys.path.pop(0)
    return mpi_worker


def one_process(backend: str = "numpy") -> tuple[list[np.ndarray], list[float]]:
    model, data = worker_module().problem(backend)
    hist = sg.fit(model, data, sg.MiniBatchSGD(lr=0.1, batch_size=5, momentum=0.5), epochs=3,
                  accumulate=2, seed=3, progress=False)
    return model.params, hist.iteration_loss


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return [f[f"arr_{i}"] for i in range(4)]


@pytest.mark.parametrize(("P", "mode", "messages"), [
    (2, "equal", False), (3, "equal", False), (4, "equal", False), (2, "numba", False),
    (3, "numba", False), (3, "numba", True)])
def test_ranks_equal_one_process_and_each_other(tmp_path, P, mode, messages):
    """numba: the compiled span, summing through an MPI shared window or (messages) by the
    collectives of Group.sum_in_rank_order."""
    run(P, mode, str(tmp_path), env={"MESSAGES": "1"} if messages else None)
    want, losses = one_process("numba" if mode == "numba" else "numpy")
    scale = max(1.0, max(np.abs(w).max() for w in want))
    first = weights(tmp_path / "rank0.npz")
    for rank in range(P):
        got = weights(tmp_path / f"rank{rank}.npz")
        for a, b, c in zip(got, want, first, strict=True):
            assert np.abs(a - b).max() <= 1e-12 * scale
            assert a.tobytes() == c.tobytes()
        with np.load(tmp_path / f"rank{rank}.npz") as f:
            np.testing.assert_allclose(f["iteration_loss"], losses, rtol=1e-12)


@pytest.mark.parametrize("P", [2, 3, 4])
def test_the_reduction_adds_in_rank_order_with_the_same_bits_on_every_rank(tmp_path, P):
    """Uneven and empty chunks too: every rank's result is the rank-order sum, bit for bit."""
    mpi_worker = worker_module()
    run(P, "reduce", str(tmp_path))
    for rank in range(P):
        with np.load(tmp_path / f"rank{rank}.npz", allow_pickle=False) as got:
            for n in mpi_worker.REDUCE_SIZES:
                want = distributed.add_in_rank_order(mpi_worker.rank_buffers(P, n)).tobytes()
                for method in ("sum_in_rank_order", "gather_sum", "scatter_sum"):
                    assert got[f"{method}_{n}"].tobytes() == want, (rank, method, n)
                rows = mpi_worker.rank_buffers(P, n)
                for dtype in (np.float64, np.float32):  # a run's reducer: an MPI shared window
                    key = f"reducer_SharedSum_{np.dtype(dtype).name}_{n}"
                    added = distributed.add_in_rank_order(rows.astype(dtype).astype(np.float64))
                    assert got[key].tobytes() == added.astype(dtype).tobytes(), (rank, key)
                    extra = rows[:, :3] if n >= 3 else np.zeros((P, 3))
                    assert (got[f"{key}_extra"].tobytes()
                            == distributed.add_in_rank_order(extra).tobytes()), (rank, key)


def test_mismatched_ranks_are_refused_on_every_rank(tmp_path):
    run(3, "mismatch", str(tmp_path))
    for rank in range(3):
        text = (tmp_path / f"rank{rank}.txt").read_text()
        assert text.startswith("ValueError") and "optimizer settings" in text, text


def test_divergence_stops_every_rank(tmp_path):
    run(2, "diverge", str(tmp_path))
    texts = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert texts[0].startswith("TrainingDiverged") and texts[0] == texts[1]


def test_kill_one_rank_ends_the_job_and_resume_repeats_the_bits(tmp_path):
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    run(2, "resume", str(tmp_path / "whole"), str(tmp_path / "whole" / "ck.npz"))
    cut = tmp_path / "cut"
    job = start(2, "resume", str(cut), str(cut / "ck.npz"), env={"SLOW": "1"})
    deadline = time.monotonic() + 90
    while not ((cut / "ck.npz").exists() and (cut / "pid1").exists()):
        assert time.monotonic() < deadline and job.poll() is None, "no checkpoint written"
        time.sleep(0.05)
    time.sleep(0.3)  # a few more steps
    assert job.poll() is None, "the run ended before the kill"
    os.kill(int((cut / "pid1").read_text()), signal.SIGKILL)
    killed = time.monotonic()
    code, output = finish(job, timeout=30)
    assert code != 0 and time.monotonic() - killed < 30, output
    assert not (cut / "rank0.npz").exists()
    run(2, "resume", str(cut), str(cut / "ck.npz"))
    for name in ("rank0.npz", "rank1.npz"):
        for a, b in zip(weights(cut / name), weights(tmp_path / "whole" / name), strict=True):
            assert a.tobytes() == b.tobytes()


def test_command_line_trains_on_every_rank_and_only_rank_0_prints(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(["mpiexec", "-n", "2", sys.executable, "-m", "scratchgd", "train",
                            "--distributed", "--epochs", "1", "--no-progress", "--hidden", "8"],
                           cwd=tmp_path, env=environment, start_new_session=True, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    code, output = finish(job)
    assert code == 0, output
    assert output.count("test accuracy") == 1
    assert output.strip().splitlines()[-1] == "trained data-parallel by 2 processes"
    job = subprocess.Popen(["mpiexec", "-n", "2", sys.executable, "-m", "scratchgd", "train",
                            "--distributed", "--data", "missing.npz"],
                           cwd=tmp_path, env=environment, start_new_session=True, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    code, output = finish(job, timeout=60)
    assert code == 2 and output.count("scratchgd: error: missing.npz") == 1, output


def test_command_line_regression_on_two_ranks_equals_one_process(tmp_path, capsys, monkeypatch):
    """``--loss mse --distributed``: rank 0 prints the one-process run's epoch lines and R^2
    (the targets scaled by rank 0's statistics on both ranks)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)) * [1.0, 10.0, 100.0]
    np.savetxt(tmp_path / "X.txt", X)
    np.savetxt(tmp_path / "y.csv", X[:, :2] @ [[1.0, 0.5], [0.1, -0.2]] / 10, delimiter=",")
    args = ["train", "--data", "X.txt", "--labels", "y.csv", "--loss", "mse", "--epochs", "3",
            "--hidden", "8", "--no-progress"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(["mpiexec", "-n", "2", sys.executable, "-m", "scratchgd", *args,
                            "--distributed"], cwd=tmp_path, env=environment,
                           start_new_session=True, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    code, output = finish(job)
    assert code == 0, output
    from scratchgd import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 0
    alone = capsys.readouterr().out

    def results(text):   # the epoch lines without their seconds, and the test figures
        return [line.rsplit(" ", 1)[0] if line.startswith("epoch ") else line
                for line in text.splitlines() if line.startswith(("epoch ", "test "))]

    assert output.count("test R^2") == 1 and results(output) == results(alone)
    assert "MLP([3, 8, 2]" in output and len(results(alone)) == 5
    assert "target_scaling=standard" in output
