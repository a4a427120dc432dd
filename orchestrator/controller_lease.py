"""One controller per broker: a lease key in Redis, renewed while the controller runs.

Two controllers on one broker would race for the control queue and write results into
two stores; the second one refuses to start instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import redis

from agents.contract import broker_ssl_options

LEASE_KEY = "edgebench:controller"
LEASE_TTL_S = 30
RENEW_EVERY_S = 5

# Extend the lease only if we still hold it, in one step (no get-then-expire race). A lease
# nobody holds is taken again: a broker restarted without persistence has forgotten it.
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  return redis.call('expire', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


# Drop the lease only if it is still held by the given (dead) holder.
_DROP_IF = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

log = logging.getLogger("edgebench.lease")


def _died_here(holder: bytes | None) -> bool:
    """Whether a lease holder ("host:pid") was a process of this host that no longer runs:
    a controller killed here need not be waited out for LEASE_TTL_S."""
    host, _, pid = (holder or b"").decode(errors="replace").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


class LeaseHeld(RuntimeError):
    pass


class ControllerLease:
    def __init__(self, broker_url: str, broker_ca: Path | None = None) -> None:
        ssl_options = broker_ssl_options(broker_url, broker_ca) or {}
        self.client = redis.Redis.from_url(broker_url, socket_timeout=5, **ssl_options)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def acquire(self, wait_s: float = LEASE_TTL_S + 5) -> None:
        """Take the lease, waiting out one left by a controller that died without release
        (unless it died on this host: then at once)."""
        deadline = time.monotonic() + wait_s
        while not self.client.set(LEASE_KEY, self.holder, nx=True, ex=LEASE_TTL_S):
            other = self.client.get(LEASE_KEY)
            if _died_here(other) and self.client.eval(_DROP_IF, 1, LEASE_KEY, other):
                log.warning("took over the lease of %s, which is no longer running", other.decode())
                continue
            if time.monotonic() > deadline:
                other = self.client.get(LEASE_KEY)
                raise LeaseHeld(
                    f"another controller ({(other or b'?').decode()}) is using this broker; "
                    "stop it first (one controller per broker)"
                )
            time.sleep(1)

    def renew(self) -> bool:
        """Extend the lease (take it again if the broker forgot it); False once another
        controller holds it."""
        return bool(self.client.eval(_RENEW, 1, LEASE_KEY, self.holder, LEASE_TTL_S))

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew every few seconds until `stop`; call `on_lost` if the lease is lost."""
        while not stop.wait(RENEW_EVERY_S):
            try:
                if not self.renew():
                    on_lost()
                    return
            except redis.RedisError as exc:  # broker down: nobody else can take it either
                log.warning("cannot renew the controller lease: %s", exc)

    def release(self) -> None:
        try:
            if self.client.get(LEASE_KEY) == self.holder.encode():
                self.client.delete(LEASE_KEY)
        except redis.RedisError:
            pass
