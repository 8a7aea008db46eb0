"""What measuring the gradient noise costs (numpy backend, digits, MLP 64-128-10).

* ``fit(track_noise=True)`` against ``fit()``: one epoch of MiniBatchSGD(lr=0.1,
  batch 32) each (target: at most 1.3x);
* ``gradient_noise(rows=None)`` on the 1,437 training rows against one
  full-batch ``loss_and_grads`` (target: at most 3x).

Runners are interleaved in rounds and the medians reported; the ratio of
medians is what the targets are about.

    python benchmarks/noise_cost.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import scratchgd as sg


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    train, _ = sg.datasets.digits()
    model = sg.MLP([64, 128, 10], seed=0)

    def epoch(track: bool) -> None:
        sg.fit(model.copy(), train, sg.MiniBatchSGD(0.1, batch_size=32), epochs=1,
               progress=False, track_noise=track)

    y = model.check_y(train.y, len(train))
    runners = {
        "epoch": lambda: epoch(False),
        "epoch, track_noise": lambda: epoch(True),
        "loss_and_grads, full batch": lambda: model.loss_and_grads(train.X, train.y),
        "loss_and_grads kernel (no input checks)": lambda: model.kernels.loss_and_grads(
            model.params, train.X, y, model.activation, model.loss),
        "gradient_noise, rows=None": lambda: sg.gradient_noise(model, train),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm up
        run()
    for _ in range(args.rounds):
        for name, run in runners.items():
            times[name].append(seconds(run))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; "
          f"medians of {args.rounds} rounds")
    for name, value in median.items():
        print(f"{name}: {value * 1e3:.2f} ms")
    print(f"track_noise / plain epoch: {median['epoch, track_noise'] / median['epoch']:.2f}x "
          f"(target <= 1.3x)")
    noise = median["gradient_noise, rows=None"]
    print(f"gradient_noise / loss_and_grads: {noise / median['loss_and_grads, full batch']:.2f}x "
          f"(target <= 3x); / the bare kernel: "
          f"{noise / median['loss_and_grads kernel (no input checks)']:.2f}x")


if __name__ == "__main__":
    main()
