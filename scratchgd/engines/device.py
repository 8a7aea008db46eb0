"""The reference cycle for a model on a device: torch, CuPy or array_api_strict arrays.

The same cycle as :class:`~scratchgd.engines.python.PythonEngine`, on the
same batches (the loader's row orders, drawn on the host) and the same
reference kernels, with two differences that a GPU asks for:

* **the data on the device.** At the start the whole data set, as the network
  takes it (scaled, in the model's dtype: ``MLP.inputs``), moves to the device
  once, if it fits in the device's free memory; a batch is then gathered
  there. Otherwise every batch moves as it is drawn.
* **no hidden syncs.** The batch loss sums and correct counts stay on the
  device; they are read once per span, and History is filled from them then,
  in the order and with the arithmetic of the Python engine. The divergence
  check costs one device-to-host read per training step: the step's losses
  are checked together with the new weights (``Optimizer.step(finite=)``);
  when that fails, the losses are read to find the iteration the Python
  engine would report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .._arrays import Array
from ..data import DataLoader
from ..errors import TrainingDiverged
from ..history import History, Position
from ..kernels.array_api import free_memory
from ..mlp import MLP, to_numpy
from ..optim import Optimizer
from .base import Engine

STAGING_ROWS = 65536
"""Rows moved to the device per copy when the data set moves there whole."""


class DeviceEngine(Engine):
    """The training cycle as a Python loop over batches on the model's device (see module)."""

    def __init__(self, model: MLP, optimizer: Optimizer, loader: DataLoader, y: np.ndarray,
                 k: int) -> None:
        super().__init__(model, optimizer, loader, y, k)
        self.X: Array | None = None   # the data set on the device, when it fits
        self.y_device: Array | None = None

    def start(self) -> None:
        model, data = self.model, self.loader.dataset
        n, d = len(data), data.n_features
        label_bytes = self.y.size * (8 if model.classifier else np.dtype(model.dtype).itemsize)
        need = n * d * np.dtype(model.dtype).itemsize + label_bytes
        if need <= free_memory(model.backend, model.device):
            xp = model.xp
            self.X = xp.empty((n, d), dtype=model.params[0].dtype, device=model.device)
            for start in range(0, n, STAGING_ROWS):
                rows = slice(start, min(start + STAGING_ROWS, n))
                self.X[rows, ...] = model.to_device([model.inputs(data.X[rows])])[0]
            self.y_device = model.to_device([self.y])[0]

    def batches(self, at: Position, stop: int) -> Iterator[tuple[Array, Array]]:
        """The loader's batches ``at.iteration .. stop - 1`` of the epoch, on the device."""
        model, loader = self.model, self.loader
        if self.X is None:  # batch by batch: the loader's own rows, moved as drawn
            for X_rows, y_rows in loader.batches(at.order, at.iteration, stop, self.y):
                yield tuple(model.to_device([model.inputs(X_rows, fresh=at.order is not None),
                                             y_rows]))
            return
        xp = model.xp
        bounds = loader.batch_bounds(at.order).tolist()
        order = None if at.order is None else model.to_device([at.order])[0]  # once an epoch
        for iteration in range(at.iteration, stop):  # the rows of loader.batches, gathered here
            where = slice(bounds[iteration], bounds[iteration + 1])
            if order is None:
                yield self.X[where, ...], self.y_device[where, ...]
            else:
                index = order[where]
                yield xp.take(self.X, index, axis=0), xp.take(self.y_device, index, axis=0)

    def run_span(self, at: Position, stop: int, history: History,
                 advance: Callable[[int], object]) -> None:
        model, optimizer, loader, k = self.model, self.optimizer, self.loader, self.k
        xp = model.xp
        grad_sum, rows, last = None, 0, len(loader)
        losses, corrects, sizes = [], [], []  # per batch of the span: on the device, on the host
        step_start = 0                         # where the step being accumulated began in them
        first = at.iteration                   # the span's first iteration
        for X_batch, y_batch in self.batches(at, stop):
            at.iteration += 1
            batch_loss, grads, z = self.kernels.loss_and_grads(
                model.params, X_batch, y_batch, model.activation, model.loss)
            losses.append(batch_loss)
            if model.classifier:
                hits = xp.argmax(z, axis=1) == y_batch
                corrects.append(xp.sum(xp.asarray(hits, dtype=xp.int64)))
            sizes.append(X_batch.shape[0])
            if grad_sum is None:
                grad_sum = grads
            else:
                for total, g in zip(grad_sum, grads, strict=True):
                    total += g
            rows += X_batch.shape[0]
            advance(1)
            if at.iteration % k == 0 or at.iteration == last:
                finite = xp.all(xp.isfinite(xp.stack(losses[step_start:])))
                try:
                    optimizer.step(model.params, [g / rows for g in grad_sum], finite)
                except TrainingDiverged:
                    raise self._diverged_in_step(at, first, step_start, losses, corrects, sizes,
                                                 history) from None
                history.steps += 1
                grad_sum, rows, step_start = None, 0, len(losses)
        self._record(at, losses, corrects, sizes, history)

    def _record(self, at: Position, losses: list[Array], corrects: list[Array],
                sizes: list[int], history: History) -> None:
        """Read the span's loss sums and correct counts (one read each) into ``at`` and ``history``.

        Batch by batch, as the Python engine adds them: the same float64 sums.
        """
        if not losses:
            return
        xp = self.model.xp
        loss_sums = to_numpy(xp.stack(losses)).tolist()
        counts = to_numpy(xp.stack(corrects)).tolist() if corrects else [0] * len(losses)
        for batch_loss, correct, size in zip(loss_sums, counts, sizes, strict=True):
            at.loss_sum += batch_loss
            at.correct += int(correct)
            history.iterations += 1
            history.samples_seen += size
            history.iteration_loss.append(batch_loss / size)

    def _diverged_in_step(self, at: Position, first: int, step_start: int, losses: list[Array],
                          corrects: list[Array], sizes: list[int],
                          history: History) -> TrainingDiverged:
        """The error the Python engine raises in this step, with History as it leaves it.

        The first batch of the step whose loss is not finite ends the run at
        its iteration; if every loss is finite, the update did.
        """
        loss_sums = to_numpy(self.model.xp.stack(losses)).tolist()
        bad = [i for i in range(step_start, len(losses)) if not np.isfinite(loss_sums[i])]
        end = bad[0] if bad else len(losses)
        self._record(at, losses[:end], corrects[:end], sizes[:end], history)
        if bad:
            at.iteration = first + end + 1
            return self.loss_not_finite(at, loss_sums[end] / sizes[end], history)
        return self.update_not_finite(at, loss_sums[-1] / sizes[-1], history)
