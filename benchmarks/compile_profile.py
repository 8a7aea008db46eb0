"""Where a cold start of the numba backend goes: every compilation, its signature, its seconds.

Runs a ``scratchgd`` command in this process with numba's cache pointed at an empty
folder (so every kernel the command needs is compiled, as right after installing) and
records numba's ``"numba:compile"`` events: one per function and type signature that
had to be compiled. A kernel compiled while compiling its caller nests inside the
caller's event; "own s" subtracts those nested compilations, so the "own s" column adds
up to the total compile time.

    python benchmarks/compile_profile.py                # scratchgd train --backend numba --epochs 1
    python benchmarks/compile_profile.py -- train --backend numba --epochs 1 --dtype float32
    python benchmarks/compile_profile.py --by-function  # one line per function
    python benchmarks/compile_profile.py --warm         # run the command twice, profile the second
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="scratchgd-numba-cache-")  # before numba
START = time.perf_counter()
import numba.core.event as ev  # noqa: E402

from scratchgd.cli import main as scratchgd  # noqa: E402

IMPORTED = time.perf_counter() - START
DEFAULT = ["train", "--backend", "numba", "--epochs", "1", "--no-progress"]


def _short(arg: object) -> str:
    """A type as the table shows it: ``float32[:, ::1]`` -> ``f32 2d C``, tuples shortened."""
    text = str(arg)
    for long, short in (("float64", "f64"), ("float32", "f32"), ("int64", "i64"),
                        ("uint8", "u8"), ("readonly ", "ro "), ("array(", "("),
                        ("UniTuple(", "tuple("), ("reflected list(", "list(")):
        text = text.replace(long, short)
    return text if len(text) <= 60 else text[:57] + "..."


class Profile(ev.Listener):
    """A ``numba:compile`` listener: inclusive and own seconds of every compilation."""

    def __init__(self) -> None:
        self.stack: list[list] = []  # [name, signature, start, seconds of nested compiles]
        self.rows: list[tuple[str, str, float, float]] = []

    def on_start(self, event: ev.Event) -> None:
        data = event.data
        name = data["dispatcher"].py_func.__qualname__
        signature = ", ".join(_short(a) for a in data["args"])
        self.stack.append([name, signature, time.perf_counter(), 0.0])

    def on_end(self, event: ev.Event) -> None:
        name, signature, start, nested = self.stack.pop()
        seconds = time.perf_counter() - start
        if self.stack:
            self.stack[-1][3] += seconds
        self.rows.append((name, signature, seconds, seconds - nested))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", action="store_true",
                        help="run the command once first (compiling and caching), profile the second")
    parser.add_argument("--by-function", action="store_true",
                        help="one line per function (all its signatures together)")
    parser.add_argument("command", nargs="*", default=DEFAULT,
                        help="the scratchgd command (after --); default: " + " ".join(DEFAULT))
    args = parser.parse_args(argv)
    if args.warm:
        with contextlib.redirect_stdout(io.StringIO()):
            scratchgd(args.command)
    profile = Profile()
    ev.register("numba:compile", profile)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = scratchgd(args.command)
    wall = time.perf_counter() - start
    ev.unregister("numba:compile", profile)
    rows = profile.rows
    if args.by_function:
        names = {}
        for name, _, inclusive, own in rows:
            count, inc, own_sum = names.get(name, (0, 0.0, 0.0))
            names[name] = (count + 1, inc + inclusive, own_sum + own)
        rows = [(name, f"{count} signature(s)", inc, own)
                for name, (count, inc, own) in names.items()]
    print(f"scratchgd {' '.join(args.command)}  (exit {status}; NUMBA_CACHE_DIR empty"
          f"{', second run' if args.warm else ''})")
    print(f"{'function':<26} {'signature':<62} {'incl s':>7} {'own s':>7}")
    for name, signature, inclusive, own in sorted(rows, key=lambda r: -r[3]):
        print(f"{name:<26} {signature:<62} {inclusive:7.2f} {own:7.2f}")
    total = sum(r[3] for r in rows)
    print(f"{len(profile.rows)} compilations, {total:.2f} s compiling; command {wall:.2f} s; "
          f"importing scratchgd and numba {IMPORTED:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
