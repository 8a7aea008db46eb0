"""scratchgd playground's API: checked settings, the live event stream, safety, and runs equal to
the command line they show, bit for bit.

Starlette's test client for the requests; a real uvicorn on a free port for the event stream.
"""

import dataclasses
import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the 'playground' extra")
pytest.importorskip("uvicorn", reason="needs the 'playground' extra")
pytest.importorskip("httpx", reason="needs the 'test' extra")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import scratchgd as sg  # noqa: E402
from scratchgd import cli  # noqa: E402
from scratchgd.cli import playground as command  # noqa: E402
from scratchgd.playground import runs as runs_module  # noqa: E402
from scratchgd.playground.app import create_app  # noqa: E402

SPIRALS = {"dataset": "spirals", "optimizer": "minibatch", "batch_size": 16, "epochs": 3,
           "lr": 0.1, "momentum": 0, "accumulate": 1, "hidden": [32], "activation": "relu",
           "backend": "numpy", "dtype": "float64", "seed": 0}


def flags(*argv):
    """The ``scratchgd playground`` command line's namespace."""
    return cli.build_parser().parse_args(["playground", *argv])


@pytest.fixture
def client():
    app = create_app(flags(), {"testserver"})
    with TestClient(app) as c:
        yield c
    app.state.runner.close()


class Server:
    """A real uvicorn serving the playground on a free port, in a thread."""

    def __init__(self, *argv):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(flags(*argv), command.hosts_of("127.0.0.1", self.port))
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def close(self):
        self.app.state.runner.close()
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, settings, query=""):
        return self.http.post("/api/runs" + query, json=settings)

    def events(self, run_id):
        """Yield ``(name, data, seconds)`` of the run's server-sent events as they arrive."""
        with self.http.stream("GET", f"/api/runs/{run_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for name, data in runs_module.read_events(response.iter_lines()):
                yield name, data, time.perf_counter()

    def train(self, settings):
        """Run ``settings`` to the end; its events and its record."""
        answer = self.post(settings)
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
        events = list(self.events(run_id))
        return run_id, events, self.http.get(f"/api/runs/{run_id}").json()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def nan_for_none(history):
    return {k: [math.nan if v is None else v for v in value] if isinstance(value, list) else value
            for k, value in history.items()}


def assert_same_history(record, history):
    fields = dataclasses.asdict(history)
    for name, value in nan_for_none(record).items():
        if name != "epoch_seconds":
            np.testing.assert_array_equal(value, fields[name], err_msg=name)


def assert_same_as_command_line(record, model_file, tmp_path, monkeypatch):
    """The run ``record`` (with its ``model_file``) equals its command line and its Python."""
    captured = {}
    real_fit = cli.train.fit

    def fit(*args, **kwargs):
        captured["history"] = real_fit(*args, **kwargs)
        return captured["history"]

    monkeypatch.setattr(cli.train, "fit", fit)
    argv = shlex.split(record["command"])
    assert argv[:2] == ["scratchgd", "train"]
    assert cli.main([*argv[1:], "--no-progress", "--save", str(tmp_path / "cli.npz")]) == 0
    assert_same_history(record["history"], captured["history"])
    (tmp_path / "page.npz").write_bytes(model_file)
    page, line = sg.load_model(tmp_path / "page.npz"), sg.load_model(tmp_path / "cli.npz")
    for p, q in zip(page.params, line.params, strict=True):
        assert np.array_equal(p, q)
    scope = {}
    exec(record["python"], scope)
    for p, q in zip(scope["model"].params, page.params, strict=True):
        assert np.array_equal(p, q)
    assert_same_history(record["history"], scope["history"])


CASES = {
    "spirals numpy minibatch": SPIRALS,
    "regression_1d numba accumulate": {"dataset": "regression_1d", "backend": "numba",
                                       "epochs": 4, "accumulate": 3, "lr": 0.05, "hidden": [16, 8],
                                       "momentum": 0.5},
    "digits gd": {"dataset": "digits", "optimizer": "gd", "epochs": 3, "hidden": [8],
                  "activation": "tanh"},
    "blobs sgd numba float32": {"dataset": "blobs", "optimizer": "sgd", "epochs": 2,
                                "hidden": [], "backend": "numba", "dtype": "float32", "seed": 3},
}


@pytest.mark.parametrize("name", CASES)
def test_a_page_run_equals_the_command_line_it_shows(server, name, tmp_path, monkeypatch):
    run_id, events, record = server.train(CASES[name])
    assert [e[0] for e in events][0] == "start" and events[-1][0] == "done"
    progress = [data for kind, data, _ in events if kind == "progress"]
    assert progress and progress[-1]["steps"] == record["history"]["steps"]
    # the page's losses, update by update, are the History's
    losses = []
    for p in progress:
        losses[p["first_iteration"]:] = p["iteration_loss"]
    assert losses == record["history"]["iteration_loss"]
    assert_same_as_command_line(record, server.http.get(f"/api/runs/{run_id}/model").content,
                                tmp_path, monkeypatch)
    # the settings it reports, posted again, are the same run
    again = server.post(record["settings"]).json()["id"]
    assert server.http.get(f"/api/runs/{again}").json()["command"] == record["command"]
    # the History as CSV: History.to_csv's table
    csv = server.http.get(f"/api/runs/{run_id}/history.csv").text.splitlines()
    assert csv[0] == ",".join(sg.History.COLUMNS) and len(csv) == 1 + record["history"]["epochs"]


def test_a_run_on_the_command_lines_file_equals_its_command_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3)) * [1.0, 10.0, 100.0]
    table = np.column_stack([X, np.tanh(X[:, 0]) + X[:, 1] / 10])
    np.savetxt(tmp_path / "table.csv", table, delimiter=",", header="a,b,c,y", comments="")
    app = create_app(flags("--data", str(tmp_path / "table.csv"), "--loss", "mse"), {"testserver"})
    with TestClient(app) as c:
        run_id = c.post("/api/runs", json={"epochs": 3, "hidden": [8], "lr": 0.01}).json()["id"]
        deadline = time.time() + 60
        while c.get(f"/api/runs/{run_id}").json()["status"] != "done" and time.time() < deadline:
            time.sleep(0.05)
        record = c.get(f"/api/runs/{run_id}").json()
        assert f"--data {tmp_path}" in record["command"] and record["settings"]["scale"] == "standard"
        assert_same_as_command_line(record, c.get(f"/api/runs/{run_id}/model").content,
                                    tmp_path, monkeypatch)
    app.state.runner.close()


