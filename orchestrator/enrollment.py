"""Enrollment tokens: made here, spent by an agent's first registration (docs/SECURITY.md).

The store keeps a token's public id and the hash of its secret; the token itself is shown
once, to whoever creates it. The controller also keeps one reusable token for agents on
its own machine, in EDGEBENCH_HOME (0600), so the embedded default needs no typing.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from agents.contract import LOCAL_ENROLLMENT_TOKEN_FILE
from agents.contract.signing import new_token
from orchestrator.store import repository
from orchestrator.store.models import utcnow

# A provisioned agent starts within seconds of getting its token; an hour is ample.
PROVISIONING_EXPIRY = timedelta(hours=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '24h', '7d' → a timedelta; ValueError names the bad value."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text or "")
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h or d")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def create_token(
    session: Session, expires_in: timedelta | None, name_pattern: str | None = None
) -> tuple[str, datetime | None]:
    """A one-time token (to show once) and when it expires."""
    token, token_id, secret_hash = new_token()
    expires_at = utcnow() + expires_in if expires_in else None
    repository.add_token(
        session, token_id, secret_hash, expires_at=expires_at, name_pattern=name_pattern
    )
    return token, expires_at


def token_for_device(session: Session, name: str, expires_in: timedelta) -> str:
    """A one-time token that enrolls exactly the device `name` (used by provisioning)."""
    token, _ = create_token(session, expires_in, name_pattern=glob_literal(name))
    return token


def glob_literal(name: str) -> str:
    """`name` as an fnmatch pattern matching only itself."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def local_token_path(home: Path) -> Path:
    return Path(home) / LOCAL_ENROLLMENT_TOKEN_FILE


def record_local_token(sessions: sessionmaker[Session], home: Path) -> Path:
    """Replace the controller's token for local agents and write it, 0600, into `home`.

    Keys already derived from an earlier local token stay valid."""
    token, token_id, secret_hash = new_token()
    with sessions.begin() as session:
        repository.revoke_local_tokens(session)
        repository.add_token(session, token_id, secret_hash, local=True)
    path = local_token_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def forget_local_token(sessions: sessionmaker[Session], home: Path) -> None:
    """A stopping controller takes its local token away (keys made from it stay valid)."""
    local_token_path(home).unlink(missing_ok=True)
    with sessions.begin() as session:
        repository.revoke_local_tokens(session)
