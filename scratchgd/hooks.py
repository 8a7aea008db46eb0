"""What a run does beside the training cycle, at the named points of :func:`scratchgd.fit`'s loop.

=================  =============================================================================
point              collaborators (in this order)
=================  =============================================================================
start of run       :meth:`Checkpoints.resume` (a fresh History and Position, or the checkpoint's),
                   :class:`Report` (opens the progress bar; says where a resumed run stands)
before a span      :meth:`Checkpoints.span_steps` (the steps to the next checkpoint due),
                   :class:`MappedFiles` (memory-mapped data not truncated), then the
                   ``span_steps`` of ``fit``'s ``hooks``: the span ends at the smallest limit
each batch         :meth:`NoiseTracker.add` (``track_noise``; called by the Python engine)
end of span        :meth:`Checkpoints.end_of_span` (a checkpoint due inside the epoch),
                   :class:`MappedFiles` (memory-mapped data not truncated), then ``fit``'s ``hooks``
end of epoch       :class:`NoiseTracker` (``History.b_simple``), :class:`Report` (the epoch's
                   line), :class:`Checkpoints` (the epoch's checkpoint), :class:`EpochCallback`
                   (``fit``'s ``on_epoch_end``), then ``fit``'s ``hooks``
=================  =============================================================================

A collaborator is a :class:`Hook`: ``span_steps(history, at)``,
``end_of_span(history, at)`` and ``end_of_epoch(history, at)``, each doing
nothing unless overridden; ``at`` is where the span is about to start, or where
the span or epoch ended. A new built-in one is a subclass and an item of the
loop's list of hooks; a caller's own is passed as ``fit(hooks=[...])`` and may
end the run by raising :class:`scratchgd.StopTraining` after a span or an epoch. (The memory budget acts
earlier, when the run is planned: :mod:`scratchgd.plan`.)
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable
from types import TracebackType

import numpy as np
from tqdm.auto import tqdm

from . import _checks, _files
from . import checkpoint as _ckpt
from .data import Dataset
from .distributed import Group
from .errors import StopTraining
from .history import History, Position, epoch_line
from .mlp import MLP
from .noise import batch_estimates, noise_scale
from .npzfile import remove_temporaries
from .optim import Optimizer
from .plan import Plan

__all__ = ["Checkpoints", "EpochCallback", "Hook", "NoiseTracker", "Report"]


class Hook:
    """A collaborator of the loop, called before and after every span and after every epoch.

    ``fit(hooks=[...])`` adds the caller's own after the built-in ones.
    ``end_of_span`` and ``end_of_epoch`` may raise :class:`scratchgd.StopTraining`
    to end the run there, at a training-step boundary.
    """

    def span_steps(self, history: History, at: Position) -> int | None:
        """The most training steps the next span may run (>= 1), or ``None`` for no limit.

        The span runs to the epoch's end or the smallest limit of any hook.
        Cutting a run into spans changes none of its results.
        """
        return None

    def end_of_span(self, history: History, at: Position) -> None:
        """After a span of whole training steps, ``at`` on a step boundary."""

    def end_of_epoch(self, history: History, at: Position) -> None:
        """After the epoch ``at.epoch``, once its figures are in ``history``."""


class NoiseTracker(Hook):
    """``fit(track_noise=True)``: each epoch's gradient noise scale from its own batches.

    Every batch of ``B >= 2`` rows gives unbiased estimates of ``|G|^2`` and
    ``tr(Sigma)`` (:func:`scratchgd.noise.batch_estimates`); they are summed
    over the epoch here (``grad_sq``, ``trace_cov``, over ``batches`` batches)
    and divided when it ends (:func:`scratchgd.noise.noise_scale`). A one-row
    batch carries no estimate. A checkpoint stores the sums of the epoch in
    progress (:meth:`sums`, :meth:`restore`).
    """

    def __init__(self) -> None:
        self.grad_sq, self.trace_cov, self.batches = 0.0, 0.0, 0

    def add(self, grads: list[np.ndarray], sq_norms: np.ndarray) -> None:
        """Add the estimates of one batch: its gradient sums and ``|grad l_i|^2`` per row."""
        if len(sq_norms) > 1:
            grad_sq, trace_cov = batch_estimates(grads, sq_norms)
            self.grad_sq += grad_sq
            self.trace_cov += trace_cov
            self.batches += 1

    def end_of_epoch(self, history: History, at: Position) -> None:
        history.b_simple.append(noise_scale(self.grad_sq, self.trace_cov)
                                if self.batches else math.nan)
        self.grad_sq, self.trace_cov, self.batches = 0.0, 0.0, 0  # the next epoch's

    def sums(self) -> dict[str, float | int]:
        """The epoch's sums under the names a checkpoint stores them with its position."""
        return {"noise_grad_sq": self.grad_sq, "noise_trace_cov": self.trace_cov,
                "noise_batches": self.batches}

    def restore(self, sums: dict[str, float | int]) -> None:
        """Continue the epoch's sums of a checkpoint (:meth:`sums`' names)."""
        self.grad_sq, self.trace_cov = sums["noise_grad_sq"], sums["noise_trace_cov"]
        self.batches = sums["noise_batches"]


