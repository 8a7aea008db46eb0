"""The command line: ``scratchgd train`` (also ``python -m scratchgd train``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import datasets
from .data import Dataset
from .errors import TrainingDiverged
from .mlp import MLP
from .optim import GD, SGD, MiniBatchSGD, Optimizer
from .train import evaluate, fit

DEFAULT_LR = {"minibatch": 0.1, "sgd": 0.01, "gd": 0.5}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"scratchgd: error: {message}\n")


def _int_or_epoch(text: str) -> int | str:
    if text == "epoch":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'epoch', "
                                         f"got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scratchgd``."""
    parser = _Parser(prog="scratchgd", description="Train an MLP by GD, SGD or mini-batch SGD "
                     "and watch epochs, iterations and training steps.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train an MLP and report test accuracy")
    train.add_argument("--dataset", choices=("digits", "spirals", "blobs"), default="digits",
                       help="embedded data set (default: digits)")
    own = train.add_argument_group(
        "your own data (instead of --dataset)",
        "Files by extension: X.npy with --labels y.npy (memory-mapped, may be larger than "
        "memory); data.npz with arrays 'X' and 'y'; data.csv (numbers only, last column "
        "the class label, a header line is skipped); MNIST-style IDX images "
        "(*-ubyte, *.idx, gzipped or not) with --labels for the IDX labels, pixels scaled to "
        "[0, 1]. Without --test-data, a stratified 20% of the rows is held out for the test "
        "accuracy (copied into memory; pass --test-data for files larger than memory).")
    own.add_argument("--data", metavar="FILE", default=None, help="features, or features and labels")
    own.add_argument("--labels", metavar="FILE", default=None, help="labels for .npy and IDX data")
    own.add_argument("--test-data", metavar="FILE", default=None,
                     help="a separate test set, in the same formats")
    own.add_argument("--test-labels", metavar="FILE", default=None,
                     help="labels of --test-data for .npy and IDX")
    train.add_argument("--memory-budget", metavar="SIZE", default=None,
                       help="bytes one training step may use, e.g. 64MB or 1.5GiB: gd computes "
                       "its full batch in chunks that fit; other optimizers fail if their batch "
                       "does not fit")
    train.add_argument("--optimizer", choices=tuple(DEFAULT_LR), default="minibatch",
                       help="gd = full batch, sgd = batch of 1, minibatch (default)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="rows per iteration for minibatch (default: 32)")
    train.add_argument("--epochs", type=int, default=40, help="passes over the data (default: 40)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: 0.1 minibatch, 0.01 sgd, 0.5 gd)")
    train.add_argument("--momentum", type=float, default=0.0, help="momentum (default: 0)")
    train.add_argument("--accumulate", type=_int_or_epoch, default=1,
                       help="iterations per training step, or 'epoch' (default: 1)")
    train.add_argument("--hidden", type=int, nargs="*", default=[128],
                       help="hidden layer widths (default: 128)")
    train.add_argument("--activation", choices=("relu", "tanh", "sigmoid"), default="relu")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    train.add_argument("--backend", default="numpy",
                       help="numpy (default: the readable reference, starts in half a second) or "
                       "numba (compiled: far faster for small batches, about 1.5 s to start once "
                       "its kernels are cached, 20 s the first time)")
    train.add_argument("--seed", type=int, default=0, help="seed of weights, split and shuffling")
    train.add_argument("--plot", metavar="FILE.png", default=None,
                       help="write the loss and accuracy curves to this file")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--checkpoint", metavar="FILE.npz", default=None,
                       help="write the state of the run to this file (atomically) as it trains")
    train.add_argument("--checkpoint-every", type=_int_or_epoch, default="epoch",
                       help="'epoch' (default) or N: write the checkpoint every N training steps")
    train.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint if the file exists (else start afresh)")
    return parser


def _load(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    if args.data is None:
        if args.labels or args.test_data or args.test_labels:
            raise ValueError("--labels, --test-data and --test-labels need --data")
        return _embedded(args.dataset, args.seed)
    data = Dataset.from_file(args.data, args.labels)
    if not data.is_classification:
        raise ValueError(f"{args.data}: the command line trains classifiers; y must be class "
                         f"labels of shape (n,), got {data.y.shape}")
    if args.test_data is None:
        return datasets.stratified_split(data, test_size=0.2, seed=args.seed)
    return data, Dataset.from_file(args.test_data, args.test_labels)


def _embedded(name: str, seed: int) -> tuple[Dataset, Dataset]:
    if name == "digits":
        return datasets.digits(test_size=0.2, seed=seed)
    data = (datasets.spirals(n=600, seed=seed) if name == "spirals"
            else datasets.blobs(n=600, seed=seed))
    return datasets.stratified_split(data, test_size=0.2, seed=seed)


def _optimizer(args: argparse.Namespace) -> Optimizer:
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    if args.optimizer != "minibatch" and args.batch_size is not None:
        raise ValueError(f"--batch-size applies to --optimizer minibatch, not {args.optimizer} "
                         f"(gd uses the full data set, sgd one sample)")
    if args.optimizer == "gd":
        return GD(lr, momentum=args.momentum)
    if args.optimizer == "sgd":
        return SGD(lr, momentum=args.momentum)
    batch_size = 32 if args.batch_size is None else args.batch_size
    return MiniBatchSGD(lr, batch_size=batch_size, momentum=args.momentum)


def train(args: argparse.Namespace) -> int:
    """Run ``scratchgd train``; return the exit status."""
    train_set, test_set = _load(args)
    optimizer = _optimizer(args)
    n_classes = max(train_set.n_classes, test_set.n_classes)
    model = MLP([train_set.n_features, *args.hidden, n_classes],
                activation=args.activation, seed=args.seed, dtype=np.dtype(args.dtype).type,
                backend=args.backend)
    print(f"{args.data or args.dataset}: {len(train_set)} train / {len(test_set)} test rows; {model}; "
          f"{optimizer}; accumulate={args.accumulate}")
    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):
        print(f"resuming from {args.checkpoint}")
    start = time.perf_counter()
    history = fit(model, train_set, optimizer, epochs=args.epochs, accumulate=args.accumulate,
                  validation=test_set, progress=not args.no_progress, seed=args.seed,
                  checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                  resume=args.resume, memory_budget=args.memory_budget)
    seconds = time.perf_counter() - start
    if args.no_progress:
        for epoch in range(history.epochs):
            print(f"epoch {epoch + 1}/{history.epochs}  loss {history.epoch_loss[epoch]:.4f}  "
                  f"acc {history.epoch_accuracy[epoch]:.4f}  "
                  f"{history.epoch_seconds[epoch]:.3f}s")
    _, accuracy = evaluate(model, test_set)
    print(f"{history.epochs} epochs, {history.iterations} iterations, {history.steps} training "
          f"steps, {history.samples_seen} samples seen in {seconds:.2f} s")
    print(f"test accuracy: {accuracy:.4f}")
    if args.plot:
        from .plots import plot_history

        plot_history(history, args.plot, title=f"{args.data or args.dataset}, {optimizer}")
        print(f"wrote {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratchgd`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return train(args)
    except (ValueError, TypeError) as exc:
        print(f"scratchgd: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"scratchgd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a checkpoint that cannot be written, a disk that is full
        print(f"scratchgd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = " (continue with --resume)" if args.checkpoint else ""
        print(f"scratchgd: interrupted{hint}", file=sys.stderr)
        return 130
