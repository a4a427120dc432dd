"""The Streamlit dashboard, run headless by Streamlit's AppTest on real stores.

Each test points the app at a store through EDGEBENCH_DATABASE_URL, opens pages (as a
user would, optionally with a shared link's query parameters), changes widgets and reads
what was rendered: tables, the data behind the charts, and the messages a user sees
instead of a traceback. Seeded figures are exact (tests/seed.py), so so are the asserts.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests import seed
from tests.integration.test_ingest import world  # noqa: F401

AppTest = pytest.importorskip(
    "streamlit.testing.v1", reason="the dashboard extra (streamlit) is not installed"
).AppTest
pa = pytest.importorskip("pyarrow")

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
PAGES = {
    "Fleet": "views/fleet.py",
    "Campaigns": "views/campaigns.py",
    "Compare": "views/compare.py",
    "Trade-offs": "views/tradeoffs.py",
    "Trial detail": "views/trial_detail.py",
    "Diff": "views/diff.py",
    "Profile": "views/profile.py",
}
# Generous: the first run imports pandas, altair and SQLAlchemy on a small machine.
RUN_TIMEOUT_S = 30


def open_page(
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    home: Path,
    page: str = "Fleet",
    params: dict[str, str] | None = None,
) -> Any:
    """Run the app on `page`, as a browser opening a link with these query parameters."""
    monkeypatch.setenv("EDGEBENCH_DATABASE_URL", url)
    monkeypatch.setenv("EDGEBENCH_HOME", str(home))
    # Seeded devices registered moments ago must show as online whatever the environment says.
    monkeypatch.setenv("EDGEBENCH_OFFLINE_AFTER_S", "3600")
    app = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT_S)
    for name, value in (params or {}).items():
        app.query_params[name] = value
    app.run()
    if page != "Fleet":
        app.switch_page(PAGES[page]).run()
    return app


def assert_clean(app: Any) -> None:
    """No uncaught exception and no error message on the page."""
    assert [e.value for e in app.exception] == []
    assert [e.value for e in app.error] == []


def widget(app: Any, kind: str, label: str) -> Any:
    matches = [w for w in getattr(app, kind) if w.label == label]
    assert len(matches) == 1, f"expected one {kind} {label!r}, page has {getattr(app, kind)}"
    return matches[0]


def chart_frames(app: Any) -> list[list[pd.DataFrame]]:
    """The datasets behind each Altair chart on the page, in page order."""
    charts = app.get("arrow_vega_lite_chart") + app.get("vega_lite_chart")
    found = []
    for chart in charts:
        spec = json.loads(chart.proto.spec)
        assert spec, "a chart without a spec"
        found.append(
            [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]
        )
    return found


def axis_titles(app: Any) -> list[str]:
    """The titles of every quantitative axis: each should name its unit."""
    titles = []
    for chart in app.get("arrow_vega_lite_chart") + app.get("vega_lite_chart"):
        text = chart.proto.spec
        for spec in [json.loads(text)] + json.loads(text).get("layer", []):
            for channel in ("x", "y"):
                encoding = spec.get("encoding", {}).get(channel, {})
                title = encoding.get("title")
                if title and encoding.get("type") == "quantitative":
                    titles.append(title)
    return titles


def table(app: Any, index: int = 0) -> pd.DataFrame:
    return app.dataframe[index].value


@pytest.fixture
def seeded_sqlite(sqlite_url) -> dict[str, Any]:
    return {
        "url": sqlite_url,
        "plain": seed.seed_store(sqlite_url),
        "tradeoffs": seed.seed_tradeoffs(sqlite_url),
    }


def trial_of(created: dict[str, Any], **match: Any) -> dict[str, Any]:
    (found,) = [t for t in created["trials"] if all(t[k] == v for k, v in match.items())]
    return found


# -- first run and broken stores ------------------------------------------------------------


def test_empty_store_shows_how_to_start_on_every_page(monkeypatch, tmp_path, sqlite_url):
    for page in PAGES:
        app = open_page(monkeypatch, sqlite_url, tmp_path, page)
        assert_clean(app)
        assert [t.value for t in app.title] == ["Welcome to edgebench"], page
        code = "\n".join(c.value for c in app.code)
        assert "edgebench agent start --name" in code
        assert "edgebench campaign submit spec.yaml" in code
        assert len(app.dataframe) == 0


def test_unmigrated_store_shows_an_error_not_a_traceback(monkeypatch, tmp_path):
    path = tmp_path / "unmigrated.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE unrelated (x INTEGER)")
    connection.close()
    app = open_page(monkeypatch, f"sqlite:///{path}", tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert error.startswith(f"cannot read the store at sqlite:///{path}")
    assert "edgebench db upgrade" in error
    assert len(app.dataframe) == 0
    assert len(app.title) == 0


def test_unknown_database_kind_shows_an_error(monkeypatch, tmp_path):
    app = open_page(monkeypatch, "nosuchdb://host/store", tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert error.startswith("cannot read the store at nosuchdb://host/store")
    assert "nosuchdb" in error.split(":", 2)[2]  # the reason names the unknown dialect


def test_unreachable_store_error_hides_the_password(monkeypatch, tmp_path):
    # Port 1 on loopback refuses at once; nothing listens there.
    url = "postgresql://edgebench:s3cret-pw@127.0.0.1:1/edgebench"
    app = open_page(monkeypatch, url, tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert "s3cret-pw" not in error
    assert error.startswith("cannot read the store at postgresql://edgebench:***@127.0.0.1:1/")


def test_missing_sqlite_store_is_reported_not_created(monkeypatch, tmp_path):
    path = tmp_path / "never-made" / "edgebench.db"
    app = open_page(monkeypatch, f"sqlite:///{path}", tmp_path)

    assert [e.value for e in app.exception] == []
    (error,) = [e.value for e in app.error]
    assert error.startswith(f"there is no store at {path} yet")
    # The dashboard only reads: it leaves no empty database (or folder) behind.
    assert not path.parent.exists()


# -- every page on both stores --------------------------------------------------------------


def test_every_page_renders_the_seeded_store(monkeypatch, tmp_path, store_url):
    plain = seed.seed_store(store_url)
    seed.seed_tradeoffs(store_url)
    for page in PAGES:
        app = open_page(monkeypatch, store_url, tmp_path, page, {"model": seed.FAMILY})
        assert_clean(app)
        assert [t.value for t in app.title] == [page]
        if page not in ("Diff", "Profile"):  # (no profile seeded: test_profile_page_*)
            assert len(app.dataframe) + len(chart_frames(app)) > 0, f"{page} shows no data"
        for title in axis_titles(app):
            assert "(" in title and title.endswith(")"), f"{page}: axis {title!r} has no unit"

    fleet = table(open_page(monkeypatch, store_url, tmp_path, "Fleet")).set_index("name")
    assert sorted(fleet.index) == ["seed-pi4", "seed-x86"]
    assert fleet.loc["seed-pi4", "class"] == "raspberry-pi-4"
    assert set(fleet["status"]) == {"online"}
    # Trials done per device: 3 of the first campaign (one failed) and 4 of the second.
    assert fleet.loc["seed-pi4", "trials_done"] == 3 + 4
    assert fleet.loc["seed-x86", "trials_done"] == 4 + 4
    assert fleet.loc["seed-x86", "runtimes"] == f"onnxruntime {seed.RUNTIME_VERSION}"

    compare = open_page(monkeypatch, store_url, tmp_path, "Compare", {"model": "seed_digits"})
    numbers = table(compare).set_index("device")["latency p50 (ms)"].to_dict()
    expected = {
        t["device"]: t["p50_ms"]
        for t in plain["trials"]
        if t["model"] == "seed_digits" and t["batch_size"] == 1
    }
    # The seeded latencies are known to the last digit: 9 ms and 1 ms bases, +10 steps of 1%.
    assert numbers == pytest.approx(expected)
    assert numbers == pytest.approx({"seed-pi4": 9.9, "seed-x86": 1.1})


# -- what each page's widgets do ------------------------------------------------------------


def test_fleet_filters_by_class_and_tag_from_the_link(monkeypatch, tmp_path, seeded_sqlite):
    url = seeded_sqlite["url"]
    app = open_page(monkeypatch, url, tmp_path, params={"class": "raspberry-pi-4"})
    assert_clean(app)
    assert widget(app, "multiselect", "Device class").value == ["raspberry-pi-4"]
    assert list(table(app)["name"]) == ["seed-pi4"]

    widget(app, "multiselect", "Device class").set_value([]).run()
    assert sorted(table(app)["name"]) == ["seed-pi4", "seed-x86"]
    widget(app, "multiselect", "Tags").set_value(["seed"]).run()
    assert sorted(table(app)["name"]) == ["seed-pi4", "seed-x86"]


def test_campaigns_show_progress_per_device_and_failures(monkeypatch, tmp_path, seeded_sqlite):
    plain = seeded_sqlite["plain"]
    app = open_page(monkeypatch, seeded_sqlite["url"], tmp_path, "Campaigns")
    assert_clean(app)
    overview = table(app).set_index("name")
    assert overview.loc[seed.CAMPAIGN_NAME, "failed"] == 1
    assert overview.loc[seed.TRADEOFF_CAMPAIGN, "done"] == 8
    # Default: the newest campaign, which has no failures.
    assert len(app.dataframe) == 1

    widget(app, "selectbox", "Campaign").set_value(plain["campaign_id"]).run()
    assert_clean(app)
    failures = table(app, 1)
    assert list(failures["error"]) == [seed.FAILED_ERROR]
    assert list(failures["device"]) == [seed.FAILED_TRIAL[0]]
    (progress,) = chart_frames(app)
    by_state = progress[0].groupby(["device", "state"])["trials"].sum().to_dict()
    assert by_state == {("seed-pi4", "done"): 3, ("seed-pi4", "failed"): 1, ("seed-x86", "done"): 4}


def test_compare_follows_model_size_precision_and_metric(monkeypatch, tmp_path, seeded_sqlite):
    params = {"model": seed.FAMILY, "variant": "seed_net_224", "precision": "int8"}
    app = open_page(monkeypatch, seeded_sqlite["url"], tmp_path, "Compare", params)
    assert_clean(app)
    assert widget(app, "selectbox", "Input size variant").value == "seed_net_224"
    expected = {
        d: seed.tradeoff_expectation(d, "seed_net_224", "int8")["p50_ms"] for d in seed.DEVICES
    }
    shown = table(app)
    assert list(shown["device"]) == ["seed-x86", "seed-pi4"]  # best (lowest) first
    assert shown.set_index("device")["latency p50 (ms)"].to_dict() == pytest.approx(expected)
    (bars,) = chart_frames(app)
    assert bars[0].set_index("device")["p50_ms"].to_dict() == pytest.approx(expected)
    assert "Download CSV" in [b.label for b in app.get("download_button")]
    # The Pi has no energy meter: its energy is left out (None), the x86's is measured.
    energy = shown.set_index("device")["energy per inference (mJ)"]
    assert energy["seed-x86"] == pytest.approx(expected["seed-x86"] * seed.X86_WATTS)
    assert pd.isna(energy["seed-pi4"])

    widget(app, "selectbox", "Metric").set_value("accuracy").run()
    assert_clean(app)
    assert table(app).columns[6] == "top-1 accuracy (fraction 0–1)"
    assert set(table(app)["top-1 accuracy (fraction 0–1)"]) == {0.79}

    widget(app, "selectbox", "Metric").set_value("energy_mj_per_inference").run()
    (bars,) = chart_frames(app)
    assert list(bars[0]["device"]) == ["seed-x86"]  # only what was measured is drawn

    widget(app, "selectbox", "Precision").set_value("fp32").run()
    widget(app, "selectbox", "Metric").set_value("p50_ms").run()
    fp32 = table(app).set_index("device")["latency p50 (ms)"].to_dict()
    assert fp32 == pytest.approx({d: 2 * ms for d, ms in expected.items()})
    assert table(app).set_index("device").loc["seed-pi4", "throttled"]
    assert any("throttled" in w.value for w in app.warning)


def test_tradeoffs_mark_the_pareto_front(monkeypatch, tmp_path, seeded_sqlite):
    app = open_page(
        monkeypatch, seeded_sqlite["url"], tmp_path, "Trade-offs", {"model": seed.FAMILY}
    )
    assert_clean(app)
    questions = [s.value for s in app.subheader]
    assert questions == [
        "Latency vs accuracy (quantization)",
        "Latency vs fidelity to fp32",
        "Latency vs memory",
        "Latency vs energy",
        "Latency vs input size",
    ]
    charts = dict(zip(questions, chart_frames(app)))

    def points(question: str) -> pd.DataFrame:
        return max(charts[question], key=len)

    accuracy = points("Latency vs accuracy (quantization)")
    assert len(accuracy) == 8  # 2 devices × 2 sizes × 2 precisions
    on_front = set(accuracy[accuracy["front"]]["label"])
    # Every x86 point is as accurate as the Pi's and faster: the Pi's are all dominated.
    assert on_front == {
        f"seed-x86 · onnxruntime · {p} · CPU · {s} px" for p in ("fp32", "int8") for s in (96, 224)
    }
    # The Pi has no energy meter: its points are left out of the energy chart.
    assert set(points("Latency vs energy")["device"]) == {"seed-x86"}
    sizes = points("Latency vs input size")
    assert set(sizes["input_size"]) == {96, 224}

    widget(app, "selectbox", "Precision").set_value("fp32").run()
    assert_clean(app)
    accuracy = max(chart_frames(app)[0], key=len)
    assert set(accuracy["precision"]) == {"fp32"} and len(accuracy) == 4


def test_trial_detail_from_a_link(monkeypatch, tmp_path, seeded_sqlite):
    hot = trial_of(
        seeded_sqlite["tradeoffs"], device="seed-pi4", model="seed_net_224", precision="fp32"
    )
    app = open_page(
        monkeypatch, seeded_sqlite["url"], tmp_path, "Trial detail", {"trial": hot["trial_id"]}
    )
    assert_clean(app)
    assert widget(app, "selectbox", "Trial").value == hot["trial_id"]
    assert widget(app, "selectbox", "Campaign").value == seeded_sqlite["tradeoffs"]["campaign_id"]
    assert any("throttled" in w.value for w in app.warning)
    frames = chart_frames(app)
    histogram, cdf = frames[0][0], frames[1][0]
    assert len(histogram) == seed.SAMPLES_PER_TRIAL
    assert histogram["latency_ms"].median() == pytest.approx(hot["p50_ms"])
    assert cdf["fraction"].iloc[-1] == 1.0
    titles = axis_titles(app)
    assert "temperature (°C)" in titles and "CPU clock (MHz)" in titles
    temperatures = next(f[0] for f in frames if "celsius" in f[0].columns)
    # the conditions timeline read during the measurement, not just before and after
    assert list(temperatures["celsius"]) == [45.0, 70.0, 82.0]
    clocks = next(f[0] for f in frames if "mhz" in f[0].columns)
    assert list(clocks["mhz"]) == [1800.0, 1200.0, 600.0]
    parts = next(f[0] for f in frames if "part" in f[0].columns)
    assert list(parts["part"]) == [
        "process start",
        "runtime import",
        "model load",
        "first inference",
    ]

    failed = trial_of(seeded_sqlite["plain"], status="failed")
    widget(app, "selectbox", "Campaign").set_value(seeded_sqlite["plain"]["campaign_id"]).run()
    widget(app, "selectbox", "Trial").set_value(failed["trial_id"]).run()
    assert [e.value for e in app.exception] == []
    assert [e.value for e in app.error] == [f"This trial failed: {seed.FAILED_ERROR}"]


def test_diff_says_what_differs_and_whether_it_matters(monkeypatch, tmp_path, seeded_sqlite):
    params = {
        "mode": "two devices, one model",
        "model": seed.FAMILY,
        "variant": "seed_net_224",
        "precision": "fp32",
        "device_a": "seed-pi4",
        "device_b": "seed-x86",
    }
    app = open_page(monkeypatch, seeded_sqlite["url"], tmp_path, "Diff", params)
    assert_clean(app)
    # One run of each configuration: no verdict from a single run, and the page says why.
    assert app.success == []
    assert any(i.value.startswith("not enough runs to tell (1 and 1 runs") for i in app.info)
    differs = table(app).set_index("what")
    assert set(differs["differs"]) == {True}
    assert differs.loc["device", "A"] == "seed-pi4" and differs.loc["device", "B"] == "seed-x86"
    assert differs.loc["CPU clock after (MHz, mean)", "A"] == "600.0"
    assert differs.loc["hottest zone after (°C)", "B"] == "50.0"
    assert "runtime version" not in differs.index  # the same on both

    widget(app, "toggle", "Show what is the same too").set_value(True).run()
    everything = table(app).set_index("what")
    assert everything.loc["runtime version", "A"] == seed.RUNTIME_VERSION
    assert not everything.loc["runtime version", "differs"]

    # One trial against itself: nothing differs, nothing is significant.
    same = trial_of(seeded_sqlite["plain"], device="seed-x86", model="seed_digits", batch_size=1)
    app = open_page(
        monkeypatch,
        seeded_sqlite["url"],
        tmp_path,
        "Diff",
        {"campaign": f"{seeded_sqlite['plain']['campaign_id']}: {seed.CAMPAIGN_NAME}"},
    )
    widget(app, "selectbox", "Trial B").set_value(same["trial_id"]).run()
    widget(app, "selectbox", "Trial A").set_value(same["trial_id"]).run()
    assert_clean(app)
    assert app.success == []
    assert any(i.value == "Nothing recorded differs between these two trials." for i in app.info)


def test_diff_judges_two_configurations_across_their_runs(monkeypatch, tmp_path, sqlite_url):
    runs = seed.seed_runs(sqlite_url)
    pi = next(t for t in runs["trials"] if t["device"] == "seed-pi4")
    x86 = next(t for t in runs["trials"] if t["device"] == "seed-x86")
    app = open_page(
        monkeypatch,
        sqlite_url,
        tmp_path,
        "Diff",
        {"campaign": f"{runs['campaign_id']}: {seed.RUNS_CAMPAIGN}"},
    )
    widget(app, "selectbox", "Trial A").set_value(pi["trial_id"]).run()
    widget(app, "selectbox", "Trial B").set_value(x86["trial_id"]).run()
    assert_clean(app)
    (verdict,) = [s.value for s in app.success]
    assert verdict.startswith("B is faster than A by 88.9 %") and "a real difference" in verdict
    assert any(f"({seed.RUNS} runs)" in c.value for c in app.caption)


def test_compare_box_plots_from_the_stored_samples(monkeypatch, tmp_path, seeded_sqlite):
    params = {"model": seed.FAMILY, "variant": "seed_net_224", "precision": "int8"}
    app = open_page(monkeypatch, seeded_sqlite["url"], tmp_path, "Compare", params)
    widget(app, "toggle", "Box plots").set_value(True).run()
    assert_clean(app)
    ((boxes,),) = chart_frames(app)
    shown = boxes.set_index("device")
    # Seeded samples: base + k × base/100 for k = 0..20, so the quartiles are k = 5, 10, 15
    # and every sample lies within the whiskers.
    for device in seed.DEVICES:
        base_ms = seed.tradeoff_expectation(device, "seed_net_224", "int8")["base_ns"] / 1e6
        row = shown.loc[device]
        assert row["samples"] == seed.SAMPLES_PER_TRIAL
        assert row["median_ms"] == pytest.approx(base_ms * 1.10)
        assert (row["q1_ms"], row["q3_ms"]) == pytest.approx((base_ms * 1.05, base_ms * 1.15))
        assert (row["whisker_low_ms"], row["whisker_high_ms"]) == pytest.approx(
            (base_ms, base_ms * 1.2)
        )
    assert "latency per call (ms)" in axis_titles(app)
    # The table under the chart still holds the means of the chosen metric.
    assert "latency p50 (ms)" in table(app).columns


def test_compare_groups_keep_scenarios_and_runtime_options_apart_with_runs(store_url):
    """The Compare/Trade-offs groups are configurations: a Poisson run and a threads=1 run
    never pool into the single-stream bar, whose p50 is the median of its 5 runs' p50s,
    with its interval across runs (on both stores: the grouped query hands the run p50s to
    Python as text, each database in its own SQL)."""
    from orchestrator.store.queries import dashboard as dq
    from orchestrator.store.session import session_factory

    runs = seed.seed_runs(store_url)
    with session_factory(store_url).begin() as session:
        policy = {"warmup_s": 0, "min_queries": 1, "min_s": 0, "max_s": 1, "runs": 1}
        others = [
            seed._submit(
                session,
                {
                    "name": name,
                    "devices": {"names": ["seed-x86"]},
                    "models": ["seed_digits"],
                    "runtimes": [runtime],
                    "scenario": scenario,
                    "policy": policy,
                },
            )
            for name, runtime, scenario in (
                ("threads", {"name": "onnxruntime", "options": {"threads": 1}}, {}),
                ("poisson", "onnxruntime", {"kind": "poisson", "rate": 50}),
            )
        ]
    for campaign_id in others:
        seed._report_every_trial(store_url, campaign_id, seed._plain_measurement)
    sessions = session_factory(store_url)
    with sessions() as session:
        [model_id] = [
            v["model_ids"] for v in dq.model_variants(session) if v["name"] == "seed_digits"
        ][0]
        options = dq.result_filter_options(session, [model_id])
        assert options["scenarios"] == ["poisson", "single_stream"]
        single = dq.result_groups(session, [model_id], scenario="single_stream")
        poisson = dq.result_groups(session, [model_id], scenario="poisson")
    x86 = [g for g in single if g["device"] == "seed-x86"]
    assert sorted(g["runtime_options"] for g in x86) == ["", '{"threads": 1}']
    five = next(g for g in x86 if not g["runtime_options"])
    run_p50s = [t["p50_ms"] for t in runs["trials"] if t["device"] == "seed-x86"]
    assert five["runs"] == 5 and five["p50_ms"] == sorted(run_p50s)[2]
    assert (five["p50_low_ms"], five["p50_high_ms"]) == (min(run_p50s), max(run_p50s))
    assert five["p50_interval_coverage"] == 0.9375 and five["unstable"] is False
    assert [(g["scenario"], g["runs"]) for g in poisson] == [("poisson", 1)]


def test_profile_page_shows_where_the_time_went_and_the_diff(monkeypatch, tmp_path, world):  # noqa: F811
    """Two trials' profiles through ingest (tests/integration/test_profile_store.py)."""
    from orchestrator import ingest
    from tests.integration.test_ingest import dispatch_one
    from tests.integration.test_profile_store import FP32, INT8, profiled_result

    sessions, campaign_id = world
    first, second = dispatch_one(sessions, campaign_id), dispatch_one(sessions, campaign_id)
    assert ingest.handle(sessions, profiled_result(*first, FP32, 900_000)) == "stored"
    assert ingest.handle(sessions, profiled_result(*second, INT8, 1_400_000)) == "stored"
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)

    one = open_page(monkeypatch, url, tmp_path, "Profile", {"trial": first[0]})
    assert_clean(one)
    assert [s.value for s in one.subheader] == ["Where the time went"]
    assert (
        "the operators account for 0.800 ms of the 0.900 ms measured mean" in one.caption[0].value
    )
    assert list(table(one)["op_type"]) == ["Conv", "Relu"]
    assert list(chart_frames(one)[0][0]["op_type"]) == ["Conv", "Relu"]
    assert axis_titles(one) == ["ms per query"]

    both = open_page(monkeypatch, url, tmp_path, "Profile", {"trial": first[0], "vs": second[0]})
    assert_clean(both)
    said = [m.value for m in both.markdown]
    assert any("B is 0.500 ms slower per query than A" in m and "DequantizeLinear +0.600 ms" in m
               for m in said)  # fmt: skip
    differences = table(both).set_index("op_type")["B − A"]  # largest either way first
    assert list(differences.index[:2]) == ["Conv", "DequantizeLinear"]
    assert differences["Conv"] == pytest.approx(-0.7) and differences["Relu"] == pytest.approx(-0.1)
    assert [w.value for w in both.warning] == ["1 of 6 operators ran off CPU:"]
