"""Hostile model files and checkpoints (issue 28): each probe ends in one named line, in bounded memory.

Each probe is a file an attacker or a careless user could hand to ``load_model``,
``fit(checkpoint=, resume=True)``, ``scratchgd predict`` or ``scratchgd train
--resume``. Through the command line each must end with exit status 2 and one
line on stderr naming the file (never a traceback, never a hang), and the
child's own peak RSS (``os.wait4``) must stay under ``PEAK_MB``. The Hypothesis
fuzz at the end flips and cuts the bytes of a model file and a checkpoint: each
is refused with a ``ValueError`` naming the file, or loads a valid model.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from crashes import Crash, crash_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scratchgd as sg
from scratchgd import checkpoint as ck
from scratchgd import npzfile

PEAK_MB = 256
"""The issue's bound on a refusing process's peak resident memory (NumPy backend)."""
HANG_SECONDS = 60
"""A child still running after this long has hung (a FIFO opened for reading blocks)."""

DATA = sg.datasets.blobs(n=90, seed=1)


REAPER = """
import os, signal, subprocess, sys, time
peak_file, timeout, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
process = subprocess.Popen(args)
deadline = time.monotonic() + timeout
while True:
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if pid:
        break
    if time.monotonic() > deadline:
        process.kill()
        process.wait()
        sys.exit(124)
    time.sleep(0.02)
