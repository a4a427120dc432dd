"""Device hosts on this machine, as network namespaces: each has its own network stack, an
address on a private bridge and a real OpenSSH server. The controller (this process's
namespace) reaches them over veth links, and cutting a link cuts the host off.

Namespaces share the file system, so paths the controller writes resolve in them too.
Needs root, `ip` (iproute2) and `/usr/sbin/sshd` (openssh-server; not with `sshd=False`, for
hosts whose processes the caller starts itself with `ip netns exec`). Used by the tests and
by bench/netns_fleet.py.

    lab = NetnsLab(workdir, count=3); lab.start()
    ... ssh root@lab.hosts[0].address -i lab.client_key ...
    lab.cut(lab.hosts[0]); lab.restore(lab.hosts[0])
    lab.stop()    # kills every process in the namespaces, removes links and namespaces
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

SSHD = "/usr/sbin/sshd"
NAME_PREFIX = "ebl"  # ebl<pid>-<n> namespaces, ebl<pid>h<n> links, ebl<pid>br bridge
SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def unavailable(sshd: bool = True) -> Optional[str]:
    """Why device hosts (with an sshd each, unless `sshd` is False) cannot be made here, or
    None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "ssh-keygen") if sshd else ("ip",):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 openssh-client)"
    if sshd and not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    probe = f"{NAME_PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def ip(*args: str, namespace: Optional[str] = None, check: bool = True) -> str:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def _used_networks() -> list[ipaddress.IPv4Network]:
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", ip("-4", "-o", "addr", "show"))
    return [ipaddress.ip_network(cidr, strict=False) for cidr in found]


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(200):
        candidate = ipaddress.ip_network(
            f"10.{random.randint(160, 250)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no free private /24 for the device hosts")


def _kill_namespace_processes(namespace: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in ip("netns", "pids", namespace, check=False).split()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            if not ip("netns", "pids", namespace, check=False).split():
                return
            time.sleep(0.1)


def sweep_stale() -> None:
    """Remove namespaces and links left by a lab whose process died without stopping it."""
    for line in ip("netns", "list", check=False).splitlines():
        match = re.match(rf"^({NAME_PREFIX}(\d+)-\d+)\b", line)
        if match and not _alive(int(match.group(2))):
            _kill_namespace_processes(match.group(1))
            ip("netns", "delete", match.group(1), check=False)
    for match in re.finditer(rf"\d+: ({NAME_PREFIX}(\d+)(?:br|h\d+))[@:]", ip("-o", "link")):
        if not _alive(int(match.group(2))):
            ip("link", "delete", match.group(1), check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class DeviceHost:
    index: int
    namespace: str
    address: str
    host_link: str  # the controller-side end of the veth pair: set it down to cut the host off
    workdir: Path
    sshd: Optional[subprocess.Popen] = None
    host_key_pub: Optional[Path] = None

    @property
    def target(self) -> str:
        return f"root@{self.address}"

    def kill_processes(self, containing: str) -> None:
        """SIGKILL this host's processes whose command line contains `containing`."""
        for pid in ip("netns", "pids", self.namespace, check=False).split():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if containing.encode() in handle.read():
                        os.kill(int(pid), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside this host's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@dataclass
class NetnsLab:
    workdir: Path
    count: int = 3
    hosts: list[DeviceHost] = field(default_factory=list)
    sshd: bool = True  # False: no keys, no sshd; only the namespaces and their links

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tag = f"{NAME_PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}br"
        self.client_key = self.workdir / "client_key"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.subnet: Optional[ipaddress.IPv4Network] = None

    @property
    def gateway(self) -> str:
        """The controller's address on the bridge: what the devices reach it by."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def unused_address(self) -> str:
        """An address on the device network that no host has (for unreachable-host tests)."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 250)

    def start(self) -> NetnsLab:
        sweep_stale()
        if ip("netns", "list", check=False).find(f"{self.tag}-") >= 0:
            raise RuntimeError(f"a lab of this process ({self.tag}) is already running")
        try:
            self._network()
            if self.sshd:
                self._keys()
                for host in self.hosts:
                    self._start_sshd(host)
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        self.subnet = _free_subnet()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index in range(1, self.count + 1):
            namespace = f"{self.tag}-{index}"
            host_link, device_link = f"{self.tag}h{index}", f"{self.tag}d{index}"
            address = str(self.subnet.network_address + 10 + index)
            ip("netns", "add", namespace)
            host = DeviceHost(index, namespace, address, host_link, self.workdir / f"host{index}")
            self.hosts.append(host)
            host.workdir.mkdir(exist_ok=True)
            ip("link", "add", host_link, "type", "veth", "peer", "name", device_link)
            ip("link", "set", device_link, "netns", namespace)
            ip("link", "set", host_link, "master", self.bridge, "up")
            ip("addr", "add", f"{address}/24", "dev", device_link, namespace=namespace)
            ip("link", "set", device_link, "up", namespace=namespace)
            ip("link", "set", "lo", "up", namespace=namespace)

    def _keys(self) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgebench-lab", "-f", str(self.client_key)],
            check=True,
        )  # fmt: skip
        shutil.copy(f"{self.client_key}.pub", self.authorized_keys)
        self.known_hosts.touch()
        for host in self.hosts:
            key = host.workdir / "ssh_host_ed25519_key"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.namespace, "-f", str(key)],
                check=True,
            )  # fmt: skip
            host.host_key_pub = Path(f"{key}.pub")

    def _start_sshd(self, host: DeviceHost) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        config = host.workdir / "sshd_config"
        config.write_text(
            SSHD_CONFIG.format(
                address=host.address,
                host_key=host.workdir / "ssh_host_ed25519_key",
                workdir=host.workdir,
                authorized_keys=self.authorized_keys,
            )
        )
        log = open(host.workdir / "sshd.log", "ab")  # noqa: SIM115
        host.sshd = subprocess.Popen(
            ["ip", "netns", "exec", host.namespace, SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if host.sshd.poll() is not None:
                raise RuntimeError(
                    f"sshd in {host.namespace} exited: {(host.workdir / 'sshd.log').read_text()}"
                )
            try:
                socket.create_connection((host.address, 22), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd in {host.namespace} does not answer on {host.address}:22")

    def trust_host_keys(self, hosts: Optional[list[DeviceHost]] = None) -> None:
        """Put the hosts' real keys in known_hosts, as a user who checked them would."""
        with open(self.known_hosts, "a") as handle:
            for host in hosts or self.hosts:
                kind, key = host.host_key_pub.read_text().split()[:2]
                handle.write(f"{host.address} {kind} {key}\n")

    def cut(self, host: DeviceHost) -> None:
        ip("link", "set", host.host_link, "down")

    def restore(self, host: DeviceHost) -> None:
        ip("link", "set", host.host_link, "up")

    def stop(self) -> None:
        """Kill every process in the namespaces (sshd, agents), then remove the network."""
        for host in self.hosts:
            _kill_namespace_processes(host.namespace)
            if host.sshd is not None:
                try:
                    host.sshd.wait(5)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
            ip("link", "delete", host.host_link, check=False)
            ip("netns", "delete", host.namespace, check=False)
        ip("link", "delete", self.bridge, check=False)
        self.hosts.clear()


def started_lab(workdir: Path, count: int, sshd: bool = True) -> NetnsLab:
    """A running lab, or the test skipped (a failure in CI) with the reason."""
    from tests.conftest import missing_service

    reason = unavailable(sshd)
    if reason is not None:
        missing_service(f"device hosts in network namespaces: {reason}")
    return NetnsLab(workdir, count=count, sshd=sshd).start()
