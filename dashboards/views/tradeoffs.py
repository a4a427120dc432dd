"""Trade-offs: latency against accuracy, memory, energy and input size, one point per
device × runtime × precision × input size, with the Pareto front drawn and labelled."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import charts, first_run, model_scope, pareto
from orchestrator.store.queries.dashboard import METRICS

LATENCIES = ["p50_ms", "p90_ms", "p99_ms", "mean_ms"]
# (y column, what the chart asks, y is better when) for each trade-off
TRADEOFFS = [
    ("accuracy", "Latency vs accuracy (quantization)", "higher"),
    ("fidelity_cosine", "Latency vs fidelity to fp32", "higher"),
    ("peak_rss_mb", "Latency vs memory", "lower"),
    ("energy_mj_per_inference", "Latency vs energy", "lower"),
    ("input_size", "Latency vs input size", "higher"),
]

st.title("Trade-offs")
scope = model_scope.pick(one_input_size=False)
if scope is None:
    st.stop()
latency = model_scope.pick_metric("Latency", LATENCIES, "latency")
rows = scope.result_groups(by_model=True)
if not rows:
    first_run.no_results()
    st.stop()

sizes = {v["name"]: v["input_size"] for v in scope.variants}
frame = pd.DataFrame(rows)
frame["input_size"] = [sizes.get(model) for model in frame["model"]]
frame["setup"] = frame["runtime"] + " · " + frame["precision"]
frame["label"] = [
    f"{r['device']} · {r['runtime']} · {r['precision']}"
    + (f" · {sizes[r['model']]} px" if sizes.get(r["model"]) else "")
    for r in rows
]
st.caption(
    f"One point per device × runtime × precision × input size (means over trials); "
    f"the dashed line joins the Pareto front: the points that no other point beats on both "
    f"{latency.label} and the other axis. Each front point is labelled."
)

shown = 0
for column, question, better in TRADEOFFS:
    points = frame[frame[latency.column].notna() & frame[column].notna()].copy()
    if column == "input_size" and points["input_size"].nunique() < 2:
        continue  # one input size: nothing to trade
    if points.empty:
        continue
    points["front"] = pareto.front(
        points[latency.column].tolist(), points[column].tolist(), "lower", better
    )
    y_title = "input size (px)" if column == "input_size" else METRICS[column].title
    st.subheader(question)
    st.altair_chart(
        charts.tradeoff_scatter(points, latency.column, latency.title, column, y_title),
        width="stretch",
    )
    shown += 1

missing = [q for c, q, _ in TRADEOFFS if c != "input_size" and frame[c].isna().all()]
if missing:
    st.caption("Not measured for this selection, so not drawn: " + "; ".join(missing) + ".")
if shown == 0:
    st.info(
        "Nothing to trade off yet: these trials measured latency only. Accuracy and fidelity "
        "need a model card with evaluation data; energy needs a meter on the device."
    )
