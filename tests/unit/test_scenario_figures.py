"""Scenario figures that are exact by construction: what throughput and energy divide by.

Soak used to divide by its kept reservoir (at most max_queries) instead of every query
measured; paced ran its warm burst inside the measured time and the energy window without
counting its queries. These run the real runner against the real onnxruntime, and a
constant-power external meter (a script that prints 4 W) so joules are watts x seconds.
"""

from __future__ import annotations

import os
import time

import pytest

from agents import runner
from agents.contract import MeasurementPolicy
from agents.measurement import energy, scenarios
from tests.unit.test_onnxruntime_runner import make_spec, mlp, model_file  # noqa: F401

WATTS = 4.0
posix_only = pytest.mark.skipif(os.name != "posix", reason="uses a shell script as a meter")


@pytest.fixture
def four_watts(tmp_path) -> str:
    script = tmp_path / "meter.sh"
    script.write_text(f'#!/bin/sh\necho "{WATTS} W"\n')
    script.chmod(0o755)
    return str(script)


def test_soak_throughput_counts_every_query_not_the_kept_reservoir(model_file):  # noqa: F811
    policy = MeasurementPolicy(warmup_s=0, min_queries=1, min_s=0, max_s=60, max_queries=100)
    spec = make_spec(model_file, scenario="soak", scenario_params={"minutes": 0.01}, policy=policy)
    result = runner.run_trial(spec)
    report = result["scenario_report"]
    assert len(result["samples_ns"]) == report["kept_samples"] == 100
    assert report["queries"] > 10 * 100  # a ~20 us model over 0.6 s: thousands of queries
    duration_s = 0.6
    # Every query measured over the soak's time (a little over its 0.6 s: the last query ends
    # after the last bucket's boundary). The reservoir would give at most 100 / 0.6 per second.
    assert result["throughput_ips"] == pytest.approx(report["queries"] / duration_s, rel=0.1)
    assert result["throughput_ips"] > 10 * 100 / duration_s


def spin(ms: float):
    def run() -> None:
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            pass

    return run


@posix_only
def test_paced_energy_window_holds_the_paced_queries_and_the_warm_burst_has_its_own(
    model_file,  # noqa: F811
    four_watts,
    tmp_path,
):
    """6 paced queries of 2 ms with 20 ms gaps (~130 ms) then a warm burst of 50 x 2 ms
    (~100 ms): folded together, the paced figure would carry ~75 % more time and joules."""
    policy = MeasurementPolicy(warmup_s=0, min_queries=6, min_s=0, max_s=10, idle_baseline_s=0)
    spec = make_spec(model_file, scenario="paced", scenario_params={"gap_s": 0.02}, policy=policy)
    meter = energy.detect(tmp_path, command=four_watts)
    meter.interval_s = 0.005
    measured = runner.measure(spec, spin(2), meter, None, {}, tmp_path)
    outcome = measured.outcome
    assert outcome.queries == len(outcome.samples_ns) == 6
    # The paced window covers the paced queries and their gaps, nothing after them.
    assert 6 * 0.022 * 0.95 <= outcome.measured_s < 6 * 0.022 + 0.08
    # (The meter's last reading, a subprocess, ends a few ms after the last query; the warm
    # burst inside the window would add ~100 ms.)
    assert measured.window_s <= outcome.measured_s + 0.05
    assert measured.window_j == pytest.approx(WATTS * measured.window_s, rel=1e-6)
    report = outcome.report
    assert report["warm_n"] == scenarios.WARM_BURST and report["warm_p50_ms"] >= 2.0
    # The warm burst's energy per inference comes from its own window: 4 W x ~2 ms each.
    assert report["warm_energy_mj_per_inference"] == pytest.approx(WATTS * 2.0, rel=0.35)
    assert report["paced_over_warm"] == pytest.approx(1.0, rel=0.5)
