"""shuffle="chunks": blocks of contiguous rows in random order, every row once per epoch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchgd as sg


def _dataset(n):
    return sg.Dataset(np.arange(n, dtype=float)[:, None], np.zeros(n, dtype=int))


@settings(deadline=None, max_examples=60)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 64), chunk_size=st.integers(1, 80),
       seed=st.integers(0, 1000), epochs=st.integers(1, 3))
def test_every_row_once_per_epoch_in_contiguous_blocks(n, batch_size, chunk_size, seed, epochs):
    loader = sg.DataLoader(_dataset(n), batch_size=batch_size, shuffle="chunks",
                           chunk_size=chunk_size, seed=seed)
    for _ in range(epochs):
        batches = list(loader.batch_indices())
        assert len(batches) == len(loader)
        order = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(order), np.arange(n))
        # the order is whole blocks [s, s + chunk_size) one after another, each shuffled
        position = 0
        while position < n:
            start = order[position] // chunk_size * chunk_size
            size = min(chunk_size, n - start)
            np.testing.assert_array_equal(np.sort(order[position:position + size]),
                                          np.arange(start, start + size))
            position += size


def test_chunks_are_shuffled_and_seeded():
    loader = sg.DataLoader(_dataset(1000), batch_size=10, shuffle="chunks", chunk_size=100, seed=3)
    first, second = (np.concatenate(list(loader.batch_indices())) for _ in range(2))
    assert not np.array_equal(first, second)                            # a new order each epoch
    assert not np.array_equal(first[:100], np.sort(first[:100]))       # rows shuffled in a block
    assert len({int(b) for b in first[::100] // 100}) == 10
    again = sg.DataLoader(_dataset(1000), batch_size=10, shuffle="chunks", chunk_size=100, seed=3)
    np.testing.assert_array_equal(np.concatenate(list(again.batch_indices())), first)


def test_optimizers_pass_shuffle_to_the_loader():
    data = _dataset(20)
    for optimizer in (sg.MiniBatchSGD(0.1, batch_size=4, shuffle="chunks", chunk_size=5),
                      sg.SGD(0.1, shuffle="chunks", chunk_size=5)):
        loader = optimizer.loader(data, seed=0)
        assert loader.shuffle == "chunks" and loader.chunk_size == 5
    model = sg.MLP([1, 4, 2], seed=0)
    hist = sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=4, shuffle="chunks", chunk_size=8),
                  epochs=2, progress=False)
    assert hist.samples_seen == 40


@pytest.mark.parametrize("kwargs, error", [({"shuffle": "blocks"}, ValueError),
                                           ({"shuffle": 1}, TypeError),
                                           ({"shuffle": "chunks", "chunk_size": 0}, ValueError)])
def test_bad_shuffle_arguments(kwargs, error):
    with pytest.raises(error, match="shuffle|chunk_size"):
        sg.DataLoader(_dataset(5), batch_size=2, **kwargs)
    with pytest.raises(error, match="shuffle|chunk_size"):
        sg.MiniBatchSGD(0.1, batch_size=2, **kwargs)
