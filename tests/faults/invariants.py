"""A campaign's invariants, checked by code against the store (SQLite or PostgreSQL).

`check(url, campaign_id)` reads the rows with plain SQL (so a store that broke a constraint
can still be read) and returns a list of violations, each naming its trial; an empty list
means the campaign is accounted for:

- every trial is in exactly one terminal state: done with exactly one result, failed with a
  non-empty reason, or cancelled (with ``settled=False``, open trials are allowed, but none
  may be running or queued past its lease);
- no duplicate results; no result without its trial;
- no two trials of one device measured at overlapping times (the controller's
  started_at/finished_at, and the agent's measure_start_unix/measure_end_unix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional

from sqlalchemy import text

from orchestrator.scheduler import LEASE_GRACE_S
from orchestrator.settings import Settings
from orchestrator.store.session import engine_for

TERMINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Violation:
    rule: str
    trial_ids: tuple[str, ...]
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} [{', '.join(self.trial_ids)}]: {self.detail}"


def _utc(moment: Any) -> Optional[datetime]:
    if moment is None:
        return None
    if isinstance(moment, str):  # SQLite through plain SQL
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value or "{}") or {}
    return value or {}


def load(url: str, campaign_id: Optional[int] = None) -> tuple[list[dict], list[dict]]:
    """The campaign's trials and every result row (results of any trial, to find orphans)."""
    where = "" if campaign_id is None else " WHERE campaign_id = :campaign"
    params = {} if campaign_id is None else {"campaign": campaign_id}
    with engine_for(url).connect() as connection:
        trials = [
            dict(row._mapping)
            for row in connection.execute(
                text(
                    "SELECT id, campaign_id, device_id, state, error, timeout_s, dispatched_at,"
                    " started_at, finished_at FROM trials" + where
                ),
                params,
            )
        ]
        results = [
            dict(row._mapping)
            for row in connection.execute(
                text(
                    "SELECT r.id, r.trial_id, r.environment, t.id AS known_trial FROM results r"
                    " LEFT JOIN trials t ON t.id = r.trial_id"
                )
            )
        ]
    if campaign_id is not None:
        ours = {t["id"] for t in trials}
        results = [r for r in results if r["trial_id"] in ours or r["known_trial"] is None]
    return trials, results


def violations(
    trials: list[dict],
    results: list[dict],
    now: Optional[datetime] = None,
    settled: bool = True,
    start_timeout_s: Optional[float] = None,
) -> list[Violation]:
    """The rules over loaded rows (see `load`); `now` defaults to the current time."""
    now = now or datetime.now(timezone.utc)
    start_timeout_s = Settings().start_timeout_s if start_timeout_s is None else start_timeout_s
    found: list[Violation] = []
    by_trial: dict[str, list[dict]] = {}
    for result in results:
        if result["known_trial"] is None:
            found.append(
                Violation("orphan_result", (result["trial_id"],), f"result {result['id']}")
            )
        by_trial.setdefault(result["trial_id"], []).append(result)
    for trial_id, rows in by_trial.items():
        if len(rows) > 1:
            ids = ", ".join(str(r["id"]) for r in rows)
            found.append(Violation("duplicate_result", (trial_id,), f"results {ids}"))
    for trial in trials:
        tid, state = trial["id"], trial["state"]
        count = len(by_trial.get(tid, []))
        if state == "done" and count == 0:
            found.append(Violation("done_without_result", (tid,), "state done, no result"))
        elif state != "done" and count:
            found.append(Violation("result_not_done", (tid,), f"state {state} with a result"))
        if state == "failed" and not (trial["error"] or "").strip():
            found.append(Violation("failed_without_reason", (tid,), "empty error"))
        if state in TERMINAL:
            continue
        lease = None
        if state == "running" and trial["started_at"] is not None:
            lease = _utc(trial["started_at"]) + timedelta(
                seconds=trial["timeout_s"] + LEASE_GRACE_S
            )
        elif state == "queued" and trial["dispatched_at"] is not None:
            lease = _utc(trial["dispatched_at"]) + timedelta(seconds=start_timeout_s)
        if lease is not None and now > lease:
            found.append(Violation("past_lease", (tid,), f"{state} past {lease:%H:%M:%S}"))
        elif settled:
            found.append(Violation("not_terminal", (tid,), f"state {state}"))
    found.extend(_overlaps(trials, results))
    return found


def _overlaps(trials: list[dict], results: list[dict]) -> Iterable[Violation]:
    device_of = {t["id"]: t["device_id"] for t in trials}
    spans: dict[tuple[str, Any], list[tuple[float, float, str]]] = {}
    for trial in trials:
        start, end = _utc(trial["started_at"]), _utc(trial["finished_at"])
        if start is not None and end is not None:
            spans.setdefault(("controller", trial["device_id"]), []).append(
                (start.timestamp(), end.timestamp(), trial["id"])
            )
    for result in results:
        env = _json(result["environment"])
        start, end = env.get("measure_start_unix"), env.get("measure_end_unix")
        if result["trial_id"] in device_of and start is not None and end is not None:
            spans.setdefault(("agent", device_of[result["trial_id"]]), []).append(
                (float(start), float(end), result["trial_id"])
            )
    for (clock, device), items in spans.items():
        items.sort()
        latest_end, latest = float("-inf"), ""
        for start, end, trial_id in items:
            if start < latest_end:
                yield Violation(
                    "overlap",
                    (latest, trial_id),
                    f"device {device}: measured at once ({clock} clock, "
                    f"{latest_end - start:.3f} s)",
                )
            if end > latest_end:
                latest_end, latest = end, trial_id


def check(url: str, campaign_id: Optional[int] = None, settled: bool = True) -> list[Violation]:
    trials, results = load(url, campaign_id)
    return violations(trials, results, settled=settled)


def assert_holds(url: str, campaign_id: Optional[int] = None) -> None:
    found = check(url, campaign_id)
    assert not found, "invariants violated:\n" + "\n".join(map(str, found))
