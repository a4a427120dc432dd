"""Our early-stopping estimates against the real MLPerf LoadGen (PyPI: mlcommons-loadgen).

loadgen_sut.py runs LoadGen's SingleStream PerformanceOnly test on a Python SUT for each
query count below, in a child process. From each run LoadGen's own mlperf_log_summary.txt
gives the minimum query count ("Need to process at least N queries" / "Processed at least
N queries"), the 90th-percentile rank ("Would discard K highest latency queries": the
estimate is the (K+1)-th highest latency) and both estimates in ns; its trace
(mlperf_log_trace.json, one "Sample" event per query with `complete_ns`) gives the very
latencies LoadGen ranked. Fed those latencies, `quantile_upper_bound` must say None exactly
when LoadGen says too few queries, pick the same rank at p90, and return the same value
at p90 and p99. The SUT spreads its last 64 latencies 20 us apart, so the p99 estimate is
a value held by one query only: the equal value then pins LoadGen's rank too.

Missing mlperf_loadgen skips this module on a laptop and fails it in CI (CI=true).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.contract.statistics import early_stopping_rank, quantile_upper_bound, summarize_ns
from tests.conftest import missing_service

HERE = Path(__file__).resolve().parent
# Around the p90 threshold (64), around the p99 threshold (662), and beyond.
QUERY_COUNTS = [40, 63, 64, 65, 100, 300, 661, 662, 663, 1000, 2500]


def minimum_queries(q: float) -> int:
    """The least n with an estimate, by our function (bisection: the rank exists from
    some n on and for every n beyond)."""
    low, high = 1, 100_000  # None at low, an estimate at high
    while high - low > 1:
        middle = (low + high) // 2
        if early_stopping_rank(middle, q, 0.99) is None:
            low = middle
        else:
            high = middle
    return high


def read_latencies(trace: Path) -> list[int]:
    """complete_ns of each "Sample" begin event. LoadGen's trace is not valid JSON as a
    whole (some LogDetail args carry doubled quotes), but each event is one JSON line."""
    latencies = []
    for line in trace.read_text().splitlines():
        if line.startswith('{"name":"Sample"') and '"ph":"b"' in line:
            latencies.append(json.loads(line.rstrip().rstrip(","))["args"]["complete_ns"])
    return sorted(latencies)


def parse_summary(text: str) -> dict:
    def number(pattern: str) -> int | None:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else None

    return {
        "p90_need": number(r"Need to process at least (\d+) queries for early stopping"),
        "p90_min": number(r"Processed at least (\d+) queries \(\d+\)"),
        "p90_discard": number(r"Would discard (\d+) highest latency queries"),
        "p90_estimate": number(r"Early stopping 90\.0th percentile estimate: (\d+)"),
        "p99_need": number(r"would need to process at\s+least (\d+) total queries"),
        "p99_estimate": number(r"Early stopping 99\.0th percentile estimate: (\d+)"),
    }


@pytest.fixture(scope="module")
def loadgen_runs(tmp_path_factory) -> dict:
    if importlib.util.find_spec("mlperf_loadgen") is None:
        missing_service("mlperf_loadgen is not installed (pip install mlcommons-loadgen)")
    root = tmp_path_factory.mktemp("loadgen")
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "loadgen_sut.py"), str(root)]
            + [str(n) for n in QUERY_COUNTS],
            cwd=root,  # LoadGen reads ./audit.config when there is one: none here
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed the child by now
        pytest.fail(f"LoadGen did not finish in {exc.timeout} s")
    assert done.returncode == 0, f"LoadGen run failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    runs = {}
    for n in QUERY_COUNTS:
        summary = (root / f"n{n}" / "mlperf_log_summary.txt").read_text()
        runs[n] = (parse_summary(summary), read_latencies(root / f"n{n}" / "mlperf_log_trace.json"))
    return runs


@pytest.mark.parametrize("n", QUERY_COUNTS)
def test_p90_estimate_matches_loadgen(loadgen_runs, n):
    found, latencies = loadgen_runs[n]
    assert len(latencies) == n, "one trace Sample per query"
    threshold = found["p90_need"] or found["p90_min"]
    assert threshold == minimum_queries(0.90) == 64
    summary = summarize_ns(latencies)
    if n < threshold:
        assert found["p90_need"] == 64 and found["p90_estimate"] is None
        assert quantile_upper_bound(latencies, 0.90) is None and summary["p90_es_ms"] is None
        return
    # LoadGen reports x[n - t] (ascending, 0-based), having discarded the t - 1 above it.
    loadgen_rank = n - (found["p90_discard"] + 1)
    assert latencies[loadgen_rank] == found["p90_estimate"], "trace and summary agree"
    assert early_stopping_rank(n, 0.90) == loadgen_rank
    assert quantile_upper_bound(latencies, 0.90) == found["p90_estimate"]
    assert summary["p90_es_ms"] == found["p90_estimate"] / 1e6


@pytest.mark.parametrize("n", QUERY_COUNTS)
def test_p99_estimate_matches_loadgen(loadgen_runs, n):
    found, latencies = loadgen_runs[n]
    summary = summarize_ns(latencies)
    if n < 64:  # LoadGen stops at the p90 check and prints nothing about p99
        assert found["p99_need"] is None and found["p99_estimate"] is None
    elif found["p99_estimate"] is None:
        assert found["p99_need"] == minimum_queries(0.99) == 662
    assert (n < 662) == (found["p99_estimate"] is None)
    if found["p99_estimate"] is None:
        assert quantile_upper_bound(latencies, 0.99) is None and summary["p99_es_ms"] is None
        return
    estimate = found["p99_estimate"]
    assert latencies.count(estimate) == 1, "the SUT's spread tail makes the estimate unique"
    assert early_stopping_rank(n, 0.99) == latencies.index(estimate)
    assert quantile_upper_bound(latencies, 0.99) == estimate
    assert summary["p99_es_ms"] == estimate / 1e6
