"""End to end: enrollment tokens and signed messages against a real controller process.

Forged envelopes go straight onto the control queue, as anyone holding the broker password
could send them; each rule of docs/SECURITY.md must refuse its forgery and count it.
"""

from __future__ import annotations

import json
import time

import pytest
from celery import Celery
from sqlalchemy import func, select

from agents.contract import (
    CONTROL_QUEUE,
    INGEST_TASK,
    Heartbeat,
    LatencySummary,
    Registration,
    TrialResult,
    envelope,
)
from agents.contract.signing import device_key, parse_token, secret_hash, sign
from orchestrator.store.models import EnrollmentToken, RejectedMessage, Trial

pytestmark = pytest.mark.e2e

QUICK_POLICY = "policy: {warmup_s: 0.1, min_queries: 30, min_s: 0.3, max_s: 3, runs: 1}\n"


def _key_from(token: str, device: str) -> bytes:
    _, secret = parse_token(token)
    return device_key(secret_hash(secret), device)


def _rejections(fleet) -> dict[tuple[str, str], int]:
    with fleet.sessions() as session:
        rows = session.execute(
            select(RejectedMessage.device, RejectedMessage.reason, func.count()).group_by(
                RejectedMessage.device, RejectedMessage.reason
            )
        )
        return {(device, reason): count for device, reason, count in rows}


def _result(trial_id: str, attempt: int, device: str, boot: str, p50: float) -> TrialResult:
    summary = LatencySummary(
        n=1, min_ms=p50, max_ms=p50, mean_ms=p50, stdev_ms=0, cv=0,
        p50_ms=p50, p90_ms=p50, p95_ms=p50, p99_ms=p50,
    )  # fmt: skip
    return TrialResult(
        trial_id=trial_id, attempt=attempt, device=device, boot_id=boot, status="ok",
        summary=summary, samples_ns=[int(p50 * 1e6)], sent_at=time.time(),
    )  # fmt: skip


def test_enrollment_and_every_forgery_is_refused_and_counted(fleet, tmp_path):
    fleet.start_controller()
    created = fleet.cli("devices", "token", "create", "--expires", "1h", "--name-pattern", "sec-*")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("ebt1.") and "sec-*" in created.stderr
    with fleet.sessions() as session:  # only the hash of the secret is stored
        stored = session.get(EnrollmentToken, parse_token(token)[0])
        assert stored.secret_hash == secret_hash(parse_token(token)[1])
        assert parse_token(token)[1] not in json.dumps([stored.secret_hash, stored.id])

    fleet.env["EDGEBENCH_ENROLLMENT_TOKEN"] = token
    fleet.start_agent("sec-a")
    del fleet.env["EDGEBENCH_ENROLLMENT_TOKEN"]
    fleet.wait_until(lambda: _credential(fleet, "sec-a"), 60, "sec-a to enroll")
    key_file = tmp_path / "agent" / "sec-a" / "device.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key_a = bytes.fromhex(json.loads(key_file.read_text())["key"])
    assert key_a == _key_from(token, "sec-a")
    listed = fleet.cli("devices", "token", "list")
    assert "used by sec-a" in listed.stdout, listed.stdout

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\ndevices: {names: [sec-a]}\nmodels: [mlp_digits]\n" + QUICK_POLICY)
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log("controller")[-3000:]
    with fleet.sessions() as session:
        trial = session.scalar(select(Trial))
        trial_id, attempt, boot_a = trial.id, trial.attempt, trial.boot_id
        signature, p50 = trial.result_signature, trial.result.p50_ms
    assert trial.state == "done" and signature

    sender = Celery("intruder", broker=fleet.env["EDGEBENCH_BROKER_URL"], set_as_current=False)
    sender.conf.update(task_serializer="json", accept_content=["json"])

    def send(wire: dict) -> None:
        sender.send_task(INGEST_TASK, args=[wire], queue=CONTROL_QUEUE)

    # A second device enrolls with its own token, by a registration sent as raw envelope.
    token_b = fleet.cli("devices", "token", "create").stdout.strip()
    key_b = _key_from(token_b, "sec-b")
    register_b = Registration(
        device="sec-b", boot_id="b" * 32, agent_version="t", sent_at=time.time(),
        enrollment_token=parse_token(token_b)[0],
    )  # fmt: skip
    send(sign(envelope(register_b), key_b))
    fleet.wait_until(lambda: _credential(fleet, "sec-b"), 30, "sec-b to enroll")

    forged = _result(trial_id, attempt, "sec-a", boot_a, p50 / 10)
    send(envelope(forged))  # unsigned
    send(sign(envelope(forged), key_b))  # signed, but with another device's key
    send(sign(envelope(forged), key_a))  # a different result for a finished attempt: replay
    foreign = _result(trial_id, attempt, "sec-b", "b" * 32, p50 / 10)
    send(sign(envelope(foreign), key_b))  # sec-b's own key, sec-a's trial: not assigned
    old = Heartbeat(device="sec-a", boot_id=boot_a, sent_at=time.time() - 3600)
    send(sign(envelope(old), key_a))  # an old heartbeat of the running agent: replay
    # The used token again, for another name: refused even with the right derived key.
    again = register_b.model_copy(
        update={"device": "sec-c", "enrollment_token": parse_token(token)[0]}
    )
    send(sign(envelope(again), _key_from(token, "sec-c")))
    expected = {
        ("sec-a", "unsigned"): 1,
        ("sec-a", "bad_signature"): 1,
        ("sec-a", "replay"): 2,
        ("sec-b", "not_assigned"): 1,
        ("sec-c", "enrollment_refused"): 1,
    }
    fleet.wait_until(lambda: _rejections(fleet) == expected, 30, f"rejections {expected}")

    # Retiring revokes: sec-b's later (validly signed) messages are refused.
    assert fleet.cli("devices", "retire", "sec-b").returncode == 0
    send(sign(envelope(Heartbeat(device="sec-b", boot_id="b" * 32, sent_at=time.time())), key_b))
    fleet.wait_until(
        lambda: _rejections(fleet).get(("sec-b", "revoked")) == 1, 30, "the revoked key refused"
    )

    with fleet.sessions() as session:  # nothing forged got in
        trial = session.get(Trial, trial_id)
        assert trial.result.p50_ms == p50 and trial.result_signature == signature
    shown = fleet.cli("devices", "show", "sec-a")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["rejected_messages"] == {"unsigned": 1, "bad_signature": 1, "replay": 2}
    log = fleet.log("controller")
    assert "rejected trial_result (unsigned)" in log and "rejected heartbeat (replay)" in log
    assert token not in log and parse_token(token)[1] not in fleet.log("agent-sec-a")
    assert fleet.processes["controller"].poll() is None


def _credential(fleet, name: str) -> bool:
    from orchestrator.store import repository

    with fleet.sessions() as session:
        return repository.active_credential(session, name) is not None
