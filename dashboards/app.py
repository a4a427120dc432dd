"""edgebench dashboard: fleet, campaigns, comparisons, trade-offs, one trial, the
differences between two, and operator profiles. `edgebench dashboard` serves it; it only reads the store."""

from __future__ import annotations

import streamlit as st

from dashboards import first_run, store_access
from orchestrator.store.queries import dashboard as dashboard_queries

st.set_page_config(page_title="edgebench", layout="wide")

PAGES = [
    st.Page("views/fleet.py", title="Fleet", icon=":material/dns:", default=True),
    st.Page("views/campaigns.py", title="Campaigns", icon=":material/playlist_play:"),
    st.Page("views/compare.py", title="Compare", icon=":material/bar_chart:"),
    st.Page("views/tradeoffs.py", title="Trade-offs", icon=":material/scatter_plot:"),
    st.Page("views/trial_detail.py", title="Trial detail", icon=":material/timeline:"),
    st.Page("views/diff.py", title="Diff", icon=":material/difference:"),
    st.Page("views/profile.py", title="Profile", icon=":material/stacked_bar_chart:"),
]
page = st.navigation(PAGES)

url = store_access.database_url()
missing = store_access.missing_sqlite_file(url)
if missing is not None:
    st.error(
        f"there is no store at {missing} yet: start `edgebench server` (or run "
        "`edgebench db upgrade`), or set EDGEBENCH_DATABASE_URL to an existing store."
    )
    st.stop()

try:
    summary = store_access.read(dashboard_queries.store_summary)
except Exception as exc:  # a bad URL, an unreachable or unmigrated store: say so, no traceback
    st.error(
        store_access.redacted(f"cannot read the store at {url}: {exc}", url) + "\n\n"
        "Check EDGEBENCH_DATABASE_URL; a store that is new or was made by an older edgebench "
        "needs `edgebench db upgrade`."
    )
    st.stop()

if summary["devices"] == 0 and summary["campaigns"] == 0:
    first_run.show()
    st.stop()

page.run()
