"""An unstable or throttled run adds a run of its configuration, through real ingest on both
stores; no run is replaced or hidden."""

from __future__ import annotations

import time

from sqlalchemy import select

from agents.contract import LatencySummary, TrialResult
from agents.contract.statistics import summarize_ns
from orchestrator import ingest, planning
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store.models import Campaign, Trial
from tests.integration.test_ingest import dispatch_one, enrolled_store, envelope


def _result(trial_id: str, attempt: int, unstable: bool) -> dict:
    samples = [1_000_000, 2_000_000, 3_000_000]
    return envelope(
        TrialResult(
            trial_id=trial_id, attempt=attempt, device="dev-a", boot_id="boot-a", status="ok",
            summary=LatencySummary(**summarize_ns(samples)), unstable=unstable,
            throughput_ips=1.0, samples_ns=samples, sent_at=time.time(),
        )
    )  # fmt: skip


def test_an_unstable_run_adds_a_run_of_its_configuration_up_to_max_reruns(store_url, tmp_path):
    sessions = enrolled_store(store_url, "dev-a")
    with sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts", ["mlp_digits"])
        spec = parse_spec(
            {"name": "r", "devices": {"names": ["dev-a"]}, "models": ["mlp_digits"],
             "policy": {"runs": 2, "max_reruns": 1}}
        )  # fmt: skip
        campaign, _ = planning.submit(session, spec)
        campaign_id = campaign.id

    def runs() -> list[Trial]:
        with sessions() as session:
            query = select(Trial).where(Trial.campaign_id == campaign_id).order_by(Trial.seq)
            return list(session.scalars(query))

    first, attempt = dispatch_one(sessions, campaign_id)
    assert ingest.handle(sessions, _result(first, attempt, unstable=True)) == "stored"
    after_first = runs()
    assert [t.repeat for t in after_first] == [1, 2, 3]  # run 3 added, run 1 kept as it is
    assert after_first[2].state == "pending" and "after run 1 was unstable" in after_first[2].note
    second, attempt = dispatch_one(sessions, campaign_id)
    assert ingest.handle(sessions, _result(second, attempt, unstable=True)) == "stored"
    assert len(runs()) == 3  # the budget of one added run is spent
    third, attempt = dispatch_one(sessions, campaign_id)
    assert ingest.handle(sessions, _result(third, attempt, unstable=False)) == "stored"
    assert {t.state for t in runs()} == {"done"}
    with sessions() as session:
        assert session.get(Campaign, campaign_id).state == "done"
