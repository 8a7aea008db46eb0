"""One fixed-order reduction of W2's gradient sums: Allgather against reduce-scatter + Allgather.

Run from the repository root (needs the ``mpi`` extra)::

    python benchmarks/reduction.py                  # P = 2, 3, 4; 3 rounds of 200 calls
    python benchmarks/reduction.py --sizes 2 3 --rounds 1 --repeats 50   # quick

Each P is one ``mpiexec -n P`` job (one BLAS thread per process; the jobs of
the P values are interleaved in rounds). Every rank holds a float64 buffer of
``N = 203,530`` elements, the parameter sums of MLP 784-256-10 (``S = 8 N =
1.63 MB``, what ``fit(comm=...)`` reduces once per step), and times, in
rotating order: ``Group.gather_sum`` (old: one Allgather, every rank adds all P
buffers), ``Group.scatter_sum`` (new: Alltoall of chunks, the owner adds its
chunk in rank order, Allgather of the sums) and a plain ``MPI.Allreduce``
(library order, for reference). A call starts after a barrier and its time is
that of the slowest rank; the table shows the median and quartiles over all
calls of all rounds. Bytes received per rank per call are computed from the
formulas, ``(P - 1) S`` and ``2 (P - 1) ceil(N / P) 8``, and counted by a
wrapper around the communicator that adds the blocks other ranks put into
each receive buffer. Every job also checks that old and new give the same bits
on every rank.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scratchgd.distributed import Group  # noqa: E402

N = 784 * 256 + 256 + 256 * 10 + 10
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
METHODS = ("old", "new", "allreduce")


class Counting:
    """An mpi4py communicator that counts the bytes its buffer collectives receive from others.

    ``Allgather`` and ``Alltoall`` fill ``P`` equal blocks of the receive
    buffer, one from each rank: ``(P - 1) / P`` of it comes from the others.
    """

    def __init__(self, comm: Any) -> None:
        self.comm, self.received = comm, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.comm, name)

    def _count(self, recvbuf: np.ndarray) -> None:
        size = self.comm.Get_size()
        self.received += recvbuf.nbytes // size * (size - 1)

    def Allgather(self, sendbuf: np.ndarray, recvbuf: np.ndarray) -> None:  # noqa: N802
        self.comm.Allgather(sendbuf, recvbuf)
        self._count(recvbuf)

    def Alltoall(self, sendbuf: np.ndarray, recvbuf: np.ndarray) -> None:  # noqa: N802
        self.comm.Alltoall(sendbuf, recvbuf)
        self._count(recvbuf)


def worker(repeats: int) -> dict | None:
    """Time the three reductions on this job's ranks; rank 0 returns the figures."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    group = Group(comm)
    size = group.size
    buf = np.random.default_rng(group.rank).normal(size=N) * 1e-3
    old, new = group.gather_sum(buf), group.scatter_sum(buf)
    same = np.array([old.tobytes() == new.tobytes()], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, same, op=MPI.MIN)
    everyone_same = comm.allgather(new.tobytes()) == [new.tobytes()] * size
    counted = {}
    for name in ("old", "new"):
        counting = Group(Counting(comm))
        (counting.gather_sum if name == "old" else counting.scatter_sum)(buf)
        counted[name] = counting.comm.received
    run = {"old": group.gather_sum, "new": group.scatter_sum, "allreduce": group.allreduce_sum}
    seconds = np.zeros((len(METHODS), repeats))
    for i in range(repeats):
        for j in np.roll(np.arange(len(METHODS)), i):
            comm.Barrier()
            start = time.perf_counter()
            run[METHODS[j]](buf)
            seconds[j, i] = time.perf_counter() - start
    comm.Allreduce(MPI.IN_PLACE, seconds, op=MPI.MAX)
    if group.rank:
        return None
    chunk = -(-N // size)
    return {"P": size, "seconds": {m: seconds[j].tolist() for j, m in enumerate(METHODS)},
            "computed": {"old": (size - 1) * 8 * N, "new": 2 * (size - 1) * 8 * chunk},
            "counted": counted, "same_bits": bool(same[0]) and everyone_same}


def launch(P: int, repeats: int) -> dict:
    command = ["mpiexec", "-n", str(P), sys.executable, os.path.abspath(__file__),
               "--worker", "--repeats", str(repeats)]
    done = subprocess.run(command, env={**os.environ, **ONE_THREAD, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode:
        raise RuntimeError(f"P={P} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        result = worker(args.repeats)
        if result is not None:
            print(json.dumps(result))
        return
    load = os.getloadavg()[0]
    runs: dict[int, list[dict]] = {P: [] for P in args.sizes}
    for _ in range(args.rounds):
        for P in args.sizes:
            runs[P].append(launch(P, args.repeats))
    print(f"one reduction of N = {N:,} float64 (S = {8 * N / 1e6:.2f} MB), one BLAS thread per "
          f"process, {os.cpu_count()} cores; {args.rounds} rounds x {args.repeats} calls; "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"\n{'P':>2}{'method':>11}{'median ms':>11}{'p25':>8}{'p75':>8}"
          f"{'MB received':>13}{'counted':>10}{'same bits':>11}")
    for P, results in runs.items():
        for method in METHODS:
            times = np.concatenate([r["seconds"][method] for r in results]) * 1e3
            p25, median, p75 = np.percentile(times, [25, 50, 75])
            computed = results[0]["computed"].get(method)
            counted = results[0]["counted"].get(method)
            mb = "" if computed is None else f"{computed / 1e6:.3f}"
            ok = "" if counted is None else f"{counted / 1e6:.3f}"
            same = "" if method != "new" else str(all(r["same_bits"] for r in results))
            print(f"{P:>2}{method:>11}{median:>11.3f}{p25:>8.3f}{p75:>8.3f}{mb:>13}{ok:>10}"
                  f"{same:>11}")
        ratios = [statistics.median(r["seconds"]["new"]) / statistics.median(r["seconds"]["old"])
                  for r in results]
        print(f"{'':>2}{'new/old':>11}{statistics.median(ratios):>11.2f}  "
              f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
