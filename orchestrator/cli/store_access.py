"""Opening the store from a CLI command, with errors a user can act on."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

from orchestrator.settings import Settings

# Piped output (CI logs, `| less`) gets a wide table instead of Rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code)


def require_server_extra() -> None:
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        fail(
            "this command needs the controller's dependencies: pip install 'edgebench[server]'"
            " (a device that only runs `edgebench agent` does not need them)"
        )


def open_sessions(settings: Settings | None = None):
    """A session factory on an up-to-date store (the embedded SQLite one is migrated here)."""
    require_server_extra()
    from sqlalchemy.exc import OperationalError

    from orchestrator.store import migrate
    from orchestrator.store.session import session_factory

    settings = settings or Settings()
    url = settings.resolved_database_url()
    try:
        if settings.uses_default_database():
            migrate.upgrade(url)
        elif not migrate.is_current(url):
            fail("the database is not at the current schema: run `edgebench db upgrade`")
    except OperationalError as exc:
        fail(f"cannot open the database: {str(exc.orig).strip()}")
    return session_factory(url)
