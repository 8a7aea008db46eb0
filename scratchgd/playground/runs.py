"""The playground's runs: each one :func:`scratchgd.fit`, trained one at a time in a worker thread.

A :class:`Live` hook (``fit(hooks=[...])``) cuts the run into spans of about
``SPAN_SECONDS`` (so the compiled engine reports too), publishes each update as
an event with the library's own counters, and pauses, steps or stops the run at
a training-step boundary (:class:`scratchgd.StopTraining`). Nothing here
imports the web framework: :mod:`.app` serves what this module records.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import StopTraining, TrainingDiverged
from ..history import History, Position
from ..hooks import Hook
from ..noise import advise_batch_size, default_batch_sizes, gradient_noise
from ..train import fit
from .settings import Run, snippet

SPAN_SECONDS = 0.04
"""The time a span aims at: updates arrive about ``1 / SPAN_SECONDS`` times a second."""

MAX_QUEUED = 8
"""Runs waiting for the one training now; more are refused."""

KEPT = 32
"""Finished runs kept (the oldest are forgotten)."""

KEPT_DATA = 4
"""Finished runs that keep their data sets (for ``advice``) and every update; older ones keep
their first and final events (the final one holds the whole History)."""

FINAL = ("done", "stopped", "error")
"""The events (and statuses) that end a run."""

GRID = 48
"""Cells per side of a 2-D decision surface; points of a 1-D fitted curve: ``2 * GRID``."""


def read_events(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, data)`` of the server-sent events in ``lines``, up to the run's final one.

    ``lines``: the lines of a ``GET /api/runs/{id}/events`` response (for a Python client
    of the API, e.g. ``httpx``'s ``response.iter_lines()``).
    """
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: "):])
            if name in FINAL:
                return


def finite(value: float) -> float | None:
    """``value``, or ``None`` for NaN and infinities (JSON has neither)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def history_json(history: History) -> dict[str, Any]:
    """``History`` as JSON-ready lists, NaN written ``None``."""
    return {key: [finite(v) for v in value] if isinstance(value, list) else value
            for key, value in dataclasses.asdict(history).items()}


class Live(Hook):
    """The seam between a page and ``fit``: short spans, updates, pause, step and stop."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.per_step = None  # seconds a step takes, measured
        self.span_start = self.last_sent = time.perf_counter()
        self.steps_at_start = self.sent_iterations = self.sent_epochs = 0

    def span_steps(self, history: History, at: Position) -> int | None:
        self.job.history = history
        self.span_start, self.steps_at_start = time.perf_counter(), history.steps
        if self.job.paused or self.per_step is None:
            return 1  # a Step, or the first span: one training step
        return max(1, int(SPAN_SECONDS / self.per_step))

    def end_of_span(self, history: History, at: Position) -> None:
        steps = history.steps - self.steps_at_start
        if steps:
            seconds = (time.perf_counter() - self.span_start) / steps
            self.per_step = seconds if self.per_step is None else 0.5 * (self.per_step + seconds)
        if time.perf_counter() - self.last_sent >= SPAN_SECONDS or self.job.paused or self.job.stop:
            self.send(history, at)
        self.job.wait_while_paused()
        if self.job.stop:
            raise StopTraining

    def end_of_epoch(self, history: History, at: Position) -> None:
        if time.perf_counter() - self.last_sent >= SPAN_SECONDS or at.epoch == self.job.epochs:
            self.send(history, at)
        if self.job.stop:
            raise StopTraining

    def send(self, history: History, at: Position) -> None:
        """Publish a ``progress`` event: the counters and the losses since the last one."""
        self.last_sent = time.perf_counter()
        new_epochs = range(self.sent_epochs, history.epochs)
        rows = history.to_dict()
        event = {"epoch": at.epoch, "epochs": self.job.epochs, "iteration": at.iteration,
                 "iterations_per_epoch": self.job.iterations_per_epoch,
                 "iterations": history.iterations, "steps": history.steps,
                 "samples_seen": history.samples_seen, "seconds": self.job.elapsed(),
                 "first_iteration": self.sent_iterations,
                 "iteration_loss": [finite(v) for v in history.iteration_loss[self.sent_iterations:]],
                 "epoch_rows": [{c: finite(rows[c][e]) for c in History.COLUMNS}
                                for e in new_epochs]}
        event.update(self.job.picture())
        self.sent_iterations, self.sent_epochs = len(history.iteration_loss), history.epochs
        self.job.publish("progress", event)


