"""``scratchgd train``: train an MLP, print one line per epoch and the test accuracy (or R^2)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from .. import _files, checkpoint, distributed
from ..activations import ACTIVATIONS
from ..data import Dataset
from ..history import History, epoch_line
from ..kernels import ARRAY_BACKENDS, BACKENDS
from ..losses import LOSSES
from ..metrics import regression_report
from ..mlp import MLP
from ..optim import OPTIMIZERS, Optimizer
from ..train import evaluate, fit
from ._data import add_data_arguments, add_device_argument, load, loss_of, n_outputs, scale

DEFAULT_LR = {loss.name: {kind.name: kind.lr * loss.lr_scale for kind in OPTIMIZERS.values()}
              for loss in LOSSES.values()}
"""Default learning rates per ``--loss`` and ``--optimizer``: the optimizer's
(``optim.OPTIMIZERS``) times the loss's ``lr_scale`` (``losses.LOSSES``).

mse's are 1/50 of cross_entropy's: the squared error curves far more sharply.
Its curvature at an output is 2 (no factor 1/2), cross-entropy's at most 1/2
(``1/k`` at the start), and through a relu layer of ``h`` units the sharpest
direction of the loss grows with ``h``: at the start about ``0.7 h`` for
standardized targets, 93 for the diabetes table at ``h = 128`` against 6 for
the digits with cross-entropy. Plain SGD diverges above ``lr = 2 / 93``, and
mini-batches of a noisy table oscillate well below it (docs/usage.md).
"""


def _int_or_epoch(text: str) -> int | str:
    if text == "epoch":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'epoch', "
                                         f"got {text!r}") from None


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``train`` to the sub-parsers ``commands``."""
    train = commands.add_parser("train", help="train an MLP and report test accuracy (or R^2 "
                                "with --loss mse)")
    train.set_defaults(run=run)
    add_data_arguments(train)
    train.add_argument("--memory-budget", metavar="SIZE", default=None,
                       help="bytes one training step may use, e.g. 64MB or 1.5GiB: gd computes "
                       "its full batch in chunks that fit; other optimizers fail if their batch "
                       "does not fit")
    train.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=next(iter(OPTIMIZERS)),
                       help=", ".join(f"{kind.name}: {kind.help}" for kind in OPTIMIZERS.values())
                       + f" (default: {next(iter(OPTIMIZERS))})")
    train.add_argument("--batch-size", type=int, default=None,
                       help="rows per iteration for "
                       + ", ".join(f"{k.name} (default: {k.batch_size})"
                                   for k in OPTIMIZERS.values() if k.batch_size is not None))
    train.add_argument("--epochs", type=int, default=40, help="passes over the data (default: 40)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: " + "; ".join(
                           f"--loss {loss} " + ", ".join(f"{lr:g} {name}" for name, lr in lrs.items())
                           for loss, lrs in DEFAULT_LR.items()) + ")")
    train.add_argument("--momentum", type=float, default=0.0, help="momentum (default: 0)")
    train.add_argument("--accumulate", type=_int_or_epoch, default=1,
                       help="iterations per training step, or 'epoch' (default: 1)")
    train.add_argument("--hidden", type=int, nargs="*", default=[128],
                       help="hidden layer widths (default: 128)")
    train.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                       help="of every hidden layer (default: relu)")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    train.add_argument("--backend", choices=tuple(BACKENDS) + ARRAY_BACKENDS, default="numpy",
                       help="numpy (default: the readable reference, starts in half a second), "
                       "numba (compiled: far faster for small batches, about 1 s to start once "
                       "its kernels are cached, 6 s the first time unless `scratchgd compile` "
                       "ran), or torch, cupy, array_api_strict (the reference on that "
                       "library's arrays, on --device; extra array-api, see docs/gpu.md)")
    add_device_argument(train)
    train.add_argument("--seed", type=int, default=0, help="seed of weights, split and shuffling")
    train.add_argument("--plot", metavar="FILE.png", default=None,
                       help="write the loss and accuracy (mse: test R^2) curves to this file")
    train.add_argument("--save", metavar="MODEL.npz", default=None,
                       help="save the trained model (weights and scaling) for 'scratchgd "
                       "predict' and 'scratchgd evaluate'")
    train.add_argument("--log", metavar="FILE.csv", default=None,
                       help="write one CSV row per epoch as it ends (epoch, iterations, steps, "
                       "samples, loss, accuracy, val_loss, val_accuracy, val_r2, seconds); with "
                       "--resume, rows past the checkpoint are dropped, then rows appended")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar: print each epoch's line as the epoch ends")
    train.add_argument("--checkpoint", metavar="FILE.npz", default=None,
                       help="write the state of the run to this file (atomically) as it trains")
    train.add_argument("--checkpoint-every", type=_int_or_epoch, default="epoch",
                       help="'epoch' (default) or N: write the checkpoint every N training steps")
    train.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint if the file exists (else start afresh)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel on the ranks of mpiexec (mpiexec -n 4 scratchgd train "
                       "--distributed ...): --batch-size is the global batch; only rank 0 "
                       "prints, plots and writes the checkpoint (needs the mpi extra)")


