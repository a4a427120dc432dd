"""Fleet: every device with its class, tags, accelerators, runtimes, status and trials."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import store_access
from orchestrator.store import queries

st.title("Fleet")
offline_after_s = store_access.settings().offline_after_s
devices = store_access.read(queries.devices_overview, offline_after_s, include_retired=True)
if not devices:
    st.info(
        "No devices registered yet: start an agent on each board with "
        "`edgebench agent start --name NAME --tags lab`."
    )
    st.stop()

tags = sorted({t.strip() for d in devices for t in (d["tags"] or "").split(",") if t.strip()})
classes = sorted({d["class"] for d in devices})
left, middle, right = st.columns(3)
chosen_tags = left.multiselect("Tags", tags, key="tags", bind="query-params")
chosen_classes = middle.multiselect("Device class", classes, key="class", bind="query-params")
show_retired = right.toggle("Show retired devices", key="retired", bind="query-params")


def wanted(device: dict) -> bool:
    device_tags = {t.strip() for t in (device["tags"] or "").split(",")}
    return (
        (not chosen_tags or bool(device_tags & set(chosen_tags)))
        and (not chosen_classes or device["class"] in chosen_classes)
        and (show_retired or device["status"] != "retired")
    )


shown = [d for d in devices if wanted(d)]
online = sum(d["status"] == "online" for d in shown)
a, b, c = st.columns(3)
a.metric("devices", len(shown))
b.metric("online", online)
c.metric("trials done", sum(d["trials_done"] for d in shown))
table = pd.DataFrame(shown)
if table.empty:
    st.info("No device matches these filters.")
    st.stop()
table = table.dropna(axis="columns", how="all")
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        "memory_mb": st.column_config.NumberColumn("memory (MB)"),
        "last_heartbeat": st.column_config.DatetimeColumn("last heartbeat (UTC)"),
        "trials_done": st.column_config.NumberColumn("trials done"),
    },
)
st.caption(f"A device is offline after {offline_after_s:g} s without a heartbeat.")
