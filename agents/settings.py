"""Agent configuration from EDGEBENCH_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.contract import read_embedded_broker_url


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEBENCH_", extra="ignore")

    home: Path = Path.home() / ".edgebench"
    broker_url: Optional[str] = None
    heartbeat_s: float = 3.0
    work_dir: Optional[Path] = None
    # A command printing the device's power draw in watts (USB meter, smart plug script).
    energy_command: Optional[str] = None

    def resolved_broker_url(self) -> str:
        url = self.broker_url or read_embedded_broker_url(self.home)
        if not url:
            raise RuntimeError(
                "no broker configured: set EDGEBENCH_BROKER_URL (redis:// or rediss://), "
                f"or start `edgebench server` on this machine (it records one in {self.home})"
            )
        return url

    def trial_dir(self) -> Path:
        return self.work_dir or (self.home / "agent")
