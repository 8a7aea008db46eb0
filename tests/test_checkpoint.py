"""Checkpoints: resuming is bit-identical, and broken or malicious files are refused."""

import dataclasses
import io
import json
import os
import zipfile

import numpy as np
import pytest
from crashes import Crash, crash_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scratchgd as sg
from scratchgd import checkpoint as ck

DATA = sg.datasets.blobs(n=90, seed=1)
VALIDATION = sg.datasets.blobs(n=30, seed=2)


def train(path=None, every="epoch", resume=False, crash_at_step=None, epochs=3,
          accumulate=2, optimizer=None, sizes=(2, 8, 3)):
    """Train a small model; with ``crash_at_step`` stop abruptly inside that training step."""
    model = sg.MLP(list(sizes), seed=0)
    optimizer = crash_at(optimizer or sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9),
                         crash_at_step)
    history = sg.fit(model, DATA, optimizer, epochs=epochs, accumulate=accumulate,
                     validation=VALIDATION, progress=False, seed=3, checkpoint=path,
                     checkpoint_every=every, resume=resume)
    return model, history


def comparable(history):
    """History as a dict, without ``epoch_seconds`` (wall-clock time differs on a resume)."""
    fields = dataclasses.asdict(history)
    fields.pop("epoch_seconds")
    return fields


def assert_same_run(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    for p, q in zip(model_a.params, model_b.params, strict=True):
        assert np.array_equal(p, q)
    assert comparable(history_a) == comparable(history_b)


OPTIMIZERS = {
    "minibatch+momentum": lambda: sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9),
    "sgd": lambda: sg.SGD(lr=0.05),
    "gd+momentum": lambda: sg.GD(lr=0.5, momentum=0.5),
    "minibatch+chunks": lambda: sg.MiniBatchSGD(lr=0.1, batch_size=16, shuffle="chunks",
                                                chunk_size=10),
}


CASES = ([("minibatch+momentum", every, accumulate) for every in ("epoch", 1, 4)
          for accumulate in (1, 3, "epoch")]
         + [("sgd", "epoch", 1), ("sgd", 7, 3), ("sgd", 20, 1),
            ("gd+momentum", "epoch", 1), ("gd+momentum", 1, 1), ("gd+momentum", 1, "epoch"),
            ("minibatch+chunks", 2, 1)])


