"""The engines that run spans of the training cycle, one chosen per run.

==============================  ==========================================  ===================
engine                          runs the cycle                              chosen when
==============================  ==========================================  ===================
``PythonEngine``                in Python, batch by batch (the reference)   ``backend="numpy"``,
                                                                            or ``track_noise``
``CompiledEngine``              in compiled code, many iterations per call  ``backend="numba"``
``DataParallelEngine``          on P ranks, one collective per step, in     ``comm=`` given,
                                Python (the reference)                      ``backend="numpy"``
``CompiledDataParallelEngine``  on P ranks, many steps per compiled call,   ``comm=`` given,
                                the collective called between steps         ``backend="numba"``
==============================  ==========================================  ===================

All four implement :class:`~scratchgd.engines.base.Engine`: ``start()`` once,
then ``run_span(at, stop, history, advance)`` for each span. A new engine
subclasses it and gets a line in :func:`choose`.
"""

from __future__ import annotations

import numpy as np

from ..data import DataLoader
from ..distributed import Group
from ..mlp import MLP
from ..optim import Optimizer
from .base import Engine
from .compiled import CompiledEngine
from .data_parallel import CompiledDataParallelEngine, DataParallelEngine
from .python import BatchObserver, PythonEngine

__all__ = ["CompiledDataParallelEngine", "CompiledEngine", "DataParallelEngine", "Engine",
           "PythonEngine", "choose"]


def choose(model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray, k: int,
           group: Group | None = None, noise: BatchObserver | None = None,
           reduce_dtype: type = np.float64) -> Engine:
    """The engine of a run, chosen once at its start.

    Data-parallel with a ``group`` (its sums in ``reduce_dtype``), compiled for
    the numba backend; else compiled for the numba backend, unless ``noise``
    must see every batch; else the Python reference.
    """
    if group is not None:
        kind = CompiledDataParallelEngine if model.backend == "numba" else DataParallelEngine
        return kind(model, optimizer, loader, y, k, group, reduce_dtype)
    if model.backend == "numba" and noise is None:
        return CompiledEngine(model, optimizer, loader, y, k)
    return PythonEngine(model, optimizer, loader, y, k, noise)
