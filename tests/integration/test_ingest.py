"""Ingest against real stores: idempotent, strict about who may report what, never crashing."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from agents.contract import (
    SCHEMA_VERSION,
    Heartbeat,
    LatencySummary,
    Registration,
    TrialResult,
    TrialStarted,
)
from agents.contract import envelope as unsigned_envelope
from agents.contract.signing import device_key, new_token, sign
from agents.contract.statistics import summarize_ns
from orchestrator import ingest, planning
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store import repository
from orchestrator.store.models import Campaign, Device, Result, ResultSamples, Trial
from orchestrator.store.session import session_factory

# Every agent message is signed: devices here enroll with one reusable token (see `world`).
TOKEN = {}


def envelope(message) -> dict:  # noqa: ANN001
    """The envelope as the device's agent sends it: signed with its key."""
    return sign(unsigned_envelope(message), device_key(TOKEN["hash"], message.device))


FACTS = {
    "device_class": "x86_64-cpu",
    "runtimes": [{"name": "onnxruntime", "version": "1.0", "devices": ["CPU"]}],
}


def registration(name: str, boot: str, sent_at: float | None = None) -> dict:
    return envelope(
        Registration(
            device=name,
            boot_id=boot,
            agent_version="t",
            facts=FACTS,
            sent_at=time.time() if sent_at is None else sent_at,
            enrollment_token=TOKEN["id"],
        )
    )


def enrolled_store(store_url: str, *devices: str):  # noqa: ANN201
    """Sessions on the store, with each device (booted as boot-<last letter>) registered
    through ingest after enrolling with one reusable token."""
    sessions = session_factory(store_url)
    _, TOKEN["id"], TOKEN["hash"] = new_token()
    with sessions.begin() as session:
        repository.add_token(session, TOKEN["id"], TOKEN["hash"], local=True)
    for name in devices:
        boot = f"boot-{name[-1]}"
        assert ingest.handle(sessions, registration(name, boot)) == "registered"
    return sessions


@pytest.fixture
def world(store_url, tmp_path):
    """Two registered devices, the built-in models, and a campaign of 4 trials on `dev-a`."""
    sessions = enrolled_store(store_url, "dev-a", "dev-b")
    with sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts")
        spec = parse_spec(
            {
                "name": "t",
                "devices": {"names": ["dev-a"]},
                "models": ["mlp_digits", "small_cnn_96"],
                "batch_sizes": [1, 8],
                "policy": {"runs": 1},
            }
        )
        campaign, plan = planning.submit(session, spec)
    assert len(plan.trials) == 4
    return sessions, campaign.id


def dispatch_one(sessions, campaign_id):
    with sessions.begin() as session:
        trial = session.scalars(
            select(Trial)
            .where(Trial.campaign_id == campaign_id, Trial.state == "pending")
            .order_by(Trial.seq)
        ).first()
        repository.mark_dispatched(session, trial, trial.device.boot_id)
        return trial.id, trial.attempt


def result(
    trial_id, attempt, device="dev-a", boot="boot-a", samples=(1_000_000, 2_000_000, 3_000_000)
):
    return envelope(
        TrialResult(
            trial_id=trial_id,
            attempt=attempt,
            device=device,
            boot_id=boot,
            status="ok",
            summary=LatencySummary(**summarize_ns(list(samples))),
            throughput_ips=1.0,
            samples_ns=list(samples),
            sent_at=time.time(),
        )
    )


def test_result_is_stored_once_even_when_redelivered(world):
    sessions, campaign_id = world
    trial_id, attempt = dispatch_one(sessions, campaign_id)
    started = envelope(
        TrialStarted(
            trial_id=trial_id, attempt=attempt, device="dev-a", boot_id="boot-a", sent_at=0
        )
    )
    assert ingest.handle(sessions, started) == "running"
    message = result(trial_id, attempt)
    assert ingest.handle(sessions, message) == "stored"
    assert ingest.handle(sessions, message) == "duplicate"
    assert ingest.handle(sessions, json.dumps(message)) == "duplicate"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 1
        stored = session.scalar(select(Result))
        assert stored.p50_ms == 2.0 and stored.n == 3
        assert session.get(ResultSamples, stored.id).samples_ns == [1_000_000, 2_000_000, 3_000_000]
        assert session.get(Trial, trial_id).state == "done"


