"""``scratchgd evaluate``: how a saved model does on a labelled file.

A classifier: loss, accuracy, per-class precision and recall, the confusion
matrix. A regressor (loss mse): loss, and R^2, RMSE and MAE per output.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..data import Dataset
from ..metrics import classification_report, regression_report
from ._data import add_header_argument, add_model_argument, load_model_file
from .predict import predictions


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the sub-parsers ``commands``."""
    evaluate = commands.add_parser(
        "evaluate", help="score a saved model on a labelled file",
        description="Score a model saved by 'scratchgd train --save' (or a checkpoint) on a "
        "labelled file, in any format train reads. A classifier: loss, accuracy, per-class "
        "precision, recall and F1 and the confusion matrix. A regressor (--loss mse): loss, "
        "and R^2, RMSE and MAE per output; the labels are read as its targets.")
    evaluate.set_defaults(run=run)
    add_model_argument(evaluate)
    evaluate.add_argument("--data", metavar="FILE", required=True,
                          help="features, or features and labels")
    evaluate.add_argument("--labels", metavar="FILE", default=None,
                          help="labels (or targets) in a file of their own")
    add_header_argument(evaluate)
    evaluate.add_argument("--plot", metavar="FILE.png", default=None,
                          help="draw the confusion matrix (a regressor: predicted against true "
                          "values) to this file")


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd evaluate``; return the exit status."""
    model = load_model_file(args.model, args.backend, args.device)
    regression = not model.classifier
    data = Dataset.from_file(args.data, args.labels, header=args.header, targets=regression)
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss: refused below
        report = (regression_report if regression else classification_report)(model, data)
    if not np.isfinite(report.loss):
        raise ValueError(f"{args.data}: the model's loss is {report.loss}: its outputs are not "
                         f"finite for some rows (inputs too far from what it was trained on, "
                         f"or a damaged model file)")
    print(f"{args.data}: {model}")
    print(report)
    if args.plot:
        from ..plots import plot_confusion, plot_predicted

        if regression:
            plot_predicted(np.asarray(data.y), predictions(model, data.X, proba=False),
                           args.plot, title=f"{args.data}", r2=report.r2)
        else:
            plot_confusion(report.confusion, args.plot, title=f"{args.data}")
        print(f"wrote {args.plot}")
    return 0
