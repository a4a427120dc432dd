"""`edgebench agent ...`: what runs on a device. Needs only the light install."""

from __future__ import annotations

import logging
import os
import re
import socket
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(help="Run the benchmark agent on this device.", no_args_is_help=True)
console = Console()


def default_name() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].strip("-.")
    return name or "device"


LOCAL_TOKEN_WAIT_S = 60.0
# How long `agent start` with no broker URL waits for a local server to record its broker.
BROKER_WAIT_VARIABLE, BROKER_WAIT_S = "EDGEBENCH_BROKER_WAIT_S", 60.0


def _wait_for_embedded_broker(settings) -> None:  # noqa: ANN001
    """No broker URL and no record yet: an `edgebench server` on this machine may be
    starting (a user starts both at once), so wait a while for its record."""
    import time

    from agents.contract import EMBEDDED_BROKER_FILE, read_embedded_broker_url

    if settings.broker_url or read_embedded_broker_url(settings.home):
        return
    given = os.environ.get(BROKER_WAIT_VARIABLE, str(BROKER_WAIT_S))
    try:
        wait_s = float(given)
    except ValueError:
        raise typer.BadParameter(
            f"{BROKER_WAIT_VARIABLE}={given!r} is not a number of seconds"
        ) from None
    console.print(
        f"no EDGEBENCH_BROKER_URL: waiting up to {wait_s:.0f} s for `edgebench server` "
        f"on this machine to record its broker in {settings.home / EMBEDDED_BROKER_FILE}"
    )
    deadline = time.monotonic() + wait_s
    while not read_embedded_broker_url(settings.home) and time.monotonic() < deadline:
        time.sleep(0.2)


def _local_token(settings, work_dir) -> Optional[str]:  # noqa: ANN001
    """The token a controller on this machine records for local agents, when this agent
    needs one (no key, no EDGEBENCH_ENROLLMENT_TOKEN): waits a while for a starting one."""
    import time

    from agents.credentials import key_path

    if settings.enrollment_token or key_path(work_dir).exists():
        return None
    token = settings.local_enrollment_token()
    if not token:
        console.print(
            "no device key and no EDGEBENCH_ENROLLMENT_TOKEN: waiting up to "
            f"{LOCAL_TOKEN_WAIT_S:.0f} s for a local controller's enrollment token in {settings.home}"
        )
    deadline = time.monotonic() + LOCAL_TOKEN_WAIT_S
    while not token and time.monotonic() < deadline:
        time.sleep(0.5)
        token = settings.local_enrollment_token()
    return token


def _check_tags(tags: List[str]) -> None:
    """Tags as a registration will validate them, checked before anything waits."""
    from pydantic import ValidationError

    from agents.contract import Registration

    try:
        Registration(device="check", boot_id="check", agent_version="check", tags=tags, sent_at=0)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise typer.BadParameter(f"{where}: {problem['msg']}", param_hint="--tags") from None


@app.command("start")
def start(
    name: Optional[str] = typer.Option(None, help="Device name (default: host name)."),
    tags: str = typer.Option("", help="Comma-separated tags, e.g. lab,usb3."),
    broker_url: Optional[str] = typer.Option(
        None, envvar="EDGEBENCH_BROKER_URL", help="redis:// or rediss:// URL of the broker."
    ),
    loglevel: str = typer.Option("INFO", help="Log level."),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Use a broker URL with no password on a host beyond loopback (EDGEBENCH_INSECURE=1).",
    ),
) -> None:
    """Detect this device, register it, and run the trials sent to it."""
    from agents.contract import validate_device_name
    from agents.hardware import host
    from agents.runtimes import inventory
    from agents.settings import AgentSettings
    from agents.worker import Agent

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    device = name or default_name()
    try:
        validate_device_name(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--name") from None
    settings = AgentSettings()
    if broker_url:
        settings.broker_url = broker_url
    from agents.contract import broker_rules

    _wait_for_embedded_broker(settings)
    try:
        url = settings.resolved_broker_url()
        broker_rules.check_authenticated(url, insecure or settings.insecure)
        broker_rules.check_tls(url, settings.broker_ca)
    except RuntimeError as exc:  # BrokerRefused too
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    facts = host.probe()
    facts["runtimes"] = inventory()
    tag_list = [t.strip() for t in tags.split(",") if t.strip()]
    console.print(
        f"agent [bold]{device}[/bold]: {facts.get('cpu_model')} ({facts.get('arch')}, "
        f"{facts.get('logical_cores')} cores, {facts.get('memory_mb')} MB), runtimes: "
        + (", ".join(f"{r['name']} {r['version']}" for r in facts["runtimes"]) or "none")
    )
    from pydantic import ValidationError

    _check_tags(tag_list)  # before any wait for enrollment: bad input fails at once
    work_dir = settings.trial_dir() / device
    from agents.contract.signing import TokenError
    from agents.credentials import CredentialsError

    try:
        agent = Agent(
            device,
            url,
            work_dir,
            tags=tag_list,
            facts=facts,
            heartbeat_s=settings.heartbeat_s,
            enrollment_token=settings.enrollment_token,
            local_token=_local_token(settings, work_dir),
            broker_ca=settings.broker_ca,
        )
    except (CredentialsError, TokenError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        hint = "--tags" if where.startswith("tags") else where
        raise typer.BadParameter(f"{where}: {problem['msg']}", param_hint=hint) from None
    agent.start(loglevel=loglevel.upper())
