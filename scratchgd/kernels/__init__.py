"""Compute backends of the MLP: the same functions written twice.

``reference`` is the text a learner reads, written against the array API: it
runs on NumPy (``backend="numpy"``) and, through :mod:`.array_api`, on torch,
CuPy and array_api_strict arrays (:data:`ARRAY_BACKENDS`); ``compiled`` is its
Numba twin. Each backend module
provides ``forward(params, X, activation)`` and
``loss_and_grads(params, X, y, activation, loss, observe=None)`` with the same
meaning (``observe``: shown each layer's input and delta, see ``reference.backward``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = {"numpy": "scratchgd.kernels.reference", "numba": "scratchgd.kernels.compiled"}


ARRAY_BACKENDS = ("torch", "cupy", "array_api_strict")
"""The backends that run the reference on another library's arrays (:mod:`.array_api`)."""

REFERENCE = "numpy"
"""The backend every other one is tested against, and falls back to."""


def load(name: str) -> ModuleType:
    """The kernel module of backend ``name`` (one of ``BACKENDS``)."""
    return importlib.import_module(BACKENDS[name])


def for_model(backend: str, activation: str, loss: str) -> tuple[object, str | None]:
    """The kernels a model runs on, and why they are not ``backend``'s own (``None`` if they are).

    A compiled backend implements only the activations and losses that have a
    compiled twin (``has_twins``); for any other the model runs the reference
    kernels, :data:`REFERENCE`'s, which compute every registered one.
    """
    if backend in ARRAY_BACKENDS:
        from .array_api import kernels
        return kernels(backend), None
    module = load(backend)
    if backend == REFERENCE or module.has_twins(activation, loss):
        return module, None
    return load(REFERENCE), (f"activation {activation!r} or loss {loss!r} has no compiled twin "
                             f"in the {backend} kernels")
