"""`edgebench server`: the controller. Consumes the control queue and runs the scheduler."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from celery import Celery
from celery.worker import state as worker_state
from celery_batches import Batches
from sqlalchemy.orm import Session, sessionmaker

from agents.contract import CONTROL_QUEUE, INGEST_TASK
from orchestrator import enrollment, ingest, scheduler
from orchestrator import wake as wake_channel
from orchestrator.artifacts import http_server
from orchestrator.controller_lease import ControllerLease
from orchestrator.settings import Settings
from orchestrator.store import migrate
from orchestrator.store.repository import WAKES_SCHEDULER, Outcome
from orchestrator.store.session import session_factory
from orchestrator.transport import control_app

log = logging.getLogger("edgebench.server")


class DatabaseNotReady(RuntimeError):
    pass


def prepare_database(settings: Settings) -> str:
    """The embedded SQLite store is migrated automatically; any other must be up to date."""
    url = settings.resolved_database_url()
    if settings.uses_default_database():
        migrate.upgrade(url)
    elif not migrate.is_current(url):
        raise DatabaseNotReady(
            f"the database at {url.split('@')[-1]} is not at the current schema: "
            "run `edgebench db upgrade` first"
        )
    return url


# Ingest and the scheduler run in two threads of this process; on SQLite, which has no
# row locks, one could overwrite what the other just wrote. They take turns.
STORE_LOCK = threading.Lock()


# The worker takes the messages waiting on the control queue in batches (celery-batches),
# each in one transaction: of about this many, up to twice as many after a long one (the
# worker prefetches that many). The first message of a batch waits at least INGEST_WAIT_S
# for others to join it, and for as long as the batch before is being ingested.
INGEST_BATCH = 200
INGEST_WAIT_S = 0.05
STORE_RETRY_S = 2.0


class IngestBatches(Batches):
    """celery-batches' task base, changed in two ways:

    * A batch is cut only when the ingest thread is free: the messages that arrive while it
      works wait in the buffer and go as the next batch. Cut every INGEST_WAIT_S regardless,
      a backlog became many batches of one or two messages queued for the one thread, each
      paying a transaction and the store lock (bench/load_run.py: 12 s from a result's
      arrival to its ingest, with 50 agents).
    * Its flush timer is started again after a reconnect. When the broker connection drops,
      the worker clears its timers; Batches still believed its timer was running, so
      messages waited for a full batch (minutes, at heartbeat rates) before they were
      ingested. The worker asks for the strategy again on reconnect.
    """

    ingesting = False  # a batch is with the ingest thread (set here, cleared by the task)

    def Strategy(self, task, app, consumer):  # noqa: ANN001, N802
        self._tref = None
        return super().Strategy(task, app, consumer)

    def _do_flush(self) -> None:
        if not self.ingesting:  # else the timer comes back in INGEST_WAIT_S
            super()._do_flush()

    def flush(self, requests):  # noqa: ANN001
        self.ingesting = True
        return super().flush(requests)


def register_ingest(app: Celery, sessions: sessionmaker[Session], wake: threading.Event) -> None:
    # A batch being ingested holds its messages unacknowledged: room for the next one too.
    app.conf.worker_prefetch_multiplier = 2 * INGEST_BATCH

    @app.task(
        name=INGEST_TASK,
        base=IngestBatches,
        bind=True,
        flush_every=INGEST_BATCH,
        flush_interval=INGEST_WAIT_S,
        acks_late=True,
    )
    def ingest_messages(self, requests):  # noqa: ANN001
        try:
            raws = [request.args[0] if request.args else None for request in requests]
            outcomes = apply_waiting(app, sessions, raws)
        finally:
            self.ingesting = False
        if WAKES_SCHEDULER.intersection(outcomes):
            wake.set()
        return len(outcomes)


def apply_waiting(app: Celery, sessions: sessionmaker[Session], raws: list) -> list[Outcome]:
    """Ingest a batch, waiting for the store while it is unreachable.

    The messages are acknowledged once this returns, so it does not return before they are
    stored, unless the worker is asked to stop: then they go back on the queue.
    """
    while True:
        try:
            with STORE_LOCK:
                return ingest.handle_batch(sessions, raws)
        except ingest.TransientStoreError as exc:
            if worker_state.should_stop is not None or worker_state.should_terminate is not None:
                for raw in raws:
                    app.send_task(INGEST_TASK, args=[raw], queue=CONTROL_QUEUE)
                log.warning("store unavailable (%s); %d messages put back", exc, len(raws))
                return []
            log.warning("store unavailable (%s); trying again in %.0f s", exc, STORE_RETRY_S)
            time.sleep(STORE_RETRY_S)
        except Exception:  # a bug must not take the controller down, nor cost the batch
            log.exception("unexpected error in a batch of %d messages; one by one", len(raws))
            return one_by_one(sessions, raws)


def one_by_one(sessions: sessionmaker[Session], raws: list) -> list[Outcome]:
    outcomes = []
    for raw in raws:
        try:
            with STORE_LOCK:
                outcomes.append(ingest.handle(sessions, raw))
        except Exception:  # logged loudly; the message is dropped
            log.exception("unexpected error while ingesting a message; dropped")
            outcomes.append(Outcome.ERROR)
    return outcomes


def worker_argv(loglevel: str) -> list[str]:
    """The controller's one Celery worker: a single thread consuming the control queue."""
    return [
        "worker",
        # One thread ingests while the worker's main thread takes the next messages off the
        # queue (solo would do one, then the other); still one ingest at a time.
        "--pool=threads",
        "--concurrency=1",
        f"--queues={CONTROL_QUEUE}",
        "--hostname=edgebench-controller@%h",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        f"--loglevel={loglevel}",
    ]


