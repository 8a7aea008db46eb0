"""Metrics of a model on a data set: confusion matrix, precision, recall, F1; R^2, RMSE, MAE.

:func:`classification_report` (a classifier) and :func:`regression_report`
(a regressor, loss mse) are what ``scratchgd evaluate`` prints, in the manner
of scikit-learn's ``classification_report`` and ``sklearn.metrics``, computed
in blocks of rows so that a memory-mapped test set stays on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks
from .data import Dataset
from .mlp import MLP
from .train import evaluate_in_blocks, r_squared


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
    applied. One pass over the rows, ``EVAL_BATCH`` at a time
    (:func:`scratchgd.train.evaluate_in_blocks`).
    """
    _checks.instance("model", model, MLP)
    if not model.classifier:
        raise ValueError(f"classification_report needs a classifier (a loss of class labels, "
                         f"such as cross_entropy), got a model with loss={model.loss!r}")
    y = model.check_data(data)
    k = model.n_outputs
    confusion = np.zeros((k, k), dtype=np.int64)

    def count(rows: slice, z: np.ndarray) -> None:
        np.add.at(confusion, (y[rows], model.predictions(z)), 1)

    loss, accuracy, _ = evaluate_in_blocks(model, data, count)   # one pass
    hits = np.diag(confusion).astype(np.float64)
    precision = _share(hits, confusion.sum(axis=0))
    recall = _share(hits, confusion.sum(axis=1))
    f1 = _share(2 * precision * recall, precision + recall)
    return ClassificationReport(loss, accuracy, confusion, precision, recall, f1,
                                confusion.sum(axis=1))


@dataclass
class RegressionReport:
    """How a regressor does on a data set of targets ``y: (n, k)``.

    Attributes
    ----------
    loss : float
        The mean squared error ``(1/(n k)) sum_ij (y_hat_ij - y_ij)^2`` of the
        predictions ``y_hat`` (:meth:`scratchgd.MLP.predict`) in the targets'
        own units, summed in float64: the loss :func:`scratchgd.evaluate`
        reports for mse when the model has no target scaling (with one,
        ``evaluate`` measures in its scaled units).
    r2, rmse, mae : (k,) float64
        Per output ``j``, with ``SS_res = sum_i (y_ij - y_hat_ij)^2`` and
        ``SS_tot = sum_i (y_ij - mean_i y_ij)^2``: ``r2 = 1 - SS_res / SS_tot``
        (:func:`scratchgd.train.r_squared`: 1 if both are 0, and 0 if only
        ``SS_tot`` is, scikit-learn's convention for a constant target),
        ``rmse = sqrt(SS_res / n)``, ``mae = (1/n) sum_i |y_ij - y_hat_ij|``.
    rows : int
        ``n``.

    Notes
    -----
    The figures over all outputs are the plain means of the per-output ones
    (``r2.mean()``, scikit-learn's ``multioutput="uniform_average"``).
    """

    loss: float
    r2: np.ndarray
    rmse: np.ndarray
    mae: np.ndarray
    rows: int

    def __str__(self) -> str:
        k = len(self.r2)
        over = f" (means over {k} outputs)" if k > 1 else ""
        lines = [f"loss {self.loss:.6g}  R^2 {self.r2.mean():.4f}  RMSE {self.rmse.mean():.6g}  "
                 f"MAE {self.mae.mean():.6g}  ({self.rows} rows){over}", "",
                 f"{'output':>6} {'R^2':>9} {'RMSE':>11} {'MAE':>11}"]
        lines += [f"{j:>6} {self.r2[j]:9.4f} {self.rmse[j]:11.6g} {self.mae[j]:11.6g}"
                  for j in range(k)]
        return "\n".join(lines)


def regression_report(model: MLP, data: Dataset) -> RegressionReport:
    """Loss, and per output R^2, RMSE and MAE, of the regressor ``model`` on ``data``.

    ``model`` must have loss mse; its input scaling, if any, is applied, and
    its predictions are in the targets' own units (mapped back through its
    target scaling, if any). One pass over the rows, ``EVAL_BATCH`` at a time; the
    errors are summed in float64.
    """
    _checks.instance("model", model, MLP)
    if model.classifier:
        raise ValueError(f"regression_report needs a regressor (a loss of real targets, such "
                         f"as mse), got a model with loss={model.loss!r}")
    model.check_data(data)
    n, k = len(data), model.n_outputs
    y = np.asarray(data.y, dtype=np.float64).reshape(n, k)
    sse, sae = np.zeros(k), np.zeros(k)

    def add(rows: slice, z: np.ndarray) -> None:
        error = model.predictions(z) - y[rows]
        sse[:] += (error ** 2).sum(axis=0)
        sae[:] += np.abs(error).sum(axis=0)

    evaluate_in_blocks(model, data, add)   # one pass, with the errors in the targets' units
    r2 = r_squared(sse, ((y - y.mean(axis=0)) ** 2).sum(axis=0))
    return RegressionReport(float(sse.sum() / (n * k)), r2, np.sqrt(sse / n), sae / n, n)
