"""The control queue read in batches: every waiting message in one round trip.

Agents send registrations, heartbeats and results as Celery tasks onto the control queue
(a Redis list in kombu's format). The controller used to consume it with a Celery worker:
kombu's Redis transport costs about three round trips a message (the pop, the unacked
bookkeeping, the ack) under the interpreter lock the ingest needs, which held one
controller to ~600 results/s. Here one Lua call moves up to `limit` waiting messages onto
a list of taken messages and returns them; once their batch is committed, one DEL
acknowledges all of them. Messages taken by a controller that died, or before a lost
connection, are taken again with the next batch (at least once; ingest is idempotent).

Producers are unchanged: they still call `send_task`, and the list is kombu's.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any, Optional

from kombu.compression import decompress

from agents.contract import CONTROL_QUEUE, INGEST_TASK
from orchestrator import wake

# Messages taken and not yet committed, one list for each ingest loop of each controller
# run: KEY.<run>.<loop> (a loop orphaned by a controller killed -9 never shares a list with
# the next controller's loops)
TAKEN_KEY = f"{CONTROL_QUEUE}.taken"

# Producers LPUSH and consumers RPOP (kombu's Redis transport): the oldest are on the right.
# Returns everything taken and not acknowledged, so that a batch left there (a controller
# killed, a connection lost between two calls) is ingested with the next one, never
# acknowledged unseen.
_TAKE = """
local room = tonumber(ARGV[1]) - redis.call('llen', KEYS[2])
local taken = {}
for i = 1, room do
  local message = redis.call('rpop', KEYS[1])
  if not message then break end
  taken[i] = message
end
if #taken > 0 then redis.call('rpush', KEYS[2], unpack(taken)) end
return redis.call('lrange', KEYS[2], 0, -1)
"""

# Back onto the consuming end, the oldest last pushed, so that they come out first again.
_PUT_BACK = """
local count = 0
while true do
  local message = redis.call('rpop', KEYS[2])
  if not message then return count end
  redis.call('rpush', KEYS[1], message)
  count = count + 1
end
"""

log = logging.getLogger("edgebench.control_queue")


class ControlQueue:
    """One ingest loop's reader of the control queue (of the one controller: the lease holder)."""

    def __init__(
        self, broker_url: str, broker_ca: Optional[Path] = None, loop: str = "0.0"
    ) -> None:
        self.taken_key = f"{TAKEN_KEY}.{loop}"
        # (its 5 s socket timeout outlasts take's blocking wait of a few seconds at most)
        self.client = wake.client(broker_url, broker_ca)
        self._take = self.client.register_script(_TAKE)
        self._put_back = self.client.register_script(_PUT_BACK)

    def put_back(self) -> int:
        """Messages taken and never acknowledged go back on the queue; how many."""
        return int(self._put_back(keys=[CONTROL_QUEUE, self.taken_key]))

    def put_back_all(self, but_run: str = "") -> int:
        """The taken messages of every loop of other controller runs than `but_run` back
        on the queue (before this run's loops start)."""
        mine = f"{TAKEN_KEY}.{but_run}.".encode()
        keys = [
            key
            for key in self.client.scan_iter(match=f"{TAKEN_KEY}.*", count=100)
            if not (but_run and key.startswith(mine))
        ]
        return sum(int(self._put_back(keys=[CONTROL_QUEUE, key])) for key in keys)

    def take(self, limit: int, wait_s: float) -> list[bytes]:
        """The messages taken and not yet acknowledged, topped up to `limit` from the queue;
        if there are none, waits up to `wait_s` (whole seconds, at least 1) for one."""
        taken = self._take(keys=[CONTROL_QUEUE, self.taken_key], args=[limit])
        if taken or wait_s <= 0:
            return taken
        if self.client.brpoplpush(CONTROL_QUEUE, self.taken_key, timeout=max(1, round(wait_s))):
            return self._take(keys=[CONTROL_QUEUE, self.taken_key], args=[limit])
        return []

    def acknowledge(self) -> None:
        """Everything taken is committed: forget it."""
        self.client.delete(self.taken_key)

    def close(self) -> None:
        self.client.close()


def task_argument(message: bytes) -> Any:
    """The first argument of the ingest task a kombu message carries, or None (junk, another
    task, another serializer: ingest counts a None as a message it refused)."""
    try:
        envelope = json.loads(message)
        properties, headers = envelope.get("properties") or {}, envelope.get("headers") or {}
        if envelope.get("content-type") != "application/json":  # never deserialized
            raise ValueError(
                f"untrusted content of type {envelope.get('content-type')!r}: only JSON is read"
            )
        body = envelope["body"]
        body = base64.b64decode(body) if properties.get("body_encoding") == "base64" else body
        if headers.get("compression"):
            body = decompress(body, headers["compression"])
        decoded = json.loads(body)
        if isinstance(decoded, dict):  # task message protocol 1 (Celery 3)
            task, args = decoded.get("task"), decoded.get("args")
        else:  # protocol 2: [args, kwargs, embed]
            task, args = headers.get("task"), decoded[0]
        if task != INGEST_TASK:
            raise ValueError(f"task {task!r}")
        return args[0] if args else None
    except Exception as exc:  # anyone on the broker can send anything: never a crash
        log.warning("refused a message on the control queue: %s", str(exc)[:200] or type(exc))
        return None
