"""Every demo runs with --quick, writes a real figure, and prints consistent measurements."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from scratchgd import kernels

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 1437  # rows of sg.datasets.digits() at the default split


def run_demo(name: str, out: Path) -> dict[str, str]:
    """Run ``demos/<name>.py --quick --out out``; return its ``key: value`` lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "demos" / f"{name}.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = (line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    return {key: value for key, value in lines}


def fields(value: str) -> dict[str, float]:
    """``"steps=10 seconds=0.5"`` -> ``{"steps": 10.0, "seconds": 0.5}``."""
    return {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", value)}


def assert_real_figure(path: Path) -> None:
    assert path.exists(), f"{path.name} was not written"
    image = imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 400, image.shape
    rgb = image[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 50, "the figure is (nearly) one colour"
    assert rgb.std() > 0.05


def test_three_losses(tmp_path):
    out = run_demo("three_losses", tmp_path)
    assert_real_figure(tmp_path / "three_losses.png")
    w_star = float(out["average_minimum"])
    assert abs(w_star + 0.5) < 0.05
    assert abs(float(out["average_minimum_on_grid"]) - w_star) < 0.02
    minima = [float(out[f"f{i}_minimum"]) for i in (1, 2, 3)]
    assert all(abs(m - w_star) > 0.5 for m in minima)  # each f_i's minimum lies elsewhere
    assert min(minima) < w_star < max(minima)           # one of them on the other side
    assert abs(float(out["gd_final"]) - w_star) < 1e-3
    hover = float(out["sgd_constant_mean_distance_last_half"])
    assert hover > 0.05                                  # constant rate: near, not at, the minimum
    assert float(out["sgd_decaying_mean_distance_last_half"]) < hover / 3


def test_gd_vs_sgd_path(tmp_path):
    out = run_demo("gd_vs_sgd_path", tmp_path)
    assert_real_figure(tmp_path / "gd_vs_sgd_path.png")
    start, minimum = float(out["start_loss"]), float(out["minimum_loss"])
    for run in ("gd", "sgd", "minibatch"):
        assert minimum - 1e-12 <= float(out[f"{run}_end_loss"]) < start / 4
    assert float(out["gd_end_distance"]) < 0.05
    assert float(out["sgd_end_distance"]) > float(out["gd_end_distance"])
    # the same number of steps covers more epochs the bigger the batch
    assert float(out["gd_epochs"]) > float(out["minibatch_epochs"]) > float(out["sgd_epochs"])
    # why SGD zigzags: one row's noise outweighs the gradient, and far more so near the minimum
    assert 1 < float(out["b_simple_at_start"]) < float(out["b_simple_at_gd_end"]) / 100


def test_loss_paths_show_every_end_and_zoom_on_a_grid_of_their_own():
    from scratchgd.plots import plot_loss_paths

    grids = []

    def loss(w, b):
        grids.append((w, b))
        return (w - 1) ** 2 + 3 * (b + 0.5) ** 2

    optimum = (1.0, -0.5)
    paths = {"GD": np.array([[-1.0, 2.0], [1.004, -0.5]]),  # ends 0.004 from the minimum
             "SGD": np.array([[-1.0, 2.0], [1.2, -0.3]])}
    fig = plot_loss_paths(loss, (-2.0, 3.0, -2.0, 3.0), paths, optimum, points=150)
    assert [w.shape for w, _ in grids] == [(150, 150), (150, 150)]
    zoomed_w = grids[1][0]
    assert zoomed_w.min() == pytest.approx(1 - 1.3 * 0.2) and zoomed_w.max() == pytest.approx(1.26)
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        star = lines["minimum of $L$"]
        gd_end = next(line for label, line in lines.items() if label.startswith("end of GD, 0.004 "))
        assert star.get_markerfacecolor() == "none"        # hollow: what lies under it shows
        assert gd_end.get_zorder() > star.get_zorder()      # GD's end is drawn over the star
        assert gd_end.get_zorder() > lines["end of SGD, 0.28 from the minimum"].get_zorder()


def test_epochs(tmp_path):
    out = run_demo("epochs", tmp_path)
    assert_real_figure(tmp_path / "epochs.png")
    epochs, best = int(out["epochs"]), int(out["best_epoch"])
    assert epochs == 5 and 1 <= best <= epochs
    assert int(out["steps"]) == epochs * int(out["iterations_per_epoch"]) == epochs * 45
    assert float(out["best_val_accuracy"]) >= float(out["final_val_accuracy"]) > 0.8
    assert float(out["seconds_per_epoch_median"]) > 0


def test_batch_size_sweep(tmp_path):
    out = run_demo("batch_size_sweep", tmp_path)
    assert_real_figure(tmp_path / "batch_size_sweep.png")
    runs = {key[6:-1]: fields(value) for key, value in out.items() if key.startswith("batch[")}
    assert set(runs) == {"1", "16", "256", "full"}
    epochs = 2
    for key, run in runs.items():
        rows = N_TRAIN if key == "full" else int(key)
        assert run["rows"] == rows
        assert run["steps"] == epochs * math.ceil(N_TRAIN / rows)
        assert 0 <= run["test_accuracy"] <= 1 and run["seconds"] > 0
    # at equal epochs, more frequent updates get further than more accurate ones
    assert runs["1"]["train_loss"] < runs["256"]["train_loss"] < runs["full"]["train_loss"]


def test_powers_of_two(tmp_path):
    out = run_demo("powers_of_two", tmp_path)
    assert_real_figure(tmp_path / "powers_of_two.png")
    labels = [f"{b} {d}" for b in kernels.BACKENDS for d in ("float64", "float32")]
    for label in labels:  # every backend that exists was measured
        rate = {b: float(out[f"throughput[{label}][{b}]"]) for b in (31, 32, 33, 63, 64, 65)}
        assert all(r > 0 for r in rate.values())
        for p in (32, 64):
            expected = rate[p] / ((rate[p - 1] + rate[p + 1]) / 2)
            assert float(out[f"ratio[{label}][{p}]"]) == pytest.approx(expected, rel=1e-4)
    low, high = map(float, out["mean_ratio_95_interval"].split())
    assert low <= high
    # --quick takes 3 repeats: too few for a verdict, and it says so
    assert int(out["repeats"]) == 3
    assert out["verdict"].startswith("no verdict: 3 repeats, fewer than the 5 a verdict needs")
    for word in ("faster", "slower", "no measurable difference"):
        assert word not in out["verdict"]


def test_powers_of_two_verdict_needs_enough_repeats():
    sys.path.insert(0, str(ROOT / "demos"))
    try:
        from powers_of_two import MIN_REPEATS, verdict
    finally:
        sys.path.remove(str(ROOT / "demos"))
    assert verdict(1.02, 1.01, 1.03, MIN_REPEATS).startswith("powers of two are faster, by 2.0%")
    assert verdict(0.97, 0.95, 0.99, MIN_REPEATS).startswith("powers of two are slower, by 3.0%")
    assert verdict(1.01, 0.99, 1.03, MIN_REPEATS).startswith("no measurable difference")
    few = verdict(1.02, 1.01, 1.03, MIN_REPEATS - 1)  # the same figures, too few repeats
    assert few.startswith(f"no verdict: {MIN_REPEATS - 1} repeats") and "faster" not in few


def test_accumulation(tmp_path):
    out = run_demo("accumulation", tmp_path)
    assert_real_figure(tmp_path / "accumulation.png")
    assert float(out["max_weight_difference"]) < 1e-10
    assert float(out["max_step_loss_difference"]) < 1e-10
    assert float(out["weight_change"]) > 1e-2  # the weights did move
    assert int(out["steps_accumulated"]) == int(out["steps_big_batch"])
    # 300 rows: 38 batches of 8 vs 10 of 32 per epoch, 2 epochs
    assert (int(out["iterations_accumulated"]), int(out["iterations_big_batch"])) == (76, 20)


def test_full_batch_memory(tmp_path):
    out = run_demo("full_batch_memory", tmp_path)
    assert_real_figure(tmp_path / "full_batch_memory.png")
    steps = {int(key[11:-1]): fields(value) for key, value in out.items()
             if key.startswith("step_bytes[")}
    assert sorted(steps) == [1, 16, 256, N_TRAIN]
    assert steps[N_TRAIN]["measured"] > 3 * steps[1]["measured"]  # memory grows with the batch
    for b, step in steps.items():  # scratchgd.memory.estimate leaves out the update's copy
        assert abs(step["ratio"] - 1) < (0.05 if b >= 256 else 0.5), (b, step)
    chunked = fields(out["chunked[64]"])
    assert chunked["max_weight_difference"] < 1e-10
    assert float(out["weight_change"]) > 1e-3
    assert chunked["peak_bytes"] < float(out["one_shot_peak_bytes"]) / 2


def test_critical_batch_size(tmp_path):
    out = run_demo("critical_batch_size", tmp_path)
    assert_real_figure(tmp_path / "critical_batch_size.png")
    fits = {key: fields(value) for key, value in out.items() if "_target[" in key}
    fixed = {b: fields(out[f"digits_fixed_lr[{b}]"]) for b in (32, 256)}
    for b, run in fixed.items():
        assert run["lr"] == 0.1 and run["examples"] == run["steps"] * b > 0
    # one learning rate for both: the larger batch saves few steps, if any, for 8x the examples
    assert fixed[256]["steps"] > fixed[32]["steps"] / 2
    for key, fit in fits.items():  # B_simple where each run reached the target, chosen one within
        runs = fields(out[key.replace("_target[", "_b_simple_of_every_run[")])
        assert runs["runs"] >= 3 and 0 < runs["min"] <= runs["median"] <= runs["max"]
        assert runs["min"] * (1 - 1e-3) <= fit["B_simple"] <= runs["max"] * (1 + 1e-3)
    assert {key.split("_target")[0] for key in fits} == {"digits", "linreg"}
    assert len(fits) == 4  # two targets per task, each reached by enough batch sizes to fit
    for key, fit in fits.items():
        target = float(key.split("[")[1][:-1])
        assert fit["S_min"] > 0 and fit["E_min"] > 0 and fit["B_simple"] > 0
        assert fit["B_crit"] == pytest.approx(fit["E_min"] / fit["S_min"], rel=1e-3)
        assert fit["ratio"] == pytest.approx(fit["B_crit"] / fit["B_simple"], rel=2e-3)
        assert 0 < fit["ratio_low"] <= fit["ratio_high"]
        assert fit["loss_there"] <= target  # B_simple measured where the target was reached
        assert fit["B_noise"] > 0
    for key, fit in fits.items():  # where the theory is exact: within an order of magnitude
        if key.startswith("linreg"):
            assert 0.1 < fit["ratio"] < 10, (key, fit)
            # H = 2 E[(x, 1)(x, 1)^T] ~ 2 I: the Hessian-weighted noise scale is B_simple
            assert fit["B_noise"] == pytest.approx(fit["B_simple"], rel=0.2), (key, fit)


def test_grid_search(tmp_path):
    pytest.importorskip("sklearn", reason="needs the 'sklearn' extra")
    out = run_demo("grid_search", tmp_path)
    assert_real_figure(tmp_path / "grid_search.png")
    runs = {key[6:-1]: fields(value) for key, value in out.items() if key.startswith("batch[")}
    assert list(runs) == ["1", "16", "256", "full"]
    assert (int(out["candidates"]), int(out["folds"]), int(out["epochs"])) == (12, 3, 2)
    for run in runs.values():
        assert run["lr"] in (0.01, 0.1, 0.5)
        assert 0 <= run["cv_accuracy"] <= 1 and run["fit_seconds"] > 0
    best = max(runs, key=lambda b: runs[b]["cv_accuracy"])
    winner = fields(out["winner"])
    assert out["winner"].startswith(f"batch_size={best} ")
    assert winner["cv_accuracy"] == runs[best]["cv_accuracy"]
    assert runs["1"]["cv_accuracy"] > runs["full"]["cv_accuracy"]  # 2 epochs: few GD steps
    assert float(out["winner_test_accuracy"]) > 0.8
