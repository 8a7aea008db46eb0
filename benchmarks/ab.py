"""A/B: microseconds per training step of the working tree against a git ref, case by case.

Run from the repository root::

    python benchmarks/ab.py a40628a              # the full run (a few minutes)
    python benchmarks/ab.py main --quick          # about a minute once the ref's cache is warm
    python benchmarks/ab.py $(git merge-base HEAD main)   # what CONTRIBUTING.md asks for

The ref is checked out with ``git archive`` into a folder of its own (a fresh
temporary one, or ``--workdir``, kept and reused while it holds that commit),
and its numba cache is warmed there before anything is timed. The working tree
is used as it is, uncommitted changes included.

Cases, the workloads of ``benchmarks/compare.py`` (its data, learning rates and
``fit`` call, plain SGD, ``backend="numba"``):

* **W1** digits (1,437 rows), MLP 64-128-10, batch 1, 8, 32, 128 and full,
  float32 and float64, 5 epochs a run (2 with ``--quick``; four times as many
  at full batch, one step an epoch);
* **W2** synthetic 60,000 x 784 float32 (6,000 with ``--quick``), MLP
  784-256-10, batch 32, 128 and 1024, one epoch a run.

Method: rounds, each of which starts one process per tree (their order
alternating from round to round); a process imports its tree's scratchgd, runs
every case once untimed (loading the compiled kernels), then times each case
``--repeats`` times and keeps its best. A case's figure is the median over the
rounds of those bests, in microseconds per training step (``fit``'s time over
``History.steps``); the ratio is the working tree's over the ref's (below 1:
the working tree is faster). ``--clock cpu`` times the process's CPU time
instead of the wall clock: steadier on a shared machine (time spent waiting
for a core is not counted), but BLAS threads add theirs. The load average is
printed before and after every round: on a busy machine the figures move.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
W1_BATCHES = (1, 8, 32, 128, None)
W2_BATCHES = (32, 128, 1024)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a worker process runs: the cases' sizes and how it times them."""

    workloads: tuple[str, ...]
    w1_epochs: int
    w2_rows: int
    repeats: int
    clock: str


def labels(settings: Settings) -> list[str]:
    """The cases in table order: ``W1 float32 b=1``, ..., ``W2 float32 b=1024``."""
    w1 = [f"W1 {dtype} b={'full' if b is None else b}" for dtype in ("float32", "float64")
          for b in W1_BATCHES]
    w2 = [f"W2 float32 b={b}" for b in W2_BATCHES]
    return ("W1" in settings.workloads) * w1 + ("W2" in settings.workloads) * w2


# --- the worker: one tree's scratchgd, every case ------------------------------------------------

def worker(settings: Settings) -> dict[str, float]:
    """Microseconds per step of every case, the best of ``settings.repeats`` runs each.

    Imports scratchgd from ``PYTHONPATH`` (the tree under test) BEFORE
    ``compare``, whose own path entry then changes nothing.
    """
    import numpy as np

    import scratchgd  # noqa: F401  (the tree's, first)
    sys.path.insert(0, str(HERE))
    import compare

    cases = []
    if "W1" in settings.workloads:
        w1 = compare.w1()
        for dtype in (np.float32, np.float64):
            for b in W1_BATCHES:
                lr = {1: 0.01, None: 0.5}.get(b, 0.1)
                epochs = settings.w1_epochs * (4 if b is None else 1)  # full: one step an epoch
                cases.append((w1, compare.Case("W1", dtype, b, epochs, lr)))
    if "W2" in settings.workloads:
        w2 = compare.w2(settings.w2_rows)
        cases += [(w2, compare.Case("W2", np.float32, b, 1, 0.05)) for b in W2_BATCHES]
    compare.clock = compare.CLOCKS[settings.clock]
    run = compare.run_scratchgd("numba")
    warm = compare.w2(256)
    for problem, case in cases:  # load every compiled kernel before timing
        small = warm if case.workload == "W2" else problem
        run(small, dataclasses.replace(case, epochs=1))
    out = {}
    for (problem, case), label in zip(cases, labels(settings), strict=True):
        best = float("inf")
        for _ in range(settings.repeats):
            seconds, steps, _ = run(problem, case)
            best = min(best, seconds / steps * 1e6)
        out[label] = best
    return out


