"""Run by ``tests/test_mpi.py`` under ``mpiexec``: ``python mpi_worker.py MODE OUT [CHECKPOINT]``.

Every rank trains a tiny problem with ``comm=MPI.COMM_WORLD`` and writes
``OUT/rank{r}.npz`` (weights and iteration losses) or ``OUT/rank{r}.txt`` (the
error it raised). Modes: ``equal`` (mini-batch with a short last batch,
momentum, accumulation), ``numba`` (the same on the numba backend),
``mismatch`` (rank 1 has another learning rate), ``diverge`` (one row
overflows), ``resume`` (checkpoint every step, resume if the file exists;
with ``SLOW=1`` every step waits 50 ms and each rank writes ``OUT/pid{r}``
so the test can kill one mid-run), ``reduce`` (``Group``'s three fixed-order
reductions of :func:`rank_buffers` for every size of :data:`REDUCE_SIZES`, and
a run's ``Group.reducer`` in float64 and float32). With ``MESSAGES=1`` every
``Group.reducer`` sums by messages, as between machines (not through an MPI
shared window).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from mpi4py import MPI

import scratchgd as sg
from scratchgd import distributed


def problem(backend: str = "numpy") -> tuple[sg.MLP, sg.Dataset]:
    """The test's problem: 23 rows, 5 features, 3 classes, MLP 5-6-3, float64."""
    rng = np.random.default_rng(0)
    data = sg.Dataset(rng.normal(size=(23, 5)), rng.integers(0, 3, size=23))
    return sg.MLP([5, 6, 3], seed=0, backend=backend), data


REDUCE_SIZES = (0, 1, 2, 3, 4, 5, 13, 1001)
"""Buffer sizes of ``reduce``: fewer elements than ranks, divisible by P and not."""


def rank_buffers(P: int, n: int) -> np.ndarray:
    """``(P, n)`` float64 rows of magnitudes 1e-12 .. 1e12 (row ``p``: rank ``p``'s buffer)."""
    rng = np.random.default_rng(n)
    return rng.normal(size=(P, n)) * 10.0 ** rng.integers(-12, 13, size=(P, n))


def reduce(out: str) -> None:
    """Write ``OUT/rank{r}.npz``: this rank's result of each reduction for each size."""
    group = distributed.Group(MPI.COMM_WORLD)
    results = {}
    for n in REDUCE_SIZES:
        mine = rank_buffers(group.size, n)[group.rank]
        for method in ("sum_in_rank_order", "gather_sum", "scatter_sum"):
            results[f"{method}_{n}"] = getattr(group, method)(mine)
        for dtype in (np.float64, np.float32):  # float32 rows added in float64
            reducer = group.reducer(n, 3, dtype, np.float64)
            reducer.send[:] = mine
            reducer.send_extra[:] = mine[:3] if n >= 3 else 0
            reducer()
            name = f"reducer_{type(reducer).__name__}_{np.dtype(dtype).name}_{n}"
            results[name] = reducer.total.copy()
            results[f"{name}_extra"] = reducer.total_extra.copy()
            reducer.close()
    np.savez(os.path.join(out, f"rank{group.rank}.npz"), **results)


def settings(mode: str) -> dict:
    """``fit``'s settings for ``mode`` (the test calls this for its one-process run)."""
    lr = 0.1
    if mode == "mismatch" and MPI.COMM_WORLD.Get_rank() == 1:
        lr = 0.2
    optimizer = sg.MiniBatchSGD(lr=lr, batch_size=5, momentum=0.5)
    return {"optimizer": optimizer, "epochs": 3, "accumulate": 2, "seed": 3}


def main(mode: str, out: str, checkpoint: str | None = None) -> None:
    if os.environ.get("MESSAGES") == "1":
        distributed._shared_block = lambda comm, nbytes: None
    if mode == "reduce":
        reduce(out)
        return
    rank = MPI.COMM_WORLD.Get_rank()
    model, data = problem("numba" if mode == "numba" else "numpy")
    kwargs = settings(mode)
    optimizer = kwargs.pop("optimizer")
    if mode == "diverge":
        data.X[17] = 1e300
    if mode == "resume":
        kwargs.update(checkpoint=checkpoint, checkpoint_every=1, resume=True, epochs=6)
        if os.environ.get("SLOW") == "1":
            with open(os.path.join(out, f"pid{rank}"), "w") as f:
                f.write(str(os.getpid()))
            original = distributed.Group.sum_in_rank_order

            def slow(self: distributed.Group, buf: np.ndarray) -> np.ndarray:
                time.sleep(0.05)
                return original(self, buf)

            distributed.Group.sum_in_rank_order = slow
    try:
        hist = sg.fit(model, data, optimizer, progress=False, comm=MPI.COMM_WORLD, **kwargs)
    except (ValueError, sg.TrainingDiverged) as exc:
        with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
            f.write(f"{type(exc).__name__}: {exc}")
        return
    np.savez(os.path.join(out, f"rank{rank}.npz"), *model.params,
             iteration_loss=np.array(hist.iteration_loss))


if __name__ == "__main__":
    main(*sys.argv[1:])
