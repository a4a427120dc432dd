"""Turns messages from the control queue into store changes. Idempotent; never crashes.

A malformed or unknown-version message is logged with its reason and dropped. Every
agent message must be signed by its device (orchestrator.authentication); one refused for
a security reason is logged, dropped and counted in rejected_messages. A database error is
raised as TransientStoreError so the task is retried later.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agents.contract import (
    ContractError,
    Heartbeat,
    Registration,
    TrialResult,
    TrialStarted,
    parse,
)
from orchestrator.authentication import authenticate
from orchestrator.store import repository
from orchestrator.store.repository import Rejected, StoreError

log = logging.getLogger("edgebench.ingest")


class TransientStoreError(RuntimeError):
    """The store could not be reached; the message should be delivered again."""


def handle(sessions: sessionmaker[Session], raw: Any) -> str:
    """Apply one message. Returns a short word for what happened (for logs and tests)."""
    try:
        message = parse(raw)
    except ContractError as exc:
        log.warning("rejected message: %s", exc)
        return "rejected"
    wire = raw if isinstance(raw, dict) else json.loads(raw)
    try:
        with sessions.begin() as session:
            outcome = _apply(session, message, authenticate(session, wire, message))
    except Rejected as exc:
        _count(sessions, message, wire, exc)
        return "rejected"
    except StoreError as exc:
        log.warning("refused %s: %s", type(message).__name__, exc)
        return "refused"
    except IntegrityError:
        # Two deliveries of one result raced; the first one won.
        log.info("duplicate %s ignored", type(message).__name__)
        return "duplicate"
    except OperationalError as exc:
        raise TransientStoreError(str(exc).splitlines()[0]) from exc
    except SQLAlchemyError as exc:  # the message does not fit the store; nothing was written
        log.error("could not store %s: %s", type(message).__name__, str(exc).splitlines()[0])
        return "error"
    if isinstance(message, (TrialResult, Registration)):
        log.info("%s from %s: %s", type(message).__name__, message.device, outcome)
    return outcome


def _count(sessions: sessionmaker[Session], message: Any, wire: dict, exc: Rejected) -> None:
    """Log a refused message and count it, in a transaction of its own."""
    log.warning("rejected %s (%s): %s", wire.get("kind"), exc.reason, exc)
    try:
        with sessions.begin() as session:
            repository.record_rejection(
                session, getattr(message, "device", None), wire.get("kind"), exc.reason, str(exc)
            )
    except OperationalError as error:
        raise TransientStoreError(str(error).splitlines()[0]) from error


def _apply(session: Session, message: Any, signature: str) -> str:
    if isinstance(message, Registration):
        device = repository.register_device(session, message)
        return f"registered {device.name}"
    if isinstance(message, Heartbeat):
        repository.record_heartbeat(session, message)
        return "heartbeat"
    if isinstance(message, TrialStarted):
        return repository.record_started(session, message)
    if isinstance(message, TrialResult):
        return repository.record_result(session, message, signature)
    raise StoreError(f"{type(message).__name__} is not a control message")
