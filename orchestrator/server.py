"""`edgebench server`: the controller. Consumes the control queue and runs the scheduler."""

from __future__ import annotations

import logging
import threading

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import enrollment, ingest_workers, scheduler
from orchestrator import wake as wake_channel
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
            with ingest_workers.STORE_LOCK:
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
    ingest_workers.stop_on_signals(stop)
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

    keeper = threading.Thread(target=lease.keep, args=(stop, lost), name="lease", daemon=True)
    keeper.start()
    try:
        processes = ingest_workers.processes_for(url, settings.ingest_processes)
        ingest_workers.serve(sessions, broker_url, settings.broker_ca, processes, wake, stop)
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