def test_progress_events_carry_the_article_counters(server):
    settings = {**SPIRALS, "optimizer": "sgd", "epochs": 2}
    settings.pop("batch_size")
    _, events, record = server.train(settings)
    progress = [data for kind, data, _ in events if kind == "progress"]
    for p in progress:
        assert set(p) >= {"epoch", "iteration", "iterations_per_epoch", "steps", "samples_seen",
                          "iteration_loss", "seconds", "surface"}
        assert p["iterations_per_epoch"] == 480 and 0 <= p["iteration"] <= 480
        assert p["steps"] == p["iterations"] == p["samples_seen"]  # SGD: one row per step
    assert [p["seconds"] for p in progress] == sorted(p["seconds"] for p in progress)
    start = events[0][1]
    assert start["step_bytes"] > 0 and start["max_batch"] > 1000 and "points" in start
    assert record["status"] == "done" and record["history"]["epochs"] == 2


def test_stop_ends_a_run_at_a_step_boundary_and_the_server_keeps_serving(server):
    settings = {**SPIRALS, "optimizer": "sgd", "epochs": 10_000}
    settings.pop("batch_size")
    run_id = server.post(settings).json()["id"]
    stream = server.events(run_id)
    for kind, _, _ in stream:
        if kind == "progress":
            break
    sent = time.perf_counter()
    assert server.http.post(f"/api/runs/{run_id}/stop").status_code == 200
    kind, data, arrived = next(e for e in stream if e[0] in ("done", "stopped", "error"))
    assert kind == "stopped" and arrived - sent < 2.0  # the target is 0.2 s (benchmarks/)
    history = data["history"]
    assert 0 < history["steps"] == history["iterations"] == len(history["iteration_loss"])
    assert history["epochs"] == len(history["epoch_loss"]) == history["steps"] // 480
    assert server.http.get(f"/api/runs/{run_id}").json()["status"] == "stopped"
    assert server.post({**SPIRALS, "epochs": 1}).status_code == 201