@pytest.mark.parametrize("name, every, accumulate", CASES)
def test_resume_after_crash_is_bit_identical(tmp_path, name, every, accumulate):
    reference = train(optimizer=OPTIMIZERS[name](), accumulate=accumulate)
    steps = reference[1].steps
    for crash in sorted({1, 2, steps // 2, steps - 1, steps}):
        path = tmp_path / f"run{crash}.npz"
        with pytest.raises(Crash):
            train(path, every, crash_at_step=crash, optimizer=OPTIMIZERS[name](),
                  accumulate=accumulate)
        resumed = train(path, every, resume=True, optimizer=OPTIMIZERS[name](),
                        accumulate=accumulate)
        assert_same_run(resumed, reference)


def test_resume_twice_and_train_on_for_more_epochs(tmp_path):
    path = tmp_path / "run.npz"
    reference = train(epochs=5)
    with pytest.raises(Crash):
        train(path, every=2, crash_at_step=5, epochs=3)
    with pytest.raises(Crash):
        train(path, every=2, crash_at_step=4, epochs=3, resume=True)
    train(path, every=2, epochs=3, resume=True)
    assert_same_run(train(path, every=2, epochs=5, resume=True), reference)


def test_resume_without_a_file_starts_afresh_and_a_finished_run_returns_at_once(tmp_path):
    path = tmp_path / "run.npz"
    reference = train()
    first = train(path, resume=True)
    assert_same_run(first, reference)
    again = train(path, resume=True)  # the checkpoint is at the end: nothing left to train
    assert_same_run(again, reference)


def test_checkpoint_holds_the_history_so_far(tmp_path):
    path = tmp_path / "run.npz"
    with pytest.raises(Crash):
        train(path, every=2, crash_at_step=5, accumulate=1)  # 6 iterations per epoch
    saved = ck.load(path)
    assert saved.history["steps"] == 4 and saved.position["iteration"] == 4
    assert len(saved.history["iteration_loss"]) == 4
    assert saved.velocity is not None and saved.order is not None
    assert sorted(saved.order.tolist()) == list(range(len(DATA)))


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    path = tmp_path / "run.npz"
    train(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="sizes"):
        train(path, resume=True, sizes=(2, 5, 3))
    with pytest.raises(ValueError, match="lr"):
        train(path, resume=True, optimizer=sg.MiniBatchSGD(lr=0.2, batch_size=16, momentum=0.9))
    with pytest.raises(ValueError, match="accumulate"):
        train(path, resume=True, accumulate=1)
    with pytest.raises(ValueError, match="epochs=2"):
        train(path, resume=True, epochs=2)
    model = sg.MLP([2, 8, 3], seed=5)
    weights = [p.copy() for p in model.params]
    with pytest.raises(ValueError, match="seed"):
        sg.fit(model, DATA, sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9), epochs=3,
               accumulate=2, progress=False, seed=4, checkpoint=path, resume=True)
    assert all(np.array_equal(p, q) for p, q in zip(model.params, weights, strict=True))
    assert path.read_bytes() == before


def test_checkpoint_arguments_are_checked(tmp_path):
    model, opt = sg.MLP([2, 4, 3]), sg.GD(lr=0.1)
    for kwargs, error, word in [
        ({"resume": True}, ValueError, "checkpoint"),
        ({"checkpoint": 3}, TypeError, "checkpoint"),
        ({"checkpoint": tmp_path / "missing" / "x.npz"}, ValueError, "folder"),
        ({"checkpoint": tmp_path}, ValueError, "folder"),
        ({"checkpoint": tmp_path / "x.npz", "checkpoint_every": 0}, ValueError, "checkpoint_every"),
        ({"checkpoint": tmp_path / "x.npz", "checkpoint_every": "step"}, ValueError,
         "checkpoint_every"),
        ({"checkpoint": tmp_path / "x.npz", "resume": "yes"}, TypeError, "resume"),
    ]:
        with pytest.raises(error, match=word):
            sg.fit(model, DATA, opt, epochs=1, progress=False, **kwargs)
    assert not list(tmp_path.iterdir())


# -- broken and malicious files ------------------------------------------------------------


class MakesMarker:
    """Unpickling this object would create the file ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def good_checkpoint(tmp_path):
    path = tmp_path / "good.npz"
    train(path, epochs=1)
    return path


def rewrite(path, **changes):
    """Rewrite the arrays of ``path`` with some entries replaced (None deletes)."""
    arrays = ck.read_npz(path)
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def test_pickled_object_array_is_refused_without_running_it(tmp_path, good_checkpoint):
    marker = tmp_path / "marker"
    evil = np.array([MakesMarker(marker)], dtype=object)
    rewrite(good_checkpoint, param_0=evil)
    with pytest.raises(ValueError, match="good.npz.*Python objects"):
        ck.load(good_checkpoint)
    only_evil = tmp_path / "evil.npz"
    np.savez(only_evil, evil=evil)
    with pytest.raises(ValueError, match="evil.npz.*Python objects"):
        ck.read_npz(only_evil)
    raw_pickle = tmp_path / "raw.npz"
    np.save(raw_pickle, evil, allow_pickle=True)
    os.replace(str(raw_pickle) + ".npy", raw_pickle)
    with pytest.raises(ValueError, match="raw.npz"):
        ck.load(raw_pickle)
    with pytest.raises(ValueError, match="raw.npz"):
        train(raw_pickle, resume=True)
    assert not marker.exists()


def test_truncated_or_damaged_file_is_refused_or_reads_the_same(tmp_path, good_checkpoint):
    data = good_checkpoint.read_bytes()
    original = ck.load(good_checkpoint)
    broken = tmp_path / "broken.npz"
    for size in [0, 1, 22, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1]:
        broken.write_bytes(data[:size])
        with pytest.raises(ValueError, match="broken.npz"):
            ck.load(broken)
    for position in range(0, len(data), max(1, len(data) // 97)):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        broken.write_bytes(bytes(damaged))
        try:
            loaded = ck.load(broken)
        except ValueError as exc:
            assert "broken.npz" in str(exc)
        else:  # a byte the reader does not use (a time stamp): the content is unchanged
            assert loaded.meta == original.meta
            assert all(np.array_equal(p, q) for p, q in zip(loaded.params, original.params, strict=True))


def write_forged_header(path, member: str) -> None:
    """An .npz whose ``member`` claims 10**15 float64 values and holds 64 bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{member}.npy", header.getvalue() + b"\0" * 64)


def test_forged_header_shape_is_refused_before_allocating(tmp_path):
    write_forged_header(tmp_path / "forged.npz", "meta")
    with pytest.raises(ValueError, match="forged.npz.*truncated"):
        ck.load(tmp_path / "forged.npz")


@pytest.mark.parametrize("change, word", [
    ({"param_0": np.zeros((3, 8))}, "param_0"),
    ({"param_1": np.zeros(8, dtype=np.float32)}, "param_1"),
    ({"param_2": np.full((8, 3), np.nan)}, "non-finite"),
    ({"param_3": None}, "param_3"),
    ({"velocity_0": None}, "velocity_0"),
    ({"history_iteration_loss": np.zeros(2)}, "iteration_loss"),
    ({"meta": np.array("{not json")}, "meta"),
    ({"meta": np.array(json.dumps({"format": "other"}))}, "not a scratchgd checkpoint"),
    ({"meta": np.arange(3)}, "meta"),
    ({"extra": np.zeros(1)}, "unexpected"),
])
def test_wrong_shapes_and_entries_are_refused(good_checkpoint, change, word):
    rewrite(good_checkpoint, **change)
    with pytest.raises(ValueError, match=word):
        ck.load(good_checkpoint)


def test_meta_with_wrong_types_is_refused(good_checkpoint):
    meta = json.loads(str(ck.read_npz(good_checkpoint)["meta"]))
    for part, key, value in [("position", "iteration", "3"), ("position", "epoch", 0),
                             ("model", "sizes", [2, -1]), ("history", "steps", -1),
                             ("rng", "bit_generator", "MT19937"), ("position", "iteration", 5)]:
        changed = json.loads(json.dumps(meta))
        changed[part][key] = value
        rewrite(good_checkpoint, meta=np.array(json.dumps(changed)))
        with pytest.raises(ValueError, match="good.npz"):
            saved = ck.load(good_checkpoint)
            model, opt = sg.MLP([2, 8, 3]), sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9)
            saved.check(model, opt, opt.loader(DATA, seed=3),
                        {"accumulate": 2, "seed": 3, "rows": len(DATA), "features": 2})


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    ck.write_npz_atomic(path, {"a": np.arange(3)})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="space"):
        ck.write_npz_atomic(path, {"a": np.arange(5)})
    assert np.array_equal(ck.read_npz(path)["a"], np.arange(3))
    assert os.listdir(tmp_path) == ["run.npz"]


