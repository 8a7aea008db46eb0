"""The targets of `scratchgd playground` (docs/playground.md), measured on a real server.

- page served and drawn: navigation to the first painted chart (Playwright, the system's
  Chromium), median of 5; the first point of the first curve after Train on spirals;
- updates per second during a run (spirals and the digits, batch 1 and the full batch, numba
  warm): the median gap between two ``progress`` events, over the run;
- Stop: from the POST to the ``stopped`` event at the client, max of 10; Pause: from the POST
  to the ``paused`` state event, max of 10;
- the default batch-size sweep on spirals (batch 1, 8, 32, 128, n; 20 epochs; numba warm),
  runs one after another as the page posts them;
- ``import scratchgd`` without Starlette.

    pip install -e ".[playground,test]"   # and apt-get install chromium
    python benchmarks/playground.py [--repeats 5] [--stops 10]
    python benchmarks/playground.py --screenshot docs/figures/playground.png   # the docs' figure
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx
import uvicorn

from scratchgd import cli
from scratchgd.cli.playground import hosts_of
from scratchgd.playground.app import create_app
from scratchgd.playground.runs import FINAL, read_events

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def serve() -> tuple[str, uvicorn.Server, threading.Thread]:
    """A playground on a free port of 127.0.0.1, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    args = cli.build_parser().parse_args(["playground", "--no-browser"])
    server = uvicorn.Server(uvicorn.Config(create_app(args, hosts_of("127.0.0.1", port)),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


def events(http: httpx.Client, run_id: str):
    """``(name, data, arrival)`` of a run's events as they come."""
    with http.stream("GET", f"/api/runs/{run_id}/events") as response:
        for name, data in read_events(response.iter_lines()):
            yield name, data, time.perf_counter()


def train(http: httpx.Client, settings: dict) -> list:
    answer = http.post("/api/runs", json=settings)
    answer.raise_for_status()
    return list(events(http, answer.json()["id"]))


def update_rates(http: httpx.Client) -> list[str]:
    lines = []
    cases = [("spirals", "sgd", None, 400), ("spirals", "gd", None, 10_000),
             ("digits", "sgd", None, 60), ("digits", "gd", None, 5000)]
    for dataset, optimizer, batch, epochs in cases:
        settings = {"dataset": dataset, "optimizer": optimizer, "epochs": epochs,
                    "hidden": [32], "backend": "numba"}
        if batch:
            settings["batch_size"] = batch
        got = train(http, settings)
        times = [t for name, _, t in got if name == "progress"]
        gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)] or [float("nan")]
        end = got[-1][1]
        lines.append(f"{dataset:8} {optimizer:3} (batch {'1' if optimizer == 'sgd' else 'n'}) "
                     f"{epochs:5} epochs: {len(times):4} updates in {end['seconds']:.2f} s, "
                     f"median gap {1000 * statistics.median(gaps):.1f} ms = "
                     f"{1 / statistics.median(gaps):.1f} updates/s, longest gap "
                     f"{1000 * max(gaps):.0f} ms; {end['history']['steps']} steps")
    return lines


def pause_latency(http: httpx.Client, backend: str, count: int) -> list[float]:
    """POST pause to the ``paused`` state event at the client, ``count`` times in one run."""
    answer = http.post("/api/runs", json={"dataset": "spirals", "optimizer": "sgd",
                                          "epochs": 10_000, "backend": backend})
    run_id = answer.json()["id"]
    stream = events(http, run_id)
    seconds, sent = [], None
    for name, data, arrived in stream:
        if name == "progress" and sent is None and len(seconds) < count:
            sent = time.perf_counter()
            http.post(f"/api/runs/{run_id}/pause")
        elif name == "state" and data["status"] == "paused":
            seconds.append(arrived - sent)
            sent = None
            http.post(f"/api/runs/{run_id}/{'resume' if len(seconds) < count else 'stop'}")
    return seconds


