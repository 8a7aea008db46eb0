"""Text tables: comma or whitespace, gzipped or not, a header or none, features and labels in
one file or two; class labels or regression targets; errors that name the file and the line.

The fixture files are written here, in the layouts published tables come in (scikit-learn's
diabetes table: whitespace-separated features in one gzipped file, targets written as floats
such as ``1.51e+02`` in another).
"""

import gzip

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import io


def _table(n=12, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * [1.0, 100.0, 1e-3], rng.integers(0, 3, n)


def _write(path, array, delimiter=",", header=None, compress=False, fmt="%.18e"):
    text = ""
    if header is not None:
        text += header + "\n"
    text += "\n".join(delimiter.join(fmt % v for v in np.atleast_1d(row)) for row in array) + "\n"
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("delimiter", [",", " ", "\t", "  "])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("header", [None, "a,b,c", "age bmi bp"])
def test_features_and_labels_in_two_files(tmp_path, delimiter, compress, header):
    X, y = _table()
    suffix = ".gz" if compress else ""
    x_file = _write(tmp_path / f"X.txt{suffix}", X, delimiter, header, compress)
    y_file = _write(tmp_path / f"y.csv{suffix}", y[:, None], delimiter, None, compress)
    data = sg.Dataset.from_file(x_file, y_file)
    np.testing.assert_allclose(data.X, X, rtol=1e-15)
    np.testing.assert_array_equal(data.y, y)
    assert data.y.dtype == np.int64 and data.is_classification


def test_gzip_is_recognised_by_content_and_the_suffix_is_skipped(tmp_path):
    X, y = _table()
    _write(tmp_path / "plain.csv.gz", np.column_stack([X, y]))         # named .gz, plain text
    _write(tmp_path / "packed.csv", np.column_stack([X, y]), compress=True)   # not named .gz
    for name in ("plain.csv.gz", "packed.csv"):
        data = sg.Dataset.from_file(tmp_path / name)
        np.testing.assert_allclose(data.X, X, rtol=1e-15)
        np.testing.assert_array_equal(data.y, y)
    np.testing.assert_allclose(io.read_features(tmp_path / "packed.csv"), np.column_stack([X, y]))


def test_whitespace_table_with_its_label_column(tmp_path):
    X, y = _table()
    _write(tmp_path / "d.txt", np.column_stack([X, y]), " ", "x1 x2 x3 label")
    data = sg.Dataset.from_file(tmp_path / "d.txt")
    np.testing.assert_allclose(data.X, X, rtol=1e-15)
    np.testing.assert_array_equal(data.y, y)


def test_labels_or_targets():
    labels = np.array([0.0, 2.0, 1.0])
    assert io.labels_or_targets(labels).shape == (3,)
    assert io.labels_or_targets(labels[:, None]).shape == (3,)
    for values in (np.array([0.5, 1.0, 2.0]), np.array([-1.0, 0.0, 1.0])):   # fraction; < 0
        got = io.labels_or_targets(values)
        assert got.shape == (3, 1) and got.dtype == np.float64
    two = io.labels_or_targets(np.array([[1, 2], [3, 4]]))
    assert two.shape == (2, 2) and two.dtype == np.float64
    forced = io.labels_or_targets(np.array([151, 75, 141]), targets=True)
    np.testing.assert_array_equal(forced, [[151.0], [75.0], [141.0]])
    float32 = np.zeros((4, 2), dtype=np.float32)
    assert io.labels_or_targets(float32) is float32          # targets kept as they are, no copy


def test_integral_float_targets_are_classes_unless_targets(tmp_path):
    """The diabetes layout: whole-number targets written as floats (1.510000e+02)."""
    X, _ = _table(n=6)
    y = np.array([151.0, 75.0, 141.0, 206.0, 135.0, 97.0])
    _write(tmp_path / "X.txt.gz", X, " ", compress=True)
    _write(tmp_path / "y.txt.gz", y[:, None], " ", compress=True)
    classes = sg.Dataset.from_file(tmp_path / "X.txt.gz", tmp_path / "y.txt.gz")
    assert classes.is_classification and classes.n_classes == 207
    targets = sg.Dataset.from_file(tmp_path / "X.txt.gz", tmp_path / "y.txt.gz", targets=True)
    assert targets.y.shape == (6, 1) and targets.y.dtype == np.float64
    np.testing.assert_array_equal(targets.y[:, 0], y)


def test_real_valued_and_multi_column_labels_are_targets(tmp_path):
    X, _ = _table(n=5)
    targets = np.random.default_rng(1).normal(size=(5, 3))
    _write(tmp_path / "X.csv", X)
    _write(tmp_path / "y1.csv", targets[:, :1])
    _write(tmp_path / "y3.txt", targets, " ", header="weight waist pulse")
    one = sg.Dataset.from_file(tmp_path / "X.csv", tmp_path / "y1.csv")
    three = sg.Dataset.from_file(tmp_path / "X.csv", tmp_path / "y3.txt")
    np.testing.assert_allclose(one.y, targets[:, :1], rtol=1e-15)
    np.testing.assert_allclose(three.y, targets, rtol=1e-15)
    assert not one.is_classification and one.n_classes is None
    whole = np.column_stack([X, [3.0, 1.0, 2.0, 0.0, 1.0]])
    _write(tmp_path / "d.csv", whole)        # one table: the last column, as_targets forced
    assert sg.Dataset.from_csv(tmp_path / "d.csv", targets=True).y.shape == (5, 1)


def test_npy_features_with_text_labels_and_back(tmp_path):
    X, y = _table()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.float64))
    _write(tmp_path / "X.csv", X)
    _write(tmp_path / "y.txt", y[:, None], fmt="%d")
    for x_file, y_file in (("X.npy", "y.txt"), ("X.csv", "y.npy")):
        data = sg.Dataset.from_file(tmp_path / x_file, tmp_path / y_file)
        np.testing.assert_allclose(data.X, X, rtol=1e-15)
        np.testing.assert_array_equal(data.y, y)
    with pytest.raises(ValueError, match="a labels file must be .npy, .csv or .txt"):
        sg.Dataset.from_file(tmp_path / "X.csv", tmp_path / "X.npz")


