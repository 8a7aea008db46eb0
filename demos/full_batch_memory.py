"""The article's memory argument: bigger batches need more memory; chunks plus accumulation don't.

Left: the memory one training step needs (draw the batch, forward, loss,
backward, update), measured with ``tracemalloc`` and estimated from the layer
sizes, against batch size: it grows linearly, so a full batch of a large data
set does not fit. Right: full-batch gradient descent computed in chunks with
``fit(..., accumulate="epoch")`` needs the memory of one chunk, not of the
whole set, and takes the same steps as the one-shot full batch (the demo
prints the largest weight difference).
"""

import tracemalloc
from collections.abc import Callable
from functools import partial

import numpy as np
from _common import parse_args, report

import scratchgd as sg
from scratchgd.plots import plot_memory

SIZES, LR = [64, 256, 256, 10], 0.1


def estimate_step_bytes(sizes: list[int], n: int, itemsize: int) -> int:
    """Bytes of one training step of an MLP ``sizes`` on ``n`` rows, counted from layer sizes.

    A rough count, written for this demo (switch to ``scratchgd.memory.estimate``,
    which walks the reference code array by array, once it is in the package)::

        P                      the weights and biases
        + n * sum(sizes)       the batch a_0 and every layer output kept for backprop
        + 3 n * max(sizes[1:]) delta and two temporaries of its shape while it moves back
        + 2 P                  the gradients, and the new weights the update builds

    all times ``itemsize`` bytes per number.
    """
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return itemsize * (params + n * sum(sizes) + 3 * n * max(sizes[1:]) + 2 * params)


def traced_peak(run: Callable[[], object]) -> int:
    """Peak bytes allocated (through Python's allocator, NumPy included) while ``run()`` runs."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def one_step_bytes(data: sg.Dataset, n: int) -> int:
    """Measured memory of one training step on ``n`` rows, the model's weights included."""
    def run() -> None:
        model = sg.MLP(SIZES, seed=0)
        optimizer = sg.MiniBatchSGD(LR, batch_size=n)
        X, y = next(iter(optimizer.loader(data)))  # draws (copies) one batch of n rows
        _, grads = model.loss_and_grads(X, y)
        optimizer.step(model.params, grads)
    return traced_peak(run)


def main() -> None:
    args = parse_args(__doc__)
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    n = len(train)
    batch_sizes = np.array([1, 16, 256, n] if args.quick else [1, 4, 16, 64, 256, 1024, n])
    measured = np.array([one_step_bytes(train, int(b)) for b in batch_sizes], dtype=float)
    estimated = np.array([estimate_step_bytes(SIZES, int(b), 8) for b in batch_sizes], dtype=float)
    for b, m, e in zip(batch_sizes, measured, estimated, strict=True):
        report(f"step_bytes[{b}]", f"measured={m:.0f} estimated={e:.0f} ratio={m / e:.3f}")
    slope = np.polyfit(batch_sizes, measured, 1)[0]
    report("measured_bytes_per_row", float(slope))
    report("estimated_bytes_per_row", float(estimate_step_bytes(SIZES, 1, 8)
                                            - estimate_step_bytes(SIZES, 0, 8)))

    epochs = 2 if args.quick else 3
    chunks = [64] if args.quick else [32, 128, 512]
    one_shot = sg.MLP(SIZES, seed=0)
    peaks = [traced_peak(partial(sg.fit, one_shot, train, sg.GD(LR), epochs=epochs, progress=False))]
    labels = [f"one shot\n(batch {n})"]
    for chunk in chunks:
        model = sg.MLP(SIZES, seed=0)
        optimizer = sg.MiniBatchSGD(LR, batch_size=chunk, shuffle=False)
        peaks.append(traced_peak(partial(sg.fit, model, train, optimizer, epochs=epochs,
                                         accumulate="epoch", progress=False)))
        difference = max(float(np.abs(a - b).max())
                         for a, b in zip(model.params, one_shot.params, strict=True))
        report(f"chunked[{chunk}]", f"max_weight_difference={difference:.3g} "
                                    f"peak_bytes={peaks[-1]}")
        labels.append(f"chunks of {chunk}\n{-(-n // chunk)} iterations/step\n"
                      f"max |$\\Delta w$| {difference:.0e}")
    report("one_shot_peak_bytes", peaks[0])
    report("weight_change", max(float(np.abs(a - b).max()) for a, b in
                                zip(one_shot.params, sg.MLP(SIZES, seed=0).params, strict=True)))
    plot_memory(batch_sizes, measured, estimated, labels, np.array(peaks, dtype=float),
                args.out / "full_batch_memory.png",
                title=f"MLP {SIZES}, float64, digits ({n} training rows); full-batch GD: "
                      f"{epochs} epochs = {epochs} training steps")


if __name__ == "__main__":
    main()
