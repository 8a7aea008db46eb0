"""Files from anywhere: open only regular files, and know how much memory this process may use.

Every reader of data, model and checkpoint files opens its path with
:func:`open_regular` (or checks it with :func:`regular_size` first), so a
FIFO, a device such as ``/dev/zero``, a folder or a socket given where a file
belongs is refused with one line saying what the path is. A FIFO is never
opened for that: opening one for reading blocks until a writer appears,
forever if none does.

:func:`memory_limit` is the most memory the process can expect to get: the
smallest of the machine's physical memory, the memory limit of the process's
control group (cgroup v1 or v2, its own and its ancestors') and the address
space left under ``ulimit -v`` (``RLIMIT_AS``). Size checks compare with it
before allocating, so an impossible size is a clear error, not a
``MemoryError`` or a killed process half-way through.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MOUNTINFO = "/proc/self/mountinfo"
"""Where the kernel lists the mounted file systems, the cgroup hierarchies among them."""
CGROUP = "/proc/self/cgroup"
"""Where the kernel lists the process's cgroup in each hierarchy."""
STATM = "/proc/self/statm"
"""The process's memory use in pages; its first field is the address space in use."""
UNKNOWN_MEMORY = 2**40
"""Bytes assumed where physical memory cannot be asked (1 TiB)."""
GZIP_MAGIC = b"\x1f\x8b"
GZIP_RATIO = 100
"""A gzipped data file may inflate to at most this many times the compressed bytes read so far
(plus ``GZIP_ALLOWANCE``); the ratio of a decompression bomb is near 1000."""
GZIP_ALLOWANCE = 2**20
"""Bytes a gzip stream may always inflate to, whatever its ratio (small files)."""
GZIP_STEP = 2**14
"""Compressed bytes handed to the decompressor at a time, so the ratio is checked often."""

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _refuse_irregular(path: str | os.PathLike, mode: int) -> None:
    """Raise ``ValueError`` saying what ``path`` is unless ``mode`` is a regular file's."""
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise ValueError(f"{os.fspath(path)} is {kind}, not a regular file: scratchgd reads data, "
                     f"models and checkpoints from regular files only")


def regular_size(path: str | os.PathLike) -> int:
    """The size in bytes of ``path`` if it is a regular file (a link to one counts); else raise.

    Only ``stat``: nothing is opened, so a FIFO cannot block.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    ValueError
        If ``path`` is a folder, a FIFO, a device or a socket, naming which.
    """
    info = os.stat(path)
    _refuse_irregular(path, info.st_mode)
    return info.st_size


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading bytes, if it is a regular file; else raise as :func:`regular_size`.

    Checked by ``stat`` first, then opened non-blocking and checked again on
    the open descriptor (``fstat``), so a path replaced by a FIFO between the
    two cannot block either; the descriptor is made blocking again for reading.
    """
    regular_size(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        _refuse_irregular(path, os.fstat(fd).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Counted:
    """A file's bytes, handed out ``GZIP_STEP`` at a time and counted."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.count = fh, 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(GZIP_STEP if size < 0 else min(size, GZIP_STEP))
        self.count += len(data)
        return data


class Inflating:
    """A gzip stream read with a bound: ``GZIP_RATIO`` times what was read of the file.

    ``read`` and ``readinto`` as a binary file's; they raise ``ValueError``
    naming the file once the output outgrows the bound, long before a
    decompression bomb fills memory. A genuine file that compresses better
    can be read after decompressing it (``gunzip``).
    """

    def __init__(self, path: str | os.PathLike, fh: BinaryIO) -> None:
        self.path, self.raw = os.fspath(path), _Counted(fh)
        self.stream, self.out = gzip.GzipFile(fileobj=self.raw, mode="rb"), 0

    def read(self, size: int) -> bytes:
        """At most ``min(size, GZIP_ALLOWANCE)`` bytes (fewer only at the end)."""
        return self._counted(self.stream.read(min(size, GZIP_ALLOWANCE)))

    def readinto(self, buffer: memoryview) -> int:
        """Fill at most ``GZIP_ALLOWANCE`` bytes of ``buffer``; the count filled."""
        return self._counted(self.stream.readinto(buffer[:GZIP_ALLOWANCE]))

    def _counted(self, result: bytes | int) -> bytes | int:
        self.out += result if isinstance(result, int) else len(result)
        if self.out > GZIP_RATIO * self.raw.count + GZIP_ALLOWANCE:
            raise ValueError(f"{self.path}: the gzip stream inflates {self.raw.count} bytes to "
                             f"more than {self.out}, over {GZIP_RATIO} times: refused as a "
                             f"likely decompression bomb (decompress a genuine file with gunzip "
                             f"and read that)")
        return result


