"""From a user's file to predictions: train --save, predict, evaluate, --log, errors.

The tables are made here (a header line, features on scales from 1e-2 to 1e4,
as in scikit-learn's wine and breast-cancer tables), not read from scikit-learn.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import cli


def wild_table(n=300, seed=0, noise=0.3):
    """Three classes, features of very different scales and offsets, one constant column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = ((rng.normal(size=(n, 4)) * noise + y[:, None]) * [1e-2, 1.0, 100.0, 1e4]
         + [0.0, 5.0, -300.0, 2e4])
    return np.column_stack([X, np.full(n, 3.0)]), y


@pytest.fixture
def files(tmp_path):
    X, y = wild_table()
    np.savetxt(tmp_path / "train.csv", np.column_stack([X, y]), delimiter=",",
               header="alcohol,hue,color,proline,constant,label", comments="")
    Xn, yn = wild_table(90, seed=1)
    np.savetxt(tmp_path / "new.csv", np.column_stack([Xn, yn]), delimiter=",",
               header="alcohol,hue,color,proline,constant,label", comments="")
    np.savetxt(tmp_path / "new_features.csv", Xn, delimiter=",")
    np.savez(tmp_path / "new.npz", X=Xn, y=yn)
    np.save(tmp_path / "new_X.npy", Xn)
    np.save(tmp_path / "new_y.npy", yn)
    return tmp_path


def run(capsys, *args):
    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exc:   # argparse's own errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def train(capsys, files, *args):
    return run(capsys, "train", "--data", files / "train.csv", "--epochs", "15", "--hidden", "16",
               "--no-progress", *args)


def test_defaults_scale_a_wild_csv_and_reach_a_high_accuracy(files, capsys):
    status, out, err = train(capsys, files)
    assert status == 0 and "scaling=standard" in out and "warning" not in err
    assert float(out.split("test accuracy: ")[1]) >= 0.95
    status, out, err = train(capsys, files, "--scale", "none", "--lr", "1e-9")
    assert status == 0 and float(out.split("test accuracy: ")[1]) < 0.8
    assert "ranges differ by" in err and "--scale standard" in err


def test_advise_scales_a_data_file_as_train_does(files, capsys):
    args = ("advise", "--data", files / "train.csv", "--epochs", "2", "--hidden", "16",
            "--no-progress")
    status, out, err = run(capsys, *args)
    assert status == 0 and "scaling=standard" in out and "warning" not in err
    status, out, err = run(capsys, *args, "--scale", "none", "--lr", "1e-9")
    assert status == 0 and "scaling" not in out and "ranges differ by" in err


def test_built_in_sets_are_not_scaled_by_default(capsys):
    status, out, err = run(capsys, "train", "--dataset", "blobs", "--epochs", "1", "--no-progress")
    assert status == 0 and "scaling" not in out and "warning" not in err


def test_no_progress_prints_each_epoch_as_it_ends(files, capsys, monkeypatch):
    seen = []
    real_fit = sg.train.fit

    def fit(*args, on_epoch_end, **kwargs):
        def spy(history):
            on_epoch_end(history)
            seen.append(capsys.readouterr().out.splitlines()[-1])   # before the next epoch
        return real_fit(*args, on_epoch_end=spy, **kwargs)

    monkeypatch.setattr(cli.train, "fit", fit)
    status, _, _ = train(capsys, files, "--epochs", "3")
    assert status == 0
    assert [line.split()[:2] for line in seen] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                   ["epoch", "3/3"]]


@pytest.mark.parametrize("data, extra", [
    ("new.csv", []), ("new_features.csv", []), ("new.npz", []), ("new_X.npy", []),
])
def test_train_save_predict_round_trip(files, capsys, data, extra):
    model_path = files / "model.npz"
    assert train(capsys, files, "--save", model_path)[0] == 0
    model = sg.load_model(model_path)
    Xn, _ = wild_table(90, seed=1)
    expected = model.predict(Xn)
    for out in ("p.csv", "p.npy"):
        status, text, _ = run(capsys, "predict", "--model", model_path, "--data", files / data,
                              "--out", files / out, *extra)
        assert status == 0 and "wrote 90 predictions" in text
    got = np.loadtxt(files / "p.csv", skiprows=1, dtype=int)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.load(files / "p.npy"), expected)
    status, text, _ = run(capsys, "predict", "--model", model_path, "--data", files / data,
                          "--proba", "--out", files / "proba.npy")
    proba = np.load(files / "proba.npy")
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba.argmax(axis=1), expected)


