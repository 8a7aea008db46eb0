"""The engines that run spans of the training cycle, one chosen per run.

==============================  ==========================================  ===================
engine                          runs the cycle                              chosen when
==============================  ==========================================  ===================
``PythonEngine``                in Python, batch by batch (the reference)   ``backend="numpy"``,
                                                                            or ``track_noise``,
                                                                            or a fallback
``CompiledEngine``              in compiled code, many iterations per call  ``backend="numba"``
``DataParallelEngine``          on P ranks, one collective per step, in     ``comm=`` given,
                                Python (the reference)                      ``backend="numpy"``,
                                                                            or a fallback
``CompiledDataParallelEngine``  on P ranks, many steps per compiled call,   ``comm=`` given,
                                the collective called between steps         ``backend="numba"``
``DeviceEngine``                in Python, batch by batch, on the model's   ``backend="torch"``,
                                device (the data set moved there once)      ``"cupy"``,
                                                                            ``"array_api_strict"``
==============================  ==========================================  ===================

All four implement :class:`~scratchgd.engines.base.Engine`: ``start()`` once,
then, inside the context ``running()`` holds for the whole run (the compiled
engine's BLAS threads), ``run_span(at, stop, history, advance)`` for each span.
A new engine subclasses it and gets a line in :func:`choose`.

The compiled engines implement exactly ``Optimizer``'s update rule, ``DataLoader``'s
batches and the activations and losses with a compiled twin. A run with anything
else (:func:`compiled_unsupported`: an optimizer class that overrides ``step``,
``buffers`` or ``reset``, a loader class that overrides how batches are drawn, an
activation or loss without a twin) falls back: the Python engine on the reference
kernels, with a :class:`~scratchgd.CompiledFallbackWarning` that says why, so the
weights are ``backend="numpy"``'s, bit for bit, never silently different.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import kernels
from ..data import DataLoader
from ..distributed import Group
from ..errors import CompiledFallbackWarning
from ..mlp import MLP
from ..optim import Optimizer
from .base import Engine
from .compiled import CompiledEngine
from .data_parallel import CompiledDataParallelEngine, DataParallelEngine
from .device import DeviceEngine
from .python import BatchObserver, PythonEngine

__all__ = ["CompiledDataParallelEngine", "CompiledEngine", "DataParallelEngine", "DeviceEngine",
           "Engine", "PythonEngine", "choose", "compiled_unsupported"]

OPTIMIZER_METHODS = ("step", "buffers", "reset")
"""What the compiled engines do themselves of an ``Optimizer``: an override of any is not run there."""

LOADER_METHODS = ("epoch_order", "batch_index", "batch_bounds", "batches", "rows_per_batch",
                  "__len__")
"""How a ``DataLoader`` draws the batches of a run (``fit`` and the engines call these)."""


def compiled_unsupported(model: MLP, optimizer: Optimizer, loader: DataLoader) -> str | None:
    """Why the compiled engines cannot run this exactly, or ``None`` when they can.

    They implement the update rule of :class:`~scratchgd.Optimizer`, the batches of
    :class:`~scratchgd.DataLoader`, and the activations and losses with a compiled
    twin; a class that overrides ``OPTIMIZER_METHODS`` or ``LOADER_METHODS``
    is something else.
    """
    _, missing = kernels.for_model(model.backend, model.activation, model.loss)
    if missing is not None:
        return missing
    for obj, base, methods in ((optimizer, Optimizer, OPTIMIZER_METHODS),
                               (loader, DataLoader, LOADER_METHODS)):
        own = [name for name in methods
               if getattr(type(obj), name, None) is not getattr(base, name)]
        if own:
            return (f"{type(obj).__name__} overrides {base.__name__}."
                    f"{f', {base.__name__}.'.join(own)}, which the compiled kernels do not run")
    return None


def choose(model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray, k: int,
           group: Group | None = None, noise: BatchObserver | None = None,
           reduce_dtype: type = np.float64) -> Engine:
    """The engine of a run, chosen once at its start.

    On the model's device for an array-API backend (``fit`` refuses ``comm``,
    ``track_noise`` and an optimizer with its own ``step`` there). Data-parallel
    with a ``group`` (its sums in ``reduce_dtype``), compiled for
    the numba backend; else compiled for the numba backend, unless ``noise``
    must see every batch; else the Python reference. The numba backend with
    something its compiled code does not implement (:func:`compiled_unsupported`)
    runs the Python reference on the reference kernels instead, and warns
    (:class:`~scratchgd.CompiledFallbackWarning`, at the caller of ``fit``).
    """
    if model.backend in kernels.ARRAY_BACKENDS:
        return DeviceEngine(model, optimizer, loader, y, k)
    compiled = model.backend != kernels.REFERENCE
    reference = None
    why = compiled_unsupported(model, optimizer, loader) if compiled else None
    if why is not None:
        warnings.warn(CompiledFallbackWarning(
            f"fit(backend={model.backend!r}): {why}; this run takes the Python engine on the "
            f"NumPy reference kernels instead (the weights of backend='numpy')"), stacklevel=3)
        compiled, reference = False, kernels.load(kernels.REFERENCE)
    if group is not None:
        if compiled:
            return CompiledDataParallelEngine(model, optimizer, loader, y, k, group, reduce_dtype)
        return DataParallelEngine(model, optimizer, loader, y, k, group, reduce_dtype, reference)
    if compiled and noise is None:
        return CompiledEngine(model, optimizer, loader, y, k)
    return PythonEngine(model, optimizer, loader, y, k, noise, reference)
