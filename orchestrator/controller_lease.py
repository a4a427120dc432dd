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


log = logging.getLogger("edgebench.lease")


class LeaseHeld(RuntimeError):
    pass


class ControllerLease:
    def __init__(self, broker_url: str, broker_ca: Path | None = None) -> None:
        ssl_options = broker_ssl_options(broker_url, broker_ca) or {}
        self.client = redis.Redis.from_url(broker_url, socket_timeout=5, **ssl_options)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def acquire(self, wait_s: float = LEASE_TTL_S + 5) -> None:
        """Take the lease, waiting out one left by a controller that died without release."""
        deadline = time.monotonic() + wait_s
        while not self.client.set(LEASE_KEY, self.holder, nx=True, ex=LEASE_TTL_S):
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
