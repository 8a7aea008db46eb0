"""Regression from the command line: train --loss mse, predict, evaluate, advise; R^2, RMSE, MAE.

The tables are made here: features on scales from 1e-2 to 1e4 in a gzipped, whitespace-separated
file with a header, targets (one or two columns) in a file of their own, as published
regression tables come. One end-to-end test reads scikit-learn's diabetes table when
scikit-learn is installed.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from test_cli_files import read_log, run

import scratchgd as sg
from scratchgd.datasets import random_split
from scratchgd.metrics import regression_report


def regression_table(n=200, k=1, seed=0):
    """``y = tanh(z) W + noise`` from standard normal ``z``; ``X`` is ``z`` on wild scales."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    X = z * [1e-2, 1.0, 100.0, 1e4] + [0.0, 5.0, -300.0, 2e4]
    W = np.random.default_rng(99).normal(size=(4, k))
    return X, np.tanh(z) @ W + 0.05 * rng.normal(size=(n, k))


def write_features(path, X):
    text = "x1 x2 x3 x4\n" + "\n".join(" ".join(f"{v:.17g}" for v in row) for row in X) + "\n"
    path.write_bytes(gzip.compress(text.encode()))


@pytest.fixture
def files(tmp_path):
    for name, n, seed in (("train", 200, 0), ("test", 60, 1)):
        X, y = regression_table(n, k=2, seed=seed)
        write_features(tmp_path / f"{name}_X.txt.gz", X)
        np.savetxt(tmp_path / f"{name}_y.csv", y[:, :1], delimiter=",")
        np.savetxt(tmp_path / f"{name}_y2.csv", y, delimiter=",", header="a,b", comments="")
    return tmp_path


def train(capsys, files, *args, labels="train_y.csv"):
    return run(capsys, "train", "--data", files / "train_X.txt.gz", "--labels", files / labels,
               "--epochs", "30", "--hidden", "16", *args)


def r2_line(out):
    return float(out.split("\ntest R^2: ")[1].split()[0])


def test_train_mse_prints_r2_per_epoch_and_ends_with_test_r2(files, capsys, monkeypatch):
    monkeypatch.setattr(sg.hooks, "bar_fits", lambda: True)  # as on a terminal
    status, out, err = train(capsys, files, "--loss", "mse")
    assert status == 0, err
    lines = out.strip().splitlines()
    assert "160 train / 40 test rows" in lines[0] and "loss='mse'" in lines[0]
    assert "MLP([4, 16, 1]" in lines[0] and "scaling=standard, target_scaling=standard" in lines[0]
    assert "MiniBatchSGD(lr=0.002," in lines[0]          # mse's default rate
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 30            # fit's lines, under its progress bar (on stderr)
    assert all("val_R^2" in line and "acc" not in line for line in epochs)
    assert "it/s" in err                # the bar is back
    assert lines[-2].startswith("test RMSE: ") and "MAE: " in lines[-2]
    # 0.59 in 150 steps: mse's default rate, 0.002, is set for the default 128 hidden units
    assert lines[-1].startswith("test R^2: ") and r2_line(out) > 0.5
    assert float(epochs[-1].split("val_R^2 ")[1].split()[0]) == r2_line(out)


def test_random_split_is_seeded_disjoint_and_complete():
    X, y = regression_table(101)
    data = sg.Dataset(X, y)
    train, test = random_split(data, 0.2, seed=3)
    assert (len(train), len(test)) == (80, 21)
    rows = np.concatenate([train.X[:, 3], test.X[:, 3]])
    np.testing.assert_array_equal(np.sort(rows), np.sort(X[:, 3]))
    again, _ = random_split(data, 0.2, seed=3)
    other, _ = random_split(data, 0.2, seed=4)
    np.testing.assert_array_equal(again.X, train.X)
    assert not np.array_equal(other.X, train.X)
    with pytest.raises(ValueError, match="empty train or test set"):
        random_split(sg.Dataset(X[:1], y[:1]), 0.2)


