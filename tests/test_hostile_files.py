"""Data files from anywhere (issue 28): each probe ends in one line naming the file, or in a
correct result, in a child process whose own peak memory stays under ``PEAK_MB``.

Each case is run as ``scratchgd ...`` (or a few lines of the API) in a fresh Python process,
with a timeout (a FIFO that were opened would block forever); the child reports its own peak
resident set size, ``VmHWM`` of ``/proc/self/status`` (the high-water mark of its own memory
map: ``getrusage`` would carry over the test process's size, which Linux keeps across
``exec``). Huge files are sparse: their holes cost no disk and read as zero bytes.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scratchgd as sg
from scratchgd import tables

PEAK_MB = 256
"""The most memory a child may reach while refusing a file (the command alone takes ~50 MB)."""

PEAK = textwrap.dedent("""
    def peak():
        with open("/proc/self/status") as fh:
            kb = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
        print(f"peak-rss-kb {kb}", file=sys.stderr)
""")

CLI = "import sys\n" + PEAK + textwrap.dedent("""
    from scratchgd.cli import main
    try:
        status = main(sys.argv[1:])
    finally:
        peak()
    sys.exit(status)
""")

API = "import sys\n" + PEAK + textwrap.dedent("""
    import scratchgd as sg
    try:
        exec(sys.argv[1])
    except (ValueError, OSError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        peak()
""")


def child(code, *args, timeout=120):
    """``(exit status, stdout, stderr without the last line, peak RSS in MB)`` of a child."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
    *err, last = proc.stderr.splitlines()
    assert last.startswith("peak-rss-kb "), proc.stderr
    return proc.returncode, proc.stdout, "\n".join(err), int(last.split()[1]) / 1024


def refused(args, message, status=2, timeout=120):
    """``scratchgd *args`` ends with ``status`` and one line matching ``message``, under PEAK_MB."""
    code, _, err, peak = child(CLI, *args, timeout=timeout)
    assert code == status, err
    assert err.count("\n") == 0 and err.startswith("scratchgd: error: "), err
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"
    return err


def api_refused(statement, message):
    """The API ``statement`` raises a ``ValueError`` or ``OSError`` matching ``message``,
    under PEAK_MB."""
    _, _, err, peak = child(API, statement)
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"


def sparse(path, head: bytes, size: int):
    """A file of ``size`` bytes: ``head``, then a hole (zero bytes that take no disk)."""
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def npy_header(shape, descr="<f8"):
    """The bytes of a version 1.0 ``.npy`` header declaring ``shape`` of ``descr``."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def labelled(tmp_path, n=20):
    """A small two-class table ``t.csv`` and its model ``m.npz`` (2 features)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))
    np.savetxt(tmp_path / "t.csv", np.column_stack([X, np.arange(n) % 2]), delimiter=",")
    sg.MLP([2, 2], seed=0).save(tmp_path / "m.npz")
    return tmp_path / "t.csv"


def train(data, *extra):
    return ["train", "--data", data, "--epochs", "1", "--hidden", "4", "--no-progress", *extra]


# --- nothing silent -------------------------------------------------------------------------

@pytest.mark.parametrize("header", [[], ["--no-header"]])
def test_a_bom_csv_gives_one_prediction_per_row(tmp_path, header):
    """A "CSV UTF-8" file from a spreadsheet starts with a byte-order mark; no row is lost."""
    labelled(tmp_path)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + b"0.5,1.5\n-1,2\n3,-0.25\n")
    code, out, err, peak = child(CLI, "predict", "--model", tmp_path / "m.npz",
                                 "--data", tmp_path / "bom.csv", *header)
    assert code == 0, err
    assert len(out.splitlines()) == 3
    assert peak < PEAK_MB
    assert len(tables.read_table(tmp_path / "bom.csv", header=False)) == 3


def test_a_bom_before_a_header_line_still_marks_the_header(tmp_path):
    (tmp_path / "h.csv").write_bytes(b"\xef\xbb\xbfa,b,label\n1,2,0\n3,4,1\n")
    assert tables.read_table(tmp_path / "h.csv").tolist() == [[1, 2, 0], [3, 4, 1]]


