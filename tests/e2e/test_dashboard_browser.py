"""`edgebench dashboard` in a real browser: Debian's headless Chromium, driven by Playwright
(no browser download), opens every page of a seeded store over loopback, finds no
Streamlit exception box, and saves a screenshot of each page.

Screenshots go to $EDGEBENCH_TEST_ARTIFACTS/dashboard (default build/test-artifacts/dashboard,
which git ignores), one PNG per page plus the Trade-offs page in the dark theme.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.broker import free_port
from tests import seed
from tests.conftest import REPO_ROOT, missing_service

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("EDGEBENCH_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses; --no-sandbox because tests may run as root.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Tall enough that a page's main charts are in the screenshot (Streamlit scrolls inside the
# page, so a full-page screenshot holds only the viewport).
VIEWPORT = {"width": 1400, "height": 1800}
# A Vega chart that has drawn its marks (Vega renders to a canvas or an SVG).
CHART_DRAWN = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg.marks'
# page title -> (URL path with a shared link's query, charts the page must draw)
PAGES = {
    "Fleet": ("", 0),
    "Campaigns": ("campaigns", 1),
    "Compare": (f"compare?model={seed.FAMILY}&variant=seed_net_224", 1),
    "Trade-offs": (f"tradeoffs?model={seed.FAMILY}", 5),
    "Trial detail": ("trial_detail", 4),
    "Diff": (f"diff?mode=two+devices%2C+one+model&model={seed.FAMILY}&precision=fp32", 0),
    "Profile": ("profile", 0),  # (no profile seeded: it says how to get one)
}


def artifacts_dir() -> Path:
    root = Path(os.environ.get("EDGEBENCH_TEST_ARTIFACTS", REPO_ROOT / "build" / "test-artifacts"))
    folder = root / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dashboard exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"dashboard not serving within {timeout} s:\n{log.read_text()}")


@pytest.fixture
def playwright_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("playwright is not installed: pip install 'edgebench[test]'")
    if not shutil.which(CHROMIUM):
        missing_service(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_every_page_opens_in_chromium_without_an_exception(
    tmp_path, sqlite_url, playwright_browser
):
    seed.seed_store(sqlite_url)
    seed.seed_tradeoffs(sqlite_url)
    port = free_port()
    log = tmp_path / "dashboard.log"
    env = {
        **os.environ,
        "EDGEBENCH_DATABASE_URL": sqlite_url,
        "EDGEBENCH_HOME": str(tmp_path),
        "EDGEBENCH_OFFLINE_AFTER_S": "3600",
    }
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "dashboard", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    shots = artifacts_dir()
    try:
        wait_until_serving(base, process, log, timeout=60)
        light = playwright_browser.new_page(viewport=VIEWPORT)
        dark = playwright_browser.new_page(viewport=VIEWPORT, color_scheme="dark")
        for title, (path, charts) in PAGES.items():
            light.goto(f"{base}/{path}")
            light.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
            if charts:
                light.locator(CHART_DRAWN).nth(charts - 1).wait_for(timeout=30_000)
            light.wait_for_load_state("networkidle")
            light.wait_for_timeout(500)  # let the last chart finish its transition
            name = title.lower().replace(" ", "-")
            light.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            exceptions = light.locator('[data-testid="stException"]')
            assert exceptions.count() == 0, f"{title}: {exceptions.first.inner_text()}"
            # The sidebar navigation lists every page.
            for other in PAGES:
                assert light.get_by_role("link", name=other).count() >= 1, other
        dark.goto(f"{base}/{PAGES['Trade-offs'][0]}")
        dark.get_by_role("heading", name="Trade-offs", level=1).wait_for(timeout=60_000)
        dark.locator(CHART_DRAWN).nth(4).wait_for(timeout=30_000)
        dark.wait_for_timeout(1000)
        dark.screenshot(path=str(shots / "trade-offs-dark.png"), full_page=True)
        assert dark.locator('[data-testid="stException"]').count() == 0
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for title in PAGES:
        assert (shots / f"{title.lower().replace(' ', '-')}.png").stat().st_size > 10_000
