"""One epoch of mini-batch SGD through a memory-mapped .npy file larger than 2 GB.

Writes synthetic data sets (float32, 784 features, labels derived from the
features) as .npy into a temporary directory, trains one epoch of
``MiniBatchSGD`` on each through ``Dataset.from_npy`` (memory map), with
``shuffle=True`` and ``shuffle="chunks"``, and on the smaller file(s) also with
the data loaded into memory. Each run is a fresh subprocess, so its peak RSS is
its own; runs are interleaved and repeated, and the table shows medians.

Reported per run:

* samples/second of the epoch (without tracemalloc);
* traced peak: tracemalloc's peak over Dataset construction + one epoch (a
  second pass with tracing on). The model's weights exist before tracing starts;
  what is traced is batches, activations, gradients, updates, the epoch's
  permutation (8 bytes per row) and the blockwise checks;
* peak RSS: ``VmHWM`` of ``/proc/self/status`` (``resource.getrusage``'s
  ``ru_maxrss`` is printed too, but on Linux a child inherits its parent's
  peak across fork and exec, so it says little here), and the resident
  anonymous / file-backed memory at the end of the epoch, with the map open:
  pages of a memory map count in RSS as file-backed pages, which the kernel can
  drop at any time; anonymous memory is what the process really holds.

The page cache is warm (the file was just written), so this measures the
loader's overhead, not the disk. The files are deleted at the end.

    python benchmarks/mmap_epoch.py                  # 0.5 GB and 2.2 GB, 3 repeats
    python benchmarks/mmap_epoch.py --sizes-gb 0.2 --repeats 1   # quick
    python benchmarks/mmap_epoch.py --scale      # each mode also with input scaling

With ``--scale`` every mode runs twice, the second time with input scaling
(``sg.standardize(model, data)`` inside the traced part: its streaming
statistics pass, then the scaled epoch), so the table shows what scaling adds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scratchgd as sg  # noqa: E402

D = 784
WRITE_BLOCK = 50_000


def write_dataset(directory: Path, rows: int, seed: int = 0) -> None:
    """``X.npy`` (rows, 784) float32 uniform in [0, 1), ``y.npy`` = argmax of the first 10 columns."""
    rng = np.random.default_rng(seed)
    X = np.lib.format.open_memmap(directory / "X.npy", mode="w+", dtype=np.float32, shape=(rows, D))
    y = np.lib.format.open_memmap(directory / "y.npy", mode="w+", dtype=np.int64, shape=(rows,))
    for start in range(0, rows, WRITE_BLOCK):
        block = rng.random((min(WRITE_BLOCK, rows - start), D), dtype=np.float32)
        X[start:start + len(block)] = block
        y[start:start + len(block)] = block[:, :10].argmax(axis=1)
    X.flush()
    y.flush()
    del X, y


def _status() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


def worker(directory: Path, mode: str, hidden: int, batch_size: int,
           backend: str = "numpy") -> dict:
    """One run: an untraced timed epoch, then a traced one; returns the figures.

    A ``mode`` ending in ``+scale`` standardizes the model's inputs first.
    """
    mode, _, scale = mode.partition("+")
    X_path, y_path = directory / "X.npy", directory / "y.npy"
    in_memory = (np.load(X_path, allow_pickle=False), np.load(y_path, allow_pickle=False)) \
        if mode == "memory" else None

    def dataset() -> sg.Dataset:
        return sg.Dataset(*in_memory) if in_memory else sg.Dataset.from_npy(X_path, y_path)

    shuffle = "chunks" if mode == "mmap-chunks" else True
    model = sg.MLP([D, hidden, 10], dtype=np.float32, seed=0, backend=backend)
    optimizer = sg.MiniBatchSGD(0.05, batch_size=batch_size, shuffle=shuffle, chunk_size=4096)
    start = time.perf_counter()
    data = dataset()
    construct = time.perf_counter() - start
    if scale:
        sg.standardize(model, data)
    start = time.perf_counter()
    history = sg.fit(model, data, optimizer, epochs=1, progress=False)
    seconds = time.perf_counter() - start
    del data
    tracemalloc.start()
    data = dataset()
    if scale:
        sg.standardize(model, data)
    sg.fit(model, data, optimizer, epochs=1, progress=False)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"mode": mode + ("+scale" if scale else ""), "rows": history.samples_seen,
            "samples_per_s": history.samples_seen / seconds,
            "construct_s": construct, "traced_peak": traced_peak,
            "model_bytes": sum(p.nbytes for p in model.params), "loss": history.epoch_loss[-1],
            "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            **_status()}                 # read while the memory map is still open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.5, 2.2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dir", default=None, help="where to write the temporary files")
    parser.add_argument("--scale", action="store_true",
                        help="run every mode also with input scaling (sg.standardize)")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "numba"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, directory = args.worker.split(":", 1)
        print(json.dumps(worker(Path(directory), mode, args.hidden, args.batch_size,
                                args.backend)))
        return
    print(f"one epoch of MiniBatchSGD(batch_size={args.batch_size}), MLP([784, {args.hidden}, 10]) "
          f"float32, backend {args.backend}; medians of {args.repeats} interleaved runs\n")
    print("| file | mode | samples/s | construct s | traced peak | peak RSS (VmHWM) | ru_maxrss "
          "| anon RSS at end | file RSS at end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes_gb:
        rows = int(size * 1e9 / (D * 4))
        nbytes = rows * D * 4
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="scratchgd-mmap-") as tmp:
            free = shutil.disk_usage(tmp).free
            if free < nbytes * 1.2 + 2e9:
                print(f"| {size} GB | skipped: only {free / 1e9:.1f} GB free on disk |")
                continue
            directory = Path(tmp)
            start = time.perf_counter()
            write_dataset(directory, rows)
            written = time.perf_counter() - start
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            modes = ["mmap", "mmap-chunks"] + (["memory"] if available > 3 * nbytes else [])
            if args.scale:
                modes = [m + suffix for m in modes for suffix in ("", "+scale")]
            runs: dict[str, list[dict]] = {mode: [] for mode in modes}
            for _ in range(args.repeats):
                for mode in modes:
                    out = subprocess.run(
                        [sys.executable, __file__, "--worker", f"{mode}:{directory}",
                         "--hidden", str(args.hidden), "--batch-size", str(args.batch_size),
                         "--backend", args.backend],
                        check=True, capture_output=True, text=True).stdout
                    runs[mode].append(json.loads(out))
            for mode, results in runs.items():
                def median(key: str, results: list[dict] = results) -> float:
                    return statistics.median(r[key] for r in results)
                print(f"| {nbytes / 1e9:.2f} GB ({rows:,} rows, written in {written:.0f} s) | {mode} "
                      f"| {median('samples_per_s'):,.0f} | {median('construct_s'):.2f} "
                      f"| {max(r['traced_peak'] for r in results) / 1e6:.1f} MB "
                      f"| {median('VmHWM') / 1e6:,.0f} MB | {median('ru_maxrss') / 1e6:,.0f} MB "
                      f"| {median('RssAnon') / 1e6:,.0f} MB "
                      f"| {median('RssFile') / 1e6:,.0f} MB |", flush=True)
    print(f"\nmodel weights: {results[0]['model_bytes'] / 1e6:.2f} MB (not in the traced peak); "
          f"temporary files deleted")


if __name__ == "__main__":
    main()
