"""Epochs: how long training takes, counted in full passes over the data.

Mini-batch SGD (batch size 32) trains an MLP on the digits for 40 epochs; the
training and validation loss and accuracy are plotted after every epoch. The
demo prints the epoch where validation accuracy stops improving (its best
epoch) and the seconds one epoch takes.
"""

import numpy as np
from _common import parse_args, report

import scratchgd as sg
from scratchgd.plots import plot_epochs


def main() -> None:
    args = parse_args(__doc__)
    epochs = 5 if args.quick else 40
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    model = sg.MLP([64, 64, 10], seed=0)
    optimizer = sg.MiniBatchSGD(lr=0.2, batch_size=32)
    history = sg.fit(model, train, optimizer, epochs=epochs, validation=test, progress=False)
    best = int(np.argmax(history.val_accuracy)) + 1  # the first epoch reaching the maximum
    report("epochs", history.epochs)
    report("iterations_per_epoch", history.iterations // history.epochs)
    report("steps", history.steps)
    report("best_epoch", best)
    report("best_val_accuracy", history.val_accuracy[best - 1])
    report("final_val_accuracy", history.val_accuracy[-1])
    report("final_train_accuracy", history.epoch_accuracy[-1])
    report("best_val_loss_epoch", int(np.argmin(history.val_loss)) + 1)
    report("seconds_per_epoch_median", float(np.median(history.epoch_seconds)))
    plot_epochs(history, best, args.out / "epochs.png",
                title=f"digits, MLP [64, 64, 10], mini-batch SGD (b=32, lr=0.2), {epochs} epochs")


if __name__ == "__main__":
    main()
