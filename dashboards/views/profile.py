"""Profile: where one trial's time went, operator by operator, and where each operator ran
(its profile pass, `policy: {profile: true}`); with a second trial, which op types account
for the difference between them (two devices, two runtimes or two precisions of a model),
as `edgebench results profile A --vs B`."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import store_access
from orchestrator.store.queries import profile_diff
from orchestrator.store.queries.profiles import profiled_trials, trial_profile

st.title("Profile")
trials = store_access.read(profiled_trials)
if not trials:
    st.info(
        "No trial has an operator profile yet: run a campaign with `policy: {profile: true}` "
        "(the quickstart does)."
    )
    st.stop()

labels = {t["trial_id"]: t["label"] for t in trials}
ids = list(labels)
# The link carries the bare ids (?trial=...&vs=...), the pickers readable labels.
linked, linked_vs = st.query_params.get("trial"), st.query_params.get("vs")
left, right = st.columns(2)
picked_a = left.selectbox(
    "Trial", ids, index=ids.index(linked) if linked in labels else 0, format_func=labels.get
)
versus = right.selectbox(
    "Against (optional)", [None, *ids], index=ids.index(linked_vs) + 1 if linked_vs in labels else 0,
    format_func=lambda t: "—" if t is None else labels[t],
)  # fmt: skip
st.query_params["trial"] = picked_a
if versus is None:
    st.query_params.pop("vs", None)
else:
    st.query_params["vs"] = versus
a = store_access.read(trial_profile, picked_a)


def op_type_frame(profile: dict) -> pd.DataFrame:
    frame = pd.DataFrame(profile["op_types"])
    frame["share"] = frame["share"].map(lambda v: None if v is None else round(100 * v, 1))
    return frame.rename(columns={"time_ms": "ms/query", "share": "share %"})


def show_one(profile: dict, title: str) -> None:
    st.subheader(title)
    st.caption(
        f"{profile['label']} — {profile['method']}, {profile['queries']} queries after the "
        f"timed runs; {profile_diff.coverage_words(profile)}."
    )
    frame = op_type_frame(profile)
    timed = frame.dropna(subset=["ms/query"])
    if not timed.empty:
        by_type = (
            alt.Chart(timed.head(15))
            .mark_bar()
            .encode(
                x=alt.X("ms/query:Q", title="ms per query"),
                y=alt.Y("op_type:N", sort="-x", title=None),
                color=alt.Color("unit:N", title="ran on"),
                tooltip=["op_type", "unit", "precision", "nodes", "ms/query", "share %"],
            )
        )
        st.altair_chart(by_type, width="stretch")
        units = timed.groupby("unit", as_index=False)["ms/query"].sum()
        st.caption("Time by unit: " + ", ".join(
            f"{u} {ms:.3f} ms" for u, ms in zip(units["unit"], units["ms/query"])
        ))  # fmt: skip
    st.dataframe(frame, hide_index=True, width="stretch")
    fell_back = [n for n in profile["nodes"] if n["fallback"]]
    if fell_back:
        st.warning(
            f"{len(fell_back)} of {len(profile['nodes'])} operators ran off "
            f"{profile['requested_unit']}:"
        )
        st.dataframe(pd.DataFrame(fell_back)[["node", "op_type", "unit", "time_us", "precision"]],
                     hide_index=True)  # fmt: skip
    else:
        st.caption(f"Every operator ran on {profile['requested_unit']}.")


if versus is None:
    show_one(a, "Where the time went")
    st.stop()

b = store_access.read(trial_profile, versus)
st.markdown(f"**{profile_diff.explain(a, b)}**")
rows = pd.DataFrame(profile_diff.diff(a, b))
if not rows.empty:
    rows["a_units"] = rows["a_units"].map(", ".join)
    rows["b_units"] = rows["b_units"].map(", ".join)
    chart = (
        alt.Chart(rows.head(12))
        .mark_bar()
        .encode(
            x=alt.X("delta_ms:Q", title="B − A, ms per query"),
            y=alt.Y("op_type:N", sort=alt.EncodingSortField("delta_ms", op="max", order="descending"),
                    title=None),
            color=alt.condition("datum.delta_ms > 0", alt.value("#d62728"), alt.value("#2ca02c")),
            tooltip=["op_type", "a_ms", "b_ms", "delta_ms", "a_nodes", "b_nodes", "b_units"],
        )
    )  # fmt: skip
    st.altair_chart(chart, width="stretch")
    st.dataframe(
        rows.rename(columns={"a_ms": "A ms/query", "b_ms": "B ms/query", "delta_ms": "B − A"}),
        hide_index=True, width="stretch",
    )  # fmt: skip
left, right = st.columns(2)
with left:
    show_one(a, "A")
with right:
    show_one(b, "B")
