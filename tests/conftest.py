"""Shared fixtures. Services are real: a Redis server this suite starts on a free port,
the PostgreSQL named by EDGEBENCH_TEST_POSTGRES_URL (default the local `test` database),
and SQLite files in temporary folders.

On a laptop a missing service skips its tests with the reason; in CI (CI=true) it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get(
    "EDGEBENCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# onnx2tf takes 20-90 s a model: `models add` in the suite derives no TFLite variants, except
# where a test gives it onnx2tf's environment (tests/e2e/test_public_models.py).
os.environ["EDGEBENCH_ONNX2TF_PYTHON"] = "off"


def missing_service(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A private, password-protected Redis for this test session (the embedded broker code)."""
    from orchestrator import broker

    try:
        embedded = broker.start(tmp_path_factory.mktemp("redis"), record=False)
    except broker.BrokerError as exc:
        missing_service(f"cannot start redis-server: {exc}")
    yield embedded.url
    embedded.stop()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    from orchestrator.store import migrate

    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    import sqlalchemy

    from orchestrator.store.session import engine_for

    try:
        with engine_for(POSTGRES_ADMIN_URL).connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
    except Exception as exc:
        missing_service(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server_url) -> str:
    """A fresh, empty database for one test, dropped afterwards."""
    import sqlalchemy

    name = f"edgebench_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(
        postgres_server_url.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,  # the server may have been restarted by the test (tests/faults)
    )
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    from orchestrator.store.session import engine_for

    engine_for(url).dispose()
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str:
    """Runs a test on both stores; each is migrated to head."""
    from orchestrator.store import migrate

    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    return url


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the installed `edgebench` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


REPO_ROOT = Path(__file__).resolve().parent.parent