with open(peak_file, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs a command and writes its own peak RSS (KiB, from ``os.wait4``) to a file.

A small process of its own, because Linux carries a process's peak RSS across
``exec``: a child forked straight from the test process would report at
least the test process's size.
"""


def child(args: list, cwd: Path, timeout: float = HANG_SECONDS, limit_kib: int | None = None
          ) -> tuple[int, str, float]:
    """Run ``python -m scratchgd *args``; its exit status, stderr and own peak RSS in MB.

    ``limit_kib``: run it under ``ulimit -v`` (``RLIMIT_AS``) of that many KiB.
    A child still running after ``timeout`` seconds is killed and fails the test.
    """
    env = {**os.environ, "PYTHONPATH": str(Path(sg.__file__).parents[1])}
    peak_file = cwd / "peak.txt"
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        limit = [] if limit_kib is None else ["bash", "-c", f'ulimit -v {limit_kib} && exec "$@"',
                                              "limit"]
        status = subprocess.run([sys.executable, "-c", REAPER, str(peak_file), str(timeout),
                                 *limit, sys.executable, "-m", "scratchgd", *map(str, args)],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                env=env).returncode
    if status == 124:
        pytest.fail(f"scratchgd {' '.join(map(str, args))} hung for {timeout} s")
    return (status, (cwd / "stderr.txt").read_text(errors="replace"),
            int(peak_file.read_text()) / 1024)


def assert_one_line(status: int, err: str, peak: float, *words: str) -> None:
    """Exit status 2, one line ``scratchgd: error: ...`` holding ``words``, peak RSS bounded."""
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("scratchgd: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"


def train(path: Path, epochs: int = 1, crash_at_step: int | None = None, loss="cross_entropy",
          data=DATA, **kwargs) -> sg.History:
    """A small run checkpointed at ``path`` (mid-epoch if ``crash_at_step``)."""
    optimizer = crash_at(sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9), crash_at_step)
    k = 3 if loss == "cross_entropy" else 1
    try:
        return sg.fit(sg.MLP([2, 8, k], loss=loss, seed=0), data, optimizer, epochs=epochs,
                      progress=False, seed=3, checkpoint=path, checkpoint_every=2, **kwargs)
    except Crash:
        return None


def rewrite(path: Path, meta_change=None, **changes) -> None:
    """Rewrite ``path`` with entries replaced (``None`` deletes) and ``meta_change(meta)`` applied."""
    arrays = npzfile.read_npz(path)
    if meta_change is not None:
        meta = json.loads(str(arrays["meta"]))
        meta_change(meta)
        arrays["meta"] = np.array(json.dumps(meta))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def setter(*keys_and_value):
    """``meta_change`` that sets ``meta[k1][k2]... = value``."""
    *keys, last, value = keys_and_value

    def change(meta):
        for key in keys:
            meta = meta[key]
        meta[last] = value
    return change


# -- forged fields of a checkpoint: each by its own rule ------------------------------------

FORGED = {
    "correct of 10**9": (setter("position", "correct", 10**9), {}, "correct"),
    "non-finite loss_sum": (setter("position", "loss_sum", math.inf), {}, "loss_sum"),
    "NaN loss_sum": (setter("position", "loss_sum", math.nan), {}, "loss_sum"),
    "all-zero order": (None, {"order": np.zeros(90, dtype=np.int64)}, "permutation"),
    "order out of range": (None, {"order": np.arange(90) + 1}, "row order"),
    "samples_seen of 10**100": (setter("history", "samples_seen", 10**100), {}, "samples_seen"),
    "samples_seen beyond the batches": (setter("history", "samples_seen", 10**6), {},
                                        "samples_seen"),
    "steps beyond iterations": (setter("history", "steps", 10**4), {}, "steps"),
    "forged generator state": (setter("rng", "state", "state", 10**100), {},
                               "unusable generator state"),
    "generator state of strings": (setter("rng", "state", "x"), {}, "generator state"),
    "NaN epoch_loss": (None, {"history_epoch_loss": np.array([math.nan])}, "epoch_loss"),
    "accuracy 2": (None, {"history_epoch_accuracy": np.array([2.0])}, "epoch_accuracy"),
    "negative iteration_loss": (None, {"history_iteration_loss": -np.ones(8)},
                                "iteration_loss"),
    "val_loss of another length": (None, {"history_val_loss": np.ones(3)}, "val_loss"),
    "epochs beyond the lists": (setter("history", "epochs", 2), {}, "epoch_loss"),
    "epoch beyond the history": (setter("position", "epoch", 3), {}, "finished epochs"),
    "noise sums without track_noise": (setter("position", "noise_grad_sq", 1.0), {}, "noise"),
    "noise_batches beyond iterations": (setter("position", "noise_batches", 99), {},
                                        "noise_batches"),
    "epoch 0": (setter("position", "epoch", 0), {}, "epoch"),
    "data of another set": (setter("data", "sha256", "0" * 64), {}, "another data set"),
    "scale std subnormal": (None, {"scale_std": np.full(2, 1e-320),
                                   "scale_mean": np.zeros(2)}, "std"),
}


@pytest.fixture
def mid_epoch(tmp_path) -> Path:
    """A checkpoint of epoch 2, iteration 2 (6 iterations per epoch), with a row order."""
    path = tmp_path / "run.npz"
    train(path, epochs=3, crash_at_step=9)
    return path


@pytest.mark.parametrize("name", list(FORGED))
def test_a_forged_checkpoint_field_is_refused_naming_it(mid_epoch, name):
    meta_change, arrays, word = FORGED[name]
    rewrite(mid_epoch, meta_change, **arrays)
    before = mid_epoch.read_bytes()
    model = sg.MLP([2, 8, 3], seed=0)
    weights = [p.copy() for p in model.params]
    with pytest.raises(ValueError, match=f"run.npz.*{word}") as info:
        sg.fit(model, DATA, sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9), epochs=3,
               progress=False, seed=3, checkpoint=mid_epoch, checkpoint_every=2, resume=True)
    assert "\n" not in str(info.value)
    assert all(np.array_equal(p, q) for p, q in zip(model.params, weights, strict=True))
    assert mid_epoch.read_bytes() == before


def test_the_unforged_checkpoint_resumes(mid_epoch):
    history = sg.fit(sg.MLP([2, 8, 3], seed=0), DATA,
                     sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9), epochs=3,
                     progress=False, seed=3, checkpoint=mid_epoch, checkpoint_every=2,
                     resume=True)
    assert history.epochs == 3


def test_a_regressor_checkpoint_with_a_correct_count_is_refused(tmp_path):
    data = sg.Dataset(DATA.X, np.asarray(DATA.y, dtype=np.float64)[:, None])
    path = tmp_path / "run.npz"
    train(path, epochs=2, crash_at_step=8, loss="mse", data=data)
    rewrite(path, setter("position", "correct", 3))
    with pytest.raises(ValueError, match="run.npz.*correct"):
        ck.load(path)
    rewrite(path, setter("position", "correct", 0),
            history_epoch_accuracy=np.array([0.5]))  # NaN for mse
    with pytest.raises(ValueError, match="run.npz.*epoch_accuracy"):
        ck.load(path)


# -- through the command line: one line, exit 2, bounded memory ------------------------------


@pytest.fixture
def cli_files(tmp_path) -> Path:
    """A model file and a checkpoint written by ``scratchgd train`` on blobs, and rows to predict."""
    status, err, _ = child(["train", "--dataset", "blobs", "--epochs", "1", "--hidden", "8",
                            "--no-progress", "--save", "model.npz", "--checkpoint", "ck.npz"],
                           tmp_path)
    assert status == 0, err
    np.savetxt(tmp_path / "rows.csv", np.asarray(DATA.X[:5]), delimiter=",")
    return tmp_path


def test_cli_refuses_a_forged_checkpoint_in_one_line(cli_files):
    rewrite(cli_files / "ck.npz", setter("position", "correct", 10**9))
    status, err, peak = child(["train", "--dataset", "blobs", "--epochs", "2", "--hidden", "8",
                               "--no-progress", "--checkpoint", "ck.npz", "--resume"], cli_files)
    assert_one_line(status, err, peak, "ck.npz", "correct")


def test_cli_refuses_a_subnormal_scaling_and_never_predicts_nan(cli_files):
    model = sg.load_model(cli_files / "model.npz")
    d = model.n_inputs
    rewrite(cli_files / "model.npz", scale_mean=np.zeros(d), scale_std=np.full(d, 1e-320))
    status, err, peak = child(["predict", "--model", "model.npz", "--data", "rows.csv"],
                              cli_files)
    assert_one_line(status, err, peak, "model.npz", "std")
    # a normal std accepted, but inputs so far out that the outputs overflow: refused, not NaN
    rewrite(cli_files / "model.npz", scale_std=np.full(d, 1e-300))
    np.savetxt(cli_files / "far.csv", np.full((3, d), 1e300), delimiter=",")
    for command in ("predict", "evaluate"):
        extra = ["--labels", "labels.csv"] if command == "evaluate" else []
        np.savetxt(cli_files / "labels.csv", np.zeros(3, dtype=int), fmt="%d")
        status, err, peak = child([command, "--model", "model.npz", "--data", "far.csv", *extra],
                                  cli_files)
        assert_one_line(status, err, peak, "not finite")


def test_more_classes_than_training_rows_is_refused_with_a_hint(tmp_path):
    rows = np.column_stack([np.arange(20.0), np.arange(20.0) % 3])
    rows[0, 1] = 4_999_999  # one typo: 5,000,000 outputs
    np.savetxt(tmp_path / "t.csv", rows, delimiter=",", fmt="%.17g")
    status, err, peak = child(["train", "--data", "t.csv", "--loss", "cross_entropy",
                               "--epochs", "1", "--no-progress"], tmp_path)
    assert_one_line(status, err, peak, "5000000 classes", "--loss mse")


# -- the file itself: what it is, how it is compressed, what it declares ----------------------


def raw_zip(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip of ``(name, method, compressed bytes, crc32, uncompressed size)`` entries, as given.

    Written by hand, so a test can declare what ``zipfile`` would never write:
    bzip2 data made elsewhere, a name twice, sizes that do not match the data.
    """
    local, central = b"", b""
    for name, method, data, crc, size in entries:
        encoded = name.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 46, 0, method, 0, 0x21,
                               crc, len(data), size, len(encoded), 0, 0, 0, 0, 0,
                               len(local)) + encoded
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 46, 0, method, 0, 0x21, crc,
                             len(data), size, len(encoded), 0) + encoded + data
    return local + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries),
                                         len(entries), len(central), len(local), 0)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def stored(name: str, array: np.ndarray) -> tuple[str, int, bytes, int, int]:
    data = npy_bytes(array)
    return f"{name}.npy", zipfile.ZIP_STORED, data, zlib.crc32(data), len(data)


