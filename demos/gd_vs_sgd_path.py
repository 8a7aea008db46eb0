"""The article's second figure: GD, SGD and mini-batch paths over the contour lines of the loss.

Linear regression ``y_hat = w x + b`` (``MLP([1, 1], loss="mse")``: one weight,
one bias) on a synthetic data set of 60 points. All three optimizers start at
the same point and take the same number of training steps; GD (solid) follows
the full loss downhill, SGD (dotted) steps on one sample at a time, mini-batch
SGD (dashed) on 10. Each run's end is marked with an x.
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
    w, b = np.meshgrid(np.linspace(-2.5, 3.5, 80 if args.quick else 200),
                       np.linspace(-2.0, 3.0, 80 if args.quick else 200))
    loss = linear_loss_surface(w, b, data)
    report("optimum_w", float(optimum[0]))
    report("optimum_b", float(optimum[1]))
    report("start_loss", float(linear_loss_surface(*START, data)))
    report("minimum_loss", float(linear_loss_surface(*optimum, data)))
    for label, p in paths.items():
        key = label.split()[0].lower().replace("-", "")
        report(f"{key}_epochs", STEPS * optimizers[label].loader(data).rows_per_batch / N)
        report(f"{key}_end_loss", float(linear_loss_surface(*p[-1], data)))
        report(f"{key}_end_distance", float(np.linalg.norm(p[-1] - optimum)))
    plot_loss_paths(w, b, loss, paths, tuple(optimum), path=args.out / "gd_vs_sgd_path.png",
                    title=f"{STEPS} training steps each, learning rate {LR}, from the same start")


if __name__ == "__main__":
    main()
