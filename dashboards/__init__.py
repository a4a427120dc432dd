"""The Streamlit dashboard. Reads the store only through orchestrator.store.queries."""
