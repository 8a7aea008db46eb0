"""The data-parallel engines (``fit(comm=...)``): P ranks take the one-process step.

For each training step (iterations ``t = first .. end - 1``, ``end - first
<= k``), rank ``p`` computes, for its shard ``S_p(t)`` of every global batch
(:func:`scratchgd.distributed.shard`), the gradient sum, loss sum and correct
count, and adds the gradient sums over the step's batches (:func:`shard_sums`),
into one flat buffer::

    [gradient sums of every parameter (flattened, params order),
     loss sum of iteration first, its correct count, ..., of iteration end - 1]

One collective adds the P buffers in rank order
(:meth:`scratchgd.distributed.Group.sum_in_rank_order`), and every rank takes
the same step (:func:`step_from_sums`) with::

    g = (1/m) sum_{p=0}^{P-1} sum_t sum_{i in S_p(t)} grad l_i,   m = sum_t |batch t|

which is the single-process ``g`` with its sums regrouped. Divergence is
decided from the reduced loss sums only, so every rank decides the same.

:class:`DataParallelEngine` is that loop in Python (backend "numpy": the
reference to read); :class:`CompiledDataParallelEngine` runs a whole span of
steps per call of ``kernels.compiled.train_iterations_parallel`` (backend "numba"),
which leaves the compiled code only for the collective, with the same
arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import numpy as np

from .._arrays import views_like
from ..data import DataLoader
from ..distributed import Group, collective, shard
from ..errors import TrainingDiverged
from ..history import History, Position
from ..mlp import MLP
from ..optim import Optimizer
from ..scaling import Scaling
from .base import Engine
from .compiled import CompiledEngine


class DataParallelEngine(Engine):
    """The training cycle on the ranks of ``group``, one collective per training step.

    ``reduce_dtype``: the dtype the sums travel and are added in (float64, or
    float32 for a float32 model: ``fit(reduce_dtype=...)``).
    """

    def __init__(self, model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                 k: int, group: Group, reduce_dtype: type = np.float64,
                 kernels: ModuleType | None = None) -> None:
        super().__init__(model, optimizer, loader, y, k, kernels)
        self.group, self.reduce_dtype = group, reduce_dtype

    def start(self) -> None:
        """Every rank starts from rank 0's model (:func:`broadcast_model`)."""
        broadcast_model(self.group, self.model, self.optimizer)

    def loss_not_finite(self, at: Position, loss: float, history: History) -> TrainingDiverged:
        return collective(super().loss_not_finite(at, loss, history))  # alike on every rank

    def update_not_finite(self, at: Position, loss: float, history: History) -> TrainingDiverged:
        return collective(super().update_not_finite(at, loss, history))

    def run_span(self, at: Position, stop: int, history: History,
                 advance: Callable[[int], object]) -> None:
        model, loader = self.model, self.loader
        bounds = loader.batch_bounds(at.order)
        size = sum(p.size for p in model.params)
        while at.iteration < stop:
            first = at.iteration
            end = min(len(loader), first + self.k)
            total = self.group.sum_in_rank_order(shard_sums(
                model, loader, self.y, at.order, bounds, first, end, self.group,
                self.reduce_dtype, self.kernels))
            batch_rows = np.diff(bounds[first:end + 1])
            for (loss_sum, hits), rows in zip(total[size:].reshape(-1, 2).tolist(),
                                              batch_rows.tolist(), strict=True):
                at.iteration += 1
                if not math.isfinite(loss_sum):
                    raise self.loss_not_finite(at, loss_sum / rows, history)
                at.loss_sum += loss_sum
                at.correct += int(hits)
                history.iterations += 1
                history.samples_seen += rows
                history.iteration_loss.append(loss_sum / rows)
                advance(1)
            if not step_from_sums(model, self.optimizer, total[:size], int(batch_rows.sum())):
                raise self.update_not_finite(at, history.iteration_loss[-1], history)
            history.steps += 1


