"""Divergence stops cleanly: TrainingDiverged, last finite weights, a clear CLI message."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import checkpoint as ck
from scratchgd.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN, _ = sg.datasets.digits(seed=0)
SMALL = sg.Dataset(TRAIN.X[:300], TRAIN.y[:300])


def fit_recording(model, optimizer, data=SMALL, **kwargs):
    """``fit``, keeping a copy of the weights after every training step that succeeded."""
    snapshots = [[p.copy() for p in model.params]]
    real_step = optimizer.step

    def step(params, grads):
        real_step(params, grads)
        snapshots.append([p.copy() for p in params])

    optimizer.step = step
    try:
        return sg.fit(model, data, optimizer, progress=False, **kwargs), snapshots
    except sg.TrainingDiverged as exc:
        return exc, snapshots


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("lr", [1e6, 1e20, 1e200])
def test_a_huge_learning_rate_never_leaves_non_finite_weights(lr, momentum, dtype):
    model = sg.MLP([64, 32, 10], seed=0, dtype=dtype)
    optimizer = sg.MiniBatchSGD(lr=lr, batch_size=32, momentum=momentum)
    outcome, snapshots = fit_recording(model, optimizer, epochs=2, accumulate=2)
    assert all(np.isfinite(p).all() for p in model.params)
    if isinstance(outcome, sg.TrainingDiverged):
        for p, last in zip(model.params, snapshots[-1], strict=True):
            assert np.array_equal(p, last)  # the weights of the last finite step
        assert all(np.isfinite(v).all() for v in optimizer.velocity or [])
        assert outcome.history.steps == len(snapshots) - 1
    # else: relu + cross-entropy can stay finite at absurd rates (dead units, bounded
    # softmax gradients); the weights are garbage but finite, and nothing is raised.


def test_divergence_message_names_epoch_iteration_loss_and_suggests_a_smaller_lr():
    model = sg.MLP([64, 32, 10], seed=0)
    outcome, _ = fit_recording(model, sg.MiniBatchSGD(lr=1e200, batch_size=32), epochs=3)
    assert isinstance(outcome, sg.TrainingDiverged)
    text = str(outcome)
    assert (outcome.epoch, outcome.iteration) == (1, 2)
    assert "epoch 1, iteration 2" in text and "loss nan" in text
    assert "smaller learning rate than lr=1e+200" in text
    assert outcome.history.iterations == 1 and not np.isfinite(outcome.loss)


def test_an_update_that_would_overflow_is_not_applied():
    data = sg.Dataset(np.ones((8, 2)), np.full((8, 1), 1e3))  # mse gradient about 2e3
    model = sg.MLP([2, 4, 1], loss="mse", seed=0)
    start = [p.copy() for p in model.params]
    outcome, _ = fit_recording(model, sg.GD(lr=1e306), data=data, epochs=1)
    assert isinstance(outcome, sg.TrainingDiverged)
    assert "update that would make the weights non-finite" in str(outcome)
    assert np.isfinite(outcome.loss) and outcome.history.steps == 0
    assert all(np.array_equal(p, q) for p, q in zip(model.params, start, strict=True))


def test_mse_regression_diverges_cleanly_mid_accumulation():
    data = sg.datasets.regression_1d(n=64, seed=0)
    model = sg.MLP([1, 16, 1], loss="mse", activation="tanh", seed=0)
    optimizer = sg.MiniBatchSGD(lr=1e5, batch_size=8, momentum=0.9)
    with pytest.raises(sg.TrainingDiverged, match="smaller learning rate") as info:
        sg.fit(model, data, optimizer, epochs=50, accumulate=3, progress=False)
    assert all(np.isfinite(p).all() for p in model.params)
    assert info.value.history.iterations >= info.value.history.steps


def test_cli_prints_the_divergence_and_exits_non_zero_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "scratchgd", "train", "--epochs", "2",
                           "--lr", "1e200", "--no-progress"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 1
    assert "training diverged at epoch 1" in proc.stderr
    assert "smaller learning rate" in proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr


def run_cli(*args):
    return main(["train", "--dataset", "blobs", "--hidden", "8", "--no-progress", *args])


def test_cli_checkpoint_and_resume_equal_one_run(tmp_path, capsys):
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    assert run_cli("--epochs", "3", "--checkpoint", str(whole)) == 0
    assert run_cli("--epochs", "2", "--checkpoint", str(part), "--checkpoint-every", "4") == 0
    assert run_cli("--epochs", "3", "--checkpoint", str(part), "--resume") == 0
    assert f"resuming from {part}" in capsys.readouterr().out
    a, b = ck.load(whole), ck.load(part)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params, strict=True))
    a.history.pop("epoch_seconds")
    b.history.pop("epoch_seconds")
    assert a.history == b.history and a.history["epochs"] == 3


@pytest.mark.parametrize("args, words", [
    (["--resume"], "needs a checkpoint"),
    (["--checkpoint-every", "0", "--checkpoint", "x.npz"], "checkpoint_every"),
    (["--checkpoint-every", "often"], "--checkpoint-every"),
    (["--checkpoint", "/no/such/folder/x.npz"], "cannot write a file into /no/such/folder"),
])
def test_cli_refuses_bad_checkpoint_flags_in_one_line(args, words, capsys):
    with pytest.raises(SystemExit) if "often" in args else _no_exit():
        assert run_cli("--epochs", "1", *args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_refuses_a_corrupt_checkpoint(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    assert run_cli("--epochs", "1", "--checkpoint", str(path), "--resume") == 2
    assert "bad.npz" in capsys.readouterr().err
    assert path.read_bytes().startswith(b"PK\x03\x04 this")


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