def start_worker(tree: Path, settings: Settings, blas_threads: int | None
                 ) -> dict[str, float]:
    """Run :func:`worker` in a fresh process on ``tree``'s scratchgd; its figures.

    ``blas_threads``: the BLAS libraries' thread count (their environment
    variables), or ``None`` to leave it alone.
    """
    env = dict(os.environ, PYTHONPATH=str(tree))
    if blas_threads is not None:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(blas_threads)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker",
         json.dumps(dataclasses.asdict(settings))],
        cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the worker on {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the ref's tree ------------------------------------------------------------------------------

def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def check_out(ref: str, folder: Path) -> str:
    """The tree of ``ref`` in ``folder`` (``git archive``), unless it holds it already; its hash."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    stamp = folder / ".ab-commit"
    if stamp.exists() and stamp.read_text() == commit:
        return commit
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    stamp.write_text(commit)
    return commit


# --- the run -------------------------------------------------------------------------------------

def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", nargs="?", help="git ref to compare against (a40628a, main, ...)")
    parser.add_argument("--quick", action="store_true",
                        help="W1 2 epochs a run (8 at full batch), W2 on 6,000 rows, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; 3 quick)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of a case per process, the best counts (default 3)")
    parser.add_argument("--workloads", default="W1,W2", help="W1, W2 or both (default)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall clock (default) or the process's CPU time")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="BLAS threads of both trees (default: as the library chooses; "
                        "1 on a busy machine, where threaded BLAS loses 10x and more)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the ref's tree, kept and reused (default: temporary)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(Settings(**json.loads(args.worker)))))
        return 0
    if args.ref is None:
        parser.error("the git ref to compare against is required")
    if (args.rounds is not None and args.rounds < 1 or args.repeats < 1
            or args.blas_threads is not None and args.blas_threads < 1):
        parser.error("--rounds, --repeats and --blas-threads must be at least 1")
    workloads = tuple(args.workloads.split(","))
    if not workloads or not set(workloads) <= {"W1", "W2"}:
        parser.error(f"--workloads takes W1, W2 or W1,W2, got {args.workloads!r}")
    rounds = args.rounds or (3 if args.quick else 5)
    settings = Settings(workloads=workloads, w1_epochs=2 if args.quick else 5,
                        w2_rows=6000 if args.quick else 60000, repeats=args.repeats,
                        clock=args.clock)

    temporary = None
    if args.workdir is None:
        temporary = tempfile.TemporaryDirectory(prefix="scratchgd-ab-")
        folder = Path(temporary.name) / "ref"
    else:
        folder = args.workdir.resolve()
    try:
        commit = check_out(args.ref, folder)
        head = git("rev-parse", "--short", "HEAD")
        dirty = " (with uncommitted changes)" if git("status", "--porcelain",
                                                      "--untracked-files=no") else ""
        trees = {"ref": folder, "tree": ROOT}
        print(f"# scratchgd benchmarks/ab.py {' '.join(sys.argv[1:] if argv is None else argv)}")
        machine = platform.processor() or platform.machine()
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; ref {args.ref} = "
              f"{commit[:10]}, working tree {head}{dirty}; {machine}, {os.cpu_count()} cores; "
              f"python {platform.python_version()}")
        threads = "as BLAS chooses" if args.blas_threads is None else args.blas_threads
        print(f"clock {settings.clock}; BLAS threads {threads}; "
              f"{rounds} rounds x {settings.repeats} repeats; "
              f"W1 {settings.w1_epochs} epochs a run, W2 {settings.w2_rows} rows; "
              f"workloads {','.join(workloads)}")
        print(f"warming the numba caches (load {load()})", flush=True)
        for tree in trees.values():
            start_worker(tree, dataclasses.replace(settings, repeats=1, w1_epochs=1,
                                                   w2_rows=1024), args.blas_threads)
        figures: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
        for r in range(rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            before = load()
            for name in order:
                for label, value in start_worker(trees[name], settings, args.blas_threads).items():
                    figures[name].setdefault(label, []).append(value)
            print(f"round {r + 1}/{rounds}: load {before} -> {load()}", flush=True)
    finally:
        if temporary is not None:
            temporary.cleanup()

    print()
    print(f"| case | {args.ref} us/step | working tree us/step | ratio |")
    print("|---|---|---|---|")
    for label in labels(settings):
        ref, tree = (statistics.median(figures[name][label]) for name in ("ref", "tree"))
        print(f"| {label} | {ref:.2f} | {tree:.2f} | {tree / ref:.2f} |")
    print(f"\nmedian over {rounds} rounds of the best of {settings.repeats}; ratio = working tree "
          f"/ ref (below 1: faster); load average at the end {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
