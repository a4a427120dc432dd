"""`edgebench quickstart`: the whole system on one machine, with no configuration.

Starts an embedded broker, the controller and one local agent as separate processes,
builds two small models, runs a real campaign, prints the comparison, and (unless told
not to) serves the dashboard until Ctrl-C. Everything it started is stopped on exit;
the store stays for the next run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from orchestrator import broker, dashboard_process, planning
from orchestrator.artifacts import onnx2tf_env
from orchestrator.campaigns.spec import parse_spec
from orchestrator.child_process import kill_with_parent, terminate_with_parent
from orchestrator.cli.store_access import console
from orchestrator.settings import Settings
from orchestrator.store import migrate
from orchestrator.store.models import Device
from orchestrator.store.repository import as_utc
from orchestrator.store.session import session_factory

QUICK_MODELS = ["mlp_digits", "small_cnn_96", "digits_cnn"]
QUICK_BATCH_SIZES = [1, 8]
CAMPAIGN_TIMEOUT_S = 600
SKIPS_SHOWN = 6  # distinct reasons printed for what the plan skipped


class QuickstartError(RuntimeError):
    pass


@dataclass(frozen=True)
class UserModel:
    """A user's own model file and the `models add` flags it needs."""

    path: Path
    flags: list[str]

    @property
    def name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", self.path.stem)[:128].lstrip("_.-")
        return stem or "my_model"


def add_user_model(model: UserModel, env: dict[str, str]) -> str:
    """`models add` in a child process (TensorFlow's memory goes with it); its refusal,
    which names the flag to give, stops the quickstart before anything starts. A model of
    that name from an earlier quickstart is used as registered."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "models", "add", str(model.path),
         "--name", model.name, *model.flags],
        env=env,
        capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode == 0:
        for line in done.stdout.strip().splitlines():
            console.print(f"[bold]model[/bold]    {line}")
        return f"added {model.name}"
    if f"a model named {model.name!r} exists" in done.stderr:
        return f"{model.name} is registered already (from an earlier run): using it"
    refusal = done.stderr.strip().removeprefix("error: ")
    raise QuickstartError(
        f"{model.path} could not be added: {refusal}\n(give the flags it names to quickstart)"
    )


def local_device_name() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].strip("-.")
    return name or "local"


def quick_runtimes() -> list[str]:
    """onnxruntime, and OpenVINO and LiteRT beside it when installed: the same models on each."""
    found = ["onnxruntime"]
    if importlib.util.find_spec("openvino"):
        found.append("openvino")
    if importlib.util.find_spec("ai_edge_litert") or importlib.util.find_spec("tflite_runtime"):
        found.append("litert")
    return found


def build_models(env: dict[str, str], log_path: Path) -> list[str]:
    """`models build --quick` in a child process: TensorFlow's memory goes when it ends."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "models", "build", "--quick"],
        env=env,
        capture_output=True,
        text=True,
    )
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise QuickstartError(f"building the models failed:\n{done.stderr.strip()}")
    return [line.split()[1] for line in done.stdout.splitlines() if line.startswith("built ")]


def quickstart_spec(device: str, models: list[str], user_model: str | None = None) -> dict:
    return {
        "name": f"quickstart-{user_model}" if user_model else "quickstart",
        "devices": {"names": [device]},
        "models": [user_model] if user_model else [m for m in QUICK_MODELS if m in models],
        "runtimes": quick_runtimes(),
        # A user's model also gets its dynamic int8 variants (a method of their own).
        "precisions": ["fp32", "fp16", "int8"] + (["int8_dynamic"] if user_model else []),
        "batch_sizes": QUICK_BATCH_SIZES,
        # One run per configuration to keep the first run short; the table says so (a
        # campaign's default is 5 runs, which give an interval across runs and verdicts).
        # The operator profile of each trial too, after its timed runs (results profile).
        "policy": {
            "warmup_s": 0.5,
            "min_queries": 100,
            "min_s": 1.5,
            "max_s": 10.0,
            "runs": 1,
            "profile": True,
        },  # fmt: skip
    }


def _spawn(
    args: list[str], env: dict[str, str], log_path: Path, on_parent_death=terminate_with_parent
) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            preexec_fn=on_parent_death,
        )