def _optimizer(args: argparse.Namespace) -> Optimizer:
    lr = DEFAULT_LR[loss_of(args)][args.optimizer] if args.lr is None else args.lr
    kind = OPTIMIZERS[args.optimizer]
    if kind.batch_size is None:
        if args.batch_size is not None:
            takes = [k.name for k in OPTIMIZERS.values() if k.batch_size is not None]
            raise ValueError(f"--batch-size applies to --optimizer {' or '.join(takes)}, not "
                             f"{args.optimizer} ({args.optimizer} draws {kind.help})")
        return kind.make(lr, momentum=args.momentum)
    batch_size = kind.batch_size if args.batch_size is None else args.batch_size
    return kind.make(lr, batch_size=batch_size, momentum=args.momentum)


class EpochLog:
    """``fit``'s ``on_epoch_end``: print the epoch's line (``--no-progress``) and log it (``--log``).

    The log gets one CSV row per epoch as it ends (``History.csv_rows``; a
    regressor's rows carry the test R^2, ``History.val_r2``). ``kept``: epochs
    whose rows an existing log keeps (on ``--resume``, the checkpoint's
    finished epochs): later rows are dropped first, and a row the log misses
    is written from the History, so the file never holds an epoch twice or
    misses one.
    """

    def __init__(self, print_lines: bool, epochs: int, log: str | None, kept: int = 0) -> None:
        self.print_lines, self.epochs, self.log = print_lines, epochs, log
        self.written = 0
        if log is None:
            return
        rows = []
        if kept and os.path.exists(log):
            with open(log, encoding="utf-8") as fh:
                lines = fh.readlines()[1:]
            try:
                rows = [row for row in lines if int(row.split(",")[0]) <= kept]
            except ValueError:
                raise ValueError(f"--log {log}: not a log of epochs (a row does not start "
                                 f"with an epoch number); delete it or log elsewhere") from None
        with open(log, "w", encoding="utf-8") as fh:
            fh.write(",".join(History.COLUMNS) + "\n")
            fh.writelines(rows)
        self.written = len(rows)

    def __call__(self, history: History) -> None:
        if self.print_lines:
            print(epoch_line(history, self.epochs), flush=True)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.writelines(history.csv_rows(first=self.written + 1))
            self.written = history.epochs


