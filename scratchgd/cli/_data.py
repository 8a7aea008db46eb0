"""The data flags shared by the commands that read a training set (``train`` and the like)."""

from __future__ import annotations

import argparse
import os
import sys

from .. import datasets
from ..data import Dataset
from ..mlp import MLP, standardize
from ..modelfile import load_model
from ..scaling import range_spread

SPREAD_WARNING = 100.0
"""``--scale none`` with ``--data`` warns when the features' ranges differ by more than this."""


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, or ``--data`` with ``--labels``, ``--test-data``, ``--test-labels``."""
    parser.add_argument("--dataset", choices=("digits", "spirals", "blobs"), default="digits",
                        help="embedded data set (default: digits)")
    own = parser.add_argument_group(
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
    parser.add_argument("--scale", choices=("standard", "none"), default=None,
                        help="input scaling, part of the model: standard = (x - mean) / std with "
                        "each feature's statistics over the training rows (the default for "
                        "--data files); none (the default for the built-in data sets)")


def load(args: argparse.Namespace, comm: object | None = None) -> tuple[Dataset, Dataset]:
    """The training and test sets the data flags of ``args`` name.

    ``comm``: the ranks of ``--distributed`` split the checks of a file's rows.
    """
    if args.data is None:
        if args.labels or args.test_data or args.test_labels:
            raise ValueError("--labels, --test-data and --test-labels need --data")
        return _embedded(args.dataset, args.seed)
    data = Dataset.from_file(args.data, args.labels, comm)
    if not data.is_classification:
        raise ValueError(f"{args.data}: the command line trains classifiers; y must be class "
                         f"labels of shape (n,), got {data.y.shape}")
    if args.test_data is None:
        return datasets.stratified_split(data, test_size=0.2, seed=args.seed)
    return data, Dataset.from_file(args.test_data, args.test_labels, comm)


def _embedded(name: str, seed: int) -> tuple[Dataset, Dataset]:
    if name == "digits":
        return datasets.digits(test_size=0.2, seed=seed)
    data = (datasets.spirals(n=600, seed=seed) if name == "spirals"
            else datasets.blobs(n=600, seed=seed))
    return datasets.stratified_split(data, test_size=0.2, seed=seed)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model``, which :func:`load_model_file` reads (``predict`` and ``evaluate``)."""
    parser.add_argument("--model", metavar="MODEL.npz", required=True,
                        help="a model file (train --save) or a checkpoint")


def load_model_file(path: str) -> MLP:
    """The model of ``--model``: a model file or checkpoint (a missing file is a ``ValueError``)."""
    if not os.path.isfile(path):
        raise ValueError(f"--model {path}: no such file")
    return load_model(path)


def scale(args: argparse.Namespace, model: MLP, train_set: Dataset) -> None:
    """Give ``model`` the ``--scale`` it asks for; warn about unscaled wild features."""
    mode = args.scale or ("standard" if args.data else "none")
    if mode == "standard":
        standardize(model, train_set)
        return
    if args.data:
        ratio, wide, narrow = range_spread(train_set.X)
        if ratio > SPREAD_WARNING:
            print(f"scratchgd: warning: the features' ranges differ by {ratio:.3g}x (column "
                  f"{wide} against column {narrow}); plain SGD trains poorly on that. Use "
                  f"--scale standard (the default for --data)", file=sys.stderr, flush=True)