class MappedFiles(Hook):
    """Memory-mapped training or validation data: its files checked before and after every span.

    ``datasets`` keeps only those read from a memory map: with none, :func:`scratchgd.fit`
    leaves the hook out.

    :meth:`scratchgd.Dataset.check_files` raises ``OSError`` once a file has
    shrunk below what its map needs, before the next span (or the epoch's
    validation) reads past its end, which would kill the process by SIGBUS.
    """

    def __init__(self, *datasets: Dataset | None) -> None:
        self.datasets = [data for data in datasets if data is not None and data.mapped()]

    def span_steps(self, history: History, at: Position) -> None:
        self.end_of_span(history, at)

    def end_of_span(self, history: History, at: Position) -> None:
        for data in self.datasets:
            data.check_files()


def bar_fits() -> bool:
    """Whether a progress bar can share the output with the lines written through it.

    True in a notebook (tqdm's widget) and when standard output and standard
    error are both a terminal. When either is piped or redirected, the bar's
    redraws on standard error would land between the lines written to
    standard output (``scratchgd train 2>&1 | tee log``), so there is no bar.
    """
    if any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__):
        return True
    return all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr))


class Report(Hook):
    """``fit(progress=True)``: a progress bar over iterations and one line per epoch.

    A context manager: the bar closes when the run ends or fails. A resumed
    run (``history`` not empty) starts with a line saying where it stands.
    The lines are written through the bar; the bar itself only where
    :func:`bar_fits`.
    """

    def __init__(self, progress: bool, epochs: int, iterations_per_epoch: int, history: History,
                 at: Position, checkpoint: str | os.PathLike | None) -> None:
        self.progress, self.epochs = progress, epochs
        self.bar = None  # progress=False: nothing to write, no bar to move (a span costs less)
        if progress:
            self.bar = tqdm(total=epochs * iterations_per_epoch, initial=history.iterations,
                            disable=not bar_fits(), unit="it", leave=False, dynamic_ncols=True)
        if history.iterations and progress:
            self.bar.write(f"resumed from {os.fspath(checkpoint)}: epoch {at.epoch}, "
                           f"iteration {at.iteration}, step {history.steps}")

    def __enter__(self) -> Report:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, iterations: int) -> None:
        """Move the bar by ``iterations`` done."""
        if self.bar is not None:
            self.bar.update(iterations)

    def end_of_epoch(self, history: History, at: Position) -> None:
        if self.progress:
            self.bar.write(epoch_line(history, self.epochs))


class EpochCallback(Hook):
    """``fit(on_epoch_end=fn)``: ``fn(history)`` after every epoch."""

    def __init__(self, fn: Callable[[History], object]) -> None:
        self.fn = fn

    def end_of_epoch(self, history: History, at: Position) -> None:
        self.fn(history)


