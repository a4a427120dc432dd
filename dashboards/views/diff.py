"""Diff: two trials (or the newest trials of two devices for one model) side by side:
what differs in their conditions, next to whether the latency difference is significant
judged across the runs of each trial's configuration, as `edgebench results compare`."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import conditions, first_run, model_scope, store_access
from orchestrator.store import queries
from orchestrator.store.queries import TrialState
from orchestrator.store.queries import dashboard as dashboard_queries

TRIALS, DEVICES = "two trials", "two devices, one model"

st.title("Diff")
campaigns = store_access.read(queries.campaigns_overview)
if not campaigns:
    first_run.no_results()
    st.stop()
mode = st.radio("Compare", [TRIALS, DEVICES], horizontal=True, key="mode", bind="query-params")


def pick_trials() -> tuple[str | None, str | None]:
    campaign = model_scope.pick_campaign(campaigns)
    labels = {
        c["trial_id"]: c["label"]
        for c in store_access.read(dashboard_queries.trial_choices, campaign)
        if c["state"] == TrialState.DONE
    }
    if len(labels) < 2:
        st.info("This campaign has fewer than two measured trials: pick another campaign.")
        return None, None
    ids = list(labels)
    left, right = st.columns(2)
    a = left.selectbox("Trial A", ids, format_func=labels.get, key="a", bind="query-params")
    b = right.selectbox(
        "Trial B", ids, index=1, format_func=labels.get, key="b", bind="query-params"
    )
    return a, b


def pick_devices() -> tuple[str | None, str | None]:
    scope = model_scope.pick(every_precision=False)
    if scope is None:
        return None, None
    runtime = st.selectbox("Runtime", scope.options["runtimes"], key="runtime", bind="query-params")
    devices = store_access.read(dashboard_queries.devices_with_results, scope.model_ids)
    if len(devices) < 2:
        st.info("Fewer than two devices measured this model: nothing to compare yet.")
        return None, None
    left, right = st.columns(2)
    device_a = left.selectbox("Device A", devices, key="device_a", bind="query-params")
    device_b = right.selectbox("Device B", devices, index=1, key="device_b", bind="query-params")
    found = [
        store_access.read(
            dashboard_queries.newest_trial,
            device,
            scope.model_ids,
            batch_size=scope.batch_size,
            runtime=runtime,
            precision=scope.precision,
        )
        for device in (device_a, device_b)
    ]
    for device, trial in zip((device_a, device_b), found):
        if trial is None:
            st.info(f"{device} has no measured trial of this model with these settings.")
    st.caption("Each device's newest measured trial with these settings.")
    return found[0], found[1]


trial_a, trial_b = pick_trials() if mode == TRIALS else pick_devices()
if trial_a is None or trial_b is None:
    st.stop()

a = store_access.read(dashboard_queries.trial_detail, trial_a)
b = store_access.read(dashboard_queries.trial_detail, trial_b)
st.markdown(
    f"**A** `{trial_a[:12]}` {a['device']} · {a['model']} · {a['runtime']} {a['precision']}  \n"
    f"**B** `{trial_b[:12]}` {b['device']} · {b['model']} · {b['runtime']} {b['precision']}"
)

st.subheader("Is the latency difference real?")
test = store_access.read(dashboard_queries.significance, trial_a, trial_b)
if test is None:
    st.info("One of the two configurations has no measured run, so no test can be made.")
else:
    (st.success if test["significant"] else st.info)(test["verdict"])
    left, middle, right = st.columns(3)
    left.metric("p50 A (ms)", f"{test['p50_a_ms']:.4g}")
    middle.metric(
        "p50 B (ms)",
        f"{test['p50_b_ms']:.4g}",
        delta=f"{test['change_pct']:+.1f} %",
        delta_color="inverse",
    )
    right.metric("Mann-Whitney p", "—" if test["p_value"] is None else f"{test['p_value']:.3g}")

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.4g}" for v in values) + f" ms ({len(values)} runs)"

    interval = test["interval_pct"]
    st.caption(
        f"Judged across runs (a run is a fresh process): run medians A {runs(test['runs_a'])}, "
        f"B {runs(test['runs_b'])}. p50 is the median of the run medians; the change is the "
        "Hodges-Lehmann estimate"
        + (
            f", {test['interval_coverage'] * 100:.0f} % interval {interval[0]:+.1f} % to "
            f"{interval[1]:+.1f} %"
            if interval
            else ""
        )
        + f". A real difference: exact Mann-Whitney p < {test['alpha']} over the run medians "
        f"and a change of at least {test['practical_pct']:g} %."
    )

st.subheader("What differs")
rows = conditions.differences(a, b)
show_all = st.toggle("Show what is the same too", key="same", bind="query-params")
shown = pd.DataFrame([r for r in rows if show_all or r["differs"]])
if shown.empty:
    st.info("Nothing recorded differs between these two trials.")
else:
    st.dataframe(shown, hide_index=True, width="stretch")
