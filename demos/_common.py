"""What every demo shares: its command line and the way it prints measurements.

Every demo prints what it measured as ``key: value`` lines, so a reader can
read them and ``tests/test_demos.py`` can parse them.
"""

from __future__ import annotations

import argparse
import os
import pathlib


def parse_args(doc: str | None) -> argparse.Namespace:
    """``--out DIR`` (default ``figures/``, created) and ``--quick`` (small sizes, seconds)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("figures"),
                        help="folder the figures are written to (default: figures/)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes that run in seconds (for tests)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def report(key: str, value: object) -> None:
    """Print one measurement as ``key: value`` (floats with 6 significant digits)."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    print(f"{key}: {text}", flush=True)


def machine() -> str:
    """CPU cores and the 1-minute load average: timings mean little without them."""
    return f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"