def start_artifact_server(settings: Settings) -> http_server.ArtifactServer | None:
    """Serve the content store to agents, and record its URL for the scheduler."""
    if not settings.artifact_server:
        return None
    token = http_server.controller_token(settings.home, settings.artifact_token)
    previous = 0 if settings.artifact_port else http_server.last_port(settings.home)
    try:
        try:
            served = http_server.ArtifactServer(
                settings.artifact_dir(),
                token,
                settings.artifact_bind,
                previous or settings.artifact_port,
            )
        except OSError:
            if not previous:
                raise
            # the old port is taken now: any free one (specs already sent will be re-sent)
            served = http_server.ArtifactServer(
                settings.artifact_dir(), token, settings.artifact_bind, 0
            )
    except OSError as exc:
        raise SystemExit(
            f"error: cannot serve artifacts on {settings.artifact_bind}:{settings.artifact_port}:"
            f" {exc.strerror or exc} (set EDGEBENCH_ARTIFACT_BIND / EDGEBENCH_ARTIFACT_PORT)"
        ) from None
    http_server.record(settings.home, served.url)
    http_server.remember_port(settings.home, served.port)
    log.info(
        "artifact server on %s; agents fetch from %s",
        served.url,
        settings.resolved_artifact_base_url(),
    )
    return served


def scheduler_loop(
    sessions: sessionmaker[Session],
    app: Celery,
    settings: Settings,
    wake: threading.Event,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        try:
            with STORE_LOCK:
                scheduler.dispatch(sessions, app, settings)
        except Exception:
            log.exception("scheduler round failed; retrying")
        wake.wait(settings.scheduler_interval_s)
        wake.clear()


def run(settings: Settings, broker_url: str, loglevel: str = "INFO") -> None:
    url = prepare_database(settings)
    lease = ControllerLease(broker_url, settings.broker_ca)
    lease.acquire(settings.controller_lease_wait_s)
    try:
        artifacts = start_artifact_server(settings)
    except SystemExit:
        lease.release()
        raise
    sessions = session_factory(url)
    try:
        enrollment.record_local_token(sessions, settings.home)
    except Exception:
        if artifacts is not None:
            artifacts.stop()
        lease.release()
        raise
    app = control_app(broker_url, settings.broker_ca)
    wake, stop = threading.Event(), threading.Event()
    register_ingest(app, sessions, wake)
    thread = threading.Thread(
        target=scheduler_loop,
        args=(sessions, app, settings, wake, stop),
        name="scheduler",
        daemon=True,
    )
    thread.start()
    listener = threading.Thread(
        target=wake_channel.listen,
        args=(broker_url, settings.broker_ca, wake, stop),
        name="wake",
        daemon=True,
    )
    listener.start()

    def lost() -> None:
        log.error("another controller took this broker's lease; stopping")
        stop.set()
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown

    keeper = threading.Thread(target=lease.keep, args=(stop, lost), name="lease", daemon=True)
    keeper.start()
    try:
        app.worker_main(argv=worker_argv(loglevel))
    finally:
        stop.set()
        wake.set()
        thread.join(10)
        if artifacts is not None:
            artifacts.stop()
            http_server.forget(settings.home)
        try:
            enrollment.forget_local_token(sessions, settings.home)
        except Exception:  # the store went away: the next start replaces the token anyway
            log.warning("could not revoke the local enrollment token", exc_info=True)
        lease.release()
