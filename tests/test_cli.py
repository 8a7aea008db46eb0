"""The command line: `scratchgd train` and its error handling."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchgd.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "scratchgd", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_train_prints_epochs_and_test_accuracy(capsys, tmp_path):
    plot = tmp_path / "curves.png"
    assert main(["train", "--epochs", "3", "--no-progress", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 3
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert 0.8 < accuracy <= 1.0
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("flags", [
    ["--optimizer", "gd", "--lr", "0.5"],
    ["--optimizer", "sgd", "--epochs", "1"],
    ["--accumulate", "epoch", "--epochs", "2"],
    ["--dataset", "spirals", "--hidden", "16", "16", "--activation", "tanh"],
])
def test_train_variants_run(capsys, flags):
    args = ["train", "--no-progress", *flags]
    if "--epochs" not in flags:
        args += ["--epochs", "2"]
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_module_entry_point_runs():
    result = run_module("train", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    # piped output: the epoch lines alone, no progress bar redrawn between them
    assert [line[:10] for line in result.stdout.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/2 ", "epoch 2/2 "]
    assert "\r" not in result.stdout + result.stderr and "it/s" not in result.stderr


class Terminal:
    """A stand-in output stream that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("stdout, stderr, bar", [(True, True, True), (True, False, False),
                                                 (False, True, False), (False, False, False)])
def test_the_progress_bar_needs_a_terminal_on_both_streams(monkeypatch, stdout, stderr, bar):
    from scratchgd import hooks

    monkeypatch.setattr(sys, "stdout", Terminal(stdout))
    monkeypatch.setattr(sys, "stderr", Terminal(stderr))
    assert hooks.bar_fits() is bar


@pytest.mark.parametrize("flags, word", [
    (["--batch-size", "0"], "batch_size"),
    (["--lr", "-1"], "lr"),
    (["--optimizer", "adam"], "optimizer"),
    (["--epochs", "0"], "epochs"),
    (["--accumulate", "often"], "accumulate"),
    (["--backend", "cuda"], "backend"),
    (["--optimizer", "gd", "--batch-size", "8"], "batch-size"),
])
def test_invalid_flags_exit_nonzero_with_one_line(flags, word):
    result = run_module("train", "--no-progress", *flags)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in result.stderr
