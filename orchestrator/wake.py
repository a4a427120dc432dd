"""Waking the scheduler when a campaign is submitted, instead of at its next periodic pass.

`campaign submit` writes the campaign to the store (the record) and then publishes a word on
a Redis channel of the broker; the controller listens and runs a scheduler pass at once. The
word carries nothing: a lost one (the broker down, an older controller) costs only the wait
for the next periodic pass (EDGEBENCH_SCHEDULER_INTERVAL_S), and a forged one only an extra
pass over the store.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import redis

from agents.contract import broker_ssl_options

CHANNEL = "edgebench:wake"
RETRY_AFTER_S = 1.0

log = logging.getLogger("edgebench.wake")


def client(broker_url: str, broker_ca: Path | None, **options) -> redis.Redis:  # noqa: ANN003
    """A client of the broker, with its TLS options and bounded timeouts."""
    ssl_options = broker_ssl_options(broker_url, broker_ca) or {}
    # A broker that does not answer costs a submission at most 2 s, never the OS's minutes.
    return redis.Redis.from_url(
        broker_url, socket_timeout=5, socket_connect_timeout=2, **ssl_options, **options
    )


def notify(broker_url: str | None, broker_ca: Path | None = None) -> bool:
    """Tell a listening controller that there is new work; False where it could not."""
    if not broker_url:
        return False
    try:
        broker = client(broker_url, broker_ca)
        try:
            return broker.publish(CHANNEL, "submitted") > 0
        finally:
            broker.close()
    except redis.RedisError as exc:
        log.info("could not wake the controller (%s); its next periodic pass plans it", exc)
        return False


def listen(
    broker_url: str, broker_ca: Path | None, wake: threading.Event, stop: threading.Event
) -> None:
    """Set `wake` on every word published, until `stop`; across broker restarts."""
    while not stop.is_set():
        try:
            # a PING every few seconds: a connection the broker dropped is noticed
            subscription = client(broker_url, broker_ca, health_check_interval=5).pubsub(
                ignore_subscribe_messages=True
            )
            with subscription:  # closed however the loop ends
                subscription.subscribe(CHANNEL)
                wake.set()  # (re)subscribed: whatever was published while away, a pass finds it
                while not stop.is_set():
                    if subscription.get_message(timeout=0.5) is not None:
                        wake.set()
        except redis.RedisError as exc:
            log.debug("wake channel: %s; subscribing again", exc)
            stop.wait(RETRY_AFTER_S)
