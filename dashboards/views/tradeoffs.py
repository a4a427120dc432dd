"""Trade-offs: latency against accuracy, memory, energy, input size and swept input shapes,
one point per configuration (device × runtime × precision × options × input size or shape),
with the Pareto front drawn and labelled."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import charts, first_run, model_scope, pareto, store_access
from orchestrator.store.queries import dashboard as dashboard_queries
from orchestrator.store.queries.dashboard import METRICS

LATENCIES = ["p50_ms", "p90_ms", "p99_ms", "mean_ms"]
# (y column, what the chart asks, y is better when) for each trade-off
TRADEOFFS = [
    ("accuracy", "Latency vs accuracy (quantization)", "higher"),
    ("fidelity_cosine", "Latency vs fidelity to fp32", "higher"),
    ("peak_rss_mb", "Latency vs memory", "lower"),
    ("energy_mj_per_inference", "Latency vs energy", "lower"),
    ("input_size", "Latency vs input size", "higher"),
    ("input_elements", "Latency vs input shape (swept)", "higher"),
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
frame["input_elements"] = [
    model_scope.input_elements(r["input_shapes"]) if r["input_shapes"] else None for r in rows
]
if frame["input_elements"].notna().any():  # a sweep: registered shapes join the axis
    registered = store_access.read(dashboard_queries.registered_elements, scope.model_ids)
    frame["input_elements"] = [
        e if e is not None else registered.get(m)
        for e, m in zip(frame["input_elements"], frame["model"])
    ]
frame["setup"] = frame["runtime"] + " · " + frame["precision"]
frame["label"] = [
    f"{r['device']} · {model_scope.setup_label(r)}"
    + (f" · {sizes[r['model']]} px" if sizes.get(r["model"]) else "")
    for r in rows
]
st.caption(
    f"One point per configuration (p50: median of its runs; other figures: means over runs); "
    f"the dashed line joins the Pareto front: the points that no other point beats on both "
    f"{latency.label} and the other axis. Each front point is labelled."
)

shown = 0
for column, question, better in TRADEOFFS:
    points = frame[frame[latency.name].notna() & frame[column].notna()].copy()
    if column in ("input_size", "input_elements") and points[column].nunique() < 2:
        continue  # one input size or shape: nothing to trade
    if points.empty:
        continue
    points["front"] = pareto.front(
        points[latency.name].tolist(), points[column].tolist(), "lower", better
    )
    y_title = {
        "input_size": "input size (px)",
        "input_elements": "input elements per item (product of the dims but the batch)",
    }.get(column) or METRICS[column].title
    st.subheader(question)
    st.altair_chart(
        charts.tradeoff_scatter(points, latency.name, latency.title, column, y_title),
        width="stretch",
    )
    shown += 1

missing = [
    q
    for c, q, _ in TRADEOFFS
    if c not in ("input_size", "input_elements") and frame[c].isna().all()
]
if missing:
    st.caption("Not measured for this selection, so not drawn: " + "; ".join(missing) + ".")
if shown == 0:
    st.info(
        "Nothing to trade off yet: these trials measured latency only. Accuracy and fidelity "
        "need a model card with evaluation data; energy needs a meter on the device."
    )
