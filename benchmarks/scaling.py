"""Data-parallel scaling: scratchgd on P = 1 and P = 2 ranks against PyTorch DDP (gloo).

Run from the repository root (needs the ``mpi`` and ``oracle`` extras)::

    python benchmarks/scaling.py              # W2: 60,000 rows, 3 rounds
    python benchmarks/scaling.py --quick      # 20,000 rows, 3 rounds

Workload W2 of ``benchmarks/compare.py``: synthetic 784 features float32, 10
classes, MLP 784-256-10, one epoch of mini-batch SGD (lr 0.05), at global
batch 128 and 1024. Every process runs with one BLAS thread. Runners, each a
fresh process (or ``mpiexec`` job):

* ``sg P=1``: ``fit(comm=None)``, numba backend (its compiled loop runs a
  whole span of steps per call);
* ``sg P=1 comm``: ``fit(comm=COMM_WORLD)`` on one rank: the compiled loop
  stops at every step for the (trivial) reduction; its difference to
  ``sg P=1`` is the per-step stop cost;
* ``sg P=2``: ``mpiexec -n 2``, ``fit(comm=COMM_WORLD)``;
* ``torch 1``: one PyTorch process, a ``randperm``-slicing loop;
* ``ddp P=2``: PyTorch ``DistributedDataParallel``, gloo, 2 processes, each
  the half of every global batch.

Method: the runners are interleaved in rounds; each figure is the median
over rounds. Before and after every run a small matrix product is timed (the
probe of ``compare.py``); a run during which it took more than
``--slow-factor`` times its best was taken in the machine's slow state and is
dropped (its figures are used only if no run of that runner is kept). The
scratchgd P=2 runs also report the seconds per step spent in the reduction,
the bytes each rank contributes per step, and the extra time of the
fixed-order reduction (Allgather + sum in rank order) over a plain
``MPI.Allreduce`` of the same buffer, as a share of a step.
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

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}
LR = 0.05


# --- workers: each trains one epoch and prints one JSON line (rank 0) -------------------------

def worker_scratchgd(rows: int, batch: int, use_comm: bool) -> dict:
    from mpi4py import MPI

    from scratchgd import distributed

    comm = MPI.COMM_WORLD if use_comm else None
    train = w2(rows).train
    model = sg.MLP([784, 256, 10], seed=0, dtype=np.float32, backend="numba")
    warm = sg.Dataset(train.X[:2 * batch], train.y[:2 * batch])
    sg.fit(sg.MLP([784, 256, 10], seed=0, dtype=np.float32, backend="numba"), warm,
           sg.MiniBatchSGD(LR, batch_size=batch), epochs=1, progress=False, comm=comm)
    spent = {"reduce": 0.0, "calls": 0, "bytes": 0}
    original = distributed.Group.sum_in_rank_order

    def timed(self: distributed.Group, buf: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = original(self, buf)
        spent["reduce"] += time.perf_counter() - start
        spent["calls"] += 1
        spent["bytes"] = buf.size * 8
        return out

    distributed.Group.sum_in_rank_order = timed
    if comm is not None:
        comm.Barrier()
    start = time.perf_counter()
    hist = sg.fit(model, train, sg.MiniBatchSGD(LR, batch_size=batch), epochs=1,
                  progress=False, comm=comm)
    seconds = time.perf_counter() - start
    distributed.Group.sum_in_rank_order = original
    result = {"samples_per_s": rows / seconds, "steps": hist.steps, "seconds": seconds}
    if comm is not None and spent["calls"]:
        group = distributed.Group(comm)
        buf = np.random.default_rng(group.rank).random(spent["bytes"] // 8)
        fixed, plain = [], []
        for _ in range(5):  # interleaved: 20 calls of each, 5 times
            for reduce, times in ((group.sum_in_rank_order, fixed), (group.allreduce_sum, plain)):
                comm.Barrier()
                start = time.perf_counter()
                for _ in range(20):
                    reduce(buf)
                times.append((time.perf_counter() - start) / 20)
        step = seconds / hist.steps
        result.update(reduce_per_step=spent["reduce"] / spent["calls"], bytes_per_step=spent["bytes"],
                      step_seconds=step, fixed=statistics.median(fixed),
                      allreduce=statistics.median(plain),
                      fixed_extra_share=(statistics.median(fixed) - statistics.median(plain)) / step)
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

RUNNERS = {
    "sg P=1": ["--worker", "sg"],
    "sg P=1 comm": ["--worker", "sg", "--comm"],
    "sg P=2": ["mpiexec", "--worker", "sg", "--comm"],
    "torch 1": ["--worker", "torch"],
    "ddp P=2": ["--worker", "ddp"],
}


def launch(name: str, rows: int, batch: int) -> dict:
    args = RUNNERS[name]
    command = [sys.executable, os.path.abspath(__file__), *[a for a in args if a != "mpiexec"],
               "--rows", str(rows), "--batch", str(batch)]
    if "mpiexec" in args:
        command = ["mpiexec", "-n", "2", *command]
    env = {**os.environ, **ONE_THREAD}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows instead of 60,000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-factor", type=float, default=1.5)
    parser.add_argument("--worker", choices=("sg", "torch", "ddp"), default=None)
    parser.add_argument("--comm", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if args.worker == "sg":
        result = worker_scratchgd(args.rows, args.batch, args.comm)
        if not args.comm or sg.distributed.world().rank == 0:
            print(json.dumps(result))
        return
    if args.worker:
        worker = worker_torch if args.worker == "torch" else worker_ddp
        print(json.dumps(worker(args.rows, args.batch)))
        return
    rows = args.rows or (20_000 if args.quick else 60_000)
    detector = SlowStateDetector(args.slow_factor)
    kept: dict[tuple[str, int], list[dict]] = {}
    slow: dict[tuple[str, int], list[dict]] = {}
    started = time.perf_counter()
    for _ in range(args.rounds):
        for batch in (128, 1024):
            for name in RUNNERS:
                before = detector.probe()
                result = launch(name, rows, batch)
                after = detector.probe()
                (slow if detector.slow(before, after) else kept).setdefault(
                    (name, batch), []).append(result)
    print(f"W2 {rows} x 784 float32, MLP 784-256-10, one epoch, lr {LR}, one BLAS thread per "
          f"process; median of {args.rounds} interleaved rounds; timed part "
          f"{time.perf_counter() - started:.0f} s")

    def median(name: str, batch: int, key: str) -> float:
        runs = kept.get((name, batch)) or slow.get((name, batch), [])
        return statistics.median(r[key] for r in runs)

    print(f"\n{'runner':<14}{'batch':>6}{'samples/s':>12}{'vs sg P=1':>11}{'runs':>6}")
    for batch in (128, 1024):
        base = median("sg P=1", batch, "samples_per_s")
        for name in RUNNERS:
            speed = median(name, batch, "samples_per_s")
            runs = len(kept.get((name, batch), []))
            print(f"{name:<14}{batch:>6}{speed:>12.0f}{speed / base:>10.2f}x{runs:>6}")
    print("\nsg P=2 per step: reduction seconds, bytes per rank, fixed order vs Allreduce")
    for batch in (128, 1024):
        get = lambda key, b=batch: median("sg P=2", b, key)  # noqa: E731
        stop = (1 / median("sg P=1 comm", batch, "samples_per_s")
                - 1 / median("sg P=1", batch, "samples_per_s")) * batch
        share = get("reduce_per_step") / get("step_seconds")
        print(f"batch {batch}: step {get('step_seconds') * 1e3:.2f} ms, reduction "
              f"{get('reduce_per_step') * 1e3:.2f} ms ({share:.0%} of a step), "
              f"{get('bytes_per_step') / 1e6:.2f} MB per rank; fixed order "
              f"{get('fixed') * 1e3:.3f} ms vs Allreduce {get('allreduce') * 1e3:.3f} ms: extra "
              f"{get('fixed_extra_share'):.1%} of a step; P=1 stop at every step costs "
              f"{stop * 1e3:.3f} ms per step")
    print("\ntargets: P=2/P=1 >= 1.6x at 1024, >= 1.3x at 128; sg P=2 >= 1.2x ddp P=2; "
          "fixed-order extra <= 5% of a step at 1024")
    for batch, target in ((128, 1.3), (1024, 1.6)):
        ratio = median("sg P=2", batch, "samples_per_s") / median("sg P=1", batch, "samples_per_s")
        versus = median("sg P=2", batch, "samples_per_s") / median("ddp P=2", batch,
                                                                     "samples_per_s")
        print(f"batch {batch}: P=2/P=1 {ratio:.2f}x ({'met' if ratio >= target else 'missed'}); "
              f"vs DDP {versus:.2f}x ({'met' if versus >= 1.2 else 'missed'})")
    print(f"dropped in the slow state: {sum(len(v) for v in slow.values())}")


if __name__ == "__main__":
    main()
