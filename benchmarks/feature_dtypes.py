"""What a feature dtype costs the numba backend: one epoch from X of each dtype.

20,000 x 784 features drawn as integers 0..255 (pixels), stored as float32
(read as they are), uint8 (as they are), int16, int64 and float16 (the latter
scaled to [0, 1]; decoded from their bytes as each batch is gathered, see
``scratchgd.kernels.compiled.gather``); ``MLP([784, 64, 10])`` float32,
``MiniBatchSGD(0.01, batch_size)``. Each dtype's first epoch compiles (or loads)
the kernels and is left out; the table shows the median CPU seconds
(``time.process_time``) of the others.

    python benchmarks/feature_dtypes.py                     # batch 32, 5 epochs per dtype
    python benchmarks/feature_dtypes.py --batch-size 1 --repeats 3
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

DTYPES = ("float32", "uint8", "int16", "int64", "float16")


def epoch_seconds(data: sg.Dataset, batch_size: int) -> float:
    """CPU seconds of one epoch of a fresh model on ``data``."""
    model = sg.MLP([data.n_features, 64, 10], dtype=np.float32, seed=0, backend="numba")
    start = time.process_time()
    sg.fit(model, data, sg.MiniBatchSGD(0.01, batch_size=batch_size), epochs=1, progress=False)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pixels = np.random.default_rng(0).integers(0, 256, size=(args.rows, 784))
    y = np.arange(args.rows) % 10
    print(f"one epoch, {args.rows:,} x 784, MLP([784, 64, 10]) float32, numba, "
          f"batch {args.batch_size}, median of {args.repeats} (CPU s)\n")
    print("| X dtype | epoch s | vs float32 |\n|---|---|---|")
    first = None
    for name in DTYPES:
        X = (pixels / 255).astype(np.float16) if name == "float16" else pixels.astype(name)
        data = sg.Dataset(X, y)
        epoch_seconds(data, args.batch_size)  # compiles or loads the kernels
        seconds = statistics.median(epoch_seconds(data, args.batch_size)
                                    for _ in range(args.repeats))
        first = first or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / first:.2f}x |")


if __name__ == "__main__":
    main()
