"""Trial detail: the latency distribution from the raw samples, latency over time with
the device's temperature and clock, the cold-start breakdown, where the model actually
ran, and the full environment snapshot."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import charts, conditions, first_run, model_scope, store_access
from orchestrator.store import queries
from orchestrator.store.queries import dashboard as dashboard_queries
from orchestrator.store.queries.dashboard import COLD_START_PARTS, METRICS

# Over-time plots draw at most this many points (evenly spaced); statistics use all.
MAX_POINTS = 5000
ALL = "all"

st.title("Trial detail")
campaigns = store_access.read(queries.campaigns_overview)
if not campaigns:
    first_run.no_results()
    st.stop()

linked = st.query_params.get("trial")
linked_detail = store_access.read(dashboard_queries.trial_detail, linked) if linked else None
campaign_ids = [c["id"] for c in campaigns]
left, middle, right = st.columns([1, 1, 3])
campaign = model_scope.pick_campaign(
    campaigns, campaign_ids.index(linked_detail["campaign_id"]) if linked_detail else 0, left
)
devices = store_access.read(dashboard_queries.device_names)
device = middle.selectbox("Device", [ALL, *devices], key="device", bind="query-params")
choices = store_access.read(
    dashboard_queries.trial_choices, campaign, None if device == ALL else device
)
labels = {c["trial_id"]: c["label"] for c in choices}
if linked_detail and linked_detail["campaign_id"] == campaign and linked not in labels:
    labels = {linked: linked, **labels}
if not labels:
    st.info("This campaign has no trials on that device.")
    st.stop()
# Not bound like the other filters: the link carries the bare id (?trial=...), which
# Compare's table links to, while the picker shows a readable label.
ids = list(labels)
trial_id = right.selectbox(
    "Trial", ids, index=ids.index(linked) if linked in labels else 0, format_func=labels.get
)
st.query_params["trial"] = trial_id
detail = store_access.read(dashboard_queries.trial_detail, trial_id)

st.subheader(
    f"{detail['device']} · {detail['model']} · {detail['runtime']} {detail['precision']} · "
    f"batch {detail['batch_size']} · {detail['scenario']}"
)
st.caption(f"trial {detail['trial_id']} · status {detail['status']} · attempt {detail['attempt']}")
if detail["error"]:
    st.error(f"This trial failed: {detail['error']}")
if detail["throttled"]:
    st.warning("The device throttled during this trial: see the clock and temperature below.")

headline = ["p50_ms", "p99_ms", "throughput_ips", "peak_rss_mb", "energy_mj_per_inference"]
headline += ["accuracy", "fidelity_cosine"]
present = [m for m in headline if detail.get(m) is not None]
for column, name in zip(st.columns(max(len(present), 1)), present):
    column.metric(METRICS[name].title, f"{detail[name]:.4g}")

st.markdown("#### Where it ran")
placement = {
    "requested device": detail["requested_device"],
    "actual device": detail["actual_device"],
    "fallback": detail["fallback"],
    "runtime version": detail["runtime_version"],
    **detail["placement"],
}
st.dataframe(
    pd.DataFrame(
        [{"what": k, "value": str(v)} for k, v in placement.items() if v not in (None, [], {})]
    ),
    hide_index=True,
)

samples_ns = store_access.read(queries.result_samples, trial_id)
if samples_ns:
    st.markdown(f"#### Latency distribution ({len(samples_ns):,} samples)")
    ms = pd.Series(samples_ns, dtype="float64") / 1e6
    ordered = ms.sort_values().reset_index(drop=True)
    step = max(1, len(ordered) // MAX_POINTS)
    curve = pd.DataFrame(
        {"latency_ms": ordered[::step], "fraction": (ordered.index[::step] + 1) / len(ordered)}
    )
    left, right = st.columns(2)
    left.altair_chart(charts.histogram(pd.DataFrame({"latency_ms": ms})), width="stretch")
    right.altair_chart(charts.cdf(curve), width="stretch")

st.markdown("#### Over time")
report = detail["scenario_report"] or {}
environment = detail["environment"]
before, after = environment.get("conditions_before"), environment.get("conditions_after")
if report.get("buckets"):
    buckets = pd.DataFrame(report["buckets"])
    series = buckets.melt("t_s", ["p50_ms", "p99_ms"], var_name="series", value_name="ms")
    st.altair_chart(charts.over_time(series, "ms", "latency (ms)"), width="stretch")
    end_s = float(buckets["t_s"].max())
elif samples_ns:
    elapsed_s = ms.cumsum() / 1e3
    step = max(1, len(ms) // MAX_POINTS)
    points = pd.DataFrame({"t_s": elapsed_s[::step], "latency_ms": ms[::step]})
    st.altair_chart(
        charts.over_time(points, "latency_ms", "latency (ms)", mark="points"), width="stretch"
    )
    end_s = float(elapsed_s.iloc[-1])
else:
    end_s = None
temperatures = [
    {"t_s": t, "series": "hottest zone", "celsius": conditions.hottest_c(snap)}
    for t, snap in ((0.0, before), (end_s, after))
    if t is not None and conditions.hottest_c(snap) is not None
]
if report.get("buckets"):
    temperatures = [
        {"t_s": b["t_s"], "series": "hottest zone", "celsius": b["hottest_c"]}
        for b in report["buckets"]
        if b.get("hottest_c") is not None
    ] or temperatures
clocks = [
    {"t_s": t, "series": "mean CPU clock", "mhz": conditions.mean_freq_mhz(snap)}
    for t, snap in ((0.0, before), (end_s, after))
    if t is not None and conditions.mean_freq_mhz(snap) is not None
]
timeline = report.get("timeline") or []
if timeline:  # read about once a second during the measurement: the finest there is
    temperatures = [
        {"t_s": p["t_s"], "series": "hottest zone", "celsius": p["hottest_c"]}
        for p in timeline
        if p.get("hottest_c") is not None
    ] or temperatures
    clocks = [
        {"t_s": p["t_s"], "series": "mean CPU clock", "mhz": p["freq_mhz"]}
        for p in timeline
        if p.get("freq_mhz") is not None
    ] or clocks
left, right = st.columns(2)
if temperatures:
    left.altair_chart(
        charts.over_time(pd.DataFrame(temperatures), "celsius", "temperature (°C)"),
        width="stretch",
    )
if clocks:
    right.altair_chart(
        charts.over_time(pd.DataFrame(clocks), "mhz", "CPU clock (MHz)"), width="stretch"
    )
if temperatures or clocks:
    st.caption(
        "Temperature and clock are read about once a second during the measurement (older "
        "trials: before and after it, and per soak bucket): a rise in latency with a "
        "falling clock is throttling."
    )
else:
    st.caption("This device reported no temperatures or clocks.")

parts = [
    {"trial": "cold start", "part": METRICS[p].label.split(": ")[1], "ms": detail[p], "order": i}
    for i, p in enumerate(COLD_START_PARTS)
    if detail.get(p) is not None
]
if parts:
    st.markdown("#### Cold start")
    st.altair_chart(charts.cold_start(pd.DataFrame(parts)), width="stretch")
    st.caption(f"Total of the measured parts: {sum(p['ms'] for p in parts):.4g} ms.")

summary = report.get("loadgen")
if summary:  # an mlperf_* trial: LoadGen's own verdict and figures, beside edgebench's
    st.markdown(f"#### MLPerf LoadGen ({report.get('loadgen_scenario', '')})")
    st.write(
        f"LoadGen says **{summary.get('Result is', 'no result')}**"
        f" (early stopping satisfied: {summary.get('Early stopping satisfied', 'not reported')})"
    )
    figures = ("latency", "estimate", "per second", "QPS")
    shown = {k: v for k, v in summary.items() if any(word in k for word in figures)}
    st.dataframe(pd.DataFrame({"figure": list(shown), "value": list(shown.values())}))

if report:
    with st.expander("Scenario report"):
        st.json(report)
with st.expander("Environment snapshot (conditions before and after)"):
    st.json(environment)
with st.expander("Device facts"):
    st.json(detail["device_facts"])
