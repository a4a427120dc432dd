"""Trial and campaign states and ingest outcomes are enums whose members are the words the
store keeps: a word read back from SQL finds its member in a set or a dict, and a member
prints and serialises as its word (what the store, the logs and the JSON API rely on)."""

from __future__ import annotations

import json

from orchestrator.store.models import TERMINAL, CampaignState, TrialState
from orchestrator.store.repository import WAKES_SCHEDULER, Outcome


def test_a_stored_word_finds_its_member():
    read_back = {"done", "cancelled"}  # what SELECT state returns: plain text
    assert TrialState.DONE in read_back and TrialState.FAILED not in read_back
    assert read_back <= set(TERMINAL)
    assert {"done": 3}[TrialState.DONE] == 3
    assert CampaignState("finished with failures") is CampaignState.FINISHED_WITH_FAILURES


def test_a_member_prints_and_serialises_as_its_word():
    assert f"{TrialState.QUEUED}" == "queued" and str(Outcome.STORED) == "stored"
    assert json.dumps([CampaignState.DONE, Outcome.IGNORED]) == '["done", "ignored"]'


def test_what_wakes_the_scheduler_is_named_not_matched_by_prefix():
    assert WAKES_SCHEDULER.intersection(["heartbeat", "stored"]) == {Outcome.STORED}
    assert not WAKES_SCHEDULER.intersection([Outcome.DUPLICATE, Outcome.STALE])
