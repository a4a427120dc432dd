"""An agent installed the way a device gets it: `pip install edgebench[agent,onnxruntime]`
into the oldest Python agents support (3.9), measuring for a controller on 3.11."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, missing_service
from tests.e2e.test_fleet import QUICK_POLICY, online

pytestmark = pytest.mark.e2e


def find_python39() -> str | None:
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9"))
    candidates.append(shutil.which("python3.9") or "")
    for candidate in filter(None, candidates):
        works = subprocess.run([candidate, "-c", "import venv"], capture_output=True)
        if works.returncode == 0:  # a pyenv shim without that version installed fails here
            return candidate
    return None


@pytest.fixture(scope="session")
def light_venv(tmp_path_factory) -> Path:
    python = find_python39()
    if python is None:
        missing_service("no python3.9 here to install the agent into")
    venv = tmp_path_factory.mktemp("agent-py39") / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", f"{REPO_ROOT}[agent,onnxruntime]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_light_agent_on_python_39_measures_for_the_controller(fleet, light_venv, tmp_path):
    python = str(light_venv / "bin/python")
    for forbidden in ("sqlalchemy", "alembic", "streamlit"):
        probe = subprocess.run([python, "-c", f"import {forbidden}"], capture_output=True)
        assert probe.returncode != 0, f"{forbidden} was installed on the device"
    refused = subprocess.run(
        [str(light_venv / "bin/edgebench"), "devices", "list"], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "edgebench[all]" in refused.stderr

    fleet.start_controller()
    fleet.start_agent("py39", python=python)
    fleet.wait_until(online(fleet, "py39"), 90, "the Python 3.9 agent to register")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: py39\ndevices: {names: [py39]}\nmodels: [small_cnn_96]\n" + QUICK_POLICY)
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log("agent-py39")[-3000:]
    shown = fleet.cli("devices", "show", "py39")
    assert '"python": "3.9' in shown.stdout
