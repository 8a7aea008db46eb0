"""A playground run's settings: JSON keys that are ``scratchgd train``'s long flags, checked by it.

``{"batch_size": 16, "epochs": 3}`` becomes ``scratchgd train --batch-size=16
--epochs=3`` (plus the playground's own data flags), parsed by the very parser
of ``scratchgd train`` (:func:`scratchgd.cli.train.add_parser`), built by its
:func:`scratchgd.cli.train.setup` and checked by :func:`scratchgd.fit`'s own
checks (:func:`scratchgd.plan.make_plan`): the page refuses what the command
line refuses, with the same defaults. On top, the bounds a page may ask for
(:data:`LIMITS`), so no request can exhaust the machine.
"""

from __future__ import annotations

import argparse
import math
import numbers
import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import memory
from ..cli import train as train_command
from ..cli._data import GENERATED_ROWS
from ..data import Dataset
from ..mlp import MLP
from ..optim import Optimizer
from ..plan import FitArgs, Plan, make_plan

KEYS = ("dataset", "loss", "optimizer", "batch_size", "epochs", "lr", "momentum", "accumulate",
        "hidden", "activation", "dtype", "backend", "seed", "memory_budget", "scale",
        "scale_targets")
"""The settings a page may send: ``scratchgd train``'s long flags, ``-`` written ``_``."""

DATA_KEYS = ("dataset", "loss", "scale", "scale_targets")
"""Settings whose default is the ``scratchgd playground`` command line's (its data flags)."""

FILE_FLAGS = ("data", "labels", "test_data", "test_labels")
"""The file flags the command line may give; a page names none, ``"dataset": "file"`` means them."""

LIMITS = {"epochs": 10_000, "hidden_layers": 4, "units": 1024, "step_bytes": 256 * 2**20}
"""What a page may ask for at most: epochs, hidden layers, units per layer, bytes per step."""


class SettingError(ValueError):
    """A refused setting; ``field`` names its key (``None`` when no one key is at fault)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class _Parser(argparse.ArgumentParser):
    """``scratchgd train``'s parser, raising :class:`SettingError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        flag = message.split("argument ", 1)[-1].split(":", 1)[0].split("/")[0]
        key = flag.lstrip("-").replace("-", "_")
        raise SettingError(message, key if key in KEYS else None)


