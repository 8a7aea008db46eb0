"""Every relative link in the documentation resolves, so moving a page can't leave a dead link.

Checked: Markdown links and images (``[text](target)``, ``![alt](target)``) and HTML
``<img src>`` in README.md, CONTRIBUTING.md, CHANGELOG.md, docs/*.md, the dated raw benchmark
records in benchmarks/results/*.md and the markdown cells of docs/tour.ipynb; the file part
must exist, and an anchor into a Markdown file must be one of its headings (GitHub's slugs).
Code blocks and inline code are not links and are skipped.
Test references written as ``tests/file.py::function`` must name a test that exists.
"""

import pathlib
import re

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
                *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks" / "results").glob("*.md")])
NOTEBOOK = ROOT / "docs" / "tour.ipynb"

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMG = re.compile(r"<img[^>]*\ssrc=\"([^\"]+)\"")
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)   # http:, https:, mailto:, ...


def pages_and_texts() -> list[tuple[pathlib.Path, str]]:
    """Each page with its Markdown text (the notebook's markdown cells count as one page)."""
    texts = [(page, page.read_text(encoding="utf-8")) for page in PAGES]
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    texts.append((NOTEBOOK, "\n\n".join(cell.source for cell in notebook.cells
                                         if cell.cell_type == "markdown")))
    return texts


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    """The heading anchors of a Markdown page, with GitHub's ``-1``, ``-2`` for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links() -> list[tuple[pathlib.Path, str]]:
    found = []
    for page, text in pages_and_texts():
        text = prose(text)
        targets = LINK.findall(text) + IMG.findall(text)
        found += [(page, target) for target in targets if not EXTERNAL.match(target)]
    return found


def label(item: tuple[pathlib.Path, str]) -> str:
    page, target = item
    return f"{page.relative_to(ROOT)}->{target}"


def test_the_pages_hold_links_to_check():
    found = links()
    assert len(found) >= 20, found      # the parser still finds the links
    assert any(target.endswith(".png") for _, target in found)


@pytest.mark.parametrize("item", links(), ids=label)
def test_relative_link_resolves(item):
    page, target = item
    path_part, _, anchor = target.partition("#")
    path = (page.parent / path_part).resolve() if path_part else page
    assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
    assert ROOT in path.parents or path == ROOT, f"{target} points outside the repository"
    if anchor and path.suffix == ".md":
        assert anchor in anchors(path), (
            f"{page.relative_to(ROOT)} links to {target}: no heading with anchor #{anchor} "
            f"in {path.relative_to(ROOT)}")


def test_named_tests_exist():
    """``tests/file.py::function`` in the docs names a test function of that file."""
    references = set()
    for _, text in pages_and_texts():
        references |= set(TEST_REF.findall(text))
    assert references, "no test references found"
    missing = []
    for file, function in sorted(references):
        path = ROOT / file
        if not path.exists() or not re.search(rf"^\s*def {function}\(", path.read_text(), re.M):
            missing.append(f"{file}::{function}")
    assert not missing, f"the docs name tests that do not exist: {missing}"


def test_slug_follows_github():
    assert slug("The words of the article, in code") == "the-words-of-the-article-in-code"
    assert slug("0. The losses") == "0-the-losses"
    assert slug("Decision: the `numba` backend keeps its span") == (
        "decision-the-numba-backend-keeps-its-span")
