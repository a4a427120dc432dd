"""Artifact distribution against a real HTTP server on loopback: the controller's artifact
server (upload, download, ranges, tokens) and the agent's fetch (resume, verify, cache)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agents.artifact_fetch import ArtifactError, fetch
from agents.contract import ArtifactRef
from agents.settings import ARTIFACT_TOKEN_FILE as AGENT_TOKEN_FILE
from agents.settings import AgentSettings
from orchestrator.artifacts import http_server
from orchestrator.artifacts.http_server import ArtifactHandler, ArtifactServer
from orchestrator.settings import Settings

TOKEN = "s3cret-token"
MB = 1 << 20


def blob(seed: int, size: int) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"\0" * (size % 32)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_in_store(root: Path, data: bytes, suffix: str = ".onnx") -> str:
    root.mkdir(parents=True, exist_ok=True)
    digest = sha(data)
    (root / f"{digest}{suffix}").write_bytes(data)
    return digest


def ref_for(server: ArtifactServer, data: bytes) -> ArtifactRef:
    digest = sha(data)
    return ArtifactRef(
        sha256=digest, size=len(data), format="onnx", uri=f"{server.url}/artifacts/{digest}"
    )


def call(server: ArtifactServer, method: str, path: str, token: str | None = TOKEN, **kwargs):
    """One raw HTTP request; returns (status, headers, body)."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers, **kwargs)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def store(tmp_path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture
def server(store):
    with ArtifactServer(store, TOKEN) as running:
        yield running


# -- the server ----------------------------------------------------------------------------
def test_upload_with_the_right_hash_is_stored_once_and_served(server, store):
    data = blob(1, 3 * MB + 17)
    digest = sha(data)
    status, _, body = call(server, "PUT", f"/artifacts/{digest}?suffix=.onnx", body=data)
    assert status == 201, body
    assert (store / f"{digest}.onnx").read_bytes() == data
    status, _, _ = call(server, "PUT", f"/artifacts/{digest}", body=data)
    assert status == 200  # already there: kept, not replaced
    assert sorted(p.name for p in store.iterdir()) == [f"{digest}.onnx"]

    status, headers, body = call(server, "GET", f"/artifacts/{digest}")
    assert status == 200 and body == data
    assert headers["Content-Length"] == str(len(data)) and headers["Accept-Ranges"] == "bytes"
    status, headers, body = call(server, "HEAD", f"/artifacts/{digest}")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))


def test_upload_with_a_wrong_hash_is_refused_and_nothing_is_stored(server, store):
    data = blob(2, 100_000)
    claimed = sha(b"something else")
    status, _, body = call(server, "PUT", f"/artifacts/{claimed}?suffix=.onnx", body=data)
    assert status == 400
    assert f"hash mismatch: the URL names {claimed}, the body has {sha(data)}" in body.decode()
    assert list(store.iterdir()) == []  # no file, no leftover temporary


def test_upload_needs_a_length_and_a_sane_suffix(server, store):
    digest = sha(b"abc")
    status, _, _ = call(server, "PUT", f"/artifacts/{digest}?suffix=/../x", body=b"abc")
    assert status == 400
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.putrequest("PUT", f"/artifacts/{digest}")
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"3\r\nabc\r\n0\r\n\r\n")
    assert connection.getresponse().status == 411
    connection.close()
    assert list(store.iterdir()) == []


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_every_request_needs_the_token(server, store, authorization):
    data = blob(3, 1000)
    digest = put_in_store(store, data)
    headers = {"Authorization": authorization} if authorization else {}
    for method, body in (("GET", None), ("HEAD", None), ("PUT", blob(4, 10))):
        status, response_headers, _ = call(
            server, method, f"/artifacts/{digest}", token=None, headers=headers, body=body
        )
        assert status == 401, method
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert [p.name for p in store.iterdir()] == [f"{digest}.onnx"]


