"""The broker URL a device's agent uses: the controller's own URL only works on the
controller when it names loopback, so the device is given an address it can reach."""

from __future__ import annotations

import ipaddress
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from orchestrator.provisioning import ProvisionError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ProvisionError(f"the broker URL must be redis:// or rediss://host..., not {url!r}")
    return parts.hostname, parts.port or 6379


def controller_address(ssh_client: str) -> Optional[str]:
    """The controller's address as the device sees it: the first field of SSH_CLIENT."""
    address = ssh_client.split()[0] if ssh_client.split() else ""
    if address.startswith("::ffff:"):  # an IPv4 peer on a dual-stack sshd
        address = address[len("::ffff:") :]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    shown = f"[{host}]" if ":" in host else host
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (f"{credentials}@" if credentials else "") + shown
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def agent_broker_url(
    controller_url: Optional[str], explicit: Optional[str], ssh_client: str
) -> str:
    """`explicit` (--broker-url or EDGEBENCH_AGENT_BROKER_URL) when given; else the
    controller's URL, a loopback host in it replaced by the controller's address as the
    device sees it over SSH."""
    if explicit:
        endpoint(explicit)
        return explicit
    if not controller_url:
        raise ProvisionError(
            "no broker configured: start `edgebench server` on this machine, or set "
            "EDGEBENCH_BROKER_URL (and EDGEBENCH_AGENT_BROKER_URL if devices reach it by "
            "another address)"
        )
    host, _ = endpoint(controller_url)
    if not is_loopback(host):
        return controller_url
    seen_as = controller_address(ssh_client)
    if seen_as is None:
        raise ProvisionError(
            f"the broker URL names loopback ({host}) and the device did not say which "
            "address it sees this controller at: pass --broker-url or set "
            "EDGEBENCH_AGENT_BROKER_URL to a URL the device can reach"
        )
    return with_host(controller_url, seen_as)


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
