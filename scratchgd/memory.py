"""How much memory one training step needs, and the batch size a budget allows.

The article: "you need to choose the batch size at least small enough that you
don't run out of memory". :func:`estimate` counts the bytes of one step of the
NumPy reference backend (``scratchgd.kernels.reference``) by walking its code
and noting every array it allocates and frees; :func:`max_batch_size` inverts
it. For an MLP with widths ``[d, h_1, ..., k]``, a batch of ``n`` rows and
``s`` bytes per number::

    bytes(n) = params + velocity + X (n d s) + y (8 n, or n k s for mse)
               + peak over the step of {activations, temporaries, gradients}

The peak grows linearly with ``n`` (activations and temporaries are ``(n, h)``
arrays), so the parameters dominate small batches and the activations large ones.

Not counted: the update itself (``Optimizer.step`` builds the new weights
before it writes them, briefly holding about two more parameter-sized arrays),
Python objects, and the Numba backend, which needs no more than the reference.
"""

from __future__ import annotations

import math
import re

import numpy as np

from . import _checks
from .activations import ACTIVATIONS
from .data import DataLoader, Dataset
from .losses import LOSSES
from .mlp import MLP
from .optim import Optimizer

__all__ = [
    "ELIDE_BYTES", "UNITS", "budget_loader", "estimate", "format_bytes", "max_batch_size",
    "parse_bytes"
]

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
"""Byte units of a budget string: decimal (``MB`` = 10**6) and binary (``MiB`` = 2**20)."""


ELIDE_BYTES = 256 * 1024
"""NumPy reuses a temporary operand's buffer for the result from this size on."""


def parse_bytes(budget: int | str, name: str = "memory_budget") -> int:
    """A budget in bytes: a positive integer, or a string like ``"512MB"`` or ``"1.5GiB"``."""
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b|b)?\s*", budget.lower())
        if match is None:
            raise ValueError(f"{name} must be a number of bytes or a size like '512MB' or "
                             f"'1.5GiB', got {budget!r}")
        number, unit = match.groups()
        budget = math.floor(float(number) * UNITS[unit or ""])
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise TypeError(f"{name} must be an integer number of bytes or a string like '512MB', "
                        f"got {budget!r}")
    if budget < 1:
        raise ValueError(f"{name} must be at least 1 byte, got {budget}")
    return int(budget)


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in MB (10**6 bytes) or GB, for messages."""
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


class _Ledger:
    """Bytes alive and their peak while a walk through the code allocates and frees arrays."""

    def __init__(self) -> None:
        self.alive = 0
        self.peak = 0

    def alloc(self, nbytes: int) -> None:
        self.alive += nbytes
        self.peak = max(self.peak, self.alive)

    def free(self, nbytes: int) -> None:
        self.alive -= nbytes

    def onto_temporary(self, nbytes: int) -> None:
        """A binary operator on a temporary array of ``nbytes`` (``(A @ B) + b``).

        NumPy's temporary elision writes the result into the temporary's buffer
        when it holds at least ``ELIDE_BYTES``; a smaller one gets a new array
        and the temporary is freed.
        """
        if nbytes < ELIDE_BYTES:
            self.alloc(nbytes)
            self.free(nbytes)


    def walk(self, steps: tuple[tuple[str, str], ...], sizes: dict[str, int]) -> None:
        """Take ``steps``, ``(step, unit)`` pairs (``activations.LEDGER_STEPS``), on arrays
        of ``sizes[unit]`` bytes."""
        take = {"alloc": self.alloc, "free": self.free, "elide": self.onto_temporary}
        for step, unit in steps:
            take[step](sizes[unit])


def _activation(ledger: _Ledger, activation: str, size: int, count: int) -> None:
    """``a = f(z)`` (``ACTIVATIONS[activation].forward``); leaves ``a`` (``size`` bytes) alive."""
    ledger.walk(ACTIVATIONS[activation].forward_steps, {"array": size, "mask": count})


def _derivative(ledger: _Ledger, activation: str, size: int, count: int) -> None:
    """``f'(z)`` from ``a`` (``ACTIVATIONS[activation].derivative``); leaves it (``size`` B) alive."""
    ledger.walk(ACTIVATIONS[activation].derivative_steps, {"array": size, "mask": count})


def _loss(ledger: _Ledger, loss: str, n: int, k: int, s: int) -> None:
    """``LOSSES[loss].function(z, y)``; leaves ``dz`` (``n k s`` bytes) alive."""
    ledger.walk(LOSSES[loss].steps, {"outputs": n * k * s, "rows": n * s, "index": 8 * n})