class Checkpoints(Hook):
    """``fit(checkpoint=, checkpoint_every=, resume=)``: resume a run, then checkpoint it.

    Checkpoints are written only between training steps, never with a
    half-filled accumulation: after the span that ends on every
    ``checkpoint_every``-th step, or after every epoch, and once more when
    training ends. With a ``group`` only rank 0 writes; on resume rank 0 reads
    the file and sends its bytes, so no rank needs a shared file system.
    ``noise``: the run's :class:`NoiseTracker`, whose sums of the epoch in
    progress a checkpoint carries (zeros without one).
    """

    def __init__(self, model: MLP, optimizer: Optimizer, plan: Plan, epochs: int,
                 path: str | os.PathLike | None, every: int | str, group: Group | None,
                 noise: NoiseTracker | None = None) -> None:
        self.model, self.optimizer, self.plan, self.epochs = model, optimizer, plan, epochs
        self.path, self.group, self.noise = path, group, noise
        self.every = None if path is None or every == "epoch" else every
        self.writes = path is not None and (group is None or group.rank == 0)  # rank 0 writes
        # the data set's identity, stored in every checkpoint and checked on resume
        self.data = None if path is None else _ckpt.fingerprint(plan.loader.dataset)

    def resume(self, resume: bool) -> tuple[History, Position]:
        """The History and Position the run starts from: fresh, or those of the checkpoint.

        ``resume``: continue from the checkpoint file if it exists (its weights,
        momentum buffers and generator state restored); otherwise start afresh.
        """
        if self.writes:
            remove_temporaries(self.path)
        fresh = History(), Position()
        if self.path is None or not resume:
            return fresh
        if self.group is None:
            return self._restore() if os.path.exists(self.path) else fresh
        content = self.group.bcast(_read_bytes(self.path) if self.group.rank == 0 else None)
        return fresh if content is None else self.group.agree(lambda: self._restore(content))

    def span_steps(self, history: History, at: Position) -> int | None:
        """Steps to the next multiple of ``checkpoint_every`` steps, where a checkpoint is due."""
        return None if self.every is None else self.every - history.steps % self.every

    def end_of_span(self, history: History, at: Position) -> None:
        if self.writes and at.iteration < len(self.plan.loader):  # due inside the epoch
            self._save(history, at)

    def end_of_epoch(self, history: History, at: Position) -> None:
        if self.writes and (self.every is None or at.epoch == self.epochs
                            or history.steps % self.every == 0):
            self._save(history, at.next_epoch())

    def _save(self, history: History, at: Position) -> None:
        _ckpt.save(self.path, self.model, self.optimizer, self.plan.loader, history, at,
                   self.plan.settings, data=self.data,
                   noise=None if self.noise is None else self.noise.sums())

    def _restore(self, content: bytes | None = None) -> tuple[History, Position]:
        """History and position of the run saved in the checkpoint, its state restored.

        ``content``: the file's bytes as rank 0 read and broadcast them.
        """
        saved = _ckpt.load(self.path, content)
        saved.check(self.model, self.optimizer, self.plan.loader, self.plan.settings, self.data)
        try:
            history = History(**saved.history)
            at = Position(order=saved.order, **{key: value for key, value in
                                                saved.position.items() if key not in _ckpt.NOISE})
        except TypeError as exc:
            raise saved.fail(f"does not match this version of scratchgd: {exc}") from None
        needed = at.epoch if at.iteration else history.epochs
        if needed > self.epochs:
            raise ValueError(f"checkpoint {os.fspath(self.path)!r} has reached epoch {needed}, "
                             f"beyond epochs={self.epochs}")
        saved.restore(self.model, self.optimizer, self.plan.loader)
        if self.noise is not None:
            self.noise.restore(saved.position)
        return history, at


def check_hooks(hooks: Iterable[Hook]) -> list[Hook]:
    """``fit``'s ``hooks`` as a list, each a :class:`Hook`, else ``TypeError``."""
    if isinstance(hooks, Hook) or not isinstance(hooks, Iterable):
        raise TypeError(f"hooks must be a list of scratchgd.hooks.Hook, got {hooks!r}")
    hooks = list(hooks)
    for hook in hooks:
        if not isinstance(hook, Hook):
            raise TypeError(f"hooks must hold scratchgd.hooks.Hook objects, got {hook!r}")
    return hooks


def call(hooks: list[Hook], point: str, history: History, at: Position) -> bool:
    """Call ``point`` (``"end_of_span"`` or ``"end_of_epoch"``) of every hook, in order.

    Returns whether one raised :class:`scratchgd.StopTraining`; the hooks after it
    are called all the same, so each sees where the run ends.
    """
    stop = False
    for hook in hooks:
        try:
            getattr(hook, point)(history, at)
        except StopTraining:
            stop = True
    return stop


def span_end(hooks: list[Hook], history: History, at: Position, k: int, last: int) -> int:
    """The iteration that ends the next span: ``last`` (the epoch's), or sooner a hook's limit.

    A hook's limit of ``s`` steps is ``at.iteration + s * k``: spans start and
    end on step boundaries, a step taken every ``k`` iterations.
    """
    stop = last
    for hook in hooks:
        steps = hook.span_steps(history, at)
        if steps is not None:
            stop = min(stop, at.iteration + _checks.positive_int(
                f"{type(hook).__name__}.span_steps()", steps) * k)
    return stop


def _read_bytes(path: str | os.PathLike) -> bytes | None:
    """The bytes of the file at ``path``, or ``None`` if there is none (rank 0, on resume).

    Only a regular file whose size fits this process's memory is read
    (:mod:`scratchgd._files`): a FIFO or a device is refused, never read.
    """
    try:
        size = _files.regular_size(path)
        _checks.fits_in_memory("checkpoint", os.fspath(path), size)
        with _files.open_regular(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(f"checkpoint {exc}") from None
