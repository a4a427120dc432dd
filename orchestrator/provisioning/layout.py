"""Where an agent's files live on its device: everything under one folder per device name."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REMOTE_DIR = ".edgebench-agent"  # under the SSH user's home, then the device name
UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class AgentLayout:
    root: str  # absolute
    name: str

    @classmethod
    def on_device(cls, name: str, home: str, remote_dir: str | None = None) -> AgentLayout:
        """`remote_dir` absolute, or relative to the SSH user's home; default per device name."""
        chosen = remote_dir or f"{DEFAULT_REMOTE_DIR}/{name}"
        root = chosen if chosen.startswith("/") else f"{home.rstrip('/')}/{chosen}"
        return cls(root=root.rstrip("/") or "/", name=name)

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def wheelhouse(self) -> str:
        return f"{self.root}/wheelhouse"

    @property
    def env_file(self) -> str:
        return f"{self.root}/agent.env"

    @property
    def log_file(self) -> str:
        return f"{self.root}/agent.log"

    @property
    def pid_file(self) -> str:
        return f"{self.root}/agent.pid"

    @property
    def supervisor(self) -> str:
        return f"{self.root}/supervise.sh"

    @property
    def agent_home(self) -> str:
        """EDGEBENCH_HOME of the agent: its outbox and trial folders."""
        return f"{self.root}/home"

    @property
    def edgebench(self) -> str:
        return f"{self.venv}/bin/edgebench"

    @property
    def unit_name(self) -> str:
        return f"edgebench-agent-{self.name}.service"

    @property
    def unit_path(self) -> str:
        return f"{UNIT_DIR}/{self.unit_name}"
