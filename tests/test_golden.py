"""Results that must not move when the code is reorganised (see tests/golden/runs.py).

Every run of ``runs.RUNS`` (both backends: GD, SGD, mini-batch, accumulation 4
and "epoch", momentum, a memory budget, input scaling, float32, mse, noise
tracking, ThreadComm with P = 2 and 3) is trained afresh and compared with the
weights and History stored in ``tests/golden/runs.npz``; a run resumed from a
stored mid-epoch checkpoint must end where the uninterrupted run ended; stored
model files must load. On the machine that wrote the file (same CPU, NumPy,
Numba and BLAS, recorded in it) the comparison is bit for bit. Elsewhere a
different BLAS build, CPU or NumPy may round the last bit differently, so it is
relative 1e-9 there (1e-4 for the float32 runs: NumPy 1.23 against 2.4 moved
them by 2.5e-6 relative).
"""

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import scratchgd as sg
import scratchgd.checkpoint

HERE = Path(__file__).resolve().parent / "golden"
spec = importlib.util.spec_from_file_location("golden_runs", HERE / "runs.py")
runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runs)


@pytest.fixture(scope="module")
def stored() -> dict[str, np.ndarray]:
    with np.load(runs.STORE, allow_pickle=False) as archive:
        return dict(archive)


def same(fresh: dict[str, np.ndarray], stored: dict[str, np.ndarray]) -> None:
    exact = str(stored["machine"]) == runs.machine()
    if not exact:
        warnings.warn(f"golden runs compared to a tolerance: recorded on {stored['machine']}, "
                      f"this is {runs.machine()}", stacklevel=2)
    for key, value in fresh.items():
        if exact:
            assert np.array_equal(value, stored[key], equal_nan=True), f"{key} changed"
        else:
            rtol, atol = (1e-4, 1e-6) if "float32" in key else (1e-9, 1e-12)
            np.testing.assert_allclose(value, stored[key], rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("name", list(runs.RUNS))
@pytest.mark.parametrize("backend", runs.BACKENDS)
def test_a_run_ends_with_the_stored_weights_and_history(stored, backend, name):
    same(runs.arrays(f"{backend}/{name}", *runs.RUNS[name](backend)), stored)


@pytest.mark.parametrize("backend", runs.BACKENDS)
def test_resuming_a_stored_mid_epoch_checkpoint_ends_as_the_uninterrupted_run(
        stored, backend, tmp_path):
    saved = sg.checkpoint.load(HERE / f"checkpoint_{backend}.npz")
    assert (saved.position["epoch"], saved.position["iteration"]) == (2, 2)  # mid-epoch
    path = tmp_path / "run.npz"
    shutil.copyfile(HERE / f"checkpoint_{backend}.npz", path)
    m, hist = runs.plain(backend, sg.MiniBatchSGD(0.1, batch_size=32, momentum=0.9), epochs=3,
                         scaled=True, checkpoint=path, checkpoint_every=runs.CHECKPOINT_EVERY,
                         resume=True)
    fresh = runs.arrays(f"{backend}/resumed", m, hist)
    same(fresh, stored)


@pytest.mark.parametrize("backend", runs.BACKENDS)
def test_a_stored_model_file_loads_with_its_weights_and_scaling(stored, backend):
    m = sg.load_model(HERE / f"model_{backend}.npz", backend=backend)
    for i, p in enumerate(m.params):
        assert np.array_equal(p, stored[f"{backend}/resumed/param_{i}"])
    assert m.scaling is not None
    train, _, _ = runs.data()
    np.testing.assert_allclose(m.scaling.mean, train.X.mean(axis=0), rtol=1e-12, atol=1e-15)
