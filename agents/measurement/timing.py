"""The timing loop: warm up, then time runs until the stopping rule says stop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional


@dataclass(frozen=True)
class StoppingRule:
    """Stop once BOTH min_queries and min_s are reached, or when max_s has elapsed, or
    once max_queries samples were taken."""

    warmup_s: float
    min_queries: int
    min_s: float
    max_s: float
    max_queries: int = 100_000

    def done(self, count: int, elapsed_s: float) -> bool:
        if elapsed_s >= self.max_s or count >= self.max_queries:
            return True
        return count >= self.min_queries and elapsed_s >= self.min_s


def warm_up(run_once: Callable[[], object], seconds: float) -> int:
    """Run at least once, then until `seconds` have passed. Returns the count."""
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    count = 0
    while True:
        run_once()
        count += 1
        if time.perf_counter_ns() >= deadline:
            return count


class Timeline:
    """Conditions (temperature, clocks) read about once a second during a measurement,
    between runs and never inside one, so latency can be plotted against them.

    ``probe`` returns a dict of readings; a reading of nothing (all None) is not kept.
    """

    def __init__(self, probe: Callable[[], Dict[str, Any]], every_s: float = 1.0) -> None:
        self.points: List[Dict[str, Any]] = []
        self._probe = probe
        self._every_ns = int(every_s * 1e9)
        self._start: Optional[int] = None
        self._next = 0
        self.spent_ns = 0  # time spent reading the probe: harness time, not the workload's

    def tick(self, now_ns: int) -> None:
        if self._start is None:
            self._start, self._next = now_ns, now_ns
        if now_ns < self._next:
            return
        self._next = now_ns + self._every_ns
        probe_started = time.perf_counter_ns()
        reading = self._probe()
        self.spent_ns += time.perf_counter_ns() - probe_started
        if any(value is not None for value in reading.values()):
            self.points.append({"t_s": round((now_ns - self._start) / 1e9, 3), **reading})


def time_runs(
    run_once: Callable[[], object], rule: StoppingRule, timeline: Optional[Timeline] = None
) -> List[int]:
    """Latency of each run, in nanoseconds, measured with perf_counter_ns."""
    samples: List[int] = []
    clock = time.perf_counter_ns
    start = clock()
    while True:
        before = clock()
        run_once()
        after = clock()
        samples.append(after - before)
        if rule.done(len(samples), (after - start) / 1e9):
            return samples
        if timeline is not None:
            timeline.tick(after)
