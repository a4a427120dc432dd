"""The artifact server: the content store over HTTP, for agents that do not share its disk.

``GET``/``HEAD /artifacts/<sha256>`` streams a stored file (``Range: bytes=N-`` resumes a
broken download); ``PUT /artifacts/<sha256>`` stores an upload once its sha256 checks out.
Every request carries ``Authorization: Bearer <token>``. Stdlib only: it runs in a thread of
``edgebench server``.

The token is EDGEBENCH_ARTIFACT_TOKEN or one generated once into EDGEBENCH_HOME/artifact_token
(mode 0600), where agents on the same machine read it; the running server's URL is recorded
in EDGEBENCH_HOME/artifact_server.json for the scheduler, like the embedded broker's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("edgebench.artifacts")

# Agents on this machine read the token from here (agents.settings names the same file).
ARTIFACT_TOKEN_FILE = "artifact_token"
SERVER_RECORD_FILE = "artifact_server.json"
# The port a server with no fixed port last had: a restarted controller takes it again, so
# the URLs in specs already sent (and queued) stay valid.
LAST_PORT_FILE = "artifact_server.port"
PATH_PATTERN = re.compile(r"^/artifacts/([0-9a-f]{64})$")
SUFFIX_PATTERN = re.compile(r"^\.[A-Za-z0-9]{1,16}$")
RANGE_PATTERN = re.compile(r"^bytes=(\d+)-(\d*)$")
BLOCK = 1 << 20
DEFAULT_MAX_UPLOAD_BYTES = 16 << 30


def stored_file(root: Path, sha256: str) -> Path | None:
    """The content-store file for a hash, whatever its suffix (``<sha256><suffix>``)."""
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        return None
    for entry in entries:
        name = entry.name
        if (name == sha256 or name.startswith(sha256 + ".")) and entry.is_file(
            follow_symlinks=False
        ):
            return Path(entry.path)
    return None


class ArtifactHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ArtifactHTTPServer

    # -- routing ------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._serve(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(send_body=False)

    def do_PUT(self) -> None:  # noqa: N802
        sha256 = self._authorized_sha()
        if sha256 is not None:
            self._receive(sha256)

    def _authorized_sha(self) -> str | None:
        """The request's sha256 once the token and the path check out; else answers and None."""
        if not self._token_ok():
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Bearer realm="edgebench artifacts"')
            self._finish_error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            return None
        match = PATH_PATTERN.match(urlsplit(self.path).path)
        if match is None:
            self._error(HTTPStatus.BAD_REQUEST, "expected /artifacts/<sha256, 64 lowercase hex>")
            return None
        return match.group(1)

    def _token_ok(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        expected = self.server.token.encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), expected
        )

    # -- download -----------------------------------------------------------------------
    def _serve(self, send_body: bool) -> None:
        sha256 = self._authorized_sha()
        if sha256 is None:
            return
        path = stored_file(self.server.root, sha256)
        if path is None:
            self._error(HTTPStatus.NOT_FOUND, f"no artifact {sha256}")
            return
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start, end = 0, size - 1
            status = HTTPStatus.OK
            wanted = self.headers.get("Range")
            if wanted:
                match = RANGE_PATTERN.match(wanted.strip())
                if match is None:  # several ranges, or a suffix range: send the whole file
                    pass
                elif int(match.group(1)) >= size:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self._finish_error(
                        HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, f"the file has {size} bytes"
                    )
                    return
                else:
                    start = int(match.group(1))
                    if match.group(2):
                        end = min(int(match.group(2)), size - 1)
                    if end < start:
                        self._error(HTTPStatus.BAD_REQUEST, f"invalid range {wanted!r}")
                        return
                    status = HTTPStatus.PARTIAL_CONTENT
            length = max(end - start + 1, 0)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{sha256}"')
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if send_body and length:
                self.send_file_range(handle, start, length)

    def send_file_range(self, handle: BinaryIO, start: int, length: int) -> None:
        """Write ``length`` bytes of the file from ``start`` (tests override it to cut a transfer)."""
        self.wfile.flush()
        self.connection.sendfile(handle, offset=start, count=length)

    # -- upload -------------------------------------------------------------------------
    def _receive(self, sha256: str) -> None:
        suffix = parse_qs(urlsplit(self.path).query).get("suffix", [""])[0]
        if suffix and not SUFFIX_PATTERN.match(suffix):
            self._error(HTTPStatus.BAD_REQUEST, f"invalid suffix {suffix!r} (e.g. .onnx)")
            return
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length") is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
            return
        try:
            length = int(self.headers["Content-Length"])
        except ValueError:
            length = -1
        if length < 0:
            self._error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return
        if length > self.server.max_upload_bytes:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{length} bytes is over the {self.server.max_upload_bytes} byte upload limit",
            )
            return
        root = self.server.root
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                got = self._read_body(out, length)
            if got is None:
                log.warning("upload of %s ended before its %d bytes", sha256, length)
                self.close_connection = True
                return
            stored = stored_file(root, sha256)
            if got == sha256 and stored is None:
                os.replace(tmp, root / f"{sha256}{suffix}")
                log.info("stored uploaded artifact %s%s (%d bytes)", sha256, suffix, length)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        # Answered only once nothing half-written is left behind.
        if got != sha256:
            self._error(
                HTTPStatus.BAD_REQUEST,
                f"artifact hash mismatch: the URL names {sha256}, the body has {got}",
            )
        elif stored is not None:
            self._reply(HTTPStatus.OK, f"{sha256} already stored")
        else:
            self._reply(HTTPStatus.CREATED, f"{sha256} stored")

    def _read_body(self, out: BinaryIO, length: int) -> str | None:
        """Copy the request body to ``out``; its sha256, or None when it ended early."""
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            block = self.rfile.read(min(BLOCK, remaining))
            if not block:
                return None
            digest.update(block)
            out.write(block)
            remaining -= len(block)
        out.flush()
        os.fsync(out.fileno())
        return digest.hexdigest()

    # -- replies ------------------------------------------------------------------------
    def _reply(self, status: HTTPStatus, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, text: str) -> None:
        self.send_response(status)
        self._finish_error(status, text)

    def _finish_error(self, status: HTTPStatus, text: str) -> None:
        """Headers already started: add the body and close (an unread request body may follow)."""
        body = (text + "\n").encode() if self.command != "HEAD" else b""
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class ArtifactHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        root: Path,
        token: str,
        handler: type[ArtifactHandler] = ArtifactHandler,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        if not token:
            raise ValueError("the artifact server needs a non-empty token")
        self.root = Path(root)
        self.token = token
        self.max_upload_bytes = max_upload_bytes
        super().__init__(address, handler)


