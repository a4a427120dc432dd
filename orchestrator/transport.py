"""The controller's Celery app: consumes the control queue, sends trials to agent queues."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from celery import Celery

from agents.contract import (
    CONTROL_QUEUE,
    RUN_TRIAL_TASK,
    TrialSpec,
    agent_queue,
    broker_ssl_options,
    envelope,
)


def control_app(broker_url: str, broker_ca: Optional[Path] = None) -> Celery:
    app = Celery("edgebench-controller", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=CONTROL_QUEUE,
        # Ingest acknowledges after the result is committed: a controller killed mid-write
        # gets the message again, and ingest is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # (worker_prefetch_multiplier: set where ingest is registered, for its batches)
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_use_ssl=broker_ssl_options(broker_url, broker_ca),
        # Ingest takes milliseconds: a message left unacknowledged by a controller that was
        # killed is handed out again after this, not after Redis' default hour.
        broker_transport_options={"visibility_timeout": 120},
    )
    return app


def send_trial(app: Celery, spec: TrialSpec) -> None:
    app.send_task(
        RUN_TRIAL_TASK,
        args=[envelope(spec)],
        queue=agent_queue(spec.device),
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )
