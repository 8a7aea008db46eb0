"""Data sets that ship with scratchgd: no download, no extra dependency.

* :func:`digits` — 1,797 8x8 images of handwritten digits, 10 classes (the UCI
  "Optical Recognition of Handwritten Digits" test set as distributed with
  scikit-learn, CC BY 4.0), stored in the package as a compressed ``.npz``.
* :func:`blobs`, :func:`spirals`, :func:`regression_1d` — small synthetic sets
  for tests and demos, generated from a seed.

and the two ways to hold out a test set: :func:`stratified_split` (class
labels: the class proportions kept) and :func:`random_split` (regression
targets).
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np

from .. import _checks
from ..data import Dataset

__all__ = [
    "blobs", "digits", "load_digits", "random_split", "regression_1d", "spirals",
    "stratified_split"
]


def load_digits() -> Dataset:
    """All 1,797 digits: ``X`` = pixels / 16 in ``[0, 1]``, shape (1797, 64); ``y`` in 0..9."""
    with resources.files(__name__).joinpath("digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    return Dataset(images.astype(np.float64) / 16.0, labels.astype(np.int64))


def stratified_split(data: Dataset, test_size: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split into train and test sets keeping the class proportions.

    ``ceil(test_size * n)`` rows go to the test set, shared out among the
    classes in proportion to their counts (largest remainders first); which
    rows of a class go is drawn from ``seed``. Both sets keep a random order.
    """
    _checks.instance("data", data, Dataset)
    if not data.is_classification:
        raise ValueError(f"data must hold class labels to stratify by, got y of shape "
                         f"{data.y.shape}")
    n_test = _test_rows(data, test_size)
    rng = np.random.default_rng(_checks.seed("seed", seed))
    classes, counts = np.unique(data.y, return_counts=True)
    share = counts * n_test / len(data)
    per_class = np.floor(share).astype(int)
    extra = np.argsort(-(share - per_class), kind="stable")[: n_test - per_class.sum()]
    per_class[extra] += 1
    test_rows = np.concatenate([rng.permutation(np.flatnonzero(data.y == c))[:m]
                                for c, m in zip(classes, per_class, strict=True)])
    is_test = np.zeros(len(data), dtype=bool)
    is_test[test_rows] = True
    train_rows = rng.permutation(np.flatnonzero(~is_test))
    test_rows = rng.permutation(test_rows)
    return Dataset(data.X[train_rows], data.y[train_rows]), Dataset(data.X[test_rows],
                                                                    data.y[test_rows])


def random_split(data: Dataset, test_size: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split into train and test sets at random: for regression, with no classes to stratify by.

    ``ceil(test_size * n)`` rows, the first of a permutation drawn from
    ``default_rng(seed)``, go to the test set, the rest to the training set,
    both in that random order (copies in memory).
    """
    _checks.instance("data", data, Dataset)
    n_test = _test_rows(data, test_size)
    order = np.random.default_rng(_checks.seed("seed", seed)).permutation(len(data))
    test, train = order[:n_test], order[n_test:]
    return Dataset(data.X[train], data.y[train]), Dataset(data.X[test], data.y[test])


def _test_rows(data: Dataset, test_size: float) -> int:
    """``ceil(test_size * n)``, the rows of a split's test set; ``ValueError`` if a set is empty."""
    test_size = _checks.finite_float("test_size", test_size, low=0.0, low_inclusive=False,
                                     high=1.0)
    n_test = math.ceil(test_size * len(data))
    if not 0 < n_test < len(data):
        raise ValueError(f"test_size={test_size} leaves an empty train or test set of the "
                         f"{len(data)} rows")
    return n_test


def digits(test_size: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """The digits split into (train, test), stratified; 1,437 / 360 rows at the default."""
    return stratified_split(load_digits(), test_size, seed)


def blobs(n: int = 300, centers: int = 3, n_features: int = 2, spread: float = 1.0,
          seed: int = 0) -> Dataset:
    """Gaussian clusters: ``centers`` classes around centres drawn in ``[-5, 5]^d``.

    Row ``i`` has label ``i % centers`` and features ``c_label + spread * N(0, I)``.
    """
    n = _checks.positive_int("n", n)
    centers = _checks.positive_int("centers", centers)
    n_features = _checks.positive_int("n_features", n_features)
    spread = _checks.finite_float("spread", spread, low=0.0, low_inclusive=True, high=1e100)
    _checks.fits_in_memory("centers * n_features", (centers, n_features), 8 * centers * n_features)
    _checks.fits_in_memory("n * n_features", (n, n_features), 4 * 8 * n * n_features)
    rng = np.random.default_rng(_checks.seed("seed", seed))
    middle = rng.uniform(-5, 5, size=(centers, n_features))
    y = np.arange(n) % centers
    return Dataset(middle[y] + spread * rng.standard_normal((n, n_features)), y)


def spirals(n: int = 300, arms: int = 3, noise: float = 0.2, seed: int = 0) -> Dataset:
    """Interleaved 2-D spirals, one class per arm: not linearly separable.

    Arm ``c`` at radius ``r`` in ``[0, 1]`` lies at angle ``4 r + 2 pi c / arms``,
    with ``noise * N(0, 1)`` added to the angle.
    """
    n = _checks.positive_int("n", n)
    arms = _checks.positive_int("arms", arms)
    noise = _checks.finite_float("noise", noise, low=0.0, low_inclusive=True, high=1e100)
    _checks.fits_in_memory("n", n, 8 * 8 * n)
    rng = np.random.default_rng(_checks.seed("seed", seed))
    y = np.arange(n) % min(arms, n)  # the same labels; no overflow for a huge arms
    r = rng.uniform(0, 1, size=n)
    angle = 4 * r + 2 * np.pi * y / arms + noise * rng.standard_normal(n)
    return Dataset(np.column_stack([r * np.sin(angle), r * np.cos(angle)]), y)


def regression_1d(n: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """``y = sin(3 x) + noise * N(0, 1)`` for ``x`` uniform in ``[-1, 1]``; y shape (n, 1)."""
    n = _checks.positive_int("n", n)
    noise = _checks.finite_float("noise", noise, low=0.0, low_inclusive=True, high=1e100)
    _checks.fits_in_memory("n", n, 4 * 8 * n)
    rng = np.random.default_rng(_checks.seed("seed", seed))
    x = rng.uniform(-1, 1, size=(n, 1))
    return Dataset(x, np.sin(3 * x) + noise * rng.standard_normal((n, 1)))