def test_evaluate_on_the_saved_model_reproduces_the_r2_of_train(files, capsys):
    model_path = files / "m.npz"
    status, out, _ = train(capsys, files, "--loss", "mse", "--test-data", files / "test_X.txt.gz",
                           "--test-labels", files / "test_y2.csv", "--save", model_path,
                           "--no-progress", labels="train_y2.csv")
    assert status == 0 and "MLP([4, 16, 2]" in out and "200 train / 60 test rows" in out
    printed = out.split("test R^2: ")[1].split()[0]
    status, text, _ = run(capsys, "evaluate", "--model", model_path, "--data",
                          files / "test_X.txt.gz", "--labels", files / "test_y2.csv",
                          "--plot", files / "pvt.png")
    assert status == 0
    report = regression_report(sg.load_model(model_path), sg.Dataset.from_file(
        files / "test_X.txt.gz", files / "test_y2.csv"))
    assert str(report) in text and f"R^2 {printed}" in text and "(means over 2 outputs)" in text
    assert f"{report.r2.mean():.4f}" == printed and report.r2.shape == (2,)
    assert (files / "pvt.png").stat().st_size > 10_000


def test_predict_writes_one_row_of_k_values_per_input_row(files, capsys):
    model_path = files / "m.npz"
    assert train(capsys, files, "--loss", "mse", "--save", model_path,
                 labels="train_y2.csv")[0] == 0
    model = sg.load_model(model_path)
    X, _ = regression_table(60, k=2, seed=1)
    expected = model.predict(X)
    for out in ("p.csv", "p.npy"):
        status, text, _ = run(capsys, "predict", "--model", model_path, "--data",
                              files / "test_X.txt.gz", "--out", files / out)
        assert status == 0 and "wrote 60 predictions" in text
    assert (files / "p.csv").read_text().splitlines()[0] == "y0,y1"
    np.testing.assert_array_equal(np.loadtxt(files / "p.csv", delimiter=",", skiprows=1),
                                  expected)
    np.testing.assert_array_equal(np.load(files / "p.npy"), expected)
    status, text, _ = run(capsys, "predict", "--model", model_path, "--data",
                          files / "test_X.txt.gz")
    printed = np.array([[float(v) for v in line.split(",")] for line in text.splitlines()])
    np.testing.assert_array_equal(printed, expected)
    status, _, err = run(capsys, "predict", "--model", model_path, "--data",
                         files / "test_X.txt.gz", "--proba")
    assert status == 2 and "--proba needs a classifier" in err


def test_plot_log_and_resume_of_a_regression(files, capsys):
    log, ckpt, plot = files / "log.csv", files / "run.npz", files / "curves.png"
    args = ("--loss", "mse", "--log", log, "--checkpoint", ckpt)
    assert train(capsys, files, *args, "--epochs", "2")[0] == 0
    status, _, err = train(capsys, files, *args, "--epochs", "4", "--resume",
                           "--scale-targets", "none")
    assert status == 2 and "scale_targets='standard', not 'none'" in err
    status, resumed, _ = train(capsys, files, *args, "--epochs", "4", "--resume", "--plot", plot)
    assert status == 0 and "resuming from" in resumed
    assert [line.split()[1] for line in resumed.splitlines() if line.startswith("epoch ")] \
        == ["3/4", "4/4"]
    _, fresh, _ = train(capsys, files, "--loss", "mse", "--epochs", "4")
    assert r2_line(resumed) == r2_line(fresh)
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == \
        ["epoch", "1", "2", "3", "4"]
    assert plot.stat().st_size > 10_000
    # the log's val_r2 is the R^2 of the epoch lines (and of the final line, at the end)
    rows = read_log(log)
    printed = [line.split("val_R^2 ")[1].split()[0] for line in resumed.splitlines()
               if line.startswith("epoch ")]
    assert [f"{float(r['val_r2']):.4f}" for r in rows[2:]] == printed
    assert printed[-1] == f"{r2_line(resumed):.4f}"


def test_targets_are_scaled_unless_asked_not_to(files, capsys):
    """--scale-targets standard (the default with --loss mse) or none; refused for classes.

    Targets near 1000 with a spread of 50: scaled, the default rate trains them and the
    predictions come back in their units; unscaled, the same rate diverges.
    """
    np.savetxt(files / "offset.csv", 1000 + 50 * np.loadtxt(files / "train_y.csv"))
    args = ("--loss", "mse", "--no-progress")
    status, out, err = train(capsys, files, *args, "--save", files / "m.npz", labels="offset.csv")
    assert status == 0 and "target_scaling=standard" in out, err
    assert r2_line(out) > 0.5
    X, _ = regression_table(60, k=2, seed=1)
    assert 950 < sg.load_model(files / "m.npz").predict(X).mean() < 1050
    status, out, err = train(capsys, files, *args, "--scale-targets", "none", labels="offset.csv")
    assert status == 1 and "target_scaling" not in out and "training diverged" in err
    status, out, err = train(capsys, files, *args, "--scale-targets", "none", "--lr", "1e-6",
                             "--save", files / "m.npz", labels="offset.csv")
    assert status == 0 and sg.load_model(files / "m.npz").target_scaling is None
    np.savetxt(files / "classes.csv", np.arange(200) % 2)
    status, _, err = train(capsys, files, "--scale-targets", "standard", "--epochs", "1",
                           labels="classes.csv")
    assert status == 2 and "--scale-targets standard applies to regression" in err, err