def model_meta(sizes=(2, 3)) -> np.ndarray:
    return np.array(json.dumps({"format": "scratchgd-model", "version": 2, "model": {
        "sizes": list(sizes), "activation": "relu", "loss": "cross_entropy",
        "dtype": "float64"}}))


def weights(sizes=(2, 3)) -> list:
    return [stored(f"param_{i}", np.zeros(shape)) for i, shape in
            enumerate([(sizes[0], sizes[1]), (sizes[1],)])]


BZIP2_GIB = base64.b64decode(
    "QlpoOTFBWSZTWZGsdq4FfkBfoOAQQOR81AEDQiCvRd0KCAAACCAAlIZEp+qNGmhp6T0QyaB6T9KCKqepkMEBgAQA"
    "IflEAVVEgAoAqqJr9wBQBJJIIwreoRsCKixnmjOhbi1sWlGF0kky+twFWVMcvE87vrrW8NB81QmJ2rp2pQLTbZMX"
    "uoBIABJJIn8xQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZC"
    "oCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAl"
    "qQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakK"
    "gJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCX"
    "MUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFB"
    "WSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkm"
    "U1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZ"
    "Dgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J"
    "4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLf"
    "AV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFf"
    "jkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWevONKwAilrA"
    "CMAAAAgACCAAMMwFKaaSkSGwpSJDxdyRThQkG31Xa0A=")
