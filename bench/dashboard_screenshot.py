"""A screenshot of one dashboard page on a store, in Debian's headless Chromium (Playwright,
no browser download), for docs/screenshots/.

Usage: .venv/bin/python bench/dashboard_screenshot.py DATABASE_URL 'profile?trial=...&vs=...'
       OUT.png [--title Profile] [--charts 1] [--height 2200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from orchestrator.broker import free_port  # noqa: E402
from tests.e2e.test_dashboard_browser import (  # noqa: E402
    CHART_DRAWN,
    CHROMIUM,
    CHROMIUM_ARGS,
    wait_until_serving,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("path", help="the page's path and query, e.g. profile?trial=ab12")
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="Profile", help="the page's heading to wait for")
    parser.add_argument("--charts", type=int, default=1, help="charts to wait for")
    parser.add_argument("--height", type=int, default=2200)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        log = Path(home) / "dashboard.log"
        env = {**os.environ, "EDGEBENCH_DATABASE_URL": args.database_url, "EDGEBENCH_HOME": home}
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", "dashboard", "--port", str(port)],
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, process, log, timeout=60)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": args.height})
                page.goto(f"{base}/{args.path}")
                page.get_by_role("heading", name=args.title, level=1).wait_for(timeout=60_000)
                if args.charts:
                    page.locator(CHART_DRAWN).nth(args.charts - 1).wait_for(timeout=30_000)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(1000)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            process.terminate()
            process.wait(30)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
