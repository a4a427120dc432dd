"""The conditions behind a number, summarised for people: what a trial ran on, with what,
and in what state the device was (clocks, temperatures, governor) before and after.

Works on `dashboard_queries.trial_detail` dicts. A value that was not recorded is left
out (None), never shown as zero.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any


def _join(values: Any) -> str | None:
    if not values:
        return None
    if isinstance(values, dict):
        values = values.values()
    return ", ".join(sorted({str(v) for v in values}))


def hottest_c(snapshot: dict[str, Any] | None) -> float | None:
    temps = [t for t in ((snapshot or {}).get("thermal_c") or {}).values() if _is_number(t)]
    return max(temps) if temps else None


def mean_freq_mhz(snapshot: dict[str, Any] | None) -> float | None:
    freqs = [f for f in ((snapshot or {}).get("freq_khz") or {}).values() if _is_number(f)]
    return round(fmean(freqs) / 1000, 1) if freqs else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _accelerators(facts: dict[str, Any]) -> str | None:
    found = []
    for accelerator in facts.get("accelerators") or []:
        speed = accelerator.get("usb_speed_mbps")
        found.append(f"{accelerator.get('kind')}" + (f" (USB {speed} Mb/s)" if speed else ""))
    return ", ".join(found) or None


def _placement_summary(placement: dict[str, Any]) -> str | None:
    used = placement.get("providers") or placement.get("execution_devices")
    return ", ".join(str(u) for u in used) if used else None


def summary(detail: dict[str, Any]) -> dict[str, Any]:
    """Label -> value for one trial, in reading order; None where not recorded."""
    facts = detail.get("device_facts") or {}
    env = detail.get("environment") or {}
    placement = detail.get("placement") or {}
    before, after = env.get("conditions_before") or {}, env.get("conditions_after") or {}
    threads = placement.get("threads", env.get("threads"))
    return {
        "device": detail.get("device"),
        "device class": detail.get("device_class"),
        "CPU": facts.get("cpu_model"),
        "architecture": facts.get("arch"),
        "logical cores": facts.get("logical_cores"),
        "memory (MB)": facts.get("memory_mb"),
        "OS": facts.get("os"),
        "kernel": facts.get("kernel"),
        "accelerators": _accelerators(facts),
        "model": detail.get("model"),
        "input size (px)": detail.get("input_size"),
        "runtime": detail.get("runtime"),
        "runtime version": detail.get("runtime_version"),
        "precision": detail.get("precision"),
        "batch size": detail.get("batch_size"),
        "scenario": detail.get("scenario"),
        "requested device": detail.get("requested_device"),
        "actual device": detail.get("actual_device"),
        "fallback": detail.get("fallback"),
        "providers / execution devices": _placement_summary(placement),
        "inference precision (runtime)": placement.get("inference_precision"),
        "threads": threads,
        "Python": env.get("python"),
        "NumPy": env.get("numpy"),
        "governor before": _join(before.get("governors")),
        "governor after": _join(after.get("governors")),
        "CPU clock before (MHz, mean)": mean_freq_mhz(before),
        "CPU clock after (MHz, mean)": mean_freq_mhz(after),
        "hottest zone before (°C)": hottest_c(before),
        "hottest zone after (°C)": hottest_c(after),
        "online CPUs": _join(before.get("online_cpus")),
        "Jetson power mode": (before.get("jetson") or {}).get("nvpmodel"),
        "load average before (1 min)": (before.get("loadavg") or [None])[0],
        "throttled": detail.get("throttled"),
        "energy meter": detail.get("energy_meter"),
        "harness overhead (ns/query)": env.get("harness_overhead_ns"),
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (what, A, B, differs) over both summaries, leaving out what neither recorded;
    rows that differ come first, in reading order."""
    left, right = summary(a), summary(b)
    rows = [
        {
            "what": label,
            "A": _shown(left[label]),
            "B": _shown(right[label]),
            "differs": left[label] != right[label],
        }
        for label in left
        if left[label] is not None or right[label] is not None
    ]
    return sorted(rows, key=lambda row: not row["differs"])


def _shown(value: Any) -> str:
    return "—" if value is None else str(value)
