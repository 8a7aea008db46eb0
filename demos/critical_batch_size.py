"""Critical batch size: does the gradient noise scale predict it?

The experiment of McCandlish et al. (2018, arXiv:1812.06162) on our data. For a
grid of batch sizes from 1 to the full batch (non-powers of two included), each
with its learning rate tuned over a small grid, record the training steps S
and examples E = B S each needs to first reach several target training losses
(the loss over the whole training set, running minimum, measured on a
geometric schedule of steps: every step at first, then every ~5%). Per target,
fit the paper's model ``S = S_min + E_min / B`` (equivalently
``(S / S_min - 1)(E / E_min - 1) = 1``) by non-negative least squares on the
relative errors, so ``B_crit = E_min / S_min``; and measure ``B_simple`` with
``sg.gradient_noise`` at the weights where a run first reached that loss (of
all runs, the one whose loss at that moment was closest to the target: a
large step can jump well below it). Printed per target: ``B_crit / B_simple`` with a 95%
bootstrap interval (batch sizes resampled with replacement). Beside it, at the
same weights, the paper's ``B_noise = tr(H Sigma) / (G^T H G)``, of which
``B_simple`` is the special case ``H = I``: it tells how much of the gap
between ``B_crit`` and ``B_simple`` the curvature of the loss explains. And the
spread of ``B_simple`` over every run (batch size, learning rate) at the point
where it first reached the target: how much one point's figure depends on the
run that got there. Last, batches of 32 and 256 at ``scratchgd advise``'s
learning rate, 0.1, for both: the steps each needs to reach loss 0.5.

Two tasks: the digits (MLP 64-128-10, cross-entropy) and a synthetic linear
regression ``y = x . w* + noise`` (MLP [d, 1], mse), where the Hessian is a
multiple of the identity and ``B_simple`` is the paper's ``B_noise`` exactly.
Backend numba (compiled kernels; cached after the first run).
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
from _common import machine, parse_args, report
from scipy.optimize import nnls

import scratchgd as sg
from scratchgd.plots import plot_critical_batch

SCHEDULE = 1.05
"""The full training loss is measured after step ``t`` for ``t`` in ``round(1.05 ** k)``."""
BOOTSTRAP = 1000


def linear_regression(n: int, d: int, noise: float, seed: int) -> sg.Dataset:
    """``x ~ N(0, I_d)``, ``y = x . w* + noise * N(0, 1)``, ``w* ~ N(0, I_d)``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return sg.Dataset(X, (X @ rng.standard_normal(d) + noise * rng.standard_normal(n))[:, None])


def first_crossings(model: sg.MLP, data: sg.Dataset, batch_size: int, lr: float,
                    targets: list[float], max_examples: int, seed: int
                    ) -> dict[float, tuple[int, float, list[np.ndarray]]]:
    """Train with mini-batch SGD until every target is reached or ``max_examples`` are seen.

    Returns, for each target reached, the step at which the running minimum of
    the full training loss first fell to it, that loss, and a copy of the
    weights then. A run that diverges stops there.
    """
    optimizer = sg.MiniBatchSGD(lr, batch_size=batch_size)
    loader = optimizer.loader(data, seed=seed)
    y = model.check_y(data.y, len(data))
    checks = {round(SCHEDULE ** k) for k in range(int(math.log(max_examples) / math.log(SCHEDULE))
                                                   + 2)}
    reached, step = {}, 0
    # a learning rate too large for its batch size overflows: caught as divergence below
    with np.errstate(over="ignore", invalid="ignore"), contextlib.suppress(sg.TrainingDiverged):
        while step * batch_size < max_examples and len(reached) < len(targets):
            order = loader.epoch_order()
            for iteration in range(len(loader)):
                index = loader.batch_index(order, iteration)
                X = np.asarray(data.X[index], dtype=model.dtype)
                _, grads, _ = model.kernels.loss_and_grads(model.params, X, y[index],
                                                            model.activation, model.loss)
                optimizer.step(model.params, [g / len(X) for g in grads])
                step += 1
                if step in checks:
                    loss = sg.evaluate(model, data)[0]
                    if not math.isfinite(loss):
                        return reached
                    for target in targets:
                        if loss <= target and target not in reached:
                            reached[target] = (step, loss, [p.copy() for p in model.params])
                if len(reached) == len(targets) or step * batch_size >= max_examples:
                    break
    return reached


