"""Content-addressed files: sha256 -> file, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(root: Path, data: bytes, suffix: str) -> tuple[str, Path]:
    """Store bytes under their hash; returns (sha256, path). Idempotent."""
    digest = sha256_of(data)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{digest}{suffix}"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".incoming-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return digest, path
