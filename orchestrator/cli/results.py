"""`edgebench results table|compare|profile|export`."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.table import Table

from agents.contract import metrics
from agents.contract.metrics import TableColumn
from orchestrator.cli.store_access import console, fail, open_sessions
from orchestrator.configurations import MAX_BETWEEN_RUN_CV, configuration_row, group

app = typer.Typer(help="Measured results.", no_args_is_help=True)


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(row: dict) -> str:
    if row["p50_low_ms"] is None:
        return "—"
    return f"{row['p50_low_ms']:.3f}–{row['p50_high_ms']:.3f} ({row['p50_interval_coverage'] * 100:.0f} %)"


def _status_of(r: dict) -> str:
    status = r["status"] if not r["error"] else f"{r['status']}: {r['error'][:80]}"
    return status + (" (throttled)" if r["throttled"] else "")


def _runs_of(r: dict) -> str:
    return f"{r['runs']}/{r['runs_planned']}" if r["runs"] != r["runs_planned"] else str(r["runs"])


def _metric_cell(column: TableColumn, name: str) -> Callable[[dict], str]:
    return lambda r: column.cell(r[name])


# (header, cell) of every column; the across-runs ones only when some configuration has runs.
# Past p50, each metric declared with a table column (agents.contract.metrics), in order.
COLUMNS = [
    ("device", lambda r: r["device"]),
    ("model", lambda r: r["model"]),
    ("runtime", lambda r: f"{r['runtime']}/{r['actual_device'] or r['requested_device']}"),
    ("prec", lambda r: r["precision"]),
    ("scenario", lambda r: r["scenario"]),
    ("batch", lambda r: str(r["batch_size"])),
    ("shapes", lambda r: _shapes(r["input_shapes"])),
    ("runs", _runs_of),
    ("p50 ms", lambda r: _fmt(r["p50_ms"]) + ("*" if r["unstable"] else "")),
    ("p50 interval (coverage)", _interval),
    ("run cv", lambda r: _fmt(r["between_run_cv"], 3)),
    *((m.table.heading, _metric_cell(m.table, m.name)) for m in metrics.METRICS if m.table),
    ("status", _status_of),
]
ACROSS_RUNS = {"p50 interval (coverage)", "run cv"}


def _shapes(shapes: Optional[dict]) -> str:
    """A sweep's input shapes (name=1x3x640x640), or "registered"."""
    if not shapes:
        return "registered"
    return " ".join(f"{name}={'x'.join(map(str, shape))}" for name, shape in sorted(shapes.items()))


def render_table(configurations: list[dict], title: Optional[str] = None) -> Table:
    """One row per configuration, its figures across its runs."""
    several = any(c["runs"] > 1 for c in configurations)
    swept = any(c.get("input_shapes") for c in configurations)
    columns = [
        c for c in COLUMNS if (several or c[0] not in ACROSS_RUNS) and (swept or c[0] != "shapes")
    ]
    caption = (
        "p50: median of the runs' medians (a run is a fresh process); other figures: median "
        "over runs. * unstable: a run's robust spread above max_cv"
        + (
            f", or run cv (between-run CV of the median) above {MAX_BETWEEN_RUN_CV:g}; the "
            "p50 interval is across runs"
            if several
            else ""
        )
        + "; — not measured; fidelity: cosine similarity to the fp32 reference"
    )
    table = Table(*(header for header, _ in columns), title=title, caption=caption)
    for row in configurations:
        table.add_row(*(cell(row) for _, cell in columns))
    return table


def print_results(sessions, campaign_id: Optional[int]) -> None:  # noqa: ANN001
    from orchestrator.store import queries

    with sessions() as session:
        rows = queries.result_rows(session, campaign_id=campaign_id)
    configurations = group(rows)
    console.print(
        render_table(configurations, title=f"campaign {campaign_id}" if campaign_id else None)
    )
    single = [c for c in configurations if c["runs_planned"] == 1]
    if single:
        console.print(
            f"{len(single)} configuration(s) measured in one run: no interval across runs and "
            "no verdict for them (a campaign's default is policy.runs: 5)."
        )


