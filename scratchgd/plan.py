"""The start of a run: :func:`scratchgd.fit`'s arguments checked, and what it trains with.

:func:`make_plan` checks every argument before anything changes (with
``fit(comm=...)`` on every rank alike: one rank's refusal is every rank's, and
the ranks must agree on the run) and decides, once, what the loop uses: the
data loader (the optimizer's, cut into chunks that fit ``memory_budget``,
:func:`scratchgd.memory.budget_loader`), the iterations per training step
``k``, the labels as the loss takes them (regression targets scaled here,
once, by the model's target scaling), and the settings a checkpoint records
and a resume must match.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks, _files, kernels, memory
from .checkpoint import optimizer_settings
from .data import DataLoader, Dataset
from .distributed import Group
from .kernels import reference
from .mlp import MLP
from .optim import Optimizer


@dataclass(frozen=True, kw_only=True)
class FitArgs:
    """The arguments of :func:`scratchgd.fit` as given (``comm`` aside), before any check.

    Built by keyword only, so no reordering of the fields can bind a value to another name.
    """

    model: MLP
    data: Dataset
    optimizer: Optimizer
    epochs: int
    accumulate: int | str
    validation: Dataset | None
    progress: bool
    seed: int
    checkpoint: str | os.PathLike | None
    checkpoint_every: int | str
    resume: bool
    memory_budget: int | str | None
    track_noise: bool
    rng: np.random.Generator | None
    on_epoch_end: Callable[..., object] | None
    reduce_dtype: Any = None


@dataclass(frozen=True)
class Plan:
    """What a run trains with, decided once at its start.

    Attributes
    ----------
    loader : DataLoader
        Draws the batches (``History.iterations`` counts them).
    k : int
        Iterations per training step (``accumulate``; ``"epoch"`` is ``len(loader)``).
    y : array
        The training labels or targets as the loss takes them (:meth:`MLP.check_y`);
        targets scaled by the model's target scaling, if any (:func:`training_targets`).
    settings : dict
        What a checkpoint records and a resumed run must match
        (:meth:`scratchgd.checkpoint.Checkpoint.check`).
    reduce_dtype : type
        What the data-parallel sums travel and are added in (``fit``'s
        ``reduce_dtype``): ``np.float64``, or ``np.float32``.
    """

    loader: DataLoader
    k: int
    y: np.ndarray
    settings: dict[str, Any]
    reduce_dtype: type = np.float64


def make_plan(args: FitArgs, group: Group | None = None) -> Plan:
    """Check ``args`` (on every rank of ``group``, which must agree) and plan the run.

    Raises
    ------
    ValueError, TypeError
        Naming the argument and its value; with a ``group``, on every rank.
    """
    if group is None:
        loader, accumulate, reduce_dtype, y = _prepare(args, None)
    else:
        loader, accumulate, reduce_dtype, y = group.agree(lambda: _prepare(args, group))
        group.check_same(_description(args, reduce_dtype))
    model, data = args.model, args.data
    settings = {"accumulate": accumulate, "seed": int(args.seed), "rows": len(data),
                "features": data.n_features, "track_noise": args.track_noise,
                "scale": "none" if model.scaling is None else "standard",
                "scale_targets": "none" if model.target_scaling is None else "standard",
                "processes": 1 if group is None else group.size}
    # None for float64 sums: older checkpoints, which lack the entry, read as None and load
    settings["reduce_dtype"] = "float32" if reduce_dtype == np.float32 else None
    return Plan(loader, len(loader) if accumulate == "epoch" else accumulate,
                training_targets(model, data, group, y), settings, reduce_dtype)


def training_targets(model: MLP, data: Dataset, group: Group | None = None,
                     y: np.ndarray | None = None) -> np.ndarray:
    """``data.y`` as the network is trained to output it: checked, and scaled once.

    Class labels and unscaled targets as :meth:`MLP.check_y` gives them; with
    a target scaling, ``t = (y - mean) / std`` (:meth:`MLP.targets`): a copy
    of the ``(n, k)`` targets, made once per run, so no kernel ever sees the
    scaling. With a ``group``, every rank scales by rank 0's statistics (one
    broadcast; :func:`scratchgd.engines.data_parallel.broadcast_model` then
    gives every replica rank 0's target scaling too). ``y``: ``data.y`` as
    :meth:`MLP.check_data` returned it, if it was checked already.
    """
    if y is None:
        y = model.check_y(data.y, len(data), name="data.y")
    scaling = model.target_scaling
    if group is None or scaling is None:
        return model.targets(y)
    mean, std = group.bcast((scaling.mean.tolist(), scaling.std.tolist()))
    return reference.apply_scaling(y, np.array(mean), np.array(std), model.dtype)


def _prepare(args: FitArgs, group: Group | None
             ) -> tuple[DataLoader, int | str, type, np.ndarray]:
    """Check ``args``, each once; the loader, accumulation and sums' dtype the run trains
    with, and the labels or targets as checked (:meth:`MLP.check_data`)."""
    accumulate, y = _check_fit_args(args)
    _check_checkpoint_args(args.checkpoint, args.checkpoint_every, args.resume)
    _checks.boolean("track_noise", args.track_noise)
    optimizer, rng = args.optimizer, args.rng
    if args.track_noise and optimizer.batch_size == 1:
        raise ValueError(f"track_noise=True needs batches of at least 2 rows: {optimizer} draws "
                         f"one row per batch, which carries no estimate of the gradient noise")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if args.on_epoch_end is not None and not callable(args.on_epoch_end):
        raise TypeError(f"on_epoch_end must be callable, got {type(args.on_epoch_end).__name__}")
    if group is not None and (args.track_noise or rng is not None):
        raise ValueError("track_noise=True and rng= are not supported with comm= (data-parallel "
                         "training): leave them out, or train in one process")
    _check_array_backend(args, group)
    loader = optimizer.loader(args.data, seed=args.seed)
    if rng is not None:
        loader.rng = rng
    if args.memory_budget is not None:
        loader, accumulate = memory.budget_loader(args.model, args.data, optimizer, loader,
                                                  accumulate, args.memory_budget,
                                                  1 if group is None else group.size)
    if len(loader) == 0:
        raise ValueError(f"the loader yields no batch: {loader}")
    return loader, accumulate, _check_reduce_dtype(args, group, loader), y


def _check_array_backend(args: FitArgs, group: Group | None) -> None:
    """An array-API backend (torch, cupy, array_api_strict) trains in one process, without
    ``track_noise``, with :class:`~scratchgd.Optimizer`'s own update rule."""
    backend = args.model.backend
    if backend not in kernels.ARRAY_BACKENDS:
        return
    if group is not None or args.track_noise:
        raise ValueError(f"backend={backend!r} does not train with comm= (data-parallel) or "
                         f"track_noise=True: those run on backend 'numpy' or 'numba'")
    if type(args.optimizer).step is not Optimizer.step:
        raise ValueError(f"backend={backend!r} runs Optimizer.step itself, which "
                         f"{type(args.optimizer).__name__} overrides: train it on backend 'numpy'")


