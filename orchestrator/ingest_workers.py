"""The controller's ingest: the control queue drained into the store by one loop in the
controller's process and, on PostgreSQL, more in child processes.

Each loop takes every message waiting (up to INGEST_BATCH, one round trip, control_queue),
applies them in one transaction (ingest.handle_batch) and acknowledges them. On PostgreSQL
row locks keep concurrent loops apart (trials are locked in id order), so the ingest rate
grows with the processes: one ingest takes ~1 ms of CPU a result, and a fleet of fast models
sends more than one core's worth (bench/ingest_rate.py). SQLite has no row locks: one loop,
taking turns with the scheduler (STORE_LOCK).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import signal
import threading
from pathlib import Path
from typing import Optional

import redis
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import ingest
from orchestrator import wake as wake_channel
from orchestrator.control_queue import ControlQueue, task_argument
from orchestrator.store.repository import WAKES_SCHEDULER, Outcome
from orchestrator.store.session import session_factory

log = logging.getLogger("edgebench.ingest")

# The first ingest loop and the scheduler run in two threads of the controller's process; on
# SQLite, which has no row locks, one could overwrite what the other just wrote. They take
# turns. (On PostgreSQL the other loops, in their own processes, rely on row locks alone.)
STORE_LOCK = threading.Lock()


# Each batch is every message waiting on the control queue, up to INGEST_BATCH, taken in one
# round trip once the batch before is committed, and ingested in one transaction: under
# load the batches grow by themselves, and a lone message waits for nothing.
INGEST_BATCH = 200
STORE_RETRY_S = 2.0
BROKER_RETRY_S = 1.0


def ingest_loop(
    queue: ControlQueue,
    sessions: sessionmaker[Session],
    wake: threading.Event,
    stop: threading.Event,
) -> None:
    """Take, ingest, acknowledge, until `stop`; across broker restarts and store outages."""
    while not stop.is_set():
        try:
            taken = queue.take(INGEST_BATCH, wait_s=1.0)
        except redis.RedisError as exc:
            log.warning("control queue unreachable (%s); trying again", exc)
            stop.wait(BROKER_RETRY_S)
            continue
        if not taken:
            continue
        outcomes = apply_waiting(sessions, [task_argument(m) for m in taken], stop)
        if outcomes is None:  # stopping with the store unreachable: back on the queue
            put_back(queue)
            return
        acknowledge(queue, stop)
        if WAKES_SCHEDULER.intersection(outcomes):
            wake.set()


def acknowledge(queue: ControlQueue, stop: threading.Event) -> None:
    """Committed, so acknowledged; if the broker is away, its messages will come again at the
    next start (ingest counts them as duplicates), unless it comes back before we stop."""
    while True:
        try:
            return queue.acknowledge()
        except redis.RedisError as exc:
            if stop.is_set():
                return
            log.warning("cannot acknowledge a committed batch (%s); trying again", exc)
            stop.wait(BROKER_RETRY_S)


def put_back(queue: ControlQueue) -> None:
    try:
        log.warning("%d taken messages put back on the control queue", queue.put_back())
    except redis.RedisError:  # they wait on the broker: the next controller takes them first
        log.warning("taken messages left on the broker for the next start")


def apply_waiting(
    sessions: sessionmaker[Session], raws: list, stop: threading.Event
) -> list[Outcome] | None:
    """Ingest a batch, waiting for the store while it is unreachable.

    The messages are acknowledged once this returns, so it does not return before they are
    stored, unless the controller is asked to stop: then None.
    """
    singly = False  # after an unexpected error: each message on its own
    while True:
        try:
            if singly:
                return one_by_one(sessions, raws)
            with STORE_LOCK:
                return ingest.handle_batch(sessions, raws)
        except ingest.TransientStoreError as exc:  # of the batch, or of one of its messages
            if exc.conflict:  # a deadlock with another loop, or the scheduler: at once
                log.info("batch of %d messages in a lock conflict; again", len(raws))
                continue
            if stop.is_set():
                log.warning("store unavailable (%s); %d messages not ingested", exc, len(raws))
                return None
            log.warning("store unavailable (%s); trying again in %.0f s", exc, STORE_RETRY_S)
            stop.wait(STORE_RETRY_S)
        except Exception:  # a bug must not take the controller down, nor cost the batch
            log.exception("unexpected error in a batch of %d messages; one by one", len(raws))
            singly = True


def one_by_one(sessions: sessionmaker[Session], raws: list) -> list[Outcome]:
    """Each message in its own transaction; one that fails unexpectedly is dropped (logged),
    but a store outage or lock conflict is raised: the whole batch is tried again (the
    messages stored already come back as duplicates)."""
    outcomes = []
    for raw in raws:
        try:
            with STORE_LOCK:
                outcomes.append(ingest.handle(sessions, raw))
        except ingest.TransientStoreError:
            raise
        except Exception:  # logged loudly; the message is dropped
            log.exception("unexpected error while ingesting a message; dropped")
            outcomes.append(Outcome.ERROR)
    return outcomes


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM or SIGINT: finish the batch in hand, then stop; a second one: stop now (what
    was taken goes back on the queue at the next start)."""

    def handle(signum, frame) -> None:  # noqa: ANN001
        if stop.is_set():
            raise SystemExit(1)
        log.info("stopping after the batch in hand (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def processes_for(database_url: str, asked: Optional[int]) -> int:
    """How many ingest loops: as asked, else 2 on PostgreSQL with 2 cores or more; 1 on SQLite."""
    if database_url.startswith("sqlite"):
        if asked and asked > 1:
            log.warning("SQLite has no row locks: one ingest loop, not %d", asked)
        return 1
    return asked or min(2, os.cpu_count() or 1)


class BrokerWake:
    """What a child's loop sets when the scheduler has work: a word on the wake channel
    (the scheduler runs in the controller's process), on the loop's one connection."""

    def __init__(self, queue: ControlQueue) -> None:
        self.client = queue.client

    def set(self) -> None:
        try:
            self.client.publish(wake_channel.CHANNEL, "ingested")
        except redis.RedisError:  # the scheduler's periodic pass finds the work anyway
            pass


def child_loop(
    loop: str, broker_url: str, broker_ca: Optional[Path], database_url: str, loglevel: str
) -> None:
    """An ingest loop in a child process; it stops when asked or when its parent is gone."""
    logging.basicConfig(
        level=loglevel, format=f"%(asctime)s %(name)s[{loop}] %(levelname)s %(message)s"
    )
    stop, parent = threading.Event(), os.getppid()
    stop_on_signals(stop)
    # Ctrl-C reaches the whole process group: the controller's SIGTERM that follows is what
    # stops this loop, once (a second signal would abandon the batch in hand).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch_parent() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.warning("the controller is gone; stopping")
                stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    queue = ControlQueue(broker_url, broker_ca, loop)
    try:
        ingest_loop(queue, session_factory(database_url), BrokerWake(queue), stop)
    finally:
        queue.close()


class IngestChildren:
    """The loops beyond the first, in child processes, restarted when one dies."""

    def __init__(
        self, run: str, count: int, broker_url: str, broker_ca: Optional[Path], database_url: str
    ) -> None:
        self.run = run
        self.args = (broker_url, broker_ca, database_url, logging.getLogger().getEffectiveLevel())
        self.context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self.children = {slot: self._start(slot) for slot in range(1, count)}

    def _start(self, slot: int) -> multiprocessing.process.BaseProcess:
        child = self.context.Process(
            target=child_loop,
            args=(f"{self.run}.{slot}", *self.args),
            name=f"ingest-{slot}",
            daemon=True,
        )
        child.start()
        return child

    def supervise(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            for slot, child in list(self.children.items()):
                if not child.is_alive() and not stop.is_set():
                    log.error(
                        "ingest process %d exited (%s); starting it again", slot, child.exitcode
                    )
                    self.children[slot] = self._start(slot)

    def stop(self, wait_s: float = 15.0) -> None:
        """Each finishes the batch in hand; one that does not in `wait_s` is killed (what it
        took is taken again by its successor)."""
        for child in self.children.values():
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)
        for child in self.children.values():
            child.join(wait_s)
            if child.is_alive():
                child.kill()
                child.join()


def serve(
    sessions: sessionmaker[Session],
    broker_url: str,
    broker_ca: Optional[Path],
    processes: int,
    wake: threading.Event,
    stop: threading.Event,
) -> None:
    """The ingest loops until `stop`: the first in the calling thread, the rest as children."""
    run = secrets.token_hex(4)  # this controller run's taken lists are its own
    queue = ControlQueue(broker_url, broker_ca, f"{run}.0")
    try:
        put_back_all(queue, run, stop)
        url = sessions.kw["bind"].url.render_as_string(hide_password=False)
        children = IngestChildren(run, processes, broker_url, broker_ca, url)
        if children.children:
            threading.Thread(target=children.supervise, args=(stop,), daemon=True).start()
        log.info("ready: ingesting from the control queue with %d loop(s)", processes)
        try:
            ingest_loop(queue, sessions, wake, stop)
        finally:
            stop.set()
            children.stop()
    finally:
        queue.close()


def put_back_all(queue: ControlQueue, run: str, stop: threading.Event) -> None:
    """Before any loop starts: what the loops of a controller that died had taken goes back
    on the queue, however many loops it had."""
    while not stop.is_set():
        try:
            count = queue.put_back_all(but_run=run)
            if count:
                log.warning("%d messages a previous controller had taken are queued again", count)
            return
        except redis.RedisError as exc:
            log.warning("control queue unreachable (%s); trying again", exc)
            stop.wait(BROKER_RETRY_S)
