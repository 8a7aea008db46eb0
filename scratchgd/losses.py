"""Loss functions: the per-sample loss ``l_i`` and its gradient ``dl_i/dz_i``.

``z`` are the network's raw outputs, shape ``(n, k)``. Both functions return the
SUM of the per-sample losses over the ``n`` rows and the gradient of that sum,
so a caller can add batches together and divide by the rows it actually saw
(``reduction="mean"`` is the sum divided by ``n``; see ``MLP.loss_and_grads``).

cross_entropy
    ``l_i = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_i[y_i]`` with integer
    labels ``y: (n,)``. ``dl_i/dz_i = softmax(z_i) - onehot(y_i)``.
mse
    ``l_i = (1/k) sum_j (z_ij - y_ij)**2`` with targets ``y: (n, k)``.
    ``dl_i/dz_i = (2/k) (z_i - y_i)``.

With ``reduction="mean"`` these equal PyTorch's ``CrossEntropyLoss()`` and
``MSELoss()`` (which averages over all ``n*k`` elements, i.e. the mean over rows
of the per-row mean above).

:data:`LOSSES` is the registry the rest of the package reads (``MLP``'s
choices, the reference kernels, ``memory.estimate``, the compiled kernels'
dispatch, the command line, the tests); a new loss is one :class:`Loss` passed
to :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._arrays import NUMPY, Array, Namespace
from ._registry import Registry, check_steps

__all__ = ["LEDGER_UNITS", "LOSSES", "Loss", "cross_entropy", "log_softmax", "mse", "onehot",
           "register", "unregister"]

LEDGER_UNITS = ("outputs", "rows", "index")
"""The arrays of a loss's memory walk: ``(n, k)`` and ``(n,)`` in the model's
dtype, and ``(n,)`` int64 (a row index)."""


@dataclass(frozen=True)
class Loss:
    """One loss: everything the package needs to know about it.

    Attributes
    ----------
    name : str
        What ``MLP(loss=...)``, model files and ``--loss`` call it.
    function : callable
        ``(z, y, xp) -> (loss_sum, dz)``: the SUM of the per-sample losses over
        the rows of the outputs ``z: (n, k)``, a 0-d array in ``z``'s dtype (so
        it can stay on a GPU until it is read), and its gradient ``dL/dz``;
        ``xp`` is the array namespace of ``z`` (see ``activations.Activation``).
    classes : bool
        True: ``y`` are integer class labels ``(n,)`` (a classifier, at least
        2 outputs); False: real targets ``(n, k)`` (a regressor).
    lr_scale : float
        The command line's default learning rates are the optimizer's
        (``optim.OPTIMIZERS``) times this.
    steps : tuple of (str, str)
        The arrays ``function`` allocates and frees, in order, ending with
        ``dz`` alive (what ``memory.estimate`` counts): pairs ``(step, unit)``
        of ``_registry.LEDGER_STEPS`` and :data:`LEDGER_UNITS`.
    compiled : int or None
        Its code in the compiled kernels (``kernels/compiled``), or ``None``:
        no compiled twin, and ``backend="numba"`` runs the reference kernels
        with a :class:`~scratchgd.CompiledFallbackWarning`.
    """

    name: str
    function: Callable[[Array, Array, Namespace], tuple[Array, Array]]
    classes: bool
    lr_scale: float
    steps: tuple[tuple[str, str], ...]
    compiled: int | None = None


def onehot(labels: Array, like: Array, xp: Namespace = NUMPY) -> Array:
    """``(n, k)`` rows of the identity: row ``i`` is 1 at column ``labels[i]``, 0 elsewhere.

    ``labels``: ``(n,)`` integers in ``[0, k)``; ``k``, the dtype and the
    device are those of ``like``, an ``(n, k)`` array. Gathered from
    ``eye(k)``: the array API's way to ``x[rows, labels]``, which it lacks.
    """
    k = like.shape[1]
    return xp.take(xp.eye(k, dtype=like.dtype, device=like.device), labels, axis=0)


def log_softmax(z: Array, xp: Namespace = NUMPY) -> Array:
    """Numerically stable ``log softmax(z)`` along the last axis.

    ``log softmax(z)_j = (z_j - m) - log(1 + sum_{c != c*} exp(z_c - m))`` with
    ``m = z_{c*} = max_c z_c``: subtracting the row maximum keeps every ``exp``
    <= 1, so nothing overflows; the maximum's own term ``exp(0) = 1`` is taken
    out of the sum (times ``1 - onehot(c*)``) and added back by ``log1p``, so a
    confident prediction (a loss near 0) keeps its full relative precision.
    ``c*`` is the first maximum (``argmax``), as ties go.
    """
    top = xp.argmax(z, axis=1)                                    # c*, (n,)
    shifted = z - xp.take_along_axis(z, top[:, None], axis=1)     # z - m
    others = xp.exp(shifted) * (1 - onehot(top, z, xp))
    return shifted - xp.log1p(xp.sum(others, axis=1, keepdims=True))


def cross_entropy(z: Array, y: Array, xp: Namespace = NUMPY) -> tuple[Array, Array]:
    r"""Summed softmax cross-entropy and its gradient.

    .. math::

        L = -\sum_i \log \operatorname{softmax}(z_i)_{y_i}, \qquad
        \frac{\partial L}{\partial z} = \operatorname{softmax}(z) - \operatorname{onehot}(y)

    Parameters
    ----------
    z : (n, k) raw outputs (logits).
    y : (n,) integer class labels in ``[0, k)``.
    xp : the array namespace of ``z`` and ``y``.

    Returns
    -------
    loss_sum : 0-d array in ``z``'s dtype, the sum over the n rows.
    dz : (n, k), ``dL/dz``.
    """
    logp = log_softmax(z, xp)
    loss_sum = -xp.sum(xp.take_along_axis(logp, y[:, None], axis=1))
    return loss_sum, xp.exp(logp) - onehot(y, z, xp)


def mse(z: Array, y: Array, xp: Namespace = NUMPY) -> tuple[Array, Array]:
    r"""Summed per-row mean squared error and its gradient.

    .. math::

        L = \sum_i \frac{1}{k} \sum_j (z_{ij} - y_{ij})^2, \qquad
        \frac{\partial L}{\partial z} = \frac{2}{k} (z - y)

    Parameters
    ----------
    z : (n, k) outputs.
    y : (n, k) targets.
    xp : the array namespace of ``z`` and ``y``.

    Returns
    -------
    loss_sum : 0-d array in ``z``'s dtype, the sum over the n rows.
    dz : (n, k), ``dL/dz``.
    """
    k = z.shape[1]
    diff = z - y
    return xp.sum(diff * diff) / k, (2 / k) * diff


LOSSES = Registry("loss", Loss)
"""The registered losses by name, in the order they were registered."""


def register(loss: Loss) -> Loss:
    """Add ``loss`` to :data:`LOSSES`; returns it. Undone by :func:`unregister`.

    Raises
    ------
    TypeError, ValueError
        If it is not a :class:`Loss`, its name is taken, its memory steps are
        unknown, or its compiled code is another's.
    """
    if isinstance(loss, Loss):
        check_steps("loss.steps", loss.steps, LEDGER_UNITS)
    return LOSSES.add(loss)


def unregister(name: str) -> None:
    """Remove the loss ``name`` from :data:`LOSSES`."""
    LOSSES.remove(name)


_A, _F = "alloc", "free"
register(Loss("cross_entropy", cross_entropy, classes=True, lr_scale=1.0, compiled=0, steps=(
    (_A, "index"), (_A, "rows"), (_A, "outputs"),       # top = argmax; m; shifted = z - m
    (_F, "rows"), (_A, "outputs"), (_A, "outputs"),     # exp(shifted); onehot(top)
    (_A, "outputs"), (_F, "outputs"), (_F, "index"),    # 1 - onehot
    (_A, "outputs"), (_F, "outputs"), (_F, "outputs"),  # others = exp(...) * (1 - ...)
    (_A, "rows"), (_A, "rows"), (_F, "rows"),           # .sum(axis=1); log1p(...)
    (_A, "outputs"), (_F, "rows"),                      # logp = shifted - log1p(...)
    (_F, "outputs"), (_F, "outputs"),                   # others, shifted
    (_A, "rows"), (_F, "rows"),                         # logp[i, y_i], summed
    (_A, "outputs"), (_A, "outputs"), (_A, "outputs"),  # exp(logp); onehot(y); dz = ... - ...
    (_F, "outputs"), (_F, "outputs"), (_F, "outputs"))))  # exp(logp), onehot, logp
register(Loss("mse", mse, classes=False, lr_scale=0.02, compiled=1, steps=(
    (_A, "outputs"), (_A, "outputs"), (_F, "outputs"),  # diff = z - y; diff * diff
    (_A, "outputs"), (_F, "outputs"))))                 # dz = (2/k) diff; diff freed
