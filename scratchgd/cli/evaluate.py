"""``scratchgd evaluate``: loss, accuracy, per-class precision and recall of a saved model."""

from __future__ import annotations

import argparse

from ..data import Dataset
from ..metrics import classification_report
from ._data import add_model_argument, load_model_file


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the sub-parsers ``commands``."""
    evaluate = commands.add_parser(
        "evaluate", help="score a saved model on a labelled file",
        description="Loss, accuracy, per-class precision, recall and F1 and the confusion "
        "matrix of a model saved by 'scratchgd train --save' (or a checkpoint) on a labelled "
        "file, in any format train reads.")
    evaluate.set_defaults(run=run)
    add_model_argument(evaluate)
    evaluate.add_argument("--data", metavar="FILE", required=True, help="features and labels")
    evaluate.add_argument("--labels", metavar="FILE", default=None,
                          help="labels for .npy and IDX data")
    evaluate.add_argument("--plot", metavar="FILE.png", default=None,
                          help="draw the confusion matrix to this file")


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd evaluate``; return the exit status."""
    model = load_model_file(args.model)
    data = Dataset.from_file(args.data, args.labels)
    report = classification_report(model, data)
    print(f"{args.data}: {model}")
    print(report)
    if args.plot:
        from ..plots import plot_confusion

        plot_confusion(report.confusion, args.plot, title=f"{args.data}")
        print(f"wrote {args.plot}")
    return 0