def test_unknown_hash_is_404_and_malformed_paths_are_400(server, store, tmp_path):
    (tmp_path / "secret").write_text("not an artifact")
    assert call(server, "GET", f"/artifacts/{'ab' * 32}")[0] == 404
    for path in (
        "/artifacts/../secret",
        "/artifacts/%2e%2e%2fsecret",
        f"/artifacts/{'AB' * 32}",
        f"/artifacts/{'ab' * 31}",
        f"/artifacts/{'ab' * 32}/x",
        f"/artifacts/{'ab' * 32}.onnx",
        "/",
        "/etc/passwd",
    ):
        status, _, body = call(server, "GET", path)
        assert status == 400, path
        assert b"not an artifact" not in body


def test_range_requests_serve_the_rest_of_the_file(server, store):
    data = blob(5, 50_000)
    digest = put_in_store(store, data, ".tflite")
    status, headers, body = call(
        server, "GET", f"/artifacts/{digest}", headers={"Range": "bytes=12345-"}
    )
    assert status == 206 and body == data[12345:]
    assert headers["Content-Range"] == f"bytes 12345-{len(data) - 1}/{len(data)}"
    status, headers, _ = call(
        server, "GET", f"/artifacts/{digest}", headers={"Range": f"bytes={len(data)}-"}
    )
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"


# -- the agent's fetch ---------------------------------------------------------------------
def test_download_lands_in_the_cache_verified(server, store, tmp_path):
    data = blob(6, 2 * MB + 5)
    put_in_store(store, data)
    cache = tmp_path / "cache"
    path = fetch(ref_for(server, data), cache, TOKEN, 100 * MB)
    assert path == cache / sha(data) and path.read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == [".lock", sha(data)]


class CutOnce(ArtifactHandler):
    """The real handler, except that the first download breaks off halfway."""

    ranges: list = []
    cut = threading.Event()

    def _serve(self, send_body: bool) -> None:
        type(self).ranges.append(self.headers.get("Range"))
        super()._serve(send_body)

    def send_file_range(self, handle, start: int, length: int) -> None:  # noqa: ANN001
        if self.cut.is_set():
            return super().send_file_range(handle, start, length)
        self.cut.set()
        handle.seek(start)
        self.wfile.write(handle.read(length // 2))
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_WR)


def test_a_truncated_transfer_is_resumed_with_a_range_request(store, tmp_path):
    data = blob(7, 3 * MB + 1)
    put_in_store(store, data)
    CutOnce.ranges, CutOnce.cut = [], threading.Event()
    with ArtifactServer(store, TOKEN, handler=CutOnce) as flaky:
        path = fetch(ref_for(flaky, data), tmp_path / "cache", TOKEN, 100 * MB)
    assert path.read_bytes() == data
    assert CutOnce.ranges == [None, f"bytes={len(data) // 2}-"]
    assert not (tmp_path / "cache" / f"{sha(data)}.part").exists()


def test_a_part_left_by_an_earlier_run_is_resumed(server, store, tmp_path):
    data = blob(8, 200_000)
    put_in_store(store, data)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{sha(data)}.part").write_bytes(data[:70_000])
    CutOnce.ranges, CutOnce.cut = [], threading.Event()
    CutOnce.cut.set()  # no cut: just record what is asked
    with ArtifactServer(store, TOKEN, handler=CutOnce) as recording:
        assert fetch(ref_for(recording, data), cache, TOKEN, 100 * MB).read_bytes() == data
    assert CutOnce.ranges == ["bytes=70000-"]


def test_a_wrong_hash_is_reported_and_nothing_stays_in_the_cache(server, store, tmp_path):
    data = blob(9, 100_000)
    digest = put_in_store(store, data)
    tampered = bytearray(data)
    tampered[5000] ^= 0xFF
    (store / f"{digest}.onnx").write_bytes(bytes(tampered))
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError) as caught:
        fetch(ref_for(server, data), cache, TOKEN, 100 * MB)
    assert str(caught.value).startswith(
        f"artifact hash mismatch: expected {digest}, got {sha(bytes(tampered))}"
    )
    assert [p.name for p in cache.iterdir()] == [".lock"]


