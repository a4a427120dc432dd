"""Starting and stopping the Streamlit dashboard as a child process."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.child_process import terminate_with_parent


class DashboardError(RuntimeError):
    pass


def app_path() -> Path:
    spec = importlib.util.find_spec("dashboards.app")
    if spec is None or spec.origin is None:
        raise DashboardError("the dashboards package is missing from this install")
    return Path(spec.origin)


def start(
    port: int, address: str = "127.0.0.1", log_file: Path | None = None, env: dict | None = None
) -> subprocess.Popen:
    if importlib.util.find_spec("streamlit") is None:
        raise DashboardError("the dashboard needs Streamlit: pip install 'edgebench[dashboard]'")
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port), "--server.address", address, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    output = open(log_file, "ab") if log_file else None  # noqa: SIM115
    return subprocess.Popen(
        command,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=True,
        env=env if env is not None else os.environ.copy(),
        preexec_fn=terminate_with_parent,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