# --- only regular files ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pipe.csv", "pipe"])  # a name of no known kind: still a FIFO
def test_a_fifo_as_data_is_refused_without_hanging(tmp_path, name):
    os.mkfifo(tmp_path / name)
    refused(train(tmp_path / name), rf"{name} is a FIFO \(named pipe\), not a regular file",
            timeout=60)


@pytest.mark.parametrize("name", ["zero.csv", "zero.npy", "zero-ubyte"])
def test_dev_zero_as_data_is_refused_by_what_it_is(tmp_path, name):
    (tmp_path / name).symlink_to("/dev/zero")
    args = train(tmp_path / name) + ([] if name.endswith(".csv") else
                                     ["--labels", tmp_path / "zero.csv"])
    (tmp_path / "zero.csv").unlink(missing_ok=True)
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    refused(args, rf"{name} is a character device, not a regular file")


def test_a_folder_as_data_is_named_a_folder(tmp_path):
    (tmp_path / "d.csv").mkdir()
    refused(train(tmp_path / "d.csv"), r"d.csv is a folder, not a regular file")
    sg.MLP([2, 2]).save(tmp_path / "m.npz")
    refused(["predict", "--model", tmp_path / "d.csv", "--data", tmp_path / "m.npz"],
            r"--model .*d.csv is a folder")


# --- text tables: bounded, and errors that say where ----------------------------------------

def test_a_1_gib_single_line_is_refused_at_16_mib(tmp_path):
    path = sparse(tmp_path / "line.csv", b"1,2,", 2**30)
    refused(train(path), r"line.csv, line 1: longer than 16 MiB")