def train_parser() -> argparse.ArgumentParser:
    """A parser of ``scratchgd train ...`` command lines: the command's own flags and checks."""
    parser = _Parser(prog="scratchgd", add_help=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train_command.add_parser(commands)
    return parser


def choices(parser: argparse.ArgumentParser) -> dict[str, dict[str, Any]]:
    """Each setting's default and, where the command line has them, its choices (the registries')."""
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for action in train.choices["train"]._actions:
        if action.dest in KEYS:
            found[action.dest] = {"default": action.default,
                                  "choices": None if action.choices is None else list(action.choices)}
    return found


@dataclass
class Run:
    """What a checked request trains: the command line's objects and the numbers it shows.

    ``argv`` is the ``scratchgd train`` command line of these settings (its
    arguments after ``scratchgd``), ``settings`` the keys with their values,
    defaults filled in.
    """

    args: argparse.Namespace
    argv: list[str]
    settings: dict[str, Any]
    train: Dataset
    test: Dataset
    model: MLP
    optimizer: Optimizer
    plan: Plan
    step_bytes: int
    max_batch: int

    @property
    def command(self) -> str:
        """The ``scratchgd train`` command line, ready to paste into a shell."""
        words = []
        for arg in self.argv:
            flag, _, value = arg.partition("=")
            words += [flag, value] if value and not value.startswith("-") else [arg]
        return "scratchgd " + " ".join(shlex.quote(w) for w in words)


def command_arguments(body: dict[str, Any], defaults: argparse.Namespace) -> list[str]:
    """``train``'s arguments for the JSON settings ``body``; ``defaults``: the playground's flags.

    Keys left out (or ``null``) take the command line's defaults (the data flags
    those of ``scratchgd playground``); ``"dataset": "file"`` stands for its file flags.
    """
    if not isinstance(body, dict):
        raise SettingError(f"the settings must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(KEYS))
    if unknown:
        raise SettingError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(KEYS)}",
                           unknown[0])
    values = {key: getattr(defaults, key) for key in DATA_KEYS}
    if values["dataset"] is None or defaults.data is not None:
        values["dataset"] = "file" if defaults.data is not None else "digits"
    values.update({key: value for key, value in body.items() if value is not None})
    argv = ["train"]
    for key, value in values.items():
        if value is None and key in DATA_KEYS:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "dataset" and value == "file":
            if defaults.data is None:
                raise SettingError("dataset 'file': no --data file was given to scratchgd "
                                   "playground", key)
            argv += [f"--{name.replace('_', '-')}={getattr(defaults, name)}"
                     for name in FILE_FLAGS if getattr(defaults, name) is not None]
            if defaults.header is not None:
                argv.append("--header" if defaults.header else "--no-header")
        elif key == "hidden":
            if not isinstance(value, list):
                raise SettingError(f"hidden must be a list of layer widths, got {value!r}", key)
            widths = [_text(key, v) for v in value]
            flags = [w for w in widths if w.startswith("-") and not _is_number(w)]
            if flags:  # an item that would read as a flag: --data, or another setting
                raise SettingError(f"hidden must hold layer widths, got {flags[0]!r}", key)
            argv += [flag, *widths]
        else:
            argv.append(f"{flag}={_text(key, value)}")
    return argv


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text(key: str, value: Any) -> str:
    """A JSON scalar as the command line would spell it (``true`` and lists refused)."""
    if isinstance(value, bool) or not isinstance(value, str | numbers.Real):
        raise SettingError(f"{key} must be a number or a string, got {value!r}", key)
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingError(f"{key} must be finite, got {value!r}", key)
    return value if isinstance(value, str) else repr(value)


def check(body: dict[str, Any], defaults: argparse.Namespace,
          parser: argparse.ArgumentParser | None = None) -> Run:
    """The run the settings ``body`` ask for, checked as ``scratchgd train`` checks them.

    Raises
    ------
    SettingError
        Naming the setting and its value: a refusal of the command line's
        parser, of the objects it builds, of ``fit``'s checks, or of :data:`LIMITS`.
    """
    argv = command_arguments(body, defaults)
    args = (parser or train_parser()).parse_args(argv)
    if args.epochs > LIMITS["epochs"]:
        raise SettingError(f"epochs must be at most {LIMITS['epochs']} here, got {args.epochs}",
                           "epochs")
    if len(args.hidden) > LIMITS["hidden_layers"] or any(h > LIMITS["units"] for h in args.hidden):
        raise SettingError(f"hidden: at most {LIMITS['hidden_layers']} layers of at most "
                           f"{LIMITS['units']} units here, got {args.hidden}", "hidden")
    try:
        train, test, optimizer, model = train_command.setup(args)
        plan = make_plan(FitArgs(model=model, data=train, optimizer=optimizer, epochs=args.epochs,
                                 accumulate=args.accumulate, validation=test, progress=False,
                                 seed=args.seed, checkpoint=None, checkpoint_every="epoch",
                                 resume=False, memory_budget=args.memory_budget,
                                 track_noise=False, rng=None, on_epoch_end=None))
    except (ValueError, TypeError) as exc:
        raise SettingError(str(exc), _blamed(str(exc))) from None
    step_bytes = memory.estimate(model, plan.loader.rows_per_batch, optimizer=optimizer)
    if step_bytes > LIMITS["step_bytes"]:
        raise SettingError(f"a training step would need {memory.format_bytes(step_bytes)}, more "
                           f"than the {LIMITS['step_bytes'] // 2**20} MiB a page may use: "
                           f"a smaller batch_size or hidden, or a memory_budget", "batch_size")
    settings = {key: getattr(args, key) for key in KEYS if key != "dataset"}
    settings.update(dataset="file" if args.data else args.dataset, loss=model.loss,
                    lr=optimizer.lr, scale="none" if model.scaling is None else "standard",
                    batch_size=optimizer.batch_size if args.optimizer == "minibatch" else None,
                    scale_targets=None if model.classifier else
                    "none" if model.target_scaling is None else "standard")
    return Run(args, canonical(settings, defaults), settings, train, test, model, optimizer,
               plan, step_bytes, memory.max_batch_size(model, LIMITS["step_bytes"], optimizer))


