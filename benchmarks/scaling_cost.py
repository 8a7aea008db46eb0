"""What input scaling costs: one epoch with and without ``model.scaling``, both backends.

W2-sized data: 60,000 x 784 float32 rows (uniform, labels from the first 10
columns), ``MLP([784, 128, 10])`` float32, ``MiniBatchSGD(0.05, batch_size=128)``.
For each backend, epochs with and without scaling are interleaved and repeated;
the table shows median seconds per epoch, the difference, and the one-off
statistics pass (``scratchgd.scaling.fit_scaling``) as a share of an epoch.

    python benchmarks/scaling_cost.py                   # 5 repeats
    python benchmarks/scaling_cost.py --rows 6000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scratchgd as sg  # noqa: E402
from scratchgd.scaling import fit_scaling  # noqa: E402


def epoch_seconds(data: sg.Dataset, backend: str, scaling: sg.Scaling | None,
                  batch_size: int) -> float:
    model = sg.MLP([data.n_features, 128, 10], dtype=np.float32, seed=0, backend=backend)
    model.scaling = scaling
    history = sg.fit(model, data, sg.MiniBatchSGD(0.05, batch_size=batch_size), epochs=1,
                     progress=False)
    return history.epoch_seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, 784), dtype=np.float32)
    data = sg.Dataset(X, X[:, :10].argmax(axis=1))
    start = time.perf_counter()
    scaling = fit_scaling(X)
    stats_s = time.perf_counter() - start
    print(f"one epoch, {args.rows:,} x 784 float32, MLP([784, 128, 10]) float32, "
          f"MiniBatchSGD(batch_size={args.batch_size}); medians of {args.repeats} interleaved "
          f"runs\n")
    print("| backend | epoch s, no scaling | epoch s, scaling | scaling costs | "
          "statistics pass s (share of an epoch) |")
    print("|---|---|---|---|---|")
    for backend in ("numpy", "numba"):
        epoch_seconds(data, backend, scaling, args.batch_size)   # warm: compile, page in
        plain, scaled = [], []
        for _ in range(args.repeats):
            plain.append(epoch_seconds(data, backend, None, args.batch_size))
            scaled.append(epoch_seconds(data, backend, scaling, args.batch_size))
        a, b = statistics.median(plain), statistics.median(scaled)
        print(f"| {backend} | {a:.3f} | {b:.3f} | {b - a:+.3f} s ({(b - a) / a:+.1%}) "
              f"| {stats_s:.3f} ({stats_s / a:.1%}) |", flush=True)


if __name__ == "__main__":
    main()
