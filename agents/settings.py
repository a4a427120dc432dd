"""Agent configuration from EDGEBENCH_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.contract import LOCAL_ENROLLMENT_TOKEN_FILE, read_embedded_broker_url

# Written by the controller's artifact server (orchestrator.artifacts.http_server), mode 0600.
ARTIFACT_TOKEN_FILE = "artifact_token"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEBENCH_", extra="ignore")

    home: Path = Path.home() / ".edgebench"
    broker_url: Optional[str] = None
    # The CA file that signed a rediss:// broker's certificate (default: the system's CAs).
    broker_ca: Optional[Path] = None
    # Accept a broker URL with no password on a host beyond loopback (broker_rules).
    insecure: bool = False
    heartbeat_s: float = 3.0
    work_dir: Optional[Path] = None
    # A command printing the device's power draw in watts (USB meter, smart plug script).
    energy_command: Optional[str] = None
    # Artifacts served over HTTP are cached here (default: the agent's work folder).
    artifact_cache_dir: Optional[Path] = None
    artifact_cache_bytes: int = Field(2 * 1024**3, ge=0)
    # Seconds a download keeps retrying while no byte arrives (a cut or flaky link).
    artifact_patience_s: float = Field(60.0, ge=0, le=3600)
    # The controller's artifact token; on the controller's machine, read from its record.
    artifact_token: Optional[str] = None
    # A one-time token from `edgebench devices token create`; used once, for the device key.
    enrollment_token: Optional[str] = None

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

    def artifact_cache(self, device: str) -> Path:
        return self.artifact_cache_dir or (self.trial_dir() / device / "artifacts")

    def resolved_artifact_token(self) -> Optional[str]:
        """EDGEBENCH_ARTIFACT_TOKEN, else the token a controller on this machine recorded."""
        if self.artifact_token:
            return self.artifact_token
        try:
            return (self.home / ARTIFACT_TOKEN_FILE).read_text().strip() or None
        except OSError:
            return None

    def local_enrollment_token(self) -> Optional[str]:
        """The token a controller on this machine records for its local agents."""
        try:
            return (self.home / LOCAL_ENROLLMENT_TOKEN_FILE).read_text().strip() or None
        except OSError:
            return None
