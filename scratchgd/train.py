"""The training loop: the article's training cycle, epoch after epoch.

One iteration of the cycle::

    draw a batch from the loader -> predict -> loss -> gradients
        -> accumulate -> (every k iterations) update the weights

``History`` counts iterations (batches drawn) and training steps (weight
updates) separately: with ``accumulate=k`` they differ by a factor of ``k``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from . import _checks, engines, memory
from . import checkpoint as _ckpt
from . import distributed as _dist
from .data import DataLoader, Dataset
from .history import History, Position, epoch_line
from .losses import LOSS
from .mlp import MLP
from .noise import batch_estimates, noise_scale
from .npzfile import remove_temporaries
from .optim import Optimizer

EVAL_BATCH = 1024
"""Rows per forward pass of :func:`evaluate`."""


def evaluate(model: MLP, data: Dataset) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (accuracy NaN for mse).

    ``loss = (1/n) sum_i l_i``; ``accuracy = (1/n) #{i : argmax z_i = y_i}``.
    Computed in batches of ``EVAL_BATCH`` rows so memory stays bounded.
    """
    _checks.instance("model", model, MLP)
    model.check_data(data, "data")
    y = model.check_y(data.y, len(data), name="data.y")
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), EVAL_BATCH):
        rows = slice(start, start + EVAL_BATCH)
        X = model.inputs(data.X[rows])
        z = model._kernels.forward(model.params, X, model.activation)[-1]
        loss_sum += LOSS[model.loss](z, y[rows])[0]
        if model.loss == "cross_entropy":
            correct += int((z.argmax(axis=1) == y[rows]).sum())
    accuracy = correct / len(data) if model.loss == "cross_entropy" else math.nan
    return loss_sum / len(data), accuracy


def _check_fit_args(model: MLP, data: Dataset, optimizer: Optimizer, epochs: int,
                    accumulate: int | str, validation: Dataset | None, progress: bool,
                    seed: int) -> None:
    _checks.instance("model", model, MLP)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be GD, SGD or MiniBatchSGD, got {type(optimizer).__name__}")
    _checks.positive_int("epochs", epochs)
    _checks.count_or_epoch("accumulate", accumulate)
    _checks.boolean("progress", progress)
    _checks.seed("seed", seed)
    model.check_data(data, "data")
    if validation is not None:
        model.check_data(validation, "validation")
    if optimizer.velocity is not None and (
            [(v.shape, v.dtype) for v in optimizer.velocity]
            != [(p.shape, p.dtype) for p in model.params]):
        raise ValueError("optimizer holds momentum buffers of another model; call "
                         "optimizer.reset() before training a new model with it")


def _check_checkpoint_args(checkpoint: str | os.PathLike | None, checkpoint_every: int | str,
                           resume: bool) -> None:
    _checks.boolean("resume", resume)
    if checkpoint is None:
        if resume:
            raise ValueError("resume=True needs a checkpoint file to resume from")
        return
    _checks.path("checkpoint", checkpoint)
    folder = os.path.dirname(os.path.abspath(checkpoint))
    if not os.path.isdir(folder):
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r}: folder {folder!r} does not exist")
    if os.path.isdir(checkpoint):
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} is a folder, not a file")
    _checks.count_or_epoch("checkpoint_every", checkpoint_every)


