"""`edgebench devices list|show|retire|provision|deprovision|upgrade|logs|token`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from orchestrator.cli.store_access import console, fail, open_sessions
from orchestrator.settings import Settings

app = typer.Typer(help="The device inventory.", no_args_is_help=True)


@app.command("list")
def list_devices(
    all_: bool = typer.Option(False, "--all", help="Include retired devices."),
) -> None:
    """Devices with online/offline from their heartbeats."""
    from orchestrator.store import queries

    settings = Settings()
    with open_sessions(settings)() as session:
        rows = queries.devices_overview(session, settings.offline_after_s, include_retired=all_)
    if not rows:
        console.print(
            "no devices registered yet: start one with `edgebench agent start --name NAME`"
        )
        return
    table = Table(
        "name", "class", "status", "tags", "cpu", "cores", "memory MB", "runtimes", "trials"
    )
    for row in rows:
        colour = {"online": "green", "offline": "red"}.get(row["status"], "dim")
        table.add_row(
            row["name"],
            row["class"],
            f"[{colour}]{row['status']}[/{colour}]",
            row["tags"],
            row["cpu"] or "",
            str(row["cores"] or ""),
            str(row["memory_mb"] or ""),
            row["runtimes"],
            str(row["trials_done"]),
        )
    console.print(table)


@app.command("show")
def show(name: str) -> None:
    """Everything the agent detected on a device."""
    from orchestrator.store import queries

    settings = Settings()
    with open_sessions(settings)() as session:
        detail = queries.device_detail(session, name, settings.offline_after_s)
        if detail is not None:
            from orchestrator.store import repository

            credential = repository.active_credential(session, name)
            detail["credentials"] = (
                f"key from token {credential.token_id}, since {credential.created_at}"
                if credential
                else "none (revoked or never enrolled)"
            )
            detail["rejected_messages"] = repository.rejection_counts(session, name)
    if detail is None:
        fail(f"no device named {name}")
    console.print_json(json.dumps(detail, default=str))


@app.command("retire")
def retire(name: str) -> None:
    """Take a device out of the fleet: its key is revoked, its unfinished trials cancelled."""
    from orchestrator.store import repository

    with open_sessions().begin() as session:
        try:
            repository.retire_device(session, name)
        except repository.StoreError as exc:
            fail(str(exc))
    console.print(f"retired {name}")


# -- enrollment tokens (orchestrator/enrollment.py, docs/SECURITY.md) ------------------

token_app = typer.Typer(help="Enrollment tokens: how a new device gets its key.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    expires: str = typer.Option(
        "24h", help="How long the token may be used: e.g. 30m, 24h, 7d (0 not allowed)."
    ),
    name_pattern: Optional[str] = typer.Option(
        None, help="Only device names matching this pattern (fnmatch, e.g. 'pi4-*')."
    ),
) -> None:
    """Print a one-time token: an agent started with EDGEBENCH_ENROLLMENT_TOKEN=<it> enrolls."""
    from orchestrator import enrollment

    try:
        expires_in = enrollment.parse_duration(expires)
    except ValueError as exc:
        fail(str(exc))
    if name_pattern is not None and not name_pattern.strip():
        fail("--name-pattern is empty")
    with open_sessions().begin() as session:
        token, expires_at = enrollment.create_token(session, expires_in, name_pattern)
    # The token alone on stdout (for scripts); what it is for on stderr.
    print(token)
    typer.echo(
        f"one-time enrollment token, valid until {expires_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f" for names matching {name_pattern!r}" if name_pattern else "")
        + ": start the agent with EDGEBENCH_ENROLLMENT_TOKEN set to it",
        err=True,
    )


@token_app.command("list")
def token_list() -> None:
    """Enrollment tokens (ids only; the secrets are not kept) and whether they were used."""
    from orchestrator.store import repository
    from orchestrator.store.models import utcnow
    from orchestrator.store.repository import as_utc

    with open_sessions()() as session:
        tokens = repository.list_tokens(session)
        now = utcnow()
        table = Table("id", "created", "expires", "names", "state")
        for token in tokens:
            expires = as_utc(token.expires_at)
            if token.revoked_at:
                state = "revoked"
            elif token.local:
                state = "local (this controller's agents)"
            elif token.used_at:
                state = f"used by {token.used_by}"
            elif expires and expires <= now:
                state = "expired"
            else:
                state = "unused"
            table.add_row(
                token.id,
                f"{as_utc(token.created_at):%Y-%m-%d %H:%M}",
                f"{expires:%Y-%m-%d %H:%M}" if expires else "never",
                token.name_pattern or "any",
                state,
            )
    console.print(table)


# -- provisioning over SSH (orchestrator/provisioning) ---------------------------------


def _require_fabric() -> None:
    try:
        import fabric  # noqa: F401
    except ImportError:
        fail("provisioning needs Fabric: pip install 'edgebench[provision]' on the controller")


def _run_options(
    settings: Settings,
    known_hosts: Optional[Path] = None,
    accept_new_host_key: bool = False,
    broker_url: Optional[str] = None,
    index_url: Optional[str] = None,
    wait_s: float = 120.0,
    progress=None,  # noqa: ANN001
    installs: bool = False,
):  # noqa: ANN202
    """Settings for one provisioning command; `installs`: it writes agents' configuration."""
    from orchestrator.provisioning.installer import RunOptions
    from orchestrator.provisioning.wheelhouse import Wheelhouse

    artifact_base_url, agent_env = None, {}
    if installs and (settings.artifact_server or settings.artifact_base_url):
        from orchestrator.artifacts.http_server import controller_token

        artifact_base_url = settings.resolved_artifact_base_url()
        agent_env["EDGEBENCH_ARTIFACT_TOKEN"] = controller_token(
            settings.home, settings.artifact_token
        )
    sessions = open_sessions(settings)

    def enrollment_token(name: str) -> str:
        from orchestrator.enrollment import PROVISIONING_EXPIRY, token_for_device

        with sessions.begin() as session:
            return token_for_device(session, name, PROVISIONING_EXPIRY)

    return RunOptions(
        home=settings.home,
        sessions=sessions,
        enrollment_token=enrollment_token,
        wheelhouse=Wheelhouse(settings.resolved_wheelhouse_dir()),
        controller_broker_url=settings.resolved_broker_url(),
        agent_broker_url=broker_url or settings.agent_broker_url,
        index_url=index_url or settings.agent_index_url,
        known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key,
        wait_s=wait_s,
        agent_env=agent_env,
        artifact_base_url=artifact_base_url,
        progress=progress or (lambda name, step: None),
    )


