"""``scratchgd advise``: train briefly, measure the gradient noise scale, suggest batch sizes.

Trains with ``scratchgd train``'s defaults (mini-batch SGD, batch 32, learning
rate 0.1, or 0.002 for mse, one hidden layer of 128) for a few epochs with
``fit(track_noise=True)``, then measures ``B_simple`` with
:func:`scratchgd.gradient_noise` and prints :func:`scratchgd.advise_batch_size`'s
table: the steps and examples the model of McCandlish et al. (2018) predicts
for each batch size, relative to their minima. ``--loss mse`` measures a
regressor's noise scale on regression targets, as ``train --loss mse`` reads them.
"""

from __future__ import annotations

import argparse
import math

from ..kernels import BACKENDS
from ..mlp import MLP
from ..noise import advice_table, default_batch_sizes, gradient_noise
from ..optim import MiniBatchSGD
from ..train import fit
from ._data import add_data_arguments, load, loss_of, n_outputs, scale
from .train import DEFAULT_LR


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
    print(f"B_simple at the current training loss {history.epoch_loss[-1]:.4f}: "
          f"{noise.b_simple:.4g} (|G|^2 {noise.grad_sq:.4g}, tr(Sigma) {noise.trace_cov:.4g}, "
          f"{noise.rows} rows)")
    print("prediction of the model S = S_min (1 + B_simple / B), E = E_min (1 + B / B_simple):")
    print(f"{'batch size':>10}  {'S/S_min':>9}  {'E/E_min':>9}")
    for row in table:
        mark = "  recommended" if row["recommended"] else ""
        print(f"{row['batch_size']:>10}  {row['steps_ratio']:>9.3g}  "
              f"{row['examples_ratio']:>9.3g}  (predicted){mark}")
    chosen = [row["batch_size"] for row in table if row["recommended"]]
    rule = "predicted S <= 3 S_min and E <= 3 E_min, i.e. B_simple / 2 <= B <= 2 B_simple"
    if chosen:
        print(f"recommended batch sizes ({rule}): {min(chosen)} to {max(chosen)}")
    elif math.isfinite(noise.b_simple):
        print(f"no candidate batch size meets the rule ({rule}); B_simple = {noise.b_simple:.4g}")
    else:
        print(f"B_simple is {noise.b_simple}: the gradient is lost in its noise here, no advice")
    if args.plot:
        from ..plots import plot_advice

        plot_advice(table, history.b_simple, args.plot,
                    title=f"{args.data or args.dataset}, {model}, after {history.epochs} epochs")
        print(f"wrote {args.plot}")
    return 0

