"""The device's signing key on disk: one 0600 file in the agent's work folder.

The key comes from an enrollment token (agents.contract.signing.device_key). A restarted
agent reuses the key it has; a token with another id (a re-enrollment, for instance after
`edgebench devices provision` ran again) replaces it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agents.contract.signing import device_key, parse_token, secret_hash

KEY_FILE = "device.key"


class CredentialsError(RuntimeError):
    """The agent has no key and no enrollment token, or its key file is unusable."""


@dataclass(frozen=True)
class DeviceKey:
    device: str
    token_id: str
    key: bytes


def key_path(work_dir: Path) -> Path:
    return Path(work_dir) / KEY_FILE


def load(work_dir: Path, device: str) -> Optional[DeviceKey]:
    path = key_path(work_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read the device key {path}: {exc}") from None
    try:
        saved = DeviceKey(str(data["device"]), str(data["token_id"]), bytes.fromhex(data["key"]))
    except (KeyError, TypeError, ValueError):
        raise CredentialsError(
            f"the device key {path} is damaged: remove it and enroll again"
        ) from None
    return saved if saved.device == device else None


def save(work_dir: Path, saved: DeviceKey) -> None:
    """Write the key atomically, readable by this user only."""
    path = key_path(work_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"device": saved.device, "token_id": saved.token_id, "key": saved.key.hex()}, handle
        )
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def resolve(
    work_dir: Path, device: str, token: Optional[str], local_token: Optional[str] = None
) -> DeviceKey:
    """The key to sign with. `token` (EDGEBENCH_ENROLLMENT_TOKEN) with another id than the
    saved key's replaces it (a re-enrollment); `local_token` (the one a controller on this
    machine records) is used only when there is no saved key."""
    saved = load(work_dir, device)
    chosen = token or (local_token if saved is None else None)
    if chosen:
        token_id, secret = parse_token(chosen)
        if saved is None or saved.token_id != token_id:
            saved = DeviceKey(device, token_id, device_key(secret_hash(secret), device))
            save(work_dir, saved)
        return saved
    if saved is None:
        raise CredentialsError(
            f"device {device} has no key ({key_path(work_dir)}) and no enrollment token: set "
            "EDGEBENCH_ENROLLMENT_TOKEN to one from `edgebench devices token create` "
            "(or start `edgebench server` on this machine, which records one for local agents)"
        )
    return saved