def _outcome_line(outcome) -> str:  # noqa: ANN001
    from orchestrator.provisioning.registration import describe

    steps = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in outcome.steps.items())
    detected = f": {describe(outcome.registered)}" if outcome.registered else ""
    return (
        f"[green]ok[/green]   {outcome.name}  {outcome.target}  {outcome.seconds:.1f} s "
        f"({outcome.service}; {steps}){detected}"
    )


def _print_results(results) -> int:  # noqa: ANN001
    """One line per host as each finishes; the number that failed."""
    failed = 0
    for result in results:
        if result.outcome is not None:
            console.print(_outcome_line(result.outcome), soft_wrap=True)
        else:
            failed += 1
            console.print(
                f"[red]FAIL[/red] {result.name}  {result.target}: {result.error}", soft_wrap=True
            )
    return failed


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"--env {pair!r}: expected KEY=VALUE")
        env[key.strip()] = value
    return env


@app.command("provision")
def provision(
    target: Optional[str] = typer.Argument(None, help="The device: user@host[:port]."),
    inventory: Optional[Path] = typer.Option(
        None, "--inventory", help="A YAML file of devices, provisioned in parallel."
    ),
    name: Optional[str] = typer.Option(None, help="Device name (default: the host)."),
    tags: Optional[str] = typer.Option(None, help="Comma-separated tags, e.g. lab,usb3."),
    runtime: Optional[List[str]] = typer.Option(
        None,
        "--runtime",
        help="A runtime extra of the agent: onnxruntime (default), litert, openvino, tvm; "
        "repeat for several.",
    ),
    python: Optional[str] = typer.Option(
        None, help="The device's Python, 3.9 or newer (default: python3)."
    ),
    identity: Optional[str] = typer.Option(
        None, "--identity", "-i", help="SSH private key (default: ssh-agent and ~/.ssh keys)."
    ),
    known_hosts: Optional[Path] = typer.Option(
        None, help="known_hosts file (default: ~/.ssh/known_hosts)."
    ),
    accept_new_host_key: bool = typer.Option(
        False,
        "--accept-new-host-key",
        help="Trust and remember a host key seen for the first time.",
    ),
    remote_dir: Optional[str] = typer.Option(
        None, help="The agent's folder on the device (default: ~/.edgebench-agent/NAME)."
    ),
    env: Optional[List[str]] = typer.Option(
        None, "--env", help="EDGEBENCH_*=VALUE for the agent, e.g. EDGEBENCH_HEARTBEAT_S=1."
    ),
    service: Optional[str] = typer.Option(None, help="auto (default), systemd or supervised."),
    broker_url: Optional[str] = typer.Option(
        None, help="The broker URL as devices reach it (default: EDGEBENCH_AGENT_BROKER_URL)."
    ),
    index_url: Optional[str] = typer.Option(
        None, help="A package index the devices can reach, instead of uploading wheels."
    ),
    wait_s: float = typer.Option(120.0, help="How long to wait for each agent to register."),
    parallel: int = typer.Option(8, help="Devices provisioned at once with --inventory."),
) -> None:
    """Install an agent on a device over SSH, start it, and wait until it registers."""
    _require_fabric()
    from orchestrator.provisioning import installer
    from orchestrator.provisioning.fleet import run_parallel

    given = {
        "tags": tags,
        "runtimes": runtime or None,
        "python": python,
        "identity": identity,
        "remote_dir": remote_dir,
        "env": _parse_env(env) if env else None,
        "service": service,
    }
    requests = _host_requests(target, inventory, name, given)
    single = inventory is None
    status, progress = _single_device_status(single)
    options = _run_options(
        Settings(), known_hosts, accept_new_host_key, broker_url, index_url, wait_s, progress, True
    )
    if not single:
        console.print(f"provisioning {len(requests)} device(s), {parallel} at a time")
    results = run_parallel(
        requests,
        lambda request: installer.provision(request, options),
        lambda request: (request.device_name, str(request.target)),
        parallel,
    )
    if status is not None:
        with status:
            results = list(results)
    failed = _print_results(results)
    if failed:
        raise typer.Exit(1)


