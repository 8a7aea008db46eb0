"""Regenerate every figure of docs/figures.md: run each demo in turn and time it.

    python demos/make_figures.py                # full runs into docs/figures/
    python demos/make_figures.py --quick --out figures/

Each demo runs in its own Python process against the scratchgd of this
checkout; its measurements go to the terminal, followed by its run time.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time

DEMOS = ["three_losses", "gd_vs_sgd_path", "epochs", "batch_size_sweep", "powers_of_two",
         "accumulation", "full_batch_memory", "critical_batch_size", "grid_search"]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds per demo)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    seconds = {}
    for name in DEMOS:
        print(f"== {name}", flush=True)
        command = [sys.executable, str(ROOT / "demos" / f"{name}.py"), "--out", str(args.out)]
        start = time.perf_counter()
        subprocess.run(command + ["--quick"] * args.quick, env=env, check=True)
        seconds[name] = time.perf_counter() - start
        print(f"({name}: {seconds[name]:.1f} s)", flush=True)
    print("== run times")
    for name, s in seconds.items():
        print(f"{name}: {s:.1f} s")


if __name__ == "__main__":
    main()
