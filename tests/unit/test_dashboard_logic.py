"""The dashboard's pure parts: Pareto fronts, condition summaries, the metric whitelist."""

from __future__ import annotations

import pytest

from dashboards import conditions, pareto
from orchestrator.store.queries import dashboard as dashboard_queries


def test_pareto_front_lower_latency_higher_accuracy():
    latency = [1.0, 2.0, 3.0, 2.5, 1.0]
    accuracy = [0.70, 0.80, 0.79, 0.80, 0.60]
    # 3.0/0.79 is beaten by 2.0/0.80; 2.5/0.80 by 2.0/0.80; 1.0/0.60 by 1.0/0.70.
    assert pareto.front(latency, accuracy, "lower", "higher") == [True, True, False, False, False]


def test_pareto_front_both_lower_keeps_ties():
    assert pareto.front([1, 1, 2], [5, 5, 1], "lower", "lower") == [True, True, True]
    assert pareto.front([1, 2], [1, 2], "lower", "lower") == [True, False]
    with pytest.raises(ValueError):
        pareto.front([1], [1], "smaller", "lower")


def snapshot(temperature: float, khz: list[int], governor: str) -> dict:
    return {
        "thermal_c": {"cpu": temperature, "gpu": temperature - 5},
        "freq_khz": {str(i): f for i, f in enumerate(khz)},
        "governors": {str(i): governor for i in range(len(khz))},
    }


def detail(**overrides) -> dict:
    base = {
        "device": "pi",
        "runtime": "onnxruntime",
        "runtime_version": "1.18.0",
        "precision": "fp32",
        "fallback": False,
        "placement": {"providers": ["CPUExecutionProvider"]},
        "device_facts": {"accelerators": [{"kind": "coral", "usb_speed_mbps": 5000}]},
        "environment": {
            "conditions_before": snapshot(45.0, [1_500_000, 1_800_000], "ondemand"),
            "conditions_after": snapshot(70.0, [600_000, 600_000], "ondemand"),
        },
    }
    return {**base, **overrides}


def test_summary_reads_clocks_temperatures_and_usb_speed():
    summary = conditions.summary(detail())
    assert summary["CPU clock before (MHz, mean)"] == 1650.0
    assert summary["CPU clock after (MHz, mean)"] == 600.0
    assert summary["hottest zone after (°C)"] == 70.0
    assert summary["governor before"] == "ondemand"
    assert summary["accelerators"] == "coral (USB 5000 Mb/s)"
    assert summary["providers / execution devices"] == "CPUExecutionProvider"
    assert summary["threads"] is None  # not recorded: None, not 0


def test_differences_come_first_and_unrecorded_rows_are_left_out():
    other = detail(
        runtime_version="1.19.0",
        device_facts={"accelerators": [{"kind": "coral", "usb_speed_mbps": 480}]},
    )
    rows = conditions.differences(detail(), other)
    differing = [r["what"] for r in rows if r["differs"]]
    assert differing == ["accelerators", "runtime version"]
    assert [r["what"] for r in rows[: len(differing)]] == differing
    assert "threads" not in [r["what"] for r in rows]  # neither recorded it


def test_only_whitelisted_metrics_reach_sql():
    assert dashboard_queries.metric("p99_ms").title == "latency p99 (ms)"
    with pytest.raises(ValueError, match="unknown metric"):
        dashboard_queries.metric("p50_ms; DROP TABLE trials")
    with pytest.raises(ValueError, match="unknown metric"):
        dashboard_queries.result_groups(None, [1], sort="id")
