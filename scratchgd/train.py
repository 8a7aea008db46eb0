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
    """
    loss, accuracy, _ = _evaluate(model, data)
    return loss, accuracy


def _evaluate(model: MLP, data: Dataset) -> tuple[float, float, float]:
    """:func:`evaluate`'s loss and accuracy, and (mse) R^2 averaged over outputs, in one pass.

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
        loss_sum += float(LOSSES[model.loss].function(z, y_rows, xp)[0])
        if model.loss == "cross_entropy":
            correct += int(xp.sum(xp.asarray(xp.argmax(z, axis=1) == y_rows, dtype=xp.int64)))
        else:
            sse += ((model.to_host([z])[0] - y[rows]).astype(np.float64) ** 2).sum(axis=0)
    if model.loss == "cross_entropy":
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

    Parameters
    ----------
    model : MLP
        Trained in place. Its scaling, if any (``model.scaling``, see
        :func:`scratchgd.standardize`), applies to every batch; its target
        scaling (``model.target_scaling``, :func:`scratchgd.standardize_targets`)
        to the targets, once at the start, so the losses of ``History`` are in
        its scaled units. Both are part of a checkpoint's settings.
    data : Dataset
        Training set.
    optimizer : GD, SGD or MiniBatchSGD
        Decides the batch size (through its data loader) and the update rule.
    epochs : int
        Full passes over ``data``.
    accumulate : int or "epoch"
        Iterations per training step. The gradient of one step is
        ``g = (1/m) sum_{batches} sum_{i in batch} grad l_i`` over the ``m``
        rows of the ``k`` batches it accumulates: a sum of gradient SUMS divided
        by the rows seen, never a mean of batch means, so a short last batch
        weighs what its rows weigh. A partial accumulation at the end of an
        epoch is flushed as a step, so steps per epoch = ``ceil(iterations / k)``.
        ``"epoch"``: one step per epoch, which is full-batch gradient descent
        computed batch by batch.
    validation : Dataset, optional
        Evaluated after every epoch (``History.val_loss``, ``val_accuracy``;
        for mse also ``val_r2``).
    progress : bool
        Show a progress bar over iterations and print one line per epoch.
    seed : int
        Seed of the data loader's shuffling.
    checkpoint : path, optional
        Write the whole state of the run to this ``.npz`` file (see
        :mod:`scratchgd.checkpoint`), atomically, so a crash leaves the last
        complete checkpoint. Checkpoints are written only between training
        steps, never with a half-filled accumulation, and once more when
        training ends.
    checkpoint_every : "epoch" or int
        ``"epoch"``: after every epoch (after its validation). ``N``: after every
        ``N``-th training step (counted over the whole run).
    resume : bool
        Continue from ``checkpoint`` if that file exists; if it does not, start
        afresh (so one command line serves the first run and every restart).
        The checkpoint must come from the same model, optimizer settings,
        ``accumulate``, ``seed`` and data shape; ``epochs`` may be larger than
        before to train on. The final weights and History then equal, bit for
        bit, those of a run never interrupted -- except ``epoch_seconds``, whose
        interrupted epoch counts only the time after the restart. Without
        ``resume`` an existing checkpoint is overwritten by the fresh run.
    memory_budget : int or str, optional
        Bytes one training step may use (``"64MB"``, ``"1.5GiB"``; see
        ``scratchgd.memory.estimate``). With ``GD`` the full batch is computed in
        the largest chunks of rows that fit, accumulated into one step per epoch:
        the same update as one full batch (``History.iterations`` counts the
        chunks). Other optimizers keep their batch size and raise ``ValueError``
        if a batch does not fit.
    track_noise : bool
        Record ``History.b_simple``, each epoch's gradient noise scale, from
        the batches it trains on, at no extra pass: every batch of ``B >= 2``
        rows gives unbiased estimates of ``|G|^2`` and ``tr(Sigma)`` from its
        per-example gradient norms and its gradient sum
        (:func:`scratchgd.noise.batch_estimates`); the two are summed over the
        epoch separately and then divided (:func:`scratchgd.noise.noise_scale`),
        as the paper advises. A one-row batch carries no estimate and is
        skipped; SGD (batch 1) raises ``ValueError``. The weights move during
        the epoch, so this is the noise scale along the epoch, not at its end.
        The numba backend then runs the loop in Python over its compiled
        ``loss_and_grads`` (the same results as numpy, slower than its
        compiled training loop for small batches).
    rng : numpy.random.Generator, optional
        Draw the loader's epoch orders from this generator instead of from a
        fresh one seeded by ``seed`` (``seed`` is then only recorded in a
        checkpoint). The generator advances with every epoch, so passing it to
        the next call continues the run's shuffling without a checkpoint file:
        with ``g = np.random.default_rng(s)``, ``fit(model, data, opt, epochs=a,
        rng=g)`` followed by ``fit(model, data, opt, epochs=b, rng=g)`` (the same
        model and optimizer, whose momentum buffers carry over) ends with the
        weights of ``fit(model, data, opt, epochs=a + b, seed=s)``, bit for
        bit: either way epoch ``e`` takes the ``e``-th order drawn from
        ``default_rng(s)``. The estimators of ``scratchgd.estimators`` use this
        for ``partial_fit`` and ``warm_start``.
    on_epoch_end : callable, optional
        Called as ``on_epoch_end(history)`` after every epoch (Keras's habit),
        once its figures are in ``history``, its line is printed and its
        checkpoint (if any) is written; its return value is ignored. The
        command line prints its epoch lines and writes ``--log`` through it.
    comm : mpi4py communicator, optional
        Train data-parallel on the ranks of ``comm`` (``MPI.COMM_WORLD`` or a
        sub-communicator; see ``docs/distributed.md``). Every rank calls ``fit``
        with the same data, model sizes and settings (checked: a mismatch raises
        ``ValueError`` on every rank, naming what differs); rank 0's weights
        and momentum buffers are broadcast first. ``batch_size`` is the GLOBAL
        batch: every rank draws the same row order, cuts each batch into P
        contiguous shards ``S_p`` (sizes differ by at most one; some may be
        empty) and sums its shard's gradients; one reduction per step adds
        the P sums in rank order, and every rank steps with
        ``g = (1/m) sum_p sum_{i in S_p} grad l_i`` (``m`` the step's global
        rows): the single-process step, to rounding (1e-12 in float64), and
        the same bits on every rank. ``History`` is the single-process one
        (global rows; ``epoch_seconds`` each rank's own). ``memory_budget`` is
        per rank: a rank computes ``ceil(B / P)`` rows of a batch of ``B``, so
        with ``GD`` the chunks (which ``History.iterations`` counts) are P
        times larger than one process's. Only rank 0 writes ``checkpoint``.
        ``track_noise`` and ``rng`` are not supported with ``comm``.
    reduce_dtype : None, "float64" or "float32"
        What the sums of a data-parallel step (``comm``) travel and are added
        in. ``None`` (the default) or ``"float64"``: float64, the promise above
        (1e-12 to one process for a float64 model). ``"float32"``, for a
        float32 model only: half the bytes per step; the gradient sums, loss
        sums and correct counts are added in float32. A float32 model on P
        ranks never matched one process to 1e-12 (its own float32 rounding
        differs with the shards); float32 sums keep it at that level (1e-7 of
        ``max|w|`` after 5 epochs of the digits, as with float64 sums), with
        the same bits on every rank and run after run; ``History``'s losses
        carry float32 rounding (about 1e-8 relative). Refused (``ValueError``)
        for a float64 model and without ``comm``; a checkpoint records it.
    hooks : list of scratchgd.hooks.Hook
        The caller's own collaborators of the loop (progress, cancellation),
        called after the built-in ones: ``span_steps(history, at)`` before each
        span (the most training steps it may run, or ``None``), and
        ``end_of_span(history, at)`` and ``end_of_epoch(history, at)`` after.
        Cutting a run into shorter spans changes none of its results. A hook's
        ``end_of_span`` or ``end_of_epoch`` may raise
        :class:`scratchgd.StopTraining` to end the run at that training-step
        boundary: ``fit`` then returns the History so far (the epoch a stop
        ends is recorded, hooks called, if its last step was taken). With
        ``comm`` a hook must act alike on every rank. See
        ``docs/architecture.md``.

    Raises
    ------
    TrainingDiverged
        If a loss or an update is not finite; the model keeps its last finite weights.
    ValueError
        If an argument is invalid or the checkpoint to resume from is unreadable
        or belongs to another run (nothing is changed then).
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
    with np.errstate(over="ignore", invalid="ignore"), Report(
            progress, epochs, len(loader), history, at, checkpoint) as report:
        callback = EpochCallback(on_epoch_end) if on_epoch_end is not None else None
        files = MappedFiles(data, validation)
        hooks = [hook for hook in (noise, report, checkpoints, files, callback) if hook] + hooks
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
    history.epoch_accuracy.append(at.correct / n if model.loss == "cross_entropy" else math.nan)
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
    figures = _evaluate(model, validation) if validation is not None else (math.nan,) * 3
    lists = [history.val_loss, history.val_accuracy] + [history.val_r2] * (model.loss == "mse")
    for values, value in zip(lists, figures[:len(lists)], strict=True):
        values.extend([math.nan] * (history.epochs - 1 - len(values)))  # epochs not validated
        values.append(value)
