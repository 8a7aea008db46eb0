"""The package's shape holds: layers without import cycles, small modules, a map that is current.

The rules and the import graph are ``docs/make_architecture.py``'s (one copy):
every import counts, at the top of a module or inside a function, except
those under ``if TYPE_CHECKING:`` (they never run). The last tests prove the
checks can fail, on a small package written for them.
"""

import importlib.util
import pathlib
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_make_architecture():
    """``docs/make_architecture.py`` as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_architecture",
                                                  ROOT / "docs" / "make_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = load_make_architecture()


@pytest.fixture(scope="module")
def graph():
    return arch.import_graph()


def test_no_import_cycle(graph):
    assert arch.cycles(graph) == []


def test_every_module_has_a_layer_and_imports_nothing_above_it(graph):
    for name in graph:
        arch.layer_of(name)  # KeyError names a module no layer holds
    assert arch.upward_imports(graph) == []


def test_no_module_over_500_lines():
    assert arch.MAX_LINES == 500
    assert arch.oversized() == {}


def test_the_stored_map_is_the_one_the_imports_draw(graph):
    stored = arch.stored_map(arch.MAP.read_text(encoding="utf-8"))
    assert stored == arch.mermaid(graph), "run python docs/make_architecture.py"


def test_the_graph_sees_the_imports_it_must(graph):
    assert "scratchgd.train" in graph["scratchgd"]                  # from .train import ...
    assert "scratchgd.kernels.reference" in graph["scratchgd.mlp"]  # from .kernels import reference
    assert "scratchgd.kernels" in graph["scratchgd.mlp"]            # from . import kernels
    assert "scratchgd.plots" in graph["scratchgd.cli.train"]        # inside a function
    assert "scratchgd.engines.base" in graph["scratchgd.engines.python"]  # from .base import


def write_package(root, files):
    for name, text in files.items():
        path = root / "scratchgd" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    write_package(tmp_path, {
        "__init__.py": "",
        "data.py": "from . import errors\n",
        "errors.py": "def late():\n    from .data import Dataset\n",
        "mlp.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from .train import fit\n"),
        "train.py": "import scratchgd.mlp\n",
    })
    graph = arch.import_graph(tmp_path)
    assert graph["scratchgd.errors"] == {"scratchgd.data"}
    assert graph["scratchgd.mlp"] == set()  # TYPE_CHECKING only: left out
    assert graph["scratchgd.train"] == {"scratchgd.mlp"}
    assert arch.cycles(graph) == [["scratchgd.data", "scratchgd.errors"]]
    assert arch.upward_imports(graph) == [
        "scratchgd.errors (foundation) -> scratchgd.data (data)"]


def test_a_long_module_and_a_module_without_a_layer_are_found(tmp_path):
    write_package(tmp_path, {"__init__.py": "", "losses.py": "x = 1\n" * 501,
                             "sub/__init__.py": "", "sub/deep.py": "from .. import losses\n"})
    assert arch.oversized(tmp_path) == {"scratchgd.losses": 501}
    graph = arch.import_graph(tmp_path)
    assert graph["scratchgd.sub.deep"] == {"scratchgd.losses"}
    with pytest.raises(KeyError, match="module scratchgd.sub.deep belongs to no layer"):
        arch.upward_imports(graph)


def test_import_leaves_the_compiled_kernels_to_the_models_that_ask_for_them():
    """``import scratchgd`` imports neither numba nor the compiled kernels: a NumPy user waits
    for neither, and a numba model loads them when it is made (``kernels.for_model``)."""
    import subprocess
    import sys

    code = ("import sys, scratchgd; sys.exit(', '.join(m for m in ('numba', "
            "'scratchgd.kernels.compiled') if m in sys.modules) or None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
