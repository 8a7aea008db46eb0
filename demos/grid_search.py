"""Batch size as a hyper-parameter: the article's advice as one scikit-learn GridSearchCV.

"Try out different batch sizes to see which one works best": a GridSearchCV
over batch_size in {1, 4, 16, 32, 64, 256, "full"} and three learning rates,
5-fold cross-validation on the digits training split, the same 20 epochs for
every candidate (scratchgd.estimators.MLPClassifier, numba backend). For each
batch size the best learning rate's mean CV accuracy and mean fit time are
drawn; the winner is printed. BLAS runs on one thread (on a shared machine
more threads only add contention to the fit times). Needs scikit-learn (the
extra "sklearn").
"""

from _common import machine, parse_args, report
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits  # comes with scikit-learn

import scratchgd as sg
from scratchgd.estimators import MLPClassifier
from scratchgd.plots import plot_grid_search

LEARNING_RATES = [0.01, 0.1, 0.5]


def main() -> None:
    args = parse_args(__doc__)
    epochs, folds = (2, 3) if args.quick else (20, 5)
    batch_sizes = [1, 16, 256, "full"] if args.quick else [1, 4, 16, 32, 64, 256, "full"]
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    report("machine", machine())
    estimator = MLPClassifier(hidden_layer_sizes=(64,), max_iter=epochs, random_state=0,
                              backend="numba")
    for b in (1, 32, "full"):  # compile (or load) the kernels before anything is timed
        MLPClassifier(**{**estimator.get_params(), "batch_size": b}).fit(train.X[:64],
                                                                        train.y[:64])
    search = GridSearchCV(estimator, {"batch_size": batch_sizes,
                                      "learning_rate_init": LEARNING_RATES}, cv=folds,
                          error_score="raise")  # a diverged fit stops the demo, never hides
    with threadpool_limits(limits=1):
        search.fit(train.X, train.y)
    results = search.cv_results_
    best = {}  # batch size -> index of its best learning rate in cv_results_
    for i, params in enumerate(results["params"]):
        b = params["batch_size"]
        if b not in best or results["mean_test_score"][i] > results["mean_test_score"][best[b]]:
            best[b] = i
    rows = [best[b] for b in batch_sizes]
    for b, i in zip(batch_sizes, rows, strict=True):
        report(f"batch[{b}]", f"lr={results['params'][i]['learning_rate_init']:g} "
                              f"cv_accuracy={results['mean_test_score'][i]:.4f} "
                              f"cv_std={results['std_test_score'][i]:.4f} "
                              f"fit_seconds={results['mean_fit_time'][i]:.4f}")
    report("candidates", len(results["params"]))
    report("folds", folds)
    report("epochs", epochs)
    winner = search.best_params_
    report("winner", f"batch_size={winner['batch_size']} "
                     f"lr={winner['learning_rate_init']:g} cv_accuracy={search.best_score_:.4f}")
    report("winner_test_accuracy", float(search.score(test.X, test.y)))
    plot_grid_search([str(b) for b in batch_sizes], results["mean_test_score"][rows],
                     results["std_test_score"][rows], results["mean_fit_time"][rows],
                     [results["params"][i]["learning_rate_init"] for i in rows],
                     args.out / "grid_search.png",
                     title=f"GridSearchCV on digits, MLP [64, 64, 10], {epochs} epochs, "
                           f"{folds}-fold; {machine()}")


if __name__ == "__main__":
    main()
