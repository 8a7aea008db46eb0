"""The article's memory argument: bigger batches need more memory; chunks plus accumulation don't.

Left: the memory one training step needs (draw the batch, forward, loss,
backward, update), measured with ``tracemalloc`` and estimated from the layer
sizes by ``scratchgd.memory.estimate``, against batch size: it grows
linearly, so a full batch of a large data set does not fit. Right: full-batch
gradient descent computed in chunks with ``fit(..., accumulate="epoch")``
needs the memory of one chunk, not of the whole set, and takes the same steps
as the one-shot full batch (the demo prints the largest weight difference).
"""

import tracemalloc
from collections.abc import Callable
from functools import partial

import numpy as np
from _common import parse_args, report

import scratchgd as sg
from scratchgd import memory
from scratchgd.plots import plot_memory

SIZES, LR = [64, 256, 256, 10], 0.1


def traced_peak(run: Callable[[], object]) -> int:
    """Peak bytes allocated (through Python's allocator, NumPy included) while ``run()`` runs."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def one_step_bytes(data: sg.Dataset, n: int) -> tuple[int, int]:
    """Memory of one training step on ``n`` rows, the weights included: (measured, estimated).

    Measured: the weights' bytes plus the ``tracemalloc`` peak while the step
    draws (copies) its batch, computes the gradients and updates the weights.
    Estimated: :func:`scratchgd.memory.estimate`, counted from the layer sizes
    by walking the reference code array by array (it leaves out the copy of
    the weights the update builds, which matters only for small batches).
    """
    model = sg.MLP(SIZES, seed=0)
    optimizer = sg.MiniBatchSGD(LR, batch_size=n)

    def run() -> None:
        X, y = next(iter(optimizer.loader(data)))
        _, grads = model.loss_and_grads(X, y)
        optimizer.step(model.params, grads)
    weights = sum(p.nbytes for p in model.params)
    return weights + traced_peak(run), memory.estimate(model, n)


def main() -> None:
    args = parse_args(__doc__)
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    n = len(train)
    batch_sizes = np.array([1, 16, 256, n] if args.quick else [1, 4, 16, 64, 256, 1024, n])
    measured, estimated = np.array([one_step_bytes(train, int(b)) for b in batch_sizes],
                                   dtype=float).T
    for b, m, e in zip(batch_sizes, measured, estimated, strict=True):
        report(f"step_bytes[{b}]", f"measured={m:.0f} estimated={e:.0f} ratio={m / e:.3f}")
    slope = np.polyfit(batch_sizes, measured, 1)[0]
    report("measured_bytes_per_row", float(slope))
    report("estimated_bytes_per_row", float(np.polyfit(batch_sizes, estimated, 1)[0]))

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
