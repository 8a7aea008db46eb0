"""benchmarks/compare.py runs and prints a well-formed table (never checks the speed)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_compare_quick_prints_a_well_formed_table():
    command = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--rounds", "1",
               "--workloads", "W1", "--w1-batches", "8,full", "--threads", "1",
               "--runners", "scratchgd-numba,scratchgd-numpy,naive-numpy,torch-manual,sklearn"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| case | runner | threads | s/epoch | µs/step | accuracy | ÷ numba | runs |" in lines
    rows = [line for line in lines if line.startswith("| W1 ")]
    runners = {line.split("|")[2].strip() for line in rows}
    assert {"scratchgd-numba", "scratchgd-numpy", "naive-numpy"} <= runners
    number = r"\s*(nan|\d+(\.\d+)?)\s*"
    for line in rows:
        cells = line.split("|")[1:-1]
        assert len(cells) == 8, line
        if "fastest peer" not in line:
            assert cells[1].strip() in runners
            for cell in cells[3:7]:
                assert re.fullmatch(number, cell), line
            assert 0.0 <= float(cells[5]) <= 1.0
    for case in ("W1 float32 b=8", "W1 float32 b=full"):
        numba_row = next(r for r in rows if r.startswith(f"| {case} | scratchgd-numba"))
        assert float(numba_row.split("|")[7]) == 1.0  # the ratio column is relative to numba
    assert any(line.startswith("runs dropped in the slow state") for line in lines)
    assert any(line.startswith("matrix-multiply ceiling") for line in lines)


@pytest.mark.slow
def test_grid_search_quick_prints_both_estimators():
    pytest.importorskip("sklearn", reason="needs the 'sklearn' extra")
    command = [sys.executable, str(ROOT / "benchmarks" / "grid_search.py"), "--quick"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines
            if line.startswith("| scratchgd ") or line.startswith("| scikit-learn ")}
    assert set(rows) == {"scratchgd", "scikit-learn"}
    seconds = {name: float(cells[0]) for name, cells in rows.items()}
    scores = {name: float(cells[1]) for name, cells in rows.items()}
    assert all(s > 0 for s in seconds.values()) and all(0 < s <= 1 for s in scores.values())
    values = dict(line.split(": ", 1) for line in lines if ": " in line)
    assert float(values["speedup"]) == pytest.approx(seconds["scikit-learn"] / seconds["scratchgd"],
                                                     rel=0.05)
    assert float(values["best_score_difference"]) == pytest.approx(
        scores["scratchgd"] - scores["scikit-learn"], abs=2e-4)


def load_ab():
    spec = importlib.util.spec_from_file_location("ab", ROOT / "benchmarks" / "ab.py")
    ab = importlib.util.module_from_spec(spec)
    sys.modules["ab"] = ab  # dataclasses look their module up
    spec.loader.exec_module(ab)
    return ab


def test_ab_checks_out_a_ref_once_and_refuses_bad_flags(tmp_path, capsys):
    """benchmarks/ab.py: the ref's tree comes from git archive and is reused while it holds it."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git repository")
    ab = load_ab()
    folder = tmp_path / "ref"
    commit = ab.check_out("HEAD", folder)
    assert (folder / "scratchgd" / "__init__.py").exists() and len(commit) == 40
    (folder / "marker").write_text("kept")
    assert ab.check_out("HEAD", folder) == commit and (folder / "marker").exists()
    for argv in (["HEAD", "--workloads", "W3"], ["HEAD", "--rounds", "0"],
                 ["HEAD", "--blas-threads", "0"], []):
        with pytest.raises(SystemExit):
            ab.main(argv)
    assert "--workloads takes W1, W2" in capsys.readouterr().err
    settings = ab.Settings(("W1",), 1, 100, 1, "cpu")
    assert ab.labels(settings)[0] == "W1 float32 b=1" and len(ab.labels(settings)) == 10


@pytest.mark.slow
def test_gpu_dry_run_prints_a_well_formed_table():
    """benchmarks/gpu.py on the CPU (its dry run), small: both runners, every batch size."""
    pytest.importorskip("torch", reason="needs the 'array-api' extra")
    pytest.importorskip("array_api_compat", reason="needs the 'array-api' extra")
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu",
               "--threads", "1", "--rows", "600", "--batches", "32,256", "--rounds", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines()
            if re.match(r"\| \d+ \|", line)]
    assert {(int(r[0]), r[1].strip()) for r in rows} == {
        (b, name) for b in (32, 256) for name in ("scratchgd-torch", "torch-manual")}
    for cells in rows:
        assert float(cells[2]) > 0 and 0.0 <= float(cells[4]) <= 1.0
