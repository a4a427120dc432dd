"""Read-only queries behind the dashboard pages. Nothing here writes.

Every value a user picks reaches SQL as a bound parameter; the columns a user may sort or
plot by are looked up in METRICS (a whitelist), never spliced from a string. Aggregation
runs in SQL so that a page costs the same on a store of a thousand trials or a million
(figures in docs/BENCHMARKS.md; `bench/dashboard_queries.py` reproduces them).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from orchestrator import across_runs
from orchestrator.store import queries
from orchestrator.store.models import (
    FAILED,
    Campaign,
    Device,
    Model,
    ModelCard,
    Result,
    ResultSamples,
    Trial,
)


@dataclass(frozen=True)
class Metric:
    column: str  # a Result column
    label: str
    unit: str
    better: str  # "lower" or "higher"

    @property
    def title(self) -> str:
        """Axis title: the label with its unit."""
        return f"{self.label} ({self.unit})"


METRICS: dict[str, Metric] = {
    m.column: m
    for m in (
        Metric("p50_ms", "latency p50", "ms", "lower"),
        Metric("p90_ms", "latency p90", "ms", "lower"),
        Metric("p99_ms", "latency p99", "ms", "lower"),
        Metric("mean_ms", "latency mean", "ms", "lower"),
        Metric("throughput_ips", "throughput", "inferences/s", "higher"),
        Metric("process_start_ms", "cold start: process start", "ms", "lower"),
        Metric("import_ms", "cold start: runtime import", "ms", "lower"),
        Metric("load_ms", "cold start: model load", "ms", "lower"),
        Metric("first_inference_ms", "cold start: first inference", "ms", "lower"),
        Metric("peak_rss_mb", "peak memory (RSS)", "MB", "lower"),
        Metric("energy_mj_per_inference", "energy per inference", "mJ", "lower"),
        Metric("accuracy", "top-1 accuracy", "fraction 0–1", "higher"),
        Metric("fidelity_cosine", "fidelity: cosine to fp32 outputs", "−1–1", "higher"),
        Metric("fidelity_top1_agreement", "fidelity: top-1 agreement", "fraction 0–1", "higher"),
        Metric("fidelity_max_abs_error", "fidelity: max abs error", "output units", "lower"),
        Metric("model_bytes", "model size", "bytes", "lower"),
    )
}
COLD_START_PARTS = ("process_start_ms", "import_ms", "load_ms", "first_inference_ms")
# The metrics ix_results_dashboard holds: averaging them reads the index, not the rows.
INDEXED_METRICS = tuple(
    column.name
    for index in Result.__table__.indexes
    if index.name == "ix_results_dashboard"
    for column in index.columns
    if column.name in METRICS
)


def metric(name: str) -> Metric:
    """The whitelisted metric called `name`; anything else is refused."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}") from None


def _column(name: str):  # noqa: ANN202
    return getattr(Result, metric(name).column)


# -- the store as a whole ------------------------------------------------------------------


def store_summary(session: Session) -> dict[str, Any]:
    """Enough to tell a first run (nothing registered, nothing submitted) from a real store."""
    return {
        "devices": session.scalar(select(func.count()).select_from(Device)) or 0,
        "campaigns": session.scalar(select(func.count()).select_from(Campaign)) or 0,
        "has_results": session.scalar(select(Result.id).limit(1)) is not None,
    }


def device_names(session: Session) -> list[str]:
    return list(session.scalars(select(Device.name).order_by(Device.name)))


# -- campaigns -----------------------------------------------------------------------------


