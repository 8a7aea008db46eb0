"""Run the notebook tour top to bottom and store its outputs in it.

    python docs/make_tour.py            # rewrites docs/tour.ipynb, prints the run time

The kernel is IPython's, run by this interpreter (``sys.executable``) against
the scratchgd of this checkout, with ``docs/`` as its working directory; no
kernelspec has to be installed. ``tests/test_notebook.py`` runs the notebook
the same way (:func:`execute`) and checks the stored outputs against a fresh
run, so rerun this after changing the notebook or anything it prints.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import nbformat
from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
TOUR = DOCS / "tour.ipynb"
CELL_TIMEOUT = 300
"""Seconds one cell may run before the run fails."""


class ThisPython(AsyncKernelManager):
    """An IPython kernel run by this interpreter, whatever kernelspecs are installed.

    ipykernel's own ``python3`` kernelspec starts a bare ``python``, which
    jupyter_client replaces by ``sys.executable``; but a ``python3`` kernelspec
    installed elsewhere on the Jupyter path (system-wide, or by another
    environment) may name another interpreter by its full path, one without
    this checkout's dependencies. This manager always starts ``sys.executable``.
    """

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())


def execute(notebook: NotebookNode, timeout: int = CELL_TIMEOUT) -> NotebookNode:
    """Run every code cell of ``notebook`` in a fresh kernel, in place; return it.

    Raises ``nbclient.exceptions.CellExecutionError`` at the first cell that
    fails, and ``CellTimeoutError`` if one runs longer than ``timeout`` seconds.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            kernel_manager_class=ThisPython, resources={"metadata": {"path": str(DOCS)}},
                            record_timing=False, coalesce_streams=True)
    return client.execute(env=env)


def main() -> None:
    notebook = nbformat.read(TOUR, as_version=4)
    start = time.perf_counter()
    execute(notebook)
    seconds = time.perf_counter() - start
    nbformat.write(notebook, TOUR)
    print(f"{TOUR.relative_to(ROOT)}: {sum(c.cell_type == 'code' for c in notebook.cells)} "
          f"code cells run and stored in {seconds:.1f} s ({sys.executable})")


if __name__ == "__main__":
    main()