@pytest.mark.parametrize(
    "raw, why",
    [
        ("not json", "not JSON"),
        ([1, 2], "array"),
        ({"schema": SCHEMA_VERSION + 1, "kind": "heartbeat", "body": {}}, "future schema"),
        ({"schema": SCHEMA_VERSION, "kind": "launch_missiles", "body": {}}, "unknown kind"),
        (
            {"schema": SCHEMA_VERSION, "kind": "heartbeat", "body": {"device": "dev-a"}},
            "missing fields",
        ),
    ],
)
def test_malformed_messages_are_rejected_and_change_nothing(world, raw, why):
    sessions, _ = world
    with sessions() as session:
        before = [(d.name, d.last_heartbeat_at, d.boot_id) for d in session.scalars(select(Device))]
    assert ingest.handle(sessions, raw) == "rejected", why
    with sessions() as session:
        after = [(d.name, d.last_heartbeat_at, d.boot_id) for d in session.scalars(select(Device))]
        assert after == before
        assert session.scalar(select(func.count()).select_from(Result)) == 0


def test_registration_with_malformed_facts_is_rejected(world):
    sessions, _ = world
    raw = registration("dev-c", "boot-c")
    raw["body"]["facts"]["runtimes"] = {"onnxruntime": "1.2"}  # a dict where a list belongs
    assert ingest.handle(sessions, raw) == "rejected"
    raw["body"]["facts"]["runtimes"] = []
    raw["body"]["tags"] = ["x" * 500]
    assert ingest.handle(sessions, raw) == "rejected"
    with sessions() as session:
        assert session.scalar(select(Device).where(Device.name == "dev-c")) is None


def test_results_for_unknown_unsent_or_foreign_trials_are_refused(world):
    sessions, campaign_id = world
    bogus = result("e" * 32, 1)
    bogus["body"]["trial_id"] = "no-such-trial"
    assert ingest.handle(sessions, bogus) == "rejected"  # not a trial id
    assert ingest.handle(sessions, result("e" * 32, 1)) == "rejected"  # no such trial
    with sessions() as session:
        pending = session.scalars(select(Trial).where(Trial.campaign_id == campaign_id)).first()
    assert ingest.handle(sessions, result(pending.id, 1)) == "rejected"  # never sent
    trial_id, attempt = dispatch_one(sessions, campaign_id)
    assert (
        ingest.handle(sessions, result(trial_id, attempt, device="dev-b", boot="boot-b"))
        == "rejected"
    )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 0


def test_failed_result_keeps_reason_and_campaign_settles(world):
    sessions, campaign_id = world
    for _ in range(4):
        trial_id, attempt = dispatch_one(sessions, campaign_id)
        failure = envelope(
            TrialResult(
                trial_id=trial_id, attempt=attempt, device="dev-a", boot_id="boot-a",
                status="failed", error="onnxruntime could not load it", sent_at=0,
            )
        )  # fmt: skip
        assert ingest.handle(sessions, failure) == "failed"
    with sessions() as session:
        trials = session.scalars(select(Trial).where(Trial.campaign_id == campaign_id)).all()
        assert {t.error for t in trials} == {"onnxruntime could not load it"}
        campaign = session.get(Campaign, campaign_id)
        assert campaign.state == "finished with failures" and campaign.finished_at is not None


def test_heartbeat_from_old_agent_process_is_ignored(world):
    sessions, _ = world
    assert ingest.handle(sessions, registration("dev-a", "boot-new")) == "registered"
    stale = envelope(Heartbeat(device="dev-a", boot_id="boot-a", sent_at=0, current_trial="f" * 32))
    assert ingest.handle(sessions, stale) == "refused"


def test_retired_device_cannot_register_again(world):
    sessions, campaign_id = world
    with sessions.begin() as session:
        repository.retire_device(session, "dev-a")
    assert ingest.handle(sessions, registration("dev-a", "boot-z")) == "refused"
    with sessions() as session:
        states = set(session.scalars(select(Trial.state).where(Trial.campaign_id == campaign_id)))
        assert states == {"cancelled"}


def test_a_late_registration_from_an_earlier_agent_process_is_refused(world):
    sessions, _ = world
    newer = registration("dev-a", "boot-new")
    older = registration("dev-a", "boot-old", sent_at=newer["body"]["sent_at"] - 30)
    assert ingest.handle(sessions, newer) == "registered"
    assert ingest.handle(sessions, older) == "rejected"  # a replay (docs/SECURITY.md)
    with sessions() as session:
        assert session.scalar(select(Device).where(Device.name == "dev-a")).boot_id == "boot-new"