def _single_device_status(single: bool) -> tuple:
    """(a console status line, the progress callback that updates it) for one device; for
    an inventory (devices in parallel) neither shows anything."""
    status = console.status("connecting...") if single else None

    def progress(device: str, step: str) -> None:
        if status is not None:
            status.update(f"{device}: {step}...")

    return status, progress


def _host_requests(
    target: Optional[str], inventory: Optional[Path], name: Optional[str], given: dict
) -> list:
    """The devices to provision, from one target or an inventory file, the command line's
    options (those given) under each; an invalid one fails naming its field."""
    from pydantic import ValidationError

    from orchestrator.provisioning import ProvisionError
    from orchestrator.provisioning.inventory import field_errors, load_inventory
    from orchestrator.provisioning.request import HostRequest

    if (target is None) == (inventory is None):
        fail("give either a device (user@host) or --inventory FILE")
    given = {key: value for key, value in given.items() if value is not None}
    try:
        if inventory is not None:
            if name is not None:
                fail("--name names one device: give each host its name in the inventory")
            return load_inventory(inventory, base=given)
        return [HostRequest.model_validate({**given, "host": target, "name": name})]
    except ValidationError as exc:
        fail("; ".join(problem.lstrip(".") for problem in field_errors(exc, "")))
    except ProvisionError as exc:
        fail(str(exc))
    return []  # fail() exits


@app.command("deprovision")
def deprovision(
    name: str,
    retire_too: bool = typer.Option(
        False, "--retire", help="Also retire the device in the store (its results stay)."
    ),
) -> None:
    """Stop a provisioned agent and remove it from its device."""
    _require_fabric()
    from orchestrator.provisioning import ProvisionError, installer, records

    settings = Settings()
    try:
        record = records.load(settings.home, name)
        outcome = installer.deprovision(record, _run_options(settings))
    except ProvisionError as exc:
        fail(str(exc))
    console.print(f"removed the agent {name} from {outcome.target} ({outcome.seconds:.1f} s)")
    if retire_too:
        retire(name)
    else:
        console.print(f"it stays in the store: `edgebench devices retire {name}` takes it out")


@app.command("upgrade")
def upgrade(
    name: Optional[str] = typer.Argument(None, help="A provisioned device."),
    all_: bool = typer.Option(False, "--all", help="Every device provisioned from here."),
    wait_s: float = typer.Option(120.0, help="How long to wait for each agent to come back."),
    parallel: int = typer.Option(8, help="Devices upgraded at once."),
) -> None:
    """Install this controller's agent version on provisioned devices and restart them."""
    _require_fabric()
    from orchestrator.provisioning import ProvisionError, installer, records
    from orchestrator.provisioning.fleet import run_parallel

    if (name is None) == (not all_):
        fail("give a device name or --all")
    settings = Settings()
    try:
        chosen = records.load_all(settings.home) if all_ else [records.load(settings.home, name)]
    except ProvisionError as exc:
        fail(str(exc))
    if not chosen:
        fail(f"no devices were provisioned from this controller ({settings.home / 'provisioned'})")
    options = _run_options(settings, wait_s=wait_s)
    results = run_parallel(
        chosen,
        lambda record: installer.upgrade(record, options),
        lambda record: (record.name, str(record.target)),
        parallel,
    )
    if _print_results(results):
        raise typer.Exit(1)


@app.command("logs")
def logs(
    name: str,
    lines: int = typer.Option(100, "--lines", "-n", help="How many of the last lines."),
) -> None:
    """The end of a provisioned agent's log, read over SSH."""
    _require_fabric()
    from orchestrator.provisioning import ProvisionError, installer, records

    settings = Settings()
    try:
        text = installer.agent_log(records.load(settings.home, name), _run_options(settings), lines)
    except ProvisionError as exc:
        fail(str(exc))
    console.out(text, end="", highlight=False)
