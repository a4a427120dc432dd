"""A metric is declared once (agents.contract.metrics): the result message, the store's
Result columns, the export fields, the median over runs, the results table and the
dashboard's menus all follow from the declaration, and none of them lists a figure of its
own."""

from __future__ import annotations

import pytest

from agents.contract import LatencySummary, TrialResult, metrics
from orchestrator import configurations
from orchestrator.cli.results import COLUMNS
from orchestrator.store.models import Result
from orchestrator.store.queries import EXPORT_FIELDS
from orchestrator.store.queries.dashboard import METRICS as MENU

# What the message and the row hold beside the figures: who sent it, for which trial, and
# the structured detail (placement, environment, scenario report, samples).
MESSAGE_NOT_FIGURES = {
    "trial_id", "attempt", "device", "boot_id", "status", "error", "placement", "summary",
    "scenario_report", "samples_ns", "environment", "sent_at", "profile",
}  # fmt: skip
BY_NAME = {m.name: m for m in metrics.METRICS}
ROW_NOT_FIGURES = {
    "id", "trial_id", "attempt", "boot_id", "placement", "environment", "scenario_report",
    "received_at",
}  # fmt: skip


@pytest.mark.parametrize("metric", metrics.METRICS, ids=lambda m: m.name)
def test_each_declared_metric_reaches_every_place_a_figure_goes(metric):
    message = LatencySummary if metric.summary else TrialResult
    assert metric.name in message.model_fields
    assert message.model_fields[metric.name].is_required() == metric.required
    column = Result.__table__.columns[metric.name]
    assert column.nullable is not metric.required
    assert column.type.python_type is metric.kind
    assert metric.name in EXPORT_FIELDS
    assert (metric.name in MENU) == metric.menu
    if metric.per_run and metric.name != "p50_ms":  # p50: the across-runs figure
        assert metric.name in configurations.PER_RUN_MEDIANS
    if metric.table is not None:
        assert metric.table.heading in [heading for heading, _ in COLUMNS]


def test_no_figure_is_spelt_outside_the_registry():
    declared = {m.name for m in metrics.METRICS}
    assert set(TrialResult.model_fields) - declared == MESSAGE_NOT_FIGURES
    assert set(LatencySummary.model_fields) == {m.name for m in metrics.SUMMARY}
    assert {c.name for c in Result.__table__.columns} - declared == ROW_NOT_FIGURES
    assert len(declared) == len(metrics.METRICS)  # no name declared twice


def test_a_declaration_is_checked_where_it_is_made():
    summary = LatencySummary(
        n=3, p50_ms=2, p90_ms=3, p95_ms=3, p99_ms=3, mean_ms=2, min_ms=1, max_ms=3,
        stdev_ms=1, cv=0.5,
    )  # fmt: skip
    assert summary.iqr_ms is None  # optional figures are null until measured
    with pytest.raises(ValueError, match="p50_ms"):
        LatencySummary(n=3)
    with pytest.raises(ValueError, match="compile_ms"):
        TrialResult(
            trial_id="ab" * 16, attempt=1, device="d", boot_id="b", status="ok", sent_at=0,
            compile_ms="fast",
        )  # fmt: skip


def test_a_table_column_formats_as_declared():
    accuracy = BY_NAME["accuracy"].table
    assert accuracy.cell(0.9342) == "93.4%" and accuracy.cell(None) == "—"
    assert BY_NAME["model_bytes"].table.cell(2_500_000) == "2.50"
    assert BY_NAME["compile_ms"].title == ("cold start: compile (part of the model load) (ms)")