def test_advise_measures_a_regressor(files, capsys):
    status, out, err = run(capsys, "advise", "--data", files / "train_X.txt.gz", "--labels",
                           files / "train_y2.csv", "--loss", "mse", "--epochs", "2",
                           "--hidden", "16", "--no-progress")
    assert status == 0, err
    assert "loss='mse'" in out and "MLP([4, 16, 2]" in out and "B_simple at the current" in out


@pytest.mark.parametrize("labels, args, message", [
    ("train_y.csv", [], "not class labels; for regression pass --loss mse"),
    ("train_y2.csv", [], "the labels hold 2 columns, so they are not class labels"),
    ("whole.csv", [], "label values occur in one row only"),
    ("train_y.csv", ["--loss", "cross_entropy"], "--loss cross_entropy needs class labels"),
])
def test_labels_that_are_not_classes_are_refused_in_one_line(files, capsys, labels, args, message):
    np.savetxt(files / "whole.csv", np.arange(200) % 150 * 1.0)   # 100 values in one row each
    status, _, err = train(capsys, files, *args, "--epochs", "1", labels=labels)
    assert status == 2 and err.count("\n") == 1 and message in err, err


def test_whole_number_labels_train_as_classes_when_asked(files, capsys):
    np.savetxt(files / "whole.csv", np.arange(200) % 150 * 1.0)
    status, out, _ = train(capsys, files, "--loss", "cross_entropy", "--epochs", "1",
                           labels="whole.csv")
    assert status == 0 and "MLP([4, 16, 150]" in out and "test accuracy" in out
    status, out, _ = train(capsys, files, "--loss", "mse", "--epochs", "1", labels="whole.csv")
    assert status == 0 and "MLP([4, 16, 1]" in out and "test R^2" in out


@pytest.mark.parametrize("args, message", [
    (["train", "--loss", "mse"], "--loss mse does not suit --dataset digits"),
    (["train", "--dataset", "regression_1d", "--loss", "cross_entropy"],
     "--loss cross_entropy does not suit --dataset regression_1d"),
    (["train", "--loss", "hinge"], "--loss"),
    (["train", "--data", "{f}/train_X.txt.gz", "--labels", "{f}/train_y.csv", "--no-header"],
     "train_X.txt.gz, line 1: field 1, 'x1', is not a number"),
    (["train", "--data", "{f}/train_X.txt.gz", "--labels", "{f}/short.csv", "--loss", "mse"],
     "short.csv holds 199 rows of labels but"),
    (["train", "--data", "{f}/train_X.txt.gz", "--labels", "{f}/train_y.csv", "--loss", "mse",
      "--test-data", "{f}/test_X.txt.gz", "--test-labels", "{f}/test_y2.csv"],
     "the training targets have 1 columns but the test targets 2"),
])
def test_regression_flag_errors_exit_2_with_one_line(files, capsys, args, message):
    np.savetxt(files / "short.csv", np.ones(199))
    status, _, err = run(capsys, *[a.format(f=files) for a in args])
    assert status == 2 and err.count("\n") == 1 and message in err, err


def test_header_flag_forces_a_numeric_header_off(tmp_path, capsys):
    X, y = regression_table(100)
    text = "1 2 3 4\n" + "\n".join(" ".join(f"{v:.17g}" for v in row) for row in X) + "\n"
    (tmp_path / "X.txt").write_text(text)
    np.savetxt(tmp_path / "y.txt", y, header="0", comments="")
    base = ("train", "--data", tmp_path / "X.txt", "--labels", tmp_path / "y.txt", "--loss", "mse",
            "--epochs", "1", "--no-progress")
    status, out, _ = run(capsys, *base)
    assert status == 0 and "80 train / 21 test rows" in out     # the numeric header is a row
    status, out, _ = run(capsys, *base, "--header")
    assert status == 0 and "80 train / 20 test rows" in out


