"""Engines and sessions. SQLite gets WAL and a busy timeout: the controller, the CLI and
the dashboard use one file from several processes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def _normalise(url: str) -> str:
    # Users write postgresql://; we ship psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    url = _normalise(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            # We issue BEGIN ourselves (below), so the driver must not.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection):  # noqa: ANN001
            # SQLite has no row locks: take the write lock at BEGIN, so a read-then-write
            # (cancel, ingest, the scheduler) never overwrites a change made in between.
            # WAL readers (the dashboard) are not blocked by it.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # insertmanyvalues_page_size: a batch of results is inserted in statements of this many
    # rows. psycopg converts each statement's placeholders in Python, at a cost that grows
    # faster than the row count; 8 rows ingested 1.5x faster than SQLAlchemy's 1,000
    # (bench/ingest_rate.py, docs/RELIABILITY.md).
    return create_engine(url, pool_pre_ping=True, insertmanyvalues_page_size=8)


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)
