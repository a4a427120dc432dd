"""The dashboard's one way into the store: read-only sessions on the configured URL.

Settings are read on every script run (not at import), so a changed EDGEBENCH_* variable
takes effect on the next run, as it does in tests that point the app at several stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import streamlit as st

from orchestrator.settings import Settings
from orchestrator.store import queries

T = TypeVar("T")


def settings() -> Settings:
    return Settings()


def database_url() -> str:
    return settings().resolved_database_url()


@st.cache_resource
def _sessions(url: str):  # noqa: ANN202
    return queries.reader(url)


def read(query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one read-only query function in a fresh session."""
    with _sessions(database_url())() as session:
        return query(session, *args, **kwargs)


def redacted(text: str, url: str) -> str:
    """`text` with the URL's password masked: the page may be shown to people who hold none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(f":{password}@", ":***@") if password else text


def missing_sqlite_file(url: str) -> Path | None:
    """A SQLite store that does not exist yet; opening it would create an empty file."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return Path(path)
