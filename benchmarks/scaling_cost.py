"""What input scaling costs: one epoch with and without ``model.scaling``, both backends.

W2-sized data: 60,000 x 784 float32 rows (uniform, labels from the first 10
columns), ``MLP([784, 128, 10])`` float32, ``MiniBatchSGD(0.05, batch_size=128)``.
For each backend, epochs with and without scaling are interleaved and repeated;
times are the process's CPU seconds (``time.process_time``, all threads), which
a machine shared with other jobs disturbs far less than wall time. The table
shows median seconds per epoch, the difference, and the one-off
statistics pass (``scratchgd.scaling.fit_scaling``) as a share of an epoch.
On a busy machine the epoch difference drowns in noise, so the gathering of
one epoch's batches is also timed alone, with and without scaling (numpy:
``MLP.inputs`` against the plain cast; numba: ``kernels.compiled.gather_batch``
with and without the statistics): the difference is what scaling adds.

A second table does the same for a regression, with the input scaling, the target
scaling, both and neither: the same rows, ``k = 10`` targets of mean 1e3 and
spread about 30 (``MLP([784, 128, 10], loss="mse")``). The targets are scaled once per run,
where ``fit`` plans it (``scratchgd.plan.training_targets``), so their cost is
timed directly too: the statistics pass (``sg.standardize_targets``) and the
scaled copy, both one-off, as a share of an epoch.

    python benchmarks/scaling_cost.py                   # 5 repeats
    python benchmarks/scaling_cost.py --blas-threads 1  # steadier on a shared machine
    python benchmarks/scaling_cost.py --rows 6000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scratchgd as sg  # noqa: E402
from scratchgd.kernels import compiled  # noqa: E402
from scratchgd.plan import training_targets  # noqa: E402
from scratchgd.scaling import fit_scaling  # noqa: E402


def epoch_seconds(data: sg.Dataset, backend: str, scaling: sg.Scaling | None,
                  batch_size: int) -> float:
    model = sg.MLP([data.n_features, 128, 10], dtype=np.float32, seed=0, backend=backend)
    model.scaling = scaling
    start = time.process_time()
    sg.fit(model, data, sg.MiniBatchSGD(0.05, batch_size=batch_size), epochs=1, progress=False)
    return time.process_time() - start


def gather_seconds(X: np.ndarray, backend: str, scaling: sg.Scaling | None,
                   batch_size: int) -> float:
    """Seconds to gather (and scale) every batch of one shuffled epoch, nothing else."""
    order = np.random.default_rng(1).permutation(len(X))
    model = sg.MLP([X.shape[1], 2], dtype=np.float32, backend=backend)
    model.scaling = scaling
    start = time.process_time()
    if backend == "numpy":
        for lo in range(0, len(X), batch_size):   # as engines/python.py gathers a batch
            model.inputs(X[order[lo:lo + batch_size]], fresh=True)
    else:
        mean = np.empty(0) if scaling is None else scaling.mean
        inv_std = np.empty(0) if scaling is None else 1.0 / scaling.std
        labels, targets = np.zeros(len(X), np.int64), np.empty((0, 1), np.float32)
        x = np.empty((batch_size, X.shape[1]), np.float32)
        y, t = np.empty(batch_size, np.int64), np.empty((0, 1), np.float32)
        values = np.empty(X.shape[1])
        for lo in range(0, len(X), batch_size):
            n = min(batch_size, len(X) - lo)
            compiled.gather_batch(X, None, labels, targets, order, lo, n,
                                  compiled.CROSS_ENTROPY, mean, inv_std, x, y, t, values)
    return time.process_time() - start


def regression_seconds(data: sg.Dataset, backend: str, inputs: bool, targets: bool,
                       batch_size: int) -> tuple[float, float]:
    """CPU seconds of one regression epoch with the input and/or target scaling or neither;
    and (``targets``) of the one-off target statistics pass and scaled copy alone."""
    model = sg.MLP([data.n_features, 128, data.y.shape[1]], loss="mse", dtype=np.float32,
                   seed=0, backend=backend)
    one_off = 0.0
    if inputs:
        sg.standardize(model, data)
    if targets:
        start = time.process_time()
        sg.standardize_targets(model, data)
        training_targets(model, data)           # the copy fit makes once, as it plans the run
        one_off = time.process_time() - start
    start = time.process_time()   # a rate this small never diverges on the raw targets
    sg.fit(model, data, sg.MiniBatchSGD(1e-8, batch_size=batch_size), epochs=1, progress=False)
    return time.process_time() - start, one_off


def regression_table(X: np.ndarray, args: argparse.Namespace) -> None:
    """The regression table: no scaling, inputs, targets, both; per backend.

    The four arms run in turn, each repeat starting one arm later, so no arm is
    always the one that runs after a given other.
    """
    data = sg.Dataset(X, 1000.0 + 100.0 * X[:, :10])
    print(f"\nregression: the same rows, 10 targets of mean ~1050 and spread ~29, "
          f"MLP([784, 128, 10], loss='mse') float32; CPU seconds, medians of {args.repeats} "
          f"interleaved runs\n")
    print("| backend | epoch s, no scaling | inputs scaled | targets scaled | both "
          "(difference to none) | targets' statistics and scaled copy s, once per run "
          "(share of an epoch) |")
    print("|---|---|---|---|---|---|")
    arms = ((False, False), (True, False), (False, True), (True, True))
    for backend in ("numpy", "numba"):
        regression_seconds(data, backend, True, True, args.batch_size)   # warm
        epochs: list[list[float]] = [[] for _ in arms]
        once = []
        for repeat in range(args.repeats):
            for arm in np.roll(np.arange(len(arms)), repeat):   # each arm in each place in turn
                inputs, targets = arms[arm]
                epoch, one_off = regression_seconds(data, backend, inputs, targets,
                                                    args.batch_size)
                epochs[arm].append(epoch)
                if inputs and targets:
                    once.append(one_off)
        none, only_inputs, only_targets, both = (statistics.median(t) for t in epochs)
        c = statistics.median(once)
        print(f"| {backend} | {none:.3f} | {only_inputs:.3f} | {only_targets:.3f} | {both:.3f} "
              f"({both - none:+.3f} s, {(both - none) / none:+.1%}) | {c:.4f} ({c / none:.2%}) |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS (and OpenMP) to this many threads: 1 keeps a busy "
                        "machine's spinning threads out of the CPU seconds")
    args = parser.parse_args()
    with threadpool_limits(args.blas_threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    """Both tables."""
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, 784), dtype=np.float32)
    data = sg.Dataset(X, X[:, :10].argmax(axis=1))
    start = time.process_time()
    scaling = fit_scaling(X)
    stats_s = time.process_time() - start
    print(f"one epoch, {args.rows:,} x 784 float32, MLP([784, 128, 10]) float32, "
          f"MiniBatchSGD(batch_size={args.batch_size}); CPU seconds, medians of {args.repeats} "
          f"interleaved runs\n")
    print("| backend | epoch s, no scaling | epoch s, scaling | epoch difference | "
          "gathering alone s, no scaling / scaling (added, share of an epoch) | "
          "statistics pass s (share of an epoch) |")
    print("|---|---|---|---|---|---|")
    for backend in ("numpy", "numba"):
        epoch_seconds(data, backend, scaling, args.batch_size)   # warm: compile, page in
        gather_seconds(X, backend, scaling, args.batch_size)
        plain, scaled, g_plain, g_scaled = [], [], [], []
        for _ in range(args.repeats):
            plain.append(epoch_seconds(data, backend, None, args.batch_size))
            scaled.append(epoch_seconds(data, backend, scaling, args.batch_size))
            g_plain.append(gather_seconds(X, backend, None, args.batch_size))
            g_scaled.append(gather_seconds(X, backend, scaling, args.batch_size))
        a, b = statistics.median(plain), statistics.median(scaled)
        ga, gb = statistics.median(g_plain), statistics.median(g_scaled)
        print(f"| {backend} | {a:.3f} | {b:.3f} | {b - a:+.3f} s ({(b - a) / a:+.1%}) "
              f"| {ga:.3f} / {gb:.3f} ({gb - ga:+.3f} s, {(gb - ga) / a:+.1%}) "
              f"| {stats_s:.3f} ({stats_s / a:.1%}) |", flush=True)
    regression_table(X, args)


if __name__ == "__main__":
    main()
