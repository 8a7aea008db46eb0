"""Draw the map of docs/architecture.md from scratchgd's own imports.

``python docs/make_architecture.py`` rewrites the Mermaid graph between the
markers of ``docs/architecture.md``; ``--check`` only says whether it is stale.
``tests/test_architecture.py`` holds the package to the same rules with the
same code (this file is the one copy): no import cycle, no module importing
from a higher layer than its own, no module over ``MAX_LINES`` lines, and a
stored map equal to the one the imports draw.

An import counts wherever it is written: at the top of a module or inside a
function (a deferred import is still a dependency). Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "scratchgd"
MAP = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- map: begin -->", "<!-- map: end -->"
MAX_LINES = 500
"""The most lines a module of the package may have."""

LAYERS = [
    ("foundation", ("errors", "_files", "_checks", "_arrays", "_registry", "activations", "losses",
                    "tables", "io", "scaling", "npzfile", "kernels", "threadcomm", "distributed")),
    ("data", ("data", "datasets")),
    ("model", ("mlp", "optim", "memory", "noise", "gradcheck")),
    ("files", ("checkpoint", "checkpoint_rules", "modelfile")),
    ("training", ("history", "engines", "plan", "hooks", "train")),
    ("apps", ("metrics", "plots", "estimators", "toy", "precompile", "playground", "cli",
              "__main__", PACKAGE)),
]
"""The layers, lowest first, and the top-level modules or subpackages each holds.

A module imports only from its own layer or a lower one (``scratchgd`` itself,
the package's ``__init__``, sits on top: it gathers the public names)."""


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that module ``name`` (at ``path``) imports, anywhere in it.

    ``from M import x`` imports the module ``M.x`` if there is one, else ``M``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: the package's modules it imports}`` for every module of the package."""
    known = modules(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of two or more modules.

    Tarjan's algorithm; each cycle sorted, the list sorted.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_of(name: str) -> int:
    """The index in ``LAYERS`` of the layer holding module ``name``.

    Raises ``KeyError`` naming a module that no layer holds.
    """
    top = name.split(".")[1] if "." in name else name
    for number, (_, members) in enumerate(LAYERS):
        if top in members:
            return number
    raise KeyError(f"module {name} belongs to no layer: add it to LAYERS in "
                   f"docs/make_architecture.py")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer than the importer's, as ``'a -> b'``."""
    return [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
            for a in sorted(graph) for b in sorted(graph[a]) if layer_of(b) > layer_of(a)]


def oversized(root: Path = ROOT) -> dict[str, int]:
    """The modules over ``MAX_LINES`` lines, with their line counts."""
    lines = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in modules(root).items()}
    return {name: count for name, count in lines.items() if count > MAX_LINES}


def _node(name: str) -> str:
    """The node a module is drawn as: a subpackage is one node, the package is ``__init__``."""
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def mermaid(graph: dict[str, set[str]]) -> str:
    """The layers as a Mermaid flowchart: one box per layer, an arrow for each import.

    Subpackages are drawn as one node. An arrow ``a --> b`` (a imports b) is
    left out when a path of other arrows already leads from a to b (the
    transitive reduction), so the picture shows the structure, not every edge.
    """
    edges: dict[str, set[str]] = {}
    for a, targets in graph.items():
        edges.setdefault(_node(a), set()).update(_node(b) for b in targets if _node(b) != _node(a))

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            v = todo.pop()
            for w in edges.get(v, ()):
                if (v, w) != skip and w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen

    lines = ["```mermaid", "flowchart BT"]
    for number, (title, _) in reversed(list(enumerate(LAYERS))):
        nodes = sorted(n for n in edges if layer_of(_full(n)) == number)
        lines.append(f'  subgraph L{number}["L{number} {title}"]')
        lines += [f'    {_id(n)}["{n}"]' for n in nodes]
        lines.append("  end")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if b not in reachable(a, (a, b)):
                lines.append(f"  {_id(a)} --> {_id(b)}")
    lines.append("```")
    return "\n".join(lines)


def _full(node: str) -> str:
    return PACKAGE if node == "__init__" else f"{PACKAGE}.{node}"


def _id(node: str) -> str:
    return node.strip("_") + "_" if node.startswith("_") else node


def stored_map(text: str) -> str:
    """The part of ``text`` (architecture.md) between the map's markers."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> int:
    """Rewrite the map in docs/architecture.md (``--check``: exit 1 if it is stale instead)."""
    text = MAP.read_text(encoding="utf-8")
    drawn = mermaid(import_graph())
    if stored_map(text) == drawn:
        return 0
    if "--check" in argv:
        print(f"{MAP} is stale: run python docs/make_architecture.py")
        return 1
    before, rest = text.split(BEGIN, 1)
    MAP.write_text(f"{before}{BEGIN}\n{drawn}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    print(f"wrote the map of {len(drawn.splitlines())} lines into {MAP}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
