"""Where each provisioned agent lives, kept on the controller so that `devices deprovision`,
`upgrade` and `logs` find it by device name: EDGEBENCH_HOME/provisioned/NAME.json.

Only addresses and paths are kept (the key's path, never a key or a password).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from orchestrator.provisioning import ProvisionError
from orchestrator.provisioning.request import Target


class ProvisionedAgent(BaseModel):
    name: str
    host: str
    user: Optional[str] = None
    port: int = 22
    identity: Optional[str] = None
    known_hosts: Optional[str] = None
    python: str
    runtimes: list[str]
    tags: list[str]
    root: str  # the agent's folder on the device
    service: str  # "systemd" or "supervised"
    sudo: str = ""  # "sudo -n " when systemd needs it
    broker_url_redacted: str = ""
    index_url: Optional[str] = None
    env: dict[str, str] = {}

    @property
    def target(self) -> Target:
        return Target(host=self.host, user=self.user, port=self.port)


def _folder(home: Path) -> Path:
    return home / "provisioned"


def save(home: Path, record: ProvisionedAgent) -> None:
    folder = _folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.name}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(record.model_dump_json(indent=2))
    os.replace(temporary, path)


def load(home: Path, name: str) -> ProvisionedAgent:
    path = _folder(home) / f"{name}.json"
    try:
        return ProvisionedAgent.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise ProvisionError(
            f"no agent named {name} was provisioned from this controller (nothing in {path.parent})"
        ) from None
    except ValueError as exc:
        raise ProvisionError(f"unreadable provisioning record {path}: {exc}") from None


def load_all(home: Path) -> list[ProvisionedAgent]:
    return [load(home, path.stem) for path in sorted(_folder(home).glob("*.json"))]


def remove(home: Path, name: str) -> None:
    (_folder(home) / f"{name}.json").unlink(missing_ok=True)
