"""Loops or BLAS? Time one epoch of the numba training kernel both ways, by batch size.

``scratchgd.kernels.compiled.BLAS_MIN_ROWS`` is the batch size from which
``fit`` multiplies through BLAS (``np.dot``) instead of the compiled loops;
this script measures where the crossing lies on this machine::

    python benchmarks/blas_threshold.py [--rounds 5]

For each layer shape (digits 64-128-10 and 784-256-10 on 8,192 synthetic
rows), dtype and batch size it runs one epoch with the loops and one with
BLAS, interleaved, ``--rounds`` times, and prints the median milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits  # noqa: E402 (sorted below)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import scratchgd as sg  # noqa: E402
from scratchgd.kernels import compiled  # noqa: E402


def epoch_ms(model: sg.MLP, data: sg.Dataset, batch_size: int, blas: bool) -> float:
    loader = sg.DataLoader(data, batch_size=batch_size, seed=0)
    y = model.check_y(data.y, len(data))
    order = loader.epoch_order()
    bounds = loader.batch_bounds(order)
    start = time.perf_counter()
    compiled.train_iterations(model.params, None, data.X, y, order, bounds, 0, len(loader), 1, 0.01, 0.0,
                      model.activation, model.loss, blas=blas)
    return 1e3 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (threadpoolctl)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    digits, _ = sg.datasets.digits()
    wide = sg.Dataset(rng.random((8192, 784), dtype=np.float32), rng.integers(0, 10, 8192))
    print(f"current BLAS_MIN_ROWS = {compiled.BLAS_MIN_ROWS}")
    print(f"{'layers':<12} {'dtype':<8} {'batch':>5} {'loops ms':>9} {'BLAS ms':>9} winner")
    import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot: load it before limiting)

    with threadpool_limits(limits=args.threads):
        sweep(args.rounds, (([64, 128, 10], digits), ([784, 256, 10], wide)))


def sweep(rounds: int, problems: tuple) -> None:
    for sizes, data in problems:
        for dtype in (np.float32, np.float64):
            X = np.ascontiguousarray(data.X, dtype=dtype)
            data_t = sg.Dataset(X, data.y)
            model = sg.MLP(sizes, seed=0, dtype=dtype, backend="numba")
            for batch_size in (1, 2, 4, 8, 16, 32, 64, 128):
                times = {False: [], True: []}
                for _ in range(rounds + 1):  # the first round compiles and warms up
                    for blas in (False, True):
                        times[blas].append(epoch_ms(model, data_t, batch_size, blas))
                loops, blas_ms = (statistics.median(times[b][1:]) for b in (False, True))
                name = "-".join(map(str, sizes))
                print(f"{name:<12} {np.dtype(dtype).name:<8} {batch_size:>5} {loops:>9.2f} "
                      f"{blas_ms:>9.2f} {'loops' if loops < blas_ms else 'BLAS'}", flush=True)


if __name__ == "__main__":
    main()
