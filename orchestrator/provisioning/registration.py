"""Watching the store for a freshly started agent: its registration (a new agent process,
so a new boot id), then one heartbeat after it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.provisioning import ProvisionError
from orchestrator.store.models import Device
from orchestrator.store.repository import as_utc

POLL_S = 0.3


@dataclass
class Registered:
    boot_id: str
    device_class: str
    agent_version: Optional[str]
    tags: list[str]
    facts: dict[str, Any]


def current_boot_id(sessions: sessionmaker[Session], name: str) -> Optional[str]:
    """The boot id the store knows for `name` now; refuses a retired name."""
    with sessions() as session:
        device = session.scalar(select(Device).where(Device.name == name))
    if device is not None and device.retired:
        raise ProvisionError(
            f"device {name} is retired in the store and would be refused: choose another --name"
        )
    return device.boot_id if device is not None else None


def controller_running(broker_url: str) -> bool:
    """Whether a controller holds this broker's lease: without one nothing registers."""
    import redis

    from orchestrator.controller_lease import LEASE_KEY

    try:
        return bool(redis.Redis.from_url(broker_url, socket_timeout=5).exists(LEASE_KEY))
    except redis.RedisError:
        return False


def wait_for_agent(
    sessions: sessionmaker[Session],
    name: str,
    previous_boot_id: Optional[str],
    timeout_s: float,
) -> Optional[Registered]:
    """The agent's registration once a heartbeat followed it; None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    registered_seen: Optional[datetime] = None
    while time.monotonic() < deadline:
        with sessions() as session:
            device = session.scalar(select(Device).where(Device.name == name))
            if device is not None and device.boot_id and device.boot_id != previous_boot_id:
                seen = as_utc(device.last_heartbeat_at)
                if registered_seen is None:
                    registered_seen = seen
                elif seen is not None and seen > registered_seen:
                    return Registered(
                        boot_id=device.boot_id,
                        device_class=device.device_class,
                        agent_version=device.agent_version,
                        tags=list(device.tags or []),
                        facts=dict(device.facts or {}),
                    )
        time.sleep(POLL_S)
    return None


def describe(registered: Registered) -> str:
    """One line of what the agent detected."""
    facts = registered.facts
    parts = [registered.device_class]
    for key, unit in (
        ("arch", ""),
        ("cpu_model", ""),
        ("logical_cores", " cores"),
        ("memory_mb", " MB"),
    ):
        if facts.get(key):
            parts.append(f"{facts[key]}{unit}")
    if facts.get("python"):
        parts.append(f"Python {facts['python']}")
    runtimes = [
        f"{r.get('name')} {r.get('version') or ''}".strip()
        + (f" ({', '.join(r['devices'])})" if r.get("devices") else "")
        for r in facts.get("runtimes") or []
    ]
    text = ", ".join(parts)
    return text + "; runtimes: " + (", ".join(runtimes) if runtimes else "none")
