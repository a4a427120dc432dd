"""The `mlperf_*` scenarios: MLPerf LoadGen itself (mlcommons-loadgen, edgebench[mlperf])
issues the queries, as in an MLPerf submission, and its own summary is kept beside
edgebench's figures.

LoadGen runs PerformanceOnly with the trial's policy as its limits (min_queries,
min_s, max_s, max_queries). Its issue callback hands each query to one worker thread, which
runs it (one call of the bound model per sample) and reports it complete, so LoadGen's
issuing is never blocked by the model. Every sample is the trial's one bound input (the
measurement needs latency, not accuracy). edgebench's own samples are each query's latency
from issue to completion (queueing included, as LoadGen counts it) and, for Offline, where
one query holds every sample, each sample's service time.
"""

from __future__ import annotations

import queue
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from agents.measurement.timing import StoppingRule

SCENARIOS = {
    "mlperf_single_stream": "SingleStream",
    "mlperf_multi_stream": "MultiStream",
    "mlperf_offline": "Offline",
    "mlperf_server": "Server",
}
SAMPLES_PER_QUERY = 8  # MLPerf's MultiStream default (the native multi_stream's too)
SAMPLES_IN_LIBRARY = 64  # LoadGen's sample library; each sample is the one bound input
PROBE_QUERIES = 20  # timed before LoadGen starts, for the expected latency or QPS it asks
MISSING = "the mlperf scenarios need MLPerf LoadGen: pip install 'edgebench[mlperf]'"


class LoadGenUnavailable(RuntimeError):
    """mlcommons-loadgen is not installed on this device."""


def _probe_ns(run_once: Callable[[], object]) -> int:
    """The median of a few calls: what LoadGen is told to expect."""
    taken = []
    for _ in range(PROBE_QUERIES):
        before = time.perf_counter_ns()
        run_once()
        taken.append(time.perf_counter_ns() - before)
    return max(1, sorted(taken)[len(taken) // 2])


def settings_for(lg: Any, kind: str, rule: StoppingRule, params: Dict[str, float], probe_ns: int):
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, SCENARIOS[kind])
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_query_count = rule.min_queries
    settings.max_query_count = rule.max_queries
    settings.min_duration_ms = int(rule.min_s * 1000)
    settings.max_duration_ms = int(rule.max_s * 1000)
    per_query = int(params.get("samples_per_query", SAMPLES_PER_QUERY))
    settings.single_stream_expected_latency_ns = probe_ns
    settings.multi_stream_expected_latency_ns = probe_ns * per_query
    settings.multi_stream_samples_per_query = per_query
    settings.offline_expected_qps = 1e9 / probe_ns
    if "rate" in params:
        settings.server_target_qps = float(params["rate"])
    return settings


def parse_summary(text: str) -> Dict[str, Any]:
    """LoadGen's mlperf_log_summary.txt as {key: value}, numbers as numbers, plus `valid`."""
    found: Dict[str, Any] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        key = key.strip().lstrip("*").strip()
        if not colon or not key or not value.strip():
            continue
        value = value.strip()
        number = re.fullmatch(r"-?\d+(\.\d+)?(e[-+]?\d+)?", value)
        found[key] = (
            (float(value) if "." in value or "e" in value else int(value)) if number else value
        )
    found["valid"] = found.get("Result is") == "VALID"
    return found


class _Worker:
    """Runs the queries LoadGen issues, one at a time, in the order issued."""

    def __init__(self, lg: Any, run_once: Callable[[], object], offline: bool) -> None:
        self.lg, self.run_once, self.offline = lg, run_once, offline
        self.pending: queue.Queue[Optional[tuple]] = queue.Queue()
        self.latencies: List[int] = []
        self.samples = 0
        self.thread = threading.Thread(target=self._loop, name="loadgen-sut", daemon=True)

    def issue(self, query_samples: List[Any]) -> None:
        self.pending.put((time.perf_counter_ns(), query_samples))

    def _loop(self) -> None:
        clock = time.perf_counter_ns
        while True:
            item = self.pending.get()
            if item is None:
                return
            issued, query_samples = item
            responses = []
            for sample in query_samples:
                began = clock()
                self.run_once()
                if self.offline:
                    self.latencies.append(clock() - began)
                responses.append(self.lg.QuerySampleResponse(sample.id, 0, 0))
            self.samples += len(query_samples)
            if not self.offline:
                self.latencies.append(clock() - issued)
            self.lg.QuerySamplesComplete(responses)


def run(
    kind: str, run_once: Callable[[], object], rule: StoppingRule, params: Dict[str, float]
) -> tuple:
    """(latency samples ns, samples run, report with LoadGen's summary under "loadgen")."""
    try:
        import mlperf_loadgen as lg
    except ImportError:
        raise LoadGenUnavailable(MISSING) from None
    probe = _probe_ns(run_once)
    worker = _Worker(lg, run_once, offline=kind == "mlperf_offline")
    worker.thread.start()
    outdir = Path(tempfile.mkdtemp(prefix="edgebench-loadgen-"))
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    sut = lg.ConstructSUT(worker.issue, lambda: None)
    qsl = lg.ConstructQSL(SAMPLES_IN_LIBRARY, SAMPLES_IN_LIBRARY, lambda s: None, lambda s: None)
    try:
        lg.StartTestWithLogSettings(
            sut, qsl, settings_for(lg, kind, rule, params, probe), log_settings
        )
        summary = parse_summary((outdir / "mlperf_log_summary.txt").read_text())
    finally:
        worker.pending.put(None)
        worker.thread.join()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        shutil.rmtree(outdir, ignore_errors=True)
    report = {
        "loadgen_scenario": SCENARIOS[kind],
        "expected_latency_ms": probe / 1e6,
        "samples_per_query": int(params.get("samples_per_query", SAMPLES_PER_QUERY))
        if kind == "mlperf_multi_stream"
        else 1,
        "loadgen": summary,
    }
    return worker.latencies, worker.samples, report
