"""The model-file and checkpoint probes of issue 28, each a fresh process under /usr/bin/time -v.

Prints a Markdown table: the probe, the command, its exit status, the first line of its
stderr and its peak resident memory ("Maximum resident set size"). The probe files are the
ones tests/test_hostile_npz.py builds (``forged_files``, ``rewrite``), which asserts the same
outcomes and a 256 MB bound. Run from the repository root:

    python benchmarks/hostile_npz.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_hostile_npz as probes  # noqa: E402

import scratchgd as sg  # noqa: E402


def scratchgd(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "scratchgd", *args], check=True, capture_output=True)


def make(folder: Path) -> list[tuple[str, list[str]]]:
    """Write every probe file into ``folder`` (the working directory); the cases to run."""
    probes.forged_files(folder)
    np.savetxt("rows.csv", np.zeros((2, 2)), delimiter=",")
    os.mkfifo("pipe.npz")
    os.mkdir("folder.npz")
    scratchgd("train", "--dataset", "blobs", "--epochs", "1", "--hidden", "8", "--no-progress",
              "--save", "model.npz", "--checkpoint", "ck.npz")
    np.savetxt("blobs_rows.csv", np.asarray(probes.DATA.X[:5]), delimiter=",")
    forged = {"ck_correct.npz": (probes.setter("position", "correct", 10**9), {}),
              "ck_samples.npz": (probes.setter("history", "samples_seen", 10**100), {}),
              "ck_rng.npz": (probes.setter("rng", "state", "state", 10**100), {})}
    d = sg.load_model("model.npz").n_inputs
    forged["std_subnormal.npz"] = (None, {"scale_mean": np.zeros(d),
                                          "scale_std": np.full(d, 1e-320)})
    forged["std_tiny.npz"] = (None, {"scale_mean": np.zeros(d), "scale_std": np.full(d, 1e-300)})
    for name, (change, arrays) in forged.items():
        shutil.copy("ck.npz" if name.startswith("ck") else "model.npz", name)
        probes.rewrite(folder / name, change, **arrays)
    np.savetxt("far.csv", np.full((3, d), 1e300), delimiter=",")
    rows = np.column_stack([np.arange(20.0), np.arange(20.0) % 3])
    rows[0, 1] = 4_999_999
    np.savetxt("labels5m.csv", rows, delimiter=",", fmt="%.17g")
    predict = ["predict", "--data", "rows.csv", "--model"]
    resume = ["train", "--dataset", "blobs", "--epochs", "2", "--hidden", "8", "--no-progress",
              "--resume", "--checkpoint"]
    return [
        ("two bzip2 entries, 1 GiB each", predict + ["bzip2.npz"]),
        ("an LZMA entry", predict + ["lzma.npz"]),
        ("an entry name twice", predict + ["twice.npz"]),
        ("meta nested 100,000 deep", predict + ["nested.npz"]),
        ("meta over 1 MiB", predict + ["big_meta.npz"]),
        (".npy shape (20, -3)", predict + ["negative.npz"]),
        ("2 GiB declared (no ulimit: read until the stream ends)", predict + ["huge.npz"]),
        ("an entry larger than meta implies", predict + ["beyond_meta.npz"]),
        ("an entry meta does not list", predict + ["extra.npz"]),
        ("an entry longer than its header", predict + ["longer.npz"]),
        ("an empty file", predict + ["empty.npz"]),
        ("/dev/zero as the model", predict + ["/dev/zero"]),
        ("a FIFO as the model", predict + ["pipe.npz"]),
        ("a folder as the model", predict + ["folder.npz"]),
        ("scale std 1e-320", ["predict", "--data", "blobs_rows.csv", "--model",
                              "std_subnormal.npz"]),
        ("std 1e-300, inputs 1e300: outputs not finite", ["predict", "--data", "far.csv",
                                                          "--model", "std_tiny.npz"]),
        ("/dev/zero as the checkpoint", resume + ["/dev/zero"]),
        ("a FIFO as the checkpoint", resume + ["pipe.npz"]),
        ("checkpoint correct = 10**9", resume + ["ck_correct.npz"]),
        ("checkpoint samples_seen = 10**100", resume + ["ck_samples.npz"]),
        ("checkpoint generator state 10**100", resume + ["ck_rng.npz"]),
        ("a blobs checkpoint resumed on spirals",
         [a.replace("blobs", "spirals") for a in resume] + ["ck.npz"]),
        ("label 4,999,999 among 20 rows", ["train", "--data", "labels5m.csv", "--loss",
                                           "cross_entropy", "--epochs", "1", "--no-progress"]),
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        cases = make(Path(folder))
        print("| probe | `scratchgd ...` | exit | stderr (first line) | peak RSS (MB) |")
        print("|---|---|---|---|---|")
        for name, args in cases:
            run = subprocess.run(["timeout", "60", "/usr/bin/time", "-v", sys.executable, "-m",
                                  "scratchgd", *args], capture_output=True, text=True)
            peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
            first = run.stderr.splitlines()[0] if run.stderr else ""
            print(f"| {name} | `{' '.join(args)}` | {run.returncode} | {first[:140]} | "
                  f"{int(peak.group(1)) / 1024 if peak else float('nan'):.0f} |")


if __name__ == "__main__":
    main()
