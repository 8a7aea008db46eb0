"""The array-API backends equal the NumPy backend: one reference, many libraries (issue 25).

Every backend trains from the same initial weights (drawn on the host) on the
same batches (the loader's orders, drawn on the host) and must end where
``backend="numpy"`` ends, History included: the largest weight difference
after 3 epochs of the digits at most 1e-12 x max|w| in float64 and 1e-4 x
max|w| in float32 (the numba backend's tolerance). array_api_strict's fake
devices stand in for a GPU: ``device1`` catches an array left on another
device, ``no_float64`` a device without float64. CuPy and torch on CUDA run
where present.
"""

import functools
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("array_api_compat", reason="needs the 'array-api' extra")
pytest.importorskip("array_api_strict", reason="needs the 'array-api' extra")
torch = pytest.importorskip("torch", reason="needs the 'array-api' extra")

import scratchgd as sg  # noqa: E402
from scratchgd import checkpoint  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
try:
    import cupy  # noqa: F401
    HAS_CUPY = True
except ImportError:
    HAS_CUPY = False

CASES = [
    pytest.param("array_api_strict", "CPU_DEVICE", np.float64, id="strict-cpu-float64"),
    pytest.param("array_api_strict", "device1", np.float32, id="strict-device1-float32"),
    pytest.param("torch", "cpu", np.float32, id="torch-cpu-float32"),
    pytest.param("torch", "cpu", np.float64, id="torch-cpu-float64"),
    pytest.param("torch", "cuda", np.float32, id="torch-cuda-float32",
                 marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")),
    pytest.param("cupy", "cuda", np.float32, id="cupy-float32",
                 marks=pytest.mark.skipif(not HAS_CUPY, reason="CuPy is not installed")),
]
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-4}

RUNS = {  # name: (optimizer, fit's accumulate, epochs)
    "gd": (lambda: sg.GD(0.5), 1, 3),
    "sgd": (lambda: sg.SGD(0.01), 1, 1),
    "minibatch": (lambda: sg.MiniBatchSGD(0.1, batch_size=100, momentum=0.9), 3, 3),
}  # 1437 rows: batches of 100 leave a last batch of 37; accumulation 3 leaves a last step of 2


@functools.cache
def digits(dtype: type) -> tuple[sg.Dataset, sg.Dataset]:
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    return (sg.Dataset(train.X.astype(dtype), train.y), sg.Dataset(test.X.astype(dtype), test.y))


def train(backend: str, device: str | None, dtype: type, run: str,
          data: sg.Dataset | None = None) -> tuple[sg.MLP, sg.History]:
    make, accumulate, epochs = RUNS[run]
    train_set, test_set = digits(dtype)
    model = sg.MLP([64, 32, 10], seed=0, dtype=dtype, backend=backend, device=device)
    history = sg.fit(model, train_set if data is None else data, make(), epochs=epochs,
                     accumulate=accumulate, validation=test_set, progress=False, seed=0)
    return model, history


@functools.cache
def reference(dtype: type, run: str) -> tuple[list[np.ndarray], sg.History]:
    model, history = train("numpy", None, dtype, run)
    return model.params, history


def assert_equal_to_numpy(model: sg.MLP, history: sg.History, dtype: type, run: str) -> float:
    """The weights within the tolerance of max|w|, History's counts equal and its losses close."""
    params, expected = reference(dtype, run)
    weights = model.to_host(model.params)
    scale = max(float(np.abs(p).max()) for p in params)
    error = max(float(np.abs(w - p).max()) for w, p in zip(weights, params, strict=True))
    assert error <= TOLERANCE[dtype] * scale, f"{run}: {error / scale:.3g} x max|w|"
    for field in ("epochs", "iterations", "steps", "samples_seen", "steps_at_epoch_end"):
        assert getattr(history, field) == getattr(expected, field), field
    for field in ("iteration_loss", "epoch_loss", "epoch_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(getattr(history, field), getattr(expected, field),
                                   rtol=TOLERANCE[dtype] * 10, atol=0, err_msg=field)
    return error / scale


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize(("backend", "device", "dtype"), CASES)
def test_training_equals_the_numpy_backend(backend, device, dtype, run):
    model, history = train(backend, device, dtype, run)
    assert not isinstance(model.params[0], np.ndarray)   # the library's own arrays
    assert_equal_to_numpy(model, history, dtype, run)


def test_a_memory_mapped_set_moves_batch_by_batch_when_it_does_not_fit(tmp_path, monkeypatch):
    train_set, _ = digits(np.float64)
    np.save(tmp_path / "X.npy", train_set.X)
    np.save(tmp_path / "y.npy", train_set.y)
    mapped = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", mmap=True)
    assert isinstance(mapped.X, np.memmap)
    from scratchgd.engines import device
    monkeypatch.setattr(device, "free_memory", lambda backend, where: 0)  # a full device
    model, history = train("array_api_strict", "device1", np.float64, "minibatch", mapped)
    assert_equal_to_numpy(model, history, np.float64, "minibatch")


