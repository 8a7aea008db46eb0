"""The data flags shared by the commands that read a training set (``train`` and the like)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import _files, datasets
from ..data import Dataset
from ..distributed import checked_in_shares
from ..kernels import ARRAY_BACKENDS, BACKENDS
from ..losses import LOSSES
from ..mlp import MLP, standardize, standardize_targets
from ..modelfile import load_model
from ..scaling import range_spread

SPREAD_WARNING = 100.0
"""``--scale none`` with ``--data`` warns when the features' ranges differ by more than this."""

DATASETS = ("digits", "spirals", "blobs", "regression_1d")
"""The embedded data sets of ``--dataset``; ``regression_1d`` is regression (``--loss mse``)."""

GENERATED_ROWS = {"spirals": 600, "blobs": 600, "regression_1d": 400}
"""Rows ``--dataset`` generates of the synthetic sets (seeded by ``--seed``), before the split."""


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, or ``--data`` with ``--labels``, ``--test-data``, ``--test-labels``,
    ``--header``; ``--loss``; ``--scale``; ``--scale-targets``."""
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="embedded data set (default: digits); regression_1d is y = sin(3x) "
                        "plus noise, a regression set (--loss mse, its default), the others "
                        "classification")
    own = parser.add_argument_group(
        "your own data (instead of --dataset)",
        "Files by extension: a text table (.csv or .txt, comma- or whitespace-separated, "
        "gzipped as .gz or not, a header line detected) holding the label in its last "
        "column, or the features only with --labels for a table of labels (one row per row); "
        "X.npy with --labels y.npy (memory-mapped, may be larger than memory); data.npz with "
        "arrays 'X' and 'y'; MNIST-style IDX images (*-ubyte, *.idx, gzipped or not) with "
        "--labels for the IDX labels, pixels scaled to [0, 1]. Labels that are one column of "
        "whole numbers >= 0 are classes; with --loss mse they are regression targets, one "
        "output per column, whatever their values. Without --test-data, 20% of the rows are "
        "held out for the test figures (stratified by class; for --loss mse drawn at random, "
        "seeded by --seed), copied into memory: pass --test-data for files larger than "
        "memory.")
    own.add_argument("--data", metavar="FILE", default=None, help="features, or features and labels")
    own.add_argument("--labels", metavar="FILE", default=None,
                     help="labels (or regression targets) in a file of their own")
    own.add_argument("--test-data", metavar="FILE", default=None,
                     help="a separate test set, in the same formats")
    own.add_argument("--test-labels", metavar="FILE", default=None,
                     help="labels of --test-data, when they are in a file of their own")
    add_header_argument(own)
    parser.add_argument("--loss", choices=tuple(LOSSES), default=None,
                        help="cross_entropy: classification, the default, for integer class "
                        "labels; mse: regression (mean squared error) on real-valued targets, "
                        "one output per column of --labels; reports R^2 and RMSE. The targets "
                        "are standardized with the model (see --scale-targets), so the default "
                        "learning rate suits targets of any size")
    parser.add_argument("--scale", choices=("standard", "none"), default=None,
                        help="input scaling, part of the model: standard = (x - mean) / std with "
                        "each feature's statistics over the training rows (the default for "
                        "--data files); none (the default for the built-in data sets)")
    parser.add_argument("--scale-targets", choices=("standard", "none"), default=None,
                        help="--loss mse: target scaling, part of the model: standard (the "
                        "default) trains on (y - mean) / std with each target's statistics over "
                        "the training rows, and predictions are mapped back, z * std + mean; the "
                        "losses printed are in these scaled units, R^2, RMSE and MAE in the "
                        "targets' own. none: train on the raw targets (lower --lr for targets "
                        "far from unit size)")


def add_header_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--header`` / ``--no-header``: whether a text table's first line names its columns."""
    parser.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                        help="text tables: the first line names the columns (--header) or is "
                        "data (--no-header); default: a header if one of its fields is not a "
                        "number")


def load(args: argparse.Namespace, comm: object | None = None) -> tuple[Dataset, Dataset]:
    """The training and test sets the data flags of ``args`` name.

    ``--loss mse`` reads the labels as regression targets ``(n, k)`` and
    holds out a random 20% (no classes to stratify by); otherwise they must be
    class labels (:func:`check_labels`). ``comm``: the ranks of
    ``--distributed`` split the checks of a file's rows.
    """
    targets = args.loss is not None and not LOSSES[args.loss].classes  # a regressor's values
    if args.data is None:
        if args.labels or args.test_data or args.test_labels:
            raise ValueError("--labels, --test-data and --test-labels need --data")
        if args.loss is not None and targets != (args.dataset == "regression_1d"):
            raise ValueError(f"--loss {args.loss} does not suit --dataset {args.dataset}: "
                             f"regression_1d takes --loss mse, the other built-in data sets "
                             f"(classification) cross_entropy")
        return _embedded(args.dataset, args.seed)
    data = _read(args.data, args.labels, args.header, targets, comm)
    if not targets:
        check_labels(data, args.labels or args.data, args.loss)
    if args.test_data is None:
        split = datasets.random_split if targets else datasets.stratified_split
        return split(data, test_size=0.2, seed=args.seed)
    test = _read(args.test_data, args.test_labels, args.header, targets, comm)
    if not targets:
        check_labels(test, args.test_labels or args.test_data, args.loss, singletons=False)
    return data, test


