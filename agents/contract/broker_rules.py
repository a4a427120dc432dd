"""Transport rules for the broker, checked by `edgebench server` and `agent start` before
they connect: a broker beyond loopback needs a password, and a rediss:// broker's
certificate is verified (with EDGEBENCH_BROKER_CA when it was signed by a private CA).

The loopback rule reads the URL only; it resolves no names, so only `localhost` and
loopback addresses count as loopback, whatever a host name resolves to.
Shared by both sides: stdlib only (redis is imported when a check connects), Python 3.9.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any, Dict, Optional
from urllib.parse import unquote, urlsplit

LOCAL_SCHEMES = ("unix", "socket", "redis+socket")


class BrokerRefused(RuntimeError):
    """A broker configuration that edgebench will not use; the message says why."""


def is_loopback_host(host: Optional[str]) -> bool:
    if not host:
        return True  # no host: the Redis clients connect to 127.0.0.1
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def broker_host(url: str) -> str:
    """host[:port] of a broker URL, for messages: never the credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def has_password(url: str) -> bool:
    """Whether the URL gives a password (redis://:PASS@… or redis://user:PASS@…)."""
    return bool(unquote(urlsplit(url).password or ""))


def check_authenticated(url: str, insecure: bool = False) -> None:
    """Refuse a broker with no password whose host is not loopback, unless `insecure`."""
    parts = urlsplit(url)
    if insecure or parts.scheme in LOCAL_SCHEMES or has_password(url):
        return
    if is_loopback_host(parts.hostname):
        return
    raise BrokerRefused(
        f"refusing the broker at {broker_host(url)}: its URL has no password and "
        f"{parts.hostname} is not a loopback address, so anyone who can reach it could read "
        "and send fleet messages. Put the broker's password in EDGEBENCH_BROKER_URL "
        "(redis://:PASSWORD@host:port/0), or pass --insecure (EDGEBENCH_INSECURE=1) to use "
        "it anyway"
    )


def ssl_options(url: str, ca_certs: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """TLS settings for a rediss:// broker (Celery's broker_use_ssl, redis-py's keywords):
    verify the server, against `ca_certs` when given, else the system's CAs. A URL that
    sets ssl_cert_reqs itself is left to it."""
    if not url.startswith("rediss://") or "ssl_cert_reqs=" in url:
        return None
    options: Dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if ca_certs is not None:
        options["ssl_ca_certs"] = str(ca_certs)
    return options


def check_tls(url: str, ca_certs: Optional[Path] = None, timeout_s: float = 5.0) -> None:
    """Refuse a CA file that is missing or given for a plain redis:// broker, and a rediss://
    broker whose certificate does not verify. An unreachable broker is not refused here:
    the caller's connection retries cover a broker that starts later."""
    if ca_certs is not None:
        if not url.startswith("rediss://"):
            raise BrokerRefused(
                f"EDGEBENCH_BROKER_CA is set but the broker at {broker_host(url)} is "
                "redis:// (no TLS): use rediss:// to have its certificate verified"
            )
        if not Path(ca_certs).is_file():
            raise BrokerRefused(f"EDGEBENCH_BROKER_CA: no such file {ca_certs}")
    options = ssl_options(url, ca_certs)
    if options is None:
        return
    import redis

    client = redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **options
    )
    try:
        client.ping()
    except redis.AuthenticationError:
        return  # TLS held; the password is the connection's business
    except redis.ConnectionError as exc:
        if _verification_failed(exc):
            where = f"the CA in {ca_certs}" if ca_certs else "the system's CAs"
            raise BrokerRefused(
                f"cannot verify the TLS certificate of the broker at {broker_host(url)} "
                f"with {where}: {_reason(exc)}. Set EDGEBENCH_BROKER_CA to the CA file "
                "that signed the broker's certificate"
            ) from None
    except redis.RedisError:
        return
    finally:
        client.close()


def _verification_failed(exc: BaseException) -> bool:
    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    marker = "certificate verify failed"
    start = text.find(marker)
    return text[start:].split(" (_ssl.c")[0].rstrip(".") if start >= 0 else text