def test_a_long_line_is_refused_with_its_number(tmp_path):
    with open(tmp_path / "long.csv", "wb") as fh:
        fh.write(b"1,2,0\n3,4,1\n" * 5 + b"5," * (tables.MAX_LINE // 2 + 1) + b"0\n1,2,0\n")
    refused(train(tmp_path / "long.csv"), r"long.csv, line 11: longer than 16 MiB")


def test_a_gzip_bomb_table_is_refused_early(tmp_path):
    """2,000 gzip members of 1 MiB of rows each: a 3 MB file that inflates to 2 GiB."""
    member = gzip.compress(b"0,0,1\n" * (2**20 // 6), 9)
    with open(tmp_path / "bomb.csv.gz", "wb") as fh:
        fh.write(member * 2000)
    assert os.path.getsize(tmp_path / "bomb.csv.gz") < 3.5e6
    refused(train(tmp_path / "bomb.csv.gz"), r"bomb.csv.gz: the gzip stream inflates .* over "
            r"100 times: refused as a likely decompression bomb")


def test_a_non_utf8_byte_names_its_line_past_the_first_block(tmp_path):
    rows = b"1.25,2.5,0\n" * 200_000          # 2.2 MB: the bad byte is in the third block
    (tmp_path / "bytes.csv").write_bytes(rows + b"1,\xff,0\n" + rows[:1000])
    refused(train(tmp_path / "bytes.csv"),
            r"bytes.csv, line 200001: byte 0xff at column 3 is not UTF-8")


def test_a_non_finite_value_in_a_table_names_line_and_field(tmp_path):
    (tmp_path / "v.csv").write_text("x,y,label\n1,2,0\n3,4,1\n5,1e999,0\n")
    refused(train(tmp_path / "v.csv"), r"v.csv, line 4: field 2, '1e999', is not a finite")
    for value in ("inf", "-Infinity", "nan"):
        (tmp_path / "v.csv").write_text(f"# values\n1 2 0\n\n3 {value} 1\n")
        with pytest.raises(ValueError, match=rf"v.csv, line 4: field 2, '{value}', is not a "
                                             rf"finite number \(whitespace-separated\)"):
            sg.Dataset.from_file(tmp_path / "v.csv")


def test_a_label_of_5_million_classes_is_refused_before_the_model(tmp_path):
    (tmp_path / "w.csv").write_text("".join(f"{i},{i % 2}\n" for i in range(9)) + "9,4999999\n")
    refused(train(tmp_path / "w.csv", "--loss", "cross_entropy", "--test-data",
                  tmp_path / "w.csv"),
            r"the labels make 5000000 classes \(0 to 4999999\), more than the 10 training rows"
            r".*--loss mse")


def test_table_memory_follows_the_array(tmp_path):
    """Reading 1.2 million numbers (9.6 MB as float64, 13 MB of text) costs about twice the
    array: the blocks, then their concatenation; never a Python object per field."""
    row = b",".join(b"%.6f" % v for v in np.random.default_rng(0).normal(size=12)) + b",1\n"
    (tmp_path / "big.csv").write_bytes(row * 100_000)
    (tmp_path / "small.csv").write_bytes(row * 10)
    read = "from scratchgd.tables import read_table; t = read_table(sys.argv[2])"
    peaks = [child(API, read, tmp_path / name)[3] for name in ("small.csv", "big.csv")]
    array_mb = 100_000 * 13 * 8 / 2**20
    assert peaks[1] - peaks[0] < 3 * array_mb + 8, peaks


# --- arrays: .npy and IDX -------------------------------------------------------------------

def test_an_npy_with_a_negative_size_is_refused(tmp_path):
    (tmp_path / "X.npy").write_bytes(npy_header((20, -3)) + bytes(480))
    np.save(tmp_path / "y.npy", np.zeros(20, int))
    refused(train(tmp_path / "X.npy", "--labels", tmp_path / "y.npy"),
            r"X.npy: the header declares shape \(20, -3\), with a negative size")


def test_forged_huge_npy_shapes_without_mmap(tmp_path):
    """A header that outruns its file is truncated; one that matches a (sparse) 64 GiB file
    needs more memory than this process may use: both refused before a byte of data is read."""
    np.save(tmp_path / "y.npy", np.zeros(10, int))
    (tmp_path / "forged.npy").write_bytes(npy_header((10**9, 10**6)) + bytes(80))
    api_refused("sg.Dataset.from_npy(sys.argv[2], sys.argv[3], mmap=False)".replace(
        "sys.argv[2]", repr(str(tmp_path / "forged.npy"))).replace(
        "sys.argv[3]", repr(str(tmp_path / "y.npy"))),
        r"forged.npy: .npy header says shape \(1000000000, 1000000\) .* truncated")
    head = npy_header((2**33, 1))
    sparse(tmp_path / "huge.npy", head, len(head) + 2**36)
    api_refused(f"sg.Dataset.from_npy({str(tmp_path / 'huge.npy')!r}, "
                f"{str(tmp_path / 'y.npy')!r}, mmap=False)",
                r"huge.npy: shape \(8589934592, 1\) of float64 needs 64 GiB, more than the .* "
                r"GiB of memory this process may use")


def test_npy_of_another_dtype_names_the_file(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((10, 2), complex))
    np.save(tmp_path / "y.npy", np.zeros(10, int))
    refused(train(tmp_path / "X.npy", "--labels", tmp_path / "y.npy"),
            r"X.npy: holds values of dtype complex128, not real numbers")


def test_a_non_finite_npy_value_names_the_file_and_row(tmp_path):
    X = np.ones((30, 3))
    X[17, 2] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(30) % 2)
    refused(train(tmp_path / "X.npy", "--labels", tmp_path / "y.npy"),
            r"X \(.*X.npy\) must be finite, found nan at index \(17, 2\)")


def idx_header(code, shape):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def test_an_idx_gz_is_size_checked_before_its_data_is_read(tmp_path):
    """The header declares 4 billion images of 4096 x 4096: refused before inflating the data
    (or, where that much memory exists, as truncated after its few real bytes)."""
    (tmp_path / "img-ubyte.gz").write_bytes(gzip.compress(idx_header(8, (2**32 - 1, 4096, 4096))
                                                          + bytes(1000)))
    (tmp_path / "lab-ubyte").write_bytes(idx_header(8, (10,)) + bytes(10))
    refused(train(tmp_path / "img-ubyte.gz", "--labels", tmp_path / "lab-ubyte"),
            r"img-ubyte.gz: shape .* needs .* GiB, more than|img-ubyte.gz: .* truncated")


def test_an_idx_gz_bomb_is_refused_early(tmp_path):
    """A header of 800 MB of pixels, and gzip members of zeros that would fill it."""
    member = gzip.compress(bytes(2**20), 9)
    with open(tmp_path / "img-ubyte.gz", "wb") as fh:
        fh.write(gzip.compress(idx_header(8, (10**6, 28, 28))) + member * 800)
    (tmp_path / "lab-ubyte").write_bytes(idx_header(8, (10**6,)) + bytes(10**6))
    refused(train(tmp_path / "img-ubyte.gz", "--labels", tmp_path / "lab-ubyte"),
            r"img-ubyte.gz: the gzip stream inflates .* likely decompression bomb")


def test_an_idx_of_an_unknown_type_names_the_file(tmp_path):
    (tmp_path / "img-ubyte").write_bytes(idx_header(0x0A, (10, 2, 2)) + bytes(40))
    (tmp_path / "lab-ubyte").write_bytes(idx_header(8, (10,)) + bytes(10))
    refused(train(tmp_path / "img-ubyte", "--labels", tmp_path / "lab-ubyte"),
            r"img-ubyte: not an IDX file \(magic number 00 00 0a 03")


def test_a_memory_map_truncated_during_training_ends_with_a_message(tmp_path):
    """The file shrinks after the first span; the check before the next one catches it, where
    reading the map past the file's end would have killed the process (SIGBUS)."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.normal(size=(4000, 8)))
    np.save(tmp_path / "y.npy", np.arange(4000) % 3)
    statement = textwrap.dedent(f"""
        import os
        from scratchgd.hooks import Hook
        class Shrink(Hook):
            def span_steps(self, history, at):
                return 5
            def end_of_span(self, history, at):
                os.truncate({str(tmp_path / 'X.npy')!r}, 50_000)
        data = sg.Dataset.from_npy({str(tmp_path / 'X.npy')!r}, {str(tmp_path / 'y.npy')!r})
        sg.fit(sg.MLP([8, 3]), data, sg.MiniBatchSGD(0.1, batch_size=32), epochs=2,
               progress=False, hooks=[Shrink()])
    """)
    code, _, err, _ = child(API, statement, timeout=120)
    assert code == 0, err   # not -SIGBUS
    assert "OSError: " in err and "X.npy, memory-mapped as X: shrank to 50000 bytes" in err, err


# --- output paths checked before training ---------------------------------------------------

@pytest.mark.parametrize("flag", ["--save", "--checkpoint"])
def test_an_unwritable_output_is_refused_before_training(tmp_path, flag):
    data = labelled(tmp_path)
    (tmp_path / "file").write_text("a regular file, not a folder")
    for path, why in ((tmp_path / "missing" / "m.npz", r"cannot write a file into .*missing"),
                      (tmp_path / "file" / "m.npz", r"Not a directory")):
        code, out, err, _ = child(CLI, *train(data, flag, path))
        assert code == 2 and "epoch" not in out, out
        assert err.startswith(f"scratchgd: error: {flag} {path}") and re.search(
            why, err), err
        assert ".tmp" not in err


def test_ranks_reading_one_file_name_it_alike(tmp_path):
    """Under ``comm`` every rank reads the file and checks its share of rows: the rank that
    finds the NaN names the file and the row, the others name that rank, all raise; a FIFO
    is refused by every rank without blocking."""
    from scratchgd.distributed import checked_in_shares
    from scratchgd.threadcomm import run_threads

    X = np.ones((30, 3))
    X[25, 1] = np.nan   # in rank 2's share of 30 rows on 3 ranks
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(30) % 2)
    os.mkfifo(tmp_path / "pipe.npy")

    def refusal(name, comm):
        try:
            checked_in_shares(lambda share: sg.Dataset.from_file(
                tmp_path / name, tmp_path / "y.npy", share=share), comm)
        except ValueError as exc:
            return str(exc)

    messages = run_threads(3, lambda comm: refusal("X.npy", comm))
    assert re.search(r"X \(.*X.npy\) must be finite, found nan at index \(25, 1\)", messages[2])
    assert all("rank 2 of 3 refused" in m and "X.npy" in m for m in messages[:2]), messages
    messages = run_threads(2, lambda comm: refusal("pipe.npy", comm))
    assert all("pipe.npy is a FIFO" in m for m in messages), messages
