"""Compile and cache the numba kernels ahead of time (``scratchgd compile``).

Numba compiles a kernel the first time it is called with a new combination of
argument types and, with ``cache=True``, stores the machine code on disk
(``__pycache__`` next to the package, or ``NUMBA_CACHE_DIR``). The types a
training run produces are few, because ``scratchgd.kernels.compiled.span_input`` and
``forward`` normalise array layouts first: what varies is

* the model's dtype: float32 or float64;
* the dtype of ``X`` as stored: float32, float64 or uint8 (raw IDX pixels), in
  memory or memory-mapped read-only (one type: ``X`` is always passed as a
  C-contiguous read-only view). Every other dtype (bool, integers, float16,
  big-endian values) reaches the kernels as a uint8 view of its bytes, decoded
  as it is gathered, so the uint8 combination covers it too;
* momentum or none (a run without momentum does not compile the momentum step);
* the number of layers (the weights are passed as a tuple, one item per layer).

Labels (int64) or targets (the model's dtype), the activation, the loss and the
batch size do not change the types. :func:`compile_case` runs tiny fits that
reach every kernel once with one such combination, so afterwards a training run
of that kind starts warm (numba loads the cached code instead of compiling).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .data import Dataset
from .distributed import run_threads
from .mlp import MLP
from .noise import gradient_noise
from .optim import MiniBatchSGD
from .train import evaluate, fit

DTYPES = {"float32": np.float32, "float64": np.float64}
"""Model dtypes by name (``scratchgd train --dtype``)."""
X_DTYPES = (np.float32, np.float64, np.uint8)
"""The types ``X`` reaches the kernels in (``scratchgd.kernels.compiled.x_input``):
float32 and float64 as they are; uint8 pixels, and the bytes of any other dtype."""


@dataclass(frozen=True)
class Case:
    """One combination of argument types of the training kernels."""

    dtype: type
    x_dtype: type
    momentum: bool
    hidden_layers: int

    def __str__(self) -> str:
        return (f"{np.dtype(self.dtype).name} model, X {np.dtype(self.x_dtype).name}, "
                f"{'momentum' if self.momentum else 'no momentum'}, "
                f"{self.hidden_layers} hidden layer{'s' if self.hidden_layers != 1 else ''}")


def cases(dtypes: Iterable[str], hidden_layers: Iterable[int] = (1,)) -> list[Case]:
    """Every :class:`Case` for the model dtypes named ``dtypes`` and these depths.

    Raises ``ValueError`` for an unknown dtype name or a depth below 0.
    """
    dtypes, hidden_layers = list(dtypes), list(hidden_layers)
    for name in dtypes:
        if name not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    for depth in hidden_layers:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"hidden_layers must be integers >= 0, got {depth!r}")
    return [Case(DTYPES[name], x_dtype, momentum, depth) for name, depth, x_dtype, momentum
            in itertools.product(dtypes, hidden_layers, X_DTYPES, (False, True))]


def compile_case(case: Case) -> None:
    """Call every kernel a run of ``case`` calls, on 8 rows: compiled and cached once.

    A classifier and a regressor (int64 labels, float targets), batches of 1 and 4
    rows (the loops and BLAS), training (``fit``, and ``fit(comm=)`` on two ranks for
    ``--distributed``: the data-parallel span with float64 sums; the float32 sums
    of ``fit(reduce_dtype="float32")``, which the command line does not offer,
    compile on first use), evaluation (``forward``) and
    ``loss_and_grads`` with per-example gradient norms (``track_noise``, ``advise``).
    """
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(8, 3)).astype(case.x_dtype)
    labels = np.arange(8) % 2
    targets = rng.standard_normal((8, 2))
    momentum = 0.9 if case.momentum else 0.0
    for loss, y in (("cross_entropy", labels), ("mse", targets)):
        def model(loss: str = loss) -> MLP:
            return MLP([3, *[4] * case.hidden_layers, 2], loss=loss, seed=0, dtype=case.dtype,
                       backend="numba")

        data = Dataset(X, y)
        for batch_size in (1, 4):
            fit(model(), data, MiniBatchSGD(0.01, batch_size=batch_size, momentum=momentum),
                epochs=1, progress=False)
        # --distributed, on 2 ranks (each its own model) so that they add each other's sums
        run_threads(2, lambda comm, model=model, data=data: fit(
            model(), data, MiniBatchSGD(0.01, batch_size=4, momentum=momentum), epochs=1,
            progress=False, comm=comm))
        evaluate(model(), data)
        gradient_noise(model(), data)  # loss_and_grads with per-example gradient norms
