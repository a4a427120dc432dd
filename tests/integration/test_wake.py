"""`campaign submit` wakes the controller's scheduler through the broker (orchestrator.wake):
a pass at once instead of at the next periodic one; a lost word costs only that wait."""

from __future__ import annotations

import threading
import time

from orchestrator import broker, wake


def test_a_submission_wakes_a_listening_controller_at_once(redis_url):
    woken, stop = threading.Event(), threading.Event()
    listener = threading.Thread(target=wake.listen, args=(redis_url, None, woken, stop))
    listener.start()
    try:
        assert woken.wait(5)  # subscribed: a first pass for what was published before
        woken.clear()
        deadline = time.monotonic() + 5
        while not wake.notify(redis_url):  # True once a subscriber heard it
            assert time.monotonic() < deadline
        started = time.monotonic()
        assert woken.wait(2)
        assert time.monotonic() - started < 0.5
    finally:
        stop.set()
        listener.join(5)
    assert not listener.is_alive()


def test_the_listener_subscribes_again_after_the_broker_restarts(tmp_path):
    own = broker.start(tmp_path / "broker", record=False)
    woken, stop = threading.Event(), threading.Event()
    listener = threading.Thread(target=wake.listen, args=(own.url, None, woken, stop))
    listener.start()
    try:
        assert woken.wait(5)
        own.stop()
        own = broker.start(tmp_path / "broker", record=False)  # same port, same password
        woken.clear()
        deadline = time.monotonic() + 15
        while not wake.notify(own.url):
            assert time.monotonic() < deadline, "the listener never subscribed again"
            time.sleep(0.1)
        assert woken.wait(2)
    finally:
        stop.set()
        listener.join(5)
        own.stop()


def test_no_broker_or_a_dead_one_is_not_an_error():
    assert wake.notify(None) is False
    assert wake.notify(f"redis://:x@127.0.0.1:{broker.free_port()}/0") is False
