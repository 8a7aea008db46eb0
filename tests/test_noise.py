"""The gradient noise scale (docs/math.md, identity 10): per-example norms, exact and sampled
figures, the closed form of linear regression, fit(track_noise=True) and both backends."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from crashes import Crash, crash_at
from hypothesis import given, settings
from strategies import problems

import scratchgd as sg
from scratchgd import checkpoint as ck
from scratchgd import kernels, noise
from scratchgd.noise import batch_estimates, noise_scale, predicted_cost

BACKENDS = tuple(kernels.BACKENDS)
DIGITS, _ = sg.datasets.digits(test_size=0.2, seed=0)


def per_row_grads(model, data):
    """Brute force: ``(n, p)``, row i the flattened gradient of ``l_i`` alone."""
    rows = []
    for i in range(len(data)):
        _, grads = model.loss_and_grads(data.X[i:i + 1], data.y[i:i + 1], reduction="sum")
        rows.append(np.concatenate([g.ravel() for g in grads]))
    return np.array(rows)


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40)
@given(problem=problems())
def test_per_example_norm_formula_equals_a_loop_of_single_rows(backend, problem):
    sizes, activation, loss, X, y, seed = problem
    model = sg.MLP(sizes, activation=activation, loss=loss, seed=seed, backend=backend)
    brute = (per_row_grads(model, sg.Dataset(X, y)) ** 2).sum(axis=1)
    norms = noise.RowNorms(len(X), model.kernels)
    model.kernels.loss_and_grads(model.params, X, model.check_y(y, len(X)), activation, loss,
                                  norms)
    np.testing.assert_allclose(norms.sq_norms, brute, rtol=1e-10, atol=1e-300)


def test_the_numba_backend_adds_the_norms_with_its_compiled_twin():
    pytest.importorskip("numba", reason="needs the 'numba' extra")
    compiled = kernels.load("numba")
    assert noise.RowNorms(3, compiled)._add is compiled.dense_sq_norms
    assert noise.RowNorms(3, kernels.load("numpy"))._add is noise.layer_sq_norms
    rng = np.random.default_rng(0)
    a, delta = rng.standard_normal((5, 7)), rng.standard_normal((5, 3))
    mine, twin = np.zeros(5), np.zeros(5)
    noise.layer_sq_norms(a, delta, mine)
    compiled.dense_sq_norms(a, delta, twin)
    np.testing.assert_allclose(twin, mine, rtol=1e-13)


def brute_noise(model, data):
    g = per_row_grads(model, data)
    G = g.mean(axis=0)
    return G @ G, ((g - G) ** 2).sum(axis=1).mean()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_noise_equals_brute_force_in_blocks(backend, monkeypatch):
    monkeypatch.setattr(noise, "BLOCK_ROWS", 37)  # 300 rows: 9 blocks, the last short
    data = sg.Dataset(DIGITS.X[:300], DIGITS.y[:300])
    model = sg.MLP([64, 16, 10], activation="tanh", seed=1, backend=backend)
    before = [p.copy() for p in model.params]
    gn = sg.gradient_noise(model, data)
    grad_sq, trace_cov = brute_noise(model, data)
    assert gn.rows == 300
    assert relative(gn.grad_sq, grad_sq) < 1e-10
    assert relative(gn.trace_cov, trace_cov) < 1e-10
    assert relative(gn.b_simple, trace_cov / grad_sq) < 1e-10
    assert all(np.array_equal(p, q) for p, q in zip(model.params, before, strict=True))
    assert sg.gradient_noise(model, data, rows=300) == gn  # rows=n is every row


def test_gradient_noise_reads_a_memory_map_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(noise, "BLOCK_ROWS", 100)
    np.save(tmp_path / "X.npy", DIGITS.X[:250])
    np.save(tmp_path / "y.npy", DIGITS.y[:250])
    mapped = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    assert isinstance(mapped.X, np.memmap)
    model = sg.MLP([64, 8, 10], seed=0)
    in_memory = sg.gradient_noise(model, sg.Dataset(DIGITS.X[:250], DIGITS.y[:250]), rows=50)
    assert sg.gradient_noise(model, mapped, rows=50) == in_memory


def linear_regression(n, d, seed):
    """x ~ N(0, I_d), y = x . w* (no noise)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w_star = rng.standard_normal(d)
    return sg.Dataset(X, (X @ w_star)[:, None]), w_star


