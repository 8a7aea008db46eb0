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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from . import _checks, memory
from . import checkpoint as _ckpt
from . import distributed as _dist
from ._arrays import views_like
from .data import DataLoader, Dataset
from .errors import TrainingDiverged
from .losses import LOSS
from .mlp import MLP
from .noise import batch_estimates, noise_scale
from .npzfile import remove_temporaries
from .optim import Optimizer
from .scaling import Scaling

EVAL_BATCH = 1024
SPAN_ROWS = 16384
"""Rows per call of the compiled training kernel (backend "numba"), about."""


@dataclass
class History:
    """What happened during :func:`fit`.

    Counters: ``epochs`` (full passes over the data), ``iterations`` (batches
    drawn: forward + backward passes), ``steps`` (weight updates) and
    ``samples_seen`` (rows drawn, counting repeats).

    ``iteration_loss[t]`` is the mean loss of the ``t``-th batch, before the
    update it leads to. ``epoch_loss`` and ``epoch_accuracy`` are the training
    figures of each epoch weighted by batch length, ``sum(batch loss sums) / n``,
    measured on the fly while the weights change; ``val_loss`` and
    ``val_accuracy`` are measured on the validation set after each epoch.
    ``epoch_seconds`` times each epoch's training pass (validation excluded).
    ``steps_at_epoch_end``, ``iterations_at_epoch_end`` and
    ``samples_at_epoch_end`` give the counters after each epoch, for plotting
    against steps. Accuracies are NaN for mse.
    ``b_simple`` (with ``fit(track_noise=True)``, else empty) holds each epoch's
    estimate of the gradient noise scale from its own batches (see :func:`fit`).
    """

    epochs: int = 0
    iterations: int = 0
    steps: int = 0
    samples_seen: int = 0
    iteration_loss: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    steps_at_epoch_end: list[int] = field(default_factory=list)
    iterations_at_epoch_end: list[int] = field(default_factory=list)
    b_simple: list[float] = field(default_factory=list)
    samples_at_epoch_end: list[int] = field(default_factory=list)

    COLUMNS = ("epoch", "iterations", "steps", "samples", "loss", "accuracy", "val_loss",
               "val_accuracy", "seconds")
    """The per-epoch columns of :meth:`to_dict` and :meth:`to_csv`."""

    def to_dict(self) -> dict[str, list]:
        """The per-epoch table: one list per column of ``COLUMNS``, one item per epoch.

        ``iterations``, ``steps`` and ``samples`` are the counters at the end of
        each epoch; ``val_loss`` and ``val_accuracy`` are NaN without validation
        (accuracies are NaN for mse). ``pandas.DataFrame(history.to_dict())``
        makes it a data frame.
        """
        nan = [math.nan] * self.epochs
        return {"epoch": list(range(1, self.epochs + 1)),
                "iterations": list(self.iterations_at_epoch_end),
                "steps": list(self.steps_at_epoch_end),
                "samples": list(self.samples_at_epoch_end),
                "loss": list(self.epoch_loss), "accuracy": list(self.epoch_accuracy),
                "val_loss": list(self.val_loss) or nan,
                "val_accuracy": list(self.val_accuracy) or nan,
                "seconds": list(self.epoch_seconds)}

    def csv_rows(self, first: int = 1) -> list[str]:
        """Lines of the CSV table of :meth:`to_dict` for epochs ``first`` onwards (no header)."""
        table = self.to_dict()
        return [",".join(str(int(table[c][e])) if c in self.COLUMNS[:4]
                         else repr(float(table[c][e])) for c in self.COLUMNS) + "\n"
                for e in range(first - 1, self.epochs)]

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` to ``path`` as CSV: a header line, then one row per epoch.

        Floats are written with ``repr``, so they read back exactly.
        """
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(",".join(self.COLUMNS) + "\n")
            fh.writelines(self.csv_rows())


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


@dataclass
class _Position:
    """Where a run stands: in epoch ``epoch`` (1-based), ``iteration`` batches done.

    ``order`` is the epoch's row order (``DataLoader.epoch_order``), drawn when
    the epoch starts; ``loss_sum`` and ``correct`` are the epoch's running sums,
    and ``noise_grad_sq``, ``noise_trace_cov`` the sums of the per-batch noise
    estimates over its ``noise_batches`` batches (``fit(track_noise=True)``).
    A checkpoint stores exactly this, always at a step boundary.
    """

    epoch: int = 1
    iteration: int = 0
    order: np.ndarray | None = None
    loss_sum: float = 0.0
    correct: int = 0
    noise_grad_sq: float = 0.0
    noise_trace_cov: float = 0.0
    noise_batches: int = 0


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
        broadcast_model(group, model, optimizer)
    k = len(loader) if accumulate == "epoch" else accumulate
    y = model.check_y(data.y, len(data), name="data.y")
    settings = {"accumulate": _checks.count_or_epoch("accumulate", accumulate),
                "seed": int(seed), "rows": len(data),
                "features": data.n_features, "track_noise": track_noise,
                "scale": "none" if model.scaling is None else "standard",
                "processes": 1 if group is None else group.size}
    history, at = History(), _Position()
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
                if group is None:
                    _run_span(model, optimizer, loader, y, k, history, at, stop, bar, track_noise)
                else:
                    _run_span_distributed(model, optimizer, loader, y, k, history, at, stop, bar,
                                          group)
                if stop < last and writer:  # a checkpoint is due inside the epoch
                    _ckpt.save(checkpoint, model, optimizer, loader, history, at, settings)
            history.epoch_seconds.append(time.perf_counter() - start)
            _end_epoch(model, history, at, len(data), validation)
            if track_noise:
                history.b_simple.append(noise_scale(at.noise_grad_sq, at.noise_trace_cov)
                                        if at.noise_batches else math.nan)
            if progress:
                bar.write(_epoch_line(history, epochs))
            at = _Position(epoch=at.epoch + 1)
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
            ) -> tuple[History, _Position]:
    """History and position of the run saved in ``checkpoint``, its state restored.

    ``content``: the file's bytes as rank 0 read and broadcast them (``fit(comm=...)``),
    so the other ranks need no shared file system.
    """
    saved = _ckpt.load(checkpoint, content)
    saved.check(model, optimizer, loader, settings)
    try:
        history = History(**saved.history)
        at = _Position(order=saved.order, **saved.position)
    except TypeError as exc:
        raise saved.fail(f"does not match this version of scratchgd: {exc}") from None
    needed = at.epoch if at.iteration else history.epochs
    if needed > epochs:
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} has reached epoch {needed}, "
                         f"beyond epochs={epochs}")
    saved.restore(model, optimizer, loader)
    return history, at


def _end_epoch(model: MLP, history: History, at: _Position, n: int,
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


def _run_span(model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray, k: int,
              history: History, at: _Position, stop: int, bar: tqdm,
              track_noise: bool = False) -> None:
    """The training cycle for iterations ``at.iteration + 1 .. stop`` of the epoch.

    ``stop`` is a step boundary (a multiple of ``k`` or the epoch's last
    iteration), so the span ends with no gradient left half-accumulated and a
    checkpoint can be written after it. ``track_noise``: add every batch's
    noise estimates to ``at`` (see ``fit``).
    """
    if model.backend == "numba" and not track_noise:
        _run_span_compiled(model, optimizer, loader, y, k, history, at, stop, bar)
        return
    grad_sum, rows = None, 0
    last = len(loader)
    while at.iteration < stop:
        at.iteration += 1
        # 1. draw a batch (only its rows are read, scaled if the model scales its
        #    inputs, cast to the model's dtype)
        index = loader.batch_index(at.order, at.iteration - 1)
        X_batch = model.inputs(loader.dataset.X[index])
        y_batch = y[index]
        # 2-4. predict, loss, gradients: sums over the rows of the batch
        sq_norms = np.zeros(len(X_batch)) if track_noise else None  # |grad l_i|^2
        batch_loss, grads, z = model._kernels.loss_and_grads(
            model.params, X_batch, y_batch, model.activation, model.loss, sq_norms)
        if not math.isfinite(batch_loss):
            raise _diverged(at, batch_loss / len(X_batch), optimizer, history, "is not finite")
        if track_noise and len(X_batch) > 1:
            grad_sq, trace_cov = batch_estimates(grads, sq_norms)
            at.noise_grad_sq += grad_sq
            at.noise_trace_cov += trace_cov
            at.noise_batches += 1
        # 5. accumulate gradient sums and row counts
        if grad_sum is None:
            grad_sum = grads
        else:
            for total, g in zip(grad_sum, grads, strict=True):
                total += g
        rows += len(X_batch)
        at.loss_sum += batch_loss
        if model.loss == "cross_entropy":
            at.correct += int((z.argmax(axis=1) == y_batch).sum())
        history.iterations += 1
        history.samples_seen += len(X_batch)
        history.iteration_loss.append(batch_loss / len(X_batch))
        bar.update()
        # 6. a training step every k iterations, and at the end of the epoch
        if at.iteration % k == 0 or at.iteration == last:
            try:
                optimizer.step(model.params, [g / rows for g in grad_sum])
            except TrainingDiverged:
                raise _diverged(at, batch_loss / len(X_batch), optimizer, history,
                                "leads to an update that would make the weights non-finite"
                                ) from None
            history.steps += 1
            grad_sum, rows = None, 0


def _run_span_distributed(model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                          k: int, history: History, at: _Position, stop: int, bar: tqdm,
                          group: _dist.Group) -> None:
    """:func:`_run_span` on P ranks: every step's gradient from all ranks' shards.

    For each training step (iterations ``t = first .. end - 1``, ``end - first
    <= k``), rank ``p`` computes, for its shard ``S_p(t)`` of every global batch
    (:func:`scratchgd.distributed.shard`), the gradient sum, loss sum and
    correct count, and adds the gradient sums over the step's batches
    (:func:`_shard_sums`). One collective adds the P buffers in rank order, and
    every rank takes the same step with::

        g = (1/m) sum_{p=0}^{P-1} sum_t sum_{i in S_p(t)} grad l_i,   m = sum_t |batch t|

    which is the single-process ``g`` with its sums regrouped. Divergence is
    decided from the reduced loss sums only, so every rank decides the same.
    """
    bounds = loader.batch_bounds(at.order)
    last = len(loader)
    size = sum(p.size for p in model.params)
    while at.iteration < stop:
        first = at.iteration
        end = min(last, first + k)
        total = group.sum_in_rank_order(
            _shard_sums(model, loader, y, at.order, bounds, first, end, group))
        m = end - first
        rows = int(total[size])
        loss_sums, hits = total[size + 1:size + 1 + m], total[size + 1 + m:]
        batch_rows = np.diff(bounds[first:end + 1])
        for t in range(m):
            at.iteration += 1
            if not math.isfinite(loss_sums[t]):
                raise _dist.collective(_diverged(at, loss_sums[t] / batch_rows[t], optimizer,
                                                 history, "is not finite"))
            at.loss_sum += float(loss_sums[t])
            at.correct += int(hits[t])
            history.iterations += 1
            history.samples_seen += int(batch_rows[t])
            history.iteration_loss.append(float(loss_sums[t]) / int(batch_rows[t]))
            bar.update()
        if not _step_from_sums(model, optimizer, total[:size], rows):
            raise _dist.collective(_diverged(
                at, loss_sums[-1] / batch_rows[-1], optimizer, history,
                "leads to an update that would make the weights non-finite"))
        history.steps += 1


def broadcast_model(group: _dist.Group, model: MLP, optimizer: Optimizer) -> None:
    """Copy rank 0's weights, input scaling and momentum buffers onto every rank, in place.

    As PyTorch DDP and Horovod do at the start of training: the replicas then
    start from the same bits whatever each rank's ``MLP(seed=...)`` drew, and
    scale their batches by rank 0's statistics (``model.scaling``; every rank
    has one or none, checked before).
    """
    for p in model.params:
        group.comm.Bcast(p, root=0)
    if model.scaling is not None:
        mean, std = np.array(model.scaling.mean), np.array(model.scaling.std)
        group.comm.Bcast(mean, root=0)
        group.comm.Bcast(std, root=0)
        model.scaling = Scaling(mean, std)
    if optimizer.momentum:
        for v in optimizer.buffers(model.params):
            group.comm.Bcast(v, root=0)


def _step_from_sums(model: MLP, optimizer: Optimizer, sums: np.ndarray, rows: int) -> bool:
    """``optimizer.step`` with ``g = sums / rows`` (flat float64 sums, params order).

    The numba backend takes the step in one compiled pass
    (``kernels.compiled.step_from_sums``, the same arithmetic). Returns False,
    with nothing changed, if the new weights would not be finite.
    """
    sums = sums.astype(model.dtype)  # a copy: the numba step divides it in place
    if model.backend == "numba":
        velocity = optimizer.buffers(model.params) if optimizer.momentum else None
        return model._kernels.step_from_sums(model.params, velocity, sums, optimizer.lr,
                                             optimizer.momentum, rows)
    grads = [g / rows for g in views_like(sums, model.params)]
    try:
        optimizer.step(model.params, grads)
    except TrainingDiverged:
        return False
    return True


def _shard_sums(model: MLP, loader: DataLoader, y: np.ndarray, order: np.ndarray | None,
                bounds: np.ndarray, first: int, end: int, group: _dist.Group) -> np.ndarray:
    """This rank's part of one training step, as one flat float64 buffer.

    ``[gradient sums of every parameter (flattened, in params order), rows,
    loss sum of each iteration first..end-1, correct count of each]`` over
    this rank's shards of the batches ``first .. end - 1``; an empty shard adds
    zeros. After a non-finite loss the rank stops computing (its later
    figures stay 0): the reduced loss of that iteration is non-finite too.
    """
    m = end - first
    lo, hi = np.array([_dist.shard(bounds[t], bounds[t + 1], group.rank, group.size)
                       for t in range(first, end)]).reshape(m, 2).T
    if model.backend == "numba":
        return model._kernels.fit_shard(model.params, loader.dataset.X, y, order, lo, hi - lo,
                                        model.activation, model.loss, model.scaling)
    grad_sum = [np.zeros_like(p) for p in model.params]
    loss_sums, correct = np.zeros(m), np.zeros(m)
    for t in range(m):
        if hi[t] == lo[t]:
            continue
        index = slice(lo[t], hi[t]) if order is None else order[lo[t]:hi[t]]
        X_batch = model.inputs(loader.dataset.X[index])
        batch_loss, grads, z = model._kernels.loss_and_grads(
            model.params, X_batch, y[index], model.activation, model.loss)
        loss_sums[t] = batch_loss
        if not math.isfinite(batch_loss):
            break
        for total, g in zip(grad_sum, grads, strict=True):
            total += g
        if model.loss == "cross_entropy":
            correct[t] = (z.argmax(axis=1) == y[index]).sum()
    return np.concatenate([g.ravel() for g in grad_sum]
                          + [[float((hi - lo).sum())], loss_sums, correct])


def spans(first: int, stop: int, k: int, rows_per_batch: int) -> Iterator[tuple[int, int]]:
    """Cut iterations ``[first, stop)`` of an epoch into runs of whole training steps.

    Every run ``[start, end)`` but the last holds a multiple of ``k``
    iterations and about ``SPAN_ROWS`` rows (at least ``k`` iterations), so
    with ``first`` on a step boundary every run starts on one, and the
    progress bar moves every few milliseconds.
    """
    size = k * max(1, SPAN_ROWS // (k * rows_per_batch))
    for start in range(first, stop, size):
        yield start, min(start + size, stop)


def _run_span_compiled(model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                       k: int, history: History, at: _Position, stop: int, bar: tqdm) -> None:
    """:func:`_run_span` for backend "numba": the same cycle, run by compiled code.

    Each run of :func:`spans` is one call of ``kernels.compiled.fit_span``,
    which draws the batches of ``at.order``, predicts, backpropagates,
    accumulates and steps exactly as :func:`_run_span` does, and hands back
    every batch's loss sum and correct count; ``history`` and ``at`` are then
    advanced as :func:`_run_span` advances them, batch by batch.
    """
    bounds = loader.batch_bounds(at.order)
    velocity = optimizer.buffers(model.params) if optimizer.momentum else None
    for start, end in spans(at.iteration, stop, k, loader.rows_per_batch):
        loss_sums, hits, steps, status = model._kernels.fit_span(
            model.params, velocity, loader.dataset.X, y, at.order, bounds, start, end, k,
            optimizer.lr, optimizer.momentum, model.activation, model.loss,
            scaling=model.scaling)
        done = len(hits)
        rows = np.diff(bounds[start:start + done + 1])
        at.iteration += done
        history.iterations += done
        history.samples_seen += int(rows.sum())
        history.steps += steps
        history.iteration_loss.extend((loss_sums[:done] / rows).tolist())
        at.loss_sum = sum(loss_sums[:done].tolist(), at.loss_sum)  # left to right, as above
        at.correct += int(hits.sum())
        bar.update(done)
        if status == model._kernels.LOSS_NOT_FINITE:
            at.iteration += 1
            rows = bounds[start + done + 1] - bounds[start + done]
            raise _diverged(at, loss_sums[done] / rows, optimizer, history, "is not finite")
        if status == model._kernels.UPDATE_NOT_FINITE:
            raise _diverged(at, loss_sums[done - 1] / rows[-1], optimizer, history,
                            "leads to an update that would make the weights non-finite")


def _diverged(at: _Position, loss: float, optimizer: Optimizer, history: History,
              what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged at epoch {at.epoch}, iteration {at.iteration}: the batch loss "
        f"{loss:.6g} {what}. The model keeps its last finite weights; try a smaller "
        f"learning rate than lr={optimizer.lr:g}.", epoch=at.epoch, iteration=at.iteration,
        loss=loss, history=history)


def _epoch_line(history: History, epochs: int) -> str:
    width = len(str(epochs))
    line = (f"epoch {history.epochs:>{width}}/{epochs}  loss {history.epoch_loss[-1]:.4f}")
    if not math.isnan(history.epoch_accuracy[-1]):
        line += f"  acc {history.epoch_accuracy[-1]:.4f}"
    if history.val_loss:
        line += f"  val_loss {history.val_loss[-1]:.4f}"
        if not math.isnan(history.val_accuracy[-1]):
            line += f"  val_acc {history.val_accuracy[-1]:.4f}"
    if history.b_simple:
        line += f"  B_simple {history.b_simple[-1]:.4g}"
    return line + f"  {history.epoch_seconds[-1]:.3f}s"
