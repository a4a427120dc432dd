"""Runs the real MLPerf LoadGen (`mlperf_loadgen`, from PyPI's mlcommons-loadgen) on a trivial
Python SUT, SingleStream, PerformanceOnly, once for each query count given:

    python loadgen_sut.py OUTDIR N [N ...]

Each run writes LoadGen's own logs into OUTDIR/nN/. tests/integration/test_loadgen_reference.py
starts this in a child process, so that LoadGen's threads die with that process and a hang
ends in a timeout, not a stuck test session.

The SUT completes each query inside the issue callback. The last TAIL_QUERIES queries it
busy-spins on first, the k-th of them (k = 1..TAIL_QUERIES) for k * TAIL_STEP_NS, so that
the highest latencies, where the 99th-percentile estimate sits, are far apart and distinct.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

TAIL_QUERIES = 64
TAIL_STEP_NS = 20_000
SAMPLES_IN_LIBRARY = 16


def run(n: int, outdir: Path) -> None:
    import mlperf_loadgen as lg

    outdir.mkdir(parents=True, exist_ok=True)
    issued = 0

    def issue_queries(queries) -> None:
        nonlocal issued
        responses = []
        for query in queries:
            entered = time.perf_counter_ns()
            tail_position = issued - (n - TAIL_QUERIES) + 1
            if tail_position > 0:
                deadline = entered + tail_position * TAIL_STEP_NS
                while time.perf_counter_ns() < deadline:
                    pass
            issued += 1
            responses.append(lg.QuerySampleResponse(query.id, 0, 0))
        lg.QuerySamplesComplete(responses)

    def flush_queries() -> None:
        pass

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_query_count = n
    settings.max_query_count = n
    settings.min_duration_ms = 0
    settings.single_stream_expected_latency_ns = 10_000

    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = True  # per-sample latencies, read back by the test

    sut = lg.ConstructSUT(issue_queries, flush_queries)
    qsl = lg.ConstructQSL(
        SAMPLES_IN_LIBRARY, SAMPLES_IN_LIBRARY, lambda samples: None, lambda samples: None
    )
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if issued != n:
        raise SystemExit(f"LoadGen issued {issued} queries, not {n}")


def main(argv: list[str]) -> None:
    root = Path(argv[0])
    for n in map(int, argv[1:]):
        run(n, root / f"n{n}")


if __name__ == "__main__":
    main(sys.argv[1:])
