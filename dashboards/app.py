"""edgebench dashboard: the fleet, and a latency comparison across devices and runtimes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import altair as alt
import pandas as pd
import streamlit as st

from orchestrator.settings import Settings
from orchestrator.store import queries

st.set_page_config(page_title="edgebench", layout="wide")
settings = Settings()
database_url = settings.resolved_database_url()


@st.cache_resource
def _sessions(url: str):  # noqa: ANN202
    return queries.reader(url)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _redacted(text: str, url: str) -> str:
    """`text` with the URL's password masked: the page may be shown to people who hold none."""
    password = _password(url)
    return text.replace(f":{password}@", ":***@") if password else text


def _missing_sqlite_file(url: str) -> Path | None:
    """A SQLite store that does not exist yet; opening it would create an empty file."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return Path(path)


def _load():  # noqa: ANN202
    with _sessions(database_url)() as session:
        return (
            queries.devices_overview(session, settings.offline_after_s),
            queries.campaigns_overview(session),
            queries.result_rows(session, only_done=True),
        )


missing = _missing_sqlite_file(database_url)
if missing is not None:
    st.error(
        f"there is no store at {missing} yet: start `edgebench server` (or run "
        "`edgebench db upgrade`), or set EDGEBENCH_DATABASE_URL to an existing store."
    )
    st.stop()

try:
    devices, campaigns, results = _load()
except Exception as exc:  # a bad URL, an unreachable or unmigrated store: say so, no traceback
    st.error(
        _redacted(f"cannot read the store at {database_url}: {exc}", database_url) + "\n\n"
        "Check EDGEBENCH_DATABASE_URL; a store that is new or was made by an older edgebench "
        "needs `edgebench db upgrade`."
    )
    st.stop()

st.title("edgebench")

st.header("Fleet")
if devices:
    st.dataframe(pd.DataFrame(devices), hide_index=True, width="stretch")
else:
    st.info("No devices registered yet: start one with `edgebench agent start --name NAME`.")

st.header("Compare")
if not results:
    st.info("No results yet: run `edgebench quickstart` or submit a campaign.")
    st.stop()

frame = pd.DataFrame(results)
campaign_names = {c["id"]: f"{c['id']}: {c['name']}" for c in campaigns}
campaign_ids = sorted(frame["campaign_id"].unique(), reverse=True)
chosen_campaign = st.selectbox(
    "Campaign", campaign_ids, format_func=lambda cid: campaign_names.get(cid, str(cid))
)
frame = frame[frame["campaign_id"] == chosen_campaign]
models = sorted(frame["model"].unique())
chosen_model = st.selectbox("Model", models)
batches = sorted(frame[frame["model"] == chosen_model]["batch_size"].unique())
chosen_batch = st.selectbox("Batch size", batches)
view = frame[(frame["model"] == chosen_model) & (frame["batch_size"] == chosen_batch)].copy()
view["target"] = (
    view["device"] + " · " + view["runtime"] + " (" + view["actual_device"].fillna("?") + ")"
)

long = view.melt(
    id_vars=["target"], value_vars=["p50_ms", "p99_ms"], var_name="percentile", value_name="ms"
)
chart = (
    alt.Chart(long)
    .mark_bar()
    .encode(
        x=alt.X("ms:Q", title="latency (ms)"),
        y=alt.Y("target:N", title="device · runtime", axis=alt.Axis(labelLimit=400)),
        yOffset="percentile:N",
        color=alt.Color("percentile:N", title="percentile"),
        tooltip=["target", "percentile", alt.Tooltip("ms:Q", format=".3f")],
    )
)
st.altair_chart(chart, width="stretch")
columns = ["device", "runtime", "actual_device", "batch_size", "n", "p50_ms", "p90_ms", "p99_ms",
           "cv", "throughput_ips", "load_ms", "first_inference_ms", "peak_rss_mb"]  # fmt: skip
st.dataframe(view[columns], hide_index=True, width="stretch")
