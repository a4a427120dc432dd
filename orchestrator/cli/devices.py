"""`edgebench devices list|show|retire`."""

from __future__ import annotations

import json

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
    if detail is None:
        fail(f"no device named {name}")
    console.print_json(json.dumps(detail, default=str))


@app.command("retire")
def retire(name: str) -> None:
    """Take a device out of the fleet; its unfinished trials are cancelled."""
    from orchestrator.store import repository

    with open_sessions().begin() as session:
        try:
            repository.retire_device(session, name)
        except repository.StoreError as exc:
            fail(str(exc))
    console.print(f"retired {name}")
