"""Side by side: seconds per epoch of scratchgd, PyTorch, scikit-learn and a naive NumPy loop.

Run from the repository root (needs ``pip install -e .[oracle]`` for PyTorch
and scikit-learn; a missing one is skipped)::

    python benchmarks/compare.py            # the full run (about 10-20 minutes here)
    python benchmarks/compare.py --quick    # a reduced run, under a minute

Workloads, all trained from the same initial weights with plain SGD (momentum
0, no weight decay, reshuffled every epoch) at the same learning rate:

* **W1** digits (1,437 training rows), MLP 64-128-10, batch sizes 1, 8, 32,
  128 and full, float32 and float64, 10 epochs;
* **W2** synthetic 60,000 x 784 float32, 10 classes, MLP 784-256-10, batch
  sizes 32, 128 and 1024, one epoch.

Runners: scratchgd (``backend="numba"`` and ``"numpy"``), PyTorch (a manual
``randperm``-slicing loop and the idiomatic ``DataLoader`` loop),
scikit-learn's ``MLPClassifier`` (solver sgd, ``partial_fit`` once per
epoch) and a naive per-sample NumPy loop (the textbook baseline; W1 only).
Every runner is timed at 1 thread and at all cores (``torch.set_num_threads``,
``threadpoolctl`` for BLAS) and the faster counts.

Method: the runners are interleaved in rounds (every runner once per round)
and each figure is the median over rounds. Before and after every run a small
1-thread and 2-thread matrix product is timed; a run during which either
probe took more than ``--slow-factor`` times its best time so far was taken in
the machine's slow state: it is dropped and rerun (up to ``--max-extra-rounds``
extra rounds) and the number dropped is printed.

The table gives seconds per epoch, microseconds per training step, test
accuracy after the run's epochs, and each peer's time divided by scratchgd
numba's (above 1: scratchgd is faster). Below it: the matrix-multiply ceiling
(NumPy float32 GFLOP/s at 2048^3 and at the layer shapes) and W2's floor, the
FLOPs of the matrix products an epoch needs divided by that ceiling.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits  # comes with scikit-learn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import scratchgd as sg  # noqa: E402

CORES = os.cpu_count() or 1
PEERS = ("torch-manual", "torch-dataloader", "sklearn")


@dataclasses.dataclass(frozen=True)
class Case:
    """One cell of the table's rows: a workload at one dtype and batch size."""

    workload: str
    dtype: type
    batch_size: int | None
    epochs: int
    lr: float

    @property
    def label(self) -> str:
        batch = "full" if self.batch_size is None else str(self.batch_size)
        return f"{self.workload} {np.dtype(self.dtype).name} b={batch}"


@dataclasses.dataclass
class Problem:
    """Data and initial weights shared by every runner of a workload."""

    sizes: list[int]
    train: sg.Dataset
    test: sg.Dataset


# --- data --------------------------------------------------------------------------------------

def w1() -> Problem:
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    return Problem([64, 128, 10], train, test)


