"""Root of the `edgebench` command. Light to import: `edgebench agent` must work on a
device that has no SQLAlchemy, Alembic or Streamlit installed."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from orchestrator.cli import campaigns, devices, models, results, service

app = typer.Typer(
    help="Benchmark ML inference across a fleet of edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
service.attach(app)
app.add_typer(devices.app, name="devices")
app.add_typer(models.app, name="models")
app.add_typer(campaigns.app, name="campaign")
app.add_typer(results.app, name="results")

# Command groups shipped by other parts of edgebench (the agent) plug in here.
for plugin in entry_points(group="edgebench.commands"):
    app.add_typer(plugin.load(), name=plugin.name)


def main() -> None:
    app(prog_name="edgebench")


if __name__ == "__main__":
    sys.exit(main())
