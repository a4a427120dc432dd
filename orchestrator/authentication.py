"""Who sent a message: checks an agent message's signature against its device's key, and
turns a registration signed with a key derived from an enrollment token into that key.

Every rule is in docs/SECURITY.md. A refusal raises repository.Rejected with its reason.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Optional

from sqlalchemy.orm import Session

from agents.contract import Registration
from agents.contract.signing import device_key, signature_of, verify
from orchestrator.store import repository
from orchestrator.store.models import DeviceCredential, EnrollmentToken, utcnow
from orchestrator.store.repository import Rejected, as_utc


def authenticate(
    session: Session,
    wire: dict[str, Any],
    message: Any,
    credentials: Optional[dict[str, DeviceCredential]] = None,
) -> str:
    """The signature of `wire`, once it is known to come from `message.device`.

    `credentials`: active credentials already loaded (repository.active_credentials) for a
    batch of messages; a device not in it is looked up."""
    signature = signature_of(wire)
    if signature is None:
        raise Rejected("unsigned", f"unsigned {wire.get('kind')} message from {message.device}")
    credential = (credentials or {}).get(message.device) or repository.active_credential(
        session, message.device
    )
    if (
        isinstance(message, Registration)
        and message.enrollment_token
        and (credential is None or credential.token_id != message.enrollment_token)
    ):
        _enroll(session, wire, message)
        return signature
    if credential is None:
        if repository.had_credentials(session, message.device):
            raise Rejected("revoked", f"device {message.device}'s key was revoked")
        raise Rejected("unknown_device", f"device {message.device} has no key: enroll it first")
    if not verify(wire, bytes.fromhex(credential.key)):
        raise Rejected("bad_signature", f"bad signature on a message from {message.device}")
    return signature


def _enroll(session: Session, wire: dict[str, Any], message: Registration) -> None:
    token = session.get(EnrollmentToken, message.enrollment_token, with_for_update=True)
    refused = _why_not(token, message.device)
    if refused:
        raise Rejected(
            "enrollment_refused",
            f"registration of {message.device} with token {message.enrollment_token}: {refused}",
        )
    key = device_key(token.secret_hash, message.device)
    if not verify(wire, key):
        raise Rejected(
            "bad_signature",
            f"registration of {message.device} is not signed with the key of token {token.id}",
        )
    repository.enroll(session, token, message.device, key)


def _why_not(token: EnrollmentToken | None, device: str) -> str | None:
    if token is None:
        return "no such token"
    if token.revoked_at is not None:
        return "the token was revoked"
    if token.used_at is not None and not token.local:
        return f"the token was already used (by {token.used_by})"
    expires = as_utc(token.expires_at)
    if expires is not None and expires <= utcnow():
        return "the token has expired"
    if token.name_pattern and not fnmatch.fnmatchcase(device, token.name_pattern):
        return f"the token is for names matching {token.name_pattern!r}"
    return None
