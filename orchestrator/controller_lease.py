"""One controller per broker: a lease key in Redis, renewed while the controller runs.

Two controllers on one broker would race for the control queue and write results into
two stores; the second one refuses to start instead.
"""

from __future__ import annotations

import os
import socket
import time

import redis

LEASE_KEY = "edgebench:controller"
LEASE_TTL_S = 30


class LeaseHeld(RuntimeError):
    pass


class ControllerLease:
    def __init__(self, broker_url: str) -> None:
        self.client = redis.Redis.from_url(broker_url, socket_timeout=5)
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
        """Extend the lease; False if another controller holds it now."""
        if self.client.get(LEASE_KEY) == self.holder.encode():
            return bool(self.client.expire(LEASE_KEY, LEASE_TTL_S))
        return bool(self.client.set(LEASE_KEY, self.holder, nx=True, ex=LEASE_TTL_S))

    def release(self) -> None:
        try:
            if self.client.get(LEASE_KEY) == self.holder.encode():
                self.client.delete(LEASE_KEY)
        except redis.RedisError:
            pass
