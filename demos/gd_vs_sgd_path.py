"""The article's second figure: GD, SGD and mini-batch paths over the contour lines of the loss.

Linear regression ``y_hat = w x + b`` (``MLP([1, 1], loss="mse")``: one weight,
one bias) on a synthetic data set of 60 points. All three optimizers start at
the same point and take the same number of training steps; GD (solid) follows
the full loss downhill, SGD (dotted) steps on one sample at a time, mini-batch
SGD (dashed) on 10. Each run's end is marked with an x.

SGD zigzags because one row's gradient is the full gradient plus noise: the
demo prints ``B_simple = tr(Sigma) / |G|^2`` (``sg.gradient_noise``), the noise
against the gradient, at the start and where GD ends, next to the minimum; a
batch of ``b`` rows divides the noise by ``b`` (docs/batch_size.md).
"""

import numpy as np
from _common import parse_args, report

import scratchgd as sg
from scratchgd.plots import plot_loss_paths
from scratchgd.toy import descend, linear_loss_surface

N, START, LR, STEPS, BATCH = 60, (-1.5, 2.0), 0.1, 120, 10


def make_data(seed: int = 0) -> sg.Dataset:
    """``y = 1.5 x - 0.5 + 0.5 N(0, 1)`` with ``x`` uniform in ``[-0.5, 1.5]``.

    ``x`` is not centred, so ``w`` and ``b`` are correlated and the contour
    ellipses are tilted: GD's path bends.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 1.5, size=(N, 1))
    return sg.Dataset(x, 1.5 * x - 0.5 + 0.5 * rng.standard_normal((N, 1)))


def main() -> None:
    args = parse_args(__doc__)
    data = make_data()
    optimizers = {"GD": sg.GD(LR), "SGD": sg.SGD(LR),
                  f"mini-batch SGD (b={BATCH})": sg.MiniBatchSGD(LR, batch_size=BATCH)}
    paths = {}
    for label, optimizer in optimizers.items():
        model = sg.MLP([1, 1], loss="mse")
        model.params[0][...], model.params[1][...] = START
        paths[label] = descend(model, data, optimizer, STEPS, seed=0)
    X1 = np.column_stack([data.X[:, 0], np.ones(N)])
    optimum = np.linalg.lstsq(X1, data.y[:, 0], rcond=None)[0]
    report("optimum_w", float(optimum[0]))
    report("optimum_b", float(optimum[1]))
    report("start_loss", float(linear_loss_surface(*START, data)))
    report("minimum_loss", float(linear_loss_surface(*optimum, data)))
    for label, p in paths.items():
        key = label.split()[0].lower().replace("-", "")
        report(f"{key}_epochs", STEPS * optimizers[label].loader(data).rows_per_batch / N)
        report(f"{key}_end_loss", float(linear_loss_surface(*p[-1], data)))
        report(f"{key}_end_distance", float(np.linalg.norm(p[-1] - optimum)))
    noise = {}
    for where, (w, b) in (("start", START), ("gd_end", paths["GD"][-1])):
        model = sg.MLP([1, 1], loss="mse")
        model.params[0][...], model.params[1][...] = w, b
        noise[where] = sg.gradient_noise(model, data).b_simple
        report(f"b_simple_at_{where}", noise[where])
    plot_loss_paths(lambda w, b: linear_loss_surface(w, b, data), (-2.5, 3.5, -2.0, 3.0), paths,
                    tuple(optimum), path=args.out / "gd_vs_sgd_path.png",
                    title=f"{STEPS} training steps each, learning rate {LR}, from the same start\n"
                          f"SGD zigzags: one row's gradient is the full gradient G plus noise of "
                          f"summed variance tr($\\Sigma$) = {noise['start']:.2g} |G|$^2$ at the "
                          f"start, {noise['gd_end']:.2g} |G|$^2$ where GD ends;\na batch of b rows "
                          f"divides the noise by b (docs/batch_size.md, the gradient noise scale)")


if __name__ == "__main__":
    main()
