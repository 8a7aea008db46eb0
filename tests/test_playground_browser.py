"""The playground page in a real browser: the system's Chromium (never a downloaded one), driven
by Playwright. It loads the page, trains a run by clicking, reads the counters and a drawn chart,
stops a run, and shows an invalid value's message next to its control.

Without Chromium the test skips, unless SCRATCHGD_REQUIRE_BROWSER=1 (.ci/run sets it, after
installing Debian's chromium package), where it fails.
"""

import os
import shutil

import pytest

pytest.importorskip("starlette", reason="needs the 'playground' extra")
pytest.importorskip("playwright", reason="needs the 'test' extra (Playwright for Python)")

from playwright.sync_api import sync_playwright  # noqa: E402
from test_playground import Server  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("SCRATCHGD_REQUIRE_BROWSER") == "1":
            pytest.fail("SCRATCHGD_REQUIRE_BROWSER=1 but there is no chromium: "
                        "apt-get install chromium")
        pytest.skip("needs the system's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def ink(page, canvas):
    """Pixels of ``canvas`` that are not blank (the chart has been drawn)."""
    return page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 200) n++;
        return n; }""", canvas)


def test_train_stop_and_refuse_by_clicking(browser, server):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/?dataset=spirals&hidden=16&epochs=5&batch_size=32&lr=0.1")
    page.wait_for_function("window.firstPaint !== undefined")
    assert page.input_value("#dataset") == "spirals"  # the settings came from the address
    page.click("#train")
    page.wait_for_function("document.getElementById('c-status').textContent.endsWith('done')")
    run = server.http.get("/api/runs").json()[-1]
    record = server.http.get(f"/api/runs/{run['id']}").json()
    history = record["history"]
    assert page.text_content("#c-epoch") == "5 / 5"
    assert page.text_content("#c-iteration") == "15 / 15"
    assert page.text_content("#c-steps") == f"{history['steps']:,}" == "75"
    assert page.text_content("#c-samples") == f"{history['samples_seen']:,}" == "2,400"
    assert page.text_content("#command") == record["command"]
    for canvas in ("chart-iterations", "chart-epochs", "chart-metric", "chart-surface"):
        assert ink(page, canvas) > 200, canvas
    assert int(page.get_attribute("#chart-iterations", "data-points")) == 75
    assert "batch_size=32" in page.url  # the settings live in the address
    # a long run, stopped by its button
    page.select_option("#optimizer", "sgd")
    page.fill("#epochs", "1000")
    page.click("#train")
    page.wait_for_function("runs.length === 2 && current === runs[1] && current.counters "
                           "&& current.counters.steps > 0")  # the new run is training
    page.click("#stop")
    page.wait_for_function("document.getElementById('c-status').textContent.endsWith('stopped')")
    assert server.http.get("/api/runs").json()[-1]["status"] == "stopped"
    # an invalid value: the command line's message, next to its control
    page.fill("#epochs", "0")
    page.click("#train")
    page.wait_for_function("document.getElementById('err-epochs').textContent !== ''")
    assert page.text_content("#err-epochs") == "epochs must be >= 1, got 0"
    page.fill("#lr", "-1")
    page.fill("#epochs", "2")
    page.click("#train")
    page.wait_for_function("document.getElementById('err-lr').textContent !== ''")
    assert "lr must be finite" in page.text_content("#err-lr")
    assert errors == []
    page.close()


def test_the_sweep_trains_five_batch_sizes_one_after_another(browser, server):
    page = browser.new_page()
    page.goto(server.url + "/?dataset=spirals&hidden=8&epochs=2&lr=0.1")
    page.wait_for_function("window.firstPaint !== undefined")
    before = len(server.http.get("/api/runs").json())
    page.click("#sweep")
    page.wait_for_function("runs.length === 5 && runs.every((r) => r.status === 'done')")
    made = server.http.get("/api/runs").json()[before:]
    assert [r["settings"]["batch_size"] for r in made] == [1, 8, 32, 128, 480]
    assert {r["settings"]["optimizer"] for r in made} == {"minibatch"}
    assert page.locator("#runs tbody tr").count() == 5
    page.select_option("#xaxis", "samples")
    assert ink(page, "chart-epochs") > 200
    page.close()


def steps_shown(page):
    return int(page.text_content("#c-steps").replace(",", ""))


def test_step_pause_and_resume_by_clicking(browser, server):
    page = browser.new_page()
    page.goto(server.url + "/?dataset=spirals&hidden=8&epochs=3&batch_size=16&lr=0.1")
    page.wait_for_function("window.firstPaint !== undefined")
    page.click("#step")  # no run yet: a run that takes one training step, then pauses
    page.wait_for_function("document.getElementById('c-status').textContent.endsWith('paused')")
    assert steps_shown(page) == 1 and page.text_content("#pause") == "Resume"
    page.click("#step")
    page.wait_for_function("document.getElementById('c-steps').textContent === '2'")
    page.wait_for_function("document.getElementById('c-status').textContent.endsWith('paused')")
    page.click("#pause")  # Resume
    page.wait_for_function("document.getElementById('c-status').textContent.endsWith('done')")
    assert steps_shown(page) == 90 and page.text_content("#c-epoch") == "3 / 3"
    page.close()
