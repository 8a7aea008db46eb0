"""``scratchgd compile``: compile and cache the numba kernels now, not on the first run.

The first ``scratchgd train --backend numba`` of a fresh install (or of a new
Python or numba version) compiles the kernels it needs, several seconds. This
command pays that cost up front, for every combination of argument types the
command line and the documented file formats produce (see
:mod:`scratchgd.precompile`), printing one line per combination.
"""

from __future__ import annotations

import argparse
import time

from .. import precompile


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``compile`` to the sub-parsers ``commands``."""
    parser = commands.add_parser("compile", help="compile and cache the numba backend's kernels "
                                 "ahead of time, so that training runs start warm")
    parser.set_defaults(run=run)
    parser.add_argument("--dtype", choices=(*precompile.DTYPES, "all"), default="all",
                        help="model dtype(s) to compile for (default: all)")
    parser.add_argument("--hidden-layers", type=int, nargs="+", default=[1], metavar="N",
                        help="numbers of hidden layers to compile for (default: 1, as "
                        "`scratchgd train`'s default --hidden 128)")


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd compile``; return the exit status."""
    dtypes = list(precompile.DTYPES) if args.dtype == "all" else [args.dtype]
    todo = precompile.cases(dtypes, args.hidden_layers)
    start = time.perf_counter()
    for i, case in enumerate(todo, 1):
        began = time.perf_counter()
        print(f"[{i}/{len(todo)}] {case} ...", end="", flush=True)
        precompile.compile_case(case)
        print(f" {time.perf_counter() - began:.1f} s", flush=True)
    print(f"compiled {len(todo)} combinations in {time.perf_counter() - start:.1f} s; "
          f"cached in {_cache_dir()}")
    return 0


def _cache_dir() -> str:
    """Where numba stores the kernels: ``__pycache__`` beside them, or under ``NUMBA_CACHE_DIR``."""
    from ..kernels import compiled  # here, not above: every other command would import numba

    cache = getattr(compiled.train_iterations_kernel, "_cache", None)  # None with NUMBA_DISABLE_JIT=1
    return getattr(cache, "cache_path", "nowhere (compilation is disabled)")
