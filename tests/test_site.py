"""Docstrings teach: fit's fits a screen, none holds a timing, the examples and the README run.

A timing goes stale where it is written; the pages of docs/ hold the measurements, with their
command, machine and date. The site itself is built by .ci/run (``python -m sphinx -b html -n
-W docs docs/_build/html``, the ``docs`` extra); these tests need only the library.
"""

import ast
import doctest
import inspect
import pathlib
import re

import numpy as np
import pytest

import scratchgd as sg

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMING = re.compile(r"(?<![\w.^*/-])\d+(?:\.\d+)?(?: ?(?:s|ms|us|µs)|x)(?![\w^])|x[- ]faster")
"""A number followed by s, ms, us or x (``3.2 ms``, ``1.6x``), or "x faster"; ``sin(3 x)`` is not."""


def docstrings() -> list[tuple[str, str]]:
    """Every docstring of the package (modules, classes, functions, attributes) with its place."""
    found = []
    for path in sorted((ROOT / "scratchgd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            body = getattr(node, "body", None)
            for stmt in body if isinstance(body, list) else []:
                if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                        and isinstance(stmt.value.value, str)):
                    found.append((f"{path.relative_to(ROOT)}:{stmt.lineno}", stmt.value.value))
    return found


def test_no_timings_in_docstrings():
    assert len(docstrings()) > 300        # the walk still finds the docstrings
    timed = [f"{place}: {match.group()!r}" for place, text in docstrings()
             for match in TIMING.finditer(text)]
    assert not timed, f"timings belong on a docs page, not in a docstring: {timed}"


@pytest.mark.parametrize("text, timed", [("takes 3.2 ms", True), ("1.6x faster", True),
                                         ("about 4 s each", True), ("48 us", True),
                                         ("sin(3 x)", False), ("2**22 rows", False),
                                         ("1e-12 in float64", False), ("P = 2 ranks", False)])
def test_timing_pattern(text, timed):
    assert bool(TIMING.search(text)) == timed


def test_fit_docstring_fits_a_screen():
    assert len(inspect.getdoc(sg.fit).splitlines()) <= 45


FIRST_NAMES = [sg.fit, sg.MLP, sg.Dataset, sg.DataLoader, sg.GD, sg.SGD, sg.MiniBatchSGD,
               sg.evaluate, sg.gradient_check]
"""The names a learner calls first: each docstring shows itself at work (its Examples)."""


@pytest.mark.parametrize("obj", FIRST_NAMES, ids=lambda obj: obj.__name__)
def test_examples_run(obj):
    """The Examples of the docstring, as doctests, with ``sg`` and ``np`` imported."""
    assert "Examples\n--------" in inspect.getdoc(obj)
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder(recurse=False).find(obj, obj.__name__,
                                                          globs={"sg": sg, "np": np}):
        runner.run(test)
    assert runner.tries >= 2 and runner.failures == 0


def test_readme_python_block_gives_its_numbers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "# 20, 900, 900, 28740" in block
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    hist = namespace["hist"]
    assert (hist.epochs, hist.iterations, hist.steps, hist.samples_seen) == (20, 900, 900, 28740)
