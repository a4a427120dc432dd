"""Load patterns. Each drives a `run_once` callable through the timing loop and returns the
latency samples (ns) plus a scenario-specific report.

* single_stream: one query at a time, back to back: the latency distribution.
* offline: the same loop on batched inputs; throughput is the figure that matters.
* paced: an idle gap before every query, as event-triggered edge systems see. A short warm
  burst (`warm_burst`), measured apart from the paced queries (own count, own time, own
  energy window), gives the back-to-back latency to compare with.
* poisson: queries arrive at a target rate (seeded exponential gaps); a query that arrives
  while the previous one runs waits, and its latency counts from its scheduled arrival. The
  harness sleeps to just before an arrival and spins the rest, and reports how late it
  still started each query (its own lateness, not the device's).
* soak: back to back for a fixed time, reported per time bucket to show drift. Every query
  is counted (throughput, energy per inference); a bounded reservoir of them is kept.
* multi_stream: a query of `samples_per_query` samples starts every `interval_s` (a camera
  frame of several streams); its latency counts from its scheduled start, a query longer
  than the interval is a deadline miss, and slots that pass while the device is busy are
  skipped (a frame dropped) and counted.
* mlperf_single_stream, mlperf_multi_stream, mlperf_offline, mlperf_server: MLPerf LoadGen
  issues the queries (agents/measurement/loadgen.py) and its summary is kept.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from agents.contract import statistics
from agents.measurement import loadgen
from agents.measurement.timing import StoppingRule, Timeline, time_runs

MLPERF_KINDS = tuple(loadgen.SCENARIOS)
KINDS = ("single_stream", "offline", "paced", "poisson", "soak", "multi_stream", *MLPERF_KINDS)
WARM_BURST = 50
SOAK_BUCKETS = 10


# The last stretch before a Poisson arrival is spun, not slept: a sleep wakes tens to
# hundreds of microseconds late, and that lateness would be billed to the device.
SPIN_NS = 300_000


@dataclass
class ScenarioOutcome:
    """The kept latency samples, the scenario's own figures, and what throughput and energy
    divide by: the measured time and every query measured in it (soak keeps a reservoir of
    samples, so `queries` can exceed `len(samples_ns)`)."""

    samples_ns: List[int]
    report: Dict[str, Any] = field(default_factory=dict)
    measured_s: float = 0.0
    queries: int = 0


def _p(sorted_ns: List[int], q: float) -> Optional[float]:
    """Percentile in ms of sorted ns samples, the same definition as every summary."""
    return statistics.percentile(sorted_ns, q) / 1e6 if sorted_ns else None


def run(
    kind: str,
    run_once: Callable[[], object],
    rule: StoppingRule,
    params: Optional[Dict[str, float]] = None,
    probe_temperature: Optional[Callable[[], Optional[float]]] = None,
    sleep: Callable[[float], None] = time.sleep,
    timeline: Optional[Timeline] = None,
) -> ScenarioOutcome:
    params = params or {}
    started = time.perf_counter()
    if kind in ("single_stream", "offline"):
        outcome = ScenarioOutcome(time_runs(run_once, rule, timeline))
    elif kind == "paced":
        outcome = _paced(run_once, rule, float(params["gap_s"]), sleep, timeline)
    elif kind == "poisson":
        seed = int(params.get("seed", 0))
        outcome = _poisson(run_once, rule, float(params["rate"]), seed, sleep, timeline)
    elif kind == "soak":
        outcome = _soak(run_once, rule, float(params["minutes"]) * 60.0, probe_temperature)
    elif kind == "multi_stream":
        per_query = int(params.get("samples_per_query", loadgen.SAMPLES_PER_QUERY))
        outcome = _multi_stream(run_once, rule, float(params["interval_s"]), per_query, sleep)
    elif kind in MLPERF_KINDS:
        samples, queries, report = loadgen.run(kind, run_once, rule, params)
        outcome = ScenarioOutcome(samples, report, queries=queries)
    else:
        raise ValueError(f"unknown scenario {kind!r} (known: {', '.join(KINDS)})")
    outcome.measured_s = time.perf_counter() - started
    if kind in ("single_stream", "offline") and timeline is not None:
        # back to back: reading the conditions (a few hundred us of sysfs reads on a VM,
        # once a second) held the next query, so it is not the workload's time. Paced and
        # Poisson runs read them in their idle gaps, which their figures already count.
        outcome.measured_s -= timeline.spent_ns / 1e9
    if not outcome.queries:
        outcome.queries = len(outcome.samples_ns)
    if timeline is not None and timeline.points:
        outcome.report = {**outcome.report, "timeline": timeline.points}
    return outcome


def _paced(run_once, rule: StoppingRule, gap_s: float, sleep, timeline=None) -> ScenarioOutcome:  # noqa: ANN001
    clock = time.perf_counter_ns
    samples: List[int] = []
    start = clock()
    while True:
        sleep(gap_s)
        before = clock()
        run_once()
        after = clock()
        samples.append(after - before)
        if rule.done(len(samples), (after - start) / 1e9):
            break
        if timeline is not None:
            timeline.tick(after)
    return ScenarioOutcome(samples, {"gap_s": gap_s, "first_after_pause_ms": samples[0] / 1e6})


def warm_burst(run_once: Callable[[], object], max_s: float) -> List[int]:
    """WARM_BURST back-to-back queries (or fewer if max_s runs out): the baseline a paced
    run is compared with. Run apart from the paced queries so that neither its time nor its
    energy is counted as theirs."""
    return time_runs(run_once, StoppingRule(0, WARM_BURST, 0, max_s, WARM_BURST))


def paced_against_warm(paced_ns: List[int], warm_ns: List[int]) -> Dict[str, Any]:
    """The warm burst's figures and the paced median over the warm median."""
    warm = sorted(warm_ns)
    warm_p50 = _p(warm, 50)
    paced_p50 = _p(sorted(paced_ns), 50)
    return {
        "warm_n": len(warm),
        "warm_p50_ms": warm_p50,
        "warm_p99_ms": _p(warm, 99),
        "paced_over_warm": paced_p50 / warm_p50 if warm_p50 and paced_p50 is not None else None,
    }


