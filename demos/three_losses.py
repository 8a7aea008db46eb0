"""The article's first figure: three per-sample losses, their average, GD and SGD on them.

A one-parameter model ``y_hat = w x`` sees three data points; data point i
alone has the loss ``f_i(w) = (w x_i - y_i)^2``. Their average (red) is the loss
over the whole data set. GD follows the average to its minimum at w = -0.5;
SGD follows one randomly drawn f_i per step: with a constant learning rate it
hovers near the minimum without settling, with a decaying one it converges.
"""

import numpy as np
from _common import parse_args, report

import scratchgd as sg
from scratchgd.plots import plot_three_losses
from scratchgd.toy import Line, descend

# Three data points whose own minima y_i / x_i are -1.5, 0.3 and -1.75: two on
# the left of the average's minimum, one on the other side. The average's
# minimum, sum x_i y_i / sum x_i^2, is exactly -0.5.
DATA = sg.Dataset(np.array([[1.0], [1.5], [0.8]]), np.array([[-1.5], [0.45], [-1.4]]))
START, LR, DECAY = 1.5, 0.1, 0.1


def main() -> None:
    args = parse_args(__doc__)
    steps = 100 if args.quick else 300
    w = np.linspace(-2.5, 2.0, 200 if args.quick else 900)
    losses = Line.per_sample_losses(w, DATA)
    paths = {
        "GD on the average": descend(Line(START), DATA, sg.GD(LR), steps=40)[:, 0],
        "SGD, constant rate": descend(Line(START), DATA, sg.SGD(LR), steps, seed=0)[:, 0],
        "SGD, decaying rate": descend(Line(START), DATA, sg.SGD(LR), steps, seed=0,
                                      lr_decay=DECAY)[:, 0],
    }
    w_star = Line.minimum(DATA)
    for i, (x, y) in enumerate(zip(DATA.X[:, 0], DATA.y[:, 0], strict=True), start=1):
        report(f"f{i}_minimum", float(y / x))
    report("average_minimum", w_star)
    report("average_minimum_on_grid", float(w[losses.mean(axis=1).argmin()]))
    report("gd_final", float(paths["GD on the average"][-1]))
    half = steps // 2
    report("sgd_constant_final", float(paths["SGD, constant rate"][-1]))
    report("sgd_constant_mean_distance_last_half",
           float(np.abs(paths["SGD, constant rate"][half:] - w_star).mean()))
    report("sgd_decaying_final", float(paths["SGD, decaying rate"][-1]))
    report("sgd_decaying_mean_distance_last_half",
           float(np.abs(paths["SGD, decaying rate"][half:] - w_star).mean()))
    plot_three_losses(w, losses, paths, w_star, args.out / "three_losses.png",
                      title=f"one-parameter model $y = wx$ on three data points; "
                            f"SGD learning rate {LR} (decaying: {LR}/(1 + {DECAY} t))")


if __name__ == "__main__":
    main()