def test_predict_reads_a_memory_map_in_blocks(files, capsys, monkeypatch):
    model_path = files / "model.npz"
    train(capsys, files, "--save", model_path)
    monkeypatch.setattr(cli.predict, "EVAL_BATCH", 7)
    status, text, _ = run(capsys, "predict", "--model", model_path, "--data",
                          files / "new_X.npy")
    assert status == 0
    Xn, _ = wild_table(90, seed=1)
    printed = np.array([int(line) for line in text.split()])
    np.testing.assert_array_equal(printed, sg.load_model(model_path).predict(Xn))


def test_predict_into_a_pipe_that_closes_ends_quietly(files, capsys):
    """``scratchgd predict ... | head -1``: no traceback, no error line, exit status 0."""
    model_path = files / "model.npz"
    train(capsys, files, "--save", model_path)
    X, _ = wild_table(60_000)  # more output than a pipe holds
    np.save(files / "many.npy", X)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "scratchgd", "predict", "--model",
                             str(model_path), "--data", str(files / "many.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert int(proc.stdout.readline()) in (0, 1, 2)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


@pytest.mark.parametrize("data, labels", [("new.csv", None), ("new.npz", None),
                                          ("new_X.npy", "new_y.npy")])
def test_evaluate_prints_the_report_of_the_api(files, capsys, data, labels):
    model_path = files / "model.npz"
    train(capsys, files, "--save", model_path)
    args = ["evaluate", "--model", model_path, "--data", files / data,
            "--plot", files / "confusion.png"]
    status, text, _ = run(capsys, *args, *(["--labels", files / labels] if labels else []))
    assert status == 0
    Xn, yn = wild_table(90, seed=1)
    report = sg.classification_report(sg.load_model(model_path), sg.Dataset(Xn, yn))
    assert str(report) in text
    assert report.confusion.sum() == 90 and report.accuracy >= 0.9
    assert report.accuracy == np.trace(report.confusion) / 90
    assert (files / "confusion.png").stat().st_size > 1000


def test_classification_report_figures():
    model = sg.MLP([1, 2])
    model.params = [np.array([[-1.0, 1.0]]), np.zeros(2)]   # predicts 1 for x > 0
    data = sg.Dataset(np.array([[-1.0], [-2.0], [1.0], [3.0], [-0.5]]), np.array([0, 0, 1, 1, 1]))
    r = sg.classification_report(model, data)
    np.testing.assert_array_equal(r.confusion, [[2, 0], [1, 2]])
    np.testing.assert_allclose(r.precision, [2 / 3, 1.0])
    np.testing.assert_allclose(r.recall, [1.0, 2 / 3])
    np.testing.assert_allclose(r.f1, [0.8, 0.8])
    assert r.accuracy == 0.8
    with pytest.raises(ValueError, match="classifier"):
        sg.classification_report(sg.MLP([1, 1], loss="mse"), sg.Dataset(np.zeros((2, 1)),
                                                                         np.zeros((2, 1))))


def read_log(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_log_writes_a_row_per_epoch_and_resume_drops_later_rows(files, capsys):
    log, ckpt = files / "log.csv", files / "run.npz"
    assert train(capsys, files, "--epochs", "3", "--log", log, "--checkpoint", ckpt)[0] == 0
    rows = read_log(log)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(sg.History.COLUMNS)
    assert int(rows[-1]["samples"]) == 3 * 240 and int(rows[-1]["steps"]) == 3 * 8
    # a crash after epoch 3's row but before... simulate rows the checkpoint never reached
    with open(log, "a") as fh:
        fh.write("4,32,32,960,0.1,0.9,0.1,0.9,0.01\n")
    status, _, _ = train(capsys, files, "--epochs", "5", "--log", log, "--checkpoint", ckpt,
                         "--resume")
    assert status == 0
    resumed = read_log(log)
    assert [int(r["epoch"]) for r in resumed] == [1, 2, 3, 4, 5]
    assert resumed[:3] == rows
    fresh = files / "fresh.csv"
    train(capsys, files, "--epochs", "5", "--log", fresh)
    for a, b in zip(read_log(fresh), resumed, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == \
               {k: v for k, v in b.items() if k != "seconds"}


def test_a_log_that_is_not_one_is_refused_on_resume(files, capsys):
    log, ckpt = files / "log.csv", files / "run.npz"
    train(capsys, files, "--epochs", "1", "--checkpoint", ckpt)
    log.write_text("name,value\nabc,1\n")
    status, _, err = train(capsys, files, "--epochs", "2", "--log", log, "--checkpoint", ckpt,
                           "--resume")
    assert status == 2 and "not a log of epochs" in err and err.count("\n") == 1


def test_a_missing_row_is_written_on_resume(files, capsys):
    log, ckpt = files / "log.csv", files / "run.npz"
    train(capsys, files, "--epochs", "2", "--log", log, "--checkpoint", ckpt)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))     # the crash came between checkpoint and log row
    train(capsys, files, "--epochs", "3", "--log", log, "--checkpoint", ckpt, "--resume")
    assert [int(r["epoch"]) for r in read_log(log)] == [1, 2, 3]


def test_history_to_dict_and_to_csv(tmp_path):
    data = sg.Dataset(*wild_table(40))
    model = sg.MLP([5, 4, 3])
    sg.standardize(model, data)
    h = sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=16), epochs=2, progress=False)
    table = h.to_dict()
    assert table["epoch"] == [1, 2] and table["samples"] == [40, 80]
    assert table["iterations"] == [3, 6] and all(np.isnan(table["val_loss"]))
    h.to_csv(tmp_path / "h.csv")
    rows = read_log(tmp_path / "h.csv")
    assert [float(r["loss"]) for r in rows] == h.epoch_loss


