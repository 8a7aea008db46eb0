"""``scratchgd advise``: train briefly, measure the gradient noise scale, suggest batch sizes.

Trains with ``scratchgd train``'s defaults (mini-batch SGD, batch 32, learning
rate 0.1, or 0.002 for mse, one hidden layer of 128) for a few epochs with
``fit(track_noise=True)``, then measures ``B_simple`` with
:func:`scratchgd.gradient_noise` and prints :func:`scratchgd.advise_batch_size`'s
table: the steps and examples the model of McCandlish et al. (2018) predicts
for each batch size, relative to their minima. ``--loss mse`` measures a
regressor's noise scale on regression targets, as ``train --loss mse`` reads them.

Then it says what the range is -- the model's prediction from ``B_simple`` at the
current weights, which the paper relates to the critical batch size of the
training from there on -- and what was measured instead (:data:`MEASURED`).
"""

from __future__ import annotations

import argparse
import math
import textwrap

from ..kernels import BACKENDS
from ..mlp import MLP
from ..noise import advice_table, default_batch_sizes, gradient_noise
from ..optim import MiniBatchSGD
from ..train import fit
from ._data import add_data_arguments, load, loss_of, n_outputs, scale
from .train import DEFAULT_LR

MEASURED = {
    "digits": "measured instead (docs/batch_size.md, \"Does it predict the critical batch "
              "size?\"): training the MLP 64-128-10 on the digits from its start, the learning "
              "rate tuned for each batch size, the critical batch size stayed between 18 and 35 "
              "for target losses from 1.0 down to 0.1, while B_simple at those losses grew from 29 "
              "to 1017. To train it, use batch sizes up to about 32 (16 or 32), and read the range "
              "above as an upper bound on the critical batch size, not as the batch size to use.",
    None: "a prediction, not a measurement: where docs/batch_size.md measured both, the critical "
          "batch size was 1.4 to 35 times smaller than B_simple on the digits (a ReLU network) "
          "and 0.9 to 3 times B_simple on a linear regression. Take the range for an order of "
          "magnitude and measure: train with a few batch sizes at and below it, the learning rate "
          "tuned for each, and compare the steps each needs to reach the same loss.",
}
"""What ``advise`` prints after its range: the critical batch size measured on a built-in
data set (the figures of docs/batch_size.md's table, which ``tests/test_noise.py`` checks
against that page), or under ``None`` what to do elsewhere."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``advise`` to the sub-parsers ``commands``."""
    advise = commands.add_parser("advise", help="measure the gradient noise scale and predict "
                                 "which batch sizes pay off")
    advise.set_defaults(run=run)
    add_data_arguments(advise)
    advise.add_argument("--epochs", type=int, default=5,
                        help="epochs to train before measuring (default: 5)")
    advise.add_argument("--batch-size", type=int, default=32,
                        help="batch size of the brief training (default: 32)")
    advise.add_argument("--lr", type=float, default=None,
                        help=f"learning rate (default: {DEFAULT_LR['cross_entropy']['minibatch']}, "
                        f"with --loss mse {DEFAULT_LR['mse']['minibatch']})")
    advise.add_argument("--hidden", type=int, nargs="*", default=[128],
                        help="hidden layer widths (default: 128)")
    advise.add_argument("--backend", choices=tuple(BACKENDS), default="numpy",
                        help="numpy (default) or numba")
    advise.add_argument("--seed", type=int, default=0, help="seed of weights, split and shuffling")
    advise.add_argument("--rows", type=int, default=None,
                        help="measure B_simple on this many rows drawn at random (default: all)")
    advise.add_argument("--plot", metavar="FILE.png", default=None,
                        help="write the predicted costs and B_simple per epoch to this file")
    advise.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd advise``; return the exit status."""
    train_set, test_set = load(args)
    model = MLP([train_set.n_features, *args.hidden, n_outputs(train_set, test_set)],
                loss=loss_of(args), seed=args.seed, backend=args.backend)
    scale(args, model, train_set)
    lr = DEFAULT_LR[model.loss]["minibatch"] if args.lr is None else args.lr
    optimizer = MiniBatchSGD(lr, batch_size=args.batch_size)
    print(f"{args.data or args.dataset}: {len(train_set)} train rows; {model}; {optimizer}")
    history = fit(model, train_set, optimizer, epochs=args.epochs, progress=not args.no_progress,
                  seed=args.seed, track_noise=True)
    if args.no_progress:
        for epoch in range(history.epochs):
            print(f"epoch {epoch + 1}/{history.epochs}  loss {history.epoch_loss[epoch]:.4f}  "
                  f"B_simple (from its batches) {history.b_simple[epoch]:.4g}")
    noise = gradient_noise(model, train_set, rows=args.rows, seed=args.seed)
    table = advice_table(noise.b_simple, default_batch_sizes(len(train_set)))
    print(f"B_simple at the current training loss {history.epoch_loss[-1]:.4f}, after "
          f"{history.epochs} epochs: {noise.b_simple:.4g} (|G|^2 {noise.grad_sq:.4g}, "
          f"tr(Sigma) {noise.trace_cov:.4g}, {noise.rows} rows)")
    say(f"what it is: the gradient noise scale tr(Sigma) / |G|^2 at these weights; a batch of B "
        f"rows estimates the gradient with noise B_simple / B times its squared norm. It holds "
        f"for the training from here on, and grows as the loss falls (estimated from the batches: "
        f"{history.b_simple[0]:.4g} in epoch 1, {history.b_simple[-1]:.4g} in epoch "
        f"{history.epochs}).")
    print("prediction of the model of McCandlish et al. (2018), with B_simple taken for the "
          "critical\nbatch size and the learning rate tuned for each batch size:\n"
          "  S = S_min (1 + B_simple / B) steps, E = E_min (1 + B / B_simple) examples")
    print(f"{'batch size':>10}  {'S/S_min':>9}  {'E/E_min':>9}")
    for row in table:
        mark = "  recommended" if row["recommended"] else ""
        print(f"{row['batch_size']:>10}  {row['steps_ratio']:>9.3g}  "
              f"{row['examples_ratio']:>9.3g}  (predicted){mark}")
    chosen = [row["batch_size"] for row in table if row["recommended"]]
    rule = "B_simple / 2 <= B <= 2 B_simple, i.e. predicted S <= 3 S_min and E <= 3 E_min"
    if chosen:
        print(f"B_simple's range, what the model recommends: {min(chosen)} to {max(chosen)}\n"
              f"  ({rule})")
    elif math.isfinite(noise.b_simple):
        print(f"no candidate batch size meets the rule ({rule}); B_simple = {noise.b_simple:.4g}")
    else:
        print(f"B_simple is {noise.b_simple}: the gradient is lost in its noise here, no advice")
    say(MEASURED["digits" if args.data is None and args.dataset == "digits" else None])
    if args.plot:
        from ..plots import plot_advice

        plot_advice(table, history.b_simple, args.plot,
                    title=f"{args.data or args.dataset}, {model}, after {history.epochs} epochs")
        print(f"wrote {args.plot}")
    return 0


def say(text: str) -> None:
    """Print a paragraph wrapped to 100 columns."""
    print(textwrap.fill(text, 100, break_on_hyphens=False))
