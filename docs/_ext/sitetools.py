"""What scratchgd's site needs beyond Sphinx, numpydoc and MyST, with nothing fetched.

- **The API pages** (``api/index.rst``, written at each build): one section per layer of
  ``docs/make_architecture.py``'s ``LAYERS``, one per module within it, each listing its
  public names (the module's ``__all__``, or the names of ``scratchgd.__all__`` it defines)
  for autosummary, which writes one page per name. A name the package re-exports is
  documented under ``scratchgd.NAME``, the path a reader calls it by.
- **Math as MathML**: ``:math:`` and ``.. math::`` are converted at build time by
  latex2mathml; browsers render MathML natively, so no script (MathJax) is loaded.
- **The architecture map** (the `````mermaid`` fence of ``architecture.md``, which a code
  host draws itself) is drawn here as inline SVG from the fence's own text.
- **References by the name a module knows**: a docstring of ``scratchgd.data`` writes
  ``:class:`Dataset``` and means the object documented as ``scratchgd.Dataset``; a reference
  that Sphinx cannot find is looked up as Python would (in the referring module, then in
  the package) and sent to the page of the object it names; one naming an object without
  a page (a private helper) is shown as code, unlinked. One that names nothing stays
  unresolved and fails the build.
- **Links to repository files the site holds as pages** (``CONTRIBUTING.md``,
  ``CHANGELOG.md``) go to those pages instead of downloading the Markdown file.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from latex2mathml.converter import convert
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))          # make_architecture: the layers and the package's modules
API = DOCS / "api"
SUBMODULES = ("kernels.reference", "engines", "hooks", "data", "optim", "losses", "noise",
              "memory", "distributed", "estimators", "datasets")
"""The modules a reader is sent to: each has an ``__all__``, and its names come first."""
SKIPPED = ("scratchgd.cli", "scratchgd.__main__", "scratchgd.kernels.compiled")
"""Modules without pages: the command line (the README documents it) and the compiled
kernels (Numba dispatchers, which autodoc does not document; their Python twins are
``scratchgd.kernels.reference``'s)."""
RESULTS = ROOT / "benchmarks" / "results"
RECORDS = DOCS / "records"
PAGES = {ROOT / "README.md": "index", ROOT / "CONTRIBUTING.md": "contributing",
         ROOT / "CHANGELOG.md": "changelog", RESULTS / "README.md": "records/index"}
"""Repository files outside ``docs/`` that the site shows as pages (and the benchmark records)."""


# -- the API pages --------------------------------------------------------------------------

def _heading(text: str, mark: str) -> list[str]:
    return [text, mark * len(text), ""]


def documented_modules() -> list[str]:
    """The package's modules a page describes: all but the private ones and the CLI's."""
    from make_architecture import modules

    return [name for name in modules() if not any(part.startswith("_") for part in
            name.split(".")) and not name.startswith(SKIPPED)]


def _public_names(module: object) -> list[str]:
    """A module's ``__all__``, or else the functions and classes it defines and its constants
    with a docstring (``NAME = ...`` then a string), private ones aside."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    documented = {name for (scope, name) in
                  ModuleAnalyzer.for_module(module.__name__).find_attr_docs() if not scope}
    return [name for name, obj in vars(module).items() if not name.startswith("_")
            and ((inspect.isfunction(obj) or inspect.isclass(obj))
                 and obj.__module__ == module.__name__
                 or name in documented and not isinstance(obj, types.GenericAlias))]


def api_sections() -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """``[(layer title, [(module, [documented names])])]``, layers from the top down.

    A module's names are its ``__all__`` (every module :data:`SUBMODULES` names has one)
    and the names of ``scratchgd.__all__`` it defines; one the package re-exports is
    listed under ``scratchgd.NAME``.
    """
    from make_architecture import LAYERS, layer_of

    import scratchgd

    public = {name: obj for name in scratchgd.__all__
              if not inspect.ismodule(obj := getattr(scratchgd, name))}
    by_module: dict[str, list[str]] = {name: [] for name in documented_modules()}
    seen = {id(obj) for obj in public.values()}
    for name, obj in public.items():
        by_module[obj.__module__].append(f"scratchgd.{name}")
    first = [f"scratchgd.{short}" for short in SUBMODULES]
    for module_name in sorted(by_module, key=lambda m: (m not in first, m)):
        if module_name == "scratchgd":
            continue
        module = importlib.import_module(module_name)
        assert module_name not in first or hasattr(module, "__all__"), module_name
        for name in _public_names(module):
            obj = getattr(module, name)
            top = next((t for t, o in public.items() if o is obj), None)
            if top and f"scratchgd.{top}" not in by_module[module_name]:
                by_module[module_name].append(f"scratchgd.{top}")
            elif not top and (id(obj) not in seen or isinstance(obj, (int, str, dict, tuple))):
                seen.add(id(obj))
                by_module[module_name].append(f"{module_name}.{name}")
    sections = []
    for number, (title, _) in reversed(list(enumerate(LAYERS))):
        modules = sorted(m for m in by_module if layer_of(m) == number)
        if modules:
            sections.append((f"L{number} {title}", [(m, by_module[m]) for m in modules]))
    return sections


def _write(page: Path, lines: list[str]) -> None:
    """``page`` with ``lines``, left untouched when equal (so Sphinx rereads nothing)."""
    text = "\n".join([".. Written by docs/_ext/sitetools.py at each build; do not edit.", "",
                      *lines])
    if not page.exists() or page.read_text(encoding="utf-8") != text:
        page.write_text(text, encoding="utf-8")


def write_api(app: Sphinx, config: object = None) -> None:
    """Write the API pages: ``api/index.rst`` (the modules by layer) and one page per module.

    A module's page is its docstring and the table of its names, each of which autosummary
    gives a page of its own (``api/generated/``).
    """
    API.mkdir(exist_ok=True)
    index = [*_heading("API reference", "="),
             "Every public name of scratchgd, one page each, from its docstring, grouped by",
             "module and by the layers of :doc:`../architecture` (the lowest layer last). Each",
             "page links to its highlighted source. The names a learner calls first are in",
             ":mod:`scratchgd` itself: :func:`scratchgd.fit`, :class:`scratchgd.MLP`,",
             ":class:`scratchgd.DataLoader`.", ""]
    for layer, modules in api_sections():
        index += [*_heading(layer, "-"), ".. autosummary::", ""]
        index += [f"   {module}" for module, _ in modules]
        index += ["", ".. toctree::", "   :hidden:", ""]
        index += [f"   {module}" for module, _ in modules]
        index.append("")
        for module, names in modules:
            page = [*_heading(module, "="), f".. automodule:: {module}", "   :no-members:", ""]
            if names:
                page += [*_heading("Names", "-"), ".. currentmodule:: scratchgd", "",
                         ".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
                page += [f"   {name.removeprefix('scratchgd.')}" for name in names]
                page.append("")
            _write(API / f"{module}.rst", page)
    _write(API / "index.rst", index)


# -- math as MathML -------------------------------------------------------------------------

def _mathml(latex: str, display: str) -> str:
    return convert(latex.strip(), display=display)


def visit_math(self, node: nodes.Element) -> None:
    self.body.append(f'<span class="math">{_mathml(node.astext(), "inline")}</span>')
    raise nodes.SkipNode


def visit_math_block(self, node: nodes.Element) -> None:
    equations = [part for part in re.split(r"\n\s*\n", node.astext()) if part.strip()]
    self.body.append('<div class="math">')
    self.body += [_mathml(eq, "block") for eq in equations]
    self.body.append("</div>")
    raise nodes.SkipNode


# -- the architecture map as SVG ------------------------------------------------------------

SUBGRAPH = re.compile(r'^\s*subgraph\s+(\w+)\["(.*)"\]\s*$')
NODE = re.compile(r'^\s*(\w+)\["(.*)"\]\s*$')
EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$")


def parse_flowchart(text: str) -> tuple[list[tuple[str, list[str]]], dict[str, str],
                                       list[tuple[str, str]]]:
    """The layers ``[(title, [node ids])]`` (top first), labels and edges of a flowchart."""
    layers: list[tuple[str, list[str]]] = []
    labels: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in text.splitlines():
        if match := SUBGRAPH.match(line):
            layers.append((match.group(2), []))
        elif match := NODE.match(line):
            labels[match.group(1)] = match.group(2)
            layers[-1][1].append(match.group(1))
        elif match := EDGE.match(line):
            edges.append((match.group(1), match.group(2)))
    return layers, labels, edges


def _order(layers: list[list[str]], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Each layer's nodes reordered by the mean position of their neighbours (fewer crossings)."""
    order = [list(nodes_) for nodes_ in layers]
    neighbours: dict[str, set[str]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    for _ in range(4):
        place = {n: (i + 0.5) / len(row) for row in order for i, n in enumerate(row)}
        for row in order:
            row.sort(key=lambda n: sum(place[m] for m in neighbours.get(n, {n}))
                     / len(neighbours.get(n, {n})))
    return order


def _rows(nodes_: list[str], labels: dict[str, str], width: float) -> list[list[str]]:
    """A layer's nodes cut into rows that each fit ``width`` (in order)."""
    rows: list[list[str]] = [[]]
    used = 0.0
    for node in nodes_:
        w = _box_width(labels[node]) + 14
        if rows[-1] and used + w > width:
            rows.append([])
            used = 0.0
        rows[-1].append(node)
        used += w
    return rows


def _box_width(label: str) -> float:
    return 14 + 7.8 * len(label)


def flowchart_svg(text: str) -> str:
    """The flowchart as an SVG: layers as bands, top layer first; an arrow per edge.

    A layer whose boxes do not fit one line takes two (or more), the band growing to hold them.
    """
    layers, labels, edges = parse_flowchart(text)
    ordered = _order([ids for _, ids in layers], edges)
    width, line, box_h, margin, pad = 900, 44, 26, 110, 14
    xy: dict[str, tuple[float, float, float]] = {}
    parts = []
    top = 10.0
    for (title, _), row in zip(layers, ordered, strict=True):
        lines = _rows(row, labels, width - margin - 20)
        band = pad * 2 + line * len(lines) - (line - box_h)
        parts.append(f'<rect class="band" x="4" y="{top:.0f}" width="{width - 8}" '
                     f'height="{band:.0f}" rx="6"/>')
        parts.append(f'<text class="layer" x="14" y="{top + band / 2:.0f}">'
                     f"{html.escape(title)}</text>")
        for number, nodes_ in enumerate(lines):
            step = (width - margin - 20) / len(nodes_)
            cy = top + pad + box_h / 2 + number * line
            for i, node in enumerate(nodes_):
                xy[node] = (margin + step * (i + 0.5), cy, _box_width(labels[node]))
        top += band + 12
    for a, b in edges:
        (x1, y1, _), (x2, y2, _) = xy[a], xy[b]
        y1, y2 = y1 + box_h / 2, y2 - box_h / 2
        bend = (y2 - y1) / 2
        parts.append(f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{x1:.0f},{y1 + bend:.0f} '
                     f'{x2:.0f},{y2 - bend:.0f} {x2:.0f},{y2 - 2:.0f}" '
                     f'marker-end="url(#arrow)"/>')
    for node, (cx, cy, w) in xy.items():
        parts.append(f'<rect class="module" x="{cx - w / 2:.0f}" y="{cy - box_h / 2:.0f}" '
                     f'width="{w:.0f}" height="{box_h}" rx="4"/>')
        parts.append(f'<text class="module" x="{cx:.0f}" y="{cy + 4.5:.0f}">'
                     f"{html.escape(labels[node])}</text>")
    return (f'<svg class="architecture-map" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {width} {top:.0f}" role="img" '
            f'aria-label="The layers of scratchgd and the imports between its modules">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/>'
            f'</marker></defs>{"".join(parts)}</svg>')


class Mermaid(Directive):
    """A `````mermaid`` fence (MyST's ``myst_fence_as_directive``), drawn as SVG."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        text = "\n".join(self.content)
        if not text.lstrip().startswith("flowchart"):
            raise self.error("only the flowcharts of docs/make_architecture.py are drawn")
        return [nodes.raw("", f'<figure class="architecture">{flowchart_svg(text)}</figure>',
                          format="html")]


# -- references -----------------------------------------------------------------------------

def _lookup(path: str) -> object | None:
    """The object a dotted path names (module attributes, then class attributes), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def resolve_by_object(app: Sphinx, env, node: addnodes.pending_xref,
                      contnode: nodes.Element) -> nodes.Element | None:
    """A Python reference Sphinx missed, sent to the page of the object it names, if any.

    The name is looked up as the docstring's own module sees it (the module that defines
    the documented object, then the package); failing that, a name that exactly one
    documented object of scratchgd ends with is that object.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    context = ".".join(filter(None, [node.get("py:module"), node.get("py:class")]))
    scopes = [context, getattr(_lookup(context), "__module__", None) if context else None,
              "scratchgd"]
    domain = env.get_domain("py")
    documented = {name: entry for name, entry in domain.objects.items()
                  if name.startswith("scratchgd") and not entry.aliased}
    for candidate in [f"{scope}.{target}" for scope in scopes if scope] + [target]:
        if candidate in documented:
            return _resolved(app, env, node, contnode, candidate)
        owner = candidate.rpartition(".")[0]
        if documented.get(owner) and documented[owner].objtype == "class" and (
                candidate.rpartition(".")[2] in getattr(_lookup(owner), "__annotations__", {})):
            return _resolved(app, env, node, contnode, owner)   # a field, described there
        obj = _lookup(candidate) if candidate.startswith("scratchgd") else None
        if obj is not None and not isinstance(obj, (int, float, str, tuple, dict)):
            for name in documented:
                if _lookup(name) is obj:
                    return _resolved(app, env, node, contnode, name)
    ends = [name for name in documented if name.endswith(f".{target}")]
    if len(ends) == 1:
        return _resolved(app, env, node, contnode, ends[0])
    modules = [name for name in sys.modules if name.startswith("scratchgd")]
    if any(_lookup(path) is not None for path in [target] + [f"{m}.{target}" for m in modules]
           if path.startswith("scratchgd")):
        return contnode        # a private helper: it exists, and has no page to link to
    return None


def _resolved(app: Sphinx, env, node: addnodes.pending_xref, contnode: nodes.Element,
              name: str) -> nodes.Element | None:
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder,
                                             node["reftype"], name, node, contnode)


def skip_foreign_members(app: Sphinx, what: str, name: str, obj: object, skip: bool,
                         options: object) -> bool | None:
    """Members a class gets from outside scratchgd (scikit-learn's ``set_*_request``)."""
    module = getattr(obj, "__module__", None)
    if what == "class" and callable(obj) and module and not module.startswith("scratchgd"):
        return True
    return None


def public_bases(app: Sphinx, name: str, obj: object, options: object, bases: list) -> None:
    """A class's private bases shown as theirs (``_MLPEstimator`` -> ``BaseEstimator``)."""
    bases[:] = [b for base in bases for b in
                (base.__bases__ if base.__name__.startswith("_") else (base,))]


LINK = re.compile(r"(!?\[[^\]]*\]\(\s*<?)([^)\s>]+)")
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#)", re.I)


def page_of(path: Path) -> str | None:
    """The docname the site shows a repository file as, or None."""
    if path in PAGES:
        return PAGES[path]
    if path.parent == RESULTS and path.suffix == ".md":
        return f"records/{path.stem}"
    if DOCS in path.parents:
        return path.relative_to(DOCS).with_suffix("").as_posix()
    return None


def site_link(target: str, source: Path, docdir: Path) -> str:
    """A relative link written in ``source``, as the page in ``docdir`` must write it.

    A page of the site (a docs page, the README, CONTRIBUTING, CHANGELOG, a benchmark
    record) is linked as that page; any other file of the repository is a download.
    """
    if EXTERNAL.match(target):
        return target
    path, hash_, anchor = target.partition("#")
    resolved = (source.parent / path).resolve()
    if resolved == DOCS:
        resolved = DOCS / "index.md"
    page = page_of(resolved)
    if page is not None and resolved.suffix in (".md", ".ipynb"):
        suffix = ".ipynb" if resolved.suffix == ".ipynb" else ".md"
        return Path(os.path.relpath(DOCS / f"{page}{suffix}", docdir)).as_posix() + hash_ + anchor
    if DOCS in resolved.parents:
        return Path(os.path.relpath(resolved, docdir)).as_posix() + hash_ + anchor
    return "path:" + Path(os.path.relpath(resolved, docdir)).as_posix()


def site_links(text: str, source: Path, docdir: Path) -> str:
    """Every Markdown link of ``text`` (written in ``source``) rewritten by :func:`site_link`."""
    return LINK.sub(lambda m: m.group(1) + site_link(m.group(2), source, docdir), text)


STUB = re.compile(r"^```\{repository-page\} (\S+)\n```", re.M)


def rewrite_links(app: Sphinx, docname: str, source: list[str]) -> None:
    """A docs page's links to files outside ``docs/``, sent to their site pages.

    A page that is only ``{repository-page} PATH`` (the README, CONTRIBUTING...) becomes
    the Markdown of that file, its links rewritten to work from the page.
    """
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".md":
        return
    text = source[0]
    if stub := STUB.search(text):
        origin = (path.parent / stub.group(1)).resolve()
        app.env.note_dependency(str(origin))
        source[0] = (site_links(text[:stub.start()], path, path.parent)
                     + site_links(origin.read_text(encoding="utf-8"), origin, path.parent)
                     + site_links(text[stub.end():], path, path.parent))
    else:
        source[0] = site_links(text, path, path.parent)


def write_records(app: Sphinx, config: object = None) -> None:
    """A page per benchmark record of ``benchmarks/results/``, and their index."""
    RECORDS.mkdir(exist_ok=True)
    note = "% Written by docs/_ext/sitetools.py at each build; do not edit.\n\n"
    pages = {"index": (f"{note}```{{repository-page}} ../../benchmarks/results/README.md\n```\n\n"
                       "```{toctree}\n:hidden:\n:glob:\n\n2*\n```\n")}
    for record in sorted(RESULTS.glob("2*.md")):
        pages[record.stem] = (f"{note}```{{repository-page}} ../../benchmarks/results/"
                              f"{record.name}\n```\n")
    for name, text in pages.items():
        page = RECORDS / f"{name}.md"
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            page.write_text(text, encoding="utf-8")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def source_role(name: str, rawtext: str, text: str, lineno: int, inliner: object,
                options: dict | None = None, content: list | None = None) -> tuple[list, list]:
    """``:source:`scratchgd.module.Object``` links to the object's highlighted lines.

    The link goes to viewcode's page of the module, at the object's anchor; the object
    must have a page of its own (viewcode marks only documented objects).
    """
    env = inliner.document.settings.env
    parts = text.split(".")
    module = next(".".join(parts[:cut]) for cut in range(len(parts), 0, -1)
                  if _is_module(".".join(parts[:cut])))
    anchor = ".".join(parts[len(module.split(".")):])
    page = "_modules/" + module.replace(".", "/") + ".html"
    uri = os.path.relpath(page, os.path.dirname(env.docname) or ".") + f"#{anchor}"
    path = module.replace(".", "/") + ".py"
    return [nodes.reference(rawtext, path + (f" ({anchor})" if anchor else ""), refuri=uri,
                            classes=["source-link"])], []


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", write_api)
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_math_block, None))
    app.add_directive("mermaid", Mermaid)
    app.add_role("source", source_role)
    app.connect("missing-reference", resolve_by_object)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("config-inited", write_records)
    app.connect("source-read", rewrite_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