@app.command("table")
def table(
    campaign: Optional[int] = typer.Option(None, help="Campaign id (default: the latest)."),
    device: Optional[str] = typer.Option(None, help="Only this device."),
    model: Optional[str] = typer.Option(None, help="Only this model."),
) -> None:
    """A comparison table: one row per configuration, its figures across its runs."""
    from orchestrator.store import queries

    with open_sessions()() as session:
        campaign = campaign or queries.latest_campaign_id(session)
        if campaign is None:
            fail("no campaigns yet")
        rows = queries.result_rows(session, campaign_id=campaign, device=device, model=model)
    console.print(render_table(group(rows), title=f"campaign {campaign}"))


def _configuration_runs(session, name: str, prefix: str) -> tuple[dict, list[dict]]:  # noqa: ANN001
    """The trial a prefix names, and every run of its configuration (measured or not)."""
    from orchestrator.store import queries

    found = queries.trials_matching(session, prefix) if len(prefix) >= 4 else []
    if len(found) != 1:
        what = "no trial" if not found else f"{len(found)} trials"
        fail(f"{name}: {what} with an id starting {prefix!r} (give at least 4 characters)")
    trial_id = found[0]["trial_id"]
    runs = queries.configuration_runs(session, trial_id)
    if not any(r["p50_ms"] is not None for r in runs):
        fail(f"{name}: the configuration of trial {trial_id[:12]} has no measured run yet")
    return found[0], runs


@app.command("compare")
def compare(
    a: str = typer.Argument(..., help="Trial id (or its first characters): the baseline."),
    b: str = typer.Argument(..., help="Trial id (or its first characters): the candidate."),
) -> None:
    """Is B faster than A, by how much, and is it a real difference? Judged across the runs of
    each trial's configuration (run medians against run medians), never from one run."""
    from orchestrator.across_runs import compare_runs

    with open_sessions()() as session:
        picked = {
            name: _configuration_runs(session, name, prefix)
            for name, prefix in (("A", a), ("B", b))
        }
    medians = {
        name: [r["p50_ms"] for r in runs if r["p50_ms"] is not None]
        for name, (_, runs) in picked.items()
    }
    result = compare_runs(medians["A"], medians["B"])
    shown = Table("", "configuration", "runs", "run medians (ms)", "median ms", "run cv")
    for name, (info, runs) in picked.items():
        config = configuration_row(runs)
        shown.add_row(
            name, f"{info['trial_id'][:12]} {info['label']}", str(config["runs"]),
            " ".join(f"{v:.4g}" for v in medians[name]), _fmt(config["p50_ms"], 4),
            _fmt(config["between_run_cv"], 3),
        )  # fmt: skip
    console.print(shown)
    if result.p_value is not None:
        console.print(
            f"exact Mann-Whitney over run medians: p = {result.p_value:.3g} (α = {result.alpha}); "
            f"a difference counts from {result.practical_pct:g} %"
        )
    console.print(f"[bold]{result.verdict()}[/bold]")


def _profile_of(session, name: str, prefix: str) -> dict:  # noqa: ANN001
    """The profile of the trial a prefix names."""
    from orchestrator.store import queries
    from orchestrator.store.queries.profiles import trial_profile

    found = queries.trials_matching(session, prefix) if len(prefix) >= 4 else []
    if len(found) != 1:
        what = "no trial" if not found else f"{len(found)} trials"
        fail(f"{name}: {what} with an id starting {prefix!r} (give at least 4 characters)")
    profile = trial_profile(session, found[0]["trial_id"])
    if profile is None:
        fail(
            f"{name}: trial {found[0]['trial_id'][:12]} has no operator profile (run its "
            "campaign with `policy: {profile: true}`)"
        )
    return profile


