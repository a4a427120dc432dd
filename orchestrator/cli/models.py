"""`edgebench models build|list`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from orchestrator.cli.store_access import console, fail, open_sessions
from orchestrator.settings import Settings

app = typer.Typer(help="Models to benchmark.", no_args_is_help=True)


@app.command("build")
def build(
    only: Optional[str] = typer.Option(None, help="Build just this model."),
    quick: bool = typer.Option(False, help="The small set used by quickstart and tests."),
) -> None:
    """Build the built-in models locally (seeded weights, nothing downloaded)."""
    from orchestrator.artifacts.registry import build_and_register

    settings = Settings()
    try:
        with open_sessions(settings).begin() as session:
            names = build_and_register(session, settings.artifact_dir(), [only] if only else None)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"built {', '.join(names)}")


@app.command("list")
def list_models() -> None:
    """Registered models and their artifacts."""
    from orchestrator.store import queries

    with open_sessions()() as session:
        rows = queries.models_overview(session)
    if not rows:
        console.print("no models yet: run `edgebench models build`")
        return
    table = Table("name", "format", "precision", "inputs", "bytes", "sha256")
    for row in rows:
        inputs = "; ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in row["inputs"])
        table.add_row(
            row["name"],
            row["format"],
            row["precision"],
            inputs,
            str(row["bytes"]),
            row["sha256"][:12],
        )
    console.print(table)