def w2(rows: int) -> Problem:
    """Synthetic ``rows x 784`` float32 data: 10 class prototypes under heavy noise."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((10, 784), dtype=np.float32)

    def draw(n: int) -> sg.Dataset:
        y = rng.integers(0, 10, n)
        X = 0.15 * prototypes[y] + 0.85 * rng.random((n, 784), dtype=np.float32)
        return sg.Dataset(X.astype(np.float32), y)
    return Problem([784, 256, 10], draw(rows), draw(max(rows // 6, 100)))


def cast(data: sg.Dataset, dtype: type) -> sg.Dataset:
    return sg.Dataset(np.ascontiguousarray(data.X, dtype=dtype), data.y)


def initial_params(problem: Problem, dtype: type) -> list[np.ndarray]:
    return sg.MLP(problem.sizes, seed=0, dtype=dtype).params


# --- runners: each trains from the initial weights, returns (seconds, steps, accuracy) ---------

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
"""What every runner is timed by (``--clock``): the wall clock, or the process's CPU time,
steadier on a busy machine (waiting for a core is not counted; with more than one thread
every thread's time adds up, so use it with ``--threads 1``)."""


def run_scratchgd(backend: str) -> Callable:
    def run(problem: Problem, case: Case) -> tuple[float, int, float]:
        model = sg.MLP(problem.sizes, seed=0, dtype=case.dtype, backend=backend)
        train = cast(problem.train, case.dtype)
        optimizer = (sg.GD(case.lr) if case.batch_size is None
                     else sg.MiniBatchSGD(case.lr, batch_size=case.batch_size))
        start = clock()
        history = sg.fit(model, train, optimizer, epochs=case.epochs, progress=False, seed=0)
        seconds = clock() - start
        accuracy = float(np.mean(model.predict(problem.test.X) == problem.test.y))
        return seconds, history.steps, accuracy
    return run


def run_naive(problem: Problem, case: Case) -> tuple[float, int, float]:
    """The textbook loop: every sample of a batch forward and backward on its own."""
    W1, b1, W2, b2 = (p.copy() for p in initial_params(problem, case.dtype))
    X = np.ascontiguousarray(problem.train.X, dtype=case.dtype)
    y = problem.train.y
    n = len(X)
    b = n if case.batch_size is None else case.batch_size
    rng = np.random.default_rng(0)
    steps = 0
    start = clock()
    for _ in range(case.epochs):
        order = rng.permutation(n)
        for first in range(0, n, b):
            batch = order[first:first + b]
            gW1, gb1 = np.zeros_like(W1), np.zeros_like(b1)
            gW2, gb2 = np.zeros_like(W2), np.zeros_like(b2)
            for i in batch:
                x = X[i]
                h = np.maximum(x @ W1 + b1, 0)
                z = h @ W2 + b2
                p = np.exp(z - z.max())
                p /= p.sum()
                p[y[i]] -= 1
                gW2 += np.outer(h, p)
                gb2 += p
                dh = (W2 @ p) * (h > 0)
                gW1 += np.outer(x, dh)
                gb1 += dh
            scale = case.lr / len(batch)
            W1 -= scale * gW1
            b1 -= scale * gb1
            W2 -= scale * gW2
            b2 -= scale * gb2
            steps += 1
    seconds = clock() - start
    z = np.maximum(problem.test.X @ W1 + b1, 0) @ W2 + b2
    return seconds, steps, float(np.mean(z.argmax(axis=1) == problem.test.y))


def torch_model(problem: Problem, dtype: type):
    import torch

    params = initial_params(problem, dtype)
    layers = []
    for i in range(0, len(params), 2):
        linear = torch.nn.Linear(*params[i].shape).to(getattr(torch, np.dtype(dtype).name))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[i].T.copy()))
            linear.bias.copy_(torch.from_numpy(params[i + 1]))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def run_torch(style: str) -> Callable:
    def run(problem: Problem, case: Case) -> tuple[float, int, float]:
        import torch

        torch.manual_seed(0)
        model = torch_model(problem, case.dtype)
        X = torch.from_numpy(np.ascontiguousarray(problem.train.X, dtype=case.dtype))
        y = torch.from_numpy(problem.train.y.astype(np.int64))
        n = len(X)
        b = n if case.batch_size is None else case.batch_size
        optimizer = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.0)
        loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(0)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=b,
                                             shuffle=True, generator=generator)
        steps = 0
        start = clock()
        for _ in range(case.epochs):
            if style == "manual":
                order = torch.randperm(n, generator=generator)
                batches = ((X[idx], y[idx]) for idx in (order[i:i + b] for i in range(0, n, b)))
            else:
                batches = loader
            for xb, yb in batches:
                optimizer.zero_grad()
                loss_fn(model(xb), yb).backward()
                optimizer.step()
                steps += 1
        seconds = clock() - start
        with torch.no_grad():
            z = model(torch.from_numpy(np.ascontiguousarray(problem.test.X, dtype=case.dtype)))
        return seconds, steps, float((z.argmax(1).numpy() == problem.test.y).mean())
    return run


