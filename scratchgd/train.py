"""The training loop: the article's training cycle, epoch after epoch.

One iteration of the cycle::

    draw a batch from the loader -> predict -> loss -> gradients
        -> accumulate -> (every k iterations) update the weights

:func:`fit` is that loop over epochs and spans of whole training steps. What
runs the iterations of a span is its engine (:mod:`scratchgd.engines`; read
:mod:`scratchgd.engines.python` for the cycle line by line); what happens
beside the cycle -- resuming, checkpoints, the gradient noise, the progress
lines, the caller's callback -- are hooks called at the loop's named points
(:mod:`scratchgd.hooks`); the arguments are checked and the loader is planned
before the run starts (:mod:`scratchgd.plan`).

``History`` counts iterations (batches drawn) and training steps (weight
updates) separately: with ``accumulate=k`` they differ by a factor of ``k``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable

import numpy as np

from . import _checks, engines
from .data import Dataset
from .distributed import Group
from .history import History, Position
from .hooks import (
    Checkpoints,
    EpochCallback,
    Hook,
    MappedFiles,
    NoiseTracker,
    Report,
    call,
    check_hooks,
    span_end,
)
from .losses import LOSSES
from .mlp import MLP
from .optim import Optimizer
from .plan import FitArgs, make_plan

__all__ = ["EVAL_BATCH", "History", "evaluate", "fit", "r_squared"]

EVAL_BATCH = 1024
"""Rows per forward pass of :func:`evaluate`."""


def evaluate(model: MLP, data: Dataset) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (accuracy NaN for mse).

    ``loss = (1/n) sum_i l_i``; ``accuracy = (1/n) #{i : argmax z_i = y_i}``.
    Computed in batches of ``EVAL_BATCH`` rows so memory stays bounded. With a
    target scaling the loss is measured in its scaled units, as in training
    (:meth:`MLP.targets`); :func:`scratchgd.regression_report` gives the
    errors in the targets' own units.

    Examples
    --------
    >>> train, test = sg.datasets.digits(test_size=0.2, seed=0)
    >>> model = sg.MLP([64, 32, 10], seed=0)
    >>> _ = sg.fit(model, train, sg.MiniBatchSGD(lr=0.1, batch_size=32), epochs=10, progress=False)
    >>> loss, accuracy = sg.evaluate(model, test)          # 360 test rows never trained on
    >>> bool(accuracy > 0.85), bool(loss < 0.5)
    (True, True)
    """
    loss, accuracy, _ = evaluate_in_blocks(model, data)
    return loss, accuracy


def evaluate_in_blocks(model: MLP, data: Dataset,
                       each: Callable[[slice, np.ndarray], object] | None = None
                       ) -> tuple[float, float, float]:
    """:func:`evaluate`'s loss and accuracy, and (mse) R^2 averaged over outputs, in one pass.

    The one evaluation loop: the rows of ``data`` are passed forward
    ``EVAL_BATCH`` at a time, and ``each(rows, z)``, if given, is shown every
    block's rows (a slice of ``data``) and raw outputs ``z`` (the reports of
    :mod:`scratchgd.metrics` add their own figures from them).
    R^2 is measured on the targets the network is trained to output; with a
    target scaling that is the R^2 of the targets themselves (each output's
    ``SS_res`` and ``SS_tot`` both scale by ``1 / std^2``), up to rounding.
    NaN for cross_entropy.
    """
    _checks.instance("model", model, MLP)
    y = model.targets(model.check_data(data, "data"))
    loss_sum, correct, sse = 0.0, 0, np.zeros(model.n_outputs)
    xp = model.xp
    for start in range(0, len(data), EVAL_BATCH):
        rows = slice(start, start + EVAL_BATCH)
        X, y_rows = model.to_device([model.inputs(data.X[rows]), y[rows]])
        z = model.kernels.forward(model.params, X, model.activation)[-1]
        if each is not None:
            each(rows, model.to_host([z])[0])   # NumPy, from any device
        loss_sum += float(LOSSES[model.loss].function(z, y_rows, xp)[0])
        if model.classifier:
            correct += int(xp.sum(xp.asarray(xp.argmax(z, axis=1) == y_rows, dtype=xp.int64)))
        else:
            sse += ((model.to_host([z])[0] - y[rows]).astype(np.float64) ** 2).sum(axis=0)
    if model.classifier:
        return loss_sum / len(data), correct / len(data), math.nan
    y = y.astype(np.float64)
    r2 = r_squared(sse, ((y - y.mean(axis=0)) ** 2).sum(axis=0))
    return loss_sum / len(data), math.nan, float(r2.mean())


