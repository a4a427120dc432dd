"""`edgebench server`: the controller. Consumes the control queue and runs the scheduler."""

from __future__ import annotations

import logging
import os
import signal
import threading

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from agents.contract import INGEST_TASK
from orchestrator import enrollment, ingest, scheduler
from orchestrator.artifacts import http_server
from orchestrator.controller_lease import ControllerLease
from orchestrator.settings import Settings
from orchestrator.store import migrate
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


def register_ingest(app: Celery, sessions: sessionmaker[Session], wake: threading.Event) -> None:
    @app.task(name=INGEST_TASK, bind=True, max_retries=None)
    def ingest_message(self, raw):  # noqa: ANN001
        try:
            with STORE_LOCK:
                outcome = ingest.handle(sessions, raw)
        except ingest.TransientStoreError as exc:
            log.warning("store unavailable (%s); message will be retried", exc)
            raise self.retry(countdown=2) from exc
        except Exception:  # a bug must not take the controller down; log it loudly
            log.exception("unexpected error while ingesting a message; dropped")
            return "error"
        if outcome.startswith(("registered", "stored", "failed")):
            wake.set()
        return outcome


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

    def lost() -> None:
        log.error("another controller took this broker's lease; stopping")
        stop.set()
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown

    keeper = threading.Thread(target=lease.keep, args=(stop, lost), name="lease", daemon=True)
    keeper.start()
    try:
        app.worker_main(
            argv=[
                "worker",
                "--pool=solo",
                "--queues=edgebench.control",
                "--hostname=edgebench-controller@%h",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                f"--loglevel={loglevel}",
            ]
        )
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