def closed_form_b_simple(model, data, w_star):
    """B_simple of MLP([d, 1], loss="mse") with the data set as the population.

    With x~_i = (x_i, 1), theta = (w - w*, b) the residual is r_i = x~_i . theta
    and g_i = 2 r_i x~_i, so with M = (1/n) sum x~_i x~_i^T and
    K = (1/n) sum |x~_i|^2 x~_i x~_i^T:
        |G|^2 = 4 theta^T M^2 theta,   (1/n) sum |g_i|^2 = 4 theta^T K theta,
        B_simple = theta^T K theta / theta^T M^2 theta - 1.
    For x ~ N(0, I_d) and n -> infinity, M -> I and K -> diag((d + 3) I_d, d + 1):
        B_simple -> ((d + 2) |w - w*|^2 + d b^2) / (|w - w*|^2 + b^2).
    """
    X = np.hstack([data.X, np.ones((len(data), 1))])
    theta = np.append(model.params[0][:, 0] - w_star, model.params[1][0])
    M = X.T @ X / len(X)
    K = (X * (X * X).sum(axis=1)[:, None]).T @ X / len(X)
    return (theta @ K @ theta) / (theta @ M @ M @ theta) - 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("d, seed", [(1, 0), (5, 1), (20, 2)])
def test_linear_regression_matches_the_closed_form(backend, d, seed):
    data, w_star = linear_regression(500, d, seed)
    model = sg.MLP([d, 1], loss="mse", seed=seed, backend=backend)
    model.params[1][:] = 0.7  # a bias away from the optimum's 0
    gn = sg.gradient_noise(model, data)
    assert relative(gn.b_simple, closed_form_b_simple(model, data, w_star)) < 1e-9


def test_linear_regression_tends_to_the_gaussian_limit():
    d = 10
    data, w_star = linear_regression(200_000, d, 3)
    model = sg.MLP([d, 1], loss="mse", seed=3)
    model.params[1][:] = 0.7
    u2, b2 = ((model.params[0][:, 0] - w_star) ** 2).sum(), 0.7 ** 2
    limit = ((d + 2) * u2 + d * b2) / (u2 + b2)
    assert relative(sg.gradient_noise(model, data).b_simple, limit) < 0.03


def test_sampled_estimates_are_unbiased():
    n, m, seeds = 60, 10, 400
    data = sg.Dataset(DIGITS.X[:n], DIGITS.y[:n])
    model = sg.MLP([64, 8, 10], seed=0)
    exact = sg.gradient_noise(model, data)
    draws = [sg.gradient_noise(model, data, rows=m, seed=s) for s in range(seeds)]
    assert all(gn.rows == m for gn in draws)
    for name in ("grad_sq", "trace_cov"):
        values = np.array([getattr(gn, name) for gn in draws])
        error = values.std(ddof=1) / math.sqrt(seeds)
        assert abs(values.mean() - getattr(exact, name)) < 3 * error, name
    # without the finite-population correction the same test fails: it can fail
    traces = np.array([gn.trace_cov for gn in draws]) * n * (m - 1) / (m * (n - 1))
    assert abs(traces.mean() - exact.trace_cov) > 3 * traces.std(ddof=1) / math.sqrt(seeds)


def test_noise_scale_never_divides_by_zero():
    assert noise_scale(2.0, 6.0) == 3.0
    assert noise_scale(0.0, 1.0) == math.inf
    assert noise_scale(-0.5, 1.0) == math.inf
    assert math.isnan(noise_scale(0.0, 0.0))
    assert predicted_cost(4, 0.0) == (1.0, math.inf)
    assert predicted_cost(4, math.inf) == (math.inf, 1.0)


