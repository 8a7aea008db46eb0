"""Crash test: kill training with SIGKILL at several points, resume, get the same run.

Each run is a child process (``CHILD`` below) training a small MLP on blobs with a
checkpoint every 3 training steps. The child can be told to stop dead at one point
(``--pause KIND:N``): it prints ``PAUSED`` and sleeps, and the test SIGKILLs it
there. The pause points are made by the child itself, wrapping NumPy and ``os``
calls of the library from outside -- the library has no test hooks:

* ``step:N``    -- right after the N-th training step;
* ``write:N``   -- in the middle of writing the N-th checkpoint (half its bytes on disk);
* ``rename:N``  -- after the N-th checkpoint is written and fsynced, before its rename;
* ``saved:N``   -- right after the N-th checkpoint is renamed into place.

After every kill the checkpoint file (if there is one yet) must load, and after a
resume the final weights and History must equal an uninterrupted run bit for bit.
"""

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scratchgd import checkpoint as ck

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import argparse, dataclasses, io, json, os, sys, time
import numpy as np
import scratchgd as sg

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint")
parser.add_argument("--every", default="3")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--pause", default="")
parser.add_argument("--out")
args = parser.parse_args()
kind, _, when = args.pause.partition(":")
count = {"step": 0, "save": 0}

def pause(where):
    print("PAUSED", where, flush=True)
    time.sleep(120)
    sys.exit("not killed")

real_step, real_savez, real_replace = sg.Optimizer.step, np.savez, os.replace

def step(self, params, grads):
    real_step(self, params, grads)
    count["step"] += 1
    if kind == "step" and count["step"] == int(when):
        pause("step")

def savez(fh, **arrays):
    count["save"] += 1
    if kind == "write" and count["save"] == int(when):
        whole = io.BytesIO()
        real_savez(whole, **arrays)
        fh.write(whole.getvalue()[: len(whole.getvalue()) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        pause("write")
    real_savez(fh, **arrays)

def replace(source, target):
    if kind == "rename" and count["save"] == int(when):
        pause("rename")
    real_replace(source, target)
    if kind == "saved" and count["save"] == int(when):
        pause("saved")

sg.Optimizer.step, np.savez, os.replace = step, savez, replace

data, validation = sg.datasets.blobs(n=100, seed=1), sg.datasets.blobs(n=30, seed=2)
model = sg.MLP([2, 12, 3], seed=0)
optimizer = sg.MiniBatchSGD(lr=0.1, batch_size=16, momentum=0.9)
every = args.every if args.every == "epoch" else int(args.every)
history = sg.fit(model, data, optimizer, epochs=4, accumulate=2, validation=validation,
                 progress=False, seed=3, checkpoint=args.checkpoint, checkpoint_every=every,
                 resume=args.resume)
result = dataclasses.asdict(history)
result["params"] = [p.tolist() for p in model.params]   # floats survive JSON exactly
with open(args.out, "w") as fh:
    json.dump(result, fh)
'''
# 100 rows in batches of 16: 7 iterations and 4 steps per epoch (accumulate=2), 16 steps.
# With a checkpoint every 3 steps they are written at steps 3, 6, 9 (mid-epoch), 12 (end of
# epoch 3, after validation), 15 (mid-epoch) and 16 (end of training).


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    script = tmp_path_factory.mktemp("crash") / "child.py"
    script.write_text(CHILD)
    return script


def start(child, *args):
    return subprocess.Popen([sys.executable, str(child), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def run(child, *args):
    proc = start(child, *args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def kill_at_pause(child, *args):
    """Start a child, wait until it pauses, SIGKILL it there."""
    proc = start(child, *args)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "child never paused"
        line = proc.stdout.readline()
        assert line.startswith("PAUSED"), (line, proc.stderr.read())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def result(path):
    values = json.loads(path.read_text())
    values.pop("epoch_seconds")  # wall-clock time, the one figure a resume changes
    return values


@pytest.fixture(scope="module")
def reference(child, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out.json"
    run(child, "--out", str(out))
    return result(out)


def steps_saved(path):
    return ck.load(path).history["steps"]


# (pause points, one per kill, then a clean resume; steps in the checkpoint after each kill)
SCENARIOS = {
    "before the first checkpoint": (["step:2"], [None]),
    "mid-epoch after a checkpoint": (["step:5"], [3]),
    "half-way through writing a checkpoint": (["write:2"], [3]),
    "written but not yet renamed": (["rename:3"], [6]),
    "just after an epoch-end checkpoint": (["saved:4"], [12]),
    "after the last checkpoint": (["saved:6"], [16]),
    "twice: mid-epoch, then mid-write of the resumed run": (["step:7", "write:2"], [6, 9]),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kill_and_resume_is_bit_identical(child, reference, tmp_path, scenario):
    checkpoint, out = tmp_path / "run.npz", tmp_path / "out.json"
    pauses, expected_steps = SCENARIOS[scenario]
    for i, (pause, steps) in enumerate(zip(pauses, expected_steps, strict=True)):
        resume = ["--resume"] if i else []
        kill_at_pause(child, "--checkpoint", str(checkpoint), "--pause", pause,
                      "--out", str(out), *resume)
        assert not out.exists()
        temporaries = list(tmp_path.glob(".run.npz.*.tmp"))
        assert len(temporaries) == pause.startswith(("write", "rename"))  # killed mid-write
        if steps is None:
            assert not checkpoint.exists()
        else:  # the last complete checkpoint, never a half-written one
            assert steps_saved(checkpoint) == steps
    run(child, "--checkpoint", str(checkpoint), "--resume", "--out", str(out))
    assert result(out) == reference
    assert sorted(os.listdir(tmp_path)) == ["out.json", "run.npz"]  # no temporary file left
    assert steps_saved(checkpoint) == 16


def test_kill_mid_epoch_with_epoch_checkpoints(child, reference, tmp_path):
    checkpoint, out = tmp_path / "run.npz", tmp_path / "out.json"
    kill_at_pause(child, "--checkpoint", str(checkpoint), "--every", "epoch",
                  "--pause", "step:10", "--out", str(out))
    assert steps_saved(checkpoint) == 8
    run(child, "--checkpoint", str(checkpoint), "--every", "epoch", "--resume",
        "--out", str(out))
    assert result(out) == reference


def test_the_history_fields_are_all_compared(reference):
    from scratchgd import History

    names = {f.name for f in dataclasses.fields(History)} - {"epoch_seconds"}
    assert names | {"params"} == set(reference)
    assert reference["steps"] == 16 and reference["iterations"] == 28