@contextlib.contextmanager
def open_data(path: str | os.PathLike) -> Iterator[tuple[BinaryIO | Inflating, bool]]:
    """``(stream, gzipped)``: a regular file (:func:`open_regular`) for reading bytes, inflated
    with a bound (:class:`Inflating`) if it starts with gzip's magic bytes ``1f 8b``.

    The content decides, not the name: ``X.csv.gz`` and a compressed file
    without the suffix read alike.
    """
    with open_regular(path) as fh:
        gzipped = fh.read(2) == GZIP_MAGIC
        fh.seek(0)
        yield (Inflating(path, fh) if gzipped else fh), gzipped


@contextlib.contextmanager
def named_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn what a hostile file can raise deep inside a reader into one line naming the file:
    ``MemoryError``, ``OverflowError`` and ``RecursionError`` become a ``ValueError``."""
    try:
        yield
    except MemoryError:
        raise ValueError(f"{os.fspath(path)}: not enough memory to read it") from None
    except (OverflowError, RecursionError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a readable data file ({type(exc).__name__}: "
                         f"{exc})") from None


def physical_memory() -> int:
    """Bytes of physical memory of this machine (``UNKNOWN_MEMORY`` where it cannot be asked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return UNKNOWN_MEMORY


def _read_limit(path: Path) -> int | None:
    """The number in a cgroup limit file, ``None`` if it is missing, unreadable or ``max``."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _cgroup_folders() -> list[tuple[Path, str]]:
    """``(folder, limit file name)`` for the process's memory cgroup and its ancestors.

    The hierarchies mounted here come from ``MOUNTINFO`` (``cgroup2``: limit
    file ``memory.max``; ``cgroup`` with the ``memory`` controller:
    ``memory.limit_in_bytes``), the process's place in each from ``CGROUP``.
    A folder is the mount point joined with the process's cgroup path taken
    relative to the mount's root; its ancestors up to the mount point follow.
    """
    try:
        mounts = Path(MOUNTINFO).read_text(encoding="utf-8", errors="replace").splitlines()
        groups = Path(CGROUP).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    v2, v1 = None, None
    for line in groups:
        number, controllers, where = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and controllers == "":
            v2 = where
        elif "memory" in controllers.split(","):
            v1 = where
    folders = []
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        fields, tail = fields.split(), tail.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point, fstype = fields[3], fields[4], tail[0]
        if fstype == "cgroup2" and v2 is not None:
            where, name = v2, "memory.max"
        elif fstype == "cgroup" and v1 is not None and "memory" in tail[2].split(","):
            where, name = v1, "memory.limit_in_bytes"
        else:
            continue
        inside = where == root or where.startswith(root.rstrip("/") + "/")
        relative = os.path.relpath(where, root) if inside else "."
        folder = Path(os.path.normpath(Path(point) / relative))
        while True:
            folders.append((folder, name))
            if folder == Path(point) or Path(point) not in folder.parents:
                break
            folder = folder.parent
    return folders


def cgroup_limit() -> int | None:
    """The smallest memory limit of the process's cgroups (v1 or v2, own and ancestors), if any."""
    limits = [limit for folder, name in _cgroup_folders()
              if (limit := _read_limit(folder / name)) is not None]
    return min(limits, default=None)


def address_space_left() -> int | None:
    """Bytes of address space left under ``RLIMIT_AS`` (``ulimit -v``), ``None`` if unlimited."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = int(Path(STATM).read_text(encoding="ascii").split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        used = 0
    return max(0, soft - used)


def memory_limit() -> int:
    """Bytes this process may use at most: the smallest of physical memory, the cgroup limit
    (:func:`cgroup_limit`) and the address space left (:func:`address_space_left`)."""
    limits = (physical_memory(), cgroup_limit(), address_space_left())
    return min(limit for limit in limits if limit is not None)