def fit(model: MLP, data: Dataset, optimizer: Optimizer, epochs: int = 10,
        accumulate: int | str = 1, validation: Dataset | None = None, progress: bool = True,
        seed: int = 0, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | str = "epoch", resume: bool = False,
        memory_budget: int | str | None = None, track_noise: bool = False,
        rng: np.random.Generator | None = None,
        on_epoch_end: Callable[[History], object] | None = None,
        comm: object | None = None) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs; return the :class:`History`.

    Parameters
    ----------
    model : MLP
        Trained in place. Its scaling, if any (``model.scaling``, see
        :func:`scratchgd.standardize`), applies to every batch; it is part of a
        checkpoint's settings.
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
        Evaluated after every epoch (``History.val_loss``, ``val_accuracy``).
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
        empty) and sums its shard's gradients; one collective per step adds
        the P sums in rank order, and every rank steps with
        ``g = (1/m) sum_p sum_{i in S_p} grad l_i`` (``m`` the step's global
        rows): the single-process step, to rounding (1e-12 in float64), and
        the same bits on every rank. ``History`` is the single-process one
        (global rows; ``epoch_seconds`` each rank's own). ``memory_budget`` is
        per rank: a rank computes ``ceil(B / P)`` rows of a batch of ``B``, so
        with ``GD`` the chunks (which ``History.iterations`` counts) are P
        times larger than one process's. Only rank 0 writes ``checkpoint``.
        ``track_noise`` and ``rng`` are not supported with ``comm``.

    Raises
    ------
    TrainingDiverged
        If a loss or an update is not finite; the model keeps its last finite weights.
    ValueError
        If an argument is invalid or the checkpoint to resume from is unreadable
        or belongs to another run (nothing is changed then).
    """
    group = None if comm is None else _dist.Group(comm)
    args = (model, data, optimizer, epochs, accumulate, validation, progress, seed, checkpoint,
            checkpoint_every, resume, memory_budget, track_noise, rng, on_epoch_end,
            group)
    if group is None:
        loader, accumulate = _prepare(*args)
    else:
        loader, accumulate = group.agree(lambda: _prepare(*args))
        group.check_same(_run_description(*args))
    k = len(loader) if accumulate == "epoch" else accumulate
    y = model.check_y(data.y, len(data), name="data.y")
    noise = _NoiseTracker() if track_noise else None
    engine = engines.choose(model, optimizer, loader, y, k, group, noise)
    engine.start()
    settings = {"accumulate": _checks.count_or_epoch("accumulate", accumulate),
                "seed": int(seed), "rows": len(data),
                "features": data.n_features, "track_noise": track_noise,
                "scale": "none" if model.scaling is None else "standard",
                "processes": 1 if group is None else group.size}
    history, at = History(), Position()
    writer = checkpoint is not None and (group is None or group.rank == 0)  # rank 0 writes
    if writer:
        remove_temporaries(checkpoint)
    if checkpoint is not None and resume:
        if group is None:
            if os.path.exists(checkpoint):
                history, at = _resume(checkpoint, model, optimizer, loader, settings, epochs)
        else:
            content = group.bcast(_read_bytes(checkpoint) if group.rank == 0 else None)
            if content is not None:
                history, at = group.agree(lambda: _resume(
                    checkpoint, model, optimizer, loader, settings, epochs, content))
    last = len(loader)
    every = None if checkpoint is None or checkpoint_every == "epoch" else checkpoint_every
    # non-finite values are caught explicitly below (TrainingDiverged), not by warnings
    with np.errstate(over="ignore", invalid="ignore"), tqdm(
            total=epochs * last, initial=history.iterations, disable=not progress, unit="it",
            leave=False, dynamic_ncols=True) as bar:
        if history.iterations and progress:
            bar.write(f"resumed from {os.fspath(checkpoint)}: epoch {at.epoch}, "
                      f"iteration {at.iteration}, step {history.steps}")
        while at.epoch <= epochs:
            start = time.perf_counter()
            if at.iteration == 0:
                at.order = loader.epoch_order()
            while at.iteration < last:
                stop = _span_stop(at.iteration, last, k, history.steps, every)
                engine.run_span(at, stop, history, bar.update)
                if stop < last and writer:  # a checkpoint is due inside the epoch
                    _ckpt.save(checkpoint, model, optimizer, loader, history, at, settings)
            history.epoch_seconds.append(time.perf_counter() - start)
            _end_epoch(model, history, at, len(data), validation)
            if track_noise:
                history.b_simple.append(noise_scale(at.noise_grad_sq, at.noise_trace_cov)
                                        if at.noise_batches else math.nan)
            if progress:
                bar.write(epoch_line(history, epochs))
            at = Position(epoch=at.epoch + 1)
            if writer and (checkpoint_every == "epoch" or at.epoch > epochs
                                           or history.steps % checkpoint_every == 0):
                _ckpt.save(checkpoint, model, optimizer, loader, history, at, settings)
            if on_epoch_end is not None:
                on_epoch_end(history)
    return history


def _prepare(model: MLP, data: Dataset, optimizer: Optimizer, epochs: int,
             accumulate: int | str, validation: Dataset | None, progress: bool, seed: int,
             checkpoint: str | os.PathLike | None, checkpoint_every: int | str, resume: bool,
             memory_budget: int | str | None, track_noise: bool, rng: np.random.Generator | None,
             on_epoch_end: Callable[[History], object] | None, group: _dist.Group | None
             ) -> tuple[DataLoader, int | str]:
    """Check :func:`fit`'s arguments; the loader and accumulation it trains with."""
    _check_fit_args(model, data, optimizer, epochs, accumulate, validation, progress, seed)
    _check_checkpoint_args(checkpoint, checkpoint_every, resume)
    _checks.boolean("track_noise", track_noise)
    if track_noise and optimizer.batch_size == 1:
        raise ValueError(f"track_noise=True needs batches of at least 2 rows: {optimizer} draws "
                         f"one row per batch, which carries no estimate of the gradient noise")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"on_epoch_end must be callable, got {type(on_epoch_end).__name__}")
    if group is not None and (track_noise or rng is not None):
        raise ValueError("track_noise=True and rng= are not supported with comm= (data-parallel "
                         "training): leave them out, or train in one process")
    loader = optimizer.loader(data, seed=seed)
    if rng is not None:
        loader.rng = rng
    if memory_budget is not None:
        loader, accumulate = memory.budget_loader(model, data, optimizer, loader, accumulate,
                                                  memory_budget,
                                                  1 if group is None else group.size)
    if len(loader) == 0:
        raise ValueError(f"the loader yields no batch: {loader}")
    return loader, accumulate


