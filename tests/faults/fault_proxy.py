"""A small fault-injecting TCP proxy: a slow, unreliable link between a client (an agent)
and a server (Redis, the artifact server), for the fault tests.

It listens on loopback and forwards each connection to one target. In each direction every
chunk it reads is held `delay_s` before it is written on, in order: added latency, not a
bandwidth cap (a reader and a writer thread per direction, so a chunk's delay does not hold
back the reading of the next). Connections are dropped now and then, abruptly (both sides
closed with a reset, what is in flight lost): each after a random lifetime (exponential,
mean `mean_lifetime_s`), and each chunk with probability `drop_per_chunk`. The random draws
come from `seed` and the connection's number, so a run draws the same lifetimes again.

    proxy = FaultProxy(("127.0.0.1", 6379), delay_s=0.3, mean_lifetime_s=8, seed=1).start()
    ... connect to proxy.port ...
    print(proxy.stats())   # connections, drops, bytes up/down, chunks
    proxy.stop()

Stdlib only.
"""

from __future__ import annotations

import queue
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Counters:
    connections: int = 0  # accepted from clients
    refused: int = 0  # accepted, but the target could not be reached
    drops: int = 0  # connections the proxy cut (lifetime over, or a chunk drawn to drop)
    bytes_up: int = 0  # client -> target, forwarded
    bytes_down: int = 0  # target -> client, forwarded
    chunks: int = 0  # forwarded, both directions
    lifetimes: list = field(default_factory=list)  # drawn lifetime of each connection, s

    def as_dict(self) -> dict:
        return {
            "connections": self.connections,
            "refused": self.refused,
            "drops": self.drops,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "chunks": self.chunks,
        }


def _close(sock: socket.socket, reset: bool) -> None:
    """Close a socket that other threads may be blocked reading: SHUT_RD wakes them (and
    sends nothing); with `reset`, SO_LINGER 0 makes the close a TCP reset, an abrupt drop
    rather than an orderly end."""
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Connection:
    def __init__(
        self, proxy: FaultProxy, number: int, client: socket.socket, upstream: socket.socket
    ) -> None:
        self.proxy = proxy
        self.number = number
        self.client = client
        self.upstream = upstream
        self.random = random.Random(f"{proxy.seed}-{number}")
        self.lock = threading.Lock()
        self.closed = False
        self.open_directions = 2
        self.timer: Optional[threading.Timer] = None

    def start(self) -> None:
        if self.proxy.mean_lifetime_s:
            lifetime = self.random.expovariate(1.0 / self.proxy.mean_lifetime_s)
            self.proxy.counters.lifetimes.append(round(lifetime, 3))
            self.timer = threading.Timer(lifetime, self.drop)
            self.timer.daemon = True
            self.timer.start()
        directions = ((self.client, self.upstream, True), (self.upstream, self.client, False))
        for source, target, up in directions:
            pending: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(source, pending), daemon=True).start()
            threading.Thread(target=self._write, args=(target, pending, up), daemon=True).start()

    def _read(self, source: socket.socket, pending: queue.Queue) -> None:
        """Read chunks as they come; each is due `delay_s` after it arrived."""
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if chunk and self.proxy.drop_per_chunk:
                with self.lock:
                    drawn = self.random.random() < self.proxy.drop_per_chunk
                if drawn:
                    self.drop()
                    chunk = b""
            pending.put((time.monotonic() + self.proxy.delay_s, chunk))
            if not chunk:
                return

    def _write(self, target: socket.socket, pending: queue.Queue, up: bool) -> None:
        while True:
            due, chunk = pending.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.closed:
                return
            if not chunk:  # the source closed its side: pass that on, once in order
                try:
                    target.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self._direction_done()
                return
            try:
                target.sendall(chunk)
            except OSError:
                self.close()
                return
            with self.proxy.lock:
                self.proxy.counters.chunks += 1
                if up:
                    self.proxy.counters.bytes_up += len(chunk)
                else:
                    self.proxy.counters.bytes_down += len(chunk)

    def _direction_done(self) -> None:
        with self.lock:
            self.open_directions -= 1
            finished = self.open_directions == 0
        if finished:
            self.close()

    def drop(self) -> None:
        """Cut the connection now, as a link that fails would: both sides get a reset."""
        self.close(reset=True, dropped=True)

    def close(self, reset: bool = False, dropped: bool = False) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.proxy._forget(self, dropped)  # counted before either side can see it
        for sock in (self.client, self.upstream):
            _close(sock, reset)


class FaultProxy:
    def __init__(
        self,
        target: tuple[str, int],
        *,
        delay_s: float = 0.3,
        mean_lifetime_s: Optional[float] = None,
        drop_per_chunk: float = 0.0,
        seed: int = 0,
        listen: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        self.target = target
        self.delay_s = delay_s
        self.mean_lifetime_s = mean_lifetime_s
        self.drop_per_chunk = drop_per_chunk
        self.seed = seed
        self.counters = Counters()
        self.lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(listen)
        self._listener.listen(128)
        self._connections: set[_Connection] = set()
        self._stopped = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def host(self) -> str:
        return self._listener.getsockname()[0]

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        number = 0
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            number += 1
            with self.lock:
                self.counters.connections += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                with self.lock:
                    self.counters.refused += 1
                _close(client, reset=True)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, number, client, upstream)
            with self.lock:
                self._connections.add(connection)
            connection.start()

    def _forget(self, connection: _Connection, dropped: bool) -> None:
        with self.lock:
            self._connections.discard(connection)
            self.counters.drops += dropped

    def active(self) -> int:
        with self.lock:
            return len(self._connections)

    def drop_all(self) -> int:
        """Cut every open connection now (counted as drops); returns how many."""
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            connection.drop()
        return len(connections)

    def stats(self) -> dict:
        with self.lock:
            return {**self.counters.as_dict(), "active": len(self._connections)}

    def stop(self) -> None:
        """Stop listening and close every connection (not counted as drops)."""
        self._stopped.set()
        _close(self._listener, reset=False)  # SHUT_RD wakes the blocked accept
        with self.lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close(reset=True)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
