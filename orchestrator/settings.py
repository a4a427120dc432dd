"""Controller configuration from EDGEBENCH_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.contract import read_embedded_broker_url
from orchestrator.artifacts.http_server import recorded_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEBENCH_", extra="ignore")

    home: Path = Path.home() / ".edgebench"
    broker_url: Optional[str] = None
    # The CA file that signed a rediss:// broker's certificate (default: the system's CAs).
    broker_ca: Optional[Path] = None
    # Accept a broker URL with no password on a host beyond loopback (broker_rules).
    insecure: bool = False
    database_url: Optional[str] = None
    offline_after_s: float = 15.0
    scheduler_interval_s: float = 1.0
    # A sent trial that no agent has started after this long is sent again.
    start_timeout_s: float = 60.0
    # A started trial fails when no result came within its time limit + this (its lease);
    # so do the trials of a device offline for longer than that (scheduler.LEASE_GRACE_S).
    lease_grace_s: float = 60.0
    # Ingest loops of the controller (ingest_workers): default 2 on PostgreSQL with 2 cores or
    # more; always 1 on SQLite.
    ingest_processes: Optional[int] = Field(None, ge=1, le=64)
    # How long a starting controller waits for the lease of one that died without releasing it.
    controller_lease_wait_s: float = 35.0
    # Addresses the embedded broker listens on, comma-separated. Add one that devices on
    # other hosts can reach; the embedded broker always has a password.
    broker_bind: str = "127.0.0.1"
    # Provisioning: the broker URL as devices reach it, when it differs from broker_url
    # (default: broker_url, its loopback host replaced by the controller's address as the
    # device sees it over SSH).
    agent_broker_url: Optional[str] = None
    # Provisioning: a package index devices can reach. Without one, the controller uploads
    # the agent's dependencies as wheels (devices may have no internet).
    agent_index_url: Optional[str] = None
    # The artifact server `edgebench server` runs (docs/ARTIFACTS.md): the address it binds
    # (0.0.0.0 for devices on other hosts), its port (0: a free one), the base URL agents are
    # given (default: its own), and its bearer token (default: generated into home, 0600).
    artifact_server: bool = True
    artifact_bind: str = "127.0.0.1"
    artifact_port: int = Field(0, ge=0, le=65535)
    artifact_base_url: Optional[str] = None
    artifact_token: Optional[str] = None
    # Provisioning: where the wheelhouses built for devices are kept (default: home/wheelhouse).
    wheelhouse_dir: Optional[Path] = None

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'edgebench.db'}"

    def uses_default_database(self) -> bool:
        return self.database_url is None

    def resolved_broker_url(self) -> Optional[str]:
        return self.broker_url or read_embedded_broker_url(self.home)

    def artifact_dir(self) -> Path:
        return self.home / "artifacts"

    def resolved_artifact_base_url(self) -> Optional[str]:
        """EDGEBENCH_ARTIFACT_BASE_URL, else the artifact server running on this machine."""
        if self.artifact_base_url:
            return self.artifact_base_url.rstrip("/")
        return recorded_url(self.home)

    def artifact_uri(self, sha256: str, path: str) -> str:
        """Where agents fetch an artifact: over HTTP when served, else its shared path."""
        base = self.resolved_artifact_base_url()
        return f"{base}/artifacts/{sha256}" if base else path

    def resolved_wheelhouse_dir(self) -> Path:
        return self.wheelhouse_dir or (self.home / "wheelhouse")

    def broker_bind_addresses(self) -> list[str]:
        return [address.strip() for address in self.broker_bind.split(",") if address.strip()]