def _print_profile(profile: dict, top: int) -> None:
    from orchestrator.store.queries import profile_diff

    console.print(f"[bold]{profile['trial_id'][:12]}[/bold] {profile['label']}")
    console.print(
        f"{profile['method']}, {profile['queries']} queries after the timed runs; "
        + profile_diff.coverage_words(profile)
    )
    shown = Table("op type", "unit", "precision", "nodes", "ms/query", "share", "fell back")
    for row in profile["op_types"][:top]:
        shown.add_row(
            row["op_type"], row["unit"], row["precision"] or "—", str(row["nodes"]),
            _fmt(row["time_ms"], 4), "—" if row["share"] is None else f"{row['share']:.1%}",
            str(row["fallback_nodes"] or ""),
        )  # fmt: skip
    console.print(shown)
    fell_back = [n for n in profile["nodes"] if n["fallback"]]
    if fell_back:
        named = ", ".join(f"{n['node']} ({n['op_type']} on {n['unit']})" for n in fell_back[:10])
        console.print(
            f"[bold]{len(fell_back)} of {len(profile['nodes'])} operators ran off "
            f"{profile['requested_unit']}[/bold]: {named}" + (" …" if len(fell_back) > 10 else "")
        )


@app.command("profile")
def profile(
    trial: str = typer.Argument(..., help="Trial id (or its first characters)."),
    vs: Optional[str] = typer.Option(
        None, "--vs", help="Another trial: what the difference is made of."
    ),
    top: int = typer.Option(15, help="Op types shown."),
) -> None:
    """Where the time of a trial went, operator by operator, and where each ran (its profile
    pass); with --vs, which op types account for the difference between two trials."""
    from orchestrator.store.queries import profile_diff

    with open_sessions()() as session:
        a = _profile_of(session, "TRIAL", trial)
        b = _profile_of(session, "--vs", vs) if vs else None
    _print_profile(a, top)
    if b is None:
        return
    _print_profile(b, top)
    shown = Table("op type", "A ms/query", "B ms/query", "B − A", "B nodes", "B on")
    for row in profile_diff.diff(a, b)[:top]:
        shown.add_row(
            row["op_type"], _fmt(row["a_ms"], 4), _fmt(row["b_ms"], 4),
            f"{row['delta_ms']:+.4f}", str(row["b_nodes"]), ", ".join(row["b_units"]),
        )  # fmt: skip
    console.print(shown)
    console.print(f"[bold]{profile_diff.explain(a, b)}[/bold]")


@app.command("export")
def export(
    format: ExportFormat = typer.Option(
        ExportFormat.json, "--format", help="csv, json or parquet."
    ),
    campaign: Optional[int] = typer.Option(None, help="Only this campaign."),
    device: Optional[str] = typer.Option(None, help="Only this device."),
    model: Optional[str] = typer.Option(None, help="Only this model."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="File (default: stdout; parquet needs one)."
    ),
) -> None:
    """Every trial with every field; fields that were not measured are null."""
    from orchestrator.store import queries

    with open_sessions()() as session:
        rows = queries.result_rows(session, campaign_id=campaign, device=device, model=model)
    if format is not ExportFormat.json:  # flat formats: nested reports travel as JSON text
        rows = [
            {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}
            for row in rows
        ]
    if format is ExportFormat.parquet:
        if output is None:
            fail("parquet is binary: give --output FILE")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            fail("parquet export needs pyarrow: pip install 'edgebench[parquet]'")
        columns = {name: [r[name] for r in rows] for name in queries.EXPORT_FIELDS}
        pq.write_table(pa.table(columns), output)
        console.print(f"wrote {len(rows)} trial(s) to {output}")
        return
    if format is ExportFormat.json:
        text = json.dumps(rows, indent=2, default=str) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=queries.EXPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {len(rows)} trial(s) to {output}")