def _run_description(model: MLP, data: Dataset, optimizer: Optimizer, epochs: int,
                     accumulate: int | str, validation: Dataset | None, progress: bool, seed: int,
                     checkpoint: str | os.PathLike | None, checkpoint_every: int | str,
                     resume: bool, memory_budget: int | str | None, *_: object) -> dict:
    """What every rank of a data-parallel :func:`fit` must agree on (compared by name)."""
    return {"rows": len(data), "features": data.n_features,
            "labels' dtype and shape": (str(data.y.dtype), data.y.shape), "seed": seed,
            "optimizer settings": _ckpt.optimizer_settings(optimizer),
            "momentum buffers": optimizer.velocity is not None,
            "model sizes": model.sizes, "activation": model.activation, "loss": model.loss,
            "dtype": np.dtype(model.dtype).name, "backend": model.backend,
            "input scaling": "none" if model.scaling is None else "standard",
            "accumulate": accumulate, "epochs": epochs, "memory_budget": memory_budget,
            "validation rows": None if validation is None else len(validation),
            "checkpoint": checkpoint is not None, "checkpoint_every": checkpoint_every,
            "resume": resume}


def _span_stop(iteration: int, last: int, k: int, steps: int, every: int | None) -> int:
    """The iteration that ends the next span of an epoch, ``iteration`` being done.

    The end of the epoch (``last``), or sooner the iteration whose training step
    is the next multiple of ``every`` steps, where a checkpoint is due. Spans
    start and end on step boundaries: a step is taken every ``k`` iterations.
    """
    if every is None:
        return last
    return min(last, iteration + (every - steps % every) * k)


def _read_bytes(path: str | os.PathLike) -> bytes | None:
    """The bytes of the file at ``path``, or ``None`` if there is none (rank 0, on resume)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _resume(checkpoint: str | os.PathLike, model: MLP, optimizer: Optimizer, loader: DataLoader,
            settings: dict, epochs: int, content: bytes | None = None
            ) -> tuple[History, Position]:
    """History and position of the run saved in ``checkpoint``, its state restored.

    ``content``: the file's bytes as rank 0 read and broadcast them (``fit(comm=...)``),
    so the other ranks need no shared file system.
    """
    saved = _ckpt.load(checkpoint, content)
    saved.check(model, optimizer, loader, settings)
    try:
        history = History(**saved.history)
        at = Position(order=saved.order, **saved.position)
    except TypeError as exc:
        raise saved.fail(f"does not match this version of scratchgd: {exc}") from None
    needed = at.epoch if at.iteration else history.epochs
    if needed > epochs:
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} has reached epoch {needed}, "
                         f"beyond epochs={epochs}")
    saved.restore(model, optimizer, loader)
    return history, at


def _end_epoch(model: MLP, history: History, at: Position, n: int,
               validation: Dataset | None) -> None:
    """Record the figures of the epoch ``at`` has just finished."""
    history.epochs = at.epoch
    history.epoch_loss.append(at.loss_sum / n)
    history.epoch_accuracy.append(at.correct / n if model.loss == "cross_entropy" else math.nan)
    history.steps_at_epoch_end.append(history.steps)
    history.iterations_at_epoch_end.append(history.iterations)
    history.samples_at_epoch_end.append(history.samples_seen)
    if validation is not None:
        val_loss, val_accuracy = evaluate(model, validation)
        history.val_loss.append(val_loss)
        history.val_accuracy.append(val_accuracy)


class _NoiseTracker:
    """Adds every batch's estimates of ``|G|^2`` and ``tr(Sigma)`` to the epoch's sums (B >= 2)."""

    def add(self, at: Position, grads: list[np.ndarray], sq_norms: np.ndarray) -> None:
        if len(sq_norms) > 1:
            grad_sq, trace_cov = batch_estimates(grads, sq_norms)
            at.noise_grad_sq += grad_sq
            at.noise_trace_cov += trace_cov
            at.noise_batches += 1