class Job:
    """One run of the page: its checked settings, its state, its events.

    ``status``: ``queued``, ``running``, ``paused``, ``done``, ``stopped`` or
    ``error``. ``events`` holds every event so far as ``(name, json)``, so a
    page that subscribes late gets the whole run.
    """

    def __init__(self, number: int, run: Run, paused: bool = False) -> None:
        self.id, self.run = str(number), run
        self.status, self.error = "queued", None
        self.epochs = run.args.epochs
        self.iterations_per_epoch = len(run.plan.loader)
        self.history = History()
        self.paused, self.stop, self.step = paused, False, False
        self.cond = threading.Condition()
        self.events: list[tuple[str, str]] = []
        self.compactions = 0  # an old finished run keeps its first and final events only
        self.listeners: list[Callable[[], None]] = []
        self.started = self.paused_since = None
        self.paused_seconds = 0.0
        self.surface_input = self._surface_input()
        self._points = None
        self.rows = len(run.train), len(run.test)

    def elapsed(self) -> float:
        """Seconds the run has trained (time paused excluded)."""
        if self.started is None:
            return 0.0
        now = self.paused_since or time.perf_counter()
        return now - self.started - self.paused_seconds

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Record an event and wake the pages that listen."""
        with self.cond:
            self.events.append((name, json.dumps(data, allow_nan=False)))
            listeners = list(self.listeners)
        for wake in listeners:
            wake()

    def control(self, action: str) -> None:
        """``pause``, ``resume``, ``step`` (one training step, then paused) or ``stop``."""
        with self.cond:
            if action == "stop":
                self.stop = True
            elif action == "pause":
                self.paused = True
            elif action == "resume":
                self.paused = self.step = False
            elif action == "step":
                self.step = self.paused  # running: the step is the pause at the next boundary
                self.paused = True
            self.cond.notify_all()

    def wait_while_paused(self) -> None:
        """Called at a step boundary: block while paused, until resumed, stepped or stopped."""
        with self.cond:
            if not self.paused or self.stop:
                return
            self.status, self.paused_since = "paused", time.perf_counter()
            self.publish_state()
            while self.paused and not self.stop and not self.step:
                self.cond.wait()
            self.step = False
            self.paused_seconds += time.perf_counter() - self.paused_since
            self.paused_since, self.status = None, "running"
            self.publish_state()

    def publish_state(self) -> None:
        self.publish("state", {"status": self.status, "seconds": self.elapsed()})

    def train(self) -> None:
        """Train the run (in the worker thread); end with a ``done``, ``stopped`` or ``error`` event."""
        run = self.run
        self.status, self.started = "running", time.perf_counter()
        self.publish("start", self.summary())
        try:
            if self.stop:
                raise StopTraining
            self.history = fit(run.model, run.train, run.optimizer, epochs=run.args.epochs,
                               accumulate=run.args.accumulate, validation=run.test,
                               progress=False, seed=run.args.seed,
                               memory_budget=run.args.memory_budget, hooks=[Live(self)])
            self.status = "stopped" if self.stop else "done"
        except StopTraining:
            self.status = "stopped"
        except TrainingDiverged as exc:
            self.status, self.error = "error", str(exc)
            self.history = exc.history or self.history
        except Exception as exc:  # the server stays up; the page shows what went wrong
            self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
        self.publish(self.status, {"seconds": self.elapsed(), "error": self.error,
                                   "history": history_json(self.history), **self.picture()})

    def compact(self) -> None:
        """Keep the first and the final event only: the final one holds the whole History."""
        with self.cond:
            self.events = [self.events[0], self.events[-1]] if len(self.events) > 2 else self.events
            self.compactions += 1

    def release(self) -> None:
        """Let an old finished run's data sets and updates go: its advice is no longer offered."""
        self.points()  # its points are kept
        self.run.train = self.run.test = None
        self.compact()

    def summary(self) -> dict[str, Any]:
        """What the page shows of a run besides its curves: settings, sizes, command line."""
        run = self.run
        return {"id": self.id, "status": self.status, "settings": run.settings,
                "command": run.command, "python": snippet(run),
                "epochs": self.epochs, "iterations_per_epoch": self.iterations_per_epoch,
                "train_rows": self.rows[0], "test_rows": self.rows[1],
                "model": repr(run.model), "optimizer": repr(run.optimizer),
                "step_bytes": run.step_bytes, "max_batch": run.max_batch,
                "error": self.error, **self.points()}

    def points(self) -> dict[str, Any]:
        """Up to 600 training rows of 1-D or 2-D data, for the surface or the curve."""
        if self.surface_input is None:
            return {}
        if self._points is None:
            self._points = self._sample_points()
        return self._points

    def _sample_points(self) -> dict[str, Any]:
        data = self.run.train
        rows = slice(None, None, max(1, len(data) // 600))
        y = data.y[rows]
        return {"points": {"x": np.asarray(data.X[rows], dtype=float).tolist(),
                           "y": np.asarray(y, dtype=float).ravel().tolist()
                           if y.ndim > 1 else np.asarray(y).tolist()},
                "extent": self.surface_input[1]}

    def _surface_input(self) -> tuple[np.ndarray, list[float]] | None:
        """The grid a 2-D classifier's surface (or a 1-D regressor's curve) is drawn on."""
        model, X = self.run.model, self.run.train.X
        if model.n_inputs not in (1, 2) or (not model.classifier) != (model.n_inputs == 1):
            return None
        if not model.classifier and model.n_outputs != 1:
            return None
        low, high = np.min(X, axis=0).astype(float), np.max(X, axis=0).astype(float)
        pad = 0.1 * np.maximum(high - low, 1e-9)
        low, high = low - pad, high + pad
        if model.n_inputs == 1:
            return np.linspace(low[0], high[0], 2 * GRID)[:, None], [low[0], high[0]]
        xs, ys = np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID)
        grid = np.column_stack([np.tile(xs, GRID), np.repeat(ys[::-1], GRID)])
        return grid, [low[0], high[0], low[1], high[1]]

    def picture(self) -> dict[str, Any]:
        """The decision surface (class and confidence per cell) or the fitted curve, now."""
        if self.surface_input is None:
            return {}
        grid, _ = self.surface_input
        model = self.run.model
        with np.errstate(all="ignore"):
            if not model.classifier:
                curve = np.asarray(model.predict(grid), dtype=float).ravel()
                return {"curve": [finite(round(float(v), 5)) for v in curve]}
            z = np.asarray(model.forward(grid), dtype=float)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        if not np.isfinite(p).all():
            return {}
        return {"surface": {"size": GRID, "classes": p.argmax(axis=1).tolist(),
                            "confidence": np.round(p.max(axis=1), 2).tolist()}}

    def model_file(self) -> bytes:
        """The model as a scratchgd model file (what ``scratchgd predict`` reads)."""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"run-{self.id}.npz")
            self.run.model.save(path)
            with open(path, "rb") as fh:
                return fh.read()

    def history_csv(self) -> str:
        """The History as ``History.to_csv`` writes it."""
        return ",".join(History.COLUMNS) + "\n" + "".join(self.history.csv_rows())

    def advice(self) -> dict[str, Any]:
        """The gradient noise scale and the advised batch sizes at the weights now (finished runs)."""
        run = self.run
        if run.train is None:
            raise ValueError(f"run {self.id} is too old: its data set has been let go; train it "
                             f"again")
        noise = gradient_noise(run.model, run.train, rows=min(len(run.train), 2000))
        table = advise_batch_size(run.model, run.train, default_batch_sizes(len(run.train)),
                                  rows=min(len(run.train), 2000))
        return {"b_simple": finite(noise.b_simple), "rows": noise.rows,
                "table": [{k: finite(v) if isinstance(v, float) else v for k, v in row.items()}
                          for row in table]}


