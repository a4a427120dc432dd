"""Each invariant rule fails on a store seeded with its violation (and holds on a clean one)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from orchestrator.store.session import engine_for
from tests.faults import invariants
from tests.seed import seed_store


@pytest.fixture
def seeded(store_url):
    created = seed_store(store_url)
    assert invariants.check(store_url, created["campaign_id"]) == []
    done = [t["trial_id"] for t in created["trials"] if t["status"] == "done"]
    failed = [t["trial_id"] for t in created["trials"] if t["status"] == "failed"]
    return store_url, created["campaign_id"], done, failed


def _sql(url: str, statement: str, **params) -> None:
    with engine_for(url).begin() as connection:
        connection.execute(text(statement), params)


def _drop_result(url: str, trial_id: str) -> None:
    _sql(
        url,
        "DELETE FROM result_samples WHERE result_id IN "
        "(SELECT id FROM results WHERE trial_id = :t)",
        t=trial_id,
    )
    _sql(url, "DELETE FROM results WHERE trial_id = :t", t=trial_id)


def _rules(url: str, campaign_id: int, **kwargs) -> dict[str, set]:
    found: dict[str, set] = {}
    for violation in invariants.check(url, campaign_id, **kwargs):
        found.setdefault(violation.rule, set()).update(violation.trial_ids)
    return found


def test_a_done_trial_without_its_result(seeded):
    url, campaign, done, _ = seeded
    _drop_result(url, done[0])
    assert _rules(url, campaign) == {"done_without_result": {done[0]}}


def test_a_failed_trial_without_a_reason(seeded):
    url, campaign, _, failed = seeded
    _sql(url, "UPDATE trials SET error = '  ' WHERE id = :t", t=failed[0])
    assert _rules(url, campaign) == {"failed_without_reason": {failed[0]}}


def test_a_trial_left_open(seeded):
    url, campaign, done, _ = seeded
    _sql(url, "UPDATE trials SET state = 'pending' WHERE id = :t", t=done[0])
    rules = _rules(url, campaign)
    assert rules["not_terminal"] == {done[0]} and rules["result_not_done"] == {done[0]}
    # Open but within its lease is allowed while the campaign runs.
    assert "not_terminal" not in _rules(url, campaign, settled=False)


def test_a_trial_running_past_its_lease(seeded):
    url, campaign, done, _ = seeded
    long_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    _drop_result(url, done[0])
    _sql(
        url,
        "UPDATE trials SET state = 'running', started_at = :s, finished_at = NULL WHERE id = :t",
        t=done[0],
        s=long_ago,
    )
    assert _rules(url, campaign, settled=False) == {"past_lease": {done[0]}}


def test_a_trial_queued_past_its_start_timeout(seeded):
    url, campaign, done, _ = seeded
    long_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    _drop_result(url, done[0])
    _sql(
        url,
        "UPDATE trials SET state = 'queued', dispatched_at = :s, started_at = NULL, "
        "finished_at = NULL WHERE id = :t",
        t=done[0],
        s=long_ago,
    )
    assert _rules(url, campaign, settled=False) == {"past_lease": {done[0]}}


def test_two_trials_of_one_device_at_overlapping_times(seeded):
    url, campaign, _, _ = seeded
    with engine_for(url).connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, device_id, started_at, finished_at FROM trials "
                "WHERE campaign_id = :c ORDER BY device_id, started_at"
            ),
            {"c": campaign},
        ).all()
    first, second = rows[0], next(r for r in rows[1:] if r.device_id == rows[0].device_id)
    start = datetime.now(timezone.utc)
    _sql(
        url,
        "UPDATE trials SET started_at = :s, finished_at = :e WHERE id = :t",
        t=first.id,
        s=start,
        e=start + timedelta(seconds=10),
    )
    _sql(
        url,
        "UPDATE trials SET started_at = :s, finished_at = :e WHERE id = :t",
        t=second.id,
        s=start + timedelta(seconds=5),
        e=start + timedelta(seconds=20),
    )
    assert _rules(url, campaign) == {"overlap": {first.id, second.id}}


def test_two_measurements_overlapping_on_the_agent_clock(seeded):
    url, campaign, done, _ = seeded
    trials, results = invariants.load(url, campaign)
    device = {t["id"]: t["device_id"] for t in trials}
    same = [t for t in done if device[t] == device[done[0]]][:2]
    assert len(same) == 2
    for result in results:
        if result["trial_id"] == same[0]:
            result["environment"] = {"measure_start_unix": 100.0, "measure_end_unix": 110.0}
        if result["trial_id"] == same[1]:
            result["environment"] = {"measure_start_unix": 109.0, "measure_end_unix": 120.0}
    found = invariants.violations(trials, results)
    assert {v.rule for v in found} == {"overlap"} and set(found[0].trial_ids) == set(same)


def test_a_duplicate_result(seeded):
    # The store's unique constraint forbids a second row, so the rule is shown on the rows
    # as loaded: a second result row for one trial.
    url, campaign, done, _ = seeded
    trials, results = invariants.load(url, campaign)
    copy = dict(next(r for r in results if r["trial_id"] == done[0]), id=999999)
    found = invariants.violations(trials, [*results, copy])
    assert [(v.rule, v.trial_ids) for v in found] == [("duplicate_result", (done[0],))]


def test_a_result_without_its_trial(sqlite_url):
    created = seed_store(sqlite_url)
    done = next(t["trial_id"] for t in created["trials"] if t["status"] == "done")
    # Only a store without its foreign keys enforced can hold one: SQLite with them off.
    path = sqlite_url.split("///", 1)[1]
    engine_for(sqlite_url).dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA foreign_keys=OFF")
    connection.execute("UPDATE results SET trial_id = 'ghost' WHERE trial_id = ?", (done,))
    connection.close()
    rules = _rules(sqlite_url, created["campaign_id"])
    assert rules == {"orphan_result": {"ghost"}, "done_without_result": {done}}
