"""Migrations on SQLite and a real PostgreSQL: one head, up/down/up, models match."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from orchestrator.store import migrate
from orchestrator.store.models import Base
from orchestrator.store.session import engine_for


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("postgres_url")


def test_one_head(tmp_path):
    assert len(migrate.heads(f"sqlite:///{tmp_path / 'x.db'}")) == 1


def test_upgrade_downgrade_upgrade_and_models_match(empty_url):
    migrate.upgrade(empty_url)
    assert migrate.is_current(empty_url)
    tables = set(inspect(engine_for(empty_url)).get_table_names())
    assert {"devices", "campaigns", "trials", "results", "result_samples", "models"} <= tables

    migrate.downgrade(empty_url, "base")
    engine_for(empty_url).dispose()
    assert set(inspect(engine_for(empty_url)).get_table_names()) <= {"alembic_version"}
    assert migrate.current(empty_url) is None

    migrate.upgrade(empty_url)
    with engine_for(empty_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_db_upgrade_command_reports_revision(tmp_path):
    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = run_cli("db", "upgrade", env={"EDGEBENCH_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert migrate.heads(url)[0] in done.stdout