def run_sklearn(problem: Problem, case: Case) -> tuple[float, int, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X = np.ascontiguousarray(problem.train.X, dtype=case.dtype)
    y = problem.train.y
    n = len(X)
    clf = MLPClassifier(hidden_layer_sizes=tuple(problem.sizes[1:-1]), activation="relu",
                        solver="sgd", momentum=0.0, nesterovs_momentum=False, alpha=0.0,
                        learning_rate="constant", learning_rate_init=case.lr,
                        batch_size=n if case.batch_size is None else case.batch_size,
                        shuffle=True, early_stopping=False, random_state=0)
    classes = np.arange(problem.sizes[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # batch_size > 1 row, just below
        clf.partial_fit(X[:1], y[:1], classes=classes)  # builds the layers and the optimizer
        params = initial_params(problem, case.dtype)
        for i, (W, b) in enumerate(zip(params[0::2], params[1::2], strict=True)):
            clf.coefs_[i][...] = W  # in place: the optimizer holds these very arrays
            clf.intercepts_[i][...] = b
        start = clock()
        for _ in range(case.epochs):
            clf.partial_fit(X, y)
        seconds = clock() - start
    b = n if case.batch_size is None else case.batch_size
    steps = case.epochs * math.ceil(n / b)
    accuracy = float(np.mean(clf.predict(problem.test.X.astype(case.dtype)) == problem.test.y))
    return seconds, steps, accuracy


def available_runners(wanted: list[str]) -> dict[str, Callable]:
    runners: dict[str, Callable] = {
        "scratchgd-numba": run_scratchgd("numba"),
        "scratchgd-numpy": run_scratchgd("numpy"),
        "naive-numpy": run_naive,
    }
    try:
        import torch  # noqa: F401

        runners["torch-manual"] = run_torch("manual")
        runners["torch-dataloader"] = run_torch("dataloader")
    except ImportError:
        print("PyTorch is not installed: its runners are skipped")
    try:
        import sklearn  # noqa: F401

        runners["sklearn"] = run_sklearn
    except ImportError:
        print("scikit-learn is not installed: its runner is skipped")
    return {name: run for name, run in runners.items() if name in wanted}


# --- threads and the slow-state probe ----------------------------------------------------------

def with_threads(threads: int, run: Callable, problem: Problem, case: Case):
    """Run at ``threads`` threads for BLAS/OpenMP (threadpoolctl) and PyTorch."""
    try:
        import torch
    except ImportError:
        torch = None
    saved = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            return run(problem, case)
    finally:
        if torch:
            torch.set_num_threads(saved)


_PROBE_A = np.random.default_rng(1).random((384, 384), dtype=np.float32)


def probe_seconds(threads: int) -> float:
    """Best of 3 timings of a 384^3 float32 product at ``threads`` threads."""
    def once() -> float:
        start = time.perf_counter()
        _PROBE_A @ _PROBE_A
        return time.perf_counter() - start
    with threadpool_limits(limits=threads):
        return min(once() for _ in range(3))


class SlowStateDetector:
    """Flags a run when a probe before or after it is ``factor`` times its best time."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.best = {1: math.inf, 2: math.inf}

    def probe(self) -> dict[int, float]:
        times = {t: probe_seconds(t) for t in (1, 2)}
        for t, s in times.items():
            self.best[t] = min(self.best[t], s)
        return times

    def slow(self, *probes: dict[int, float]) -> bool:
        return any(p[t] > self.factor * self.best[t] for p in probes for t in (1, 2))


# --- the ceiling and the floor -----------------------------------------------------------------

def gflops(m: int, k: int, n: int, threads: list[int], repeats: int = 5) -> float:
    """Best NumPy float32 GFLOP/s of an (m, k) @ (k, n) product over ``threads`` counts."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    best = math.inf
    for t in threads:
        with threadpool_limits(limits=t):
            a @ b
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def epoch_flops(sizes: list[int], n: int) -> float:
    """FLOPs of the matrix products of one epoch over ``n`` rows.

    Per layer ``(fan_in, fan_out)``: forward ``2 n fan_in fan_out``, weight
    gradient the same, input gradient the same for every layer but the first.
    """
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    return sum(2 * n * fi * fo * (2 if i == 0 else 3) for i, (fi, fo) in enumerate(pairs))


# --- the run -----------------------------------------------------------------------------------

def cases(args: argparse.Namespace) -> list[tuple[Problem, Case]]:
    out = []
    if "W1" in args.workloads:
        problem = w1()
        for dtype in args.dtypes:
            for b in args.w1_batches:
                lr = {1: 0.01, None: 0.5}.get(b, 0.1)
                out.append((problem, Case("W1", dtype, b, args.w1_epochs, lr)))
    if "W2" in args.workloads:
        problem = w2(args.w2_rows)
        for b in args.w2_batches:
            out.append((problem, Case("W2", np.float32, b, 1, 0.05)))
    return out


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced run: W1 float32 b=1,32,full, 2 epochs; W2 on 6,000 rows "
                        "at b=1024; no extra rounds")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, the median is over them (default 3; fewer only to smoke-test)")
    parser.add_argument("--max-extra-rounds", type=int, default=2,
                        help="extra rounds to replace runs dropped in the slow state")
    parser.add_argument("--slow-factor", type=float, default=1.5,
                        help="a probe this many times its best marks the run slow")
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--runners", default="scratchgd-numba,scratchgd-numpy,naive-numpy,"
                        "torch-manual,torch-dataloader,sklearn")
    parser.add_argument("--w1-batches", default=None, help="comma list; 'full' for all rows")
    parser.add_argument("--threads", default=f"1,{CORES}", help="thread counts to try per runner")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="time the runners by the wall clock (default) or CPU time")
    args = parser.parse_args(argv)

    def batches(text: str) -> list[int | None]:
        return [None if b == "full" else int(b) for b in text.split(",")]

    args.workloads = args.workloads.split(",")
    args.threads = sorted({int(t) for t in args.threads.split(",")})
    if args.quick:
        args.dtypes = [np.float32]
        args.w1_batches = batches(args.w1_batches or "1,32,full")
        args.w1_epochs, args.w2_rows, args.w2_batches = 2, 6000, [1024]
        args.max_extra_rounds = 0
    else:
        args.dtypes = [np.float32, np.float64]
        args.w1_batches = batches(args.w1_batches or "1,8,32,128,full")
        args.w1_epochs, args.w2_rows, args.w2_batches = 10, 60000, [32, 128, 1024]
    runners = available_runners(args.runners.split(","))
    all_cases = cases(args)

    print(f"# scratchgd benchmarks/compare.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    global clock
    clock = CLOCKS[args.clock]
    print(f"machine: {platform.processor() or platform.machine()}, {CORES} cores; "
          f"python {platform.python_version()}, numpy {np.__version__}; threads tried: "
          f"{args.threads} (the faster counts); rounds {args.rounds}; clock {args.clock}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    detector = SlowStateDetector(args.slow_factor)
    for _ in range(3):
        detector.probe()

    # warm-up: compile the numba kernels for every case shape (not timed)
    for problem, case in all_cases:
        if "scratchgd-numba" in runners:
            warm = dataclasses.replace(case, epochs=1)
            run_scratchgd("numba")(problem, warm)

    # figures[(case label, runner, threads)] = list of (seconds per epoch, steps per epoch, acc)
    figures: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
    slow_figures: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
    dropped = 0
    started = time.perf_counter()
    for round_no in range(args.rounds + args.max_extra_rounds):
        extra = round_no >= args.rounds
        for problem, case in all_cases:
            for name, run in runners.items():
                if name == "naive-numpy" and case.workload == "W2":
                    continue  # 60,000 rows one at a time: minutes per epoch
                for threads in args.threads:
                    key = (case.label, name, threads)
                    got = figures.setdefault(key, [])
                    if extra and len(got) >= args.rounds:
                        continue
                    before = detector.probe()
                    seconds, steps, accuracy = with_threads(threads, run, problem, case)
                    after = detector.probe()
                    figure = (seconds / case.epochs, steps / case.epochs, accuracy)
                    if detector.slow(before, after):
                        dropped += 1
                        slow_figures.setdefault(key, []).append(figure)
                        continue
                    got.append(figure)
        print(f"round {round_no + 1} done after {time.perf_counter() - started:.0f} s, "
              f"{dropped} runs dropped so far", file=sys.stderr, flush=True)
        if round_no + 1 >= args.rounds and all(len(v) >= args.rounds for v in figures.values()):
            break
    elapsed = time.perf_counter() - started

    print_table(all_cases, runners, args.threads, figures, slow_figures)
    print(f"\nruns dropped in the slow state (probe > {args.slow_factor}x its best): {dropped}; "
          f"cells with fewer than {args.rounds} kept runs: "
          f"{sum(len(v) < args.rounds for v in figures.values())} (runs column 'N slow': no "
          f"run kept, the median of N slow-state runs shown); timed part {elapsed:.0f} s")
    print_ceiling(args)
    if "W2" in args.workloads and "scratchgd-numba" in runners:
        print_shape_floor(args, all_cases, figures, slow_figures)
    return 0


def best_of_threads(figures, slow_figures, label: str, name: str, threads: list[int]):
    """(seconds per epoch, steps per epoch, accuracy, threads, runs) of the faster thread count.

    A thread count without a kept run falls back on its slow-state runs
    (``runs`` then reads "N slow").
    """
    best = None
    for t in threads:
        runs, count = figures.get((label, name, t), []), None
        if not runs:
            runs = slow_figures.get((label, name, t), [])
            count = f"{len(runs)} slow"
        if not runs:
            continue
        sec = median_or_nan([r[0] for r in runs])
        row = (sec, runs[0][1], runs[-1][2], t, count or len(runs))
        if best is None or sec < best[0]:
            best = row
    return best


def print_table(all_cases, runners, threads, figures, slow_figures) -> None:
    print("\n| case | runner | threads | s/epoch | µs/step | accuracy | ÷ numba | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for _, case in all_cases:
        rows = {name: best_of_threads(figures, slow_figures, case.label, name, threads)
                for name in runners}
        base = rows.get("scratchgd-numba")
        for name, row in rows.items():
            if row is None:
                continue
            sec, steps, acc, t, runs = row
            ratio = sec / base[0] if base else math.nan
            print(f"| {case.label} | {name} | {t} | {sec:.4f} | {1e6 * sec / steps:.1f} | "
                  f"{acc:.4f} | {ratio:.2f} | {runs} |")
        peers = [rows[p][0] for p in PEERS if rows.get(p)]
        if base and peers:
            print(f"| {case.label} | fastest peer ÷ numba | | | | | "
                  f"{min(peers) / base[0]:.2f} | |")


def print_ceiling(args: argparse.Namespace) -> None:
    ceiling = gflops(2048, 2048, 2048, args.threads)
    print(f"\nmatrix-multiply ceiling, NumPy float32, best of {args.threads} threads: "
          f"{ceiling:.0f} GFLOP/s at 2048^3")
    shapes = [(32, 64, 128), (1437, 64, 128)] if "W1" in args.workloads else []
    if "W2" in args.workloads:
        shapes += [(b, 784, 256) for b in args.w2_batches]
    for m, k, n in shapes:
        print(f"  ({m} x {k}) @ ({k} x {n}): {gflops(m, k, n, args.threads):.0f} GFLOP/s")
    if "W2" in args.workloads:
        flops = epoch_flops([784, 256, 10], args.w2_rows)
        print(f"W2 floor: {flops / 1e9:.1f} GFLOP per epoch / {ceiling:.0f} GFLOP/s = "
              f"{flops / 1e9 / ceiling:.3f} s per epoch")


def print_shape_floor(args: argparse.Namespace, all_cases, figures, slow_figures) -> None:
    """W2's floor at the GEMM rates of its own product shapes, and numba's share of it."""
    from large_batch_profile import floor_seconds  # benchmarks/ is this script's folder

    print("\nW2 floor at its own shapes (each product of a step at the best rate of either "
          "BLAS, 1 thread or all; benchmarks/large_batch_profile.py):")
    for _, case in all_cases:
        if case.workload == "W2":
            floor = floor_seconds([784, 256, 10], case.batch_size, args.w2_rows)
            row = best_of_threads(figures, slow_figures, case.label, "scratchgd-numba",
                                  args.threads)
            print(f"  b={case.batch_size}: floor {floor:.3f} s per epoch; numba {row[0]:.3f} s "
                  f"= {floor / row[0]:.0%} of the floor's speed")


if __name__ == "__main__":
    sys.exit(main())
