"""The Celery side of the agent: consume this device's queue, one trial at a time.

Each trial runs in a fresh ``python -m agents.runner`` process. Results go to the
control queue through a small on-disk outbox, so a result measured just before the
agent was killed is still delivered when it comes back. Every message is signed with the
device key (agents.credentials); a result is signed once, when it enters the outbox, so a
redelivery is byte-for-byte the message the controller may already have.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual as kombu_virtual

from agents import __version__, credentials
from agents.contract import (
    CONTROL_QUEUE,
    INGEST_TASK,
    MAX_MESSAGE_BYTES,
    RUN_TRIAL_TASK,
    ContractError,
    Heartbeat,
    Registration,
    TrialResult,
    TrialSpec,
    TrialStarted,
    agent_queue,
    broker_ssl_options,
    envelope,
    parse,
)
from agents.contract.signing import sign, verify

log = logging.getLogger("edgebench.agent")

SEND_RETRY = {"max_retries": 5, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 5}


class _AckQoS(kombu_redis.QoS):
    """kombu's Redis QoS, except that an ack always frees its prefetch slot.

    Stock kombu removes the delivery from Redis' unacked set first and, when that fails on
    a dropped connection, never forgets the delivery: with prefetch 1 the worker then takes
    no other message for ever (Celery logs "Couldn't ack" and goes on without consuming;
    the agent stays online, idle, and every trial sent to it times out). Seen on a lossy
    link (tests/faults/test_link_faults.py). The error still reaches Celery, which logs it;
    the message, left in the unacked set, comes back after the visibility timeout and is
    dropped then (its trial ran, or was sent to an earlier run of the agent)."""

    def ack(self, delivery_tag: Any) -> None:
        try:
            self._remove_from_indices(delivery_tag).execute()
        finally:
            kombu_virtual.QoS.ack(self, delivery_tag)


class _AgentChannel(kombu_redis.Channel):
    QoS = _AckQoS


class AgentRedisTransport(kombu_redis.Transport):
    """The Redis transport for agents (redis:// and rediss://): see _AckQoS."""

    Channel = _AgentChannel


def celery_app(broker_url: str, name: str, broker_ca: Optional[Path] = None) -> Celery:
    app = Celery(f"edgebench-agent-{name}", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_acks_late=False,  # the orchestrator re-runs lost trials; see orchestrator.leases
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # No remote control (celery inspect/control; nothing here uses it): its pidbox is a
        # third broker connection and a dozen round trips more at each consumer start, and
        # when that connection drops the whole consumer restarts. On a 300 ms link it made
        # every reconnect ~8 s longer (tests/faults/test_link_faults.py).
        worker_enable_remote_control=False,
        task_default_queue=agent_queue(name),
        broker_use_ssl=broker_ssl_options(broker_url, broker_ca),
    )
    if broker_url.split("://", 1)[0] in ("redis", "rediss"):
        app.conf.broker_transport = f"{__name__}:AgentRedisTransport"
    return app


class Agent:
    def __init__(
        self,
        name: str,
        broker_url: str,
        work_dir: Path,
        tags: Optional[List[str]] = None,
        facts: Optional[Dict[str, Any]] = None,
        heartbeat_s: float = 3.0,
        enrollment_token: Optional[str] = None,
        local_token: Optional[str] = None,
        broker_ca: Optional[Path] = None,
    ) -> None:
        self.name = name
        self.tags = tags or []
        self.facts = facts or {}
        self.heartbeat_s = heartbeat_s
        self.boot_id = uuid.uuid4().hex
        self.work_dir = Path(work_dir)
        self.outbox = self.work_dir / "outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.credentials = credentials.resolve(self.work_dir, name, enrollment_token, local_token)
        self.app = celery_app(broker_url, name, broker_ca)
        self.current: Optional[TrialSpec] = None
        self._done: Set[Tuple[str, int]] = set()
        self._stop = threading.Event()
        self._outbox_lock = threading.Lock()
        self.app.task(name=RUN_TRIAL_TASK, bind=False)(self.handle_trial)
        # Validated now, so bad tags or facts fail at start with the reason, not in a retry loop.
        self.registration = Registration(
            device=name,
            boot_id=self.boot_id,
            agent_version=__version__,
            tags=self.tags,
            facts=self.facts,
            sent_at=0.0,
            enrollment_token=self.credentials.token_id,
        )

    # -- messages -------------------------------------------------------------------
    def signed(self, message: Any) -> Dict[str, Any]:
        return sign(envelope(message), self.credentials.key)

    def send(self, message: Any) -> None:
        self.send_wire(self.signed(message))

    def send_wire(self, wire: Dict[str, Any]) -> None:
        self.app.send_task(
            INGEST_TASK,
            args=[wire],
            queue=CONTROL_QUEUE,
            retry=True,
            retry_policy=SEND_RETRY,
        )

    def register(self) -> None:
        self.send(self.registration.model_copy(update={"sent_at": time.time()}))

    def heartbeat(self) -> None:
        current = self.current
        self.send(
            Heartbeat(
                device=self.name,
                boot_id=self.boot_id,
                sent_at=time.time(),
                current_trial=current.trial_id if current else None,
                current_attempt=current.attempt if current else None,
            )
        )

    def flush_outbox(self) -> None:
        """Send every stored result as it was signed; each file is removed once it was sent.
        One signed with an earlier key (before a re-enrollment) is signed again now."""
        with self._outbox_lock:
            for path in sorted(self.outbox.glob("*.json")):
                try:
                    wire = json.loads(path.read_text())
                    message = parse(wire)
                except (OSError, ValueError, ContractError) as exc:
                    log.error("dropping unreadable outbox file %s: %s", path, exc)
                    path.unlink(missing_ok=True)
                    continue
                self.send_wire(wire if verify(wire, self.credentials.key) else self.signed(message))
                path.unlink()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.flush_outbox()
                self.heartbeat()
            except Exception as exc:  # broker down: keep trying, never kill the agent
                log.warning("heartbeat failed: %s", exc)

    # -- trials ---------------------------------------------------------------------
    def handle_trial(self, raw: Any) -> None:
        try:
            spec = parse(raw)
            if not isinstance(spec, TrialSpec):
                raise ContractError(f"expected a trial_spec, got {type(spec).__name__}")
        except ContractError as exc:
            log.error("rejected trial message: %s", exc)
            return
        if spec.device != self.name:
            log.error(
                "trial %s is for device %s, not %s; ignored", spec.trial_id, spec.device, self.name
            )
            return
        if spec.boot_id != self.boot_id:
            log.warning(
                "trial %s attempt %d was sent to an earlier run of this agent; dropped "
                "(the controller sends it again)",
                spec.trial_id,
                spec.attempt,
            )
            return
        if (spec.trial_id, spec.attempt) in self._done:
            log.warning("trial %s attempt %d already ran; dropped", spec.trial_id, spec.attempt)
            return
        self._done.add((spec.trial_id, spec.attempt))
        self.current = spec
        try:
            self.send_started(spec)
            outcome = self.run_in_subprocess(spec)
            result = TrialResult(
                trial_id=spec.trial_id,
                attempt=spec.attempt,
                device=self.name,
                boot_id=self.boot_id,
                sent_at=time.time(),
                **outcome,
            )
            wire = json.dumps(self.signed(result))
            if len(wire) > MAX_MESSAGE_BYTES:  # the controller would refuse it: say why instead
                result = result.model_copy(
                    update={
                        "status": "failed",
                        "summary": None,
                        "samples_ns": [],
                        "error": f"the result is {len(wire)} bytes, over the {MAX_MESSAGE_BYTES} "
                        "byte message limit; lower policy.max_queries",
                    }
                )
                wire = json.dumps(self.signed(result))
            path = self.outbox / f"{spec.trial_id}-{spec.attempt}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(wire)
            os.replace(tmp, path)
            try:
                self.flush_outbox()
            except Exception as exc:  # the link is down: the heartbeat loop sends it later
                log.warning(
                    "result of trial %s attempt %d kept in the outbox, not sent yet: %s",
                    spec.trial_id,
                    spec.attempt,
                    exc,
                )
        finally:
            self.current = None

    def send_started(self, spec: TrialSpec) -> None:
        """Tell the controller the trial runs. Best effort: when the link fails the message,
        the trial runs anyway (heartbeats name it as the current trial, and its result,
        kept in the outbox until it is sent, settles it), rather than losing the attempt."""
        try:
            self.send(
                TrialStarted(
                    trial_id=spec.trial_id,
                    attempt=spec.attempt,
                    device=self.name,
                    boot_id=self.boot_id,
                    sent_at=time.time(),
                )
            )
        except Exception as exc:
            log.warning(
                "could not report the start of trial %s attempt %d (%s); running it anyway",
                spec.trial_id,
                spec.attempt,
                exc,
            )

    def run_in_subprocess(self, spec: TrialSpec) -> Dict[str, Any]:
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="trial-") as tmp:
            spec_path = Path(tmp) / "spec.json"
            out_path = Path(tmp) / "result.json"
            spec_path.write_text(spec.model_dump_json())
            command = [sys.executable, "-m", "agents.runner", str(spec_path), str(out_path)]
            try:
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=spec.timeout_s,
                    env={
                        **os.environ,
                        "EDGEBENCH_AGENT_PID": str(os.getpid()),
                        "EDGEBENCH_SPAWN_MONO_NS": str(time.monotonic_ns()),
                    },
                )
            except subprocess.TimeoutExpired:
                return {
                    "status": "failed",
                    "error": f"trial timed out after {spec.timeout_s:.0f} s",
                }
            if proc.returncode != 0 or not out_path.exists():
                tail = (proc.stderr or "").strip().splitlines()[-5:]
                return {
                    "status": "failed",
                    "error": f"trial process exited with code {proc.returncode}: "
                    + (" | ".join(tail) or "no output"),
                }
            return json.loads(out_path.read_text())

    # -- lifecycle ------------------------------------------------------------------
    def start(self, loglevel: str = "INFO") -> None:
        """Flush old results, register, heartbeat, and consume this device's queue."""
        while True:
            try:
                self.flush_outbox()
                self.register()
                self.heartbeat()
                break
            except (KombuOperationalError, OSError) as exc:  # broker not reachable yet: wait
                log.warning("cannot reach the broker (%s); retrying in 5 s", exc)
                time.sleep(5)
            except AttributeError as exc:
                # kombu's Redis channel, when a connection drops under a publish, can be
                # left without its connection and fail the retry this way (seen on a lossy
                # link, tests/faults/test_link_faults.py): a dropped link, not a bug here.
                log.warning("the broker connection dropped (%r); retrying in 5 s", exc)
                time.sleep(5)
        thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        thread.start()
        try:
            self.app.worker_main(
                argv=[
                    "worker",
                    "--pool=solo",
                    "--concurrency=1",
                    "--prefetch-multiplier=1",
                    f"--queues={agent_queue(self.name)}",
                    f"--hostname={self.name}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "--without-heartbeat",
                    f"--loglevel={loglevel}",
                ]
            )
        finally:
            self._stop.set()
