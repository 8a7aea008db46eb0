"""numba or numpy backend? Seconds per epoch of both, by batch size and thread count.

The question behind it: at large batches an epoch is matrix products, so does
the compiled span (``np.dot`` inside Numba, SciPy's OpenBLAS) still beat the
NumPy backend (Python per iteration, NumPy's own OpenBLAS)? Run::

    python benchmarks/backend_crossover.py [--rounds 5]
    python benchmarks/backend_crossover.py --products   # only the BLAS calls


Workloads are ``compare.py``'s: W2 (60,000 x 784 float32, MLP 784-256-10, one
epoch) at batch 32, 128, 256, 1024 and W1 (digits, 64-128-10, float32, 10
epochs) at 32, 128 and full. Each (case, backend, threads) is run once per
round, the rounds interleaved, and the median is printed with the ratio
numpy / numba (above 1: numba is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare import Case, run_scratchgd, w1, w2, with_threads  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from scratchgd.kernels.compiled import jit  # noqa: E402


@jit
def _forward(a: np.ndarray, W: np.ndarray, out: np.ndarray) -> None:
    np.dot(a, W, out)


@jit
def _weight_grad(a: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:
    np.dot(a.T, delta, out)


@jit
def _weight_grad_copy(a: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:
    np.dot(np.ascontiguousarray(a.T), delta, out)


def median_ms(function, args: tuple, repeats: int) -> float:
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def products(batches: list[int]) -> None:
    rng = np.random.default_rng(0)
    W = rng.random((784, 256), dtype=np.float32)
    print("| rows | threads | a W numba | a W numpy | a.T delta numba | a.T delta numpy | "
          "copy of a.T, numba |")
    print("|---|---|---|---|---|---|---|")
    for n in batches:
        a, delta = rng.random((n, 784), dtype=np.float32), rng.random((n, 256), dtype=np.float32)
        out, gW = np.empty((n, 256), np.float32), np.empty_like(W)
        repeats = max(9, 4000 // n)
        for threads in (1, 2):
            with threadpool_limits(limits=threads):
                ms = [median_ms(_forward, (a, W, out), repeats),
                      median_ms(np.dot, (a, W, out), repeats),
                      median_ms(_weight_grad, (a, delta, gW), repeats),
                      median_ms(np.dot, (a.T, delta, gW), repeats),
                      median_ms(_weight_grad_copy, (a, delta, gW), repeats)]
            print(f"| {n} | {threads} | " + " | ".join(f"{m:.3f}" for m in ms) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--w2-batches", default="32,128,256,1024")
    parser.add_argument("--products", action="store_true", help="time only the BLAS calls")
    args = parser.parse_args()
    import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot: load it before limiting)

    if args.products:
        products([int(b) for b in args.w2_batches.split(",")])
        return

    big, small = w2(60000), w1()
    cases = [(big, Case("W2", np.float32, int(b), 1, 0.05))
             for b in args.w2_batches.split(",")]
    cases += [(small, Case("W1", np.float32, b, 10, 0.1)) for b in (32, 128, None)]
    runs = {"numba": run_scratchgd("numba"), "numpy": run_scratchgd("numpy")}
    for problem, case in cases:  # compile and warm up, not timed
        with_threads(1, runs["numba"], problem, case)
    times: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.rounds):
        for problem, case in cases:
            for threads in (1, 2):
                for backend, run in runs.items():
                    seconds = with_threads(threads, run, problem, case)[0] / case.epochs
                    times.setdefault((case.label, backend, threads), []).append(seconds)
    print(f"| case | threads | numba s/epoch | numpy s/epoch | numpy ÷ numba |  ({args.rounds} rounds)")
    print("|---|---|---|---|---|")
    for _, case in cases:
        for threads in (1, 2):
            nb, np_ = (statistics.median(times[(case.label, b, threads)]) for b in runs)
            print(f"| {case.label} | {threads} | {nb:.4f} | {np_:.4f} | {np_ / nb:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