def stop_latency(http: httpx.Client, backend: str, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        answer = http.post("/api/runs", json={"dataset": "spirals", "optimizer": "sgd",
                                              "epochs": 10_000, "backend": backend})
        run_id = answer.json()["id"]
        stream = events(http, run_id)
        progress = 0
        for name, _, _ in stream:
            progress += name == "progress"
            if progress == 3:
                break
        sent = time.perf_counter()
        http.post(f"/api/runs/{run_id}/stop")
        name, _, arrived = next(e for e in stream if e[0] in FINAL)
        assert name == "stopped", name
        seconds.append(arrived - sent)
    return seconds


def sweep(http: httpx.Client, epochs: int) -> tuple[float, list[str]]:
    start = time.perf_counter()
    lines = []
    for batch in (1, 8, 32, 128, 480):
        got = train(http, {"dataset": "spirals", "optimizer": "minibatch", "batch_size": batch,
                           "epochs": epochs, "lr": 0.1, "hidden": [32], "backend": "numba"})
        history = got[-1][1]["history"]
        lines.append(f"  batch {batch:3}: {history['steps']:5} steps, "
                     f"test accuracy {history['val_accuracy'][-1]:.3f}, "
                     f"trained {got[-1][1]['seconds']:.2f} s")
    return time.perf_counter() - start, lines


def page_timings(url: str, repeats: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    painted, first_point = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeats):
            page = browser.new_page()
            page.goto(url + "/?dataset=spirals&epochs=20&hidden=32&backend=numba")
            page.wait_for_function("window.firstPaint !== undefined")
            painted.append(page.evaluate("window.firstPaint") / 1000)
            page.evaluate("() => { window.clicked = performance.now(); "
                          "document.getElementById('train').click(); }")
            page.wait_for_function("current && current.firstPoint !== undefined")
            first_point.append(page.evaluate("current.firstPoint - window.clicked") / 1000)
            page.wait_for_function("!active(current)")
            page.close()
        browser.close()
    return painted, first_point


def screenshot(url: str, path: str) -> None:
    """The page after a batch-size sweep on spirals, x-axis training steps (log): the docs' figure."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/?dataset=spirals&epochs=20&hidden=32&lr=0.1&backend=numba")
        page.wait_for_function("window.firstPaint !== undefined")
        page.click("#sweep")
        page.wait_for_function("runs.length === 5 && runs.every((r) => !active(r))",
                               timeout=120_000)
        page.select_option("#xaxis", "steps")
        page.check("#logx")
        page.evaluate("current = runs[2]; showSummary(current); drawAll();")
        page.screenshot(path=path, full_page=True)
        browser.close()
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stops", type=int, default=10)
    parser.add_argument("--sweep-epochs", type=int, default=20)
    parser.add_argument("--screenshot", metavar="FILE.png", default=None,
                        help="only write the docs' screenshot to this file")
    args = parser.parse_args()
    url, server, thread = serve()
    http = httpx.Client(base_url=url, timeout=600)
    start = time.perf_counter()
    train(http, {"dataset": "spirals", "epochs": 1, "backend": "numba"})  # numba warm
    first_numba = time.perf_counter() - start
    if args.screenshot:
        screenshot(url, args.screenshot)
        return
    print(f"python benchmarks/playground.py --repeats {args.repeats} --stops {args.stops}; "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    print(f"the server's first numba run (1 epoch of spirals: the kernels loaded from the "
          f"cache, or compiled): {first_numba:.2f} s")
    code = "import sys, scratchgd, scratchgd.cli; print('starlette' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip()
    print(f"import scratchgd imports starlette: {imported}")
    painted, first = page_timings(url, args.repeats)
    print(f"page served and drawn: median {statistics.median(painted):.3f} s "
          f"(of {', '.join(f'{s:.3f}' for s in painted)})")
    print(f"first point after Train (spirals, numba warm): median "
          f"{statistics.median(first):.3f} s (of {', '.join(f'{s:.3f}' for s in first)})")
    print("updates during a run (numba warm):")
    for line in update_rates(http):
        print("  " + line)
    for backend in ("numba", "numpy"):
        stops = stop_latency(http, backend, args.stops)
        print(f"Stop to 'stopped' at the client ({backend}, SGD on spirals): max "
              f"{1000 * max(stops):.0f} ms, median {1000 * statistics.median(stops):.0f} ms "
              f"of {len(stops)}")
    for backend in ("numba", "numpy"):
        pauses = pause_latency(http, backend, args.stops)
        print(f"Pause to 'paused' at the client ({backend}, SGD on spirals): max "
              f"{1000 * max(pauses):.0f} ms, median {1000 * statistics.median(pauses):.0f} ms "
              f"of {len(pauses)}")
    seconds, lines = sweep(http, args.sweep_epochs)
    print(f"batch-size sweep on spirals, {args.sweep_epochs} epochs, numba warm: {seconds:.2f} s")
    for line in lines:
        print(line)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    server.should_exit = True


if __name__ == "__main__":
    main()
