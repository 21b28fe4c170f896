"""The tour notebook in a real browser: JupyterLab, headless Chromium, the fanout graph drawn.

Headless execution (``test_notebooks``) keeps widget state but runs no front-end code, so it
cannot catch a widget that fails to render. This test starts JupyterLab on a free loopback port
(its own settings and workspace folders, the news pop-up off), opens a copy of
``notebooks/00_tour.ipynb`` in Chromium driven by Playwright, runs every cell from the Run menu,
and waits until the fanout graph's SVG is drawn inside a widget output and every cell has run
without an error.

Chromium: ``LABKIT_CHROMIUM``, else ``/usr/bin/chromium`` (Debian's package), else ``chromium``,
``chromium-browser`` or ``google-chrome`` on PATH; Playwright uses it as is (no
``playwright install``, no download). Without a browser or the ``playwright`` package the test
is skipped with the reason, unless ``LABKIT_REQUIRE_BROWSER=1`` (CI), where it fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "notebooks" / "00_tour.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]

pytestmark = pytest.mark.browser


def _unavailable(reason: str) -> None:
    if os.environ.get("LABKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and LABKIT_REQUIRE_BROWSER=1 requires the browser test")
    pytest.skip(reason)


def find_chromium() -> str | None:
    configured = os.environ.get("LABKIT_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        _unavailable(
            "no Chromium found (set LABKIT_CHROMIUM, or on Debian: apt-get install chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    assert path is not None
    return path


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab serving a folder with a copy of the tour; yields (base URL, token)."""
    root, settings, workspaces = tmp_path / "root", tmp_path / "settings", tmp_path / "ws"
    for folder in (root, settings, workspaces):
        folder.mkdir()
    shutil.copy(TOUR, root / TOUR.name)  # a copy: autosave must never touch the repository
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    log = (tmp_path / "jupyterlab.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(server, f"{base}/api/status?token={token}", tmp_path / "jupyterlab.log")
        yield base, token
    finally:
        server.terminate()  # jupyter_server shuts its kernels down on SIGTERM
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()


def _wait_for_server(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, urllib.error.URLError), opener.open(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)  # polling a server that is starting: nothing to await but its port
    pytest.fail(f"JupyterLab did not answer within 60 s:\n{log.read_text()[-3000:]}")


def test_tour_runs_in_jupyterlab_and_draws_the_fanout_graph(
    chromium: str, jupyterlab: tuple[str, str]
) -> None:
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{TOUR.name}?token={token}", timeout=60_000)
            # The kernel is ready when the status bar says so (the execution indicator reads
            # idle before the kernel is even connected).
            page.locator(
                "#jp-main-statusbar .jp-StatusBar-TextItem", has_text="(ipykernel) | Idle"
            ).first.wait_for(timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator('[data-command="runmenu:run-all"]').first.click()

            graph = page.locator(
                ".jp-OutputArea-output .jupyter-widgets svg[aria-label='fanout graph of #eng']"
            ).first
            graph.wait_for(state="attached", timeout=90_000)  # drawn while the cells run on

            # Every code cell runs: each prompt shows an execution count, none "[*]".
            page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                    return prompts.length > 0
                        && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                }""",
                timeout=120_000,
            )
            stderr = page.locator(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
            )
            assert stderr.count() == 0, stderr.all_text_contents()  # tracebacks render here

            # The last cell stopped the graph's live updates: it holds still to be looked at.
            graph.scroll_into_view_if_needed()
            assert graph.is_visible()
            labels = graph.locator("text").all_text_contents()
            assert {"gw-1", "gw-2", "gw-3", "message server", "carol"} <= set(labels), labels
            # It kept updating from the kernel as the cells ran: its header counts all 7 posts.
            fanout = page.locator("svg[aria-label='fanout graph of #eng']")
            widget = page.locator(".jp-OutputArea-output > .jupyter-widgets", has=fanout).first
            widget.scroll_into_view_if_needed()
            # textContent, not innerText: JupyterLab may leave an off-screen cell unrendered,
            # and innerText of an unrendered element is empty.
            header = widget.text_content() or ""
            assert "7 posts" in header, header[:300]
        finally:
            browser.close()
