"""Text tables of numbers (CSV, TXT, plain or gzipped), read with memory bounded by the result.

A table is read in blocks of about ``BLOCK`` bytes of text. Each block's
lines are cut from the bytes (a line longer than ``MAX_LINE`` is refused with
its number, before more of it is read), decoded as UTF-8 (a byte that is not
UTF-8 is reported by its line and column), stripped of blanks and ``#``
comments, and parsed by NumPy's C reader into a float64 block: no Python
object per field, so memory follows the resulting array (the blocks, then one
concatenation: about twice the array at the end). A gzipped table inflates
with the bound of :class:`scratchgd._files.Inflating`. A UTF-8 byte-order mark
(what spreadsheet programs write as "CSV UTF-8") is dropped before anything
else, so it never hides the first row or its header.

Every error is a ``ValueError`` naming the file, and the line where a line is
at fault: another number of fields than the first row, a field that is not a
number, a value that is not finite (NaN, inf, or beyond float64's range).
"""

from __future__ import annotations

import contextlib
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

Lines = list[tuple[int, str]]
"""``(line number, text)`` of content lines: blanks and ``#`` comments removed, numbers from 1."""


def _decoded(path: Path, data: bytes, first: int) -> list[str]:
    """``data``, whole lines starting at line ``first``, as text; a non-UTF-8 byte names its line."""
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        line = first + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"{path}, line {line}: byte 0x{data[exc.start]:02x} at column {column} "
                         f"is not UTF-8 text (a table must be UTF-8 text, plain or gzipped)"
                         ) from None


def content_blocks(path: str | os.PathLike) -> Iterator[Lines]:
    """The content lines of the text file ``path``, a block of them (possibly empty) at a time.

    A line holding more than blanks and a ``#`` comment is content; line
    numbers count every line, as an editor shows them. A leading byte-order
    mark is dropped.
    """
    path = Path(path)
    number, tail = 0, b""
    with _files.open_data(path) as (stream, _):
        while True:
            chunk = stream.read(BLOCK)
            if chunk:
                data, cut, tail = (tail + chunk).rpartition(b"\n")
                if len(tail) > MAX_LINE:
                    _too_long(path, number + (data.count(b"\n") + 1 if cut else 0) + 1)
                if not cut:
                    continue
            else:
                data, tail = tail, b""
                if not data:
                    return
            lines = _decoded(path, data, number + 1)
            if number == 0 and lines[0].startswith(BOM):
                lines[0] = lines[0][1:]
            block, start = [], number + 1
            for number, line in enumerate(lines, start):
                if len(line) > MAX_LINE:
                    _too_long(path, number)
                text = line.split("#", 1)[0].strip()
                if text:
                    block.append((number, text))
            yield block


def _too_long(path: Path, number: int) -> None:
    raise ValueError(f"{path}, line {number}: longer than {MAX_LINE // 2**20} MiB, the longest "
                     f"line a table may have")


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
    with _files.named_errors(path), contextlib.closing(content_blocks(path)) as blocks:
        try:
            pending: list[Lines] = []   # read before the delimiter and header are decided
            for block in blocks:
                pending.append(block)
                if sum(map(len, pending)) >= 2:
                    break
            first = [line for block in pending for line in block][:2]
            if not first:
                raise ValueError(f"{path}: no rows of numbers (the file is empty, or blank lines "
                                 f"and # comments only)")
            if delimiter is None:
                delimiter = _delimiter_of([text for _, text in first])
            if header is None:
                header = not _numbers(first[0][1], delimiter)
            parts, shape, rows, limit = [], None, 0, _files.memory_limit()
            for block in itertools.chain(pending, blocks):
                if header and block and block[0] == first[0]:
                    block = block[1:]
                if not block:
                    continue
                part = _parse(path, block, delimiter, shape)
                shape = (shape[0] if shape else block[0][0], part.shape[1])
                parts.append(part)
                rows += len(part)
                if 2 * 8 * rows * part.shape[1] > limit:   # the blocks, then their join
                    raise ValueError(f"{path}, line {block[-1][0]}: {rows} rows of "
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


def _parse(path: Path, block: Lines, delimiter: str | None,
           shape: tuple[int, int] | None) -> np.ndarray:
    """The numbers of ``block`` as a float64 array; ``shape``: (first line, width) of the table."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            part = np.loadtxt([text for _, text in block], delimiter=delimiter, ndmin=2,
                              dtype=np.float64, comments=None)
    except ValueError as exc:
        raise ValueError(_first_bad_line(path, block, delimiter, shape)
                         or f"{path}, lines {block[0][0]}-{block[-1][0]}: not a table of "
                            f"numbers: {exc}") from None
    if shape is not None and part.shape[1] != shape[1]:
        raise ValueError(_first_bad_line(path, block, delimiter, shape))
    finite = np.isfinite(part)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        number, text = block[row]
        field = text.split(delimiter)[column].strip()
        raise ValueError(f"{path}, line {number}: field {column + 1}, {field!r}, is not a finite "
                         f"number ({_describe(delimiter)})")
    return part


def _first_bad_line(path: Path, block: Lines, delimiter: str | None,
                    shape: tuple[int, int] | None) -> str | None:
    """What is wrong with the first faulty line of ``block``, or ``None``.

    Faults: another number of fields than the table's first row (``shape``:
    its line and width; the block's first line if ``None``), or a field that is
    not a number. Checked field by field only once the fast reader has failed.
    """
    first, width = shape if shape is not None else (block[0][0], None)
    for number, text in block:
        fields = text.split(delimiter)
        if width is None:
            width = len(fields)
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
