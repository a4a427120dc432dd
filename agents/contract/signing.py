"""Message signatures and enrollment tokens, shared by the agent and the controller.

An agent signs each message it sends with its device key: HMAC-SHA256 over the canonical
JSON (sorted keys, no whitespace, UTF-8) of the envelope's ``schema``, ``kind`` and ``body``.
The key is derived from an enrollment token, so it never travels over the broker:
``key = HMAC-SHA256(sha256(secret), "edgebench-device-key/v1:" + device)``. The controller
keeps only ``sha256(secret)`` of each token and derives the same key when the agent's first
registration (signed with it) names the token's id. See docs/SECURITY.md.

Stdlib only, Python 3.9 safe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Dict, Optional, Tuple

SIGNATURE_FIELD = "signature"
TOKEN_PREFIX = "ebt1"
TOKEN_ID_PATTERN = r"[0-9a-f]{16}"
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}\.({TOKEN_ID_PATTERN})\.([A-Za-z0-9_-]{{32,128}})$")
_KEY_LABEL = b"edgebench-device-key/v1:"


class TokenError(ValueError):
    """An enrollment token that is not of the form ebt1.<id>.<secret>."""


def new_token() -> Tuple[str, str, str]:
    """A fresh token: (the token to hand out, its public id, the hash the controller keeps)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}.{token_id}.{secret}", token_id, secret_hash(secret)


def parse_token(token: str) -> Tuple[str, str]:
    """(id, secret) of a token; TokenError says what is wrong without echoing it."""
    found = _TOKEN.match((token or "").strip())
    if not found:
        raise TokenError("the enrollment token is malformed (expected ebt1.<id>.<secret>)")
    return found.group(1), found.group(2)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def device_key(token_secret_hash: str, device: str) -> bytes:
    """The device's signing key, from the hash of its enrollment token's secret."""
    return hmac.new(
        bytes.fromhex(token_secret_hash), _KEY_LABEL + device.encode("utf-8"), hashlib.sha256
    ).digest()


def canonical(wire: Dict[str, Any]) -> bytes:
    """The bytes a signature covers: schema, kind and body; sorted keys, no whitespace."""
    signed = {key: wire.get(key) for key in ("schema", "kind", "body")}
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def signature(wire: Dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(wire), hashlib.sha256).hexdigest()


def sign(wire: Dict[str, Any], key: bytes) -> Dict[str, Any]:
    """The envelope with its signature added."""
    return {**wire, SIGNATURE_FIELD: signature(wire, key)}


def signature_of(wire: Dict[str, Any]) -> Optional[str]:
    """The signature an envelope carries, or None when it has none of the right shape."""
    value = wire.get(SIGNATURE_FIELD)
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value
    return None


def verify(wire: Dict[str, Any], key: bytes) -> bool:
    given = signature_of(wire)
    return given is not None and hmac.compare_digest(given, signature(wire, key))