def test_pause_step_and_resume_act_at_step_boundaries(server):
    run_id = server.post({**SPIRALS, "epochs": 1}, query="?paused=1").json()["id"]
    stream = server.events(run_id)
    states = []
    for kind, data, _ in stream:
        if kind == "progress":
            states.append(data["steps"])
        if kind == "state" and data["status"] == "paused":
            break
    assert states[-1] == 1  # Step from nothing: one training step, then paused
    server.http.post(f"/api/runs/{run_id}/step")
    for kind, data, _ in stream:
        if kind == "progress":
            states.append(data["steps"])
        if kind == "state" and data["status"] == "paused" and states[-1] == 2:
            break
    assert states[-1] == 2
    server.http.post(f"/api/runs/{run_id}/resume")
    assert [e for e in stream][-1][0] == "done"
    assert server.http.get(f"/api/runs/{run_id}").json()["history"]["steps"] == 30


def test_a_diverging_run_ends_with_its_message(server):
    _, events, record = server.train({"dataset": "regression_1d", "lr": 1000, "epochs": 20})
    assert events[-1][0] == "error" and "training diverged" in events[-1][1]["error"]
    assert record["status"] == "error" and "lr=1000" in record["error"]
    assert record["history"]["iterations"] > 0  # what it recorded before
    assert server.http.get("/api/config").status_code == 200


def test_advice_measures_the_noise_scale_of_a_finished_run(server):
    run_id, _, _ = server.train({**SPIRALS, "epochs": 2})
    advice = server.http.get(f"/api/runs/{run_id}/advice").json()
    assert advice["b_simple"] > 0 and advice["rows"] == 480
    assert [row["batch_size"] for row in advice["table"]] == sg.noise.default_batch_sizes(480)


def test_a_finished_run_keeps_its_first_and_final_events_and_old_runs_let_data_go(
        server, monkeypatch):
    monkeypatch.setattr(runs_module, "KEPT_DATA", 1)
    first, events, _ = server.train({**SPIRALS, "optimizer": "sgd", "batch_size": None,
                                     "epochs": 30})
    assert len(events) > 3
    assert [e[0] for e in server.events(first)] == [e[0] for e in events]  # a late listener
    for _ in range(2):  # two newer runs: the first lets its data and updates go
        server.train({**SPIRALS, "epochs": 1})
    replay = list(server.events(first))
    assert [e[0] for e in replay] == ["start", "done"]
    assert replay[-1][1]["history"] == events[-1][1]["history"]
    too_old = server.http.get(f"/api/runs/{first}/advice")
    assert too_old.status_code == 400 and "too old" in too_old.json()["error"]
    assert server.http.get(f"/api/runs/{first}").json()["points"]  # still drawn
    assert server.http.get(f"/api/runs/{first}/model").status_code == 200


def test_at_most_eight_runs_wait(client, monkeypatch):
    first = client.post("/api/runs", json={**SPIRALS, "epochs": 10}, params={"paused": "1"})
    ids = [first.json()["id"]]
    deadline = time.time() + 30
    while client.get(f"/api/runs/{ids[0]}").json()["status"] != "paused" and time.time() < deadline:
        time.sleep(0.02)
    for _ in range(runs_module.MAX_QUEUED):
        answer = client.post("/api/runs", json=SPIRALS)
        assert answer.status_code == 201
        ids.append(answer.json()["id"])
    refused = client.post("/api/runs", json=SPIRALS)
    assert refused.status_code == 429 and "8 runs are already waiting" in refused.json()["error"]
    for run_id in ids[1:]:  # a queued run stops at once
        client.post(f"/api/runs/{run_id}/stop")
        assert client.get(f"/api/runs/{run_id}").json()["status"] == "stopped"
    client.post(f"/api/runs/{ids[0]}/stop")


