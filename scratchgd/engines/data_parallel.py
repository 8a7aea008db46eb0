"""The data-parallel engine (``fit(comm=...)``): P ranks take the one-process step.

For each training step (iterations ``t = first .. end - 1``, ``end - first
<= k``), rank ``p`` computes, for its shard ``S_p(t)`` of every global batch
(:func:`scratchgd.distributed.shard`), the gradient sum, loss sum and correct
count, and adds the gradient sums over the step's batches (:func:`shard_sums`).
One collective adds the P buffers in rank order
(:meth:`scratchgd.distributed.Group.sum_in_rank_order`), and every rank takes
the same step (:func:`step_from_sums`) with::

    g = (1/m) sum_{p=0}^{P-1} sum_t sum_{i in S_p(t)} grad l_i,   m = sum_t |batch t|

which is the single-process ``g`` with its sums regrouped. Divergence is
decided from the reduced loss sums only, so every rank decides the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


class DataParallelEngine(Engine):
    """The training cycle on the ranks of ``group``, one collective per training step."""

    def __init__(self, model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                 k: int, group: Group) -> None:
        super().__init__(model, optimizer, loader, y, k)
        self.group = group

    def start(self) -> None:
        """Every rank starts from rank 0's model (:func:`broadcast_model`)."""
        broadcast_model(self.group, self.model, self.optimizer)

    def run_span(self, at: Position, stop: int, history: History,
                 advance: Callable[[int], object]) -> None:
        model, loader = self.model, self.loader
        bounds = loader.batch_bounds(at.order)
        last = len(loader)
        size = sum(p.size for p in model.params)
        while at.iteration < stop:
            first = at.iteration
            end = min(last, first + self.k)
            total = self.group.sum_in_rank_order(
                shard_sums(model, loader, self.y, at.order, bounds, first, end, self.group))
            m = end - first
            rows = int(total[size])
            loss_sums, hits = total[size + 1:size + 1 + m], total[size + 1 + m:]
            batch_rows = np.diff(bounds[first:end + 1])
            for t in range(m):
                at.iteration += 1
                if not math.isfinite(loss_sums[t]):
                    raise collective(self.loss_not_finite(at, loss_sums[t] / batch_rows[t],
                                                          history))
                at.loss_sum += float(loss_sums[t])
                at.correct += int(hits[t])
                history.iterations += 1
                history.samples_seen += int(batch_rows[t])
                history.iteration_loss.append(float(loss_sums[t]) / int(batch_rows[t]))
                advance(1)
            if not step_from_sums(model, self.optimizer, total[:size], rows):
                raise collective(self.update_not_finite(at, loss_sums[-1] / batch_rows[-1],
                                                        history))
            history.steps += 1


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


def shard_sums(model: MLP, loader: DataLoader, y: np.ndarray, order: np.ndarray | None,
               bounds: np.ndarray, first: int, end: int, group: Group) -> np.ndarray:
    """This rank's part of one training step, as one flat float64 buffer.

    ``[gradient sums of every parameter (flattened, in params order), rows,
    loss sum of each iteration first..end-1, correct count of each]`` over
    this rank's shards of the batches ``first .. end - 1``; an empty shard adds
    zeros. After a non-finite loss the rank stops computing (its later
    figures stay 0): the reduced loss of that iteration is non-finite too.
    """
    m = end - first
    lo, hi = np.array([shard(bounds[t], bounds[t + 1], group.rank, group.size)
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
