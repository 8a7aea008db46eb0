"""Hidden-layer activation functions, their derivatives, and the one table of them.

Each activation ``f`` is applied element-wise to the pre-activation ``z`` of a
hidden layer, ``a = f(z)``. Backpropagation needs ``f'(z)``; for the three
activations here it can be written in terms of the output ``a`` alone, so the
forward pass only has to keep the activations, not the pre-activations::

    | name    | f(z)                 | f'(z) written with a = f(z) | initialisation |
    |---------|----------------------|-----------------------------|----------------|
    | relu    | max(0, z)            | 1 if a > 0 else 0           | He             |
    | tanh    | tanh(z)              | 1 - a**2                    | Glorot         |
    | sigmoid | 1 / (1 + exp(-z))    | a * (1 - a)                 | Glorot         |

:data:`ACTIVATIONS` is the registry the rest of the package reads: ``MLP``'s
choices and initialisation, the reference kernels, ``memory.estimate``, the
compiled kernels' dispatch, the command line and the tests. A new activation
is one :class:`Activation` passed to :func:`register` (see docs/architecture.md,
"Where a new piece goes").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._arrays import NUMPY, Array, Namespace
from ._registry import Registry, check_steps

INITS = ("he", "glorot")
"""Weight initialisations an activation may ask for (see ``MLP``, Notes)."""

LEDGER_UNITS = ("array", "mask")
"""The arrays of an activation's memory walk: ``(n, h)`` in the model's dtype, or of bool."""


@dataclass(frozen=True)
class Activation:
    """One activation function: everything the package needs to know about it.

    Attributes
    ----------
    name : str
        What ``MLP(activation=...)``, model files and ``--activation`` call it.
    forward : callable
        ``a = f(z)``, element-wise, on an ``(n, h)`` array; returns a new array.
        Called as ``forward(z, xp)``: ``xp`` is the array namespace of ``z``
        (``numpy``, or the array API namespace of a torch, cupy or
        array_api_strict model, see docs/gpu.md); written with ``xp``'s
        functions, one definition serves every backend.
    derivative : callable
        ``f'(z)`` written with the output ``a = f(z)`` (the backward pass keeps
        only ``a``), called as ``derivative(a, xp)``; returns a new array of
        ``a``'s shape and dtype.
    init : {"he", "glorot"}
        The weight initialisation of the layers it follows: He normal for
        relu-like functions, Glorot uniform for the others.
    forward_steps, derivative_steps : tuple of (str, str)
        The arrays ``forward`` and ``derivative`` allocate and free, in order,
        ending with the result alive (what ``memory.estimate`` counts): pairs
        ``(step, unit)`` of ``_registry.LEDGER_STEPS`` and :data:`LEDGER_UNITS`.
    compiled : int or None
        Its code in the compiled kernels (``kernels/compiled/layers.py``,
        ``activate`` and ``dense_backward``), or ``None``: no compiled twin, and
        ``backend="numba"`` runs the reference kernels with a
        :class:`~scratchgd.CompiledFallbackWarning`.
    """

    name: str
    forward: Callable[[Array, Namespace], Array]
    derivative: Callable[[Array, Namespace], Array]
    init: str
    forward_steps: tuple[tuple[str, str], ...]
    derivative_steps: tuple[tuple[str, str], ...]
    compiled: int | None = None


def relu(z: Array, xp: Namespace = NUMPY) -> Array:
    """Rectified linear unit, ``a = max(0, z)``, element-wise."""
    return xp.maximum(z, 0)


def tanh(z: Array, xp: Namespace = NUMPY) -> Array:
    """Hyperbolic tangent, ``a = tanh(z)``, element-wise."""
    return xp.tanh(z)


def sigmoid(z: Array, xp: Namespace = NUMPY) -> Array:
    """Logistic sigmoid, ``a = 1 / (1 + exp(-z))``, element-wise.

    Written as ``(1 + tanh(z / 2)) / 2``, the same function without the
    overflow that ``exp(-z)`` hits for large negative ``z``.
    """
    return 0.5 * (1 + xp.tanh(0.5 * z))


def relu_grad(a: Array, xp: Namespace = NUMPY) -> Array:
    """``f'(z)`` of relu from its output: ``1`` where ``a > 0``, else ``0``."""
    return xp.astype(a > 0, a.dtype)


def tanh_grad(a: Array, xp: Namespace = NUMPY) -> Array:
    """``f'(z)`` of tanh from its output: ``1 - a**2``."""
    return 1 - a * a


def sigmoid_grad(a: Array, xp: Namespace = NUMPY) -> Array:
    """``f'(z)`` of the sigmoid from its output: ``a * (1 - a)``."""
    return a * (1 - a)


ACTIVATIONS = Registry("activation", Activation)
"""The registered activations by name, in the order they were registered."""


def register(activation: Activation) -> Activation:
    """Add ``activation`` to :data:`ACTIVATIONS`; returns it. Undone by :func:`unregister`.

    Raises
    ------
    TypeError, ValueError
        If it is not an :class:`Activation`, its name is taken, its ``init``
        or memory steps are unknown, or its compiled code is another's.
    """
    if isinstance(activation, Activation):
        if activation.init not in INITS:
            raise ValueError(f"activation.init must be one of {INITS}, got {activation.init!r}")
        for field in ("forward_steps", "derivative_steps"):
            check_steps(f"activation.{field}", getattr(activation, field), LEDGER_UNITS)
    return ACTIVATIONS.add(activation)


def unregister(name: str) -> None:
    """Remove the activation ``name`` from :data:`ACTIVATIONS`."""
    ACTIVATIONS.remove(name)


_NEW, _FREE, _ELIDE = ("alloc", "array"), ("free", "array"), ("elide", "array")
register(Activation("relu", relu, relu_grad, "he", (_NEW,),
                    (("alloc", "mask"), _NEW, ("free", "mask")), compiled=0))  # a > 0, .astype
register(Activation("tanh", tanh, tanh_grad, "glorot", (_NEW,),
                    (_NEW, _NEW, _FREE), compiled=1))                          # a * a, 1 - (...)
register(Activation("sigmoid", sigmoid, sigmoid_grad, "glorot",
                    (_NEW, _NEW, _FREE, _ELIDE, _ELIDE),       # 0.5 z, tanh(...), 1 + (...), 0.5 *
                    (_NEW, _ELIDE), compiled=2))               # 1 - a, a * (...)
