"""Every figure a trial's result carries, declared once.

A declaration here is the whole of a metric's plumbing: it makes the field of the result
message (agents.contract.TrialResult, or its LatencySummary), the column of the store's
Result row (orchestrator.store.models), the field of `results export`, the median over
runs in `results table` (and a column there when it has a heading), and an entry in the
dashboard's metric menus. Adding one is this declaration and a migration that adds its
column (docs/ARCHITECTURE.md); the code that measures it fills the result field of its name.

Shared by the controller and the agents, so stdlib only and Python 3.8 safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class TableColumn:
    """How `results table` shows a metric: its heading and the number's format."""

    heading: str
    digits: int = 3
    scale: float = 1.0  # shown as value * scale (bytes as MB, a fraction as %)
    suffix: str = ""

    def cell(self, value: Optional[float]) -> str:
        return "—" if value is None else f"{value * self.scale:.{self.digits}f}{self.suffix}"


@dataclass(frozen=True)
class Metric:
    name: str  # the result field, the store column and the export field
    kind: type  # float, int, bool or str
    label: str  # what a user reads; with the unit, an axis title
    unit: str = ""
    better: Optional[str] = None  # "lower" or "higher"; None: not a figure to rank by
    summary: bool = False  # part of the latency summary of the timed queries
    required: bool = False  # a summary figure every measured result has (not null)
    menu: bool = False  # offered in the dashboard's metric menus
    table: Optional[TableColumn] = None  # a `results table` column
    length: int = 64  # str: the column's length
    wide: bool = False  # int: a 64-bit column

    @property
    def title(self) -> str:
        """Axis title: the label with its unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def per_run(self) -> bool:
        """A ranked number that each run has: a configuration shows its median over runs."""
        return self.better is not None and self.kind in (int, float)


def _summary(name: str, label: str, unit: str = "ms", **more) -> Metric:  # noqa: ANN003
    kind = more.pop("kind", float)
    return Metric(name, kind, label, unit, summary=True, **more)


METRICS: Tuple[Metric, ...] = (
    # The latency summary of the timed queries (agents.contract.statistics.summarize_ns).
    _summary("n", "queries measured", "", kind=int, required=True),
    _summary("p50_ms", "latency p50", better="lower", required=True, menu=True),
    _summary("p90_ms", "latency p90", better="lower", required=True, menu=True,
             table=TableColumn("p90 ms")),
    _summary("p95_ms", "latency p95", better="lower", required=True),
    _summary("p99_ms", "latency p99", better="lower", required=True, menu=True,
             table=TableColumn("p99 ms")),
    _summary("p999_ms", "latency p99.9", better="lower"),
    _summary("mean_ms", "latency mean", better="lower", required=True, menu=True),
    _summary("min_ms", "latency min", required=True),
    _summary("max_ms", "latency max", required=True),
    _summary("stdev_ms", "latency standard deviation", required=True),
    _summary("cv", "coefficient of variation", "", required=True),
    _summary("iqr_ms", "interquartile range"),
    _summary("mad_ms", "median absolute deviation"),
    _summary("robust_cv", "robust coefficient of variation", ""),
    _summary("median_ci_low_ms", "median: interval low (within the run)"),
    _summary("median_ci_high_ms", "median: interval high (within the run)"),
    _summary("p90_es_ms", "expected shortfall beyond p90"),
    _summary("p99_es_ms", "expected shortfall beyond p99"),
    # The rest of the run.
    Metric("unstable", bool, "unstable (robust spread above max_cv)"),
    Metric("throughput_ips", float, "throughput", "inferences/s", "higher", menu=True,
           table=TableColumn("items/s", digits=0)),
    Metric("process_start_ms", float, "cold start: process start", "ms", "lower", menu=True),
    Metric("import_ms", float, "cold start: runtime import", "ms", "lower", menu=True),
    Metric("load_ms", float, "cold start: model load", "ms", "lower", menu=True,
           table=TableColumn("load ms", digits=1)),
    Metric("load_cached_ms", float, "model load from the runtime's cache", "ms", "lower"),
    Metric("compile_ms", float, "cold start: compile (part of the model load)", "ms", "lower",
           menu=True),
    Metric("first_inference_ms", float, "cold start: first inference", "ms", "lower",
           menu=True),
    Metric("peak_rss_mb", float, "peak memory (RSS)", "MB", "lower", menu=True,
           table=TableColumn("RSS MB", digits=1)),
    Metric("load_rss_delta_mb", float, "memory the load added (RSS)", "MB", "lower"),
    Metric("model_bytes", int, "model size", "bytes", "lower", menu=True, wide=True,
           table=TableColumn("model MB", digits=2, scale=1e-6)),
    Metric("accuracy", float, "top-1 accuracy", "fraction 0–1", "higher", menu=True,
           table=TableColumn("accuracy", digits=1, scale=100, suffix="%")),
    Metric("accuracy_n", int, "accuracy: labelled examples"),
    Metric("fidelity_cosine", float, "fidelity: cosine to fp32 outputs", "−1–1", "higher",
           menu=True, table=TableColumn("fidelity", digits=5)),
    Metric("fidelity_top1_agreement", float, "fidelity: top-1 agreement", "fraction 0–1",
           "higher", menu=True),
    Metric("fidelity_max_abs_error", float, "fidelity: max abs error", "output units",
           "lower", menu=True),
    Metric("energy_mj_per_inference", float, "energy per inference", "mJ", "lower",
           menu=True, table=TableColumn("mJ/item")),
    Metric("idle_power_w", float, "idle power", "W"),
    Metric("energy_meter", str, "energy meter", length=32),
    Metric("throttled", bool, "throttled while measured"),
    Metric("runtime_version", str, "runtime version"),
    Metric("actual_device", str, "device it ran on"),
    Metric("fallback", bool, "fell back from the requested device"),
    Metric("wall_s", float, "trial wall time", "s"),
)  # fmt: skip

SUMMARY = tuple(m for m in METRICS if m.summary)
OUTSIDE_SUMMARY = tuple(m for m in METRICS if not m.summary)
