"""Controller configuration from EDGEBENCH_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.contract import read_embedded_broker_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEBENCH_", extra="ignore")

    home: Path = Path.home() / ".edgebench"
    broker_url: Optional[str] = None
    database_url: Optional[str] = None
    offline_after_s: float = 15.0
    scheduler_interval_s: float = 1.0
    # A sent trial that no agent has started after this long is sent again.
    start_timeout_s: float = 60.0
    # How long a starting controller waits for the lease of one that died without releasing it.
    controller_lease_wait_s: float = 35.0

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'edgebench.db'}"

    def uses_default_database(self) -> bool:
        return self.database_url is None

    def resolved_broker_url(self) -> Optional[str]:
        return self.broker_url or read_embedded_broker_url(self.home)

    def artifact_dir(self) -> Path:
        return self.home / "artifacts"