def r_squared(ss_res: np.ndarray, ss_tot: np.ndarray) -> np.ndarray:
    """Per output ``R^2 = 1 - SS_res / SS_tot``, scikit-learn's convention for constant targets.

    ``SS_res = sum_i (y_ij - z_ij)^2``, ``SS_tot = sum_i (y_ij - mean_i y_ij)^2``;
    where ``SS_tot = 0`` (a constant target), ``R^2`` is 1 if ``SS_res`` is 0 too, else 0.
    """
    ss_res, ss_tot = np.asarray(ss_res, dtype=np.float64), np.asarray(ss_tot, dtype=np.float64)
    return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                    np.where(ss_res == 0, 1.0, 0.0))


def fit(model: MLP, data: Dataset, optimizer: Optimizer, epochs: int = 10,
        accumulate: int | str = 1, validation: Dataset | None = None, progress: bool = True,
        seed: int = 0, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | str = "epoch", resume: bool = False,
        memory_budget: int | str | None = None, track_noise: bool = False,
        rng: np.random.Generator | None = None,
        on_epoch_end: Callable[[History], object] | None = None,
        comm: object | None = None, reduce_dtype: str | None = None,
        hooks: Iterable[Hook] = ()) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs; return the :class:`History`.

    The cycle, numbered step by step: :source:`scratchgd.engines.python.PythonEngine.run_span`.

    Parameters
    ----------
    model : MLP
        Trained in place; its input and target scalings apply (:doc:`/usage`).
    data, validation : Dataset
        The training set; an optional set evaluated after every epoch.
    optimizer : GD, SGD or MiniBatchSGD
        The batch size (through its data loader) and the update rule.
    epochs : int
        Full passes over ``data``.
    accumulate : int or "epoch"
        Iterations per training step, their gradient sums over their rows (:doc:`/math`).
    progress : bool
        One line per epoch, and a bar over the iterations (:func:`scratchgd.hooks.bar_fits`).
    seed, rng : int, numpy.random.Generator, optional
        The loader's shuffling: a seed, or a generator to go on drawing from (:doc:`/estimators`).
    checkpoint, checkpoint_every, resume : path, "epoch" or int, bool
        Atomic checkpoints between training steps, and resuming from one (:doc:`/reliability`).
    memory_budget : int or str, optional
        Bytes one step may use; GD then computes its batch in chunks that fit (:doc:`/data`).
    track_noise : bool
        Record ``History.b_simple``, each epoch's gradient noise scale (:doc:`/batch_size`).
    on_epoch_end, hooks : callable, list of scratchgd.hooks.Hook, optional
        Called after every epoch; the caller's collaborators of the loop (:doc:`/architecture`).
    comm, reduce_dtype : mpi4py communicator, "float64" or "float32", optional
        Data-parallel training and the dtype of its sums (:doc:`/distributed`).

    Raises
    ------
    TrainingDiverged
        A loss or an update is not finite; the model keeps its last finite weights.
    ValueError
        A bad argument, or a checkpoint of another run; nothing has changed then.

    Examples
    --------
    >>> train, test = sg.datasets.digits(test_size=0.2, seed=0)
    >>> hist = sg.fit(sg.MLP([64, 16, 10]), train, sg.MiniBatchSGD(lr=0.1, batch_size=32),
    ...               epochs=2, progress=False)
    >>> hist.epochs, hist.iterations, hist.steps, hist.samples_seen
    (2, 90, 90, 2874)
    """
    hooks = check_hooks(hooks)
    group = None if comm is None else Group(comm)
    # start of run: every argument checked (alike on every rank) before anything changes
    plan = make_plan(FitArgs(
        model=model, data=data, optimizer=optimizer, epochs=epochs, accumulate=accumulate,
        validation=validation, progress=progress, seed=seed, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, resume=resume, memory_budget=memory_budget,
        track_noise=track_noise, rng=rng, on_epoch_end=on_epoch_end,
        reduce_dtype=reduce_dtype), group)
    loader = plan.loader
    noise = NoiseTracker() if track_noise else None
    engine = engines.choose(model, optimizer, loader, plan.y, plan.k, group, noise,
                            plan.reduce_dtype)
    optimizer.xp = model.xp  # the namespace of the weights it steps
    engine.start()
    checkpoints = Checkpoints(model, optimizer, plan, epochs, checkpoint, checkpoint_every, group,
                              noise)
    history, at = checkpoints.resume(resume)  # a fresh run, or the checkpoint's, weights restored
    # non-finite values are caught explicitly (TrainingDiverged), not by warnings
    with np.errstate(over="ignore", invalid="ignore"), engine.running(), Report(
            progress, epochs, len(loader), history, at, checkpoint) as report:
        callback = EpochCallback(on_epoch_end) if on_epoch_end is not None else None
        files = MappedFiles(data, validation)
        hooks = [hook for hook in (noise, report, checkpoints, files if files.datasets else None,
                                   callback) if hook] + hooks
        stopped = False  # a hook raised StopTraining
        while at.epoch <= epochs and not stopped:  # an epoch: every row drawn once
            start = time.perf_counter()
            if at.iteration == 0:
                at.order = loader.epoch_order()  # a fresh row order every epoch
            while at.iteration < len(loader) and not stopped:
                # a span of whole training steps, to the epoch's end or a hook's limit:
                # draw a batch -> predict -> loss -> gradients -> accumulate -> update, repeated
                engine.run_span(at, span_end(hooks, history, at, plan.k, len(loader)), history,
                                report.advance)
                stopped = call(hooks, "end_of_span", history, at)
            if at.iteration < len(loader):  # stopped inside the epoch: not an epoch done
                break
            history.epoch_seconds.append(time.perf_counter() - start)
            _record_epoch(model, history, at, len(data), validation)
            stopped = call(hooks, "end_of_epoch", history, at) or stopped
            at = at.next_epoch()
    return history


def _record_epoch(model: MLP, history: History, at: Position, n: int,
                  validation: Dataset | None) -> None:
    """Record the figures of the epoch ``at`` has just finished, over its ``n`` rows.

    The epoch's loss is weighted by batch length, ``sum(batch loss sums) / n``,
    not the last batch's loss and not a mean of batch means.
    """
    history.epochs = at.epoch
    history.epoch_loss.append(at.loss_sum / n)
    history.epoch_accuracy.append(at.correct / n if model.classifier else math.nan)
    history.steps_at_epoch_end.append(history.steps)
    history.iterations_at_epoch_end.append(history.iterations)
    history.samples_at_epoch_end.append(history.samples_seen)
    _record_validation(model, history, validation)


def _record_validation(model: MLP, history: History, validation: Dataset | None) -> None:
    """Record the validation figures of the epoch just finished, NaN for one without ``validation``.

    The lists stay empty until an epoch is validated; from then on they hold
    one value per epoch (NaN for each epoch trained without ``validation``,
    before or after), so a run resumed with or without ``validation`` keeps
    them as long as ``epoch_loss``. ``val_r2`` is recorded for mse only.
    """
    if validation is None and not history.val_loss:
        return
    figures = evaluate_in_blocks(model, validation) if validation is not None else (math.nan,) * 3
    lists = [history.val_loss, history.val_accuracy] + [history.val_r2] * (not model.classifier)
    for values, value in zip(lists, figures[:len(lists)], strict=True):
        values.extend([math.nan] * (history.epochs - 1 - len(values)))  # epochs not validated
        values.append(value)
