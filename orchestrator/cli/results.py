"""`edgebench results table|export`."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from orchestrator.cli.store_access import console, fail, open_sessions

app = typer.Typer(help="Measured results.", no_args_is_help=True)


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_table(rows: list[dict], title: Optional[str] = None) -> Table:
    table = Table(
        "device", "model", "runtime", "prec", "scenario", "batch", "n", "p50 ms", "p90 ms",
        "p99 ms", "cv", "items/s", "load ms", "RSS MB", "model MB", "accuracy", "fidelity",
        "mJ/item", "status", title=title,
        caption="* unstable: cv above the policy's max_cv; — not measured; fidelity: cosine "
        "similarity of the outputs to the fp32 reference",
    )  # fmt: skip
    for r in rows:
        status = r["status"] if not r["error"] else f"{r['status']}: {r['error'][:80]}"
        if r["throttled"]:
            status += " (throttled)"
        table.add_row(
            r["device"], r["model"], f"{r['runtime']}/{r['actual_device'] or r['requested_device']}",
            r["precision"], r["scenario"], str(r["batch_size"]), str(r["n"] or "—"),
            _fmt(r["p50_ms"]), _fmt(r["p90_ms"]), _fmt(r["p99_ms"]),
            _fmt(r["cv"], 2) + ("*" if r["unstable"] else ""),
            _fmt(r["throughput_ips"], 0), _fmt(r["load_ms"], 1), _fmt(r["peak_rss_mb"], 1),
            _fmt(r["model_bytes"] / 1e6 if r["model_bytes"] else None, 2),
            _fmt(r["accuracy"] * 100, 1) + "%" if r["accuracy"] is not None else "—",
            _fmt(r["fidelity_cosine"], 5), _fmt(r["energy_mj_per_inference"], 3), status,
        )  # fmt: skip
    return table


def print_results(sessions, campaign_id: Optional[int]) -> None:  # noqa: ANN001
    from orchestrator.store import queries

    with sessions() as session:
        rows = queries.result_rows(session, campaign_id=campaign_id)
    console.print(render_table(rows, title=f"campaign {campaign_id}" if campaign_id else None))


@app.command("table")
def table(
    campaign: Optional[int] = typer.Option(None, help="Campaign id (default: the latest)."),
    device: Optional[str] = typer.Option(None, help="Only this device."),
    model: Optional[str] = typer.Option(None, help="Only this model."),
) -> None:
    """A comparison table: latency percentiles, throughput and memory per trial."""
    from orchestrator.store import queries

    with open_sessions()() as session:
        campaign = campaign or queries.latest_campaign_id(session)
        if campaign is None:
            fail("no campaigns yet")
        rows = queries.result_rows(session, campaign_id=campaign, device=device, model=model)
    console.print(render_table(rows, title=f"campaign {campaign}"))


@app.command("compare")
def compare(
    a: str = typer.Argument(..., help="Trial id (or its first characters): the baseline."),
    b: str = typer.Argument(..., help="Trial id (or its first characters): the candidate."),
) -> None:
    """Is B faster than A, by how much, and is the difference significant?"""
    from orchestrator.comparison import ALPHA
    from orchestrator.comparison import compare as compare_samples
    from orchestrator.store import queries

    picked = {}
    with open_sessions()() as session:
        for name, prefix in (("A", a), ("B", b)):
            found = queries.trials_matching(session, prefix) if len(prefix) >= 4 else []
            if len(found) != 1:
                what = "no trial" if not found else f"{len(found)} trials"
                fail(f"{name}: {what} with an id starting {prefix!r} (give at least 4 characters)")
            samples = queries.result_samples(session, found[0]["trial_id"])
            if not samples:
                fail(f"{name}: trial {found[0]['trial_id'][:12]} has no measured samples")
            picked[name] = (found[0], samples)
    result = compare_samples(picked["A"][1], picked["B"][1])
    table = Table("", "trial", "n", "p50 ms", "95 % CI of p50 (ms)")
    for name, ci, p50, n in (
        ("A", result.ci_a_ms, result.p50_a_ms, result.n_a),
        ("B", result.ci_b_ms, result.p50_b_ms, result.n_b),
    ):
        info = picked[name][0]
        interval = f"{ci[0]:.4g} – {ci[1]:.4g}" if ci else "— (too few samples)"
        table.add_row(
            name, f"{info['trial_id'][:12]} {info['label']}", str(n), f"{p50:.4g}", interval
        )
    console.print(table)
    console.print(
        f"change {result.change_pct:+.2f} %, Mann-Whitney U p = {result.p_value:.3g} "
        f"(α = {ALPHA}), median intervals {'overlap' if result.intervals_overlap else 'do not overlap'}"
    )
    console.print(f"[bold]{result.verdict()}[/bold]")


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
