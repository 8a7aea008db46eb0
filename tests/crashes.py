"""A training run that dies at a chosen step: what the checkpoint tests resume from."""

from __future__ import annotations


class Crash(Exception):
    """Stands in for the process dying."""


def crash_at(optimizer, step: int | None):
    """``optimizer``, whose ``step``-th training step raises :class:`Crash` (``None``: never).

    The steps before it are taken as usual; the crashing one changes nothing.
    """
    if step is None:
        return optimizer
    real_step, count = optimizer.step, [0]

    def crashing_step(params, grads):
        count[0] += 1
        if count[0] == step:
            raise Crash
        real_step(params, grads)

    optimizer.step = crashing_step
    return optimizer
