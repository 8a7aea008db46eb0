"""The playground's web server: the page, the JSON API and the live event stream (Starlette).

======================================  =====================================================
request                                 answer
======================================  =====================================================
``GET /``                               the page (``static/``, no file fetched from elsewhere)
``GET /api/config``                     defaults, data sets and their rows, the limits
``POST /api/runs``                      settings as JSON (``scratchgd train``'s long flags):
                                        201 ``{"id": ...}``, or 400 ``{"error", "field"}``
``GET /api/runs``                       every run kept: id, status, settings
``GET /api/runs/{id}``                  settings, status, command line, the whole History
``GET /api/runs/{id}/events``           server-sent events: ``start``, ``progress`` per
                                        update, ``state``, then ``done``/``stopped``/``error``
``POST /api/runs/{id}/stop``            also ``pause``, ``resume``, ``step``
``GET /api/runs/{id}/model``            the model file (``scratchgd predict`` reads it)
``GET /api/runs/{id}/history.csv``      ``History.to_csv``'s table
``GET /api/runs/{id}/advice``           gradient noise scale and advised batch sizes
======================================  =====================================================

Every request's ``Host`` must be the server's own address (no DNS rebinding),
and a state-changing one's ``Origin``, if any, the server itself.
"""

from __future__ import annotations

import argparse
import asyncio
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..cli import train as train_command
from ..cli._data import DATASETS, load
from . import settings as _settings
from .runs import FINAL, Job, Runner, history_json

CONTROLS = ("stop", "pause", "resume", "step")


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return JSONResponse(body, status_code=status)


def create_app(defaults: argparse.Namespace, hosts: set[str]) -> Starlette:
    """The app of one server.

    ``defaults``: the ``scratchgd playground`` command line (its data flags: the
    file a page may train on, the default data set and loss). ``hosts``: the
    ``host:port`` names a request's ``Host`` may carry.
    """
    runner = Runner()
    parser = _settings.train_parser()
    config = {**_config(defaults), "settings": _settings.choices(parser),
              "default_lr": train_command.DEFAULT_LR}

    def of_a_run(handler: Any, ended: str | None = None) -> Any:
        """A route of one run: 404 for an unknown id; with ``ended``, 409 until the run ends."""
        async def route(request: Request) -> Response:
            job = runner.jobs.get(request.path_params["id"])
            if job is None:
                return error(404, "no such run")
            if ended is not None and job.status not in FINAL:
                return error(409, f"run {job.id} is {job.status}: {ended} when it ends")
            return await handler(request, job)
        return route

    async def create(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body must be JSON settings")
        try:
            run = await run_in_threadpool(_settings.check, body, defaults, parser)
        except _settings.SettingError as exc:
            return error(400, str(exc), exc.field)
        try:
            job = runner.submit(run, paused=request.query_params.get("paused") == "1")
        except ValueError as exc:
            return error(429, str(exc))
        return JSONResponse({"id": job.id}, status_code=201)

    async def listing(request: Request) -> Response:
        return JSONResponse([{"id": j.id, "status": j.status, "settings": j.run.settings}
                             for j in runner.jobs.values()])

    async def show(request: Request, job: Job) -> Response:
        return JSONResponse({**job.summary(), "history": history_json(job.history)})

    async def events(request: Request, job: Job) -> Response:
        return StreamingResponse(_stream(job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def control(request: Request, job: Job) -> Response:
        action = request.path_params["action"]
        if action not in CONTROLS:
            return error(404, f"no action {action!r}; the actions are {', '.join(CONTROLS)}")
        if action == "stop":
            runner.stop(job)
        else:
            job.control(action)
        return JSONResponse({"id": job.id, "status": job.status})

    async def model(request: Request, job: Job) -> Response:
        return Response(await run_in_threadpool(job.model_file),
                        media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="run-{job.id}.npz"'})

    async def history_csv(request: Request, job: Job) -> Response:
        return PlainTextResponse(job.history_csv(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="run-{job.id}-history.csv"'})

    async def advice(request: Request, job: Job) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(job.advice))
        except (ValueError, FloatingPointError) as exc:
            return error(400, str(exc))

    async def page_config(request: Request) -> Response:
        return JSONResponse(config)

    async def index(request: Request) -> Response:
        page = resources.files(__package__).joinpath("static", "index.html").read_text("utf-8")
        return Response(page, media_type="text/html")

    static = str(resources.files(__package__).joinpath("static"))
    app = Starlette(routes=[
        Route("/", index),
        Route("/api/config", page_config),
        Route("/api/runs", create, methods=["POST"]),
        Route("/api/runs", listing),
        Route("/api/runs/{id}", of_a_run(show)),
        Route("/api/runs/{id}/events", of_a_run(events)),
        Route("/api/runs/{id}/model", of_a_run(model, "its model is ready")),
        Route("/api/runs/{id}/history.csv", of_a_run(history_csv)),
        Route("/api/runs/{id}/advice", of_a_run(advice, "advice is measured")),
        Route("/api/runs/{id}/{action}", of_a_run(control), methods=["POST"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ])
    app.state.runner = runner
    app.add_middleware(_Guard, hosts=hosts)
    return app


class _Guard:
    """Refuse a request whose ``Host`` is not the server's, or a POST from another ``Origin``."""

    def __init__(self, app: Any, hosts: set[str]) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "").lower()
            origin = headers.get("origin")
            if host not in self.hosts:
                await error(403, f"refused: Host {host!r} is not this server "
                                 f"({', '.join(sorted(self.hosts))})")(scope, receive, send)
                return
            if (scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin is not None
                    and origin.lower() not in (f"http://{host}", f"https://{host}")):
                await error(403, f"refused: a request from {origin!r}, another site")(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _stream(job: Job):
    """The run's events as server-sent events, from its first; ends after its final one."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify() -> None:
        loop.call_soon_threadsafe(wake.set)

    with job.cond:
        job.listeners.append(notify)
    sent, compactions = 0, job.compactions
    try:
        while True:
            wake.clear()
            with job.cond:
                if job.compactions != compactions:  # the run ended: its start and final events
                    sent, compactions = min(sent, 1), job.compactions
                new = job.events[sent:]
            sent += len(new)
            for name, data in new:
                yield f"event: {name}\ndata: {data}\n\n"
            if new and new[-1][0] in FINAL:
                return
            try:
                await asyncio.wait_for(wake.wait(), 15)
            except TimeoutError:
                yield ": still here\n\n"
    finally:
        with job.cond:
            job.listeners.remove(notify)


def _config(defaults: argparse.Namespace) -> dict[str, Any]:
    """What the page needs before a run: the default settings, the data sets and their sizes."""
    names = list(DATASETS) + (["file"] if defaults.data is not None else [])
    rows = {}
    for name in names:
        flags = {**vars(defaults), "seed": 0, "loss": None}
        if name != "file":
            flags.update(data=None, labels=None, test_data=None, test_labels=None, dataset=name)
        else:
            flags["loss"] = defaults.loss
        rows[name] = len(load(argparse.Namespace(**flags))[0])  # the training rows
    return {"datasets": names, "rows": rows, "file": defaults.data,
            "defaults": {"dataset": "file" if defaults.data else defaults.dataset,
                         "loss": defaults.loss, "scale": defaults.scale,
                         "scale_targets": defaults.scale_targets},
            "limits": _settings.LIMITS, "keys": list(_settings.KEYS)}
