"""``scratchgd predict``: a saved model's predictions for the rows of a file."""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..io import read_features
from ..train import EVAL_BATCH
from ._data import add_header_argument, add_model_argument, load_model_file


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the sub-parsers ``commands``."""
    predict = commands.add_parser(
        "predict", help="predict with a saved model (train --save, or a checkpoint)",
        description="Predict one row per row of --data with a model saved by 'scratchgd "
        "train --save' (or a checkpoint), applying its stored input scaling: a class label, "
        "or for a regressor (--loss mse) its k values. --data is any format train reads "
        "(.csv or .txt, gzipped or not, with or without a header; .npy; .npz array 'X'; IDX "
        "images): a table with the model's d feature columns is features only; one with d + 1 "
        "columns has a label column, the last, which is ignored.")
    predict.set_defaults(run=run)
    add_model_argument(predict)
    predict.add_argument("--data", metavar="FILE", required=True, help="the rows to predict")
    add_header_argument(predict)
    predict.add_argument("--out", metavar="FILE", default=None,
                         help="write the predictions to this .csv or .npy file (default: print "
                         "them)")
    predict.add_argument("--proba", action="store_true",
                         help="class probabilities (softmax of the outputs) instead of labels")


def predictions(model: object, X: np.ndarray, proba: bool) -> np.ndarray:
    """Class labels, values (mse) or class probabilities of the rows ``X``, in blocks of rows.

    Probabilities are ``softmax(z)``; only ``EVAL_BATCH`` rows are read at a
    time, so a memory-mapped ``X`` stays on disk.

    Raises
    ------
    ValueError
        Naming the first row whose outputs are not finite (inputs far outside
        what the model was trained on, or a forged model): a prediction is
        never NaN.
    """
    blocks = []
    for start in range(0, len(X), EVAL_BATCH):
        rows = X[start:start + EVAL_BATCH]
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite outputs: refused below
            out = model.forward(rows) if model.classifier else model.predict(rows)  # z, values
        finite = np.isfinite(out).all(axis=1) if out.ndim == 2 else np.isfinite(out)
        if not finite.all():
            raise ValueError(f"the model's outputs for row {start + int(np.argmin(finite))} "
                             f"are not finite (NaN or inf): its inputs are too far from what "
                             f"the model was trained on, or the model file is damaged")
        if not model.classifier:
            blocks.append(out)
        elif proba:
            z = np.exp(out - out.max(axis=1, keepdims=True))
            blocks.append(z / z.sum(axis=1, keepdims=True))
        else:
            blocks.append(out.argmax(axis=1))
    return np.concatenate(blocks)


def features_for(model: object, path: str, header: bool | None = None) -> np.ndarray:
    """The features of ``path`` for ``model``: ``d`` columns, or ``d + 1`` with the last dropped.

    ``header``: whether a text table's first line names its columns (``None``: detected).
    """
    X = read_features(path, header)
    d = model.n_inputs
    if X.ndim != 2 or X.shape[1] not in (d, d + 1):
        raise ValueError(f"{path} has {X.shape[1] if X.ndim == 2 else X.shape} feature "
                         f"columns but the model takes {d} (or {d + 1} with a label column)")
    return X if X.shape[1] == d else X[:, :d]


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd predict``; return the exit status."""
    model = load_model_file(args.model, args.backend, args.device)
    if args.proba and model.loss != "cross_entropy":
        raise ValueError("--proba needs a classifier; this model does regression (mse)")
    X = features_for(model, args.data, args.header)
    out = predictions(model, X, args.proba)
    if args.out is None:
        for row in out:
            print(",".join(map(str, np.atleast_1d(row).tolist())))
        return 0
    suffix = os.path.splitext(args.out)[1].lower()
    if suffix == ".npy":
        np.save(args.out, out, allow_pickle=False)
    elif suffix in (".csv", ".txt"):
        header = ",".join(f"p{c}" for c in range(out.shape[1])) if out.ndim == 2 else "prediction"
        if not model.classifier and out.ndim == 2:
            header = ",".join(f"y{c}" for c in range(out.shape[1]))
        np.savetxt(args.out, out, fmt="%d" if out.dtype.kind == "i" else "%.17g",
                   delimiter=",", header=header, comments="")
    else:
        raise ValueError(f"--out {args.out}: write predictions to a .csv or .npy file")
    print(f"wrote {len(out)} predictions to {args.out}")
    return 0