def campaign_device_progress(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """One row per (device, state) of a campaign, with its trial count."""
    query = (
        select(Device.name, Trial.state, func.count())
        .join(Device, Trial.device_id == Device.id)
        .where(Trial.campaign_id == campaign_id)
        .group_by(Device.name, Trial.state)
        .order_by(Device.name, Trial.state)
    )
    return [
        {"device": device, "state": state, "trials": count}
        for device, state, count in session.execute(query)
    ]


def campaign_failures(session: Session, campaign_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """A campaign's failed trials with their reason, newest first."""
    query = (
        select(Trial, Device.name, Model.name)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .where(Trial.campaign_id == campaign_id, Trial.state == FAILED)
        .order_by(Trial.seq.desc())
        .limit(limit)
    )
    return [
        {
            "trial_id": trial.id,
            "device": device,
            "model": model,
            "runtime": trial.runtime,
            "precision": trial.precision,
            "batch_size": trial.batch_size,
            "attempt": trial.attempt,
            "error": trial.error,
        }
        for trial, device, model in session.execute(query)
    ]


# -- what can be compared ------------------------------------------------------------------


def model_variants(session: Session) -> list[dict[str, Any]]:
    """Every model variant with its family and input size (from its model card; a model
    without a card is its own family, of unknown input size), and its artifact ids."""
    query = (
        select(Model.id, Model.name, ModelCard.family, ModelCard.input_size, ModelCard.task)
        .outerjoin(ModelCard, ModelCard.name == Model.name)
        .order_by(Model.name, Model.id)
    )
    variants: dict[str, dict[str, Any]] = {}
    for model_id, name, family, input_size, task in session.execute(query):
        entry = variants.setdefault(
            name,
            {
                "name": name,
                "family": family or name,
                "input_size": input_size,
                "task": task,
                "model_ids": [],
            },
        )
        entry["model_ids"].append(model_id)
    return list(variants.values())


def result_filter_options(session: Session, model_ids: list[int]) -> dict[str, list[Any]]:
    """The batch sizes, precisions, runtimes and campaigns that these models were run with
    (one pass over ix_trials_model_batch)."""
    query = (
        select(Trial.batch_size, Trial.precision, Trial.runtime, Trial.campaign_id)
        .where(Trial.model_id.in_(model_ids))
        .group_by(Trial.batch_size, Trial.precision, Trial.runtime, Trial.campaign_id)
    )
    combos = session.execute(query).all()
    campaign_ids = sorted({c.campaign_id for c in combos}, reverse=True)
    names_query = select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids))
    names = {campaign_id: name for campaign_id, name in session.execute(names_query)}
    return {
        "batch_sizes": sorted({c.batch_size for c in combos}),
        "precisions": sorted({c.precision for c in combos}),
        "runtimes": sorted({c.runtime for c in combos}),
        "campaigns": [{"id": c, "name": names.get(c, "")} for c in campaign_ids],
    }


def result_groups(
    session: Session,
    model_ids: list[int],
    batch_size: int | None = None,
    precision: str | None = None,
    campaign_id: int | None = None,
    by_model: bool = False,
    metrics: Sequence[str] = INDEXED_METRICS,
    sort: str | None = None,
    descending: bool = False,
) -> list[dict[str, Any]]:
    """Measured trials of these models, one row per device × runtime × precision × actual
    device (× model variant with `by_model`): how many trials, the mean of each of
    `metrics` over them (None where none measured it), whether any fell back or throttled,
    and the newest trial's id. `metrics` and `sort` are METRICS names; the default metrics
    are the indexed ones, which keeps this fast on a large store."""
    keys = [
        Device.name.label("device"),
        Device.device_class.label("device_class"),
        Trial.runtime.label("runtime"),
        Trial.precision.label("precision"),
        Result.actual_device.label("actual_device"),
    ]
    if by_model:
        # Grouped by id and named afterwards: a join to models here steers SQLite's planner
        # off the covering index.
        keys.append(Trial.model_id.label("model_id"))
    means = [func.avg(_column(name)).label(name) for name in metrics]
    flags = [
        func.max(case((getattr(Result, flag).is_(True), 1), else_=0)).label(flag)
        for flag in ("fallback", "throttled")
    ]
    query = (
        select(
            *keys,
            func.count(Result.id).label("trials"),
            func.max(Result.id).label("newest_result_id"),
            *means,
            *flags,
        )
        .select_from(Trial)
        .join(Result, Result.trial_id == Trial.id)
        .join(Device, Trial.device_id == Device.id)
        .where(Trial.model_id.in_(model_ids))
        .group_by(*keys)
    )
    if batch_size is not None:
        query = query.where(Trial.batch_size == batch_size)
    if precision is not None:
        query = query.where(Trial.precision == precision)
    if campaign_id is not None:
        query = query.where(Trial.campaign_id == campaign_id)
    if sort is not None:
        order = func.avg(_column(sort))
        query = query.order_by(order.desc() if descending else order, *keys)
    else:
        query = query.order_by(*keys)
    rows = [dict(row._mapping) for row in session.execute(query)]
    newest = _trial_ids_of([r["newest_result_id"] for r in rows], session)
    if by_model:
        names_query = select(Model.id, Model.name).where(Model.id.in_(model_ids))
        names = {model_id: name for model_id, name in session.execute(names_query)}
        for row in rows:
            row["model"] = names[row.pop("model_id")]
    for row in rows:
        row["newest_trial_id"] = newest.get(row.pop("newest_result_id"))
        for flag in ("fallback", "throttled"):
            row[flag] = bool(row[flag])
    return rows


def _trial_ids_of(result_ids: list[int], session: Session) -> dict[int, str]:
    if not result_ids:
        return {}
    query = select(Result.id, Result.trial_id).where(Result.id.in_(result_ids))
    return {result_id: trial_id for result_id, trial_id in session.execute(query)}


