"""The controller lease against a real Redis: one controller per broker, and a controller
killed on this host is not waited out."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestrator.controller_lease import LEASE_KEY, ControllerLease, LeaseHeld


@pytest.fixture
def lease_url(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(LEASE_KEY)
    yield redis_url
    client.delete(LEASE_KEY)


def test_a_live_controller_keeps_the_broker(lease_url):
    first = ControllerLease(lease_url)
    first.acquire()
    second = ControllerLease(lease_url)  # this process holds the lease: alive
    with pytest.raises(LeaseHeld, match="another controller"):
        second.acquire(wait_s=1.5)
    first.release()
    second.acquire(wait_s=1)


def test_the_lease_of_a_controller_that_died_on_this_host_is_taken_at_once(lease_url):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    ghost = ControllerLease(lease_url)
    ghost.holder = f"{ghost.holder.rpartition(':')[0]}:{dead.stdout.strip()}"
    ghost.acquire()
    started = time.monotonic()
    ControllerLease(lease_url).acquire(wait_s=5)
    assert time.monotonic() - started < 1


def test_the_lease_of_another_host_is_waited_out(lease_url):
    other = ControllerLease(lease_url)
    other.holder = "some-other-host:1"
    other.acquire()
    with pytest.raises(LeaseHeld, match="some-other-host:1"):
        ControllerLease(lease_url).acquire(wait_s=1.5)
