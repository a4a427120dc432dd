"""Campaigns: progress per campaign and device, failures with their reason; the page
refreshes itself while the chosen campaign runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import charts, first_run, model_scope, store_access
from orchestrator.store import queries
from orchestrator.store.queries import CampaignState
from orchestrator.store.queries import dashboard as dashboard_queries

REFRESH_S = 5

st.title("Campaigns")
campaigns = store_access.read(queries.campaigns_overview)
if not campaigns:
    first_run.no_results()
    st.stop()

overview = pd.DataFrame(campaigns)
st.dataframe(
    overview,
    hide_index=True,
    width="stretch",
    column_config={
        "created_at": st.column_config.DatetimeColumn("created (UTC)"),
        "finished_at": st.column_config.DatetimeColumn("finished (UTC)"),
    },
)

chosen = model_scope.pick_campaign(campaigns)
running = next(c for c in campaigns if c["id"] == chosen)["state"] == CampaignState.RUNNING


@st.fragment(run_every=REFRESH_S if running else None)
def progress(campaign_id: int) -> None:
    row = store_access.read(queries.campaign_progress, campaign_id)
    st.subheader(f"{row['name']}: {row['state']}")
    done = row["finished"] / row["trials"] if row["trials"] else 0.0
    st.progress(done, text=f"{row['finished']} of {row['trials']} trials finished")
    if row["state"] == CampaignState.RUNNING:
        st.caption(f"Refreshing every {REFRESH_S} s while the campaign runs.")
    by_device = store_access.read(dashboard_queries.campaign_device_progress, campaign_id)
    if by_device:
        st.altair_chart(charts.campaign_progress(pd.DataFrame(by_device)), width="stretch")
    failures = store_access.read(dashboard_queries.campaign_failures, campaign_id)
    if failures:
        st.markdown(f"**Failed trials** ({len(failures)} shown, newest first)")
        st.dataframe(pd.DataFrame(failures), hide_index=True, width="stretch")
    skipped = store_access.read(queries.campaign_skipped, campaign_id)
    if skipped:
        st.markdown("**Not run** (combinations the plan left out, with the reason)")
        st.dataframe(pd.DataFrame(skipped), hide_index=True, width="stretch")


progress(chosen)
