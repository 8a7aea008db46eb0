"""Classification metrics of a model on a data set: confusion matrix, precision, recall, F1.

:func:`classification_report` is what ``scratchgd evaluate`` prints, in the
manner of scikit-learn's ``classification_report``, computed in blocks of rows
so that a memory-mapped test set stays on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks
from .data import Dataset
from .mlp import MLP
from .train import EVAL_BATCH, evaluate


@dataclass
class ClassificationReport:
    """How a classifier does on a labelled data set.

    Attributes
    ----------
    loss, accuracy : float
        Mean loss and accuracy, as :func:`scratchgd.evaluate`.
    confusion : (k, k) int64
        ``confusion[i, j]`` = rows of true class ``i`` predicted as ``j``.
    precision, recall, f1 : (k,) float64
        Per class ``c``: ``precision = C[c, c] / sum_i C[i, c]`` (of the rows
        predicted ``c``, the share that is ``c``), ``recall = C[c, c] / sum_j
        C[c, j]``, ``f1 = 2 p r / (p + r)``; 0 where the denominator is 0.
    support : (k,) int64
        Rows of each true class.
    """

    loss: float
    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    def __str__(self) -> str:
        k = len(self.support)
        width = max(5, len(str(k - 1)) + 6)
        lines = [f"loss {self.loss:.4f}  accuracy {self.accuracy:.4f}  "
                 f"({int(self.support.sum())} rows)", "",
                 f"{'class':>{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
        for c in range(k):
            lines.append(f"{c:>{width}} {self.precision[c]:9.4f} {self.recall[c]:9.4f} "
                         f"{self.f1[c]:9.4f} {self.support[c]:9d}")
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
        cell = max(len(str(int(self.confusion.max(initial=0)))), len(str(k - 1))) + 1
        lines.append(" " * width + "".join(f"{c:>{cell}}" for c in range(k)))
        for c in range(k):
            lines.append(f"{c:>{width}}" + "".join(f"{v:>{cell}}" for v in self.confusion[c]))
        return "\n".join(lines)


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                     where=denominator > 0)


def classification_report(model: MLP, data: Dataset) -> ClassificationReport:
    """Loss, accuracy, confusion matrix and per-class precision, recall and F1 of ``model``.

    ``model`` must be a classifier (cross_entropy); its scaling, if any, is
    applied. Rows are predicted ``EVAL_BATCH`` at a time.
    """
    _checks.instance("model", model, MLP)
    if model.loss != "cross_entropy":
        raise ValueError(f"classification_report needs a classifier (cross_entropy), got a "
                         f"model with loss={model.loss!r}")
    loss, accuracy = evaluate(model, data)   # checks data against the model first
    k = model.n_outputs
    y = model.check_y(data.y, len(data), name="data.y")
    confusion = np.zeros((k, k), dtype=np.int64)
    for start in range(0, len(data), EVAL_BATCH):
        predicted = model.predict(data.X[start:start + EVAL_BATCH])
        np.add.at(confusion, (y[start:start + EVAL_BATCH], predicted), 1)
    hits = np.diag(confusion).astype(np.float64)
    precision = _share(hits, confusion.sum(axis=0))
    recall = _share(hits, confusion.sum(axis=1))
    f1 = _share(2 * precision * recall, precision + recall)
    return ClassificationReport(loss, accuracy, confusion, precision, recall, f1,
                                confusion.sum(axis=1))