class Runner:
    """The runs of one server: at most one training, ``MAX_QUEUED`` waiting, in order."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.queue: deque[Job] = deque()
        self.current: Job | None = None
        self.numbers = itertools.count(1)
        self.lock = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="playground-runs", daemon=True)
        self.worker.start()

    def submit(self, run: Run, paused: bool = False) -> Job:
        """Queue ``run``; ``ValueError`` if ``MAX_QUEUED`` runs already wait."""
        with self.lock:
            if len(self.queue) >= MAX_QUEUED:
                raise ValueError(f"{MAX_QUEUED} runs are already waiting; stop one or wait")
            job = Job(next(self.numbers), run, paused)
            self.jobs[job.id] = job
            self.queue.append(job)
            self._forget_old()
            self.lock.notify_all()
        return job

    def stop(self, job: Job) -> None:
        """Stop ``job``: at its next step boundary if training, at once if queued."""
        with self.lock:
            queued = job in self.queue
            if queued:
                self.queue.remove(job)
        job.control("stop")
        if queued:
            job.status = "stopped"
            job.publish("stopped", {"seconds": 0.0, "error": None,
                                    "history": history_json(job.history)})

    def close(self) -> None:
        """Stop every run and the worker (the server is shutting down)."""
        with self.lock:
            self.closed = True
            jobs = list(self.queue) + ([self.current] if self.current else [])
            self.lock.notify_all()
        for job in jobs:
            job.control("stop")

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.status in FINAL]
        for job in finished[:max(0, len(self.jobs) - KEPT)]:
            del self.jobs[job.id]
        for job in finished[:-KEPT_DATA]:
            if job.id in self.jobs and job.run.train is not None:
                job.release()

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.queue and not self.closed:
                    self.lock.wait()
                if self.closed:
                    return
                self.current = job = self.queue.popleft()
            try:
                job.train()
            except Exception as exc:  # a failure to report the run must not end the worker
                job.status, job.error = "error", f"{type(exc).__name__}: {exc}"
                job.publish("error", {"seconds": job.elapsed(), "error": job.error,
                                      "history": None})
            with self.lock:
                self.current = None