def test_batch_estimates_are_the_two_size_estimators():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((5, 3))
    small, big = (g ** 2).sum(axis=1).mean(), (g.mean(axis=0) ** 2).sum()
    grad_sq, trace = batch_estimates([g.sum(axis=0)], (g ** 2).sum(axis=1))
    assert grad_sq == pytest.approx((5 * big - small) / 4, rel=1e-12)
    assert trace == pytest.approx(((g - g.mean(axis=0)) ** 2).sum(axis=1).sum() / 4, rel=1e-12)


@pytest.mark.parametrize("rows", [0, 1, 301, 2.5, "all", True])
def test_bad_rows_are_refused(rows):
    data = sg.Dataset(DIGITS.X[:300], DIGITS.y[:300])
    with pytest.raises((ValueError, TypeError), match="rows"):
        sg.gradient_noise(sg.MLP([64, 10]), data, rows=rows)


def test_track_noise_agrees_with_gradient_noise_within_sampling_error():
    model = sg.MLP([64, 32, 10], seed=0)
    exact = sg.gradient_noise(model, DIGITS)
    # a learning rate so small that the weights stay put: every epoch samples the same noise
    history = sg.fit(model, DIGITS, sg.MiniBatchSGD(1e-12, batch_size=32), epochs=30,
                     progress=False, track_noise=True)
    b = np.array(history.b_simple)
    assert len(b) == 30 and np.isfinite(b).all()
    n = len(DIGITS)  # batches drawn without replacement: E|G|^2 estimate = |G|^2 - tr/(n - 1)
    expected = exact.trace_cov * n / (n - 1) / (exact.grad_sq - exact.trace_cov / (n - 1))
    assert abs(b.mean() - expected) < 3 * b.std(ddof=1) / math.sqrt(len(b))
    assert b.std() > 0  # each epoch's batches differ: a real estimate, not a copy


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_backends_agree(dtype, tol):
    data = sg.Dataset(DIGITS.X[:200], DIGITS.y[:200])
    runs = {}
    for backend in BACKENDS:
        model = sg.MLP([64, 16, 10], seed=2, dtype=dtype, backend=backend)
        history = sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=9, momentum=0.5),
                         epochs=3, progress=False, track_noise=True)
        runs[backend] = model, history, sg.gradient_noise(model, data, rows=50, seed=4)
    (m1, h1, g1), (m2, h2, g2) = runs.values()
    for p, q in zip(m1.params, m2.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol)
    np.testing.assert_allclose(h1.b_simple, h2.b_simple, rtol=tol)
    for name in ("grad_sq", "trace_cov", "b_simple"):
        assert relative(getattr(g1, name), getattr(g2, name)) < tol


def test_track_noise_leaves_the_run_unchanged_and_skips_a_one_row_batch():
    data = sg.Dataset(DIGITS.X[:33], DIGITS.y[:33])  # batches of 32 and 1 rows
    runs = []
    for track in (False, True):
        model = sg.MLP([64, 8, 10], seed=0)
        runs.append((model, sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=32), epochs=1,
                                   progress=False, track_noise=track)))
    (plain, h_plain), (tracked, h_tracked) = runs
    assert all(np.array_equal(p, q) for p, q in zip(plain.params, tracked.params, strict=True))
    assert h_plain.b_simple == [] and h_plain.epoch_loss == h_tracked.epoch_loss
    # the estimate is the first batch's alone, at the starting weights
    model = sg.MLP([64, 8, 10], seed=0)
    loader = sg.MiniBatchSGD(0.1, batch_size=32).loader(data, seed=0)
    index = loader.batch_index(loader.epoch_order(), 0)
    norms = noise.RowNorms(32, model.kernels)
    _, grads, _ = model.kernels.loss_and_grads(model.params, data.X[index], data.y[index],
                                                "relu", "cross_entropy", norms)
    assert h_tracked.b_simple == [noise_scale(*batch_estimates(grads, norms.sq_norms))]