@pytest.mark.parametrize(("writer", "reader"), [("numpy", "torch"), ("torch", "array_api_strict")])
def test_a_run_resumes_from_a_checkpoint_another_backend_wrote(tmp_path, writer, reader):
    """Stopped after 2 of 3 epochs on one backend, resumed on another: the 3-epoch weights."""
    path = tmp_path / "run.npz"
    make, accumulate, _ = RUNS["minibatch"]
    train_set, _ = digits(np.float64)
    first = sg.MLP([64, 32, 10], seed=0, backend=writer)
    sg.fit(first, train_set, make(), epochs=2, accumulate=accumulate, progress=False,
           checkpoint=path)
    saved = checkpoint.load(path)
    assert all(type(p) is np.ndarray for p in saved.params + saved.velocity)  # NumPy inside
    second = sg.MLP([64, 32, 10], seed=1, backend=reader)  # other weights: the file's win
    sg.fit(second, train_set, make(), epochs=3, accumulate=accumulate, progress=False,
           checkpoint=path, resume=True)
    params, _ = reference(np.float64, "minibatch")
    weights = second.to_host(second.params)
    scale = max(float(np.abs(p).max()) for p in params)
    assert max(float(np.abs(w - p).max()) for w, p in zip(weights, params, strict=True)) \
        <= 1e-12 * scale


@pytest.mark.parametrize(("backend", "device"), [("array_api_strict", "device1"),
                                                  ("torch", "cpu")])
def test_evaluate_gradient_noise_and_a_saved_model_equal_numpy(tmp_path, backend, device):
    train_set, test_set = digits(np.float64)
    ref = sg.MLP([64, 32, 10], activation="tanh", seed=0)
    other = sg.MLP([64, 32, 10], activation="tanh", seed=0, backend=backend, device=device)
    for model in (ref, other):
        sg.fit(model, train_set, sg.MiniBatchSGD(0.1, batch_size=32), epochs=1, progress=False)
    np.testing.assert_allclose(sg.evaluate(other, test_set), sg.evaluate(ref, test_set),
                               rtol=1e-10)
    expected, got = sg.gradient_noise(ref, train_set), sg.gradient_noise(other, train_set)
    np.testing.assert_allclose([got.grad_sq, got.trace_cov], [expected.grad_sq,
                               expected.trace_cov], rtol=1e-10)
    np.testing.assert_allclose(other.predict(test_set.X), ref.predict(test_set.X))
    assert isinstance(other.predict(test_set.X), np.ndarray)
    other.save(tmp_path / "m.npz")
    loaded = sg.load_model(tmp_path / "m.npz")              # a torch model file, read by numpy
    np.testing.assert_array_equal(loaded.predict(test_set.X), ref.predict(test_set.X))
    back = sg.load_model(tmp_path / "m.npz", backend=backend, device=device)
    assert str(back.device) == str(other.device)
    assert sg.gradient_check(back, test_set.X[:4], test_set.y[:4]) < 1e-6


def test_a_device_without_float64_refuses_a_float64_model_and_the_gradient_check():
    with pytest.raises(ValueError, match="no float64"):
        sg.MLP([4, 3, 2], backend="array_api_strict", device="no_float64")
    model = sg.MLP([4, 3, 2], backend="array_api_strict", device="no_float64", dtype=np.float32)
    with pytest.raises(ValueError, match="gradient check differentiates in float64"):
        sg.gradient_check(model, np.ones((2, 4)), np.array([0, 1]))


@pytest.mark.skipif(HAS_CUDA, reason="this torch has CUDA")
def test_torch_without_cuda_refuses_a_cuda_device_in_one_line():
    with pytest.raises(ValueError, match="has no CUDA device") as info:
        sg.MLP([4, 3, 2], backend="torch", device="cuda")
    assert "\n" not in str(info.value)


def test_bad_devices_and_runs_the_new_backends_do_not_take_are_refused():
    with pytest.raises(ValueError, match="not a device of array_api_strict"):
        sg.MLP([4, 3, 2], backend="array_api_strict", device="gpu7")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        sg.MLP([4, 3, 2], backend="numpy", device="cuda")
    data = sg.Dataset(np.ones((8, 4)), np.arange(8) % 2)
    model = sg.MLP([4, 3, 2], backend="torch")
    with pytest.raises(ValueError, match="track_noise"):
        sg.fit(model, data, sg.MiniBatchSGD(0.1, 4), track_noise=True, progress=False)