def b_noise(model: sg.MLP, data: sg.Dataset, rows: int | None = None, step: float = 1e-5) -> float:
    """The paper's ``B_noise = tr(H Sigma) / (G^T H G)`` at the model's weights.

    ``H`` is the Hessian of the mean loss; ``B_simple`` is this ratio with
    ``H = I``. Hessian-vector products come from central differences of the
    mean gradient, ``H v ~ (G(w + h v) - G(w - h v)) / (2 h)`` with
    ``h |v| = step |w|``, and ``tr(H Sigma) = (1/n) sum_i (g_i - G)^T H (g_i - G)``
    takes one product per row: of every row, or with ``rows`` of that many drawn
    without replacement (seed 0), an unbiased estimate of the same mean.
    """
    y = model.check_y(data.y, len(data))
    X = model.inputs(data.X)
    w = np.concatenate([p.ravel() for p in model.params])
    splits = np.cumsum([p.size for p in model.params])[:-1]

    def gradient(flat: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        params = [part.reshape(p.shape) for part, p in zip(np.split(flat, splits), model.params,
                                                           strict=True)]
        _, grads, _ = model.kernels.loss_and_grads(params, X[rows], y[rows], model.activation,
                                                    model.loss)
        return np.concatenate([g.ravel() for g in grads]) / len(X[rows])

    def curvature(v: np.ndarray) -> float:  # v^T H v
        h = step * np.linalg.norm(w) / np.linalg.norm(v)
        return float(v @ (gradient(w + h * v) - gradient(w - h * v))) / (2 * h)

    per_row = np.array([gradient(w, slice(i, i + 1)) for i in range(len(X))])
    G = per_row.mean(axis=0)
    sample = (per_row if rows is None or rows >= len(X)
              else per_row[np.random.default_rng(0).choice(len(X), rows, replace=False)])
    return float(np.mean([curvature(g - G) for g in sample])) / curvature(G)


def fit_model(batch_sizes: np.ndarray, steps: np.ndarray) -> tuple[float, float]:
    """``(S_min, E_min) >= 0`` minimising ``sum_j ((S_min + E_min / B_j) / S_j - 1)^2``."""
    A = np.column_stack([1 / steps, 1 / (batch_sizes * steps)])
    (s_min, e_min), _ = nnls(A, np.ones(len(steps)))
    return s_min, e_min


def critical_ratio(batch_sizes: np.ndarray, steps: np.ndarray, b_simple: float,
                   rng: np.random.Generator) -> tuple[float, float, float]:
    """``B_crit / B_simple`` and its 95% bootstrap interval over the batch sizes."""
    s_min, e_min = fit_model(batch_sizes, steps)
    ratios = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(steps), len(steps))
        if len(set(batch_sizes[pick])) < 2:
            continue
        s, e = fit_model(batch_sizes[pick], steps[pick])
        ratios.append(e / s / b_simple if s > 0 else math.inf)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return e_min / s_min / b_simple if s_min > 0 else math.inf, float(low), float(high)


