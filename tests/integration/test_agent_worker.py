"""The agent's own machinery with real parts: trial subprocesses, the time limit, the outbox."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import pytest
import redis

from agents.contract import (
    CONTROL_QUEUE,
    ArtifactRef,
    InputSpec,
    MeasurementPolicy,
    TrialResult,
    TrialSpec,
    envelope,
    parse,
)
from agents.contract.signing import new_token
from agents.worker import Agent
from orchestrator.artifacts.builtin_models import small_cnn

TOKEN = new_token()[0]


def make_spec(tmp_path, agent: Agent, **policy) -> TrialSpec:
    built = small_cnn()
    path = tmp_path / "model.onnx"
    path.write_bytes(built.onnx_bytes)
    return TrialSpec(
        trial_id="ab" * 16,
        attempt=1,
        boot_id=agent.boot_id,
        campaign_id=1,
        device=agent.name,
        model=built.name,
        artifact=ArtifactRef(
            sha256=hashlib.sha256(built.onnx_bytes).hexdigest(),
            size=len(built.onnx_bytes),
            format="onnx",
            uri=str(path),
        ),
        inputs=[InputSpec.of(spec) for spec in built.inputs],
        runtime="onnxruntime",
        batch_size=2,
        policy=MeasurementPolicy(**policy),
        timeout_s=60,
    )


def test_trial_runs_in_a_fresh_process_and_reports_measurements(tmp_path, redis_url):
    agent = Agent("w1", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(tmp_path, agent, warmup_s=0.05, min_queries=20, min_s=0.1, max_s=2)
    outcome = agent.run_in_subprocess(spec)
    assert outcome["status"] == "ok", outcome
    assert outcome["environment"]["pid"] != os.getpid()
    assert outcome["summary"]["n"] == len(outcome["samples_ns"]) >= 20
    assert outcome["placement"]["providers"] == ["CPUExecutionProvider"]


def test_trial_past_its_time_limit_is_killed_and_reported(tmp_path, redis_url):
    agent = Agent("w2", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(tmp_path, agent, warmup_s=0, min_queries=10, min_s=30, max_s=60)
    spec = spec.model_copy(update={"timeout_s": 1.5})
    started = time.monotonic()
    outcome = agent.run_in_subprocess(spec)
    assert time.monotonic() - started < 10
    assert outcome == {"status": "failed", "error": "trial timed out after 2 s"}


def test_results_in_the_outbox_are_sent_once_and_removed(tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete(CONTROL_QUEUE)
    agent = Agent("w3", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    result = TrialResult(
        trial_id="cd" * 16, attempt=1, device="w3", boot_id=agent.boot_id, status="failed",
        error="x", sent_at=0,
    )  # fmt: skip
    (agent.outbox / "left-over.json").write_text(json.dumps(envelope(result)))
    (agent.outbox / "garbage.json").write_text("{not json")
    agent.flush_outbox()
    assert list(agent.outbox.iterdir()) == []
    [raw] = client.lrange(CONTROL_QUEUE, 0, -1)
    body = json.loads(base64.b64decode(json.loads(raw)["body"]))
    assert parse(body[0][0]) == result


def test_a_result_too_large_for_the_wire_becomes_a_failure_with_the_reason(
    tmp_path, redis_url, monkeypatch
):
    import agents.worker

    client = redis.Redis.from_url(redis_url)
    client.delete(CONTROL_QUEUE)
    monkeypatch.setattr(agents.worker, "MAX_MESSAGE_BYTES", 4000)  # a limit 20 samples exceed
    agent = Agent("w4", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(tmp_path, agent, warmup_s=0, min_queries=400, min_s=0, max_s=5)
    agent.handle_trial(envelope(spec))
    messages = [
        parse(json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0])
        for raw in client.lrange(CONTROL_QUEUE, 0, -1)
    ]
    [sent] = [m for m in messages if isinstance(m, TrialResult)]
    assert sent.status == "failed" and "over the 4000 byte message limit" in sent.error
    assert sent.samples_ns == [] and sent.summary is None


def fake_meter(tmp_path, monkeypatch, output: str) -> None:
    """A power-meter command that always prints `output`, set for the agent's trials."""
    meter = tmp_path / "meter.sh"
    meter.write_text(f"#!/bin/sh\necho {output}\n")
    meter.chmod(0o755)
    monkeypatch.setenv("EDGEBENCH_ENERGY_COMMAND", str(meter))


