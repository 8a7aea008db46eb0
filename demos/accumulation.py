"""Iterations are not training steps: gradient accumulation.

Run A draws batches of 8 rows and accumulates the gradients of 4 iterations
before each training step (``fit(..., accumulate=4)``); run B draws batches of
32 rows and steps after every iteration. Without shuffling both runs see the
same 32 rows before every step, so they take the same steps: the demo records
the weights after every step and prints the largest difference. Plotted
against iterations the runs look different (A has 4 times as many); plotted
against training steps they are one curve.
"""

import numpy as np
from _common import parse_args, report

import scratchgd as sg
from scratchgd.plots import plot_accumulation

BATCH, K, LR = 8, 4, 0.1


class RecordingMiniBatchSGD(sg.MiniBatchSGD):
    """Mini-batch SGD that keeps a flat copy of the weights after every training step."""

    def __init__(self, lr: float, batch_size: int) -> None:
        super().__init__(lr, batch_size=batch_size, shuffle=False)
        self.path: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        super().step(params, grads)
        self.path.append(np.concatenate([p.ravel() for p in params]))


def step_losses(history: sg.History, n: int, batch: int, k: int) -> np.ndarray:
    """The mean loss over the rows behind every training step.

    Iterations ``1..k`` of an epoch make the first step, and so on; a step's
    loss is ``sum(batch loss * rows) / sum(rows)``, so a short last batch
    weighs what its rows weigh.
    """
    rows = np.minimum(batch, n - np.arange(0, n, batch))  # rows of each iteration of an epoch
    losses = np.asarray(history.iteration_loss).reshape(history.epochs, len(rows))
    starts = np.arange(0, len(rows), k)
    sums = np.add.reduceat(losses * rows, starts, axis=1)
    return (sums / np.add.reduceat(rows, starts)).ravel()


def main() -> None:
    args = parse_args(__doc__)
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    if args.quick:
        train = sg.Dataset(*train[:300])
    epochs = 2 if args.quick else 5
    runs = {}
    for label, batch, k in ((f"A: batch {BATCH}, accumulate={K}", BATCH, K),
                            (f"B: batch {BATCH * K}, accumulate=1", BATCH * K, 1)):
        model = sg.MLP([64, 64, 10], seed=0)
        optimizer = RecordingMiniBatchSGD(LR, batch_size=batch)
        history = sg.fit(model, train, optimizer, epochs=epochs, accumulate=k, progress=False)
        runs[label] = (history, np.array(optimizer.path), step_losses(history, len(train), batch, k))
    (hist_a, path_a, loss_a), (hist_b, path_b, loss_b) = runs.values()
    report("iterations_accumulated", hist_a.iterations)
    report("iterations_big_batch", hist_b.iterations)
    report("steps_accumulated", hist_a.steps)
    report("steps_big_batch", hist_b.steps)
    report("max_weight_difference", float(np.abs(path_a - path_b).max()))
    report("max_step_loss_difference", float(np.abs(loss_a - loss_b).max()))
    report("weight_change", float(np.abs(path_a[-1] - path_a[0]).max()))
    plot_accumulation({label: np.array(h.iteration_loss) for label, (h, _, _) in runs.items()},
                      {label: loss for label, (_, _, loss) in runs.items()},
                      float(np.abs(path_a - path_b).max()), args.out / "accumulation.png",
                      title=f"digits, MLP [64, 64, 10], no shuffling, {epochs} epochs, "
                            f"learning rate {LR}")


if __name__ == "__main__":
    main()