def canonical(settings: dict[str, Any], defaults: argparse.Namespace) -> list[str]:
    """The ``train`` arguments that write out every one of a run's ``settings`` (but ``None``)."""
    return command_arguments({k: v for k, v in settings.items() if v is not None}, defaults)


def _blamed(message: str) -> str | None:
    """The setting an error message of the library names first, if any (``sizes``: hidden)."""
    words = [w.strip("'\"=,:;()-").split("[")[0].replace("-", "_") for w in message.split()]
    words = ["hidden" if w == "sizes" else w for w in words]
    return next((w for w in words if w in KEYS), None)


def snippet(run: Run) -> str:
    """Python that trains the same run with the library (the command line's steps, written out)."""
    args, s = run.args, run.settings
    if args.data:
        files = ", ".join(repr(getattr(args, f)) for f in ("data", "labels"))
        lines = [f"data = sg.Dataset.from_file({files}, header={args.header!r}, "
                 f"targets={not run.model.classifier!r})"]
        if args.test_data:
            lines.append(f"test = sg.Dataset.from_file({args.test_data!r}, {args.test_labels!r}, "
                         f"header={args.header!r}, targets={not run.model.classifier!r})")
            lines.append("train = data")
        else:
            split = "stratified_split" if run.model.classifier else "random_split"
            lines.append(f"train, test = sg.datasets.{split}(data, test_size=0.2, "
                         f"seed={args.seed})")
    elif args.dataset == "digits":
        lines = [f"train, test = sg.datasets.digits(test_size=0.2, seed={args.seed})"]
    else:
        split = "random_split" if args.dataset == "regression_1d" else "stratified_split"
        size = GENERATED_ROWS[args.dataset]
        lines = [f"train, test = sg.datasets.{split}(sg.datasets.{args.dataset}(n={size}, "
                 f"seed={args.seed}), test_size=0.2, seed={args.seed})"]
    model = run.model
    lines.append(f"model = sg.MLP({model.sizes}, activation={model.activation!r}, "
                 f"loss={model.loss!r}, seed={args.seed}, dtype=np.{np.dtype(model.dtype).name}, "
                 f"backend={model.backend!r})")
    if model.target_scaling is not None:
        lines.append("sg.standardize_targets(model, train)")
    if model.scaling is not None:
        lines.append("sg.standardize(model, train)")
    optimizer = {"gd": f"sg.GD(lr={s['lr']!r}", "sgd": f"sg.SGD(lr={s['lr']!r}",
                 "minibatch": f"sg.MiniBatchSGD(lr={s['lr']!r}, batch_size={s['batch_size']}"}
    lines.append(f"optimizer = {optimizer[s['optimizer']]}, momentum={s['momentum']!r})")
    budget = "" if s["memory_budget"] is None else f", memory_budget={s['memory_budget']!r}"
    lines.append(f"history = sg.fit(model, train, optimizer, epochs={s['epochs']}, "
                 f"accumulate={s['accumulate']!r}, validation=test, seed={args.seed}{budget})")
    return "\n".join(["import numpy as np", "import scratchgd as sg", "", *lines]) + "\n"