def test_token_and_unknown_artifact_errors_say_what_to_do(server, store, tmp_path):
    data = blob(10, 1000)
    put_in_store(store, data)
    ref = ref_for(server, data)
    with pytest.raises(
        ArtifactError, match="refused this device's token.*EDGEBENCH_ARTIFACT_TOKEN"
    ):
        fetch(ref, tmp_path / "cache", "wrong", MB)
    with pytest.raises(ArtifactError, match="needs a token and this device has none"):
        fetch(ref, tmp_path / "cache", None, MB)
    missing = ref.model_copy(
        update={"sha256": "cd" * 32, "uri": f"{server.url}/artifacts/{'cd' * 32}"}
    )
    with pytest.raises(ArtifactError, match="is not on the artifact server"):
        fetch(missing, tmp_path / "cache", TOKEN, MB)


def test_the_cache_keeps_under_its_cap_evicting_the_least_recently_used(server, store, tmp_path):
    a, b, c = (blob(20 + i, 1000) for i in range(3))
    for data in (a, b, c):
        put_in_store(store, data)
    cache = tmp_path / "cache"

    def cached() -> set:
        return {p.name for p in cache.iterdir() if p.name != ".lock"}

    for data in (a, b, a, c):  # a used again after b: b is the least recently used
        fetch(ref_for(server, data), cache, TOKEN, 2500)
        time.sleep(0.02)
    assert cached() == {sha(a), sha(c)}
    big = blob(30, 4000)
    put_in_store(store, big)
    path = fetch(ref_for(server, big), cache, TOKEN, 2500)  # over the cap alone: still kept
    assert path.read_bytes() == big and cached() == {sha(big)}


def test_a_cached_artifact_needs_no_network(store, tmp_path):
    data = blob(40, 300_000)
    put_in_store(store, data)
    cache = tmp_path / "cache"
    with ArtifactServer(store, TOKEN) as running:
        ref = ref_for(running, data)
        first = fetch(ref, cache, TOKEN, 100 * MB)
    # the server is gone: the cache answers
    assert fetch(ref, cache, TOKEN, 100 * MB) == first
    other = ref.model_copy(update={"sha256": "ef" * 32, "uri": ref.uri[:-64] + "ef" * 32})
    with pytest.raises(ArtifactError, match="cannot download artifact efefefefefef.*running"):
        fetch(other, cache, TOKEN, 100 * MB, patience_s=0)


def test_a_download_rides_out_a_link_that_is_down_for_a_while(store, tmp_path):
    """Nothing listens for the first ~3 s (a cut link); the fetch keeps trying and lands."""
    import threading

    from orchestrator.broker import free_port

    data = blob(41, 200_000)
    put_in_store(store, data)
    port = free_port()
    late: dict = {}

    def start_late() -> None:
        time.sleep(3)
        late["server"] = ArtifactServer(store, TOKEN, port=port)

    starter = threading.Thread(target=start_late)
    starter.start()
    ref = ArtifactRef(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        format="onnx",
        uri=f"http://127.0.0.1:{port}/artifacts/{hashlib.sha256(data).hexdigest()}",
    )
    try:
        path = fetch(ref, tmp_path / "cache", TOKEN, 100 * MB, patience_s=30)
        assert path.read_bytes() == data
    finally:
        starter.join()
        late["server"].stop()


def test_a_damaged_cache_entry_is_fetched_again(server, store, tmp_path):
    data = blob(41, 10_000)
    put_in_store(store, data)
    cache = tmp_path / "cache"
    path = fetch(ref_for(server, data), cache, TOKEN, MB)
    path.write_bytes(b"bit rot")
    assert fetch(ref_for(server, data), cache, TOKEN, MB).read_bytes() == data