@pytest.mark.parametrize("change, field, words", [
    ({"epochs": 0}, "epochs", "epochs must be >= 1"),
    ({"epochs": 10_001}, "epochs", "at most 10000"),
    ({"epochs": 2.5}, "epochs", "invalid int value"),
    ({"epochs": True}, "epochs", "must be a number"),
    ({"lr": -1}, "lr", "lr must be finite and in (0.0, inf)"),
    ({"lr": "fast"}, "lr", "invalid float value"),
    ({"batch_size": 0}, "batch_size", "batch_size must be >= 1"),
    ({"accumulate": 0}, "accumulate", "accumulate must be >= 1"),
    ({"accumulate": "all"}, "accumulate", "'epoch'"),
    ({"hidden": [64] * 5}, "hidden", "at most 4 layers"),
    ({"hidden": [2048]}, "hidden", "1024 units"),
    ({"hidden": 32}, "hidden", "a list"),
    ({"hidden": ["--data=/etc/passwd"]}, "hidden", "layer widths"),
    ({"hidden": [16, "--epochs", "1"]}, "hidden", "layer widths"),
    ({"hidden": ["-3"]}, "hidden", "-3"),
    ({"activation": "gelu"}, "activation", "invalid choice"),
    ({"optimizer": "adam"}, "optimizer", "invalid choice"),
    ({"optimizer": "gd"}, "batch_size", "--batch-size applies to --optimizer minibatch"),
    ({"backend": "cuda"}, "backend", "backend"),
    ({"seed": -1}, "seed", "seed"),
    ({"dataset": "file"}, "dataset", "no --data file was given"),
    ({"dataset": "/etc/passwd"}, "dataset", "invalid choice"),
    ({"loss": "mse"}, "loss", "--loss mse does not suit --dataset spirals"),
    ({"memory_budget": "lots"}, "memory_budget", "memory_budget"),
    ({"momentum": float("nan")}, "momentum", "finite"),
    ({"data": "/etc/passwd"}, "data", "unknown setting 'data'"),
    ({"scale_targets": "standard"}, "scale_targets", "applies to regression"),
])
def test_bad_settings_are_refused_by_name_as_the_command_line_refuses_them(client, change, field,
                                                                           words):
    body = json.dumps({**SPIRALS, **change}, allow_nan=True)
    answer = client.post("/api/runs", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and words in answer.json()["error"], answer.json()
    assert client.get("/api/runs").json() == []  # nothing was queued
    assert client.post("/api/runs", content="not json").status_code == 400


def test_a_step_over_256_mib_is_refused_before_the_run_starts(tmp_path):
    X = np.random.default_rng(0).normal(size=(40_000, 2))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", (X[:, 0] > 0).astype(np.int64))
    app = create_app(flags("--data", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")),
                     {"testserver"})
    with TestClient(app) as c:
        config = c.get("/api/config").json()
        assert config["defaults"]["dataset"] == "file" and config["rows"]["file"] == 32_000
        answer = c.post("/api/runs", json={"optimizer": "gd", "hidden": [1024], "epochs": 1})
        assert answer.status_code == 400 and "more than the 256 MiB" in answer.json()["error"]
        assert c.post("/api/runs", json={"optimizer": "gd", "hidden": [1024], "epochs": 1,
                                         "memory_budget": "64MiB"}).status_code == 201
    app.state.runner.close()


@pytest.mark.parametrize("headers, method", [
    ({"Host": "attacker.example:8765"}, "GET"),
    ({"Host": "attacker.example:8765"}, "POST"),
    ({"Origin": "http://attacker.example"}, "POST"),
    ({"Origin": "null"}, "POST"),
])
def test_requests_of_other_hosts_and_sites_are_refused(client, headers, method):
    if method == "GET":
        answer = client.get("/api/config", headers=headers)
    else:
        answer = client.post("/api/runs", json=SPIRALS, headers=headers)
    assert answer.status_code == 403 and "refused" in answer.json()["error"]
    assert client.get("/api/runs").json() == []


def test_the_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    for name in ("app.js", "style.css"):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200 and "http://" not in answer.text
    same_site = client.post("/api/runs", json={**SPIRALS, "epochs": 1},
                            headers={"Origin": "http://testserver"})
    assert same_site.status_code == 201


def test_hosts_of_a_local_server():
    assert command.hosts_of("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765",
                                                   "[::1]:8765"}


def test_import_scratchgd_does_not_import_the_web_server():
    code = ("import sys, scratchgd, scratchgd.cli, scratchgd.playground.runs; "
            "assert not {'starlette', 'uvicorn'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)


def test_without_the_extra_the_command_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert cli.main(["playground", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install -e ".[playground]"' in err


def test_a_port_in_use_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["playground", "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port} on 127.0.0.1 is in use" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_ctrl_c_ends_the_server_with_status_0(host):
    process = subprocess.Popen([sys.executable, "-m", "scratchgd", "playground", "--no-browser",
                                "--port", "0", "--host", host], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ)
    try:
        line = process.stdout.readline()
        assert line.startswith("scratchgd playground: http://127.0.0.1:")
        url = line.split()[2]
        assert httpx.get(url + "api/config", timeout=30).status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "Traceback" not in err, err
    assert "stopped" in out
    warned = "scratchgd: warning: serving on 0.0.0.0, not this machine alone" in err
    assert warned == (host == "0.0.0.0"), err
