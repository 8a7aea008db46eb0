"""Exceptions of scratchgd."""


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss, gradient or weight and was stopped.

    The model keeps the last weights that were finite. The usual cure is a
    smaller learning rate.
    """
