"""Dataset and DataLoader: shapes, len(loader), one pass = one epoch (docs/math.md, identity 4)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgd as sg


def make(n, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return sg.Dataset(rng.standard_normal((n, d)), rng.integers(0, 3, n))


@given(n=st.integers(1, 200), b=st.integers(1, 250), drop_last=st.booleans())
def test_len_loader_is_pytorch_definition(n, b, drop_last):
    loader = sg.DataLoader(make(n), batch_size=b, drop_last=drop_last)
    expected = n // b if drop_last else math.ceil(n / b)
    assert len(loader) == expected
    sizes = [len(X) for X, _ in loader]
    assert len(sizes) == expected
    assert all(s == b for s in sizes[:-1])


@given(n=st.integers(1, 200), b=st.one_of(st.none(), st.integers(1, 250)),
       shuffle=st.booleans(), seed=st.integers(0, 1000), epochs=st.integers(1, 3))
def test_every_epoch_yields_each_row_exactly_once(n, b, shuffle, seed, epochs):
    data = sg.Dataset(np.arange(n, dtype=float)[:, None], np.zeros(n, dtype=int))
    loader = sg.DataLoader(data, batch_size=b, shuffle=shuffle, seed=seed)
    for _ in range(epochs):
        rows = np.concatenate([X[:, 0] for X, _ in loader])
        np.testing.assert_array_equal(np.sort(rows), np.arange(n))


def test_shuffle_draws_a_fresh_permutation_each_epoch_and_is_seeded():
    data = sg.Dataset(np.arange(50.0)[:, None], np.zeros(50, dtype=int))
    a = sg.DataLoader(data, batch_size=50, seed=7)
    b = sg.DataLoader(data, batch_size=50, seed=7)
    first, second = next(iter(a))[0], next(iter(a))[0]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, next(iter(b))[0])
    np.testing.assert_array_equal(second, next(iter(b))[0])


def test_full_batch_without_shuffle_is_a_view_not_a_copy():
    data = make(10)
    X, _ = next(iter(sg.DataLoader(data, batch_size=None, shuffle=False)))
    assert np.shares_memory(X, data.X) and len(X) == 10


def test_replacement_draws_len_loader_batches_of_full_size():
    loader = sg.DataLoader(make(10), batch_size=4, replacement=True, seed=0)
    assert [len(X) for X, _ in loader] == [4, 4, 4]


@pytest.mark.parametrize("options", [
    {"batch_size": 4, "shuffle": True}, {"batch_size": 4, "shuffle": False},
    {"batch_size": 3, "shuffle": "chunks", "chunk_size": 5}, {"batch_size": 4, "replacement": True},
    {"batch_size": None}, {"batch_size": 4, "drop_last": True}])
def test_batches_from_any_point_are_the_items_of_iterating_the_loader(options):
    """loader.batches(order, start, stop, y): the batches of `for X, y in loader`, from batch start."""
    data = make(23)
    items = list(sg.DataLoader(data, seed=3, **options))
    loader = sg.DataLoader(data, seed=3, **options)
    order = loader.epoch_order()
    targets = np.arange(23.0) * 10      # the run's prepared targets, one per row
    for start in range(len(loader) + 1):
        batches = list(loader.batches(order, start, None, targets))
        assert len(batches) == len(items) - start
        for (X, y), (X_item, y_item) in zip(batches, items[start:], strict=True):
            np.testing.assert_array_equal(X, X_item)
            np.testing.assert_array_equal(y, targets[_rows(data, X)])
            np.testing.assert_array_equal(data.y[_rows(data, X)], y_item)
    assert len(list(loader.batches(order, 1, 2))) == 1


def _rows(data, X):
    """The row numbers of ``X``'s rows in ``data`` (rows of make() are distinct)."""
    return [int(np.flatnonzero((data.X == row).all(axis=1))[0]) for row in X]