def _stop(process: subprocess.Popen, timeout_s: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _dead_child(children: dict) -> str | None:
    for label, (process, log_path) in children.items():
        if process.poll() is not None:
            return f"the {label} exited with code {process.returncode}:\n{_tail(log_path)}"
    return None


def _wait_for_device(sessions, name: str, since, children: dict, timeout_s: float = 90) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        trouble = _dead_child(children)
        if trouble:
            raise QuickstartError(trouble)
        with sessions() as session:
            device = session.scalar(select(Device).where(Device.name == name))
            seen = as_utc(device.last_heartbeat_at) if device else None
            if seen and seen >= since:
                return
        time.sleep(0.3)
    raise QuickstartError(f"the local agent did not register within {timeout_s:.0f} s")


def _embedded(settings: Settings) -> Settings:
    """The settings with the embedded broker and SQLite store, whatever the environment set."""
    if settings.broker_url or settings.database_url:
        console.print(
            "[yellow]note:[/yellow] quickstart always uses its own embedded broker and the SQLite "
            f"store in {settings.home}; EDGEBENCH_BROKER_URL / EDGEBENCH_DATABASE_URL are left "
            "alone"
        )
        return settings.model_copy(update={"broker_url": None, "database_url": None})
    return settings


def _start_controller_and_agent(
    name: str, env: dict[str, str], logs: Path, children: dict[str, tuple]
) -> None:
    """The controller and the local agent as child processes, into `children` as they
    start (so that whatever started is stopped, whatever fails next)."""
    for label, args in (
        ("controller", ["server"]),
        ("agent", ["agent", "start", "--name", name, "--tags", "local"]),
    ):
        log_path = logs / f"{label}.log"
        dies = kill_with_parent if label == "agent" else terminate_with_parent
        children[label] = (_spawn(args, env, log_path, dies), log_path)
        console.print(f"[bold]{label:<9}[/bold] started (log: {log_path})")


def _submit(sessions, spec) -> int:  # noqa: ANN001
    """Submit the campaign; say how many trials, and why the plan skipped what it skipped."""
    with sessions.begin() as session:
        campaign, plan = planning.submit(session, spec)
        campaign_id = campaign.id
    console.print(f"[bold]campaign[/bold] {campaign_id}: {len(plan.trials)} trials")
    reasons = list(dict.fromkeys(s["reason"] for s in plan.skipped))
    for reason in reasons[:SKIPS_SHOWN]:
        console.print(f"[bold]not run:[/bold] {reason}")
    if len(reasons) > SKIPS_SHOWN:
        console.print(
            f"not run: {len(reasons) - SKIPS_SHOWN} more reason(s): "
            f"`edgebench campaign status {campaign_id}`"
        )
    return campaign_id


@dataclass
class _Running:
    """What quickstart started, stopped on the way out whatever happened."""

    embedded: Any = None
    children: dict[str, tuple[subprocess.Popen, Path]] = field(default_factory=dict)
    dashboard: Any = None
    started: float = field(default_factory=time.monotonic)  # when quickstart began

    def stop(self) -> None:
        if self.dashboard is not None:
            dashboard_process.stop(self.dashboard)
        for label in ("agent", "controller"):
            if label in self.children:
                _stop(self.children[label][0])
        if self.embedded is not None:
            self.embedded.stop()


def run(
    settings: Settings, dashboard_port: int | None, user_model: UserModel | None = None
) -> None:
    home = settings.home
    settings = _embedded(settings)
    url = settings.resolved_database_url()
    migrate.upgrade(url)
    sessions = session_factory(url)
    if user_model is not None:  # refused before anything starts, with the flag to give
        plain = {  # the user's store and broker are not the quickstart's
            k: v
            for k, v in os.environ.items()
            if not k.startswith("EDGEBENCH_") or k == onnx2tf_env.PYTHON_VARIABLE
        }
        added = add_user_model(user_model, {**plain, "EDGEBENCH_HOME": str(home)})
        console.print(f"[bold]model[/bold]    {added}")

    def on_term(_signum, _frame):  # noqa: ANN001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    running = _Running()
    try:
        env = _start_broker(settings, url, running)
        _measure(settings, sessions, env, user_model, running)
        if dashboard_port is None:
            console.print("dashboard: run `edgebench dashboard` to browse these results")
            return
        _serve_dashboard(dashboard_port, env, home / "logs", running)
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        running.stop()
        signal.signal(signal.SIGTERM, previous)


def _start_broker(settings: Settings, url: str, running: _Running) -> dict[str, str]:
    """The embedded broker, refused where an edgebench server already runs here; returns
    the environment the controller and agent get."""
    home = settings.home
    if broker.is_alive(settings.resolved_broker_url() or ""):
        raise QuickstartError(
            f"an edgebench server already runs on this machine (see {home / 'broker.json'}); "
            "stop it, or submit campaigns to it with `edgebench campaign submit`"
        )
    running.embedded = broker.start(home)
    running.embedded.supervise()
    broker_url = running.embedded.url
    console.print(f"[bold]broker[/bold]   redis on {broker_url.split('@')[-1]}")
    console.print(f"[bold]store[/bold]    {url}")
    env = {k: v for k, v in os.environ.items() if k != "EDGEBENCH_DATABASE_URL"}
    env.update(EDGEBENCH_BROKER_URL=broker_url, EDGEBENCH_HOME=str(home))
    return env


def _measure(
    settings: Settings,
    sessions: Any,
    env: dict[str, str],
    user_model: UserModel | None,
    running: _Running,
) -> None:
    """Controller and agent started, the quick set built (or the user's model), the device
    registered, the campaign run and its table printed."""
    from orchestrator.cli.campaigns import wait_for
    from orchestrator.cli.results import print_results
    from orchestrator.store.models import utcnow

    logs = settings.home / "logs"
    started = utcnow()
    name = local_device_name()
    _start_controller_and_agent(name, env, logs, running.children)
    built = [] if user_model is not None else build_models(env, logs / "models-build.log")
    if built:
        console.print(
            f"[bold]models[/bold]   built {', '.join(built)} (log: {logs / 'models-build.log'})"
        )
    _wait_for_device(sessions, name, started, running.children)
    console.print(f"[bold]device[/bold]   {name} registered")
    served = settings.resolved_artifact_base_url()
    if served:  # the controller serves the models over HTTP; the agent downloads them
        console.print(f"[bold]artifacts[/bold] served at {served}")
    spec = parse_spec(
        quickstart_spec(name, built, user_model.name if user_model is not None else None)
    )
    campaign_id = _submit(sessions, spec)
    wait_for(
        sessions,
        campaign_id,
        timeout_s=CAMPAIGN_TIMEOUT_S,
        problem=lambda: _dead_child(running.children),
        on_finished=FirstFigures(sessions, campaign_id, running.started),
    )
    print_results(sessions, campaign_id)
    console.print(
        "\nmore: `edgebench results export --format csv`, `edgebench devices list`, "
        "`edgebench campaign status " + str(campaign_id) + "`" + profile_hint(sessions, campaign_id)
    )


def profile_hint(sessions: Any, campaign_id: int) -> str:
    """The command that shows where int8 and fp32 differ, operator by operator, for a pair
    of this campaign's profiled trials (onnxruntime's, where there is one)."""
    from orchestrator.store.queries.profiles import profiled_trials

    with sessions() as session:
        trials = profiled_trials(session, campaign_id=campaign_id)
    pairs = {}
    for trial in sorted(trials, key=lambda t: t["runtime"] != "onnxruntime"):
        key = (trial["model"], trial["runtime"], trial["batch_size"])
        pairs.setdefault(key, {}).setdefault(trial["precision"], trial["trial_id"])
    for by_precision in pairs.values():
        if {"fp32", "int8"} <= set(by_precision):
            return (
                f", and where int8 and fp32 differ, operator by operator: `edgebench results "
                f"profile {by_precision['fp32'][:10]} --vs {by_precision['int8'][:10]}`"
            )
    return ""


class FirstFigures:
    """Each trial's first figures, printed as its result is stored: the table comes at the
    end, but a user sees measurements from the first trial on."""

    def __init__(self, sessions: Any, campaign_id: int, started: float) -> None:
        self.sessions, self.campaign_id, self.started = sessions, campaign_id, started
        self.shown: set[str] = set()

    def __call__(self) -> None:
        from orchestrator.store import queries

        with self.sessions() as session:
            rows = queries.result_rows(session, campaign_id=self.campaign_id, only_done=True)
        for row in rows:
            if row["trial_id"] not in self.shown:
                self.shown.add(row["trial_id"])
                console.print(first_figures(row, time.monotonic() - self.started))


def first_figures(row: dict[str, Any], elapsed_s: float) -> str:
    """One measured trial in a line (not the table's layout: the table follows)."""
    line = (
        f"[dim]{elapsed_s:6.1f} s[/dim]  measured {row['model']} on {row['runtime']} "
        f"{row['actual_device'] or row['requested_device']}, {row['precision']}, batch "
        f"{row['batch_size']}: p50 {row['p50_ms']:.3f} ms"
    )
    if row["throughput_ips"] is not None:
        line += f", {row['throughput_ips']:,.0f} items/s"
    if row["accuracy"] is not None:
        line += f", accuracy {row['accuracy'] * 100:.1f}%"
    return line


def _serve_dashboard(port: int, env: dict[str, str], logs: Path, running: _Running) -> None:
    """The dashboard until Ctrl-C (or until it exits, which is an error)."""
    running.dashboard = dashboard_process.start(port, "127.0.0.1", logs / "dashboard.log", env)
    console.print(
        f"\n[bold]dashboard[/bold] http://127.0.0.1:{port}  — Ctrl-C stops everything "
        "(the store stays for the next run)"
    )
    while running.dashboard.poll() is None:
        time.sleep(0.5)
    raise QuickstartError(f"the dashboard exited:\n{_tail(logs / 'dashboard.log')}")
