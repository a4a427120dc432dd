"""SSH connections to devices with Fabric: known host keys only, keys or ssh-agent only.

Fabric accepts unknown host keys by default; here an unknown key is refused unless the
user passed --accept-new-host-key (then it is appended to known_hosts, like OpenSSH's
StrictHostKeyChecking=accept-new). A changed key is always refused.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Optional

import paramiko
from fabric import Connection
from invoke.exceptions import CommandTimedOut
from paramiko.ssh_exception import NoValidConnectionsError

from orchestrator.provisioning import ProvisionError
from orchestrator.provisioning.request import Target

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
CONNECT_TIMEOUT_S = 10
_known_hosts_lock = threading.Lock()


class UnknownHostKey(ProvisionError):
    pass


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as ssh-keygen -l prints it


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key) -> None:  # noqa: ANN001
        raise UnknownHostKey(
            f"{hostname} offered an unknown host key ({key.get_name()} {fingerprint(key)}) that is "
            f"not in {self.known_hosts}: check the fingerprint on the device (ssh-keygen -lf "
            "/etc/ssh/ssh_host_*_key.pub) and add it with ssh-keyscan, or pass "
            "--accept-new-host-key to trust it on first use"
        )


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use: remember the key in known_hosts; a changed key still fails."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key) -> None:  # noqa: ANN001
        client.get_host_keys().add(hostname, key.get_name(), key)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.known_hosts, "a") as handle:
                handle.write(line)


def connect(
    target: Target,
    identity: Optional[str] = None,
    known_hosts: Optional[Path] = None,
    accept_new_host_key: bool = False,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> Connection:
    """An open connection, or a ProvisionError that says what is wrong."""
    known = (known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
    connect_kwargs: dict = {"allow_agent": True, "look_for_keys": identity is None}
    if identity:
        key_path = Path(identity).expanduser()
        if not key_path.is_file():
            raise ProvisionError(f"no SSH key at {key_path}")
        connect_kwargs["key_filename"] = str(key_path)
    connection = Connection(
        target.host,
        user=target.user,
        port=target.port,
        connect_timeout=int(timeout_s),
        connect_kwargs=connect_kwargs,
    )
    client = connection.client
    if known_hosts is None and SYSTEM_KNOWN_HOSTS.is_file():
        client.load_system_host_keys(str(SYSTEM_KNOWN_HOSTS))
    if known.is_file():
        try:
            client.load_host_keys(str(known))
        except (OSError, paramiko.SSHException) as exc:
            raise ProvisionError(f"cannot read known hosts file {known}: {exc}") from None
    client.set_missing_host_key_policy(
        _AcceptNew(known) if accept_new_host_key else _RejectUnknown(known)
    )
    try:
        connection.open()
    except UnknownHostKey:
        raise
    except paramiko.BadHostKeyException as exc:
        raise ProvisionError(
            f"the host key of {target} CHANGED (now {exc.key.get_name()} {fingerprint(exc.key)}): "
            f"someone may be intercepting the connection; if the device was reinstalled, remove "
            f"its line from {known} (ssh-keygen -R) and check the new key"
        ) from None
    except paramiko.AuthenticationException as exc:
        raise ProvisionError(
            f"authentication as {target} failed ({exc}): give a key with --identity or load one "
            "into ssh-agent (passwords are never used)"
        ) from None
    except NoValidConnectionsError as exc:
        reasons = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
        raise ProvisionError(f"cannot reach {target}: {reasons}") from None
    except socket.gaierror as exc:
        raise ProvisionError(f"cannot resolve host {target.host}: {exc.strerror}") from None
    except (TimeoutError, socket.timeout):
        raise ProvisionError(f"cannot reach {target}: no answer within {timeout_s:.0f} s") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ProvisionError(f"SSH connection to {target} failed: {exc}") from None
    return connection


def run(connection: Connection, command: str, what: str, timeout_s: Optional[float] = 600) -> str:
    """Run `command` on the device; its stdout, or a ProvisionError with its stderr."""
    try:
        result = connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout_s)
    except CommandTimedOut:
        raise ProvisionError(f"{what}: no answer within {timeout_s:.0f} s") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ProvisionError(f"{what}: the SSH connection broke ({exc})") from None
    if result.exited != 0:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        errors = [line for line in lines if line.startswith("ERROR")]  # pip's, past its warnings
        tail = " | ".join((errors or lines)[-6:])
        raise RemoteCommandFailed(what, result.exited, tail, result.stdout, result.stderr)
    return result.stdout


class RemoteCommandFailed(ProvisionError):
    def __init__(self, what: str, status: int, tail: str, stdout: str, stderr: str) -> None:
        super().__init__(f"{what} failed (exit {status}): {tail or 'no output'}")
        self.status, self.stdout, self.stderr = status, stdout, stderr


def write_file(connection: Connection, path: str, text: str, mode: int) -> None:
    """Write `text` to `path` with `mode` set before any content is written."""
    sftp = connection.sftp()
    try:
        with sftp.open(path, "w") as handle:
            handle.chmod(mode)
            handle.write(text.encode())
    except OSError as exc:
        raise ProvisionError(f"cannot write {path} on the device: {exc}") from None


def sync_files(
    connection: Connection, files: list[Path], remote_dir: str, always: frozenset[str] = frozenset()
) -> int:
    """Make `remote_dir` hold exactly `files`: put each one missing there or of another size
    (or named in `always`), remove the others (wheels left for another Python would
    mislead pip). Returns the bytes sent."""
    sftp = connection.sftp()
    try:
        present = {entry.filename: entry.st_size for entry in sftp.listdir_attr(remote_dir)}
    except OSError as exc:
        raise ProvisionError(f"cannot list {remote_dir} on the device: {exc}") from None
    sent = 0
    wanted = {path.name for path in files}
    try:
        for stale in sorted(set(present) - wanted):
            sftp.remove(f"{remote_dir}/{stale}")
        for path in files:
            size = path.stat().st_size
            if path.name not in always and present.get(path.name) == size:
                continue
            sftp.put(str(path), f"{remote_dir}/{path.name}")
            sent += size
    except OSError as exc:
        raise ProvisionError(f"updating {remote_dir} on the device failed: {exc}") from None
    return sent