def test_the_reference_engine_draws_its_batches_by_iterating_the_loader(monkeypatch, tmp_path):
    """fit's Python engine reads every batch through DataLoader.batches, from mid-epoch too."""
    data = make(20)
    calls = []
    batches = sg.DataLoader.batches

    def spy(self, order, start=0, stop=None, y=None):
        calls.append((start, stop))
        yield from batches(self, order, start, stop, y)

    monkeypatch.setattr(sg.DataLoader, "batches", spy)
    model = sg.MLP([3, 4, 3], seed=0)
    history = sg.fit(model, data, sg.MiniBatchSGD(lr=0.1, batch_size=3), epochs=2,
                     progress=False, checkpoint=tmp_path / "run.npz", checkpoint_every=3)
    # spans end where a checkpoint is due, every 3rd step: 7 iterations (steps) per epoch
    assert calls == [(0, 3), (3, 6), (6, 7), (0, 2), (2, 5), (5, 7)]
    assert history.iterations == 14


def test_dataset_accepts_targets_and_whole_number_float_labels():
    data = sg.Dataset(np.ones((4, 2)), np.array([0.0, 1.0, 2.0, 1.0]))
    assert data.y.dtype.kind == "i" and data.n_classes == 3 and data.is_classification
    reg = sg.Dataset(np.ones((4, 2)), np.ones((4, 1)))
    assert not reg.is_classification and reg.n_classes is None


@pytest.mark.parametrize("X, y, exc, word", [
    (np.ones((3, 2)), np.zeros(4, dtype=int), ValueError, "rows"),
    (np.ones(3), np.zeros(3, dtype=int), ValueError, "X"),
    (np.array([[1.0, np.nan]]), np.zeros(1, dtype=int), ValueError, "X must be finite"),
    (np.array([[1.0, np.inf]]), np.zeros(1, dtype=int), ValueError, "X must be finite"),
    (np.ones((2, 2)), np.array([0.5, 1.0]), ValueError, "whole"),
    (np.ones((2, 2)), np.array([-1, 1]), ValueError, ">= 0"),
    (np.ones((0, 2)), np.zeros(0, dtype=int), ValueError, "at least one row"),
    (np.array([["a", "b"]]), np.zeros(1, dtype=int), TypeError, "X"),
    (np.ones((1, 2), dtype=complex), np.zeros(1, dtype=int), TypeError, "X"),
    (np.ones((2, 2)), np.array(["a", "b"]), TypeError, "y"),
])
def test_bad_datasets_are_refused(X, y, exc, word):
    with pytest.raises(exc, match=word):
        sg.Dataset(X, y)


@pytest.mark.parametrize("batch_size, exc", [(0, ValueError), (-3, ValueError),
                                             (2.5, TypeError), ("8", TypeError), (True, TypeError)])
def test_bad_batch_sizes_are_refused(batch_size, exc):
    with pytest.raises(exc, match="batch_size"):
        sg.DataLoader(make(5), batch_size=batch_size)


def test_loader_needs_a_dataset():
    with pytest.raises(TypeError, match="dataset"):
        sg.DataLoader(np.ones((3, 2)), batch_size=1)


def test_digits_ships_in_the_package_with_a_stratified_split():
    train, test = sg.datasets.digits(test_size=0.2, seed=0)
    assert (len(train), len(test)) == (1437, 360)
    assert train.X.shape[1] == 64 and 0 <= train.X.min() and train.X.max() <= 1
    all_counts = np.bincount(np.concatenate([train.y, test.y]))
    assert all_counts.sum() == 1797 and len(all_counts) == 10
    np.testing.assert_allclose(np.bincount(test.y) / 360, all_counts / 1797, atol=0.005)
    again, _ = sg.datasets.digits(test_size=0.2, seed=0)
    np.testing.assert_array_equal(again.X, train.X)


@pytest.mark.parametrize("make_set", [sg.datasets.blobs, sg.datasets.spirals,
                                      sg.datasets.regression_1d])
def test_synthetic_sets_are_seeded(make_set):
    a, b, c = make_set(seed=1), make_set(seed=1), make_set(seed=2)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
