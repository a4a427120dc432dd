"""Read-only queries behind the dashboard pages. Nothing here writes.

Every value a user picks reaches SQL as a bound parameter; the columns a user may sort or
plot by are looked up in METRICS (a whitelist), never spliced from a string. Aggregation
runs in SQL so that a page costs the same on a store of a thousand trials or a million
(figures in docs/BENCHMARKS.md; `bench/dashboard_queries.py` reproduces them).
"""

from __future__ import annotations

import functools
import json
import statistics
from typing import Any, Sequence

from sqlalchemy import Text, case, func, select
from sqlalchemy.orm import Session

from agents.contract import metrics
from agents.contract.metrics import Metric
from orchestrator import across_runs
from orchestrator.configurations import MAX_BETWEEN_RUN_CV
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

# The metrics a user may pick in a menu, sort or plot by: those declared with menu=True.
METRICS: dict[str, Metric] = {m.name: m for m in metrics.METRICS if m.menu}
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
    return getattr(Result, metric(name).name)


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
    """The batch sizes, precisions, runtimes, scenarios, input shapes and campaigns that
    these models were run with: each column's distinct values, all from one pass over
    ix_trials_model_batch (grouping by the six columns together sorted every combination,
    3x slower; six DISTINCT queries read the index six times, 2x slower on PostgreSQL)."""
    columns = {
        "batch_sizes": Trial.batch_size,
        "precisions": Trial.precision,
        "runtimes": Trial.runtime,
        "scenarios": Trial.scenario,
        "config_keys": Trial.config_key,
        "campaign_ids": Trial.campaign_id,
    }
    postgres = session.get_bind().dialect.name == "postgresql"
    aggregate = func.array_agg if postgres else func.json_group_array
    query = select(*(aggregate(c.distinct()) for c in columns.values())).where(
        Trial.model_id.in_(model_ids)
    )
    row = session.execute(query).one()
    found = {
        name: [v for v in ((value or []) if postgres else json.loads(value)) if v is not None]
        for name, value in zip(columns, row)
    }
    campaign_ids = sorted(found["campaign_ids"], reverse=True)
    names_query = select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids))
    names = {campaign_id: name for campaign_id, name in session.execute(names_query)}
    return {
        "batch_sizes": sorted(found["batch_sizes"]),
        "precisions": sorted(found["precisions"]),
        "runtimes": sorted(found["runtimes"]),
        "scenarios": sorted(found["scenarios"]),
        "input_shapes": sorted({config_parts(key)["input_shapes"] for key in found["config_keys"]}),
        "campaigns": [{"id": c, "name": names.get(c, "")} for c in campaign_ids],
    }


@functools.lru_cache(maxsize=4096)
def config_parts(config_key: str | None) -> dict[str, str]:
    """A trial's config_key as its parts, each a canonical JSON text ("" when empty):
    scenario_params, runtime_options, input_shapes."""
    parts = json.loads(config_key) if config_key else {}
    return {
        name: json.dumps(parts[name], sort_keys=True) if parts.get(name) else ""
        for name in ("scenario_params", "runtime_options", "input_shapes")
    }


# What makes a configuration beside device, runtime and precision: Compare and Trade-offs
# never pool two scenarios, two sets of runtime options or two input shapes into one bar.
CONFIGURATION_KEYS = ("scenario", "runtime_options", "input_shapes")


def _group_keys(by_model: bool) -> list[Any]:
    keys = [
        Trial.device_id.label("device_id"),  # named afterwards: no join per trial
        Trial.runtime.label("runtime"),
        Trial.precision.label("precision"),
        Result.actual_device.label("actual_device"),
        Trial.scenario.label("scenario"),
        Trial.config_key.label("config_key"),
    ]
    if by_model:
        # Grouped by id and named afterwards: a join to models here steers SQLite's planner
        # off the covering index.
        keys.append(Trial.model_id.label("model_id"))
    return keys


