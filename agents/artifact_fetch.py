"""Turns a trial's ArtifactRef into a local file, verified against its sha256.

``http(s)://`` artifacts are downloaded once into the agent's cache (as ``<sha256>``, written
as ``<sha256>.part`` until complete), resumed with a Range request when a transfer breaks,
verified before use, and kept under a size cap by evicting the least recently used files.
``file://`` URIs and plain paths (a shared filesystem) are verified in place, not copied.

Stdlib only and Python 3.9 syntax: this runs on Raspberry Pi OS and JetPack devices.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import unquote, urlparse

from agents.contract import ArtifactRef

BLOCK = 1 << 20
TIMEOUT_S = 30.0
# Attempts in a row that bring no new bytes before a download is given up.
# How long a download keeps trying while no byte arrives (a flaky or briefly cut link):
# it gives up only when both this many attempts and this many seconds have passed.
ATTEMPTS_WITHOUT_PROGRESS = 4
PATIENCE_S = 60.0
PART_SUFFIX = ".part"
CACHE_ENTRY = re.compile(r"^[0-9a-f]{64}(\.part)?$")
TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}


class ArtifactError(Exception):
    """An artifact that cannot be had, with a reason a user can act on."""


def fetch(
    ref: ArtifactRef,
    cache_dir: Path,
    token: Optional[str],
    max_cache_bytes: int,
    patience_s: float = PATIENCE_S,
) -> Path:
    """The local, verified file of ``ref``; raises ArtifactError saying what went wrong."""
    parsed = urlparse(ref.uri)
    if parsed.scheme in ("", "file"):
        return verified_in_place(ref, Path(unquote(parsed.path)))
    if parsed.scheme not in ("http", "https"):
        raise ArtifactError(
            f"artifact scheme {parsed.scheme!r} is not supported by this agent "
            f"(http, https, file or a path): {ref.uri}"
        )
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(
            f"cannot create the artifact cache {cache_dir}: {exc.strerror} "
            "(set EDGEBENCH_ARTIFACT_CACHE_DIR to a writable folder)"
        ) from None
    with _cache_lock(cache_dir):
        target = cache_dir / ref.sha256
        if target.is_file():
            if sha256_of(target) == ref.sha256:
                os.utime(target)  # most recently used
                evict(cache_dir, max_cache_bytes, keep=target)
                return target
            target.unlink()  # damaged on disk since it was verified: fetch it again
        part = cache_dir / (ref.sha256 + PART_SUFFIX)
        download(ref, part, token, patience_s)
        got = sha256_of(part)
        if got != ref.sha256:
            received = part.stat().st_size
            part.unlink()
            raise ArtifactError(
                f"artifact hash mismatch: expected {ref.sha256}, got {got} "
                f"({received} bytes from {ref.uri}, {ref.size} expected); the file on the "
                "controller no longer matches its recorded hash"
            )
        os.replace(part, target)
        os.utime(target)
        evict(cache_dir, max_cache_bytes, keep=target)
        return target


def verified_in_place(ref: ArtifactRef, path: Path) -> Path:
    """A file on a shared filesystem, checked against the hash but not copied."""
    if not path.is_file():
        raise ArtifactError(
            f"artifact {ref.sha256[:12]} not found at {path} (mount the controller's artifact "
            "folder at the same path, or run the controller's artifact server)"
        )
    got = sha256_of(path)
    if got != ref.sha256:
        raise ArtifactError(f"artifact hash mismatch: expected {ref.sha256}, got {got} at {path}")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    """One fetch at a time per cache: agents sharing a cache never write the same .part."""
    with open(cache_dir / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The token must not follow a redirect to another host: a redirect is an error."""

    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def download(
    ref: ArtifactRef, part: Path, token: Optional[str], patience_s: float = PATIENCE_S
) -> None:
    """Fill ``part`` with the artifact's bytes, resuming from what it already holds."""
    failures = 0
    stalled_since = time.monotonic()
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > ref.size:  # not this artifact's prefix: start over
            part.unlink()
            have = 0
        if have == ref.size and part.exists():
            return
        try:
            _transfer(ref, part, have, token)
            problem = "the connection closed before the end of the file"
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # our .part does not fit the server's file: start over
                part.unlink()
                problem = "the server refused the resume range"
            elif exc.code in TRANSIENT_HTTP:
                problem = f"HTTP {exc.code} {exc.reason}"
            else:
                raise ArtifactError(http_problem(ref, exc.code, exc.reason, token)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ArtifactError(no_space(ref, part)) from None
            problem = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
        now = part.stat().st_size if part.exists() else 0
        if now >= ref.size:
            return
        if now > have:  # some bytes arrived before the break: resume at once
            failures, stalled_since = 0, time.monotonic()
            continue
        failures += 1
        stalled = time.monotonic() - stalled_since
        if failures >= ATTEMPTS_WITHOUT_PROGRESS and stalled >= patience_s:
            raise ArtifactError(
                f"cannot download artifact {ref.sha256[:12]} from {ref.uri}: {problem} "
                "(is the controller's `edgebench server` running and reachable from this device? "
                "EDGEBENCH_ARTIFACT_BASE_URL on the controller sets the address agents are given)"
            )
        time.sleep(min(0.5 * failures, 5.0))


def _transfer(ref: ArtifactRef, part: Path, have: int, token: Optional[str]) -> None:
    """One request: append to ``part`` from byte ``have`` (or rewrite it on a 200)."""
    headers = {"Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(ref.uri, headers=headers)
    received = 0
    with _OPENER.open(request, timeout=TIMEOUT_S) as response:
        if have and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise http.client.HTTPException(f"unexpected Content-Range {content_range!r}")
            mode = "ab"
        else:  # 200: the whole file, from the start
            mode = "wb"
            have = 0
        limit = ref.size - have + 1  # one byte over is enough to tell the file is wrong
        with part.open(mode) as out:
            while received < limit:
                block = response.read(min(BLOCK, limit - received))
                if not block:
                    break
                out.write(block)
                received += len(block)


def no_space(ref: ArtifactRef, part: Path) -> str:
    """The disk under the cache is full: drop the partial file (it frees the space it took;
    a later fetch starts over) and say where room is needed."""
    with contextlib.suppress(OSError):
        part.unlink()
    try:
        free = f"{shutil.disk_usage(part.parent).free} bytes free"
    except OSError:
        free = "free space unknown"
    return (
        f"no space left on device in the artifact cache {part.parent} ({free}) for artifact "
        f"{ref.sha256[:12]} of {ref.size} bytes: free space there, or set "
        "EDGEBENCH_ARTIFACT_CACHE_DIR to a folder with room"
    )


def http_problem(ref: ArtifactRef, code: int, reason: str, token: Optional[str]) -> str:
    where = f"the artifact server ({ref.uri})"
    if code in (401, 403):
        if not token:
            return (
                f"{where} needs a token and this device has none: set EDGEBENCH_ARTIFACT_TOKEN "
                "to the controller's token (kept in $EDGEBENCH_HOME/artifact_token on the "
                "controller)"
            )
        return (
            f"{where} refused this device's token (HTTP {code}): set EDGEBENCH_ARTIFACT_TOKEN "
            "to the controller's token (kept in $EDGEBENCH_HOME/artifact_token on the controller)"
        )
    if code == 404:
        return (
            f"artifact {ref.sha256[:12]} is not on {where}: it was removed from the "
            "controller's store; add or build the model again"
        )
    return f"{where} answered HTTP {code} {reason}"


def evict(cache_dir: Path, max_bytes: int, keep: Path) -> None:
    """Delete least recently used cache entries until the cache fits ``max_bytes``.

    ``keep`` (the file about to be used) stays even when it alone is over the cap.
    """
    entries = []
    total = 0
    for entry in os.scandir(cache_dir):
        if not CACHE_ENTRY.match(entry.name):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        total += stat.st_size
        if entry.name != keep.name:
            entries.append((stat.st_mtime, entry.name, stat.st_size))
    for _mtime, name, size in sorted(entries):
        if total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cache_dir / name)
        total -= size