class CompiledDataParallelEngine(CompiledEngine, DataParallelEngine):
    """:class:`DataParallelEngine` with the spans of :class:`CompiledEngine` (backend "numba").

    ``CompiledEngine.run_span`` cuts a span into kernel calls and records
    their History; each call (:meth:`run_kernel`) runs a whole run of training
    steps in ``kernels.compiled.train_iterations_parallel``, summing through a
    :meth:`~scratchgd.distributed.Group.reducer` between steps (through
    memory the ranks share when they run on one machine: the same bits).
    Starting, and the divergence errors raised alike on every rank, are
    :class:`DataParallelEngine`'s.
    """

    def run_kernel(self, order: np.ndarray | None, bounds: np.ndarray, start: int, end: int
                 ) -> tuple[np.ndarray, np.ndarray, int, int]:
        model, optimizer, group = self.model, self.optimizer, self.group
        velocity = optimizer.buffers(model.params) if optimizer.momentum else None
        shards = np.array([shard(bounds[t], bounds[t + 1], group.rank, group.size)
                           for t in range(start, end)]).reshape(end - start, 2)
        return model.kernels.train_iterations_parallel(
            model.params, velocity, self.loader.dataset.X, self.y, order, bounds, shards, start,
            end, self.k, optimizer.lr, optimizer.momentum, model.activation, model.loss,
            group.reducer, self.reduce_dtype, model.scaling)


def broadcast_model(group: Group, model: MLP, optimizer: Optimizer) -> None:
    """Copy rank 0's weights, input and target scaling and momentum buffers onto every rank.

    As PyTorch DDP and Horovod do at the start of training: the replicas then
    start from the same bits whatever each rank's ``MLP(seed=...)`` drew, and
    scale their batches by rank 0's statistics (``model.scaling``; every rank
    has one or none, checked before). The run's targets were scaled by rank
    0's ``model.target_scaling`` already (:func:`scratchgd.plan.training_targets`);
    the replicas take it too, so they predict and save alike.
    """
    for p in model.params:
        group.comm.Bcast(p, root=0)
    for name in ("scaling", "target_scaling"):
        scaling = getattr(model, name)
        if scaling is not None:
            mean, std = np.array(scaling.mean), np.array(scaling.std)
            group.comm.Bcast(mean, root=0)
            group.comm.Bcast(std, root=0)
            setattr(model, name, Scaling(mean, std))
    if optimizer.momentum:
        for v in optimizer.buffers(model.params):
            group.comm.Bcast(v, root=0)


def step_from_sums(model: MLP, optimizer: Optimizer, sums: np.ndarray, rows: int) -> bool:
    """``optimizer.step`` with ``g = sums / rows`` (flat sums, params order).

    The sums are cast to the model's dtype first (a copy), then divided.
    Returns False, with nothing changed, if the new weights would not be finite.
    """
    grads = [g / rows for g in views_like(sums.astype(model.dtype), model.params)]
    try:
        optimizer.step(model.params, grads)
    except TrainingDiverged:
        return False
    return True


def shard_sums(model: MLP, loader: DataLoader, y: np.ndarray, order: np.ndarray | None,
               bounds: np.ndarray, first: int, end: int, group: Group,
               reduce_dtype: type = np.float64, kernels: ModuleType | None = None) -> np.ndarray:
    """This rank's part of one training step, as one flat ``reduce_dtype`` buffer.

    ``[gradient sums of every parameter (flattened, in params order), then
    for each iteration first..end-1 its loss sum and correct count]`` over
    this rank's shards of the batches ``first .. end - 1``; an empty shard adds
    zeros. After a non-finite loss the rank stops computing (its later
    loss sums and correct counts stay 0): the reduced loss of that iteration is non-finite too.
    ``kernels`` compute the gradients (default: the model's own).
    """
    m = end - first
    grad_sum = [np.zeros_like(p) for p in model.params]
    loss_hits = np.zeros((m, 2))  # per iteration: its loss sum and correct count
    for t in range(m):
        lo, hi = shard(bounds[first + t], bounds[first + t + 1], group.rank, group.size)
        if hi == lo:
            continue
        index = slice(lo, hi) if order is None else order[lo:hi]
        X_batch = model.inputs(loader.dataset.X[index], fresh=order is not None)
        batch_loss, grads, z = (model.kernels if kernels is None else kernels).loss_and_grads(
            model.params, X_batch, y[index], model.activation, model.loss)
        loss_hits[t, 0] = batch_loss
        if not math.isfinite(batch_loss):
            break
        for total, g in zip(grad_sum, grads, strict=True):
            total += g
        if model.classifier:
            loss_hits[t, 1] = (z.argmax(axis=1) == y[index]).sum()
    sums = [g.ravel() for g in grad_sum] + [loss_hits.ravel()]
    return np.concatenate(sums).astype(reduce_dtype)
