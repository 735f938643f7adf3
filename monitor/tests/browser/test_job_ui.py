"""The job UI in a real browser (headless Chromium driven by Playwright).

A streaming clickstream job runs with ``--ui``: the page it serves must show the job,
its pipeline graph and live stage counts; a screenshot is taken. A second job is
cancelled with the page's button, and one more from the ``beamline ui`` page (which
reaches the job through the job directory): both jobs end CANCELLED.

Needs the ``beamline`` binary and the ``clickstream`` example built (``BEAMLINE_BIN_DIR``,
default ``target/debug``), Chromium (``BEAMLINE_CHROMIUM``, default ``/usr/bin/chromium``)
and the ``playwright`` package. ``scripts/test`` installs them and sets
``BEAMLINE_BROWSER_TEST=1``, which turns a missing piece into a failure, not a skip.
"""

import os
import pathlib
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(os.environ.get("BEAMLINE_BIN_DIR", ROOT / "target" / "debug"))
CHROMIUM = os.environ.get("BEAMLINE_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("BEAMLINE_BROWSER_TEST") == "1"
# What this machine's closed network needs of Chromium (no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    for path in (CHROMIUM, BIN / "beamline", BIN / "examples" / "clickstream"):
        if not pathlib.Path(path).exists():
            return f"{path} does not exist"
    return None


@pytest.fixture(scope="module")
def browser():
    why = missing()
    if why:
        if REQUIRED:
            pytest.fail(f"browser test required but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield b
        finally:
            b.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process that is always killed and reaped."""

    def __init__(self, args, env):
        self.p = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def wait(self, timeout):
        try:
            _, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.p.returncode, err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def start_job(tmp_path, name, port):
    env = dict(os.environ, BEAMLINE_JOBS_DIR=str(tmp_path / "jobs"))
    return Process(
        [
            str(BIN / "examples" / "clickstream"),
            "--streaming",
            "--rate",
            "5000",
            f"--ui=127.0.0.1:{port}",
            f"--job-name={name}",
            "--quiet",
        ],
        env,
    )


def wait_for_url(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens at {url}")


def test_the_page_shows_a_running_job_and_its_cancel_button_stops_it(browser, tmp_path):
    port = free_port()
    job = start_job(tmp_path, "clicks-ui", port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_url(url)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/")
        page.wait_for_selector("#job-state.RUNNING", timeout=30_000)
        assert page.inner_text("#job-name") == "clicks-ui"
        assert "local runner" in page.inner_text("#job-meta")
        assert "streaming" in page.inner_text("#job-meta")
        # The graph: a source stage and a grouping stage, joined by an edge.
        page.wait_for_selector("svg#graph g.stage.source", timeout=30_000)
        page.wait_for_selector("svg#graph g.stage.grouping")
        assert page.locator("svg#graph path.edge").count() >= 1
        # Live counts: the source stage's count grows between two refreshes.
        def source_in():
            row = page.locator("#stages tbody tr").first
            return int(row.locator("td").nth(2).inner_text().replace(",", "") or 0)

        first = source_in()
        page.wait_for_function(
            "n => Number(document.querySelector('#stages tbody tr td:nth-child(3)')"
            ".textContent.replaceAll(',', '')) > n",
            arg=first,
            timeout=30_000,
        )
        assert source_in() > first
        watermark = page.locator("#stages tbody tr").last.locator("td").nth(5).inner_text()
        assert watermark.startswith("19") or watermark.startswith("20"), watermark
        assert page.locator("#jobs tbody tr").count() >= 1
        shot = tmp_path / "job-ui.png"
        page.screenshot(path=str(shot), full_page=True)
        png = shot.read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        artifacts = os.environ.get("BEAMLINE_UI_SCREENSHOT")
        if artifacts:
            pathlib.Path(artifacts).write_bytes(png)

        with page.expect_response(lambda r: r.url.endswith("/cancel")) as response:
            page.click("#cancel")
        assert response.value.status == 202
        code, err = job.wait(timeout=60)
        assert "cancelled" in err.lower(), err
        assert code != 0
    finally:
        job.kill()


def test_beamline_ui_lists_published_jobs_and_cancels_them(browser, tmp_path):
    port, ui_port = free_port(), free_port()
    job = start_job(tmp_path, "clicks-dir", port)
    ui = Process(
        [
            str(BIN / "beamline"),
            "ui",
            "--addr",
            f"127.0.0.1:{ui_port}",
            "--dir",
            str(tmp_path / "jobs"),
        ],
        dict(os.environ),
    )
    try:
        url = f"http://127.0.0.1:{ui_port}"
        wait_for_url(url)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#jobs tbody tr", timeout=30_000)
        row = page.locator("#jobs tbody tr", has_text="clicks-dir")
        row.wait_for(timeout=30_000)
        row.click()
        page.wait_for_selector("#job-state.RUNNING", timeout=30_000)
        page.wait_for_selector("svg#graph g.stage.grouping", timeout=30_000)
        page.click("#cancel")
        # The job sees the request within a second, stops, and publishes its end.
        page.wait_for_selector("#job-state.CANCELLED", timeout=60_000)
        assert page.is_disabled("#cancel")
        code, err = job.wait(timeout=60)
        assert code != 0 and "cancelled" in err.lower(), err
    finally:
        job.kill()
        ui.kill()