def _scoped(query: Any, model_ids: list[int], filters: dict[str, Any]) -> Any:
    query = (
        query.select_from(Trial)
        .join(Result, Result.trial_id == Trial.id)
        .where(Trial.model_id.in_(model_ids))
    )
    for column, value in (
        (Trial.batch_size, filters.get("batch_size")),
        (Trial.precision, filters.get("precision")),
        (Trial.campaign_id, filters.get("campaign_id")),
        (Trial.scenario, filters.get("scenario")),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


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
    scenario: str | None = None,
    input_shapes: str | None = None,
) -> list[dict[str, Any]]:
    """Measured trials of these models, one row per configuration: device × runtime ×
    precision × actual device × scenario × runtime options × input shapes (× model variant
    with `by_model`). Each row has its runs, the median of their p50s with its interval and
    between-run CV (across runs, as `results table`), how many runs were unstable, the mean
    of each other metric over the runs (None where none measured it), whether any fell back
    or throttled, and the newest trial's id. `input_shapes` filters on a value of
    result_filter_options' list ("" = the registered shapes)."""
    if sort is not None:
        metric(sort)  # refused before any SQL runs
    keys = _group_keys(by_model)
    filters = {"batch_size": batch_size, "precision": precision, "campaign_id": campaign_id}
    filters["scenario"] = scenario
    means = [func.avg(_column(name)).label(name) for name in metrics if name != "p50_ms"]
    flags = [
        func.max(case((getattr(Result, flag).is_(True), 1), else_=0)).label(flag)
        for flag in ("fallback", "throttled")
    ]
    unstable = func.sum(case((Result.unstable.is_(True), 1), else_=0)).label("unstable_runs")
    query = _scoped(
        select(
            *keys,
            func.max(Result.id).label("newest_result_id"),
            *means,
            *flags,
            func.count().label("trials"),
            unstable,
            _run_p50s(session).label("run_p50s"),
        ),
        model_ids,
        filters,
    ).group_by(*keys)
    rows = [dict(row._mapping) for row in session.execute(query)]
    newest = _trial_ids_of([r["newest_result_id"] for r in rows], session)
    model_names = _model_names(session, model_ids) if by_model else {}
    devices = {
        device_id: (name, device_class)
        for device_id, name, device_class in session.execute(
            select(Device.id, Device.name, Device.device_class).where(
                Device.id.in_({r["device_id"] for r in rows})
            )
        )
    }
    for row in rows:
        row.update(_run_figures(row.pop("run_p50s"), row["trials"], row["unstable_runs"]))
        row.update(config_parts(row.pop("config_key")))
        row["device"], row["device_class"] = devices[row.pop("device_id")]
        row["newest_trial_id"] = newest.get(row.pop("newest_result_id"))
        for flag in ("fallback", "throttled"):
            row[flag] = bool(row[flag])
        if by_model:
            row["model"] = model_names[row.pop("model_id")]
    if input_shapes is not None:
        rows = [r for r in rows if r["input_shapes"] == input_shapes]
    return _sorted(rows, sort, descending)


def _run_p50s(session: Session) -> Any:
    """Each configuration's run p50s as one comma-separated text, in the grouped query itself:
    one pass over the runs, and a few hundred rows to Python instead of every run (a page
    over a family reads tens of thousands). Both texts round-trip the floats exactly
    (PostgreSQL's shortest exact form; SQLite's own would keep 15 digits); None is left out."""
    if session.get_bind().dialect.name == "postgresql":
        return func.string_agg(func.cast(Result.p50_ms, Text), ",")
    exact = case((Result.p50_ms.is_not(None), func.printf("%.17g", Result.p50_ms)))
    return func.group_concat(exact, ",")


def _run_figures(run_p50s: str | None, trials: int, unstable_runs: int | None) -> dict[str, Any]:
    """A configuration's figures across its runs (median of run p50s, its interval,
    between-run CV), its runs and unstable runs."""
    p50s = [float(value) for value in run_p50s.split(",")] if run_p50s else []
    found = across_runs.configuration_figures(p50s)
    between = found["between_run_cv"]
    found["trials"] = trials
    found["unstable_runs"] = int(unstable_runs or 0)
    found["unstable"] = bool(found["unstable_runs"]) or (
        between is not None and between > MAX_BETWEEN_RUN_CV
    )
    return found


def registered_elements(session: Session, model_ids: list[int]) -> dict[str, int]:
    """Elements per item of each model's registered inputs (every dimension but the batch
    axis), for placing its unswept runs on a shape axis beside swept ones."""
    found: dict[str, int] = {}
    for name, inputs in session.execute(
        select(Model.name, Model.inputs).where(Model.id.in_(model_ids))
    ):
        total = 0
        for node in inputs or []:
            elements, axis = 1, node.get("batch_axis", 0)
            for i, dim in enumerate(node["shape"]):
                elements *= dim if (i != axis and dim) else 1
            total += elements
        found.setdefault(name, total)
    return found


def _model_names(session: Session, model_ids: list[int]) -> dict[int, str]:
    query = select(Model.id, Model.name).where(Model.id.in_(model_ids))
    return {model_id: name for model_id, name in session.execute(query)}


def _sorted(rows: list[dict[str, Any]], sort: str | None, descending: bool) -> list[dict[str, Any]]:
    """Rows by a metric (those that lack it last), else by their keys."""
    order = ("device", "runtime", "precision", "scenario", "runtime_options", "input_shapes")
    rows.sort(key=lambda r: tuple(str(r.get(k) or "") for k in order))
    if sort is not None:
        column = metric(sort).name
        measured = [r for r in rows if r.get(column) is not None]
        missing = [r for r in rows if r.get(column) is None]
        measured.sort(key=lambda r: r[column], reverse=descending)
        rows = measured + missing
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
