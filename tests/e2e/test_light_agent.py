"""An agent installed the way a device gets it: `pip install edgebench[agent,onnxruntime,litert]`
into the oldest Python agents support (3.9), measuring for a controller on 3.11. There the
litert extra brings tflite-runtime (with numpy < 2), as on JetPack 5 or older Raspberry Pi
OS: a LiteRT trial runs through it."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.store.models import Result
from tests import public_models
from tests.conftest import REPO_ROOT, missing_service
from tests.e2e.test_fleet import QUICK_POLICY, online

pytestmark = pytest.mark.e2e


def find_python(version: str) -> str | None:
    """A working interpreter of this version (pyenv's, else on PATH), or None."""
    candidates = sorted(glob.glob(f"/root/.pyenv/versions/{version}*/bin/python{version}"))
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, candidates):
        works = subprocess.run([candidate, "-c", "import venv"], capture_output=True)
        if works.returncode == 0:  # a pyenv shim without that version installed fails here
            return candidate
    return None


@pytest.fixture(scope="session")
def light_venv(tmp_path_factory) -> Path:
    python = find_python("3.9")
    if python is None:
        missing_service("no python3.9 here to install the agent into")
    venv = tmp_path_factory.mktemp("agent-py39") / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", f"{REPO_ROOT}[agent,onnxruntime,litert]"],
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
    face = public_models.fetch(next(m for m in public_models.CORPUS if m.name == "face_detection"))
    added = fleet.cli("models", "add", str(face), "--name", "face_detection", timeout=300)
    assert added.returncode == 0, added.stderr
    spec.write_text(
        "name: py39\ndevices: {names: [py39]}\nmodels: [small_cnn_96, face_detection]\n"
        "runtimes: [onnxruntime, litert]\nbatch_sizes: [1]\n" + QUICK_POLICY
    )
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log("agent-py39")[-3000:]
    shown = fleet.cli("devices", "show", "py39")
    assert '"python": "3.9' in shown.stdout
    with fleet.sessions() as session:
        ran = {(r.trial.model.name, r.trial.runtime): r for r in session.scalars(select(Result))}
        litert = ran[("face_detection", "litert")]
        assert litert.placement["interpreter"] == "tflite_runtime.interpreter"
        assert litert.runtime_version.startswith("tflite_runtime 2.")
        assert litert.fidelity_cosine > 0.999 and litert.p50_ms > 0
        assert ("small_cnn_96", "onnxruntime") in ran
