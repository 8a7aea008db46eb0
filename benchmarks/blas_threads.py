"""One BLAS thread or all of them? Time the numba training kernel both ways, by batch size.

``scratchgd.kernels.compiled.BLAS_THREADED_MIN_WORK`` is the size (``m n k`` of a
batch's largest matrix product) below which ``fit`` runs BLAS on one thread; this
script measures where the threads start to pay on this machine::

    python benchmarks/blas_threads.py [--rounds 7] [--steps 30] [--busy]

``--busy`` keeps one core busy with a spinning process while it measures, as another
program (or another user of a shared machine) would. For digits 64-128-10 (W1) and
784-256-10 on synthetic data (W2), float32, and each batch size, it trains one epoch
of ``--steps`` steps with BLAS on one thread, on all threads, and as ``fit`` chooses,
interleaved, ``--rounds`` times, and prints the median throughput in samples per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import scratchgd as sg  # noqa: E402
from scratchgd.kernels import compiled  # noqa: E402
from scratchgd.kernels.compiled import base  # noqa: E402

THREADS = {"1 thread": 2**62, "all threads": 0, "fit's choice": compiled.BLAS_THREADED_MIN_WORK}
"""Each way of running, as the value of BLAS_THREADED_MIN_WORK that gives it."""


def epoch_seconds(sizes: list[int], dtype: type, data: sg.Dataset, batch: int) -> float:
    """Seconds of one epoch of ``fit``'s compiled kernel at batch size ``batch``."""
    model = sg.MLP(sizes, seed=0, dtype=dtype, backend="numba")
    y = model.check_y(data.y, len(data))
    bounds = np.arange(0, len(data) + 1, batch)
    order = np.random.default_rng(0).permutation(len(data))
    start = time.perf_counter()
    compiled.train_iterations(model.params, None, data.X, y, order, bounds, 0, len(bounds) - 1, 1,
                      0.01, 0.0, "relu", "cross_entropy")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed epoch")
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--workload", choices=("W1", "W2", "both"), default="both")
    args = parser.parse_args()
    spinner = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy
               else None)
    try:
        measure(args)
    finally:
        if spinner is not None:
            spinner.kill()


def measure(args: argparse.Namespace) -> None:
    """Print the table (see the module's docstring)."""
    rng = np.random.default_rng(0)
    digits, _ = sg.datasets.digits(test_size=0.2, seed=0)
    workloads = {
        "W1 64-128-10": ([64, 128, 10], digits, [16, 32, 48, 64, 96, 128, 256, 512]),
        "W2 784-256-10": ([784, 256, 10], sg.Dataset(rng.random((60_000, 784), np.float32),
                                                     rng.integers(0, 10, 60_000)),
                          [8, 16, 32, 64, 128, 1024]),
    }
    print(f"median of {args.rounds} interleaved rounds, float32, {args.steps} steps per epoch; "
          f"fit's choice: 1 thread below m*n*k = {compiled.BLAS_THREADED_MIN_WORK:,}"
          f"{'; one core kept busy' if args.busy else ''}")
    print(f"{'workload':<14} {'batch':>5} {'m*n*k':>11}  " +
          "  ".join(f"{name + ' (M/s)':>18}" for name in THREADS) + "  all/1")
    for name, (sizes, data, batches) in workloads.items():
        if args.workload not in ("both", name[:2]):
            continue
        for batch in batches:
            rows = np.arange(batch * args.steps) % len(data)
            part = sg.Dataset(data.X[rows], data.y[rows])
            epoch_seconds(sizes, np.float32, part, batch)  # compile, warm the caches
            times: dict[str, list[float]] = {way: [] for way in THREADS}
            for _ in range(args.rounds):
                for way, min_work in THREADS.items():
                    base.BLAS_THREADED_MIN_WORK = min_work  # read by blas_threads_for
                    times[way].append(epoch_seconds(sizes, np.float32, part, batch))
            base.BLAS_THREADED_MIN_WORK = THREADS["fit's choice"]
            rate = {way: len(part) / statistics.median(t) / 1e6 for way, t in times.items()}
            work = batch * max(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
            print(f"{name:<14} {batch:>5} {work:>11,}  " +
                  "  ".join(f"{rate[way]:>18.3f}" for way in THREADS) +
                  f"  {rate['all threads'] / rate['1 thread']:5.2f}", flush=True)


if __name__ == "__main__":
    main()