def latency_boxes(session: Session, trial_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Box-plot figures (ms) of each trial's stored raw samples: quartiles, and whiskers at
    the furthest samples within 1.5 × the interquartile range (Tukey). Trials that kept no
    samples are left out."""
    query = (
        select(Result.trial_id, ResultSamples.samples_ns)
        .join(ResultSamples, ResultSamples.result_id == Result.id)
        .where(Result.trial_id.in_(list(trial_ids)))
    )
    boxes = {}
    for trial_id, samples_ns in session.execute(query):
        if not samples_ns:
            continue
        ms = sorted(s / 1e6 for s in samples_ns)
        q1, median, q3 = (
            statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else ms * 3
        )
        reach = 1.5 * (q3 - q1)
        boxes[trial_id] = {
            "samples": len(ms),
            "whisker_low_ms": next(s for s in ms if s >= q1 - reach),
            "q1_ms": q1,
            "median_ms": median,
            "q3_ms": q3,
            "whisker_high_ms": next(s for s in reversed(ms) if s <= q3 + reach),
        }
    return boxes


# -- one trial -----------------------------------------------------------------------------


def trial_choices(
    session: Session, campaign_id: int, device: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """A campaign's trials (optionally on one device) for a picker: id and a short label."""
    query = (
        select(Trial, Device.name, Model.name)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .where(Trial.campaign_id == campaign_id)
        .order_by(Trial.seq)
        .limit(limit)
    )
    if device is not None:
        query = query.where(Device.name == device)
    return [
        {
            "trial_id": trial.id,
            "state": trial.state,
            "label": f"{dev} · {model} · {trial.runtime} {trial.precision} · "
            f"batch {trial.batch_size} · {trial.state} · {trial.id[:8]}",
        }
        for trial, dev, model in session.execute(query)
    ]


def trial_detail(session: Session, trial_id: str) -> dict[str, Any] | None:
    """Everything about one trial: the export row, plus where it ran (placement), the
    conditions around it (environment), its scenario report, its device's facts and its
    model's card (None where absent)."""
    rows = queries.result_rows(session, trial_id=trial_id)
    if not rows:
        return None
    query = (
        select(Result.placement, Result.environment, Result.wall_s, Device.facts, ModelCard)
        .select_from(Trial)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .outerjoin(Result, Result.trial_id == Trial.id)
        .outerjoin(ModelCard, ModelCard.name == Model.name)
        .where(Trial.id == trial_id)
    )
    placement, environment, wall_s, facts, card = session.execute(query).one()
    return {
        **rows[0],
        "placement": placement or {},
        "environment": environment or {},
        "wall_s": wall_s,
        "device_facts": facts or {},
        "model_family": card.family if card else None,
        "input_size": card.input_size if card else None,
        "task": card.task if card else None,
    }


def newest_trial(
    session: Session,
    device: str,
    model_ids: list[int],
    batch_size: int | None = None,
    runtime: str | None = None,
    precision: str | None = None,
) -> str | None:
    """The newest measured trial of these models on `device` (the Diff page's "two devices
    for one model")."""
    # The highest result id of the matching trials, not "ORDER BY results.id DESC LIMIT 1":
    # with that, PostgreSQL walked every result newest first until one matched (0.3 s on a
    # million trials); the maximum reads the few matching trials from the indexes.
    newest = (
        select(func.max(Result.id))
        .select_from(Trial)
        .join(Result, Result.trial_id == Trial.id)
        .join(Device, Trial.device_id == Device.id)
        .where(Device.name == device, Trial.model_id.in_(model_ids))
    )
    for column, value in (
        (Trial.batch_size, batch_size),
        (Trial.runtime, runtime),
        (Trial.precision, precision),
    ):
        if value is not None:
            newest = newest.where(column == value)
    return session.scalar(select(Result.trial_id).where(Result.id == newest.scalar_subquery()))


def _run_medians(session: Session, trial_id: str) -> list[float]:
    """The run medians (ms) of the configuration `trial_id` is a run of."""
    return [r["p50_ms"] for r in queries.configuration_runs(session, trial_id) if r["p50_ms"]]


def significance(session: Session, trial_a: str, trial_b: str) -> dict[str, Any] | None:
    """`edgebench results compare` on the configurations of two trials: their run medians,
    the change with its interval, the exact test's p and the verdict. None when either
    configuration has no measured run."""
    a, b = _run_medians(session, trial_a), _run_medians(session, trial_b)
    if not a or not b:
        return None
    found = across_runs.compare_runs(a, b)
    return {
        "runs_a": a,
        "runs_b": b,
        "p50_a_ms": found.p50_a_ms,
        "p50_b_ms": found.p50_b_ms,
        "change_pct": found.change_pct,
        "interval_pct": found.interval_pct,
        "interval_coverage": found.interval_coverage,
        "p_value": found.p_value,
        "alpha": found.alpha,
        "practical_pct": found.practical_pct,
        "significant": found.significant,
        "verdict": found.verdict(),
    }


def devices_with_results(session: Session, model_ids: list[int]) -> list[str]:
    """Devices that measured any of these models."""
    query = (
        select(Device.name)
        .where(
            select(Trial.id)
            .join(Result, Result.trial_id == Trial.id)
            .where(Trial.device_id == Device.id, Trial.model_id.in_(model_ids))
            .exists()
        )
        .order_by(Device.name)
    )
    return list(session.scalars(query))
