"""Data-parallel scaling: scratchgd on 2 ranks against ONE PLAIN PROCESS, and against DDP.

Run from the repository root (needs the ``mpi`` and ``oracle`` extras)::

    python benchmarks/scaling.py              # W2: 60,000 rows, 3 rounds
    python benchmarks/scaling.py --quick      # 20,000 rows, 3 rounds
    python benchmarks/scaling.py --raw runs.md   # also write every run, for benchmarks/results/

Workload W2 of ``benchmarks/compare.py``: synthetic 784 features float32, 10
classes, MLP 784-256-10 float32, numba backend, one epoch of mini-batch SGD
(lr 0.05), at global batch 128 and 1024. Runners, each a fresh process (or
``mpiexec`` job), every process on one BLAS thread unless said otherwise:

* ``plain``: ``fit(comm=None)``: one process, one core -- the BASELINE;
* ``plain 2 threads``: the same with two BLAS threads, what a user with one
  machine tries first;
* ``comm P=1``: ``fit(comm=COMM_WORLD)`` on one rank: the data-parallel span
  (shard sums packed, the collective between steps, the step on the reduced
  sums) with nothing to exchange; its gap to ``plain`` is what the
  data-parallel machinery costs per step;
* ``P=2``: ``mpiexec -n 2``, ``fit(comm=COMM_WORLD)``, float64 sums (through
  memory both ranks map: ``Group.reducer`` gives a ``SharedSum`` on one machine);
* ``P=2 f32``: the same with ``reduce_dtype="float32"`` (half the bytes);
* ``P=2 msg``: ``P=2`` with the sums sent as messages (``MessageSum``: the
  Allgather of ``Group.sum_in_rank_order``), as between machines;
* ``torch 1``: one PyTorch process, a ``randperm``-slicing loop;
* ``ddp P=2``: PyTorch ``DistributedDataParallel``, gloo, 2 processes, each
  the half of every global batch.

Method: the runners are interleaved in rounds; each figure is the median
over rounds. Before and after every run a small matrix product is timed (the
probe of ``compare.py``); a run during which it took more than
``--slow-factor`` times its best was taken in the machine's slow state and is
dropped (its figures are used only if no run of that runner is kept). The
load average is printed before and after. The scratchgd runs under ``comm``
also report the seconds per step spent in the collective (waiting for the
other rank included) and the bytes of each rank's part per step (``MB/step``:
its rows in the shared block, or the buffer it sends).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import SlowStateDetector, w2  # noqa: E402

import scratchgd as sg  # noqa: E402

LR = 0.05
TARGETS = {"P=2 over plain, batch 128": 1.3, "P=2 over plain, batch 1024": 1.6,
           "comm P=1 over plain, batch 128": 0.9, "P=2 over ddp P=2, batch 128": 1.5,
           "P=2 over ddp P=2, batch 1024": 1.5}
"""The targets of issue 19 (ratios of samples per second)."""


# --- workers: each trains one epoch and prints one JSON line (rank 0) -------------------------

class TimedReducer:
    """A ``Group.reducer`` whose calls are timed into ``spent``."""

    def __init__(self, inner: object, spent: dict) -> None:
        self.inner, self.spent = inner, spent
        self.send, self.total = inner.send, inner.total
        self.send_extra, self.total_extra = inner.send_extra, inner.total_extra
        spent.update(bytes=inner.nbytes, transport=type(inner).__name__)

    def __call__(self) -> None:
        start = time.perf_counter()
        self.inner()
        self.spent["seconds"] += time.perf_counter() - start
        self.spent["calls"] += 1

    def close(self) -> None:
        self.inner.close()


def worker_scratchgd(rows: int, batch: int, use_comm: bool, reduce_dtype: str,
                     messages: bool) -> dict:
    from mpi4py import MPI

    from scratchgd import distributed

    if messages:
        distributed._shared_block = lambda comm, nbytes: None
    comm = MPI.COMM_WORLD if use_comm else None
    extra = {"comm": comm, "reduce_dtype": reduce_dtype} if use_comm else {}
    train = w2(rows).train
    model = sg.MLP([784, 256, 10], seed=0, dtype=np.float32, backend="numba")
    warm = sg.Dataset(train.X[:2 * batch], train.y[:2 * batch])
    sg.fit(sg.MLP([784, 256, 10], seed=0, dtype=np.float32, backend="numba"), warm,
           sg.MiniBatchSGD(LR, batch_size=batch), epochs=1, progress=False, **extra)
    spent = {"seconds": 0.0, "calls": 0}
    original = distributed.Group.reducer
    distributed.Group.reducer = lambda self, *args: TimedReducer(original(self, *args), spent)
    if comm is not None:
        comm.Barrier()
    start, cpu = time.perf_counter(), time.process_time()
    hist = sg.fit(model, train, sg.MiniBatchSGD(LR, batch_size=batch), epochs=1,
                  progress=False, **extra)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    distributed.Group.reducer = original
    result = {"samples_per_s": rows / seconds, "steps": hist.steps, "seconds": seconds,
              "cpu_seconds": cpu, "loss": hist.epoch_loss[-1]}
    if spent["calls"]:
        result.update(collective_per_step=spent["seconds"] / spent["calls"],
                      bytes_per_step=spent["bytes"], transport=spent["transport"])
    return result


def torch_epoch(X, y, batch: int, rank: int = 0, size: int = 1, ddp: bool = False) -> tuple:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    if ddp:
        net = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    steps = 0
    for lo in range(0, len(X), batch):
        hi = min(lo + batch, len(X))
        a, b = sg.distributed.shard(lo, hi, rank, size)
        index = order[a:b]
        opt.zero_grad()
        loss_fn(net(X[index]), y[index]).backward()
        opt.step()
        steps += 1
    return time.perf_counter() - start, steps


def worker_torch(rows: int, batch: int) -> dict:
    import torch

    torch.set_num_threads(1)
    train = w2(rows).train
    X, y = torch.from_numpy(np.asarray(train.X)), torch.from_numpy(np.asarray(train.y))
    torch_epoch(X[:2 * batch], y[:2 * batch], batch)
    seconds, steps = torch_epoch(X, y, batch)
    return {"samples_per_s": rows / seconds, "steps": steps, "seconds": seconds}


def _ddp_rank(rank: int, rows: int, batch: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    train = w2(rows).train
    X, y = torch.from_numpy(np.asarray(train.X)), torch.from_numpy(np.asarray(train.y))
    torch_epoch(X[:2 * batch], y[:2 * batch], batch, rank, 2, ddp=True)
    dist.barrier()
    seconds, steps = torch_epoch(X, y, batch, rank, 2, ddp=True)
    dist.barrier()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"samples_per_s": rows / seconds, "steps": steps, "seconds": seconds}, f)
    dist.destroy_process_group()


def worker_ddp(rows: int, batch: int) -> dict:
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "ddp.json")
        mp.spawn(_ddp_rank, args=(rows, batch, 29500 + os.getpid() % 1000, out), nprocs=2)
        with open(out) as f:
            return json.load(f)


# --- the launcher ------------------------------------------------------------------------------

RUNNERS = {  # name: (processes under mpiexec or 0 for none, BLAS threads, worker arguments)
    "plain": (0, 1, ["--worker", "sg"]),
    "plain 2 threads": (0, 2, ["--worker", "sg"]),
    "comm P=1": (1, 1, ["--worker", "sg", "--comm"]),
    "P=2": (2, 1, ["--worker", "sg", "--comm"]),
    "P=2 f32": (2, 1, ["--worker", "sg", "--comm", "--reduce-dtype", "float32"]),
    "P=2 msg": (2, 1, ["--worker", "sg", "--comm", "--messages"]),
    "torch 1": (0, 1, ["--worker", "torch"]),
    "ddp P=2": (0, 1, ["--worker", "ddp"]),
}


def launch(name: str, rows: int, batch: int) -> dict:
    processes, threads, args = RUNNERS[name]
    command = [sys.executable, os.path.abspath(__file__), *args, "--rows", str(rows),
               "--batch", str(batch)]
    if processes:
        command = ["mpiexec", "-n", str(processes), *command]
    env = {**os.environ, **{var: str(threads) for var in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows instead of 60,000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-factor", type=float, default=1.5)
    parser.add_argument("--raw", help="also write every run to this Markdown file")
    parser.add_argument("--worker", choices=("sg", "torch", "ddp"), default=None)
    parser.add_argument("--comm", action="store_true")
    parser.add_argument("--reduce-dtype", default="float64")
    parser.add_argument("--messages", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if args.worker == "sg":
        result = worker_scratchgd(args.rows, args.batch, args.comm, args.reduce_dtype,
                                  args.messages)
        if not args.comm or sg.distributed.world().rank == 0:
            print(json.dumps(result))
        return
    if args.worker:
        worker = worker_torch if args.worker == "torch" else worker_ddp
        print(json.dumps(worker(args.rows, args.batch)))
        return
    rows = args.rows or (20_000 if args.quick else 60_000)
    detector = SlowStateDetector(args.slow_factor)
    runs: list[dict] = []
    load_before, started = load(), time.perf_counter()
    for round_ in range(1, args.rounds + 1):
        for batch in (128, 1024):
            for name in RUNNERS:
                before = detector.probe()
                result = launch(name, rows, batch)
                after = detector.probe()
                runs.append({"round": round_, "runner": name, "batch": batch,
                             "slow": detector.slow(before, after), **result})
    header = (f"W2 {rows} x 784 float32, MLP 784-256-10 float32, numba, one epoch, lr {LR}; "
              f"median of {args.rounds} interleaved rounds; timed part "
              f"{time.perf_counter() - started:.0f} s; load average before {load_before}, "
              f"after {load()}; {os.cpu_count()} cores")
    table = report(runs, header)
    print(table)
    if args.raw:
        with open(args.raw, "w", encoding="utf-8") as f:
            f.write(f"```\n$ python {' '.join(sys.argv)}\n{table}\n```\n\nEvery run:\n\n"
                    + raw_table(runs))


def median(runs: list[dict], name: str, batch: int, key: str) -> float:
    """Median of ``key`` over the runs of ``name`` at ``batch`` outside the slow state
    (all of them if none is)."""
    mine = [r for r in runs if r["runner"] == name and r["batch"] == batch]
    kept = [r for r in mine if not r["slow"]] or mine
    return statistics.median(r[key] for r in kept if key in r)


def report(runs: list[dict], header: str) -> str:
    """The table of medians, the per-step collective of the comm runs, the targets."""
    lines = [header, "", f"{'runner':<17}{'batch':>6}{'samples/s':>12}{'vs plain':>10}"
             f"{'step ms':>9}{'collective ms':>15}{'MB/step':>9}{'kept':>6}"]
    for batch in (128, 1024):
        base = median(runs, "plain", batch, "samples_per_s")
        for name in RUNNERS:
            speed = median(runs, name, batch, "samples_per_s")
            mine = [r for r in runs if r["runner"] == name and r["batch"] == batch]
            kept = sum(not r["slow"] for r in mine)
            step = median(runs, name, batch, "seconds") / mine[0]["steps"] * 1e3
            extra = "" if "collective_per_step" not in mine[0] else (
                f"{median(runs, name, batch, 'collective_per_step') * 1e3:>15.3f}"
                f"{mine[0]['bytes_per_step'] / 1e6:>9.2f}")
            lines.append(f"{name:<17}{batch:>6}{speed:>12.0f}{speed / base:>9.2f}x{step:>9.3f}"
                         f"{extra or ' ' * 24}{kept:>4}/{len(mine)}")
    lines += ["", "targets (issue 19):"]
    for target, needed in TARGETS.items():
        over, under = target.split(", ")[0].split(" over ")
        batch = int(target.rsplit(" ", 1)[1])
        ratio = (median(runs, over, batch, "samples_per_s")
                 / median(runs, under, batch, "samples_per_s"))
        lines.append(f"  {target}: {ratio:.2f}x, needed >= {needed}x: "
                     f"{'met' if ratio >= needed else 'MISSED'}")
    return "\n".join(lines)


def raw_table(runs: list[dict]) -> str:
    """Every run as a Markdown table row (slow-state runs marked)."""
    def cell(run: dict, key: str, scale: float = 1.0, spec: str = ".3f") -> str:
        return format(run[key] * scale, spec) if key in run else ""

    lines = ["| round | runner | batch | samples/s | seconds | cpu s (rank 0) | collective ms/step "
             "| slow state |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        cells = [str(r["round"]), r["runner"], str(r["batch"]),
                 cell(r, "samples_per_s", spec=".0f"), cell(r, "seconds"),
                 cell(r, "cpu_seconds"), cell(r, "collective_per_step", 1e3),
                 "yes" if r["slow"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
