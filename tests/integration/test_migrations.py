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


def _insert_trials(connection, trials) -> None:  # noqa: ANN001
    """A device, a campaign, a model and the trials (id, runtime, runtime options, input
    shapes), as the schema before these migrations has them."""
    import json

    from sqlalchemy import text

    connection.execute(
        text(
            "insert into devices (name, device_class, tags, facts, retired, registered_at) values ('d', 'c', '[]', '{}', false, CURRENT_TIMESTAMP)"
        )
    )
    connection.execute(
        text(
            "insert into campaigns (name, spec, state, skipped, created_at) values ('c', '{}', 'done', '[]', CURRENT_TIMESTAMP)"
        )
    )
    connection.execute(
        text(
            "insert into models (name, format, precision, sha256, size, path, inputs, recipe, created_at) values ('m', 'onnx', 'fp32', :sha, 1, '/m', '[]', '{}', CURRENT_TIMESTAMP)"
        ),
        {"sha": "a" * 64},
    )
    for trial_id, runtime, opts, swept in trials:
        connection.execute(
            text(
                "insert into trials (id, campaign_id, device_id, model_id, runtime, requested_device, runtime_options, precision, batch_size, scenario, scenario_params, input_shapes, seq, repeat, policy, timeout_s, state, attempt, created_at) "
                "values (:id, 1, 1, 1, :runtime, 'CPU', :opts, 'fp32', 1, 'single_stream', '{}', :shapes, 0, 1, '{}', 10, 'done', 1, CURRENT_TIMESTAMP)"
            ),
            {
                "id": trial_id,
                "runtime": runtime,
                "opts": json.dumps(opts) if opts else None,
                "shapes": json.dumps(swept) if swept else None,
            },
        )


def test_0011_fills_the_configuration_key_of_existing_trials(empty_url):
    """Trials stored before 0011 get their config_key from their JSON columns, the same
    text new trials get (orchestrator.configurations.config_key)."""
    from sqlalchemy import text

    from orchestrator.configurations import config_key

    migrate.upgrade(empty_url, "0010")
    engine = engine_for(empty_url)
    options, shapes = {"threads": 2}, {"x": [1, 3, 64, 64]}
    with engine.begin() as connection:
        _insert_trials(
            connection, [("t1", "onnxruntime", options, shapes), ("t2", "onnxruntime", None, None)]
        )
    engine.dispose()
    migrate.upgrade(empty_url)
    with engine_for(empty_url).connect() as connection:
        keys = dict(connection.execute(text("select id, config_key from trials")).all())
    assert keys == {"t1": config_key({}, options, shapes), "t2": ""}


def test_0012_copies_the_compile_time_tvm_results_kept_in_their_placement(empty_url):
    import json

    from sqlalchemy import text

    migrate.upgrade(empty_url, "0011")
    engine = engine_for(empty_url)
    with engine.begin() as connection:
        _insert_trials(connection, [("t1", "tvm", None, None), ("t2", "onnxruntime", None, None)])
        for trial_id, placement in (("t1", {"compile_ms": 611.5}), ("t2", {"providers": []})):
            connection.execute(
                text(
                    "insert into results (trial_id, attempt, boot_id, n, min_ms, max_ms, mean_ms, stdev_ms, cv, p50_ms, p90_ms, p95_ms, p99_ms, placement, environment, received_at) "
                    "values (:id, 1, 'b', 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, :placement, '{}', CURRENT_TIMESTAMP)"
                ),
                {"id": trial_id, "placement": json.dumps(placement)},
            )
    engine.dispose()
    migrate.upgrade(empty_url)
    with engine_for(empty_url).connect() as connection:
        found = dict(connection.execute(text("select trial_id, compile_ms from results")).all())
    assert found == {"t1": 611.5, "t2": None}