def _read(path: str, labels: str | None, header: bool | None, targets: bool,
          comm: object | None) -> Dataset:
    """``Dataset.from_file``; with ``comm``, its rows' checks split between the ranks, agreed."""
    if comm is None:
        return Dataset.from_file(path, labels, header=header, targets=targets)
    return checked_in_shares(lambda share: Dataset.from_file(
        path, labels, header=header, targets=targets, share=share), comm)


def check_labels(data: Dataset, path: str, loss: str | None, singletons: bool = True) -> None:
    """Raise ``ValueError`` unless ``data.y`` (read from ``path``) is fit for a classifier.

    ``y`` must be class labels (one column of whole numbers ``>= 0``). With
    ``singletons`` and unless ``--loss cross_entropy`` was given (``loss``), a
    label held by a single row is refused too: such labels are a measured
    quantity that happens to be whole numbers (the diabetes targets: 214 values
    for 442 rows), not classes.
    """
    if not data.is_classification:
        k = data.y.shape[1]
        what = f"{k} columns" if k > 1 else "values that are not whole numbers >= 0"
        if loss is None:
            raise ValueError(f"{path}: the labels hold {what}, so they are not class labels; "
                             f"for regression pass --loss mse")
        raise ValueError(f"--loss cross_entropy needs class labels (one column of whole "
                         f"numbers >= 0), but {path} holds {what}")
    if singletons and loss is None:
        values, counts = np.unique(np.asarray(data.y), return_counts=True)
        once = int((counts == 1).sum())
        if once:
            raise ValueError(f"{path}: {once} of the {len(values)} label values occur in one "
                             f"row only, which looks like a measured quantity, not classes: "
                             f"pass --loss mse for regression, or --loss cross_entropy to "
                             f"train classes anyway")


def loss_of(args: argparse.Namespace) -> str:
    """The loss the flags ask for: ``--loss``, else mse for ``--dataset regression_1d``,
    else cross_entropy."""
    if args.loss is not None:
        return args.loss
    return "mse" if args.data is None and args.dataset == "regression_1d" else "cross_entropy"


def n_outputs(train_set: Dataset, test_set: Dataset) -> int:
    """The model's output width: classes for labels (both sets' ``max + 1``), ``k`` for targets.

    More classes than training rows is refused: such labels are values (or a
    typo such as one label of 5000000), and the output layer they ask for
    could outgrow memory.
    """
    if train_set.is_classification:
        classes = max(train_set.n_classes, test_set.n_classes)
        if classes > len(train_set):
            raise ValueError(f"the labels make {classes} classes (0 to {classes - 1}), more "
                             f"than the {len(train_set)} training rows: a classifier needs rows "
                             f"of its classes; if the labels are values, pass --loss mse")
        return classes
    k, k_test = train_set.y.shape[1], test_set.y.shape[1]
    if k_test != k:
        raise ValueError(f"the training targets have {k} columns but the test targets {k_test}")
    return k


def _embedded(name: str, seed: int) -> tuple[Dataset, Dataset]:
    if name == "digits":
        return datasets.digits(test_size=0.2, seed=seed)
    data = getattr(datasets, name)(n=GENERATED_ROWS[name], seed=seed)
    split = datasets.random_split if name == "regression_1d" else datasets.stratified_split
    return split(data, test_size=0.2, seed=seed)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model``, which :func:`load_model_file` reads, and the ``--backend`` and ``--device``
    it runs on (``predict`` and ``evaluate``)."""
    parser.add_argument("--model", metavar="MODEL.npz", required=True,
                        help="a model file (train --save) or a checkpoint")
    parser.add_argument("--backend", choices=tuple(BACKENDS) + ARRAY_BACKENDS, default="numpy",
                        help="what computes (default: numpy); a file of any backend loads in "
                        "any")
    add_device_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, where an array-API backend computes (``MLP(device=...)``)."""
    parser.add_argument("--device", default=None,
                        help="for --backend torch or cupy: cpu, cuda, cuda:1, ...; for "
                        "array_api_strict one of its device names (default: the library's)")


def load_model_file(path: str, backend: str = "numpy", device: str | None = None) -> MLP:
    """The model of ``--model``: a model file or checkpoint (a missing file is a ``ValueError``,
    so is a path that is not a regular file, saying what it is), on ``backend`` and ``device``."""
    try:
        _files.regular_size(path)
    except FileNotFoundError:
        raise ValueError(f"--model {path}: no such file") from None
    except ValueError as exc:
        raise ValueError(f"--model {exc}") from None
    return load_model(path, backend, device)


def scale(args: argparse.Namespace, model: MLP, train_set: Dataset) -> None:
    """Give ``model`` the ``--scale`` and ``--scale-targets`` it asks for; warn about wild features.

    The targets of a regressor (``--loss mse``) are standardized unless
    ``--scale-targets none``; a classifier's labels are classes, which take no
    target scaling (``--scale-targets`` is refused for them).
    """
    if args.scale_targets is not None and model.classifier:
        raise ValueError(f"--scale-targets {args.scale_targets} applies to regression "
                         f"(--loss mse); class labels are not scaled")
    if not model.classifier and args.scale_targets != "none":
        standardize_targets(model, train_set)
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
