"""`edgebench campaign plan|submit|list|status|cancel`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.cli.store_access import console, err, fail, open_sessions
from orchestrator.settings import Settings

app = typer.Typer(help="Benchmark campaigns.", no_args_is_help=True)
# How often `submit --wait` reads the campaign's progress: it returns this soon after the last
# result is stored (one small indexed query a round).
WAIT_POLL_S = 0.1


def _load(spec_path: Path):
    from orchestrator.campaigns.spec import SpecError, load_spec

    try:
        text = spec_path.read_text()
    except OSError as exc:
        fail(f"cannot read {spec_path}: {exc.strerror}")
    try:
        return load_spec(text)
    except SpecError as exc:
        fail(f"invalid campaign spec {spec_path}:\n{exc}", code=2)


def _print_plan(plan) -> None:  # noqa: ANN001
    runs = max((t.repeat for t in plan.trials), default=0)
    console.print(
        f"{len(plan.trials)} trial(s) on {len(plan.devices)} device(s): {', '.join(plan.devices)}"
        f" ({len(plan.trials) // max(runs, 1)} configuration(s) × {runs} run(s), interleaved)"
    )
    if plan.skipped:
        table = Table(
            "device", "model", "runtime", "precision", "batch", "not run because", title="skipped"
        )
        for s in plan.skipped:
            table.add_row(
                s["device"],
                s["model"],
                s["runtime"],
                s["precision"],
                str(s["batch_size"]),
                s["reason"],
            )
        console.print(table)


@app.command("plan")
def plan_command(spec: Path) -> None:
    """Show what a spec expands to, without submitting it."""
    from orchestrator import planning
    from orchestrator.campaigns.matrix import PlanError

    parsed = _load(spec)
    settings = Settings()
    with open_sessions(settings)() as session:
        try:
            planned = planning.plan(session, parsed)
        except PlanError as exc:
            fail(str(exc), code=2)
    _print_plan(planned)


@app.command("submit")
def submit(
    spec: Path,
    wait: bool = typer.Option(
        False, "--wait", help="Wait with a progress bar, then print results."
    ),
    timeout: Optional[float] = typer.Option(
        None, help="With --wait: give up after this many seconds."
    ),
) -> None:
    """Validate a spec, write its trials to the store, and (with --wait) follow it."""
    from orchestrator import planning
    from orchestrator.campaigns.matrix import PlanError

    parsed = _load(spec)
    settings = Settings()
    sessions = open_sessions(settings)
    with sessions.begin() as session:
        try:
            campaign, planned = planning.submit(session, parsed)
        except PlanError as exc:
            fail(str(exc), code=2)
        campaign_id = campaign.id
    from orchestrator import wake

    wake.notify(settings.resolved_broker_url(), settings.broker_ca)  # a pass at once
    console.print(f"campaign [bold]{campaign_id}[/bold] ({parsed.name}) submitted")
    _print_plan(planned)
    offline = [name for name in planned.devices if not online_now(sessions, name, settings)]
    if offline:
        err.print(
            f"[yellow]note:[/yellow] offline now: {', '.join(offline)}; their trials wait until "
            "they are back (and a controller, `edgebench server`, must be running)"
        )
    if wait:
        wait_for(sessions, campaign_id, timeout_s=timeout)
        from orchestrator.cli.results import print_results

        print_results(sessions, campaign_id)


def online_now(sessions, name: str, settings: Settings) -> bool:  # noqa: ANN001
    from sqlalchemy import select

    from orchestrator.store.models import Device, utcnow
    from orchestrator.store.repository import is_online

    with sessions() as session:
        device = session.scalar(select(Device).where(Device.name == name))
        return device is not None and is_online(device, utcnow(), settings.offline_after_s)


def wait_for(
    sessions,  # noqa: ANN001
    campaign_id: int,
    timeout_s: Optional[float] = None,
    problem: Optional[Callable[[], Optional[str]]] = None,
    on_finished: Optional[Callable[[], None]] = None,
) -> dict:
    """Follow a campaign until every trial is finished. Returns its final progress row.

    `problem`, if given, is asked each round; a message from it stops the wait with an error.
    `on_finished`, if given, is called in a round where more trials have finished (it may
    print: the progress bar stays below what it prints).
    """
    from orchestrator.store import queries

    deadline = time.monotonic() + timeout_s if timeout_s else None
    with Progress(
        TextColumn("[bold]campaign {task.fields[cid]}[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("", total=None, cid=campaign_id)
        finished = 0
        while True:
            with sessions() as session:
                row = queries.campaign_progress(session, campaign_id)
            if row is None:
                fail(f"no campaign with id {campaign_id}")
            description = (
                f"running {row['running']}, queued {row['queued']}, pending {row['pending']}"
            )
            progress.update(
                task, total=row["trials"], completed=row["finished"], description=description
            )
            if on_finished is not None and row["finished"] > finished:
                finished = row["finished"]
                on_finished()
            if row["finished_at"] is not None:
                progress.update(task, description=row["state"])
                return row
            trouble = problem() if problem else None
            if trouble:
                fail(trouble)
            if deadline and time.monotonic() > deadline:
                fail(f"campaign {campaign_id} did not finish within {timeout_s:.0f} s")
            time.sleep(WAIT_POLL_S)


@app.command("list")
def list_campaigns() -> None:
    """Campaigns, newest first."""
    from orchestrator.store import queries

    with open_sessions()() as session:
        rows = queries.campaigns_overview(session)
    if not rows:
        console.print("no campaigns yet")
        return
    table = Table(
        "id", "name", "state", "done", "failed", "cancelled", "open", "skipped", "created"
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["state"],
            str(r["done"]),
            str(r["failed"]),
            str(r["cancelled"]),
            str(r["pending"] + r["queued"] + r["running"]),
            str(r["skipped"]),
            f"{r['created_at']:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@app.command("status")
def status(campaign_id: int) -> None:
    """Every trial of a campaign with its state, attempt, and why it failed or waits."""
    from orchestrator.store import queries

    settings = Settings()
    with open_sessions(settings)() as session:
        row = queries.campaign_progress(session, campaign_id)
        if row is None:
            fail(f"no campaign with id {campaign_id}")
        trials = queries.campaign_trials(session, campaign_id, settings.offline_after_s)
        skipped = queries.campaign_skipped(session, campaign_id)
    console.print(
        f"campaign {row['id']} ({row['name']}): {row['state']}, {row['finished']}/{row['trials']} finished"
    )
    table = Table(
        "trial", "device", "model", "runtime", "batch", "state", "attempt", "reason / note"
    )
    for t in trials:
        table.add_row(
            t["trial_id"][:12], t["device"], t["model"], t["runtime"], str(t["batch_size"]),
            t["state"], str(t["attempt"]), t["error"] or t["note"] or "",
        )  # fmt: skip
    console.print(table)
    for s in skipped:
        err.print(
            f"skipped: {s['device']} {s['model']} {s['runtime']} {s['precision']} b{s['batch_size']}: {s['reason']}"
        )


@app.command("cancel")
def cancel(campaign_id: int) -> None:
    """Cancel every unfinished trial of a campaign."""
    from orchestrator.store import repository

    with open_sessions().begin() as session:
        try:
            count = repository.cancel_campaign(session, campaign_id)
        except repository.StoreError as exc:
            fail(str(exc))
    console.print(f"cancelled {count} trial(s) of campaign {campaign_id}")