def _reduce_dtype(value: Any) -> type:
    """``fit``'s ``reduce_dtype`` as a type: ``None`` and float64 give float64, float32 float32."""
    try:
        dtype = np.dtype(np.float64 if value is None else value)
    except TypeError:
        dtype = None
    if dtype not in (np.float64, np.float32) or isinstance(value, bool):
        raise ValueError(f"reduce_dtype must be None, 'float64' or 'float32', got {value!r}")
    return dtype.type


def _check_reduce_dtype(args: FitArgs, group: Group | None, loader: DataLoader) -> type:
    """``reduce_dtype`` as a type (:func:`_reduce_dtype`), float32 only where it can serve.

    float32 sums only for a float32 model, under ``comm``, with counts float32 holds exactly.
    """
    reduce_dtype = _reduce_dtype(args.reduce_dtype)
    if reduce_dtype != np.float32:
        return reduce_dtype
    if group is None:
        raise ValueError("reduce_dtype='float32' applies to data-parallel training only "
                         "(comm=...): one process adds no sums across ranks")
    if args.model.dtype != np.float32:
        raise ValueError(f"reduce_dtype='float32' needs a float32 model, got a "
                         f"{np.dtype(args.model.dtype).name} one: a float64 model keeps float64 "
                         f"sums, which equal one process to 1e-12")
    if loader.rows_per_batch > 2**24:
        raise ValueError(f"reduce_dtype='float32' counts correct predictions in float32, exact "
                         f"up to 2**24 rows per batch; batches of {loader.rows_per_batch} rows "
                         f"need reduce_dtype='float64'")
    return reduce_dtype


def _check_fit_args(args: FitArgs) -> tuple[int | str, np.ndarray]:
    """The checks of ``fit``'s own arguments; returns ``accumulate`` and ``data.y`` checked."""
    model, optimizer = args.model, args.optimizer
    _checks.instance("model", model, MLP)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be GD, SGD or MiniBatchSGD, got {type(optimizer).__name__}")
    _checks.positive_int("epochs", args.epochs)
    accumulate = _checks.count_or_epoch("accumulate", args.accumulate)
    _checks.boolean("progress", args.progress)
    _checks.seed("seed", args.seed)
    y = model.check_data(args.data, "data")
    if args.validation is not None:
        model.check_data(args.validation, "validation")
    if optimizer.velocity is not None and (
            [(v.shape, v.dtype) for v in optimizer.velocity]
            != [(p.shape, p.dtype) for p in model.params]):
        raise ValueError("optimizer holds momentum buffers of another model; call "
                         "optimizer.reset() before training a new model with it")
    return accumulate, y


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
    if os.path.exists(checkpoint):  # a FIFO or a device is never read, nor replaced by a file
        try:
            _files.regular_size(checkpoint)
        except ValueError as exc:
            raise ValueError(f"checkpoint {exc}") from None
    _checks.count_or_epoch("checkpoint_every", checkpoint_every)


def _description(args: FitArgs, reduce_dtype: type) -> dict[str, Any]:
    """What every rank of a data-parallel :func:`fit` must agree on (compared by name)."""
    model, data, optimizer, validation = args.model, args.data, args.optimizer, args.validation
    return {"rows": len(data), "features": data.n_features,
            "labels' dtype and shape": (str(data.y.dtype), data.y.shape), "seed": args.seed,
            "optimizer settings": optimizer_settings(optimizer),
            "momentum buffers": optimizer.velocity is not None,
            "model sizes": model.sizes, "activation": model.activation, "loss": model.loss,
            "dtype": np.dtype(model.dtype).name, "backend": model.backend,
            "input scaling": "none" if model.scaling is None else "standard",
            "target scaling": "none" if model.target_scaling is None else "standard",
            "accumulate": args.accumulate, "epochs": args.epochs,
            "memory_budget": args.memory_budget,
            "validation rows": None if validation is None else len(validation),
            "checkpoint": args.checkpoint is not None,
            "checkpoint_every": args.checkpoint_every, "resume": args.resume,
            "reduce_dtype": np.dtype(reduce_dtype).name}