def test_the_divergence_check_reports_the_iteration_numpy_reports():
    data = sg.datasets.regression_1d(n=64, seed=0)
    outcomes = {}
    for backend in ("numpy", "array_api_strict"):
        model = sg.MLP([1, 16, 1], loss="mse", activation="tanh", seed=0, backend=backend)
        with pytest.raises(sg.TrainingDiverged) as info:
            sg.fit(model, data, sg.MiniBatchSGD(1e5, batch_size=8, momentum=0.9), epochs=50,
                   accumulate=3, progress=False)
        error = info.value
        outcomes[backend] = (error.epoch, error.iteration, error.history.iterations,
                             error.history.steps, model.to_host(model.params))
    (*numpy_at, numpy_w), (*other_at, other_w) = outcomes["numpy"], outcomes["array_api_strict"]
    assert numpy_at == other_at
    assert all(np.array_equal(a, b) for a, b in zip(numpy_w, other_w, strict=True))


def test_importing_scratchgd_imports_no_array_library():
    code = ("import sys, scratchgd; "
            "print([m for m in ('torch', 'cupy', 'array_api_strict', 'array_api_compat') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_trains_resumes_and_predicts_across_backends(tmp_path, capsys):
    """train --backend torch --device cpu, resumed on array_api_strict's device1, read back
    by predict and evaluate on any backend: the NumPy command line's accuracy and labels."""
    from scratchgd.cli import main
    train_set, test_set = digits(np.float64)
    np.save(tmp_path / "X.npy", test_set.X)
    np.save(tmp_path / "y.npy", test_set.y)
    common = ["train", "--epochs", "2", "--no-progress", "--optimizer", "minibatch"]
    assert main([*common, "--backend", "torch", "--device", "cpu",
                 "--checkpoint", str(tmp_path / "c.npz")]) == 0
    assert main([*common, "--epochs", "3", "--backend", "array_api_strict", "--device",
                 "device1", "--checkpoint", str(tmp_path / "c.npz"), "--resume",
                 "--save", str(tmp_path / "resumed.npz")]) == 0
    assert main([*common, "--epochs", "3", "--save", str(tmp_path / "numpy.npz")]) == 0
    capsys.readouterr()
    outputs = []
    for model, backend in (("numpy.npz", "numpy"), ("resumed.npz", "torch"),
                           ("resumed.npz", "array_api_strict")):
        assert main(["predict", "--model", str(tmp_path / model), "--data",
                     str(tmp_path / "X.npy"), "--backend", backend]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert main(["evaluate", "--model", str(tmp_path / "resumed.npz"), "--data",
                 str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--backend", "torch", "--device", "cpu"]) == 0


@pytest.mark.parametrize(("argv", "words"), [
    (["train", "--epochs", "1", "--backend", "torch", "--distributed"], "--distributed trains"),
    (["train", "--epochs", "1", "--backend", "array_api_strict", "--device", "gpu"],
     "not a device of array_api_strict"),
    (["train", "--epochs", "1", "--backend", "array_api_strict", "--device", "no_float64"],
     "has no float64"),
])
def test_the_command_line_refuses_what_the_new_backends_do_not_take_in_one_line(argv, words,
                                                                                capsys):
    from scratchgd.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_the_estimators_refuse_the_new_backends():
    pytest.importorskip("sklearn", reason="needs the 'sklearn' extra")
    from scratchgd.estimators import MLPClassifier
    with pytest.raises(ValueError, match="backend"):
        MLPClassifier(backend="torch").fit(np.ones((8, 3)), np.arange(8) % 2)


def test_training_reads_the_device_once_per_step_and_its_sums_once_per_span(monkeypatch):
    """No hidden syncs: on array_api_strict every read to the host is counted."""
    import array_api_strict

    from scratchgd.engines import device
    reads = {"bool": 0, "float": 0, "int": 0, "to_numpy": 0}
    array = array_api_strict._array_object.Array
    for kind in ("bool", "float", "int"):
        original = getattr(array, f"__{kind}__")

        def counted(self, original=original, kind=kind):
            reads[kind] += 1
            return original(self)
        monkeypatch.setattr(array, f"__{kind}__", counted)
    original_to_numpy = device.to_numpy

    def to_numpy(a):
        reads["to_numpy"] += 1
        return original_to_numpy(a)
    monkeypatch.setattr(device, "to_numpy", to_numpy)
    train_set, _ = digits(np.float64)
    model = sg.MLP([64, 32, 10], seed=0, backend="array_api_strict", device="device1")
    history = sg.fit(model, train_set, sg.MiniBatchSGD(0.1, batch_size=100), epochs=2,
                     accumulate=3, progress=False)
    assert history.steps == 2 * 5 and history.iterations == 2 * 15
    assert reads == {"bool": history.steps, "float": 0, "int": 0, "to_numpy": 2 * 2}
