"""Are batch sizes that are powers of two faster? The article says they use memory best.

Throughput (samples per second) of real training steps, ``fit`` on mini-batch
SGD, for batch sizes just below, at and just above powers of two, on every
compute backend scratchgd has and in float64 and float32. Each measurement is
one epoch of a fixed number of steps, timed by ``History.epoch_seconds``; the
batch sizes are visited in a fresh random order in every repeat (15 repeats,
fewer if a busy machine makes them take over 45 seconds), and the median over
the repeats is kept. The demo prints, for every power of two p,
throughput(p) / mean(throughput(p - 1), throughput(p + 1)), their geometric
mean with a bootstrap interval, and its verdict: powers of two are faster only
if the whole interval lies above 1. With fewer than ``MIN_REPEATS`` repeats
(``--quick`` takes 3) the medians and their interval are too rough for one: the
demo says so instead of a verdict.
"""

import time

import numpy as np
from _common import machine, parse_args, report

import scratchgd as sg
from scratchgd import kernels
from scratchgd.plots import plot_throughput, throughput_ratio

TIME_BUDGET, MIN_REPEATS = 45.0, 5  # seconds of measuring after which no new repeat starts,
# once MIN_REPEATS are done: the fewest repeats the demo gives a verdict from
SIZES = [31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257]


def mean_ratio(timings: dict, configs: list, sizes: list[int], steps: int,
               rng: np.random.Generator, draws: int = 400) -> tuple[float, float, float]:
    """Geometric mean over backends and powers of two of throughput(p) / mean(p - 1, p + 1).

    Returns the estimate from the medians of the repeats and a 95% bootstrap
    interval: the repeats of every (backend, batch size) are resampled with
    replacement ``draws`` times and the statistic recomputed.
    """
    def statistic(median_seconds: dict) -> np.ndarray:
        logs = []
        for config in configs:
            rate = {b: b * steps / median_seconds[config, b] for b in sizes}
            logs += [np.log(rate[p] / ((rate[p - 1] + rate[p + 1]) / 2)) for p in sizes[1::3]]
        return np.exp(np.mean(logs, axis=0))

    estimate = statistic({key: np.median(t) for key, t in timings.items()})
    resampled = {key: np.median(rng.choice(t, size=(draws, len(t))), axis=1)
                 for key, t in timings.items()}
    low, high = np.quantile(statistic(resampled), [0.025, 0.975])
    return float(estimate), float(low), float(high)


def verdict(mean: float, low: float, high: float, repeats: int) -> str:
    """What the mean ratio and its 95% interval say, or that ``repeats`` are too few to say."""
    if repeats < MIN_REPEATS:
        return (f"no verdict: {repeats} repeats, fewer than the {MIN_REPEATS} a verdict needs "
                f"(run without --quick); this run measured {100 * (mean - 1):+.1f}%, "
                f"interval {100 * (low - 1):+.1f}% to {100 * (high - 1):+.1f}%")
    if low > 1:
        return f"powers of two are faster, by {100 * (mean - 1):.1f}% on average"
    if high < 1:
        return f"powers of two are slower, by {100 * (1 - mean):.1f}% on average"
    return (f"no measurable difference: powers of two are {100 * (mean - 1):+.1f}% against "
            f"their neighbours, within the noise ({100 * (low - 1):+.1f}% to "
            f"{100 * (high - 1):+.1f}%)")


def main() -> None:
    args = parse_args(__doc__)
    sizes = [31, 32, 33, 63, 64, 65] if args.quick else SIZES
    steps, repeats = (3, 3) if args.quick else (30, 15)
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    configs = [(backend, dtype) for backend in kernels.BACKENDS for dtype in (np.float64, np.float32)]
    # for batch size b, a data set of exactly `steps` batches (digits rows, repeated)
    data = {b: sg.Dataset(*train[np.arange(b * steps) % len(train)]) for b in sizes}
    models = {c: sg.MLP([64, 128, 10], seed=0, dtype=c[1], backend=c[0]) for c in configs}

    def seconds_per_epoch(config: tuple, b: int, rows: sg.Dataset) -> float:
        optimizer = sg.MiniBatchSGD(lr=0.01, batch_size=b)
        history = sg.fit(models[config], rows, optimizer, epochs=1, progress=False)
        return history.epoch_seconds[0]

    for config in configs:  # warm up: compile (numba) and run every shape once, one step each
        for b in sizes:
            seconds_per_epoch(config, b, sg.Dataset(*data[b][:b]))
    rng = np.random.default_rng(0)
    timings = {(c, b): [] for c in configs for b in sizes}
    start = time.perf_counter()
    for repeat in range(repeats):
        if repeat >= MIN_REPEATS and time.perf_counter() - start > TIME_BUDGET:
            repeats = repeat  # a busy machine: keep the demo under two minutes
            break
        for i in rng.permutation(len(configs) * len(sizes)):
            config, b = configs[i // len(sizes)], sizes[i % len(sizes)]
            timings[config, b].append(seconds_per_epoch(config, b, data[b]))

    throughput = {}
    report("machine", machine())
    report("steps_per_measurement", steps)
    report("repeats", repeats)
    for config in configs:
        label = f"{config[0]} {np.dtype(config[1]).name}"
        throughput[label] = np.array([b * steps / np.median(timings[config, b]) for b in sizes])
        for b, r in zip(sizes, throughput[label], strict=True):
            report(f"throughput[{label}][{b}]", float(r))
        ratios = [throughput_ratio(np.array(sizes), throughput[label], p) for p in sizes[1::3]]
        for p, ratio in zip(sizes[1::3], ratios, strict=True):
            report(f"ratio[{label}][{p}]", ratio)
    mean, low, high = mean_ratio(timings, configs, sizes, steps, rng)
    report("mean_ratio", mean)
    report("mean_ratio_95_interval", f"{low:.4f} {high:.4f}")
    report("verdict", verdict(mean, low, high, repeats))
    plot_throughput(sizes, throughput, (low, high), args.out / "powers_of_two.png",
                    title=f"MLP [64, 128, 10] on digits, mini-batch SGD; median of {repeats} "
                          f"epochs of {steps} steps; {machine()}")


if __name__ == "__main__":
    main()
