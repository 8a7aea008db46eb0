"""What checkpoints cost: file size, seconds per write, and a run's slow-down.

Digits, MLP 64-128-10, MiniBatchSGD(lr=0.1, batch 32, momentum 0.9), 5 epochs
(225 steps); runners interleaved in rounds, medians reported.

    python benchmarks/checkpoint_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import scratchgd as sg
from scratchgd import checkpoint as ck


def run(train: sg.Dataset, path: str | None, every: int | str) -> float:
    model = sg.MLP([64, 128, 10], seed=0)
    opt = sg.MiniBatchSGD(lr=0.1, batch_size=32, momentum=0.9)
    start = time.perf_counter()
    sg.fit(model, train, opt, epochs=5, progress=False, checkpoint=path, checkpoint_every=every)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    train, _ = sg.datasets.digits()
    runners = {"no checkpoint": None, "every epoch": "epoch", "every 10 steps": 10,
               "every step": 1}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run.npz")
        for _ in range(args.rounds):
            for name, every in runners.items():
                seconds[name].append(run(train, None if every is None else path,
                                         every or "epoch"))
        size = os.path.getsize(path)
        saved = ck.load(path)
        writes, reads = [], []
        for _ in range(20):
            start = time.perf_counter()
            ck.write_npz_atomic(path, ck.read_npz(path))
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            ck.load(path)
            reads.append(time.perf_counter() - start)
    base = statistics.median(seconds["no checkpoint"])
    print(f"checkpoint file: {size / 1024:.1f} KiB ({sum(p.size for p in saved.params)} weights "
          f"+ momentum + {len(saved.history['iteration_loss'])} iteration losses)")
    print(f"atomic write (with fsync): median {1e3 * statistics.median(writes):.2f} ms; "
          f"load + validate: median {1e3 * statistics.median(reads):.2f} ms")
    print(f"{'run (5 epochs, 225 steps)':<28}{'median s':>10}{'vs none':>10}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:<28}{median:>10.3f}{median / base:>10.2f}x")


if __name__ == "__main__":
    main()
