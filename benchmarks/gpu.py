"""One W2 epoch on a GPU: scratchgd's array-API backends against PyTorch's own loop.

Run from the repository root on a machine with a CUDA GPU, its own torch (and,
if wanted, CuPy) build and ``pip install array-api-compat`` (pure Python)::

    python benchmarks/gpu.py                   # --device cuda, W2 60,000 x 784, 3 rounds
    python benchmarks/gpu.py --device cpu --threads 1   # the dry run: the same code on the CPU

Workload: W2 of ``benchmarks/compare.py`` (synthetic 60,000 x 784 float32, 10
classes, MLP 784-256-10, plain SGD at lr 0.1, a fresh order every epoch) at
batch sizes 32, 128, 1024 and 4096. Runners, each from the same initial
weights:

* ``scratchgd-torch``: ``MLP(backend="torch", device=...)`` through
  ``scratchgd.fit`` (the data set moved to the device once, at the start);
* ``scratchgd-cupy``: ``backend="cupy"``, when CuPy is installed and the
  device is a GPU;
* ``torch-manual``: PyTorch's own loop of ``compare.py`` (``randperm``, slices,
  ``CrossEntropyLoss``, ``torch.optim.SGD``), with the data on the device.

Each run trains two epochs and times the second (the first pays for the
device's warm-up and, for scratchgd, the move of the data set), synchronising
the device before and after (``torch.cuda.synchronize``, CuPy's
``Device.synchronize``); scratchgd's epoch is ``History.epoch_seconds``, which
ends with the epoch's read of its loss sums, a synchronisation. The runners
are interleaved in rounds and each figure is the median over rounds. Needs no
scikit-learn and not the ``oracle`` extra's torch pin.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from compare import Problem, w2  # noqa: E402

import scratchgd as sg  # noqa: E402

LR = 0.1


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize(device)


def run_scratchgd(backend: str) -> Callable[[Problem, int, str], tuple[float, float]]:
    def run(problem: Problem, batch: int, device: str) -> tuple[float, float]:
        model = sg.MLP(problem.sizes, seed=0, dtype=np.float32, backend=backend, device=device)
        synchronize(device)
        history = sg.fit(model, problem.train, sg.MiniBatchSGD(LR, batch_size=batch), epochs=2,
                         progress=False, seed=0)
        synchronize(device)
        return history.epoch_seconds[-1], float(np.mean(model.predict(problem.test.X)
                                                        == problem.test.y))
    return run


def run_torch_manual(problem: Problem, batch: int, device: str) -> tuple[float, float]:
    """``compare.py``'s manual PyTorch loop, the data and the model on ``device``."""
    import torch

    torch.manual_seed(0)
    params = sg.MLP(problem.sizes, seed=0, dtype=np.float32).params
    layers = []
    for i in range(0, len(params), 2):
        linear = torch.nn.Linear(*params[i].shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[i].T.copy()))
            linear.bias.copy_(torch.from_numpy(params[i + 1]))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    X = torch.from_numpy(problem.train.X).to(device)
    y = torch.from_numpy(problem.train.y.astype(np.int64)).to(device)
    n = len(X)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    seconds = 0.0
    for _ in range(2):  # the second epoch is timed
        synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(device)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            optimizer.step()
        synchronize(device)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        z = model(torch.from_numpy(problem.test.X).to(device))
    return seconds, float((z.argmax(1).cpu().numpy() == problem.test.y).mean())


def runners(device: str) -> dict[str, Callable]:
    found = {"scratchgd-torch": run_scratchgd("torch"), "torch-manual": run_torch_manual}
    if device.startswith("cuda"):
        try:
            import cupy  # noqa: F401
            found["scratchgd-cupy"] = run_scratchgd("cupy")
        except ImportError:
            print("CuPy is not installed: scratchgd-cupy is skipped")
    return found


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(device)
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, ... or cpu (dry run)")
    parser.add_argument("--rows", type=int, default=60000, help="W2's training rows")
    parser.add_argument("--batches", default="32,128,1024,4096")
    parser.add_argument("--rounds", type=int, default=3, help="the median is over them")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads (default: torch's own; 1 for a dry run on a "
                        "shared machine)")
    args = parser.parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    problem = w2(args.rows)
    batches = [int(b) for b in args.batches.split(",")]
    found = runners(args.device)
    print(f"# scratchgd benchmarks/gpu.py {' '.join(sys.argv[1:])}")
    print(f"# {device_name(args.device)}; torch {torch.__version__}; numpy {np.__version__}; "
          f"{torch.get_num_threads()} torch threads; "
          f"load average before {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for batch in batches:
            for name, run in found.items():
                figures.setdefault((batch, name), []).append(run(problem, batch, args.device))
    print(f"# load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| batch | runner | ms/epoch (median) | runs | accuracy | ÷ torch-manual |")
    print("|---|---|---|---|---|---|")
    for batch in batches:
        reference = statistics.median(s for s, _ in figures[(batch, "torch-manual")])
        for name in found:
            seconds = statistics.median(s for s, _ in figures[(batch, name)])
            accuracy = figures[(batch, name)][-1][1]
            print(f"| {batch} | {name} | {seconds * 1e3:.1f} | {len(figures[(batch, name)])} | "
                  f"{accuracy:.4f} | {seconds / reference:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
