"""Trials grouped into configurations: one row per configuration, its figures across runs.

A configuration is everything that decides what is measured: campaign, device, model,
runtime and its requested device and options, precision, batch size, scenario and its
parameters. Its runs are its trials (each a fresh process, `repeat` is the run number).
Rows of different scenarios or runtime options are never pooled. Older trials, measured
before runs existed, are configurations of one run.
"""

from __future__ import annotations

import json
from statistics import median
from typing import Any, Dict, Iterable, List, Optional, Tuple

from agents.contract import metrics
from orchestrator.across_runs import configuration_figures

# A configuration whose run medians vary more than this between runs is flagged unstable.
MAX_BETWEEN_RUN_CV = 0.10

KEY_FIELDS = (
    "campaign_id", "device", "model", "runtime", "requested_device", "precision",
    "batch_size", "scenario", "scenario_params", "runtime_options", "input_shapes",
)  # fmt: skip
# Figures that are a property of each run: the configuration shows their median over runs
# (its p50 is the across-runs figure of orchestrator.across_runs).
PER_RUN_MEDIANS = tuple(m.name for m in metrics.METRICS if m.per_run and m.name != "p50_ms")


def config_key(
    scenario_params: Optional[Dict[str, Any]],
    runtime_options: Optional[Dict[str, Any]],
    input_shapes: Optional[Dict[str, Any]],
) -> str:
    """The parts of a configuration held as JSON, as one canonical text (stored and indexed
    on each trial: the dashboard groups by it). "" when all three are empty."""
    parts = {
        "scenario_params": scenario_params or {},
        "runtime_options": runtime_options or {},
        "input_shapes": input_shapes or {},
    }
    return json.dumps(parts, sort_keys=True) if any(parts.values()) else ""


def configuration_key(row: Dict[str, Any]) -> Tuple:
    """What makes two trials runs of one configuration."""
    return tuple(
        json.dumps(row.get(name), sort_keys=True)
        if isinstance(row.get(name), (dict, list))
        else row.get(name)
        for name in KEY_FIELDS
    )


def _median_of(rows: List[Dict[str, Any]], name: str) -> Optional[float]:
    values = [r[name] for r in rows if r.get(name) is not None]
    return median(values) if values else None


def _status(runs: List[Dict[str, Any]]) -> Tuple[str, Optional[str]]:
    states = [r["status"] for r in runs]
    errors = [r["error"] for r in runs if r.get("error")]
    if len(set(states)) == 1:
        return states[0], errors[0] if errors else None
    counted = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    return counted, errors[0] if errors else None


def configuration_row(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One configuration from its runs (result rows of `queries.result_rows`)."""
    first = runs[0]
    measured = [r for r in runs if r.get("p50_ms") is not None]
    figures = configuration_figures([r["p50_ms"] for r in measured])
    status, error = _status(runs)
    between = figures["between_run_cv"]
    row: Dict[str, Any] = {name: first.get(name) for name in KEY_FIELDS}
    row.update(
        campaign=first.get("campaign"),
        trial_ids=[r["trial_id"] for r in runs],
        runs_planned=len(runs),
        status=status,
        error=error,
        actual_device=", ".join(
            sorted({str(r["actual_device"]) for r in measured if r.get("actual_device")})
        )
        or None,
        run_p50s_ms=[r["p50_ms"] for r in measured],
        unstable_runs=sum(1 for r in measured if r.get("unstable")),
        throttled=any(r.get("throttled") for r in measured),
        **figures,
    )
    row["unstable"] = bool(row["unstable_runs"]) or (
        between is not None and between > MAX_BETWEEN_RUN_CV
    )
    for name in PER_RUN_MEDIANS:
        row[name] = _median_of(measured, name)
    return row


def group(rows: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Configuration rows, in the order their first run appears."""
    by_key: Dict[Tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(configuration_key(row), []).append(row)
    return [configuration_row(runs) for runs in by_key.values()]


def runs_of(rows: Iterable[Dict[str, Any]], trial_id: str) -> List[Dict[str, Any]]:
    """Every run of the configuration `trial_id` belongs to (rows of one campaign)."""
    rows = list(rows)
    chosen = next((r for r in rows if r["trial_id"] == trial_id), None)
    if chosen is None:
        return []
    key = configuration_key(chosen)
    return [r for r in rows if configuration_key(r) == key]
