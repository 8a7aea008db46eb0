"""File formats: .npy (memory-mapped), .npz, CSV, IDX; bad files give a ValueError naming them."""

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import _checks, io


def _data(n=50, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


def _write_idx(path, array, code=0x08, compress=False):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(io.IDX_DTYPES[code]).tobytes()
    with (gzip.open if compress else open)(path, "wb") as fh:
        fh.write(content)


def test_from_npy_is_a_read_only_memory_map(tmp_path):
    X, y = _data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")
    assert isinstance(data.X, np.memmap) and not data.X.flags.writeable
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    loaded = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", mmap=False)
    assert not isinstance(loaded.X, np.memmap)


def test_from_npy_memory_stays_bounded_and_training_reads_batches(tmp_path):
    X = np.random.default_rng(0).random((8000, 400))  # 25.6 MB on disk
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(8000) % 4)
    del X
    tracemalloc.start()
    try:
        data = sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")
        construct_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        model = sg.MLP([400, 16, 4], seed=0)
        sg.fit(model, data, sg.MiniBatchSGD(0.1, batch_size=64, shuffle="chunks"), epochs=1,
               progress=False, validation=data)
        fit_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert construct_peak < 4e6       # the finiteness check works in ~1M-element blocks
    assert fit_peak < 5e6             # batches of 64 and evaluation blocks, never the 25.6 MB


