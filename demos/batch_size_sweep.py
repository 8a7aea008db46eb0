"""Batch size: more frequent updates against more accurate ones.

The same MLP is trained on the digits with batch sizes 1 (SGD), 2, 4, ...,
1024 (mini-batch SGD) and the full training set (GD), same learning rate, same
number of epochs. The training loss over the whole set, measured after every
epoch, is drawn against epochs, against training steps and against seconds;
the final test accuracy of each batch size is printed as a table.
"""

import numpy as np
from _common import machine, parse_args, report

import scratchgd as sg
from scratchgd.plots import plot_batch_sweep

LR = 0.1


def label(batch_size: int | None, n: int) -> str:
    if batch_size is None:
        return f"GD (full, b={n})"
    return "SGD (b=1)" if batch_size == 1 else f"mini-batch b={batch_size}"


def main() -> None:
    args = parse_args(__doc__)
    epochs = 2 if args.quick else 30
    sizes = [1, 16, 256, None] if args.quick else [2 ** i for i in range(11)] + [None]
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    runs = {}
    report("machine", machine())
    for b in sizes:
        model = sg.MLP([64, 64, 10], seed=0)
        optimizer = sg.GD(LR) if b is None else sg.MiniBatchSGD(LR, batch_size=b)
        # validation=train: the loss over the whole training set after every epoch
        history = sg.fit(model, train, optimizer, epochs=epochs, validation=train, progress=False)
        _, accuracy = sg.evaluate(model, test)
        runs[label(b, len(train))] = history
        seconds = float(np.sum(history.epoch_seconds))
        report(f"batch[{'full' if b is None else b}]",
               f"rows={optimizer.loader(train).rows_per_batch} steps={history.steps} "
               f"seconds={seconds:.3f} train_loss={history.val_loss[-1]:.4g} "
               f"test_accuracy={accuracy:.4f}")
    plot_batch_sweep(runs, args.out / "batch_size_sweep.png",
                     title=f"digits, MLP [64, 64, 10], learning rate {LR}, {epochs} epochs "
                           f"for every batch size; {machine()}")


if __name__ == "__main__":
    main()