def test_trial_with_an_external_power_meter_reports_energy_per_inference(
    tmp_path, redis_url, monkeypatch
):
    fake_meter(tmp_path, monkeypatch, "5.0 W")  # a USB meter that always reads 5 W
    agent = Agent("w5", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(
        tmp_path, agent, warmup_s=0, min_queries=50, min_s=1.0, max_s=3, idle_baseline_s=0
    )
    outcome = agent.run_in_subprocess(spec)
    assert outcome["status"] == "ok", outcome
    assert outcome["energy_meter"] == "command" and outcome["idle_power_w"] is None
    inferences = outcome["summary"]["n"] * spec.batch_size
    # 5 W over a window of ~1 s spread over the inferences measured in it, in mJ.
    per_inference = outcome["energy_mj_per_inference"]
    window_s = per_inference * inferences / 1000 / 5.0
    assert 0.9 < window_s < 3.5, window_s
    env = outcome["environment"]
    assert "conditions_before" in env and "conditions_after" in env
    assert env["conditions_before"]["loadavg"] is not None
    assert env["harness_overhead_ns"] > 0


def test_idle_baseline_is_subtracted_from_the_energy(tmp_path, redis_url, monkeypatch):
    fake_meter(tmp_path, monkeypatch, "5.0")  # flat power: all of it is idle power
    agent = Agent("w6", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(
        tmp_path, agent, warmup_s=0, min_queries=50, min_s=1.0, max_s=3, idle_baseline_s=0.5
    )
    outcome = agent.run_in_subprocess(spec)
    assert outcome["idle_power_w"] == pytest.approx(5.0, rel=1e-6)
    assert abs(outcome["energy_mj_per_inference"]) < 1e-6


def test_no_meter_means_null_energy_never_zero(tmp_path, redis_url, monkeypatch):
    monkeypatch.delenv("EDGEBENCH_ENERGY_COMMAND", raising=False)
    agent = Agent("w7", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(tmp_path, agent, warmup_s=0, min_queries=20, min_s=0, max_s=2)
    outcome = agent.run_in_subprocess(spec)
    assert outcome["energy_meter"] is None and outcome["energy_mj_per_inference"] is None
    assert outcome["import_ms"] > 0 and outcome["process_start_ms"] > 0
    assert outcome["load_rss_delta_mb"] is not None


def test_peak_memory_is_the_trials_own_not_the_agents(tmp_path, redis_url):
    """A fat agent (here 600 MB resident) must not show up as the trial's peak RSS."""
    ballast = bytearray(600 * 1024 * 1024)
    for offset in range(0, len(ballast), 4096):  # touch every page so it is resident
        ballast[offset] = 1
    agent = Agent("w8", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    spec = make_spec(tmp_path, agent, warmup_s=0, min_queries=20, min_s=0, max_s=2)
    outcome = agent.run_in_subprocess(spec)
    assert outcome["status"] == "ok"
    assert 20 < outcome["peak_rss_mb"] < 400, outcome["peak_rss_mb"]
    del ballast


def test_the_device_key_is_kept_0600_reused_after_a_restart_and_signs_the_outbox(
    tmp_path, redis_url
):
    import stat

    from agents.contract.signing import verify
    from agents.credentials import CredentialsError

    client = redis.Redis.from_url(redis_url)
    client.delete(CONTROL_QUEUE)
    first = Agent("w9", redis_url, tmp_path / "work", enrollment_token=TOKEN)
    path = tmp_path / "work" / "device.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TOKEN.split(".")[2] not in path.read_text()  # the key, never the token's secret
    restarted = Agent("w9", redis_url, tmp_path / "work")  # no token needed any more
    assert restarted.credentials == first.credentials
    assert restarted.registration.enrollment_token == TOKEN.split(".")[1]
    result = TrialResult(
        trial_id="ef" * 16, attempt=1, device="w9", boot_id=restarted.boot_id, status="failed",
        error="x", sent_at=0,
    )  # fmt: skip
    # Signed with a key of before a re-enrollment: signed again with the current one.
    (restarted.outbox / "old.json").write_text(json.dumps(first.signed(result)))
    renewed = Agent("w9", redis_url, tmp_path / "work", enrollment_token=new_token()[0])
    assert renewed.credentials.key != first.credentials.key
    renewed.flush_outbox()
    [raw] = client.lrange(CONTROL_QUEUE, 0, -1)
    wire = json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
    assert verify(wire, renewed.credentials.key) and parse(wire) == result
    with pytest.raises(CredentialsError, match="no key"):
        Agent("w10", redis_url, tmp_path / "elsewhere")