def test_track_noise_refuses_sgd_and_bad_values():
    with pytest.raises(ValueError, match="track_noise.*one row"):
        sg.fit(sg.MLP([64, 10]), DIGITS, sg.SGD(0.1), epochs=1, track_noise=True)
    with pytest.raises(TypeError, match="track_noise"):
        sg.fit(sg.MLP([64, 10]), DIGITS, sg.GD(0.1), epochs=1, track_noise="yes")


def noisy_run(path, resume=False, crash_at_step=None):
    model = sg.MLP([64, 8, 10], seed=0)
    optimizer = crash_at(sg.MiniBatchSGD(0.1, batch_size=16, momentum=0.9), crash_at_step)
    data = sg.Dataset(DIGITS.X[:100], DIGITS.y[:100])
    history = sg.fit(model, data, optimizer, epochs=3, progress=False, checkpoint=path,
                     checkpoint_every=3, resume=resume, track_noise=True)
    return model, history


def test_resume_with_track_noise_is_bit_identical(tmp_path):
    reference_model, reference = noisy_run(None)
    path = tmp_path / "run.npz"
    with pytest.raises(Crash):
        noisy_run(path, crash_at_step=11)  # inside epoch 2 (7 steps per epoch)
    saved = ck.load(path)
    assert saved.position["noise_batches"] > 0 and saved.position["noise_trace_cov"] > 0
    model, history = noisy_run(path, resume=True)
    assert all(np.array_equal(p, q) for p, q in zip(model.params, reference_model.params,
                                                    strict=True))
    assert history.b_simple == reference.b_simple and len(history.b_simple) == 3
    with pytest.raises(ValueError, match="track_noise"):  # the setting is part of the run
        sg.fit(sg.MLP([64, 8, 10], seed=0), sg.Dataset(DIGITS.X[:100], DIGITS.y[:100]),
               sg.MiniBatchSGD(0.1, batch_size=16, momentum=0.9), epochs=3, progress=False,
               checkpoint=path, checkpoint_every=3, resume=True)


def test_a_version_1_checkpoint_is_refused_naming_its_version(tmp_path):
    path = tmp_path / "run.npz"
    noisy_run(path)
    arrays = ck.read_npz(path)
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 1
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="format version 1"):
        ck.load(path)


def test_advise_batch_size_table():
    model = sg.MLP([64, 32, 10], seed=0)
    b = sg.gradient_noise(model, DIGITS).b_simple
    table = sg.advise_batch_size(model, DIGITS)
    assert [row["batch_size"] for row in table] == [2 ** i for i in range(11)] + [len(DIGITS)]
    for row in table:
        B = row["batch_size"]
        assert row["b_simple"] == b
        assert row["steps_ratio"] == pytest.approx(1 + b / B)
        assert row["examples_ratio"] == pytest.approx(1 + B / b)
        assert row["recommended"] == (b / 2 <= B <= 2 * b)
    assert any(row["recommended"] for row in table)
    custom = sg.advise_batch_size(model, DIGITS, batch_sizes=[3, 100], rows=500, seed=1)
    assert [row["batch_size"] for row in custom] == [3, 100]
    with pytest.raises(ValueError, match=r"batch_sizes\[1\]"):
        sg.advise_batch_size(model, DIGITS, batch_sizes=[3, 0])