def test_on_epoch_end_is_called_after_every_epoch():
    data = sg.Dataset(*wild_table(20))
    calls = []
    sg.fit(sg.MLP([5, 3]), data, sg.GD(1e-9), epochs=3, progress=False,
           on_epoch_end=lambda h: calls.append(h.epochs))
    assert calls == [1, 2, 3]
    with pytest.raises(TypeError, match="on_epoch_end"):
        sg.fit(sg.MLP([5, 3]), data, sg.GD(0.1), on_epoch_end=3)


@pytest.mark.parametrize("args, message", [
    (["predict", "--model", "{m}", "--data", "{f}/wrong.csv"], "has 3 feature columns but the "
                                                               "model takes 5"),
    (["predict", "--model", "{f}/missing.npz", "--data", "{f}/new.csv"], "missing.npz"),
    (["predict", "--model", "{f}/new.csv", "--data", "{f}/new.csv"], "new.csv"),
    (["predict", "--model", "{m}", "--data", "{f}/new.csv", "--out", "{f}/p.json"], ".csv or .npy"),
    (["evaluate", "--model", "{m}", "--data", "{f}/wrong.csv"], "has 2 features but the model takes 5"),
    (["evaluate", "--model", "{m}"], "--data"),
    (["train", "--data", "{f}/train.csv", "--scale", "minmax"], "--scale"),
    (["train", "--data", "{f}/misspelt.csv"], "misspelt.csv: no such file"),
    (["predict", "--model", "{m}", "--data", "{f}/misspelt.csv"], "misspelt.csv: no such file"),
])
def test_errors_exit_2_with_one_line(files, capsys, args, message):
    model_path = files / "model.npz"
    train(capsys, files, "--epochs", "1", "--save", model_path)
    np.savetxt(files / "wrong.csv", np.ones((4, 3)), delimiter=",")
    status, _, err = run(capsys, *[a.format(m=model_path, f=files) for a in args])
    assert status == 2
    assert err.count("\n") == 1 and message in err
