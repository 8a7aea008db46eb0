"""`scratchgd compile` and the one layout per argument that keeps numba from re-specialising."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

from scratchgd import precompile
from scratchgd.cli import main
from scratchgd.kernels import compiled

ROOT = Path(__file__).resolve().parents[1]

COUNT_COMPILATIONS = textwrap.dedent("""
    import contextlib, io, sys
    import numba.core.event as ev
    from scratchgd.cli import main

    class Count(ev.Listener):
        compiled = []
        def on_start(self, event):
            self.compiled.append(event.data["dispatcher"].py_func.__qualname__)
        def on_end(self, event):
            pass

    ev.register("numba:compile", Count())
    runs = [line.split() for line in sys.argv[1:]]
    for args in runs:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(args) == 0, args
        print(len(Count.compiled), " ".join(sorted(set(Count.compiled))))
        Count.compiled.clear()
""")


def _train(*flags):
    return " ".join(["train", "--backend", "numba", "--epochs", "1", "--no-progress", *flags])


@pytest.mark.slow
def test_after_compile_the_first_training_run_compiles_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "scratchgd", "compile", "--dtype", "float32"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[1/6] float32 model, X float32, no momentum")
    assert lines[-1].startswith("compiled 6 combinations")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(200, 64), dtype=np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)  # raw uint8, memory-mapped read-only by --data
    np.save(tmp_path / "X.npy", (pixels / 255).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(200) % 10)
    np.save(tmp_path / "half.npy", (pixels / 255).astype(np.float16))  # decoded: the uint8 type
    np.save(tmp_path / "big.npy", pixels.astype(">i2"))
    x32, u8, y = tmp_path / "X.npy", tmp_path / "pixels.npy", tmp_path / "y.npy"
    f16, i16 = tmp_path / "half.npy", tmp_path / "big.npy"
    runs = [_train("--dtype", "float32"),
            _train("--dtype", "float32", "--momentum", "0.9", "--optimizer", "sgd"),
            _train("--dtype", "float32", "--data", str(x32), "--labels", str(y),
                   "--activation", "tanh", "--accumulate", "3"),
            _train("--dtype", "float32", "--data", str(u8), "--labels", str(y),
                   "--optimizer", "gd", "--lr", "0.1"),
            _train("--dtype", "float32", "--data", str(f16), "--labels", str(y)),
            _train("--dtype", "float32", "--data", str(i16), "--labels", str(y), "--momentum",
                   "0.9", "--optimizer", "sgd", "--lr", "0.001")]
    if importlib.util.find_spec("mpi4py"):  # one rank of mpiexec: the compiled data-parallel span
        runs.append(_train("--dtype", "float32", "--distributed", "--momentum", "0.9"))
    runs.append(_train("--dtype", "float64"))  # not compiled above: proves the counting works
    done = subprocess.run([sys.executable, "-c", COUNT_COMPILATIONS, *runs], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    counts = [int(line.split()[0]) for line in done.stdout.splitlines()]
    assert counts[:-1] == [0] * (len(runs) - 1), done.stdout
    assert counts[-1] > 0, done.stdout


def _typeof_span_input(X, loss="cross_entropy", dtype=np.float32):
    y = np.arange(len(X)) % 2 if loss == "cross_entropy" else np.ones((len(X), 2))
    return tuple(numba.typeof(a) for a in compiled.span_input(X, y, loss, np.dtype(dtype)))


def test_span_input_gives_one_type_per_dtype_whatever_the_layout(tmp_path):
    X = np.arange(60, dtype=np.float32).reshape(10, 6)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r", allow_pickle=False)
    fortran = np.asfortranarray(X)
    every_other = np.repeat(X, 2, axis=1)[:, ::2]
    readonly = X.copy()
    readonly.flags.writeable = False
    types = {_typeof_span_input(a) for a in (X, mapped, fortran, every_other, readonly)}
    assert len(types) == 1
    (x_type, format_type, labels_type, targets_type), = types
    assert x_type == numba.types.Array(numba.float32, 2, "C", readonly=True)
    assert format_type == numba.types.none
    assert labels_type == numba.types.Array(numba.int64, 1, "C")
    # mse: the same four types (the unused labels are an empty int64 placeholder)
    assert _typeof_span_input(X, "mse") == (x_type, format_type, labels_type, targets_type)
    assert X.flags.writeable  # the caller's array is not touched


def test_every_dtype_of_X_reaches_the_kernels_as_float32_float64_or_uint8_without_a_copy():
    base = np.arange(-6, 6).reshape(4, 3)
    types = set()
    for dtype in ("f2", ">f2", "f4", ">f4", "f8", ">f8", "?", "u1", "i1", "i2", ">i2", "u2",
                  "i4", ">i4", "u4", "i8", ">i8", "u8", ">u8"):
        X = base.astype(dtype)
        x_in, x_format, _, _ = compiled.span_input(X, np.zeros(4), "cross_entropy",
                                                   np.dtype(np.float32))
        assert np.shares_memory(x_in, X), dtype
        types.add((numba.typeof(x_in), numba.typeof(x_format)))
    fmt = numba.types.UniTuple(numba.int64, 3)
    assert types == {(numba.types.Array(numba.float32, 2, "C", readonly=True), numba.types.none),
                     (numba.types.Array(numba.float64, 2, "C", readonly=True), numba.types.none),
                     (numba.types.Array(numba.uint8, 2, "C", readonly=True), fmt)}
    wide = base.astype(np.longdouble)  # x86-64: 80-bit extended in 16 bytes; elsewhere float64
    if wide.itemsize > 8:
        with pytest.raises(TypeError, match=f"X of dtype {wide.dtype} cannot be read"):
            compiled.span_input(wide, np.zeros(4), "cross_entropy", np.dtype(np.float32))
    else:
        assert compiled.x_input(wide)[1] == (compiled.FLOAT, 8, 0)


def test_cases_cover_every_dtype_of_X_with_and_without_momentum():
    todo = precompile.cases(["float32", "float64"], [1, 2])
    assert len(todo) == 2 * 2 * 3 * 2 == len(set(todo))
    assert {c.x_dtype for c in todo} == {np.float32, np.float64, np.uint8}
    assert str(todo[0]) == "float32 model, X float32, no momentum, 1 hidden layer"
    with pytest.raises(ValueError, match="dtype must be one of"):
        precompile.cases(["float16"])
    with pytest.raises(ValueError, match="hidden_layers must be integers >= 0, got -1"):
        precompile.cases(["float32"], [-1])


def test_compile_rejects_an_unknown_dtype(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compile", "--dtype", "float16"])
    assert exit_.value.code == 2
    assert "invalid choice: 'float16'" in capsys.readouterr().err


def test_an_edit_of_any_kernel_module_drops_the_whole_package_cache(tmp_path):
    from types import SimpleNamespace

    from scratchgd.kernels.compiled import cache

    kernel = SimpleNamespace(_cache=SimpleNamespace(_cache_path=str(tmp_path)))
    (tmp_path / "span.train_iterations_kernel-72.py311.nbi").write_bytes(b"index")
    (tmp_path / "gather.gather_batch-9.py311.1.nbc").write_bytes(b"code")
    (tmp_path / cache.STAMP).write_text("0" * 64)            # cached by other sources
    assert cache.drop_stale_cache(kernel)
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache.STAMP]
    (tmp_path / "span.train_iterations_kernel-72.py311.nbi").write_bytes(b"index")
    assert not cache.drop_stale_cache(kernel)                 # the same sources: kept
    assert (tmp_path / "span.train_iterations_kernel-72.py311.nbi").exists()

    package = Path(cache.__file__).parent
    copy = tmp_path / "copy"
    copy.mkdir()
    for source in package.glob("*.py"):
        (copy / source.name).write_bytes(source.read_bytes())
    assert cache.sources_fingerprint(copy) == cache.sources_fingerprint()
    (copy / "gather.py").write_text((copy / "gather.py").read_text() + "\n# edited\n")
    assert cache.sources_fingerprint(copy) != cache.sources_fingerprint()