def test_cli_advise_prints_the_table_and_a_range(capsys, tmp_path):
    from scratchgd.cli import main

    plot = tmp_path / "advice.png"
    assert main(["advise", "--epochs", "2", "--no-progress", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert sum("B_simple (from its batches)" in line for line in out.splitlines()) == 2
    b = float(out.split("B_simple at the current training loss")[1].split(": ")[1].split()[0])
    rows = [line.split() for line in out.splitlines() if line.rstrip().endswith(
        ("(predicted)", "recommended"))]
    sizes = [int(r[0]) for r in rows]
    assert sizes == [2 ** i for i in range(11)] + [len(DIGITS)]
    for r in rows:
        assert float(r[1]) == pytest.approx(1 + b / int(r[0]), rel=6e-3)  # printed to 3 digits
        assert (r[-1] == "recommended") == (b / 2 <= int(r[0]) <= 2 * b)
    chosen = [int(r[0]) for r in rows if r[-1] == "recommended"]
    assert f"B_simple's range, what the model recommends: {min(chosen)} to {max(chosen)}" in out
    assert plot.stat().st_size > 10_000


def paragraph(out: str) -> str:
    """``out`` with its line breaks undone: what ``advise`` wraps, compared as one line."""
    return " ".join(out.split())


def test_cli_advise_says_what_its_range_estimates_and_what_was_measured(capsys):
    from scratchgd.cli import main
    from scratchgd.cli.advise import MEASURED

    assert main(["advise", "--epochs", "2", "--no-progress"]) == 0
    out = paragraph(capsys.readouterr().out)
    # what the figure is, and where in training it holds
    assert "what it is: the gradient noise scale tr(Sigma) / |G|^2 at these weights" in out
    assert "It holds for the training from here on, and grows as the loss falls" in out
    b_epochs = [float(x) for x in re.findall(r"B_simple \(from its batches\) (\S+)", out)]
    assert (f"(estimated from the batches: {b_epochs[0]:.4g} in epoch 1, {b_epochs[-1]:.4g} in "
            f"epoch 2)") in out
    assert "with B_simple taken for the critical batch size and the learning rate tuned" in out
    # on the digits, what was measured instead, after the range
    assert out.index(MEASURED["digits"]) > out.index("B_simple's range")
    assert "use batch sizes up to about 32" in MEASURED["digits"] and MEASURED[None] not in out

    assert main(["advise", "--epochs", "1", "--no-progress", "--dataset", "spirals"]) == 0
    out = paragraph(capsys.readouterr().out)
    assert MEASURED[None] in out and MEASURED["digits"] not in out


def test_the_advisors_quoted_measurements_are_those_of_batch_size_md():
    from scratchgd.cli.advise import MEASURED

    page = (Path(__file__).resolve().parents[1] / "docs" / "batch_size.md").read_text()
    rows, task = {}, None
    for line in page.splitlines():  # the table of "Does it predict the critical batch size?"
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not line.startswith("| ") or len(cells) < 5 or not re.fullmatch(r"[\d.]+", cells[1]):
            continue
        task = cells[0].split(",")[0] or task
        head = dict(zip(("target", "b_crit", "b_simple"), map(float, cells[1:4]), strict=True))
        rows.setdefault(task, []).append({**head, "ratio": float(cells[-1].split()[0])})
    digits, regression = rows["digits"], rows["linear regression"]
    assert len(digits) == len(regression) == 5

    def close(quoted: str, value: float) -> bool:
        return abs(float(quoted) - value) <= 0.05 * value

    low, high = re.search(r"between (\S+) and (\S+) for", MEASURED["digits"]).groups()
    assert close(low, min(r["b_crit"] for r in digits))
    assert close(high, max(r["b_crit"] for r in digits))
    first, top = re.search(r"grew from (\S+) to (\S+)\.", MEASURED["digits"]).groups()
    assert close(first, digits[0]["b_simple"]) and close(top, max(r["b_simple"] for r in digits))
    low, high = re.search(r"was (\S+) to (\S+) times smaller", MEASURED[None]).groups()
    assert close(low, 1 / max(r["ratio"] for r in digits))
    assert close(high, 1 / min(r["ratio"] for r in digits))
    low, high = re.search(r"and (\S+) to (\S+) times B_simple", MEASURED[None]).groups()
    assert close(low, min(r["ratio"] for r in regression))
    assert close(high, max(r["ratio"] for r in regression))


def test_cli_advise_refuses_bad_rows(capsys):
    from scratchgd.cli import main

    assert main(["advise", "--epochs", "1", "--no-progress", "--rows", "1"]) == 2
    assert "rows" in capsys.readouterr().err
