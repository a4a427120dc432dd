"""`edgebench server`, `dashboard`, `db upgrade` and `quickstart`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

from orchestrator.cli.store_access import console, fail, require_server_extra
from orchestrator.settings import Settings

db_app = typer.Typer(help="The SQL store.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to EDGEBENCH_DATABASE_URL (default: the SQLite store)."""
    require_server_extra()
    from sqlalchemy.exc import OperationalError

    from orchestrator.store import migrate

    url = Settings().resolved_database_url()
    try:
        migrate.upgrade(url)
        revision = migrate.current(url)
    except OperationalError as exc:
        fail(f"cannot open the database: {str(exc.orig).strip()}")
    console.print(f"database at revision {revision}")


def server(
    loglevel: str = typer.Option("INFO", help="Log level."),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Use a broker URL with no password on a host beyond loopback (EDGEBENCH_INSECURE=1).",
    ),
) -> None:
    """Run the controller: ingest registrations, heartbeats and results; dispatch trials."""
    require_server_extra()
    from orchestrator import broker
    from orchestrator import server as controller

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = Settings()
    embedded = None
    url = settings.broker_url
    if url is not None:
        from agents.contract import broker_rules

        try:
            broker_rules.check_authenticated(url, insecure or settings.insecure)
            broker_rules.check_tls(url, settings.broker_ca)
        except broker_rules.BrokerRefused as exc:
            fail(str(exc), code=2)
    if url is None:
        running = settings.resolved_broker_url()
        if running and broker.is_alive(running):
            fail(
                f"an edgebench server already runs on this machine (see {settings.home / 'broker.json'});"
                " one controller per broker"
            )
        try:
            embedded = broker.start(settings.home, bind=settings.broker_bind_addresses())
        except broker.BrokerError as exc:
            fail(str(exc))
        embedded.supervise()  # brought back on its port, with its password, if it dies
        url = embedded.url
        console.print(f"embedded broker on {url.split('@')[-1]} (recorded in {settings.home})")
    from orchestrator.controller_lease import LeaseHeld

    try:
        controller.run(settings, url, loglevel=loglevel.upper())
    except (controller.DatabaseNotReady, LeaseHeld) as exc:
        fail(str(exc))
    finally:
        if embedded is not None:
            embedded.stop()


def dashboard(
    port: int = typer.Option(8501, help="Port to serve on."),
    address: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 for every interface)."),
) -> None:
    """Serve the Streamlit dashboard (reads the store, never writes it)."""
    from orchestrator import dashboard_process

    try:
        process = dashboard_process.start(port, address)
    except dashboard_process.DashboardError as exc:
        fail(str(exc))
    console.print(f"dashboard: http://{address}:{port}  (Ctrl-C to stop)")
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        dashboard_process.stop(process)


def quickstart(
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="Exit after the table."),
    port: int = typer.Option(8501, help="Dashboard port."),
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        help="Your own .onnx/.tflite/.xml: added as `models add` would, then benchmarked "
        "instead of the built-in set.",
    ),
    input_shape: List[str] = typer.Option(
        [], "--input-shape", help="With --model: NAME=D1,D2,... (as `models add` takes it)."
    ),
    batch_axis: List[str] = typer.Option(
        [], "--batch-axis", help="With --model: NAME=K or NAME=none (as `models add`)."
    ),
    sample_input: Optional[Path] = typer.Option(
        None, help="With --model: an .npz of input values (as `models add`)."
    ),
) -> None:
    """Embedded broker + SQLite + controller + one local agent, a real campaign, a table."""
    require_server_extra()
    from orchestrator import quickstart as qs

    flags = [f"--input-shape={v}" for v in input_shape] + [f"--batch-axis={v}" for v in batch_axis]
    if sample_input is not None:
        flags.append(f"--sample-input={sample_input}")
    if flags and model is None:
        fail("--input-shape, --batch-axis and --sample-input go with --model FILE")
    try:
        user_model = qs.UserModel(model, flags) if model is not None else None
        qs.run(Settings(), dashboard_port=None if no_dashboard else port, user_model=user_model)
    except qs.QuickstartError as exc:
        fail(str(exc))


def attach(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
    app.command("server")(server)
    app.command("dashboard")(dashboard)
    app.add_typer(db_app, name="db")
