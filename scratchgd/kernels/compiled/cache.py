"""Numba's on-disk cache of this package, dropped when any of its modules changes.

Numba stores each kernel's machine code beside its module (``__pycache__``, or
under ``NUMBA_CACHE_DIR``) and reuses it while that ONE source file keeps its
modification time and size. But a kernel's machine code also holds the kernels
it inlines or calls from the sibling modules
(``span.train_iterations_kernel`` holds ``gather.gather_batch``,
``layers.dense_forward``, ...), so an edit of ``gather.py`` alone would leave
``train_iterations_kernel`` running the old gather. Here one fingerprint of
all the package's sources guards the whole cache: when it
differs from the one stored with the cache, every cached kernel of the package
is deleted, and the next call compiles afresh.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

STAMP = "scratchgd-kernels.sha256"
"""The file, in the package's cache folder, that holds the sources' fingerprint."""


def sources_fingerprint(folder: Path = Path(__file__).parent) -> str:
    """SHA-256 of the package's ``.py`` files, in name order (names included)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_cache(kernel: Any) -> bool:
    """Delete the package's cached kernels if its sources changed since they were cached.

    ``kernel``: any ``@jit`` kernel of the package; its cache folder is the
    package's (``kernel._cache._cache_path``). Returns True if files were
    deleted. Without a cache (``NUMBA_DISABLE_JIT=1``) or in a read-only
    folder it does nothing: numba then compiles in memory anyway, or the files
    are a release's own, whose sources do not change.
    """
    cache = getattr(kernel, "_cache", None)
    if cache is None:
        return False
    folder = Path(cache._cache_path)
    stamp, fingerprint = folder / STAMP, sources_fingerprint()
    try:
        if stamp.read_text(encoding="ascii") == fingerprint:
            return False
    except OSError:
        pass  # no stamp yet: whatever is cached may predate it
    try:
        stale = list(folder.glob("*.nbi")) + list(folder.glob("*.nbc"))
        for path in stale:
            path.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint, encoding="ascii")
    except OSError:
        return False
    return bool(stale)
