"""Text tables of numbers (CSV, TXT, plain or gzipped), read with memory bounded by the result.

A table is read in blocks of about ``BLOCK`` bytes of text, whole lines each:
a line longer than ``MAX_LINE`` is refused with its number before more of it
is read; the block is decoded as UTF-8 (a byte that is not UTF-8 is reported
by its line and column) and parsed by NumPy's C reader (``np.loadtxt``, which
skips blank lines and ``#`` comments itself) into a float64 block. No Python
object is made per field, nor per line unless a line is at fault, so memory
follows the resulting array (the blocks, then one concatenation: about twice
the array at the end). A gzipped table inflates with the bound of
:class:`scratchgd._files.Inflating`. A UTF-8 byte-order mark (what
spreadsheet programs write as "CSV UTF-8") is dropped before anything else,
so it never hides the first row or its header.

Every error is a ``ValueError`` naming the file, and the line where a line is
at fault: another number of fields than the first row, a field that is not a
number, a value that is not finite (NaN, inf, or beyond float64's range).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import _files

MAX_LINE = 16 * 2**20
"""The longest line a table may have, in bytes (16 MiB: a row of about a million numbers)."""
BLOCK = 2**20
"""Bytes of text read and parsed at a time."""
BOM = "\ufeff"

Block = tuple[int, str]
"""Whole lines of a table: the number of the first (counting from 1) and their text."""


def _decoded(path: Path, data: bytes, first: int) -> str:
    """``data``, whole lines starting at line ``first``, as text; a non-UTF-8 byte names its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"{path}, line {line}: byte 0x{data[exc.start]:02x} at column {column} "
                         f"is not UTF-8 text (a table must be UTF-8 text, plain or gzipped)"
                         ) from None


def text_blocks(path: str | os.PathLike) -> Iterator[Block]:
    """The text file ``path`` as blocks of whole lines, without a leading byte-order mark."""
    path = Path(path)
    number, tail = 1, b""
    with _files.open_data(path) as (stream, _):
        while True:
            chunk = stream.read(BLOCK)
            if chunk:
                data, cut, tail = (tail + chunk).rpartition(b"\n")
                if len(tail) > MAX_LINE:
                    _too_long(path, number + (data.count(b"\n") + 1 if cut else 0))
                if not cut:
                    continue
            else:
                data, tail = tail, b""
                if not data:
                    return
            if len(data) > MAX_LINE:   # a long line carried over may end in this chunk
                for offset, line in enumerate(data.split(b"\n")):
                    if len(line) > MAX_LINE:
                        _too_long(path, number + offset)
            text = _decoded(path, data, number)
            if number == 1 and text.startswith(BOM):
                text = text[1:]
            yield number, text
            number += data.count(b"\n") + 1


def _too_long(path: Path, number: int) -> None:
    raise ValueError(f"{path}, line {number}: longer than {MAX_LINE // 2**20} MiB, the longest "
                     f"line a table may have")


def content_lines(block: Block) -> Iterator[tuple[int, str]]:
    """``(line number, content)`` of each line of ``block`` holding more than blanks and a
    ``#`` comment; numbers count every line, as an editor shows them."""
    number, text = block
    start = 0
    while True:
        end = text.find("\n", start)
        content = text[start:None if end < 0 else end].split("#", 1)[0].strip()
        if content:
            yield number, content
        if end < 0:
            return
        number, start = number + 1, end + 1


def _after_line(block: Block, line: int) -> Block:
    """The lines of ``block`` after line number ``line``."""
    number, text = block
    start = 0
    while number <= line and start >= 0:
        start = text.find("\n", start) + 1 or -1
        number += 1
    return number, text[start:] if start >= 0 else ""


def _numbers(line: str, delimiter: str | None) -> bool:
    """True if every field of ``line`` (split at ``delimiter``; at blanks for ``None``) is a number."""
    try:
        [float(field) for field in line.split(delimiter)]
    except ValueError:
        return False
    return True


def _delimiter_of(lines: list[str]) -> str | None:
    """The delimiter of a table whose first content lines are ``lines``: ``","`` or ``None`` (blanks).

    The first line whose fields are all numbers when split at commas (and
    holding one) decides ``","``; one that is all numbers split at blanks decides
    ``None``. A header line (not all numbers either way) leaves the decision to
    the next line; if no line decides, a comma anywhere means ``","``.
    """
    for line in lines:
        if "," in line and _numbers(line, ","):
            return ","
        if _numbers(line, None):
            return None
    return "," if any("," in line for line in lines) else None


def _describe(delimiter: str | None) -> str:
    return {",": "comma-separated", None: "whitespace-separated"}.get(delimiter,
                                                                       f"delimiter {delimiter!r}")