def test_result_from_another_agent_process_than_the_attempt_was_sent_to_is_refused(world):
    sessions, campaign_id = world
    trial_id, attempt = dispatch_one(sessions, campaign_id)
    assert ingest.handle(sessions, result(trial_id, attempt, boot="boot-impostor")) == "refused"
    assert ingest.handle(sessions, result(trial_id, attempt, boot="boot-a")) == "stored"


# -- batches: what the controller's worker does with the messages waiting on its queue ---


def started(trial_id, attempt, device="dev-a", boot="boot-a"):
    return envelope(
        TrialStarted(trial_id=trial_id, attempt=attempt, device=device, boot_id=boot, sent_at=1)
    )


def test_a_batch_gives_each_message_the_outcome_it_would_get_alone(world):
    sessions, campaign_id = world
    sent = [dispatch_one(sessions, campaign_id) for _ in range(4)]
    first = result(*sent[0])
    batch = [
        envelope(Heartbeat(device="dev-a", boot_id="boot-a", sent_at=time.time())),
        *[started(*trial) for trial in sent],
        first,
        json.dumps(first),  # the same result delivered twice, once as text
        "not json",
        registration("dev-c", "boot-c"),  # enrolls dev-c: its heartbeat below is signed by it
        envelope(Heartbeat(device="dev-c", boot_id="boot-c", sent_at=time.time())),
        *[result(*trial) for trial in sent[1:]],
    ]
    outcomes = ingest.handle_batch(sessions, batch)
    assert outcomes == [
        "heartbeat",
        *["running"] * 4,
        "stored",
        "duplicate",
        "rejected",
        "registered",
        "heartbeat",
        *["stored"] * 3,
    ]
    with sessions() as session:
        trials = session.scalars(select(Trial).where(Trial.campaign_id == campaign_id)).all()
        assert {t.state for t in trials} == {"done"}
        assert session.scalar(select(func.count()).select_from(Result)) == 4
        assert session.scalar(select(func.count()).select_from(ResultSamples)) == 4
        campaign = session.get(Campaign, campaign_id)
        assert campaign.state == "done" and campaign.finished_at is not None
        assert session.scalar(select(Device).where(Device.name == "dev-c")).last_heartbeat_at


def test_one_refused_message_does_not_cost_the_rest_of_its_batch(world):
    sessions, campaign_id = world
    sent = [dispatch_one(sessions, campaign_id) for _ in range(3)]
    batch = [
        result(*sent[0]),
        result("e" * 32, 1),  # no such trial: refused and counted
        result(*sent[1], boot="boot-impostor"),  # not the agent process it was sent to
        result(*sent[2]),
    ]
    assert ingest.handle_batch(sessions, batch) == ["stored", "rejected", "refused", "stored"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 2
        assert repository.rejection_counts(session, "dev-a") == {"not_assigned": 1}
        states = {t.id: t.state for t in session.scalars(select(Trial))}
    assert [states[trial_id] for trial_id, _ in sent] == ["done", "queued", "done"]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # SQLite: no row locks
def test_a_batch_that_the_store_cannot_take_is_retried_whole(world, store_url):
    """A store error that may pass (here: a row lock not granted in time) raises
    TransientStoreError and writes nothing; the worker applies the batch again later."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import sessionmaker

    sessions, campaign_id = world
    sent = [dispatch_one(sessions, campaign_id) for _ in range(2)]
    batch = [result(*trial) for trial in sent]
    impatient = create_engine(sessions.kw["bind"].url)

    @event.listens_for(impatient, "connect")
    def _lock_timeout(dbapi_connection, _record):  # noqa: ANN001
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '100ms'")
        dbapi_connection.commit()

    try:
        with sessions.begin() as holder:  # another transaction holds one trial's row
            holder.execute(select(Trial).where(Trial.id == sent[1][0]).with_for_update())
            with pytest.raises(ingest.TransientStoreError, match="lock"):
                ingest.handle_batch(sessionmaker(impatient), batch)
    finally:
        impatient.dispose()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 0
    assert ingest.handle_batch(sessions, batch) == ["stored", "stored"]
