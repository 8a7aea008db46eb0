"""Compute backends of the MLP: the same functions written twice.

``reference`` is plain NumPy, the text a learner reads. Each backend module
provides ``forward(params, X, activation)`` and
``loss_and_grads(params, X, y, activation, loss, observe=None)`` with the same
meaning (``observe``: shown each layer's input and delta, see ``reference.backward``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = {"numpy": "scratchgd.kernels.reference", "numba": "scratchgd.kernels.compiled"}


def load(name: str) -> ModuleType:
    """The kernel module of backend ``name`` (one of ``BACKENDS``)."""
    return importlib.import_module(BACKENDS[name])
