"""Turns messages from the control queue into store changes. Idempotent; never crashes.

`handle` applies one message in its own transaction; `handle_batch` applies the messages
waiting on the queue together, in one transaction with a few statements for all of them
(the controller's worker takes them in batches), and falls back to one at a time when any
of them is refused, so each message still gets its own outcome.

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
from orchestrator.store.repository import Outcome, Rejected, StoreError

log = logging.getLogger("edgebench.ingest")


CONFLICTS = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure


class TransientStoreError(RuntimeError):
    """The store could not be reached, or the transaction lost a lock conflict (`conflict`:
    a deadlock or serialization failure, worth trying again at once); the message should be
    delivered again."""

    def __init__(self, error: OperationalError) -> None:
        super().__init__(str(error).splitlines()[0])
        self.conflict = getattr(error.orig, "sqlstate", None) in CONFLICTS


def handle(sessions: sessionmaker[Session], raw: Any) -> Outcome:
    """Apply one message. Returns what happened (repository.Outcome)."""
    try:
        message = parse(raw)
    except ContractError as exc:
        log.warning("rejected message: %s", exc)
        return Outcome.REJECTED
    wire = raw if isinstance(raw, dict) else json.loads(raw)
    try:
        with sessions.begin() as session:
            outcome = _apply(session, message, authenticate(session, wire, message))
    except Rejected as exc:
        _count(sessions, message, wire, exc)
        return Outcome.REJECTED
    except StoreError as exc:
        log.warning("refused %s: %s", type(message).__name__, exc)
        return Outcome.REFUSED
    except IntegrityError:
        # Two deliveries of one result raced; the first one won.
        log.info("duplicate %s ignored", type(message).__name__)
        return Outcome.DUPLICATE
    except OperationalError as exc:
        raise TransientStoreError(exc) from exc
    except SQLAlchemyError as exc:  # the message does not fit the store; nothing was written
        log.error("could not store %s: %s", type(message).__name__, str(exc).splitlines()[0])
        return Outcome.ERROR
    if isinstance(message, (TrialResult, Registration)):
        log.info("%s from %s: %s", type(message).__name__, message.device, outcome)
    return outcome


def handle_batch(sessions: sessionmaker[Session], raws: list[Any]) -> list[Outcome]:
    """Apply several messages in order; returns what happened to each (repository.Outcome).

    Registrations (which may enroll a device, changing whose key signs what follows) are
    applied on their own, in their place; the messages between them in one transaction.
    """
    outcomes: list[Outcome] = [Outcome.ERROR] * len(raws)
    run: list[tuple[int, Any, Any, dict]] = []
    for index, raw in enumerate(raws):
        try:
            message = parse(raw)
        except ContractError as exc:
            log.warning("rejected message: %s", exc)
            outcomes[index] = Outcome.REJECTED
            continue
        if isinstance(message, Registration):
            _apply_run(sessions, run, outcomes)
            run = []
            outcomes[index] = handle(sessions, raw)
        else:
            run.append((index, raw, message, raw if isinstance(raw, dict) else json.loads(raw)))
    _apply_run(sessions, run, outcomes)
    return outcomes


def _apply_run(sessions: sessionmaker[Session], run: list, outcomes: list[Outcome]) -> None:
    """Heartbeats, starts and results in one transaction; one by one if any is refused."""
    if len(run) <= 1:
        for index, raw, _, _ in run:
            outcomes[index] = handle(sessions, raw)
        return
    messages = [message for _, _, message, _ in run]
    try:
        with sessions.begin() as session:
            credentials = repository.active_credentials(session, {m.device for m in messages})
            locked = repository.lock_trials(
                session,
                {m.trial_id for m in messages if isinstance(m, (TrialStarted, TrialResult))},
            )
            beating = {m.device for m in messages if isinstance(m, Heartbeat)}
            devices = repository.devices_named(session, beating) if beating else {}
            for index, _, message, wire in run:
                signature = authenticate(session, wire, message, credentials)
                outcomes[index] = _apply(session, message, signature, locked, devices)
            for campaign_id in {
                locked[m.trial_id].campaign_id
                for m in messages
                if isinstance(m, TrialResult) and m.trial_id in locked
            }:
                repository.settle_campaign(session, campaign_id)
    except OperationalError as exc:
        raise TransientStoreError(exc) from exc
    except (StoreError, SQLAlchemyError):
        # Refused, a duplicate insert, or a row that does not fit: nothing of the batch was
        # written. Each message again on its own, to store the rest and give each its word.
        for index, raw, _, _ in run:
            outcomes[index] = handle(sessions, raw)
        return
    for index, _, message, _ in run:
        if isinstance(message, TrialResult):
            log.info("TrialResult from %s: %s", message.device, outcomes[index])


def _count(sessions: sessionmaker[Session], message: Any, wire: dict, exc: Rejected) -> None:
    """Log a refused message and count it, in a transaction of its own."""
    log.warning("rejected %s (%s): %s", wire.get("kind"), exc.reason, exc)
    try:
        with sessions.begin() as session:
            repository.record_rejection(
                session, getattr(message, "device", None), wire.get("kind"), exc.reason, str(exc)
            )
    except OperationalError as error:
        raise TransientStoreError(error) from error


def _apply(
    session: Session,
    message: Any,
    signature: str,
    locked: dict | None = None,
    devices: dict | None = None,
) -> Outcome:
    """`locked`, `devices`: the trials and devices a batch loaded beforehand."""
    if isinstance(message, Registration):
        repository.register_device(session, message)
        return Outcome.REGISTERED
    if isinstance(message, Heartbeat):
        repository.record_heartbeat(session, message, devices)
        return Outcome.HEARTBEAT
    if isinstance(message, TrialStarted):
        return repository.record_started(session, message, locked)
    if isinstance(message, TrialResult):
        settle = locked is None  # a batch settles each of its campaigns once, at its end
        return repository.record_result(session, message, signature, locked, settle)
    raise StoreError(f"{type(message).__name__} is not a control message")