class ArtifactServer:
    """A running artifact server in a background thread. ``stop()`` (or ``with``) ends it."""

    def __init__(
        self,
        root: Path,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[ArtifactHandler] = ArtifactHandler,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        self.httpd = ArtifactHTTPServer((host, port), root, token, handler, max_upload_bytes)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="artifact-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The address this server answers on; on a wildcard bind, this machine's name."""
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

    def __enter__(self) -> ArtifactServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- the controller's token and record ------------------------------------------------------
def _write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically: readers never see it half-written or world-readable."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def controller_token(home: Path, configured: str | None) -> str:
    """EDGEBENCH_ARTIFACT_TOKEN when set, else the one generated once into home (0600)."""
    if configured:
        return configured
    path = Path(home) / ARTIFACT_TOKEN_FILE
    try:
        recorded = path.read_text().strip()
    except OSError:
        recorded = ""
    if recorded:
        return recorded
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return token


def record(home: Path, url: str) -> Path:
    """Record the running server's URL for the scheduler (in this and other processes)."""
    path = Path(home) / SERVER_RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, json.dumps({"url": url, "pid": os.getpid()}))
    return path


def last_port(home: Path) -> int:
    """The port the previous artifact server here listened on, or 0 (any free one)."""
    try:
        port = int((Path(home) / LAST_PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0
    return port if 0 < port < 65536 else 0


def remember_port(home: Path, port: int) -> None:
    Path(home).mkdir(parents=True, exist_ok=True)
    (Path(home) / LAST_PORT_FILE).write_text(f"{port}\n")


def forget(home: Path) -> None:
    """Remove the record, if this process wrote it."""
    path = Path(home) / SERVER_RECORD_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def recorded_url(home: Path) -> str | None:
    """The URL of the artifact server running on this machine, or None (none, or it died)."""
    try:
        recorded = json.loads((Path(home) / SERVER_RECORD_FILE).read_text())
        url, pid = recorded["url"], int(recorded["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return url