def test_leftover_temporary_files_are_removed(tmp_path):
    path = tmp_path / "run.npz"
    left = tmp_path / ".run.npz.abc123.tmp"
    other = tmp_path / ".other.npz.abc123.tmp"
    left.write_bytes(b"half")
    other.write_bytes(b"not ours")
    train(path, epochs=1)
    assert not left.exists() and other.exists() and path.exists()


# -- what a resume checks: the data, the validation lists, any sequence of fit calls --------


def test_resume_on_another_data_set_of_the_same_shape_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    train(path, epochs=1)
    other = sg.datasets.blobs(n=90, seed=7)  # blobs as DATA, other rows: same shape
    before = path.read_bytes()
    with pytest.raises(ValueError, match="run.npz.*another data set"):
        sg.fit(sg.MLP([2, 8, 3], seed=0), other, sg.MiniBatchSGD(lr=0.1, batch_size=16,
                                                                 momentum=0.9),
               epochs=2, accumulate=2, progress=False, seed=3, checkpoint=path, resume=True)
    assert path.read_bytes() == before


def test_the_fingerprint_is_the_same_for_a_table_read_from_csv_or_npy(tmp_path):
    data = sg.datasets.blobs(n=2000, seed=3)
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
    np.savetxt(tmp_path / "t.csv", np.column_stack([X, y]), fmt="%.17g", delimiter=",")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.int32))
    from_csv = ck.fingerprint(sg.Dataset.from_csv(tmp_path / "t.csv"))
    from_npy = ck.fingerprint(sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy"))
    assert from_csv == from_npy and from_csv["sampled_rows"] == ck.FINGERPRINT_ROWS
    X[2] += 1.0  # row 2 is not sampled (rows 0, 1, 3, 5, ... of 2000): documented as missed
    assert ck.fingerprint(sg.Dataset(X, y)) == from_npy
    X[0] += 1.0
    assert ck.fingerprint(sg.Dataset(X, y)) != from_npy


def test_a_resume_may_drop_and_add_validation(tmp_path):
    """The issue's sequence: validated, then resumed without validation twice, then with it."""
    path = tmp_path / "run.npz"

    def run(epochs, validation):
        return sg.fit(sg.MLP([2, 8, 3], seed=0), DATA, sg.GD(lr=0.5), epochs=epochs,
                      validation=validation, progress=False, checkpoint=path, resume=True)

    run(2, VALIDATION)
    run(3, None)
    history = run(4, None)
    assert np.isnan(history.val_loss[2:]).all() and np.isnan(history.val_accuracy[2:]).all()
    history = run(5, VALIDATION)
    assert len(history.val_loss) == len(history.val_accuracy) == history.epochs == 5
    assert np.isfinite(history.val_loss[:2] + history.val_loss[4:]).all()
    fresh = tmp_path / "fresh.npz"  # validation added to a run that had none
    sg.fit(sg.MLP([2, 8, 3], seed=0), DATA, sg.GD(lr=0.5), epochs=2, progress=False,
           checkpoint=fresh)
    history = sg.fit(sg.MLP([2, 8, 3], seed=0), DATA, sg.GD(lr=0.5), epochs=3,
                     validation=VALIDATION, progress=False, checkpoint=fresh, resume=True)
    assert np.isnan(history.val_loss[:2]).all() and np.isfinite(history.val_loss[2])


def test_a_version_4_checkpoint_with_short_validation_lists_is_read_padded(tmp_path):
    """What fit wrote before version 5: validated for 1 epoch, then 2 without (shorter lists)."""
    path = tmp_path / "run.npz"
    sg.fit(sg.MLP([2, 8, 3], seed=0), DATA, sg.GD(lr=0.5), epochs=3, validation=VALIDATION,
           progress=False, checkpoint=path)
    arrays = ck.read_npz(path)
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 4
    del meta["data"]  # no fingerprint before version 5: not checked
    arrays.update(meta=np.array(json.dumps(meta)), history_val_loss=arrays["history_val_loss"][:1],
                  history_val_accuracy=arrays["history_val_accuracy"][:1])
    np.savez(path, **arrays)
    saved = ck.load(path)
    assert len(saved.history["val_loss"]) == 3 and np.isnan(saved.history["val_loss"][1:]).all()
    history = sg.fit(sg.MLP([2, 8, 3], seed=0), sg.datasets.blobs(n=90, seed=7), sg.GD(lr=0.5),
                     epochs=4, progress=False, checkpoint=path, resume=True)
    assert len(history.val_loss) == 4


@st.composite
def fit_calls(draw):
    """A run's loss and 1 to 4 calls of fit on its checkpoint, each one (epochs more, validation,
    checkpoint_every, a crash at some step)."""
    calls = draw(st.lists(st.tuples(st.integers(0, 2), st.booleans(),
                                    st.sampled_from(["epoch", 1, 3]),
                                    st.one_of(st.none(), st.integers(1, 12))),
                          min_size=1, max_size=4))
    return draw(st.sampled_from(["cross_entropy", "mse"])), calls


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fit_calls())
def test_any_sequence_of_fit_calls_leaves_a_checkpoint_the_next_accepts(tmp_path, run):
    loss, calls = run
    path = tmp_path / "run.npz"
    if path.exists():
        path.unlink()
    data, validation = DATA, VALIDATION
    if loss == "mse":
        data, validation = (sg.Dataset(d.X, np.asarray(d.y, dtype=np.float64)[:, None])
                            for d in (DATA, VALIDATION))
    top = 0  # the most epochs asked for so far: the checkpoint is never beyond it
    for more, validate, every, crash in calls:
        top = max(1, top + more)
        optimizer = crash_at(sg.MiniBatchSGD(lr=0.01, batch_size=16, momentum=0.5), crash)
        try:
            history = sg.fit(sg.MLP([2, 5, 3 if loss == "cross_entropy" else 1], loss=loss,
                                    seed=0), data, optimizer, epochs=top,
                             validation=validation if validate else None, progress=False,
                             checkpoint=path, checkpoint_every=every, resume=True)
        except Crash:
            continue
        assert history.epochs == top
        for values in (history.val_loss, history.val_accuracy):
            assert len(values) in (0, history.epochs)
    if path.exists():  # what the last call left: read, and accepted by one more call
        ck.load(path)
        sg.fit(sg.MLP([2, 5, 3 if loss == "cross_entropy" else 1], loss=loss, seed=0), data,
               sg.MiniBatchSGD(lr=0.01, batch_size=16, momentum=0.5), epochs=top + 1,
               progress=False, checkpoint=path, resume=True)


def test_a_gd_run_resumes_under_another_memory_budget(tmp_path):
    """Other chunks of the full batch (``History.iterations`` counts them), the same run."""
    path = tmp_path / "run.npz"
    model = sg.MLP([2, 8, 3], seed=0)
    small, large = (sg.memory.estimate(model, rows) for rows in (16, 40))
    sg.fit(model, DATA, sg.GD(lr=0.5), epochs=1, progress=False, memory_budget=large,
           checkpoint=path)
    history = sg.fit(sg.MLP([2, 8, 3], seed=0), DATA, sg.GD(lr=0.5), epochs=2, progress=False,
                     memory_budget=small, checkpoint=path, resume=True)
    assert history.samples_seen == 2 * len(DATA)
    assert history.iterations_at_epoch_end[1] - history.iterations_at_epoch_end[0] > \
        history.iterations_at_epoch_end[0]  # smaller chunks: more iterations