def experiment(name: str, data: sg.Dataset, make_model, batch_sizes: list[int],
               lr_grid, targets: list[float], max_epochs: float, seed: int,
               noise_rows: int | None = None) -> dict:
    """Run the grid of one task, fit per target; report and return what the figure needs."""
    n = len(data)
    best: dict[float, dict[int, int]] = {t: {} for t in targets}
    closest: dict[float, tuple[float, list[np.ndarray]]] = {}  # loss <= target, weights
    every_run: dict[float, list[float]] = {t: [] for t in targets}  # B_simple where each crossed
    probe = make_model()
    start = time.perf_counter()
    for b in batch_sizes:
        for lr in lr_grid(b):
            crossings = first_crossings(make_model(), data, b, lr, targets,
                                        int(max_epochs * n), seed)
            for target, (s, loss, weights) in crossings.items():
                probe.params = weights
                every_run[target].append(sg.gradient_noise(probe, data).b_simple)
                best[target][b] = min(s, best[target].get(b, s))
                if target not in closest or loss > closest[target][0]:
                    closest[target] = (loss, weights)
    rng = np.random.default_rng(seed)
    result = {"targets": [], "points": {}, "fits": {}, "b_crit": [], "b_simple": [],
              "b_noise": [], "interval": []}
    model = make_model()
    for target in targets:
        reached = best[target]
        if len(reached) < 3:
            report(f"{name}_target[{target:g}]", f"reached by {len(reached)} batch sizes: no fit")
            continue
        B = np.array(sorted(reached), dtype=float)
        S = np.array([reached[b] for b in sorted(reached)], dtype=float)
        s_min, e_min = fit_model(B, S)
        model.params = closest[target][1]
        b_simple = sg.gradient_noise(model, data).b_simple
        noise = b_noise(model, data, noise_rows)
        ratio, low, high = critical_ratio(B, S, b_simple, rng)
        report(f"{name}_target[{target:g}]",
               f"S_min={s_min:.4g} E_min={e_min:.4g} B_crit={e_min / s_min:.4g} "
               f"B_simple={b_simple:.4g} B_noise={noise:.4g} loss_there={closest[target][0]:.4g} "
               f"ratio={ratio:.4g} ratio_low={low:.4g} ratio_high={high:.4g} "
               f"batch_sizes={len(B)}")
        runs = np.array(every_run[target])
        report(f"{name}_b_simple_of_every_run[{target:g}]",
               f"runs={len(runs)} min={runs.min():.4g} median={np.median(runs):.4g} "
               f"max={runs.max():.4g}")
        result["targets"].append(target)
        result["points"][target] = (B, S)
        result["fits"][target] = (s_min, e_min)
        result["b_crit"].append(e_min / s_min)
        result["b_simple"].append(b_simple)
        result["b_noise"].append(noise)
        result["interval"].append((low * b_simple, high * b_simple))
    report(f"{name}_seconds", time.perf_counter() - start)
    return result


def main() -> None:
    args = parse_args(__doc__)
    report("machine", machine())
    report("seeds", "weights 0, data loader 0, linear regression data 0, bootstrap 0")
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    n = len(train)
    if args.quick:
        digit_sizes, digit_targets, digit_epochs = [1, 4, 16, 64, 256, n], [1.0, 0.5], 4
        factors = (0.5, 1.0)
    else:
        digit_sizes = [1, 2, 3, 5, 8, 13, 24, 32, 50, 90, 128, 200, 350, 512, 800, n]
        digit_targets, digit_epochs, factors = [1.0, 0.5, 0.3, 0.2, 0.1], 40, (0.5, 1.0, 2.0)
    for b in (32, 256):  # scratchgd advise's learning rate, not tuned to the batch size
        step = first_crossings(sg.MLP([64, 128, 10], seed=0, backend="numba"), train, b, 0.1,
                               [0.5], 40 * n, 0).get(0.5, (math.nan,))[0]
        report(f"digits_fixed_lr[{b}]", f"lr=0.1 target=0.5 steps={step} examples={step * b}")
    tasks = {"digits": experiment(
        "digits", train, lambda: sg.MLP([64, 128, 10], seed=0, backend="numba"), digit_sizes,
        lambda b: [0.03 * math.sqrt(b) * f for f in factors], digit_targets, digit_epochs, 0,
        64 if args.quick else None)}
    d, noise = 16, 0.5
    reg = linear_regression(512 if args.quick else 2048, d, noise, seed=0)
    reg_sizes = ([1, 4, 16, 64, len(reg)] if args.quick
                 else [1, 2, 3, 6, 10, 16, 24, 40, 64, 100, 160, 256, 500, 1000, len(reg)])
    floor = noise ** 2
    reg_targets = [floor + e for e in ((4.0, 1.0) if args.quick else (4.0, 1.0, 0.3, 0.1, 0.03))]
    tasks[f"linear regression (d={d})"] = experiment(
        "linreg", reg, lambda: sg.MLP([d, 1], loss="mse", seed=0, backend="numba"), reg_sizes,
        lambda b: [min(0.5, 0.02 * b) * f for f in factors], reg_targets,
        8 if args.quick else 60, 0, 200 if args.quick else None)
    plot_critical_batch(tasks, args.out / "critical_batch_size.png",
                        title=f"Critical batch size: measured (fit of S against E) and "
                              f"predicted (B_simple); {machine()}")


if __name__ == "__main__":
    main()