def test_header_detected_or_forced(tmp_path):
    X, y = _table(n=4)
    _write(tmp_path / "numbered.csv", np.column_stack([X, y]), header="1,2,3,4")
    detected = sg.Dataset.from_file(tmp_path / "numbered.csv")   # "1,2,3,4" reads as a row
    assert len(detected) == 5
    forced = sg.Dataset.from_file(tmp_path / "numbered.csv", header=True)
    np.testing.assert_allclose(forced.X, X, rtol=1e-15)
    _write(tmp_path / "named.txt", np.column_stack([X, y]), " ", header="# written today\n"
           "a b c label")
    np.testing.assert_allclose(sg.Dataset.from_file(tmp_path / "named.txt").X, X, rtol=1e-15)
    with pytest.raises(ValueError, match=r"named.txt, line 2: field 1, 'a', is not a number "
                                         r"\(whitespace-separated\)"):
        sg.Dataset.from_file(tmp_path / "named.txt", header=False)


@pytest.mark.parametrize("content, message", [
    ("1,2,0\n3,4,1\n5,6\n", r"line 3: 2 fields, but line 1 has 3 \(comma-separated\)"),
    ("a,b,y\n1,2,0\n\n# a comment\n3,4,1,9\n", r"line 5: 4 fields, but line 2 has 3"),
    ("1 2 0\n3 4 1\n5 six 1\n", r"line 3: field 2, 'six', is not a number "
                                r"\(whitespace-separated\)"),
    ("1,2,0\n3,,1\n", r"line 2: field 2, '', is not a number"),
    ("", "no rows of numbers"),
    ("# only a comment\n\n", "no rows of numbers"),
    ("a,b,label\n", "no rows of numbers after the header line 1"),
])
def test_errors_name_the_file_and_the_line(tmp_path, content, message):
    for name, data in (("bad.csv", content.encode()), ("bad.csv.gz", gzip.compress(content.encode()))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}(, |: ){message}"):
            sg.Dataset.from_file(tmp_path / name)


def test_labels_whose_rows_differ_from_the_features_are_refused(tmp_path):
    X, y = _table(n=10)
    _write(tmp_path / "X.csv", X)
    _write(tmp_path / "y.csv", y[:9, None])
    with pytest.raises(ValueError, match=r"y.csv holds 9 rows of labels but .*X.csv holds 10 rows"):
        sg.Dataset.from_file(tmp_path / "X.csv", tmp_path / "y.csv")
    _write(tmp_path / "ragged.csv", np.ones((10, 2)))
    with open(tmp_path / "ragged.csv", "a") as fh:
        fh.write("1\n")
    with pytest.raises(ValueError, match="ragged.csv, line 11: 1 field, but line 1 has 2"):
        sg.Dataset.from_file(tmp_path / "X.csv", tmp_path / "ragged.csv")


def test_corrupt_gzip_and_binary_files_are_named(tmp_path):
    X, y = _table()
    packed = gzip.compress(b"1,2\n3,4\n" * 100)
    (tmp_path / "cut.csv.gz").write_bytes(packed[:-20])
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="cut.csv.gz: not a readable text table"):
        sg.Dataset.from_file(tmp_path / "cut.csv.gz")
    # byte 10 is the first newline, so 0x80 (byte 128) is column 118 of line 2
    with pytest.raises(ValueError, match="binary.csv, line 2: byte 0x80 at column 118 is not UTF-8"):
        sg.Dataset.from_file(tmp_path / "binary.csv")
    with pytest.raises(FileNotFoundError):
        sg.Dataset.from_file(tmp_path / "missing.csv")