def test_chunked_finite_check_reports_the_global_index():
    X = np.zeros((3 * _checks.BLOCK_ELEMENTS // 4, 4))   # 3 blocks of rows
    X[-2, 3] = np.inf
    with pytest.raises(ValueError, match=rf"X must be finite, found inf at index \({len(X) - 2}, 3\)"):
        sg.Dataset(X, np.zeros(len(X), dtype=int))
    y = np.zeros(len(X))
    y[-1] = 0.5
    with pytest.raises(ValueError, match="whole numbers"):
        sg.Dataset(np.zeros_like(X), y)


def test_npy_refuses_pickled_objects_and_truncated_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(2, dtype=int))
    for mmap in (True, False):
        with pytest.raises(ValueError, match="obj.npy"):
            sg.Dataset.from_npy(tmp_path / "obj.npy", tmp_path / "y.npy", mmap=mmap)
    np.save(tmp_path / "X.npy", np.ones((100, 5)))
    content = (tmp_path / "X.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(content[: len(content) // 2])
    for mmap in (True, False):
        with pytest.raises(ValueError, match="cut.npy"):
            io.read_npy(tmp_path / "cut.npy", mmap=mmap)


def test_npy_rows_must_match(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((10, 2)))
    np.save(tmp_path / "y.npy", np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="same number of rows"):
        sg.Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy")


def test_from_npz_keys(tmp_path):
    X, y = _data()
    np.savez_compressed(tmp_path / "d.npz", features=X, labels=y)
    data = sg.Dataset.from_npz(tmp_path / "d.npz", x_key="features", y_key="labels")
    np.testing.assert_array_equal(data.X, X)
    with pytest.raises(ValueError, match=r"d.npz: no array named 'X'.*features"):
        sg.Dataset.from_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([None, 1], dtype=object), y=y)
    with pytest.raises(ValueError, match="obj.npz"):
        sg.Dataset.from_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        sg.Dataset.from_npz(tmp_path / "junk.npz")


@pytest.mark.parametrize("header", [True, None])
def test_from_csv_with_header_and_label_column(tmp_path, header):
    X, y = _data(n=20, d=3)
    table = np.column_stack([y, X])          # label first
    np.savetxt(tmp_path / "d.csv", table, delimiter=",", header="label,a,b,c", comments="")
    data = sg.Dataset.from_csv(tmp_path / "d.csv", label_column=0, header=header)
    np.testing.assert_allclose(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    assert data.y.dtype == np.int64


def test_from_csv_without_header_and_errors(tmp_path):
    X, y = _data(n=20, d=3)
    np.savetxt(tmp_path / "d.tsv", np.column_stack([X, y]), delimiter="\t")
    data = sg.Dataset.from_csv(tmp_path / "d.tsv", delimiter="\t")
    np.testing.assert_allclose(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    with pytest.raises(ValueError, match="label_column=7 is out of range"):
        sg.Dataset.from_csv(tmp_path / "d.tsv", delimiter="\t", label_column=7)
    (tmp_path / "bad.csv").write_text("1,2,0\n3,x,1\n")
    with pytest.raises(ValueError, match="bad.csv, line 2: field 2, .x., is not a number"):
        sg.Dataset.from_csv(tmp_path / "bad.csv")
    (tmp_path / "named.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match="named.csv"):
        sg.Dataset.from_csv(tmp_path / "named.csv", header=False)


@pytest.mark.parametrize("compress", [False, True])
def test_from_idx_reads_mnist_layout(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 4, 5))
    labels = rng.integers(0, 10, size=30)
    suffix = ".gz" if compress else ""
    image_file, label_file = tmp_path / f"img-idx3-ubyte{suffix}", tmp_path / f"lab-idx1-ubyte{suffix}"
    _write_idx(image_file, images, compress=compress)
    _write_idx(label_file, labels, compress=compress)
    data = sg.Dataset.from_idx(image_file, label_file)
    assert data.X.shape == (30, 20) and data.X.dtype == np.float32
    np.testing.assert_allclose(data.X, images.reshape(30, 20) / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y, labels)
    raw = sg.Dataset.from_idx(image_file, label_file, scale=False)
    np.testing.assert_array_equal(raw.X, images.reshape(30, 20))
    assert isinstance(raw.X, np.memmap) == (not compress)


def test_idx_other_dtypes_are_big_endian(tmp_path):
    values = np.arange(12, dtype=np.float64).reshape(3, 4) - 5.5
    _write_idx(tmp_path / "v.idx", values, code=0x0E)
    np.testing.assert_array_equal(io.read_idx(tmp_path / "v.idx"), values)
    _write_idx(tmp_path / "s.idx", values.astype(int), code=0x0B)
    np.testing.assert_array_equal(io.read_idx(tmp_path / "s.idx", mmap=False), values.astype(int))


def test_idx_errors_name_the_file(tmp_path):
    images = np.zeros((5, 2, 2), dtype=np.uint8)
    _write_idx(tmp_path / "img-ubyte", images)
    _write_idx(tmp_path / "lab-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="img-ubyte holds 5 images but .*lab-ubyte holds 4 labels"):
        sg.Dataset.from_idx(tmp_path / "img-ubyte", tmp_path / "lab-ubyte")
    content = (tmp_path / "img-ubyte").read_bytes()
    (tmp_path / "cut-ubyte").write_bytes(content[:-3])
    (tmp_path / "cut-ubyte.gz").write_bytes(gzip.compress(content[:-3]))
    for name in ("cut-ubyte", "cut-ubyte.gz"):
        with pytest.raises(ValueError, match=f"{name}: IDX header says shape .* truncated"):
            io.read_idx(tmp_path / name)
    (tmp_path / "magic-ubyte").write_bytes(b"\x08\x03\x00\x00" + content[4:])
    with pytest.raises(ValueError, match="magic-ubyte: not an IDX file"):
        io.read_idx(tmp_path / "magic-ubyte")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(content)[:-12])
    with pytest.raises(ValueError, match="broken.gz: corrupt gzip"):
        io.read_idx(tmp_path / "broken.gz")


def test_from_file_dispatches_on_extension(tmp_path):
    X, y = _data(n=12, d=2)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",")
    for args in ((tmp_path / "X.npy", tmp_path / "y.npy"), (tmp_path / "d.npz",), (tmp_path / "d.csv",)):
        data = sg.Dataset.from_file(*args)
        np.testing.assert_allclose(data.X, X)
        np.testing.assert_array_equal(data.y, y)
    with pytest.raises(ValueError, match="give the labels file"):
        sg.Dataset.from_file(tmp_path / "X.npy")
    with pytest.raises(ValueError, match="do not give a labels file"):
        sg.Dataset.from_file(tmp_path / "d.npz", tmp_path / "y.npy")
    with pytest.raises(ValueError, match="unknown file type '.parquet'"):
        sg.Dataset.from_file(tmp_path / "d.parquet")
