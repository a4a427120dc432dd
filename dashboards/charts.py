"""Altair charts for the pages. Every axis names its unit; colours come from the active
Streamlit theme (no fixed text or background colours), so charts read in light and dark."""

from __future__ import annotations

import altair as alt
import pandas as pd

from orchestrator.store.queries.dashboard import Metric

LABEL_LIMIT = 400
# Mid-tone categorical colours and grey legend symbols: legible on a light and a dark page.
PALETTE = alt.Scale(scheme="tableau10")
NEUTRAL = "#8c8c8c"


def grouped_bars(frame: pd.DataFrame, chosen: Metric) -> alt.Chart:
    """One bar per device × runtime/precision; latency metrics get a p50–p99 span."""
    column = chosen.name
    tooltip = ["device", "setup", alt.Tooltip(f"{column}:Q", title=chosen.title, format=".4g")]
    base = alt.Chart(frame).encode(
        x=alt.X("device:N", title="device", axis=alt.Axis(labelAngle=0, labelLimit=LABEL_LIMIT)),
        xOffset=alt.XOffset("setup:N"),
        color=alt.Color("setup:N", title="runtime · precision · ran on", scale=PALETTE),
    )
    bars = base.mark_bar().encode(
        y=alt.Y(f"{column}:Q", title=chosen.title), tooltip=tooltip + ["trials:Q"]
    )
    if chosen.unit != "ms" or not {"p50_ms", "p99_ms"} <= set(frame.columns):
        return bars
    span = base.mark_rule(strokeWidth=2, opacity=0.7).encode(
        y=alt.Y("p50_ms:Q", title=chosen.title),
        y2="p99_ms:Q",
        tooltip=[
            "device",
            "setup",
            alt.Tooltip("p50_ms:Q", title="p50 (ms)", format=".4g"),
            alt.Tooltip("p99_ms:Q", title="p99 (ms)", format=".4g"),
        ],
    )
    return bars + span


def latency_boxes(frame: pd.DataFrame) -> alt.LayerChart:
    """One box per device × runtime/precision from the columns of
    dashboard_queries.latency_boxes: whiskers, the interquartile box, the median tick."""
    title = "latency per call (ms)"
    base = alt.Chart(frame).encode(
        x=alt.X("device:N", title="device", axis=alt.Axis(labelAngle=0, labelLimit=LABEL_LIMIT)),
        xOffset=alt.XOffset("setup:N"),
        color=alt.Color("setup:N", title="runtime · precision · ran on", scale=PALETTE),
        tooltip=[
            "device",
            "setup",
            alt.Tooltip("samples:Q", title="samples"),
            *(
                alt.Tooltip(f"{c}_ms:Q", title=f"{c.replace('_', ' ')} (ms)", format=".4g")
                for c in ("whisker_low", "q1", "median", "q3", "whisker_high")
            ),
        ],
    )
    whiskers = base.mark_rule(strokeWidth=1.5).encode(
        y=alt.Y("whisker_low_ms:Q", title=title), y2="whisker_high_ms:Q"
    )
    box = base.mark_bar(opacity=0.8).encode(y=alt.Y("q1_ms:Q", title=title), y2="q3_ms:Q")
    median = base.mark_tick(thickness=2, color=NEUTRAL).encode(y=alt.Y("median_ms:Q", title=title))
    return alt.layer(whiskers, box, median)


def tradeoff_scatter(
    frame: pd.DataFrame, x: str, x_title: str, y: str, y_title: str, log_x: bool = False
) -> alt.LayerChart:
    """Points coloured by device, shaped by runtime · precision; the Pareto front (column
    `front`) drawn as a line through its points and labelled."""
    scale = alt.Scale(type="log") if log_x else alt.Scale(zero=False)
    base = alt.Chart(frame).encode(
        x=alt.X(f"{x}:Q", title=x_title, scale=scale),
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
    )
    points = base.mark_point(size=90, filled=True).encode(
        color=alt.Color("device:N", title="device", scale=PALETTE),
        shape=alt.Shape(
            "setup:N", title="runtime · precision", legend=alt.Legend(symbolFillColor=NEUTRAL)
        ),
        tooltip=[
            "label:N",
            alt.Tooltip(f"{x}:Q", title=x_title, format=".4g"),
            alt.Tooltip(f"{y}:Q", title=y_title, format=".4g"),
            "front:N",
        ],
    )
    on_front = frame[frame["front"]].sort_values(x)
    line = (
        alt.Chart(on_front)
        .mark_line(strokeDash=[4, 3], color=NEUTRAL)
        .encode(x=f"{x}:Q", y=f"{y}:Q", order=f"{x}:Q")
    )
    labels = (
        alt.Chart(on_front)
        .mark_text(align="left", dx=8, dy=-6, fontSize=11)
        .encode(
            x=f"{x}:Q",
            y=f"{y}:Q",
            text="label:N",
            color=alt.Color("device:N", title="device", scale=PALETTE),
        )
    )
    return alt.layer(line, points, labels)


def histogram(samples_ms: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(samples_ms)
        .mark_bar()
        .encode(
            x=alt.X("latency_ms:Q", bin=alt.Bin(maxbins=60), title="latency (ms)"),
            y=alt.Y("count():Q", title="queries (count)"),
        )
    )


def cdf(curve: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(curve)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("latency_ms:Q", title="latency (ms)", scale=alt.Scale(zero=False)),
            y=alt.Y("fraction:Q", title="fraction of queries (0–1)"),
            tooltip=[alt.Tooltip("latency_ms:Q", format=".4g"), alt.Tooltip("fraction:Q")],
        )
    )


def over_time(frame: pd.DataFrame, y: str, y_title: str, mark: str = "line") -> alt.Chart:
    """A series against elapsed trial time (column `t_s`), optionally split by `series`."""
    chart = alt.Chart(frame)
    chart = chart.mark_line(point=True) if mark == "line" else chart.mark_circle(size=12)
    encoding = {
        "x": alt.X("t_s:Q", title="time into the measurement (s)"),
        "y": alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        "tooltip": [alt.Tooltip("t_s:Q", format=".3g"), alt.Tooltip(f"{y}:Q", format=".4g")],
    }
    if "series" in frame.columns:
        encoding["color"] = alt.Color("series:N", title="", scale=PALETTE)
    return chart.encode(**encoding).properties(height=180)


def cold_start(parts: pd.DataFrame) -> alt.Chart:
    """One stacked horizontal bar: the parts of a cold start, in order."""
    return (
        alt.Chart(parts)
        .mark_bar()
        .encode(
            x=alt.X("ms:Q", title="time (ms)", stack="zero"),
            y=alt.Y("trial:N", title=None, axis=None),
            color=alt.Color(
                "part:N", title="cold-start part", sort=list(parts["part"]), scale=PALETTE
            ),
            order=alt.Order("order:Q"),
            tooltip=["part:N", alt.Tooltip("ms:Q", format=".4g")],
        )
        .properties(height=90)
    )


def campaign_progress(progress: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(progress)
        .mark_bar()
        .encode(
            y=alt.Y("device:N", title="device", axis=alt.Axis(labelLimit=LABEL_LIMIT)),
            x=alt.X("trials:Q", title="trials (count)", stack="zero"),
            color=alt.Color("state:N", title="state", scale=PALETTE),
            tooltip=["device", "state", "trials"],
        )
    )
