"""Sphinx configuration of scratchgd's documentation site.

Build: ``python -m sphinx -b html -n -W docs docs/_build/html`` (extra ``docs``);
serve: ``python -m http.server -d docs/_build/html``. The build reads no network:
the Markdown pages are read by MyST, the tour notebook is rendered with its stored
outputs (never executed here: ``tests/test_notebook.py`` runs it), the architecture
map is drawn as SVG from the package's imports and the math is written as MathML,
both at build time (``_ext/sitetools.py``), so nothing is loaded from a CDN.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

import scratchgd  # noqa: E402

project = "scratchgd"
author = "the scratchgd authors"
copyright = "the scratchgd authors, MIT licence"
version = release = scratchgd.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
    "sitetools",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
root_doc = "index"

# The Markdown pages stay readable on a code host: GitHub's heading anchors, $-math off
# (the pages write their formulas in code spans), ```mermaid fences drawn by sitetools.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
myst_fence_as_directive = ["mermaid"]
nb_execution_mode = "off"          # the stored outputs; tests/test_notebook.py runs it
nb_merge_streams = True

autosummary_generate = True
autodoc_typehints = "none"          # numpydoc's parameter lists give the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Every reference is checked (-n). Intersphinx would fetch NumPy's and Python's inventories
# over the network, so references to names outside scratchgd cannot resolve offline: the
# patterns below ignore exactly those (Python's builtins and standard library, NumPy and the
# optional extras' packages). A reference to scratchgd's own names is never ignored: one
# that does not resolve fails the build.
nitpick_ignore_regex = [
    (r"py:.*", r"(np|numpy)(\..+)?"),
    (r"py:.*", r"(int|float|bool|str|bytes|object|list|tuple|dict|set|type|slice|range|None"
               r"|Ellipsis|NotImplemented|Exception|ValueError|TypeError|KeyError|OSError"
               r"|RuntimeError|FileNotFoundError|DeprecationWarning|UserWarning|callable)"),
    (r"py:.*", r"(typing|types|collections|collections\.abc|os|io|pathlib|threading|dataclasses"
               r"|contextlib|abc|enum|argparse|csv|gzip|json|tempfile)\..+"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Sequence|Mapping|Literal|Self|PathLike"
               r"|Path|TextIO|BinaryIO|NamedTuple|TYPE_CHECKING|Generator|Protocol)"),
    (r"py:.*", r"(sklearn|mpi4py|pandas|torch|numba|scipy|threadpoolctl|matplotlib|tqdm)"
               r"(\..+)?"),
]

html_theme = "pydata_sphinx_theme"
html_title = "scratchgd"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 4,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"**": []}      # no left column: the top bar and each page's contents suffice
html_math_renderer = "mathml"
