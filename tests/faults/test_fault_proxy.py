"""The fault-injecting proxy itself (tests/faults/fault_proxy.py), against a real echo
server on loopback: it adds latency without capping bandwidth, keeps the bytes in order,
drops connections with a reset, and draws the same lifetimes from the same seed."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.faults.fault_proxy import FaultProxy


@pytest.fixture
def echo_server():
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(connection: socket.socket) -> None:
        with connection:
            try:
                while data := connection.recv(65536):
                    connection.sendall(data)
            except OSError:  # the proxy dropped the connection
                pass

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()
    listener.close()


def _echo(port: int, payload: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join()
    return bytes(received), time.monotonic() - started


def test_delay_each_way_in_order_without_a_bandwidth_cap(echo_server):
    with FaultProxy(echo_server, delay_s=0.3) as proxy:
        echoed, elapsed = _echo(proxy.port, b"ping")
        assert echoed == b"ping"
        assert 0.6 <= elapsed < 2.0, elapsed  # 0.3 s there, 0.3 s back (and a busy CPU)
        payload = os.urandom(8 * 1024 * 1024)
        echoed, elapsed = _echo(proxy.port, payload)
        assert echoed == payload  # every byte, in order
        # Latency, not throughput: 8 MiB in 100+ chunks takes about one round trip, not
        # 0.3 s a chunk (which would be 30 s and more).
        assert elapsed < 5.0, elapsed
        stats = proxy.stats()
    assert stats["connections"] == 2 and stats["drops"] == 0
    assert stats["bytes_up"] == stats["bytes_down"] == len(payload) + 4
    print(f"8 MiB echoed through 0.3 s each way in {elapsed:.2f} s; {stats}")


def test_connections_dropped_with_a_reset_after_their_lifetime(echo_server):
    with FaultProxy(echo_server, delay_s=0.0, mean_lifetime_s=0.2, seed=7) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            deadline = time.monotonic() + 10
            with pytest.raises(OSError):  # ConnectionResetError, or a reset seen as EOF
                while time.monotonic() < deadline:
                    client.sendall(b"x")
                    if not client.recv(16):
                        raise ConnectionResetError("closed")
                    time.sleep(0.01)
        assert proxy.stats()["drops"] == 1
        assert proxy.active() == 0


def test_drop_per_chunk_and_the_same_seed_draws_the_same_faults(echo_server):
    # Lifetimes are drawn (and compared) but too long to end a connection here: the drops
    # come from the per-chunk draws alone, which do not depend on timing.
    def run(seed: int) -> tuple[list, dict]:
        with FaultProxy(echo_server, delay_s=0.0, mean_lifetime_s=1000, drop_per_chunk=0.1, seed=seed) as proxy:  # fmt: skip
            outcomes = []
            for _ in range(12):
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
                    sent = 0
                    try:
                        for _ in range(5):
                            client.sendall(b"y")
                            if not client.recv(16):
                                break
                            sent += 1
                    except OSError:
                        pass
                    outcomes.append(sent)
            return outcomes, {**proxy.stats(), "lifetimes": proxy.counters.lifetimes}

    first, stats = run(3)
    again, stats_again = run(3)
    assert first == again and stats["lifetimes"] == stats_again["lifetimes"]
    assert 0 < stats["drops"] < 12 and stats["drops"] == sum(n < 5 for n in first)
    assert run(4)[0] != first
