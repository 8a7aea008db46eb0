"""The same GridSearchCV on scratchgd's MLPClassifier and on scikit-learn's: wall time, best score.

The grid of ``demos/grid_search.py``: batch_size in {1, 4, 16, 32, 64, 256,
"full"} x learning rate in {0.01, 0.1, 0.5}, 5-fold cross-validation on the
digits training split (1,437 rows; the same folds for both), MLP 64-64-10
relu, the same number of epochs. scikit-learn's MLPClassifier is set to the
same algorithm: solver="sgd", momentum=0, nesterovs_momentum=False, alpha=0,
learning_rate="constant", early_stopping=False, n_iter_no_change=max_iter (so
it runs every epoch), batch_size = all rows for "full" (clipped to the fold).
scratchgd runs the numba backend; its kernels are compiled (or loaded from
numba's cache) before the clock starts, and the time that takes is reported
apart. Both run in this one process, one after the other, serially
(n_jobs=None), with BLAS limited to ``--threads`` threads.

    pip install -e ".[sklearn,oracle]"
    python benchmarks/grid_search.py [--epochs 20] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier as SklearnMLP
from threadpoolctl import threadpool_limits

import scratchgd as sg
from scratchgd.estimators import MLPClassifier

BATCH_SIZES = [1, 4, 16, 32, 64, 256, "full"]
LEARNING_RATES = [0.01, 0.1, 0.5]
HIDDEN = (64,)


def scratchgd_search(epochs: int, batch_sizes: list, folds: int) -> GridSearchCV:
    estimator = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=epochs, random_state=0,
                              backend="numba")
    return GridSearchCV(estimator, {"batch_size": batch_sizes,
                                    "learning_rate_init": LEARNING_RATES},
                        cv=folds, error_score="raise")


def sklearn_search(epochs: int, batch_sizes: list, folds: int, rows: int) -> GridSearchCV:
    estimator = SklearnMLP(hidden_layer_sizes=HIDDEN, solver="sgd", momentum=0.0,
                           nesterovs_momentum=False, alpha=0.0, learning_rate="constant",
                           early_stopping=False, max_iter=epochs, n_iter_no_change=epochs,
                           random_state=0)
    sizes = [rows if b == "full" else b for b in batch_sizes]
    return GridSearchCV(estimator, {"batch_size": sizes, "learning_rate_init": LEARNING_RATES},
                        cv=folds, error_score="raise")


def warm_up(X: np.ndarray, y: np.ndarray) -> float:
    """Compile (or load from cache) the numba kernels every batch kind uses; seconds taken."""
    start = time.perf_counter()
    for b in (1, 32, "full"):
        MLPClassifier(hidden_layer_sizes=HIDDEN, batch_size=b, max_iter=1, random_state=0,
                      backend="numba").fit(X[:64], y[:64])
    return time.perf_counter() - start


def timed(search: GridSearchCV, X: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        # scikit-learn warns that every candidate stopped at max_iter (as asked), and
        # that batch_size=rows is clipped to the rows of a fold (as meant)
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Got `batch_size`")
        search.fit(X, y)
    return time.perf_counter() - start


def best(search: GridSearchCV, rows: int) -> str:
    b = search.best_params_["batch_size"]
    b = "full" if b in ("full", rows) else b
    return f"batch_size={b} lr={search.best_params_['learning_rate_init']:g}"


def fit_seconds_by_batch(search: GridSearchCV, folds: int, rows: int) -> dict:
    """Seconds spent fitting each batch size: mean fit time x folds, summed over the rates."""
    total: dict = {}
    for params, mean in zip(search.cv_results_["params"], search.cv_results_["mean_fit_time"],
                            strict=True):
        b = "full" if params["batch_size"] in ("full", rows) else params["batch_size"]
        total[b] = total.get(b, 0.0) + mean * folds
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (threadpoolctl)")
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs, 3 folds, batch sizes 1, 32, full (for tests)")
    args = parser.parse_args()
    epochs = 2 if args.quick else args.epochs
    folds = 3 if args.quick else 5
    batch_sizes = [1, 32, "full"] if args.quick else BATCH_SIZES
    train, _ = sg.datasets.digits(test_size=0.2, seed=0)
    X, y = train.X, train.y
    compile_seconds = warm_up(X, y)
    searches = {"scratchgd": scratchgd_search(epochs, batch_sizes, folds),
                "scikit-learn": sklearn_search(epochs, batch_sizes, folds, len(X))}
    seconds = {}
    with threadpool_limits(limits=args.threads):
        for name, search in searches.items():
            seconds[name] = timed(search, X, y)
            print(f"{name}: {seconds[name]:.2f} s", flush=True)
    print(f"\nGridSearchCV, digits {len(X)} rows, {folds}-fold, "
          f"{len(batch_sizes) * len(LEARNING_RATES)} candidates x {epochs} epochs, "
          f"MLP 64-64-10 relu, BLAS threads {args.threads}; {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| estimator | wall s | best CV accuracy | best params |")
    print("|---|---|---|---|")
    for name, search in searches.items():
        print(f"| {name} | {seconds[name]:.3f} | {search.best_score_:.4f} | "
              f"{best(search, len(X))} |")
    print("\nfit seconds by batch size (summed over learning rates and folds):\n")
    print("| batch size | scratchgd | scikit-learn |")
    print("|---|---|---|")
    by_batch = {name: fit_seconds_by_batch(search, folds, len(X))
                for name, search in searches.items()}
    for b in batch_sizes:
        print(f"| {b} | {by_batch['scratchgd'][b]:.3f} | {by_batch['scikit-learn'][b]:.3f} |")
    speedup = seconds["scikit-learn"] / seconds["scratchgd"]
    gap = searches["scratchgd"].best_score_ - searches["scikit-learn"].best_score_
    print(f"\nspeedup: {speedup:.2f}")
    print(f"best_score_difference: {gap:+.4f}")
    print(f"scratchgd_compile_seconds: {compile_seconds:.2f}")
    print(f"target_speedup_met: {speedup >= 2}")
    print(f"target_score_met: {gap >= -0.01}")


if __name__ == "__main__":
    main()
