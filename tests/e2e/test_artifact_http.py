"""End to end: the controller serves its models over HTTP and a real agent downloads them
into its cache; a model whose served bytes were tampered with fails its trial with the
reason, and the same agent goes on to run the next trial."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.artifacts import http_server
from orchestrator.store.models import Campaign, Device, Model, Trial
from tests.e2e.test_fleet import QUICK_POLICY, online

pytestmark = pytest.mark.e2e


def run_campaign(fleet, tmp_path: Path, name: str, model: str) -> Trial:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\ndevices: {{names: [fetcher]}}\nmodels: [{model}]\n"
        "runtimes: [onnxruntime]\nbatch_sizes: [1]\n" + QUICK_POLICY
    )
    submitted = fleet.cli("campaign", "submit", str(spec))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    def finished():
        with fleet.sessions() as session:
            campaign = session.scalar(select(Campaign).where(Campaign.name == name))
            trials = session.scalars(select(Trial).where(Trial.campaign_id == campaign.id)).all()
            return (
                len(trials) == 1 and trials[0].state in ("done", "failed") and trials[0]
            ) or None

    return fleet.wait_until(finished, 120, f"campaign {name} to finish")


def test_agent_downloads_over_http_and_a_tampered_artifact_fails_only_its_trial(fleet, tmp_path):
    fleet.start_controller()
    agent = fleet.start_agent("fetcher")
    fleet.wait_until(online(fleet, "fetcher"), 60, "the agent to register")
    served = fleet.wait_until(lambda: http_server.recorded_url(tmp_path), 30, "the artifact server")
    assert served.startswith("http://127.0.0.1:")
    with fleet.sessions() as session:
        models = {
            m.name: m
            for m in session.scalars(
                select(Model).where(Model.format == "onnx", Model.precision == "fp32")
            )
        }
        boot_id = session.scalar(select(Device.boot_id).where(Device.name == "fetcher"))
    good, victim = models["mlp_digits"], models["small_cnn_96"]
    cache = tmp_path / "agent" / "fetcher" / "artifacts"

    trial = run_campaign(fleet, tmp_path, "over-http", "mlp_digits")
    assert trial.state == "done", trial.error
    # downloaded, not read in place: the agent's cache holds the exact bytes
    assert (cache / good.sha256).read_bytes() == Path(good.path).read_bytes()

    original = Path(victim.path).read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    Path(victim.path).write_bytes(bytes(tampered))
    trial = run_campaign(fleet, tmp_path, "tampered", "small_cnn_96")
    assert trial.state == "failed"
    assert f"artifact hash mismatch: expected {victim.sha256}" in trial.error
    assert not (cache / victim.sha256).exists()
    assert not (cache / f"{victim.sha256}.part").exists()

    Path(victim.path).write_bytes(original)
    trial = run_campaign(fleet, tmp_path, "after-repair", "small_cnn_96")
    assert trial.state == "done", trial.error
    assert (cache / victim.sha256).read_bytes() == original
    assert agent.poll() is None  # the same agent process, never restarted
    with fleet.sessions() as session:
        assert session.scalar(select(Device.boot_id).where(Device.name == "fetcher")) == boot_id
