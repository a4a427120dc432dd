"""Compare: one model on every device × runtime × precision, by a chosen metric; the
table under the chart holds the same numbers and downloads as CSV."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import charts, first_run, model_scope, store_access
from orchestrator.store.queries import dashboard as dashboard_queries
from orchestrator.store.queries.dashboard import METRICS

st.title("Compare")
scope = model_scope.pick()
if scope is None:
    st.stop()

left, middle, right = st.columns([3, 1, 1])
chosen = model_scope.pick_metric("Metric", list(METRICS), "metric", left)
best_first = middle.toggle("Best first", value=True, key="best", bind="query-params")
descending = (chosen.better == "higher") == best_first
box_plots = right.toggle(
    "Box plots",
    key="boxes",
    bind="query-params",
    help="Each group's newest trial, from its stored raw latency samples",
)

rows = scope.result_groups(
    metrics=list(dict.fromkeys([*dashboard_queries.INDEXED_METRICS, chosen.name])),
    sort=chosen.name,
    descending=descending,
)
if not rows:
    first_run.no_results()
    st.stop()

frame = pd.DataFrame(rows)
frame["setup"] = [model_scope.setup_label(r) for r in rows]
measured = frame[frame[chosen.name].notna()]
if box_plots:
    boxes = store_access.read(dashboard_queries.latency_boxes, list(frame["newest_trial_id"]))
    drawn = pd.DataFrame(
        [
            {**row, **boxes[row["newest_trial_id"]]}
            for row in frame.to_dict("records")
            if row["newest_trial_id"] in boxes
        ]
    )
    if drawn.empty:
        st.info("No trial of this selection kept its raw samples: switch box plots off.")
    else:
        st.altair_chart(charts.latency_boxes(drawn), width="stretch")
        st.caption(
            "The newest trial of each group, from its raw samples: box from the 25th to the "
            "75th percentile, tick at the median, whiskers to the furthest sample within 1.5 "
            "× the box. The table below holds means over all the group's trials."
        )
elif measured.empty:
    st.info(
        f"No trial of this selection measured {chosen.label}: pick another metric "
        "(the table below shows what was measured)."
    )
else:
    st.altair_chart(charts.grouped_bars(measured, chosen), width="stretch")
    st.caption(
        "One bar per configuration (scenario, runtime options and input shapes never pooled). "
        "p50: the median of its runs' medians, a run being one trial in a fresh process; "
        "its interval and the between-run CV are across runs. Other figures: means over "
        "the runs." + (" Thin lines: from p50 to p99." if chosen.unit == "ms" else "")
    )

# The table: the keys, the runs and their spread, the chosen metric, every other measured.
keys = ["device", "device_class", "setup", "scenario", "runs", "unstable"]
spread = ["p50_low_ms", "p50_high_ms", "p50_interval_coverage", "between_run_cv"]
others = [m for m in METRICS if m in frame and m != chosen.name and frame[m].notna().any()]
table = frame[keys + [chosen.name] + spread + others + ["fallback", "throttled", "newest_trial_id"]]
table = table.rename(columns={m: METRICS[m].title for m in [chosen.name, *others]})
table["newest trial"] = "./trial_detail?trial=" + table.pop("newest_trial_id").astype(str)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "newest trial": st.column_config.LinkColumn(
            "newest trial", display_text=r"trial=(\w{8})", help="Open it on Trial detail"
        )
    },
)
st.download_button(
    "Download CSV",
    table.to_csv(index=False).encode(),
    file_name=f"edgebench-compare-{scope.family}.csv",
    mime="text/csv",
)
if frame["fallback"].any():
    st.warning("Some trials fell back to another device than the one requested (see table).")
if frame["throttled"].any():
    st.warning("Some trials were throttled: their latency is not the device's best.")
if frame["unstable"].any():
    st.warning(
        "Some configurations are unstable (column `unstable`): a run's robust spread was "
        "above its max_cv, or their run medians vary by more than 10 %. Their figures are "
        "less certain than they look."
    )
