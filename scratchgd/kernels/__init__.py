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


REFERENCE = "numpy"
"""The backend every other one is tested against, and falls back to."""


def load(name: str) -> ModuleType:
    """The kernel module of backend ``name`` (one of ``BACKENDS``)."""
    return importlib.import_module(BACKENDS[name])


def for_model(backend: str, activation: str, loss: str) -> tuple[ModuleType, str | None]:
    """The kernels a model runs on, and why they are not ``backend``'s own (``None`` if they are).

    A compiled backend implements only the activations and losses that have a
    compiled twin (``has_twins``); for any other the model runs the reference
    kernels, :data:`REFERENCE`'s, which compute every registered one.
    """
    module = load(backend)
    if backend == REFERENCE or module.has_twins(activation, loss):
        return module, None
    return load(REFERENCE), (f"activation {activation!r} or loss {loss!r} has no compiled twin "
                             f"in the {backend} kernels")