def test_the_embedded_regression_set_trains_with_mse_by_default(tmp_path, capsys):
    """--dataset regression_1d: y = sin(3x) + noise, 320 / 80 rows, mse and target scaling."""
    status, out, _ = run(capsys, "train", "--dataset", "regression_1d", "--epochs", "30",
                         "--lr", "0.05", "--no-progress", "--save", tmp_path / "m.npz")
    assert status == 0, out
    assert "regression_1d: 320 train / 80 test rows; MLP([1, 128, 1]" in out
    assert float(out.split("test R^2: ")[1].split()[0]) > 0.8
    model = sg.load_model(tmp_path / "m.npz")
    assert model.loss == "mse" and model.target_scaling is not None and model.scaling is None
    data = sg.datasets.regression_1d(n=400, seed=0)
    assert data.X.shape == (400, 1) and data.y.shape == (400, 1)


def test_regression_report_figures():
    model = sg.MLP([1, 2], loss="mse")
    model.params = [np.array([[1.0, 0.0]]), np.array([0.0, 2.0])]   # z = (x, 2)
    X = np.array([[0.0], [1.0], [2.0], [5.0]])
    y = np.array([[0.0, 2.0], [1.0, 2.0], [3.0, 2.0], [4.0, 2.0]])
    r = regression_report(model, sg.Dataset(X, y))
    ss_res, ss_tot = 0 + 0 + 1 + 1, (2**2 + 1**2 + 1**2 + 2**2)   # output 0, mean 2
    np.testing.assert_allclose(r.r2, [1 - ss_res / ss_tot, 1.0])  # output 1: constant, exact
    np.testing.assert_allclose(r.rmse, [np.sqrt(2 / 4), 0.0])
    np.testing.assert_allclose(r.mae, [2 / 4, 0.0])
    assert r.loss == pytest.approx(sg.evaluate(model, sg.Dataset(X, y))[0]) and r.rows == 4
    model.params[1][1] = 3.0                                       # constant target missed
    assert regression_report(model, sg.Dataset(X, y)).r2[1] == 0.0
    with pytest.raises(ValueError, match="regressor"):
        regression_report(sg.MLP([1, 2]), sg.Dataset(X, np.zeros(4, dtype=int)))
    with pytest.raises(ValueError, match="data has 2 features but the model takes 1"):
        regression_report(model, sg.Dataset(np.ones((4, 2)), y))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_regression_report_equals_scikit_learn(dtype):
    metrics = pytest.importorskip("sklearn.metrics", reason="needs the 'oracle' extra")
    X, y = regression_table(3000, k=3)
    model = sg.MLP([4, 8, 3], loss="mse", dtype=dtype, seed=1)
    sg.standardize(model, sg.Dataset(X, y))
    data = sg.Dataset(X, y)
    r = regression_report(model, data)           # 3 blocks of EVAL_BATCH rows
    z = model.predict(X).astype(np.float64)
    np.testing.assert_allclose(r.r2, metrics.r2_score(y, z, multioutput="raw_values"), rtol=1e-12)
    np.testing.assert_allclose(r.rmse, np.sqrt(metrics.mean_squared_error(
        y, z, multioutput="raw_values")), rtol=1e-12)
    np.testing.assert_allclose(r.mae, metrics.mean_absolute_error(y, z, multioutput="raw_values"),
                               rtol=1e-12)
    assert r.r2.mean() == pytest.approx(metrics.r2_score(y, z), rel=1e-12)


def diabetes_files():
    sklearn = pytest.importorskip("sklearn", reason="needs the 'sklearn' extra")
    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data")
    return (os.path.join(folder, "diabetes_data_raw.csv.gz"),
            os.path.join(folder, "diabetes_target.csv.gz"))


def test_diabetes_end_to_end(tmp_path, capsys):
    """scikit-learn's files as they are: whitespace-separated features, targets such as 1.51e+02."""
    X_file, y_file = diabetes_files()
    model_path = tmp_path / "diabetes.npz"
    status, _, err = run(capsys, "train", "--data", X_file, "--labels", y_file)
    assert status == 2 and "pass --loss mse for regression" in err
    status, out, err = run(capsys, "train", "--data", X_file, "--labels", y_file, "--loss", "mse",
                           "--save", model_path)
    assert status == 0, err
    assert "353 train / 89 test rows" in out and "MLP([10, 128, 1]" in out
    assert r2_line(out) > 0.4                   # 0.4605 at seed 0 (linear least squares: 0.50)
    status, text, _ = run(capsys, "predict", "--model", model_path, "--data", X_file)
    assert status == 0 and len(text.splitlines()) == 442
    status, text, _ = run(capsys, "evaluate", "--model", model_path, "--data", X_file,
                          "--labels", y_file)
    assert status == 0 and "(442 rows)" in text