def _loss_and_grads_peak(sizes: list[int], n: int, s: int, activation: str, loss: str) -> int:
    """Peak bytes allocated by ``MLP.loss_and_grads`` (reference backend) on ``n`` rows.

    Counts the hidden activations ``a_l`` and output ``z_L`` kept for the
    backward pass, each temporary of ``forward``, the loss and ``backward``,
    the gradients, and the gradients divided by ``n`` (``reduction="mean"``;
    ``fit`` divides the accumulated sums the same way). Not the caller's ``X``, ``y``.
    """
    ledger = _Ledger()
    n_layers = len(sizes) - 1
    width = [n * w * s for w in sizes]                 # bytes of an (n, w) array
    for layer in range(1, n_layers + 1):               # forward
        ledger.alloc(width[layer])                     # a_{l-1} @ W_l
        ledger.onto_temporary(width[layer])            # z_l = ... + b_l
        if layer > 1:
            ledger.free(width[layer - 1])              # the previous hidden z, rebound
        if layer < n_layers:
            _activation(ledger, activation, width[layer], n * sizes[layer])  # a_l, kept
    _loss(ledger, loss, n, sizes[-1], s)               # dz = delta_L, kept by the caller
    grads = 0
    for layer in range(n_layers, 0, -1):               # backward
        ledger.alloc(sizes[layer - 1] * sizes[layer] * s)   # dW_l = a_{l-1}^T delta_l
        ledger.alloc(sizes[layer] * s)                      # db_l = delta_l.sum(axis=0)
        grads += (sizes[layer - 1] + 1) * sizes[layer] * s
        if layer > 1:
            ledger.alloc(width[layer - 1])             # delta_l @ W_l^T
            _derivative(ledger, activation, width[layer - 1], n * sizes[layer - 1])
            ledger.onto_temporary(width[layer - 1])    # delta_{l-1} = (...) * f'(...)
            ledger.free(width[layer - 1])              # f'(...)
            if layer < n_layers:
                ledger.free(width[layer])              # the previous delta, rebound
    hidden = sum(width[1:n_layers])
    ledger.free(hidden + width[n_layers] + (width[1] if n_layers > 1 else 0))  # a_l, dz, delta_1
    ledger.alloc(grads)                                # g / n for every gradient
    return ledger.peak


def estimate(model: MLP, batch_size: int, dtype: type | None = None,
             optimizer: Optimizer | None = None) -> int:
    """Bytes one training step of ``model`` needs on a batch of ``batch_size`` rows.

    ``params + velocity + X + y + peak(loss_and_grads)``: the weights and
    biases; one momentum buffer per parameter if ``optimizer`` has momentum;
    the input batch ``(n, d)`` and its labels (int64, or ``(n, k)`` targets
    for mse); and the most bytes alive at once during ``loss_and_grads`` of
    the NumPy reference: activations, temporaries, one gradient per parameter
    and its mean. ``dtype`` (default: the model's) is the computing dtype.
    """
    _checks.instance("model", model, MLP)
    if optimizer is not None:
        _checks.instance("optimizer", optimizer, Optimizer)
    n = _checks.positive_int("batch_size", batch_size)
    dtype = np.dtype(_checks.float_dtype("dtype", model.dtype if dtype is None else dtype))
    s = dtype.itemsize
    params = sum((fan_in + 1) * fan_out for fan_in, fan_out
                 in zip(model.sizes[:-1], model.sizes[1:], strict=True)) * s
    velocity = params if optimizer is not None and optimizer.momentum else 0
    X = n * model.n_inputs * s
    y = 8 * n if model.classifier else n * model.n_outputs * s
    peak = _loss_and_grads_peak(model.sizes, n, s, model.activation, model.loss)
    return params + velocity + X + y + peak


def max_batch_size(model: MLP, budget: int | str, optimizer: Optimizer | None = None) -> int:
    """The largest batch size ``n`` with ``estimate(model, n, optimizer=optimizer) <= budget``.

    ``budget`` in bytes, or a string like ``"512MB"`` or ``"1.5GiB"``.

    Raises
    ------
    ValueError
        If not even a batch of one row fits.
    """
    budget = parse_bytes(budget)
    need = estimate(model, 1, optimizer=optimizer)
    if need > budget:
        raise ValueError(f"memory budget {format_bytes(budget)} is too small for {model}: even a "
                         f"batch of 1 row needs {format_bytes(need)}")
    low, high = 1, 2                     # estimate(low) fits; find a high that does not
    while estimate(model, high, optimizer=optimizer) <= budget:
        low, high = high, 2 * high
    while high - low > 1:                # estimate grows with n: bisect
        middle = (low + high) // 2
        if estimate(model, middle, optimizer=optimizer) <= budget:
            low = middle
        else:
            high = middle
    return low


def budget_loader(model: MLP, data: Dataset, optimizer: Optimizer, loader: DataLoader,
                  accumulate: int | str, budget: int | str, ranks: int = 1
                  ) -> tuple[DataLoader, int | str]:
    """The loader and accumulation ``fit`` trains with under a memory ``budget``.

    ``ranks``: the number of data-parallel processes (``fit(comm=...)``); the
    budget is per rank, and a rank computes ``ceil(B / ranks)`` rows of each
    batch of ``B``, so batches (and GD's chunks) may be ``ranks`` times larger.

    ``GD``: the full batch is cut into ``c = max_batch_size(...)`` rows per
    iteration, in order, and their gradients are accumulated into one step per
    epoch (``accumulate="epoch"``): the same update as one full batch, since
    the sum of the chunks' gradient sums over ``n`` is the full gradient.
    Other optimizers keep their batches; a batch that does not fit raises.

    Raises
    ------
    ValueError
        If a batch of the optimizer does not fit the budget.
    """
    n = len(data)
    largest = max_batch_size(model, budget, optimizer) * ranks
    if optimizer.batch_size is None:
        if largest >= n:
            return loader, accumulate
        return DataLoader(data, batch_size=largest, shuffle=False), "epoch"
    if optimizer.batch_size > largest:
        raise ValueError(f"batch_size={optimizer.batch_size} needs "
                         f"{format_bytes(estimate(model, optimizer.batch_size, optimizer=optimizer))}"
                         f", more than memory_budget {format_bytes(parse_bytes(budget))}; the "
                         f"largest batch that fits is {largest} rows (use accumulate= to keep "
                         f"the rows per step)")
    return loader, accumulate
