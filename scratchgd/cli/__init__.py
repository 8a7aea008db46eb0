"""The command line: ``scratchgd COMMAND`` (also ``python -m scratchgd COMMAND``).

One module per command. Each provides ``add_parser(commands)``, which adds its
sub-parser to the ``argparse`` sub-parsers ``commands`` and sets ``run`` as its
default, and ``run(args) -> int``, which carries the command out and returns the
exit status. :func:`main` parses, dispatches and turns the errors a user can
cause into one line on stderr: 2 for a bad argument or file, 1 for a diverged
run, a failed write or memory that ran out, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import TrainingDiverged
from . import advise, compile, evaluate, playground, predict, train

COMMANDS = (train, predict, evaluate, advise, compile, playground)
"""The command modules, in the order ``scratchgd --help`` lists them."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"scratchgd: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scratchgd`` with every command's sub-parser."""
    parser = Parser(prog="scratchgd", description="Train an MLP by GD, SGD or mini-batch SGD "
                    "and watch epochs, iterations and training steps.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratchgd`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as exc:
        print(f"scratchgd: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a misspelt --data, --labels or --model
        print(f"scratchgd: error: {exc.filename}: no such file", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"scratchgd: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout's reader has gone (scratchgd predict ... | head): done
        # point stdout at /dev/null, or Python's final flush of it fails again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a checkpoint that cannot be written, a disk that is full
        print(f"scratchgd: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:  # what no size check foresaw: still one line
        print("scratchgd: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = " (continue with --resume)" if getattr(args, "checkpoint", None) else ""
        print(f"scratchgd: interrupted{hint}", file=sys.stderr)
        return 130
