"""The fixed runs whose results must not change when the code is reorganised.

``python tests/golden/runs.py`` trains every run of :data:`RUNS` and stores its
final weights and ``History`` in ``tests/golden/runs.npz``, with a mid-epoch
checkpoint and a saved model per backend written by the code of that day.
``tests/test_golden.py`` trains the same runs afresh and compares bit for bit,
resumes from the stored checkpoints and loads the stored models. Regenerate the
file only when a change is MEANT to change results, and say so in its commit.

Every run trains on the first 300 rows of the embedded digits (64-16-10, relu)
unless it says otherwise; each is small enough that all of them take seconds.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

import scratchgd as sg
from scratchgd.distributed import run_threads

HERE = Path(__file__).resolve().parent
STORE = HERE / "runs.npz"
BACKENDS = ("numpy", "numba")
# the History fields stored in runs.npz: all but the timings, and but those added after the
# runs were stored (val_r2, issue 20), which the file cannot hold
HISTORY_FIELDS = [f.name for f in dataclasses.fields(sg.History)
                  if f.name not in ("epoch_seconds", "val_r2")]


def data() -> tuple[sg.Dataset, sg.Dataset, sg.Dataset]:
    """300 training rows, 100 validation rows, and a 1-D regression set."""
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    return (sg.Dataset(train.X[:300], train.y[:300]), sg.Dataset(test.X[:100], test.y[:100]),
            sg.datasets.regression_1d(n=150, seed=1))


def model(backend: str, dtype: type = np.float64, loss: str = "cross_entropy") -> sg.MLP:
    sizes = [64, 16, 10] if loss == "cross_entropy" else [1, 16, 1]
    return sg.MLP(sizes, loss=loss, seed=0, dtype=dtype, backend=backend)


def plain(backend: str, optimizer: sg.Optimizer, epochs: int = 3, dtype: type = np.float64,
          scaled: bool = False, loss: str = "cross_entropy", **kw: object
          ) -> tuple[sg.MLP, sg.History]:
    train, val, reg = data()
    m = model(backend, dtype, loss)
    if scaled:
        sg.standardize(m, train)
    d = train if loss == "cross_entropy" else reg
    hist = sg.fit(m, d, optimizer, epochs=epochs, progress=False, seed=3,
                  validation=val if loss == "cross_entropy" else None, **kw)
    return m, hist


def threads(backend: str, size: int) -> tuple[sg.MLP, sg.History]:
    """Rank 0's model and History of a ``ThreadComm`` run on ``size`` ranks."""
    train, val, _ = data()

    def rank(comm: object) -> tuple[sg.MLP, sg.History]:
        m = model(backend)
        hist = sg.fit(m, train, sg.MiniBatchSGD(0.1, batch_size=32, momentum=0.9), epochs=2,
                      progress=False, seed=3, validation=val, accumulate=2, comm=comm)
        return m, hist

    results = run_threads(size, rank)
    for m, _ in results[1:]:
        for a, b in zip(m.params, results[0][0].params, strict=True):
            assert np.array_equal(a, b), "replicas differ"
    return results[0]


CHECKPOINT_EVERY = 4
"""Steps between the checkpoints of the resumed run (10 steps an epoch: mid-epoch ones)."""


def resumable(backend: str, checkpoint: str | os.PathLike) -> tuple[sg.MLP, sg.History]:
    """The run whose mid-epoch checkpoint is stored (momentum, scaling, a checkpoint every 4 steps)."""
    return plain(backend, sg.MiniBatchSGD(0.1, batch_size=32, momentum=0.9), epochs=3,
                 scaled=True, checkpoint=checkpoint, checkpoint_every=CHECKPOINT_EVERY)


RUNS: dict[str, Callable[[str], tuple[sg.MLP, sg.History]]] = {
    "gd": lambda b: plain(b, sg.GD(0.5)),
    "sgd": lambda b: plain(b, sg.SGD(0.05), epochs=2),
    "minibatch": lambda b: plain(b, sg.MiniBatchSGD(0.1, batch_size=32)),
    "accumulate_4": lambda b: plain(b, sg.MiniBatchSGD(0.1, batch_size=32), accumulate=4),
    "accumulate_epoch": lambda b: plain(b, sg.MiniBatchSGD(0.5, batch_size=32),
                                        accumulate="epoch"),
    "momentum": lambda b: plain(b, sg.MiniBatchSGD(0.05, batch_size=16, momentum=0.9)),
    "sgd_momentum": lambda b: plain(b, sg.SGD(0.01, momentum=0.9), epochs=1),
    "memory_budget": lambda b: plain(b, sg.GD(0.5), memory_budget="40KB"),
    "scaled": lambda b: plain(b, sg.MiniBatchSGD(0.05, batch_size=32), scaled=True),
    "float32": lambda b: plain(b, sg.MiniBatchSGD(0.1, batch_size=32, momentum=0.5),
                               dtype=np.float32),
    "mse": lambda b: plain(b, sg.MiniBatchSGD(0.05, batch_size=8), loss="mse"),
    "track_noise": lambda b: plain(b, sg.MiniBatchSGD(0.1, batch_size=32), track_noise=True),
    "threads_2": lambda b: threads(b, 2),
    "threads_3": lambda b: threads(b, 3),
}


def arrays(name: str, m: sg.MLP, hist: sg.History) -> dict[str, np.ndarray]:
    """The stored form of one run: ``name/param_i`` and ``name/history/field``."""
    out = {f"{name}/param_{i}": p for i, p in enumerate(m.params)}
    for f in HISTORY_FIELDS:
        out[f"{name}/history/{f}"] = np.asarray(getattr(hist, f))
    return out


def machine() -> str:
    """What the bits depend on besides the code: CPU, NumPy, Numba, BLAS."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401 (numba's BLAS: loaded, so always listed)
    from threadpoolctl import threadpool_info

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    blas = sorted(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                  for i in threadpool_info() if i.get("user_api") == "blas")
    return (f"{platform.machine()} {cpu}; numpy {np.__version__}; numba {numba.__version__}; "
            f"blas {', '.join(blas)}")


def run_keeping_a_checkpoint(backend: str, folder: Path) -> tuple[sg.MLP, sg.History]:
    """:func:`resumable` run uninterrupted; its third checkpoint (mid-epoch 2) is copied aside."""
    path, kept = folder / f"scratch_{backend}.npz", folder / f"checkpoint_{backend}.npz"
    real_replace, saves = os.replace, []

    def replace(src: str, dst: str) -> None:
        real_replace(src, dst)
        if os.fspath(dst) == os.fspath(path):
            saves.append(dst)
            if len(saves) == 3:
                shutil.copyfile(dst, kept)

    os.replace = replace
    try:
        result = resumable(backend, path)
    finally:
        os.replace = real_replace
    os.remove(path)
    return result


def main(folder: Path = HERE) -> None:
    stored: dict[str, np.ndarray] = {}
    for backend in BACKENDS:
        for name, run in RUNS.items():
            stored.update(arrays(f"{backend}/{name}", *run(backend)))
            print(f"{backend:>5}  {name}", flush=True)
        m, hist = run_keeping_a_checkpoint(backend, folder)
        stored.update(arrays(f"{backend}/resumed", m, hist))
        m.save(folder / f"model_{backend}.npz")
    stored["machine"] = np.array(machine())
    np.savez_compressed(folder / STORE.name, **stored)
    print(f"wrote {STORE} ({len(stored)} arrays) on {machine()}")


if __name__ == "__main__":
    sys.exit(main())
