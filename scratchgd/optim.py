"""Optimizers: one update rule, three ways of drawing batches.

Every optimizer applies the same training step to the gradient ``g`` it is
given (PyTorch's momentum convention, the same trajectory as scikit-learn's
for a constant learning rate)::

    v <- momentum * v + g
    w <- w - lr * v

With ``momentum = 0`` this is plain gradient descent, ``w <- w - lr * g``.
The three classes differ only in the batches they ask the data loader for:

* ``GD``           — the whole data set (``batch_size=None``), in order;
* ``SGD``          — one random sample per step (``batch_size=1``);
* ``MiniBatchSGD`` — a random subset of ``batch_size`` rows per step.

:data:`OPTIMIZERS` is the table the command line reads (``--optimizer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks
from ._arrays import NUMPY, Array
from .data import CHUNK_SIZE, DataLoader, Dataset
from .errors import TrainingDiverged

__all__ = ["GD", "OPTIMIZERS", "SGD", "MiniBatchSGD", "Optimizer", "OptimizerKind"]


class Optimizer:
    """The shared update rule; subclasses fix how batches are drawn.

    Parameters
    ----------
    lr : float
        Learning rate, ``> 0``.
    batch_size : int or None
        Rows per iteration; ``None`` is the full data set.
    momentum : float
        ``mu`` in ``[0, 1)``.
    shuffle : bool or "chunks"
        Whether the loader draws a fresh permutation every epoch; ``"chunks"``
        shuffles blocks of ``chunk_size`` contiguous rows and the rows within
        them (sequential reads from a memory-mapped file; see ``DataLoader``).
    chunk_size : int
        Rows per block for ``shuffle="chunks"``.
    """

    def __init__(self, lr: float, batch_size: int | None, momentum: float = 0.0,
                 shuffle: bool | str = True, chunk_size: int = CHUNK_SIZE) -> None:
        self.lr = _checks.finite_float("lr", lr, low=0.0, low_inclusive=False)
        self.batch_size = _checks.positive_int("batch_size", batch_size, allow_none=True)
        self.momentum = _checks.finite_float("momentum", momentum, low=0.0, low_inclusive=True,
                                             high=1.0)
        self.shuffle = _checks.shuffle_mode("shuffle", shuffle)
        self.chunk_size = _checks.positive_int("chunk_size", chunk_size)
        self.velocity: list[np.ndarray] | None = None
        self.xp = NUMPY
        """The array namespace of the weights it updates: ``fit`` sets the model's at the start."""

    def loader(self, data: Dataset, seed: int = 0) -> DataLoader:
        """The data loader this optimizer draws its batches from."""
        return DataLoader(data, batch_size=self.batch_size, shuffle=self.shuffle, seed=seed,
                          chunk_size=self.chunk_size)

    def step(self, params: list[Array], grads: list[Array], finite: Array | None = None) -> None:
        r"""One training step, in place: ``v <- mu v + g``, ``w <- w - lr v``.

        .. math:: v \leftarrow \mu v + g, \qquad w \leftarrow w - \mathrm{lr}\, v

        ``finite``: a 0-d boolean of the weights' namespace that must hold too
        (the engine's check of the step's losses, on a GPU), read together with
        the check of the new weights: one device-to-host read per step.

        Raises
        ------
        TrainingDiverged
            If the new weights would not all be finite (or ``finite`` is
            false); nothing is changed then.
        """
        # lr and momentum are Python floats, which NumPy 2 and the array API cast to each
        # weight's dtype: a float32 model steps in float32, and an lr that overflows float32
        # makes inf, which the check below catches
        xp = self.xp
        if self.momentum:
            new_velocity = [self.momentum * v + g
                            for v, g in zip(self.buffers(params), grads, strict=True)]
        else:
            new_velocity = grads
        new_params = [w - self.lr * v for w, v in zip(params, new_velocity, strict=True)]
        checks = [xp.all(xp.isfinite(w)) for w in new_params]
        if finite is not None:
            checks.append(finite)
        if not (all(checks) if xp is NUMPY else bool(xp.all(xp.stack(checks)))):
            raise TrainingDiverged("the update would make the weights non-finite")
        for w, new_w in zip(params, new_params, strict=True):
            w[...] = new_w
        if self.momentum:
            for v, new_v in zip(self.velocity, new_velocity, strict=True):
                v[...] = new_v

    def buffers(self, params: list[Array]) -> list[Array]:
        """The momentum buffers ``v``, one per parameter, created as zeros on first use."""
        if self.velocity is None:
            self.velocity = [self.xp.zeros_like(p) for p in params]
        return self.velocity

    def reset(self) -> None:
        """Forget the momentum buffers (before training a fresh model)."""
        self.velocity = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(lr={self.lr}, batch_size={self.batch_size}, "
                f"momentum={self.momentum})")


class GD(Optimizer):
    """Full-batch gradient descent: every step sees the whole data set.

    Examples
    --------
    >>> train, test = sg.datasets.digits(test_size=0.2, seed=0)   # 1,437 training rows
    >>> len(sg.GD(lr=0.5).loader(train))                          # iterations per epoch
    1
    """

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        super().__init__(lr, batch_size=None, momentum=momentum, shuffle=False)


class SGD(Optimizer):
    """Stochastic gradient descent: every step sees one randomly drawn sample.

    Examples
    --------
    >>> train, test = sg.datasets.digits(test_size=0.2, seed=0)   # 1,437 training rows
    >>> len(sg.SGD(lr=0.01).loader(train))                        # iterations per epoch
    1437
    """

    def __init__(self, lr: float, momentum: float = 0.0, shuffle: bool | str = True,
                 chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__(lr, batch_size=1, momentum=momentum, shuffle=shuffle,
                         chunk_size=chunk_size)


class MiniBatchSGD(Optimizer):
    """Mini-batch SGD: every step sees ``batch_size`` randomly drawn rows.

    Examples
    --------
    >>> train, test = sg.datasets.digits(test_size=0.2, seed=0)   # 1,437 training rows
    >>> len(sg.MiniBatchSGD(lr=0.1, batch_size=32).loader(train))  # ceil(1437 / 32)
    45
    """

    def __init__(self, lr: float, batch_size: int = 32, momentum: float = 0.0,
                 shuffle: bool | str = True, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__(lr, batch_size=batch_size, momentum=momentum, shuffle=shuffle,
                         chunk_size=chunk_size)


@dataclass(frozen=True)
class OptimizerKind:
    """One ``--optimizer`` of the command line.

    Attributes
    ----------
    name : str
        Its ``--optimizer`` value.
    make : type
        The :class:`Optimizer` class; called as ``make(lr, momentum=...)``, and
        with ``batch_size=`` too when ``batch_size`` is set.
    lr : float
        Its default learning rate with cross-entropy (a loss scales it:
        ``losses.Loss.lr_scale``).
    batch_size : int or None
        Its default ``--batch-size``; ``None``: it takes none (its class fixes it).
    help : str
        What it draws, for ``--help``.
    """

    name: str
    make: type[Optimizer]
    lr: float
    batch_size: int | None
    help: str


OPTIMIZERS = {kind.name: kind for kind in (
    OptimizerKind("minibatch", MiniBatchSGD, 0.1, 32, "batches of --batch-size rows"),
    OptimizerKind("sgd", SGD, 0.01, None, "a batch of 1"),
    OptimizerKind("gd", GD, 0.5, None, "the full batch"),
)}
"""The command line's optimizers by ``--optimizer`` name, the default first."""