def _resumed_epochs(args: argparse.Namespace) -> int:
    """Finished epochs of the checkpoint ``--resume`` continues (0 if none)."""
    if not (args.resume and args.checkpoint and os.path.exists(args.checkpoint)):
        return 0
    return checkpoint.load(args.checkpoint).history["epochs"]


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd train``; return the exit status.

    With ``--distributed`` every rank runs this; ranks other than 0 write
    nothing (their stdout and stderr go to ``os.devnull``). Errors every rank
    meets alike (flags, data, a diverged run) end every rank with the same exit
    status; an error of one rank alone ends the whole job by ``MPI.Abort``, so
    no rank is left waiting in a collective.
    """
    if not args.distributed:
        return _train(args, None)
    group = distributed.world()
    if group.rank:
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (until the process ends)
    try:
        return _train(args, group)
    except BaseException as exc:
        if group.size > 1 and not getattr(exc, "all_ranks", False):
            print(f"scratchgd: rank {group.rank} failed alone ({type(exc).__name__}: {exc}); "
                  f"ending all {group.size} ranks", file=sys.__stderr__, flush=True)
            group.comm.Abort(1)
        raise


def check_writable(flag: str, path: str | None) -> None:
    """Refuse, before training, an output ``path`` that could not be written when it ends.

    ``path`` must be a regular file or nothing yet (never a folder or a device
    that the atomic rename would replace), in a folder where a file can be
    created: one is created and removed there.
    """
    if path is None:
        return
    try:
        _files.regular_size(path)
    except FileNotFoundError:
        pass
    except (ValueError, OSError) as exc:  # a folder, a device; a path through a file
        reason = str(exc) if isinstance(exc, ValueError) else f"{path}: {exc.strerror}"
        raise ValueError(f"{flag} {reason}") from None
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".scratchgd-", suffix=".write-check")
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot write a file into {folder} "
                         f"({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def setup(args: argparse.Namespace, group: distributed.Group | None = None
          ) -> tuple[Dataset, Dataset, Optimizer, MLP]:
    """The training and test sets, optimizer and model ``args`` name (the playground's too);
    the output paths among them checked first (:func:`check_writable`)."""
    if getattr(args, "distributed", False) and args.backend in ARRAY_BACKENDS:
        raise ValueError(f"--distributed trains on --backend numpy or numba, not "
                         f"{args.backend}")
    if group is None or group.rank == 0:  # rank 0 alone writes files
        for flag in ("--save", "--checkpoint", "--plot"):
            check_writable(flag, getattr(args, flag[2:], None))
    train_set, test_set = load(args, None if group is None else group.comm)
    optimizer = _optimizer(args)
    model = MLP([train_set.n_features, *args.hidden, n_outputs(train_set, test_set)],
                activation=args.activation, loss=loss_of(args), seed=args.seed,
                dtype=np.dtype(args.dtype).type, backend=args.backend,
                device=getattr(args, "device", None))
    scale(args, model, train_set)
    return train_set, test_set, optimizer, model


def _train(args: argparse.Namespace, group: distributed.Group | None) -> int:
    if group is None:
        train_set, test_set, optimizer, model = setup(args, None)
    else:
        train_set, test_set, optimizer, model = group.agree(lambda: setup(args, group))
    print(f"{args.data or args.dataset}: {len(train_set)} train / {len(test_set)} test rows; {model}; "
          f"{optimizer}; accumulate={args.accumulate}")
    if args.resume and args.checkpoint and os.path.exists(args.checkpoint):
        print(f"resuming from {args.checkpoint}")
    log = args.log if group is None or group.rank == 0 else None  # rank 0 alone writes files
    # the checkpoint is read for its epoch count only when a log must be kept in step with it
    on_epoch_end = EpochLog(args.no_progress, args.epochs, log,
                            _resumed_epochs(args) if log else 0)
    start = time.perf_counter()
    history = fit(model, train_set, optimizer, epochs=args.epochs, accumulate=args.accumulate,
                  validation=test_set, progress=not args.no_progress, seed=args.seed,
                  checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                  resume=args.resume, memory_budget=args.memory_budget,
                  on_epoch_end=on_epoch_end, comm=None if group is None else group.comm)
    seconds = time.perf_counter() - start
    print(f"{history.epochs} epochs, {history.iterations} iterations, {history.steps} training "
          f"steps, {history.samples_seen} samples seen in {seconds:.2f} s")
    regression = not model.classifier
    if regression:
        report = regression_report(model, test_set)
        print(f"test RMSE: {report.rmse.mean():.6g}  MAE: {report.mae.mean():.6g}")
        print(f"test R^2: {report.r2.mean():.4f}")
    else:
        print(f"test accuracy: {evaluate(model, test_set)[1]:.4f}")
    if args.plot and (group is None or group.rank == 0):
        from ..plots import plot_history

        plot_history(history, args.plot, title=f"{args.data or args.dataset}, {optimizer}")
        print(f"wrote {args.plot}")
    if args.save and (group is None or group.rank == 0):
        model.save(args.save)
        print(f"saved the model to {args.save}")
    if group is not None:
        print(f"trained data-parallel by {group.size} processes")
    return 0