"""bzip2 (level 9) of a 1 GiB ``.npy`` of zeros, shape ``((2**30 - 128) // 8,)``: made by
``bz2.compress(header + bytes(2**30 - 128))`` (40 s), kept here as its 890 bytes."""
BZIP2_GIB_CRC = 0x0b80871e


def forged_files(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each file-level probe: a path (model file or checkpoint) and the words its refusal holds."""
    probes = {}

    def probe(name: str, content: bytes, *words: str) -> None:
        (folder / name).write_bytes(content)
        probes[name] = (folder / name, list(words))

    header = np.lib.format
    probe("bzip2.npz", raw_zip([stored("meta", model_meta((2**14, 2**14)))] + [
        (f"param_{i}.npy", zipfile.ZIP_BZIP2, BZIP2_GIB, BZIP2_GIB_CRC, 2**30)
        for i in range(2)]), "bzip2.npz", "method 12")
    lzma = zlib.compress(b"")  # any bytes: refused by the method alone, never decompressed
    probe("lzma.npz", raw_zip([stored("meta", model_meta()), ("param_0.npy", zipfile.ZIP_LZMA,
                                                              lzma, 0, 10**9)]),
          "lzma.npz", "method 14")
    probe("twice.npz", raw_zip([stored("meta", model_meta()), *weights(),
                                stored("param_1", np.ones(3))]), "twice.npz", "twice")
    nested = np.array("[" * 100_000 + "]" * 100_000)
    probe("nested.npz", raw_zip([stored("meta", nested), *weights()]), "nested.npz",
          "unreadable meta")
    big_meta = np.array(json.dumps({"format": "scratchgd-model", "pad": "x" * 300_000}))
    probe("big_meta.npz", raw_zip([stored("meta", big_meta), *weights()]), "big_meta.npz",
          "cap")
    buffer = io.BytesIO()
    header.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                           "shape": (20, -3)})
    negative = buffer.getvalue()
    probe("negative.npz", raw_zip([stored("meta", model_meta()), weights()[1],
                                   ("param_0.npy", 0, negative, zlib.crc32(negative),
                                    len(negative))]), "negative.npz", "(20, -3)")
    buffer = io.BytesIO()
    header.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                           "shape": (2**14, 2**14)})
    huge = buffer.getvalue()  # 2 GiB declared, consistently, then the deflate stream ends
    deflate = zlib.compressobj(wbits=-15)
    probe("huge.npz", raw_zip([stored("meta", model_meta((2**14, 2**14))),
                               ("param_0.npy", zipfile.ZIP_DEFLATED,
                                deflate.compress(huge + bytes(2**16))
                                + deflate.flush(zlib.Z_SYNC_FLUSH), 0,
                                len(huge) + 2**31)]), "huge.npz")
    probe("beyond_meta.npz", raw_zip([stored("meta", model_meta()),
                                      stored("param_0", np.zeros((2000, 3))), weights()[1]]),
          "beyond_meta.npz", "param_0", "meta implies")
    probe("extra.npz", raw_zip([stored("meta", model_meta()), *weights(),
                                stored("extra", np.zeros(1))]), "extra.npz", "unexpected")
    probe("longer.npz", raw_zip([stored("meta", model_meta()), weights()[0],
                                 ("param_1.npy", 0, npy_bytes(np.zeros(3)) + b"\0" * 64, 0,
                                  len(npy_bytes(np.zeros(3))) + 64)]), "longer.npz", "longer")
    probe("empty.npz", b"", "empty.npz")
    return probes


PROBES = ["bzip2.npz", "lzma.npz", "twice.npz", "nested.npz", "big_meta.npz", "negative.npz",
          "huge.npz", "beyond_meta.npz", "extra.npz", "longer.npz", "empty.npz"]


@pytest.mark.parametrize("name", PROBES)
def test_a_forged_file_is_refused_naming_it(tmp_path, name):
    path, words = forged_files(tmp_path)[name]
    with pytest.raises(ValueError) as info:
        sg.load_model(path)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(ValueError, match=name):
        ck.load(path)


@pytest.mark.parametrize("name", ["bzip2.npz", "twice.npz", "nested.npz", "huge.npz",
                                  "negative.npz"])
def test_cli_refuses_a_forged_model_file_in_bounded_memory(tmp_path, name):
    path, words = forged_files(tmp_path)[name]
    np.savetxt(tmp_path / "rows.csv", np.zeros((2, 2)), delimiter=",")
    status, err, peak = child(["predict", "--model", path.name, "--data", "rows.csv"],
                              tmp_path)
    assert_one_line(status, err, peak, *words)


def test_the_memory_limit_is_the_process_limit_not_the_machine(tmp_path):
    """2 GiB declared, under ``ulimit -v`` of 1.5 GiB: refused before reading, naming the limit."""
    path, _ = forged_files(tmp_path)["huge.npz"]
    np.savetxt(tmp_path / "rows.csv", np.zeros((2, 2)), delimiter=",")
    status, err, peak = child(["predict", "--model", path.name, "--data", "rows.csv"],
                              tmp_path, limit_kib=3 * 2**19)
    assert_one_line(status, err, peak, "huge.npz", "more than the", "this process may use")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_what_is_not_a_regular_file_is_refused_saying_what_it_is(tmp_path, kind):
    """A FIFO is never opened (that would block until a writer comes); /dev/zero never read."""
    path = {"fifo": tmp_path / "pipe.npz", "device": Path("/dev/zero"),
            "folder": tmp_path / "folder.npz"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    what = {"fifo": "FIFO", "device": "character device", "folder": "folder"}[kind]
    np.savetxt(tmp_path / "rows.csv", np.zeros((2, 2)), delimiter=",")
    status, err, peak = child(["predict", "--model", path, "--data", "rows.csv"], tmp_path)
    assert_one_line(status, err, peak, str(path), what)
    status, err, peak = child(["train", "--dataset", "blobs", "--epochs", "1", "--no-progress",
                               "--checkpoint", path, "--resume"], tmp_path)
    assert_one_line(status, err, peak, str(path), what)
    with pytest.raises(ValueError, match=what):
        sg.load_model(path)
    if kind != "device":  # never write over /dev/zero, even by mistake
        with pytest.raises(ValueError, match=what):
            sg.fit(sg.MLP([2, 3, 3]), DATA, sg.GD(0.1), epochs=1, progress=False,
                   checkpoint=path)
        with pytest.raises(ValueError, match=what):  # nor replaced by a model file
            sg.MLP([2, 3, 3]).save(path)
        assert {"fifo": path.is_fifo, "folder": path.is_dir}[kind]()


# -- fuzz: flipped, cut and spliced bytes of a model file and a checkpoint ---------------------


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of a model file (input scaling) and of a mid-epoch checkpoint with momentum."""
    folder = tmp_path_factory.mktemp("originals")
    model = sg.MLP([2, 4, 3], seed=0)
    sg.standardize(model, DATA)
    model.save(folder / "model.npz")
    train(folder / "ck.npz", epochs=2, crash_at_step=9)
    return {name: (folder / name).read_bytes() for name in ("model.npz", "ck.npz")}


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """``original`` with 1 to 4 changes: a byte flipped or set, a cut, a splice of random bytes."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "set", "cut", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at + draw(st.integers(0, 8))] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_damaged_bytes_are_refused_naming_the_file_or_load_a_valid_model(tmp_path, originals,
                                                                         data):
    name = data.draw(st.sampled_from(sorted(originals)))
    path = tmp_path / name
    path.write_bytes(data.draw(damaged(originals[name])))
    try:
        model = sg.load_model(path)
    except ValueError as exc:
        assert name in str(exc) and "\n" not in str(exc)
        return
    sizes = [2, 4, 3] if name == "model.npz" else [2, 8, 3]
    assert model.sizes == sizes  # a damaged description is refused, not believed
    for p, q in zip(model.params, sg.MLP(sizes).params, strict=True):
        assert p.shape == q.shape and np.isfinite(p).all()
    if model.scaling is not None:
        assert (model.scaling.std >= np.finfo(np.float64).tiny).all()
    if name == "ck.npz":
        ck.load(path)  # what loads as a model loads as a checkpoint
