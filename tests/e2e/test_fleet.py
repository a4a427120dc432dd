"""End to end: a controller and two agents as separate processes, over Redis and SQL."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from orchestrator.store.models import Device, Result, Trial

pytestmark = pytest.mark.e2e

QUICK_POLICY = "policy: {warmup_s: 0.1, min_queries: 30, min_s: 0.3, max_s: 3, runs: 1}\n"


def online(fleet, *names):
    def check():
        with fleet.sessions() as session:
            seen = {d.name for d in session.scalars(select(Device)) if d.last_heartbeat_at}
        return set(names) <= seen

    return check


@pytest.mark.parametrize("fleet", ["sqlite", "postgresql"], indirect=True)
def test_campaign_across_two_agents_is_ingested_once(fleet, tmp_path):
    fleet.start_controller()
    fleet.start_agent("alpha")
    fleet.start_agent("beta")
    fleet.wait_until(online(fleet, "alpha", "beta"), 60, "both agents to register")

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: two-agents\ndevices: {tags: [e2e]}\nmodels: [mlp_digits, small_cnn_96]\n"
        "runtimes: [onnxruntime]\nbatch_sizes: [1, 4]\n" + QUICK_POLICY
    )
    done = fleet.cli("campaign", "submit", str(spec), "--wait", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done" in done.stdout

    with fleet.sessions() as session:
        trials = session.scalars(select(Trial)).all()
        assert len(trials) == 8
        assert {t.state for t in trials} == {"done"}
        assert session.scalar(select(func.count()).select_from(Result)) == 8
        results = session.scalars(select(Result)).all()
        per_device: dict[str, list[tuple[float, float]]] = {}
        for result in results:
            assert result.p50_ms > 0 and result.n >= 30 and result.peak_rss_mb > 0
            assert result.actual_device == "CPU" and result.fallback is False
            assert len(result.samples.samples_ns) == result.n
            env = result.environment
            per_device.setdefault(result.trial.device.name, []).append(
                (env["measure_start_unix"], env["measure_end_unix"])
            )
    assert set(per_device) == {"alpha", "beta"}
    for device, spans in per_device.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two trials overlapped on {device}"

    exported = fleet.cli("results", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    rows = json.loads(exported.stdout)
    assert len(rows) == 8
    for field in (
        "trial_id",
        "device",
        "p50_ms",
        "p99_ms",
        "throughput_ips",
        "peak_rss_mb",
        "energy_mj_per_inference",
    ):
        assert field in rows[0]
    assert rows[0]["energy_mj_per_inference"] is None  # not measured, so null, never 0

    listing = fleet.cli("devices", "list")
    assert listing.returncode == 0 and "alpha" in listing.stdout and "online" in listing.stdout


def test_kill_9_of_an_agent_mid_trial_reruns_the_trial_once(fleet, tmp_path):
    fleet.start_controller()
    fleet.start_agent("victim")
    fleet.wait_until(online(fleet, "victim"), 60, "the agent to register")

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: kill9\ndevices: {names: [victim]}\nmodels: [small_cnn_96]\nbatch_sizes: [1]\n"
        "policy: {warmup_s: 0.1, min_queries: 10, min_s: 4, max_s: 10, runs: 1}\n"
    )
    submitted = fleet.cli("campaign", "submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr

    def running_trial():
        with fleet.sessions() as session:
            trial = session.scalar(select(Trial).where(Trial.state == "running"))
            return trial and (trial.id, trial.attempt)

    trial_id, attempt = fleet.wait_until(running_trial, 60, "the trial to start")
    assert attempt == 1
    time.sleep(1.0)  # mid-measurement
    runner_pids = fleet.runner_pids()
    assert runner_pids, "the trial's runner process should exist"
    fleet.kill9("agent-victim")
    time.sleep(1.0)
    assert not (fleet.runner_pids() & runner_pids), "the trial process outlived its agent"

    fleet.start_agent("victim")

    def finished():
        with fleet.sessions() as session:
            trial = session.get(Trial, trial_id)
            return trial.state in ("done", "failed") and trial

    trial = fleet.wait_until(finished, 90, "the trial to be re-run")
    assert trial.state == "done", trial.error
    with fleet.sessions() as session:
        results = session.scalars(select(Result).where(Result.trial_id == trial_id)).all()
        assert len(results) == 1
        assert results[0].attempt == 2
        assert session.get(Trial, trial_id).attempt == 2


def test_garbage_on_the_control_queue_does_not_stop_the_controller(fleet, tmp_path):
    from celery import Celery

    from agents.contract import CONTROL_QUEUE, INGEST_TASK, SCHEMA_VERSION

    fleet.start_controller()
    sender = Celery("intruder", broker=fleet.env["EDGEBENCH_BROKER_URL"], set_as_current=False)
    sender.conf.update(task_serializer="json", accept_content=["json"])
    junk = [
        "not json at all",
        {"schema": 999, "kind": "heartbeat", "body": {}},
        {"schema": SCHEMA_VERSION, "kind": "trial_result", "body": {"trial_id": 7}},
        {"schema": SCHEMA_VERSION, "kind": "trial_spec", "body": {}},
        ["a", "list"],
        "x" * 9_000_000,
    ]
    for payload in junk:
        sender.send_task(INGEST_TASK, args=[payload], queue=CONTROL_QUEUE)
    sender.send_task(INGEST_TASK, args=[], queue=CONTROL_QUEUE)  # wrong arity
    fleet.wait_until(lambda: fleet.log("controller").count("rejected") >= 4, 60, "rejections")

    fleet.start_agent("after-junk")
    fleet.wait_until(online(fleet, "after-junk"), 60, "the agent to register after the junk")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: j\ndevices: {names: [after-junk]}\nmodels: [mlp_digits]\n" + QUICK_POLICY
    )
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log("controller")[-3000:]
    assert fleet.processes["controller"].poll() is None


def test_cancel_mid_trial_holds_the_next_trial_until_the_device_is_free(fleet, tmp_path):
    fleet.start_controller()
    fleet.start_agent("busy")
    fleet.wait_until(online(fleet, "busy"), 60, "the agent to register")
    long_spec = tmp_path / "long.yaml"
    long_spec.write_text(
        "name: long\ndevices: {names: [busy]}\nmodels: [small_cnn_96]\n"
        "policy: {warmup_s: 0.1, min_queries: 10, min_s: 5, max_s: 10, runs: 1}\n"
    )
    short_spec = tmp_path / "short.yaml"
    short_spec.write_text(
        "name: short\ndevices: {names: [busy]}\nmodels: [mlp_digits]\n" + QUICK_POLICY
    )
    assert fleet.cli("campaign", "submit", str(long_spec)).returncode == 0
    assert fleet.cli("campaign", "submit", str(short_spec)).returncode == 0

    def running_trial():
        with fleet.sessions() as session:
            return session.scalar(select(Trial.id).where(Trial.state == "running"))

    long_id = fleet.wait_until(running_trial, 60, "the long trial to start")
    assert fleet.cli("campaign", "cancel", "1").returncode == 0
    overlaps, observed_busy = [], False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with fleet.sessions() as session:
            device = session.scalar(select(Device).where(Device.name == "busy"))
            short = session.scalar(select(Trial).where(Trial.campaign_id == 2))
            if device.current_trial == long_id:
                observed_busy = True
                if short.state in ("queued", "running"):
                    overlaps.append(short.state)
            if short.state == "done":
                break
        time.sleep(0.1)
    assert observed_busy, "the agent should still report the cancelled trial for a while"
    assert overlaps == [], "the next trial was sent while the device was still measuring"
    assert short.state == "done"
    with fleet.sessions() as session:
        assert session.get(Trial, long_id).state == "cancelled"
        assert session.scalar(select(func.count()).select_from(Result)) == 1


def test_agent_restarted_before_consuming_drops_the_stale_message(fleet, tmp_path):
    fleet.start_controller()
    fleet.start_agent("flaky")
    fleet.wait_until(online(fleet, "flaky"), 60, "the agent to register")
    fleet.kill9("agent-flaky")  # still 'online' for a few seconds: the controller sends to it
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: stale\ndevices: {names: [flaky]}\nmodels: [mlp_digits]\n" + QUICK_POLICY)
    assert fleet.cli("campaign", "submit", str(spec)).returncode == 0

    def sent():
        with fleet.sessions() as session:
            return session.scalar(select(Trial).where(Trial.state == "queued"))

    trial = fleet.wait_until(sent, 30, "the trial to be sent to the dead agent")
    assert trial.attempt == 1
    fleet.start_agent("flaky")

    def finished():
        with fleet.sessions() as session:
            found = session.get(Trial, trial.id)
            return found.state in ("done", "failed") and found

    done = fleet.wait_until(finished, 90, "the trial to run on the new agent")
    assert done.state == "done" and done.attempt == 2, done.error
    with fleet.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 1
    fleet.wait_until(
        lambda: "sent to an earlier run of this agent" in fleet.log("agent-flaky"), 30,
        "the new agent to drop the stale attempt",
    )  # fmt: skip


def test_a_second_controller_on_the_same_broker_refuses_to_start(fleet):
    fleet.start_controller()
    fleet.wait_until(lambda: "ready" in fleet.log("controller"), 60, "the first controller")
    fleet.env["EDGEBENCH_CONTROLLER_LEASE_WAIT_S"] = "1"
    second = fleet.cli("server", timeout=60)
    assert second.returncode == 1
    assert "another controller" in second.stderr and "one controller per broker" in second.stderr
    assert fleet.processes["controller"].poll() is None


def test_every_scenario_runs_through_a_campaign_on_every_runtime(fleet, tmp_path):
    """digits_cnn (built here: TensorFlow, every format) under each load pattern on
    onnxruntime, OpenVINO and LiteRT, each scenario its own campaign."""
    pytest.importorskip("tensorflow", reason="the modelzoo extra (tensorflow) is not installed")
    from orchestrator.artifacts.registry import build_and_register

    with fleet.sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts", ["digits_cnn"])
    fleet.start_controller()
    fleet.start_agent("scen")
    fleet.wait_until(online(fleet, "scen"), 60, "the agent to register")
    policy = "policy: {warmup_s: 0.05, min_queries: 20, min_s: 0.2, max_s: 3, idle_baseline_s: 0, runs: 1}\n"
    scenarios = {
        "offline": "{kind: offline}",
        "paced": "{kind: paced, gap_s: 0.01}",
        "poisson": "{kind: poisson, rate: 200}",
        "soak": "{kind: soak, minutes: 0.01}",
    }
    for kind, scenario in scenarios.items():
        spec = tmp_path / f"{kind}.yaml"
        spec.write_text(
            f"name: {kind}\ndevices: {{names: [scen]}}\nmodels: [digits_cnn]\n"
            "runtimes: [onnxruntime, openvino, litert]\n"
            f"batch_sizes: [4]\nscenario: {scenario}\n" + policy
        )
        done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "180", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(fleet.cli("results", "export").stdout)
    by = {(row["scenario"], row["runtime"]): row for row in rows}
    assert set(by) == {(k, r) for k in scenarios for r in ("onnxruntime", "openvino", "litert")}
    assert all(row["status"] == "done" for row in rows), rows
    for (kind, _), row in by.items():
        assert row["accuracy"] > 0.9 and row["fidelity_cosine"] > 0.9999  # digits, held-out
        if kind == "paced":
            assert row["scenario_report"]["gap_s"] == 0.01
        if kind == "poisson":
            assert row["scenario_report"]["offered_rate"] == 200
        if kind == "soak":
            assert len(row["scenario_report"]["buckets"]) == 10
        assert row["import_ms"] > 0 and row["process_start_ms"] > 0 and row["load_ms"] > 0
        assert row["energy_mj_per_inference"] is None  # no meter on this machine: null, not 0


def test_onnxruntime_and_openvino_side_by_side(fleet, tmp_path):
    fleet.start_controller()
    fleet.start_agent("duo")
    fleet.wait_until(online(fleet, "duo"), 60, "the agent to register")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: duo\ndevices: {names: [duo]}\nmodels: [small_cnn_96]\n"
        "runtimes: [onnxruntime, openvino, {name: openvino, device: AUTO}]\n" + QUICK_POLICY
    )
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "onnxruntime/CPU" in done.stdout and "openvino/CPU" in done.stdout
    rows = json.loads(fleet.cli("results", "export").stdout)
    placed = sorted(
        (r["runtime"], r["requested_device"], r["actual_device"], r["fallback"]) for r in rows
    )
    assert placed == [
        ("onnxruntime", "CPU", "CPU", False),
        ("openvino", "AUTO", "CPU", False),
        ("openvino", "CPU", "CPU", False),
    ]
    assert all(r["status"] == "done" and r["p50_ms"] > 0 for r in rows)