def wait_until(deadline_ns: int, sleep: Callable[[float], None]) -> None:
    """Sleep until SPIN_NS before `deadline_ns`, then spin to it: late by microseconds, not
    by a scheduler's wake-up slack."""
    clock = time.perf_counter_ns
    remaining = deadline_ns - clock()
    if remaining > SPIN_NS:
        sleep((remaining - SPIN_NS) / 1e9)
    while clock() < deadline_ns:
        pass


def _poisson(
    run_once, rule: StoppingRule, rate: float, seed: int, sleep, timeline=None
) -> ScenarioOutcome:  # noqa: ANN001
    """Latency counts from each query's scheduled arrival (queueing included). The harness's
    own lateness is kept apart: how long after it could have started a query (its arrival,
    or the previous query's end when the device was busy) it did start it."""
    clock = time.perf_counter_ns
    gaps = random.Random(seed)
    latencies: List[int] = []
    service: List[int] = []
    late: List[int] = []
    queued = 0
    start = clock()
    arrival = start
    previous_done = start
    while True:
        arrival += int(gaps.expovariate(rate) * 1e9)
        if clock() < arrival:
            wait_until(arrival, sleep)
        else:
            queued += 1
        began = clock()
        run_once()
        done = clock()
        latencies.append(done - arrival)
        service.append(done - began)
        late.append(max(0, began - max(arrival, previous_done)))
        previous_done = done
        if rule.done(len(latencies), (done - start) / 1e9):
            break
        if timeline is not None:
            timeline.tick(done)
    elapsed_s = (clock() - start) / 1e9
    service.sort()
    late.sort()
    return ScenarioOutcome(
        latencies,
        {
            "offered_rate": rate,
            "achieved_rate": len(latencies) / elapsed_s if elapsed_s > 0 else None,
            "service_p50_ms": _p(service, 50),
            "service_p99_ms": _p(service, 99),
            "harness_late_p50_us": statistics.percentile(late, 50) / 1e3,
            "harness_late_p99_us": statistics.percentile(late, 99) / 1e3,
            "queued_share": queued / len(latencies),
            "seed": seed,
        },
    )


def _multi_stream(
    run_once, rule: StoppingRule, interval_s: float, per_query: int, sleep
) -> ScenarioOutcome:  # noqa: ANN001
    clock = time.perf_counter_ns
    interval_ns = int(interval_s * 1e9)
    latencies: List[int] = []
    misses = skipped = 0
    start = clock()
    slot = start
    while True:
        wait_until(slot, sleep)
        for _ in range(per_query):
            run_once()
        done = clock()
        latencies.append(done - slot)
        if done - slot > interval_ns:
            misses += 1
        slot += interval_ns
        if slot < done:  # the slots that passed while busy: frames dropped
            passed = (done - slot) // interval_ns + 1
            skipped += passed
            slot += passed * interval_ns
        if rule.done(len(latencies), (done - start) / 1e9):
            break
    return ScenarioOutcome(
        latencies,
        {
            "interval_s": interval_s,
            "samples_per_query": per_query,
            "deadline_misses": misses,
            "miss_rate": misses / len(latencies),
            "skipped_slots": skipped,
        },
        queries=len(latencies) * per_query,
    )


def _soak(run_once, rule: StoppingRule, duration_s: float, probe_temperature) -> ScenarioOutcome:  # noqa: ANN001
    """Back to back for `duration_s`; every sample is kept up to rule.max_queries (then a
    seeded uniform reservoir), and each of SOAK_BUCKETS time buckets is summarised whole."""
    clock = time.perf_counter_ns
    bucket_ns = int(duration_s * 1e9 / SOAK_BUCKETS)
    reservoir: List[int] = []
    chooser = random.Random(0)
    seen = 0
    buckets: List[Dict[str, Any]] = []
    current: List[int] = []
    start = clock()
    bucket_end = start + bucket_ns

    def close_bucket(index: int) -> None:
        current.sort()
        buckets.append(
            {
                "t_s": round(index * bucket_ns / 1e9, 3),
                "n": len(current),
                "p50_ms": _p(current, 50),
                "p99_ms": _p(current, 99),
                "hottest_c": probe_temperature() if probe_temperature else None,
            }
        )
        current.clear()

    while True:
        before = clock()
        run_once()
        after = clock()
        sample = after - before
        current.append(sample)
        seen += 1
        if len(reservoir) < rule.max_queries:
            reservoir.append(sample)
        else:
            slot = chooser.randrange(seen)
            if slot < rule.max_queries:
                reservoir[slot] = sample
        if after >= bucket_end:
            close_bucket(len(buckets))
            bucket_end += bucket_ns
            if len(buckets) >= SOAK_BUCKETS:
                break
    first, last = buckets[0]["p50_ms"], buckets[-1]["p50_ms"]
    return ScenarioOutcome(
        reservoir,
        queries=seen,
        report={
            "duration_s": duration_s,
            "queries": seen,
            "kept_samples": len(reservoir),
            "buckets": buckets,
            "drift_pct": (last - first) / first * 100.0 if first else None,
        },
    )