def read_table(path: str | os.PathLike, header: bool | None = None,
               delimiter: str | None = None) -> np.ndarray:
    """Every column of a text file of numbers, ``(n, columns)`` float64, in memory.

    The file may be gzipped (by its content). Blank lines and ``#`` comments
    are skipped. ``delimiter``: ``None`` detects it, a comma if the first line
    of numbers is comma-separated, else runs of blanks (spaces or tabs); any
    other one-character string is used as given. ``header``: ``True`` skips
    the first line that is not blank or a comment, ``False`` reads it as data,
    ``None`` skips it only if one of its fields is not a number.

    Raises
    ------
    ValueError
        Naming the file, and the line where one is at fault (see the module's
        notes); a file without a row of numbers, one that is not gzip or UTF-8
        text, one whose array would not fit in memory, or a path that is not a
        regular file. A missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    with _files.named_errors(path), contextlib.closing(text_blocks(path)) as blocks:
        try:
            pending, first = [], []   # blocks read before the delimiter and header are decided
            for block in blocks:
                pending.append(block)
                first += itertools.islice(content_lines(block), 2 - len(first))
                if len(first) == 2:
                    break
            if not first:
                raise ValueError(f"{path}: no rows of numbers (the file is empty, or blank lines "
                                 f"and # comments only)")
            if delimiter is None:
                delimiter = _delimiter_of([text for _, text in first])
            if header is None:
                header = not _numbers(first[0][1], delimiter)
            parts, shape, rows, limit = [], None, 0, _files.memory_limit()
            for block in itertools.chain(pending, blocks):
                if header and block[0] <= first[0][0]:
                    block = _after_line(block, first[0][0])
                part = _parse(path, block, delimiter, shape)
                if not len(part):
                    continue
                shape = shape or (next(content_lines(block))[0], part.shape[1])
                parts.append(part)
                rows += len(part)
                if 2 * 8 * rows * part.shape[1] > limit:   # the blocks, then their join
                    raise ValueError(f"{path}, line {block[0]}: {rows} rows of "
                                     f"{part.shape[1]} numbers so far, more than the "
                                     f"{limit / 2**30:.3g} GiB of memory this process may use "
                                     f"can read (save it as .npy to read it memory-mapped)")
        except (OSError, EOFError) as exc:   # gzip.BadGzipFile is an OSError
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a readable text table (plain or gzipped UTF-8 text): "
                             f"{exc}") from None
        if not parts:
            raise ValueError(f"{path}: no rows of numbers after the header line {first[0][0]}")
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _parse(path: Path, block: Block, delimiter: str | None,
           shape: tuple[int, int] | None) -> np.ndarray:
    """The numbers of ``block`` as a float64 array; ``shape``: (first line, width) of the table.

    Parsed in C; the lines are looked at one by one only to say which is at fault.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "input contained no data"
            part = np.loadtxt(io.StringIO(block[1]), delimiter=delimiter, ndmin=2,
                              dtype=np.float64, comments="#")
    except ValueError as exc:
        raise ValueError(_first_bad_line(path, block, delimiter, shape)
                         or f"{path}, lines from {block[0]}: not a table of numbers: "
                            f"{exc}") from None
    if len(part) and shape is not None and part.shape[1] != shape[1]:
        raise ValueError(_first_bad_line(path, block, delimiter, shape))
    finite = np.isfinite(part)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        number, text = next(itertools.islice(content_lines(block), row, None))
        field = text.split(delimiter)[column].strip()
        raise ValueError(f"{path}, line {number}: field {column + 1}, {field!r}, is not a finite "
                         f"number ({_describe(delimiter)})")
    return part


def _first_bad_line(path: Path, block: Block, delimiter: str | None,
                    shape: tuple[int, int] | None) -> str | None:
    """What is wrong with the first faulty line of ``block``, or ``None``.

    Faults: another number of fields than the table's first row (``shape``:
    its line and width; the block's first line if ``None``), or a field that is
    not a number. Checked field by field only once the fast reader has failed.
    """
    first, width = shape if shape is not None else (None, None)
    for number, text in content_lines(block):
        fields = text.split(delimiter)
        if width is None:
            first, width = number, len(fields)
        elif len(fields) != width:
            return (f"{path}, line {number}: {len(fields)} field"
                    f"{'s' * (len(fields) != 1)}, but line {first} has {width} "
                    f"({_describe(delimiter)})")
        for column, field in enumerate(fields, 1):
            try:
                float(field)
            except ValueError:
                return (f"{path}, line {number}: field {column}, {field.strip()!r}, is not a "
                        f"number ({_describe(delimiter)})")
    return None