def test_paths_and_file_uris_are_verified_in_place(tmp_path):
    data = blob(50, 5000)
    model = tmp_path / "shared" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(data)
    cache = tmp_path / "cache"
    for uri in (str(model), model.as_uri()):
        ref = ArtifactRef(sha256=sha(data), size=len(data), format="onnx", uri=uri)
        assert fetch(ref, cache, None, MB) == model
    assert not cache.exists()  # nothing copied
    wrong = ArtifactRef(sha256="12" * 32, size=len(data), format="onnx", uri=str(model))
    with pytest.raises(ArtifactError, match=f"artifact hash mismatch: expected {'12' * 32}"):
        fetch(wrong, cache, None, MB)
    gone = wrong.model_copy(update={"uri": str(tmp_path / "nope.onnx")})
    with pytest.raises(ArtifactError, match="not found at"):
        fetch(gone, cache, None, MB)
    ftp = wrong.model_copy(update={"uri": "ftp://host/x"})
    with pytest.raises(ArtifactError, match="scheme 'ftp' is not supported"):
        fetch(ftp, cache, None, MB)


# -- the controller's token and the URL the scheduler sends --------------------------------
def test_the_token_is_generated_once_privately_and_agents_here_read_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEBENCH_ARTIFACT_TOKEN", raising=False)
    assert AGENT_TOKEN_FILE == http_server.ARTIFACT_TOKEN_FILE
    token = http_server.controller_token(tmp_path, None)
    assert http_server.controller_token(tmp_path, None) == token and len(token) >= 32
    assert stat.S_IMODE((tmp_path / AGENT_TOKEN_FILE).stat().st_mode) == 0o600
    assert AgentSettings(home=tmp_path).resolved_artifact_token() == token
    assert AgentSettings(home=tmp_path, artifact_token="given").resolved_artifact_token() == "given"
    assert http_server.controller_token(tmp_path, "configured") == "configured"


def test_the_scheduler_sends_the_served_url_or_else_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEBENCH_ARTIFACT_BASE_URL", raising=False)
    settings = Settings(home=tmp_path)
    digest = "ab" * 32
    assert settings.artifact_uri(digest, "/store/x.onnx") == "/store/x.onnx"
    http_server.record(tmp_path, "http://127.0.0.1:5555")
    assert settings.artifact_uri(digest, "/x") == f"http://127.0.0.1:5555/artifacts/{digest}"
    http_server.forget(tmp_path)
    assert settings.artifact_uri(digest, "/x") == "/x"
    # a record left by a server that died is ignored
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    (tmp_path / http_server.SERVER_RECORD_FILE).write_text(
        json.dumps({"url": "http://127.0.0.1:1", "pid": dead})
    )
    assert settings.artifact_uri(digest, "/x") == "/x"
    configured = Settings(home=tmp_path, artifact_base_url="https://ctl.lab:8443/")
    assert configured.artifact_uri(digest, "/x") == f"https://ctl.lab:8443/artifacts/{digest}"


def test_the_server_binds_where_told(store):
    with ArtifactServer(store, TOKEN, host="0.0.0.0") as everywhere:
        assert urlsplit(everywhere.url).port == everywhere.port
        assert call(everywhere, "GET", f"/artifacts/{'ab' * 32}")[0] == 404
    with pytest.raises(ValueError, match="non-empty token"):
        ArtifactServer(store, "")


def test_a_restarted_controller_serves_on_its_previous_port_when_free(tmp_path):
    """Specs already sent carry the server's URL: a restart keeps it valid when it can."""
    from orchestrator.server import start_artifact_server

    settings = Settings(home=tmp_path, artifact_token=TOKEN)
    first = start_artifact_server(settings)
    port = first.port
    first.stop()
    http_server.forget(tmp_path)
    second = start_artifact_server(settings)
    assert second.port == port
    # while something else holds it, the server takes another port rather than failing
    third = start_artifact_server(settings)
    assert third.port != port
    second.stop()
    third.stop()
