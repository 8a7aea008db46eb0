"""Where a large-batch epoch of the numba backend goes, against the matrix-multiply floor.

W2 (60,000 x 784 float32, MLP 784-256-10) at batch 1024 by default. Every part of a
training step is timed on its own with the compiled kernels ``train_iterations_kernel`` calls
(gather, each layer's forward and backward, the loss, the step), next to each matrix
product alone at the same shapes (``np.dot`` into a C-contiguous output, the fastest
of NumPy's BLAS and the one numba calls, at 1 thread and at all threads). The floor is
an epoch's matrix products at those rates; the whole epoch is timed with ``train_iterations``.
Parts and products: the best of 5 calls (a busy machine only ever slows a call down);
everything: the median of ``--rounds`` interleaved rounds::

    python benchmarks/large_batch_profile.py [--batch 1024] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numba
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scratchgd.kernels import compiled  # noqa: E402
from scratchgd.kernels.compiled import base  # noqa: E402

SIZES = [784, 256, 10]


@numba.njit
def numba_dot(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a b`` by ``np.dot`` compiled: the BLAS the kernels call (SciPy's)."""
    np.dot(a, b, out)


def step_products(sizes: list[int], rows: int) -> list[tuple[str, int, int, int]]:
    """The matrix products of one training step: ``(name, m, k, n)`` for ``(m, k) @ (k, n)``.

    Per layer ``l`` (``fan_in -> fan_out``): forward ``a W``, weight gradient
    ``a^T delta`` and, above the first layer, input gradient ``delta W^T``.
    """
    out = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), 1):
        out.append((f"forward a{layer - 1} W{layer}", rows, fan_in, fan_out))
        out.append((f"weight gradient a{layer - 1}^T d{layer}", fan_in, rows, fan_out))
        if layer > 1:
            out.append((f"input gradient d{layer} W{layer}^T", rows, fan_out, fan_in))
    return out


def gemm_seconds(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Best seconds of a float32 ``(m, k) @ (k, n)``: either BLAS, 1 thread or all."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    base._blas()  # SciPy's BLAS loaded, so that the thread limit reaches it
    best = float("inf")
    for threads in (1, None):
        with threadpool_limits(threads, "blas"):
            for dot in (np.dot, numba_dot):
                best = min(best, timed(lambda dot=dot: dot(a, b, out), repeats))
    return best


def floor_seconds(sizes: list[int], rows: int, n: int) -> float:
    """Seconds of the matrix products of an epoch of ``n`` rows, at the GEMM rates of batch ``rows``."""
    return n / rows * sum(gemm_seconds(m, k, nn) for _, m, k, nn in step_products(sizes, rows))


def timed(fn: Callable[[], object], repeats: int = 5) -> float:
    """Best seconds of ``fn()`` over ``repeats`` calls (after one untimed call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    b, n = args.batch, args.rows
    rng = np.random.default_rng(0)
    X = rng.random((n, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], n)
    params = [p for fi, fo in zip(SIZES[:-1], SIZES[1:], strict=True)
              for p in (rng.standard_normal((fi, fo), dtype=np.float32) * 0.05,
                        np.zeros(fo, np.float32))]
    W1, b1, W2, b2 = params
    order = rng.permutation(n)
    a0 = X[order[:b]].copy()
    a1, z2 = np.empty((b, 256), np.float32), np.empty((b, 10), np.float32)
    d2, d1 = np.empty_like(z2), np.empty_like(a1)
    gW1, gb1, gW2, gb2 = (np.empty_like(p) for p in params)
    none = np.empty((0, SIZES[0]), np.float32)
    x_in, _, labels, _ = compiled.span_input(X, y, "cross_entropy", np.dtype(np.float32))
    RELU, LINEAR = compiled.RELU, compiled.LINEAR

    def gather() -> None:
        np.take(X, order[:b], axis=0, out=a0)

    def epoch() -> None:
        model = [p.copy() for p in params]
        bounds = np.append(np.arange(0, n, b), n)
        compiled.train_iterations(model, None, X, y, order, bounds, 0, len(bounds) - 1, 1, 0.01, 0.0,
                          "relu", "cross_entropy")

    parts = {
        "gather (NumPy take, for scale)": gather,
        "forward 1: a0 W1 + b1, relu": lambda: compiled.dense_forward(a0, W1, b1, RELU, a1, True),
        "forward 2: a1 W2 + b2": lambda: compiled.dense_forward(a1, W2, b2, LINEAR, z2, True),
        "loss: softmax cross-entropy": lambda: compiled.cross_entropy(z2, labels[:b], d2),
        "backward 2: a1^T d2, d2 W2^T, relu'": lambda: compiled.dense_backward(
            a1, d2, W2, RELU, gW2, gb2, d1, True, False),
        "backward 1: a0^T d1": lambda: compiled.dense_backward(
            a0, d1, W1, RELU, gW1, gb1, none, True, False),
    }
    products = step_products(SIZES, b)
    threads = compiled.blas_threads_for(b * max(W.size for W in params[0::2]))
    results: dict[str, list[float]] = {name: [] for name in [*parts, *(p[0] for p in products)]}
    results["epoch (train_iterations)"], results["floor"] = [], []
    epoch()
    del x_in
    for _ in range(args.rounds):
        with threadpool_limits(threads, "blas"):
            for name, fn in parts.items():
                results[name].append(timed(fn))
        for name, m, k, nn in products:
            results[name].append(gemm_seconds(m, k, nn))
        results["epoch (train_iterations)"].append(timed(epoch, repeats=1))
        results["floor"].append(floor_seconds(SIZES, b, n))
    med = {name: statistics.median(v) for name, v in results.items()}
    steps = n / b
    print(f"W2 {SIZES} float32, batch {b}, {n:,} rows ({steps:.1f} steps); medians of "
          f"{args.rounds} rounds; BLAS threads in the kernels: {threads or 'all'}")
    print(f"{'part of a step (compiled kernel)':<40} {'ms/step':>8} {'s/epoch':>8}")
    for name in parts:
        print(f"{name:<40} {med[name] * 1e3:8.3f} {med[name] * steps:8.3f}")
    print(f"{'matrix product alone (NumPy BLAS)':<40} {'ms/step':>8} {'s/epoch':>8} {'GFLOP/s':>8}")
    for name, m, k, nn in products:
        print(f"{name + f' ({m}x{k} @ {k}x{nn})':<40} {med[name] * 1e3:8.3f} "
              f"{med[name] * steps:8.3f} {2 * m * k * nn / med[name] / 1e9:8.1f}")
    whole = med["epoch (train_iterations)"]
    print(f"floor (the products above): {med['floor']:.3f} s per epoch; train_iterations: "
          f"{whole:.3f} s per epoch (best round {min(results['epoch (train_iterations)']):.3f}) = "
          f"{med['floor'] / whole:.0%} of the floor's speed")


if __name__ == "__main__":
    main()
