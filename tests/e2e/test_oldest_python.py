"""Agents on the oldest Python devices have, measuring for a controller on 3.11: Python 3.8,
as on a Jetson Nano (JetPack 4.6, whose onnxruntime wheels target 3.8), one with onnxruntime
and one with OpenVINO 2022.3, the last release with the Neural Compute Stick 2's MYRIAD
plugin (its API is `openvino.runtime`). The stick cannot be here: a campaign asking for
MYRIAD plans a skip that says why.

The agent goes in as a wheel built by the controller's Python, as devices get it (from an
index, or `devices provision`'s wheelhouse): building from the source tree needs
setuptools >= 77 (PEP 639 `license`), which needs Python 3.9."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.provisioning.wheelhouse import Wheelhouse
from orchestrator.store.models import Device, Result
from tests.conftest import missing_service
from tests.e2e.test_fleet import QUICK_POLICY, online
from tests.e2e.test_light_agent import find_python

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def agent_wheel(tmp_path_factory) -> Path:
    return Wheelhouse(tmp_path_factory.mktemp("wheelhouse")).agent_wheel()


def make_venv(root: Path, *requirements: str) -> Path:
    python = find_python("3.8")
    if python is None:
        missing_service("no python3.8 here to install the agent into")
    venv = root / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    # 3.8's bundled pip (23.0) backtracks for many minutes over releases that dropped 3.8;
    # pip 25.0 (the last for 3.8) resolves at once.
    for args in (["--upgrade", "pip"], list(requirements)):
        done = subprocess.run(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture(scope="session")
def onnxruntime_venv(tmp_path_factory, agent_wheel) -> Path:
    return make_venv(tmp_path_factory.mktemp("py38-ort"), f"{agent_wheel}[agent,onnxruntime]")


@pytest.fixture(scope="session")
def openvino_venv(tmp_path_factory, agent_wheel) -> Path:
    return make_venv(
        tmp_path_factory.mktemp("py38-ov"), f"{agent_wheel}[agent,openvino]", "openvino==2022.3.*"
    )


def start_py38_agent(fleet, venv: Path, name: str) -> None:  # noqa: ANN001
    fleet.start_controller()
    fleet.start_agent(name, python=str(venv / "bin/python"))
    fleet.wait_until(online(fleet, name), 90, f"the Python 3.8 agent {name} to register")
    with fleet.sessions() as session:
        device = session.scalars(select(Device).where(Device.name == name)).one()
        assert device.facts["python"].startswith("3.8."), device.facts


def submit(fleet, tmp_path: Path, spec_text: str, agent: str) -> dict:  # noqa: ANN001
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text + QUICK_POLICY)
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log(f"agent-{agent}")[-3000:]
    with fleet.sessions() as session:
        return {
            (r.trial.model.name, r.trial.runtime, r.trial.requested_device): {
                "python": r.environment.get("python"),
                "runtime_version": r.runtime_version,
                "placement": r.placement,
                "p50_ms": r.p50_ms,
            }
            for r in session.scalars(select(Result))
        }


def test_onnxruntime_agent_on_python_38(fleet, onnxruntime_venv, tmp_path):
    start_py38_agent(fleet, onnxruntime_venv, "py38-ort")
    ran = submit(
        fleet,
        tmp_path,
        "name: py38-ort\ndevices: {names: [py38-ort]}\nmodels: [small_cnn_96, mlp_digits]\n"
        "runtimes: [onnxruntime]\n",
        "py38-ort",
    )
    assert set(ran) == {
        ("small_cnn_96", "onnxruntime", "CPU"),
        ("mlp_digits", "onnxruntime", "CPU"),
    }
    for result in ran.values():
        assert result["python"].startswith("3.8.") and result["p50_ms"] > 0


def test_openvino_2022_3_agent_on_python_38_skips_an_absent_myriad(fleet, openvino_venv, tmp_path):
    start_py38_agent(fleet, openvino_venv, "py38-ov")
    shown = fleet.cli("devices", "show", "py38-ov")
    assert '"openvino"' in shown.stdout and "2022.3" in shown.stdout, shown.stdout

    spec_text = (
        "name: py38-ov\ndevices: {names: [py38-ov]}\nmodels: [small_cnn_96, mlp_digits]\n"
        "runtimes: [{name: openvino, device: CPU}, {name: openvino, device: MYRIAD}]\n"
    )
    spec = tmp_path / "plan.yaml"
    spec.write_text(spec_text + QUICK_POLICY)
    plan = fleet.cli("campaign", "plan", str(spec))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "2 trial(s) on 1 device(s)" in plan.stdout, plan.stdout
    assert "openvino on py38-ov offers no MYRIAD (offers: CPU, AUTO)" in plan.stdout, plan.stdout

    ran = submit(fleet, tmp_path, spec_text, "py38-ov")
    assert set(ran) == {("small_cnn_96", "openvino", "CPU"), ("mlp_digits", "openvino", "CPU")}
    for result in ran.values():
        assert result["python"].startswith("3.8.") and result["p50_ms"] > 0
        assert result["runtime_version"].startswith("2022.3.")
        placement = result["placement"]
        # 2022.3's CPU plugin has no EXECUTION_DEVICES: the device compiled for is reported.
        assert placement["execution_devices"] == ["CPU"] and placement["fallback"] is False
        assert placement["inference_precision"] == "f32" and placement["streams"]
