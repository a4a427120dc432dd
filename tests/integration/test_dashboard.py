"""The Streamlit dashboard, run headless by Streamlit's AppTest on real stores.

Each test points the app at a store through EDGEBENCH_DATABASE_URL, runs the script and
reads what it rendered: the fleet table, the comparison table and chart, the selectboxes,
and the info/error messages a user sees instead of a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests import seed

AppTest = pytest.importorskip(
    "streamlit.testing.v1", reason="the dashboard extra (streamlit) is not installed"
).AppTest
pa = pytest.importorskip("pyarrow")

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
# Generous: the first run imports pandas, altair and SQLAlchemy on a small machine.
RUN_TIMEOUT_S = 30


def run_app(monkeypatch: pytest.MonkeyPatch, url: str, home: Path) -> Any:
    monkeypatch.setenv("EDGEBENCH_DATABASE_URL", url)
    monkeypatch.setenv("EDGEBENCH_HOME", str(home))
    # Seeded devices registered moments ago must show as online whatever the environment says.
    monkeypatch.setenv("EDGEBENCH_OFFLINE_AFTER_S", "3600")
    app = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT_S)
    app.run()
    return app


def assert_clean(app: Any) -> None:
    """No uncaught exception and no error message on the page."""
    assert [e.value for e in app.exception] == []
    assert [e.value for e in app.error] == []


def selectbox(app: Any, label: str) -> Any:
    matches = [s for s in app.selectbox if s.label == label]
    assert len(matches) == 1, f"expected one selectbox {label!r}, page has {app.selectbox}"
    return matches[0]


def fleet_table(app: Any) -> pd.DataFrame:
    assert len(app.dataframe) == 2, "expected the fleet and the comparison tables"
    return app.dataframe[0].value


def comparison_table(app: Any) -> pd.DataFrame:
    assert len(app.dataframe) == 2, "expected the fleet and the comparison tables"
    return app.dataframe[1].value


def p50_by_device(table: pd.DataFrame) -> dict[str, float]:
    devices = list(table["device"])
    assert len(devices) == len(set(devices)), f"a device appears twice: {devices}"
    return dict(zip(table["device"], table["p50_ms"]))


def chart_data(app: Any) -> pd.DataFrame:
    """The data behind the latency chart (a Vega-Lite chart with one Arrow dataset)."""
    charts = [el for el in app.main if getattr(el, "type", None) == "vega_lite_chart"]
    assert len(charts) == 1, "expected one latency chart"
    proto = charts[0].proto
    spec = json.loads(proto.spec)
    assert spec["mark"]["type"] == "bar"
    (dataset,) = proto.datasets
    return pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()


def expected_p50(created: dict[str, Any], model: str, batch: int) -> dict[str, float]:
    return {
        t["device"]: t["p50_ms"]
        for t in created["trials"]
        if t["model"] == model and t["batch_size"] == batch and t["status"] == "done"
    }


def test_empty_store_says_there_is_nothing_yet(monkeypatch, tmp_path, sqlite_url):
    app = run_app(monkeypatch, sqlite_url, tmp_path)

    assert_clean(app)
    infos = [i.value for i in app.info]
    assert any(text.startswith("No devices registered yet") for text in infos), infos
    assert any(text.startswith("No results yet") for text in infos), infos
    assert len(app.dataframe) == 0
    assert len(app.selectbox) == 0


def test_seeded_store_shows_fleet_and_comparison(monkeypatch, tmp_path, store_url):
    created = seed.seed_store(store_url)
    app = run_app(monkeypatch, store_url, tmp_path)

    assert_clean(app)
    assert [i.value for i in app.info] == []
    assert [t.value for t in app.title] == ["edgebench"]

    fleet = fleet_table(app)
    assert sorted(fleet["name"]) == sorted(created["devices"]) == ["seed-pi4", "seed-x86"]
    by_name = fleet.set_index("name")
    assert by_name.loc["seed-pi4", "class"] == "raspberry-pi-4"
    assert by_name.loc["seed-x86", "class"] == "x86-64"
    assert set(by_name["status"]) == {"online"}
    # Trials done per device: the failed trial on the Pi does not count.
    assert by_name.loc["seed-pi4", "trials_done"] == 3
    assert by_name.loc["seed-x86", "trials_done"] == 4
    assert by_name.loc["seed-x86", "runtimes"] == f"onnxruntime {seed.RUNTIME_VERSION}"

    # Defaults: the newest campaign, the first model, the smallest batch.
    assert selectbox(app, "Campaign").value == created["campaign_id"]
    assert selectbox(app, "Model").options == sorted(created["models"])
    assert selectbox(app, "Model").value == "seed_digits"
    assert [int(b) for b in selectbox(app, "Batch size").options] == seed.BATCH_SIZES
    assert selectbox(app, "Batch size").value == 1

    table = comparison_table(app)
    expected = expected_p50(created, "seed_digits", 1)
    assert set(expected) == {"seed-pi4", "seed-x86"}
    assert p50_by_device(table) == pytest.approx(expected)
    # The seeded latencies are known to the last digit: 9 ms and 1 ms bases, +10 steps of 1%.
    assert p50_by_device(table) == pytest.approx({"seed-pi4": 9.9, "seed-x86": 1.1})
    assert set(table["batch_size"]) == {1}
    assert set(table["runtime"]) == {"onnxruntime"}
    assert set(table["actual_device"]) == {"CPU"}
    assert set(table["n"]) == {seed.SAMPLES_PER_TRIAL}

    chart = chart_data(app)
    assert set(chart["percentile"]) == {"p50_ms", "p99_ms"}
    p50_bars = chart[chart["percentile"] == "p50_ms"].set_index("target")["ms"].to_dict()
    assert p50_bars == pytest.approx(
        {f"{device} · onnxruntime (CPU)": ms for device, ms in expected.items()}
    )


def test_changing_model_and_batch_changes_the_comparison(monkeypatch, tmp_path, sqlite_url):
    seed.seed_store(sqlite_url)
    created = seed.seed_store(sqlite_url)  # a second, newer campaign with the same matrix
    app = run_app(monkeypatch, sqlite_url, tmp_path)
    assert_clean(app)

    # Only the chosen (newest) campaign's trials are compared: one row per device.
    campaign = selectbox(app, "Campaign")
    assert campaign.value == created["campaign_id"]
    assert len(campaign.options) == 2
    before = p50_by_device(comparison_table(app))
    assert before == pytest.approx(expected_p50(created, "seed_digits", 1))

    selectbox(app, "Model").set_value("seed_mobilenet").run()
    assert_clean(app)
    assert selectbox(app, "Model").value == "seed_mobilenet"
    after_model = p50_by_device(comparison_table(app))
    assert after_model == pytest.approx(expected_p50(created, "seed_mobilenet", 1))
    assert after_model != pytest.approx(before)

    # Batch 8 of the larger model failed on the Pi: only the x86 result is compared.
    selectbox(app, "Batch size").set_value(8).run()
    assert_clean(app)
    assert selectbox(app, "Batch size").value == 8
    after_batch = p50_by_device(comparison_table(app))
    assert after_batch == pytest.approx(expected_p50(created, "seed_mobilenet", 8))
    assert list(after_batch) == ["seed-x86"]
    assert set(comparison_table(app)["batch_size"]) == {8}
    assert set(chart_data(app)["target"]) == {"seed-x86 · onnxruntime (CPU)"}

    # And back to the small model at batch 8: both devices again.
    selectbox(app, "Model").set_value("seed_digits").run()
    assert_clean(app)
    assert p50_by_device(comparison_table(app)) == pytest.approx(
        expected_p50(created, "seed_digits", 8)
    )


def test_unmigrated_store_shows_an_error_not_a_traceback(monkeypatch, tmp_path):
    path = tmp_path / "unmigrated.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE unrelated (x INTEGER)")
    connection.close()
    app = run_app(monkeypatch, f"sqlite:///{path}", tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert error.startswith(f"cannot read the store at sqlite:///{path}")
    assert "edgebench db upgrade" in error
    assert len(app.dataframe) == 0
    assert len(app.title) == 0


def test_unknown_database_kind_shows_an_error(monkeypatch, tmp_path):
    app = run_app(monkeypatch, "nosuchdb://host/store", tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert error.startswith("cannot read the store at nosuchdb://host/store")
    assert "nosuchdb" in error.split(":", 2)[2]  # the reason names the unknown dialect


def test_unreachable_store_error_hides_the_password(monkeypatch, tmp_path):
    # Port 1 on loopback refuses at once; nothing listens there.
    url = "postgresql://edgebench:s3cret-pw@127.0.0.1:1/edgebench"
    app = run_app(monkeypatch, url, tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert "s3cret-pw" not in error
    assert error.startswith("cannot read the store at postgresql://edgebench:***@127.0.0.1:1/")


def test_missing_sqlite_store_is_reported_not_created(monkeypatch, tmp_path):
    path = tmp_path / "never-made" / "edgebench.db"
    app = run_app(monkeypatch, f"sqlite:///{path}", tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert error.startswith(f"there is no store at {path} yet")
    # The dashboard only reads: it leaves no empty database (or folder) behind.
    assert not path.parent.exists()
