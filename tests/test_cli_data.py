"""scratchgd train on the user's own files, with a memory budget."""

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import cli


@pytest.fixture
def blob_files(tmp_path):
    data = sg.datasets.blobs(n=300, centers=3, n_features=5, seed=0)
    np.save(tmp_path / "X.npy", data.X.astype(np.float32))
    np.save(tmp_path / "y.npy", data.y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([data.X, data.y]), delimiter=",",
               header="a,b,c,d,e,label", comments="")
    return tmp_path


def _train(capsys, *args):
    status = cli.main(["train", "--epochs", "3", "--hidden", "8", "--no-progress", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_train_on_npy_files_with_a_split(blob_files, capsys):
    status, out, _ = _train(capsys, "--data", str(blob_files / "X.npy"),
                            "--labels", str(blob_files / "y.npy"))
    assert status == 0
    assert "240 train / 60 test rows" in out
    assert float(out.split("test accuracy: ")[1]) > 0.9


def test_train_on_csv_with_test_file_and_budget(blob_files, capsys):
    status, out, _ = _train(capsys, "--data", str(blob_files / "d.csv"), "--test-data",
                            str(blob_files / "d.csv"), "--optimizer", "gd",
                            "--memory-budget", "20kB")
    assert status == 0
    assert "300 train / 300 test rows" in out
    assert "3 training steps" in out and "3 iterations" not in out   # chunks of the full batch


@pytest.mark.parametrize("args, message", [
    (["--labels", "y.npy"], "need --data"),
    (["--data", "X.npy"], "give the labels file"),
    (["--data", "X.npy", "--labels", "y.npy", "--memory-budget", "1kB"], "too small"),
    (["--data", "X.npy", "--labels", "y.npy", "--memory-budget", "big"], "memory_budget"),
])
def test_bad_data_arguments_fail_clearly(blob_files, capsys, monkeypatch, args, message):
    monkeypatch.chdir(blob_files)
    status, _, err = _train(capsys, *args)
    assert status == 2 and message in err
