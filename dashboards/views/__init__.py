"""Dashboard pages: Streamlit scripts that dashboards/app.py runs through st.navigation."""
