"""Operator profiles through ingest into both stores, read back, and shown by
`edgebench results profile TRIAL [--vs TRIAL]`."""

from __future__ import annotations

import json
import time

from sqlalchemy import func, select

from agents.contract import LatencySummary, TrialResult
from agents.contract.profile import OperatorProfile, OperatorRow
from agents.contract.statistics import summarize_ns
from orchestrator import ingest
from orchestrator.store.models import ProfileOpType, ResultProfile
from orchestrator.store.queries.profiles import profiled_trials, trial_profile
from tests.conftest import run_cli
from tests.integration.test_ingest import dispatch_one, envelope, world  # noqa: F401


def profiled_result(trial_id: str, attempt: int, ops: list[tuple], mean_ns: int) -> dict:
    profile = OperatorProfile(
        method="onnxruntime session profiling", requested_unit="CPU", queries=50, wall_ms=1.0,
        ops=[OperatorRow(node=n, op_type=t, calls=1, time_us=us, unit=u, fallback=u != "CPU",
                         precision=p) for n, t, us, u, p in ops],
        note="kernel times only",
    )  # fmt: skip
    samples = [mean_ns] * 20
    return envelope(
        TrialResult(
            trial_id=trial_id, attempt=attempt, device="dev-a", boot_id="boot-a", status="ok",
            summary=LatencySummary(**summarize_ns(samples)), throughput_ips=1.0,
            samples_ns=samples, sent_at=time.time(), profile=profile,
        )
    )  # fmt: skip


FP32 = [("conv", "Conv", 700.0, "CPU", "fp32"), ("relu", "Relu", 100.0, "CPU", "fp32")]
INT8 = [
    ("conv", "ConvInteger", 500.0, "CPU", "int8"),
    *[(f"dq{i}", "DequantizeLinear", 150.0, "CPU", "fp32") for i in range(4)],
    ("nms", "NonMaxSuppression", 50.0, "OpenVINO", "fp32"),
]


def test_a_profile_is_stored_read_back_and_diffed(world, tmp_path):  # noqa: F811
    sessions, campaign_id = world
    first, second = dispatch_one(sessions, campaign_id), dispatch_one(sessions, campaign_id)
    assert ingest.handle(sessions, profiled_result(*first, FP32, 900_000)) == "stored"
    assert ingest.handle(sessions, profiled_result(*second, INT8, 1_400_000)) == "stored"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ResultProfile)) == 2
        assert session.scalar(select(func.count()).select_from(ProfileOpType)) == 2 + 3
        a = trial_profile(session, first[0])
        b = trial_profile(session, second[0])
        listed = profiled_trials(session)
    assert a["total_ms"] == 0.8 and a["measured_mean_ms"] == 0.9
    assert [n["node"] for n in a["nodes"]] == ["conv", "relu"]
    assert b["op_types"][0]["op_type"] == "DequantizeLinear" and b["op_types"][0]["nodes"] == 4
    assert {t["trial_id"] for t in listed} == {first[0], second[0]}

    url = str(sessions.kw["bind"].url.render_as_string(hide_password=False))
    env = {"EDGEBENCH_DATABASE_URL": url, "EDGEBENCH_HOME": str(tmp_path / "home"),
           "COLUMNS": "200"}  # fmt: skip
    shown = run_cli("results", "profile", first[0][:10], "--vs", second[0][:10], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "the operators account for 0.800 ms of the 0.900 ms measured mean" in shown.stdout
    assert (
        "1 of 6 operators ran off CPU" in shown.stdout and "nms (NonMaxSuppression" in shown.stdout
    )
    assert "B is 0.500 ms slower per query than A" in shown.stdout
    assert "DequantizeLinear +0.600 ms (4 nodes on CPU)" in shown.stdout

    exported = run_cli("results", "export", "--format", "json", env=env)
    by_trial = {row["trial_id"]: row for row in json.loads(exported.stdout)}
    assert by_trial[first[0]]["profile_ops_ms"] == 0.8
    assert by_trial[first[0]]["profile_method"] == "onnxruntime session profiling"
    assert by_trial[second[0]]["profile_fallback_ops"] is None  # placement as the agent sent it
    missing = run_cli("results", "profile", "ffffffff", env=env)
    assert missing.returncode != 0 and "no trial with an id starting 'ffffffff'" in missing.stderr
