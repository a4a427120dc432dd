"""Alembic environment: the URL comes from orchestrator.store.migrate (or EDGEBENCH_DATABASE_URL)."""

from __future__ import annotations

from alembic import context

from orchestrator.settings import Settings
from orchestrator.store.models import Base
from orchestrator.store.session import engine_for

config = context.config
url = config.attributes.get("database_url") or Settings().resolved_database_url()


def run_migrations() -> None:
    with engine_for(url).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
