"""The control queue read in batches (orchestrator.control_queue) and the ingest loops that
drain it (orchestrator.ingest_workers), against a real redis-server, real Celery producers
(the agents' send_task) and real stores: nothing lost, nothing stored twice."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
from sqlalchemy import func, select

from agents.contract import CONTROL_QUEUE, INGEST_TASK, Heartbeat, TrialStarted
from orchestrator import broker, ingest, ingest_workers, planning
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.control_queue import TAKEN_KEY, ControlQueue, task_argument
from orchestrator.store import migrate, repository
from orchestrator.store.models import Result, Trial
from orchestrator.transport import control_app
from tests.integration.test_ingest import enrolled_store, envelope, result


@pytest.fixture
def own_redis(tmp_path):
    """A private broker: these tests read and empty the control queue."""
    try:
        redis = broker.start(tmp_path / "broker", record=False)
    except broker.BrokerError as exc:
        from tests.conftest import missing_service

        missing_service(f"cannot start redis-server: {exc}")
    yield redis.url
    redis.stop()


def send(url: str, payloads: list) -> None:
    app = control_app(url)
    for payload in payloads:  # as the agents send them (agents.worker)
        app.send_task(INGEST_TASK, args=[payload], queue=CONTROL_QUEUE)


def test_a_batch_is_every_waiting_message_oldest_first_until_acknowledged(own_redis):
    send(own_redis, [{"n": i} for i in range(7)])
    queue = ControlQueue(own_redis, loop="t.0")
    taken = queue.take(5, wait_s=0)
    assert [task_argument(m) for m in taken] == [{"n": i} for i in range(5)]
    # not acknowledged (a lost connection, a controller killed): the same five come again
    # first, and nothing is added beyond the limit
    assert queue.take(5, wait_s=0) == taken
    queue.acknowledge()
    assert [task_argument(m) for m in queue.take(5, wait_s=0)] == [{"n": 5}, {"n": 6}]
    queue.acknowledge()
    started = time.monotonic()
    assert queue.take(5, wait_s=1) == []
    assert time.monotonic() - started >= 0.9  # waited for one, then gave up


def test_a_message_sent_while_waiting_is_taken_at_once(own_redis):
    queue = ControlQueue(own_redis, loop="t.0")
    threading.Timer(0.3, send, args=(own_redis, [{"late": True}])).start()
    started = time.monotonic()
    taken = queue.take(5, wait_s=5)
    assert [task_argument(m) for m in taken] == [{"late": True}]
    assert time.monotonic() - started < 2


def test_what_every_loop_had_taken_goes_back_on_the_queue_in_order(own_redis):
    send(own_redis, [{"n": i} for i in range(6)])
    first, fourth = ControlQueue(own_redis, loop="t.0"), ControlQueue(own_redis, loop="t.3")
    assert len(first.take(2, wait_s=0)) == 2 and len(fourth.take(2, wait_s=0)) == 2
    assert first.put_back_all(but_run="t") == 0  # this run's own lists stay
    assert first.put_back_all() == 4
    assert first.client.keys(f"{TAKEN_KEY}*") == []
    back = [task_argument(m)["n"] for m in first.take(10, wait_s=0)]
    assert sorted(back) == list(range(6)) and back[:2] in ([0, 1], [2, 3])


@pytest.mark.parametrize(
    "message",
    [
        b"not json",
        b'{"body": "e30=", "content-type": "application/x-python-serialize",'
        b' "properties": {"body_encoding": "base64"}, "headers": {"task": "edgebench.ingest"}}',
        b'{"body": "W1tdLCB7fSwge31d", "content-type": "application/json",'
        b' "properties": {"body_encoding": "base64"}, "headers": {"task": "some.other.task"}}',
        b'{"body": "!!", "content-type": "application/json",'
        b' "properties": {"body_encoding": "base64"}, "headers": {"task": "edgebench.ingest"}}',
        b'{"body": "eJw=", "content-type": "application/json",'
        b' "properties": {"body_encoding": "base64"},'
        b' "headers": {"task": "edgebench.ingest", "compression": "application/x-gzip"}}',
        b'{"body": "' + b"[" * 100_000 + b'", "content-type": "application/json",'
        b' "properties": {}, "headers": {"task": "edgebench.ingest"}}',
    ],
    ids=["junk", "pickle", "another-task", "bad-base64", "bad-compression", "deep-nesting"],
)
def test_anything_but_an_ingest_task_reads_as_none(message):
    assert task_argument(message) is None


def campaign_sent(url: str, tmp_path, devices: list[str], repeats: int) -> tuple:
    sessions = enrolled_store(url, *devices)
    with sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts", ["mlp_digits"])
        spec = parse_spec(
            {"name": "loops", "devices": {"names": devices}, "models": ["mlp_digits"],
             "repeats": repeats}
        )  # fmt: skip
        campaign, _ = planning.submit(session, spec)
        trials = session.scalars(select(Trial).where(Trial.campaign_id == campaign.id)).all()
        for trial in trials:
            repository.mark_dispatched(session, trial, trial.device.boot_id)
        sent = [(t.id, t.attempt, t.device.name) for t in trials]
    return sessions, sent


def stream_for(sent: list) -> list:
    """Starts, heartbeats, results, and every tenth result delivered twice."""
    stream = []
    for number, (trial_id, attempt, device) in enumerate(sent):
        boot = f"boot-{device[-1]}"
        stream.append(
            envelope(TrialStarted(trial_id=trial_id, attempt=attempt, device=device,
                                  boot_id=boot, sent_at=time.time()))
        )  # fmt: skip
        stream.append(envelope(Heartbeat(device=device, boot_id=boot, sent_at=time.time())))
        stream.append(result(trial_id, attempt, device=device, boot=boot))
        if number % 10 == 0:
            stream.append(stream[-1])
    return stream


@pytest.mark.parametrize("kill_a_loop", [False, True], ids=["quiet", "second-loop-killed-9"])
def test_two_loops_on_postgresql_store_each_result_once(
    postgres_url, own_redis, tmp_path, kill_a_loop
):
    migrate.upgrade(postgres_url)
    devices = ["dev-a", "dev-b", "dev-c", "dev-d"]
    sessions, sent = campaign_sent(postgres_url, tmp_path, devices, repeats=60)
    # a loop of a controller that died had taken some and committed nothing
    send(own_redis, stream_for(sent[:10]))
    assert len(ControlQueue(own_redis, loop="died.5").take(30, wait_s=0)) == 30
    stop, wake = threading.Event(), threading.Event()
    loops = threading.Thread(
        target=ingest_workers.serve, args=(sessions, own_redis, None, 2, wake, stop)
    )
    loops.start()
    killed = []
    try:
        redis = ControlQueue(own_redis).client
        wait_for(lambda: len(waiting_loops(redis)) == 2, "both loops waiting on the queue")
        send(own_redis, stream_for(sent[10:]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sessions() as session:
                done = session.scalar(select(func.count()).where(Trial.state == "done"))
            if done == len(sent):
                break
            if (
                kill_a_loop
                and not killed
                and any(redis.llen(key) for key in redis.scan_iter(f"{TAKEN_KEY}.*.1"))
            ):
                # the child loop holds a batch it has not committed: its successor takes it
                killed = [child.pid for child in multiprocessing.active_children()]
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
    finally:
        stop.set()
        loops.join(30)
    assert not loops.is_alive()
    assert len(killed) == (1 if kill_a_loop else 0)
    with sessions() as session:
        per_trial = session.execute(
            select(Result.trial_id, func.count()).group_by(Result.trial_id)
        ).all()
        assert len(per_trial) == len(sent) and {count for _, count in per_trial} == {1}
        assert session.scalar(select(func.count()).where(Trial.state != "done")) == 0
    queue = ControlQueue(own_redis)
    assert queue.client.llen(CONTROL_QUEUE) == 0
    # A loop killed after its commit and before its acknowledgement leaves its batch taken,
    # for its successor, which may have been stopped before it started: the next start
    # takes it again, and none of it is stored twice.
    left = [
        m for key in queue.client.keys(f"{TAKEN_KEY}*") for m in queue.client.lrange(key, 0, -1)
    ]
    assert not left or kill_a_loop
    assert all(ingest.handle(sessions, task_argument(m)) not in ("stored", "failed") for m in left)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Result)) == len(sent)


def waiting_loops(redis) -> list:  # noqa: ANN001
    return [c for c in redis.client_list() if c.get("cmd") == "brpoplpush"]


def wait_for(condition, what: str, timeout_s: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sqlite_is_ingested_by_one_loop_whatever_is_asked(sqlite_url):
    assert ingest_workers.processes_for(sqlite_url, 4) == 1
    assert ingest_workers.processes_for("postgresql://x/y", 3) == 3
    assert ingest_workers.processes_for("postgresql://x/y", None) in (1, 2)


def test_a_store_outage_while_applying_one_by_one_retries_and_drops_nothing(monkeypatch):
    """A batch that fails unexpectedly is applied message by message; if the store goes away
    during that, the batch is tried again, not acknowledged with messages dropped."""
    calls = {"handle": 0}

    def broken_batch(sessions, raws):  # noqa: ANN001, ANN202
        raise RuntimeError("a bug in the batch path")

    def flaky_handle(sessions, raw):  # noqa: ANN001, ANN202
        calls["handle"] += 1
        if calls["handle"] == 2:
            from sqlalchemy.exc import OperationalError

            raise ingest.TransientStoreError(OperationalError("x", {}, Exception("server gone")))
        return "stored"

    monkeypatch.setattr(ingest, "handle_batch", broken_batch)
    monkeypatch.setattr(ingest, "handle", flaky_handle)
    monkeypatch.setattr(ingest_workers, "STORE_RETRY_S", 0.01)
    outcomes = ingest_workers.apply_waiting(None, ["a", "b", "c"], threading.Event())
    assert outcomes == ["stored", "stored", "stored"] and calls["handle"] == 2 + 3
