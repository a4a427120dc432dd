"""The command line against a real store (and, where it needs one, a real broker)."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import pytest
from sqlalchemy import func, select

from agents.contract import Registration
from orchestrator.artifacts.registry import build_and_register
from orchestrator.store import repository
from orchestrator.store.models import Campaign, Trial
from orchestrator.store.session import session_factory
from tests.conftest import run_cli

FACTS = {
    "device_class": "x86_64-cpu",
    "cpu_model": "Test CPU",
    "runtimes": [{"name": "onnxruntime", "version": "1.0", "devices": ["CPU"]}],
}


@pytest.fixture
def cli_store(store_url, tmp_path):
    """A store with two registered devices and the built-in models; env for the CLI."""
    sessions = session_factory(store_url)
    with sessions.begin() as session:
        for name, tags in (("pi-1", ["lab"]), ("nano-1", ["lab", "gpu"])):
            repository.register_device(
                session,
                Registration(
                    device=name,
                    boot_id="b",
                    agent_version="t",
                    tags=tags,
                    facts=FACTS,
                    sent_at=time.time(),
                ),
            )
        build_and_register(session, tmp_path / "artifacts")
    env = {"EDGEBENCH_DATABASE_URL": store_url, "EDGEBENCH_HOME": str(tmp_path / "home")}
    return sessions, env


def write(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


GOOD = "name: lab\ndevices: {tags: [lab]}\nmodels: [mlp_digits]\nbatch_sizes: [1, 8]\nrepeats: 1\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD + "colour: blue\n", "unknown key 'colour'"),
        (GOOD.replace("[1, 8]", "[0]"), "batch_sizes.0"),
        (GOOD + "policy: {min_s: 10, max_s: 5}\n", "policy.max_s"),
        (GOOD + "scenario: {kind: soak}\n", "scenario soak needs minutes"),
        ("name: x\nmodels: [mlp_digits]\n", "devices: Field required"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
)
def test_invalid_spec_names_the_field_and_submits_nothing(cli_store, tmp_path, text, expected):
    sessions, env = cli_store
    done = run_cli("campaign", "submit", write(tmp_path, text), env=env)
    assert done.returncode == 2
    assert expected in done.stderr, done.stderr
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_unknown_model_or_device_is_refused_with_what_exists(cli_store, tmp_path):
    sessions, env = cli_store
    done = run_cli(
        "campaign", "submit", write(tmp_path, GOOD.replace("mlp_digits", "resnet9000")), env=env
    )
    assert done.returncode == 2 and "unknown model(s): resnet9000" in done.stderr
    assert "mlp_digits" in done.stderr  # tells what is available
    spec = GOOD.replace("{tags: [lab]}", "{names: [pi-1, ghost]}")
    done = run_cli("campaign", "submit", write(tmp_path, spec), env=env)
    assert done.returncode == 2 and "ghost" in done.stderr


def test_plan_submit_status_cancel(cli_store, tmp_path):
    sessions, env = cli_store
    spec = write(tmp_path, GOOD.replace("runtimes", "x") + "runtimes: [onnxruntime, litert]\n")
    planned = run_cli("campaign", "plan", spec, env=env)
    assert planned.returncode == 0, planned.stderr
    assert "4 trial(s) on 2 device(s)" in planned.stdout
    assert "runtime litert is not installed on pi-1" in planned.stdout

    submitted = run_cli("campaign", "submit", spec, env=env)
    assert submitted.returncode == 0, submitted.stderr
    with sessions() as session:
        campaign = session.scalar(select(Campaign))
        assert len(session.scalars(select(Trial)).all()) == 4
        assert {t.state for t in session.scalars(select(Trial))} == {"pending"}
    status = run_cli(
        "campaign", "status", str(campaign.id), env={**env, "EDGEBENCH_OFFLINE_AFTER_S": "0"}
    )
    assert status.returncode == 0 and "0/4 finished" in status.stdout
    assert "waiting for device" in status.stdout  # heartbeats are old: devices offline

    cancelled = run_cli("campaign", "cancel", str(campaign.id), env=env)
    assert cancelled.returncode == 0 and "cancelled 4 trial(s)" in cancelled.stdout
    with sessions() as session:
        assert session.get(Campaign, campaign.id).state == "cancelled"
    listing = run_cli("campaign", "list", env=env)
    assert "cancelled" in listing.stdout
    assert run_cli("campaign", "cancel", "999", env=env).returncode == 1


def test_devices_list_show_retire(cli_store):
    _, env = cli_store
    listing = run_cli("devices", "list", env=env)
    assert listing.returncode == 0 and "pi-1" in listing.stdout and "nano-1" in listing.stdout
    shown = run_cli("devices", "show", "pi-1", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["cpu"] == "Test CPU"
    assert run_cli("devices", "show", "ghost", env=env).returncode == 1
    assert run_cli("devices", "retire", "pi-1", env=env).returncode == 0
    assert "pi-1" not in run_cli("devices", "list", env=env).stdout
    assert "retired" in run_cli("devices", "list", "--all", env=env).stdout


def test_export_formats_carry_every_trial(cli_store, tmp_path):
    _, env = cli_store
    assert run_cli("campaign", "submit", write(tmp_path, GOOD), env=env).returncode == 0
    as_json = json.loads(run_cli("results", "export", "--format", "json", env=env).stdout)
    assert len(as_json) == 4 and all(row["p50_ms"] is None for row in as_json)  # not measured yet
    as_csv = list(
        csv.DictReader(io.StringIO(run_cli("results", "export", "--format", "csv", env=env).stdout))
    )
    assert len(as_csv) == 4 and as_csv[0]["status"] == "pending"
    out = tmp_path / "r.parquet"
    done = run_cli("results", "export", "--format", "parquet", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 4
    assert run_cli("results", "export", "--format", "parquet", env=env).returncode == 1
    filtered = json.loads(run_cli("results", "export", "--device", "pi-1", env=env).stdout)
    assert {row["device"] for row in filtered} == {"pi-1"}


def test_server_refuses_an_unmigrated_database(postgres_url, redis_url, tmp_path):
    env = {
        "EDGEBENCH_DATABASE_URL": postgres_url,
        "EDGEBENCH_BROKER_URL": redis_url,
        "EDGEBENCH_HOME": str(tmp_path),
    }
    done = run_cli("server", env=env, timeout=60)
    assert done.returncode == 1
    assert "edgebench db upgrade" in done.stderr


def test_agent_without_broker_says_how_to_get_one(tmp_path):
    done = run_cli(
        "agent",
        "start",
        "--name",
        "x",
        env={
            "EDGEBENCH_HOME": str(tmp_path),
            "EDGEBENCH_BROKER_URL": "",
            "EDGEBENCH_BROKER_WAIT_S": "0.5",
        },
    )
    assert done.returncode == 2 and "EDGEBENCH_BROKER_URL" in done.stdout + done.stderr
    assert "for `edgebench server` on this machine to record its broker" in " ".join(
        done.stdout.split()
    )  # rich wraps long lines
    done = run_cli("agent", "start", "--name", "bad name!", env={"EDGEBENCH_HOME": str(tmp_path)})
    assert done.returncode == 2 and "invalid device name" in done.stdout + done.stderr


def test_results_compare_judges_across_runs(sqlite_url, tmp_path):
    from tests.seed import RUNS, seed_runs, seed_store

    env = {"EDGEBENCH_DATABASE_URL": sqlite_url, "EDGEBENCH_HOME": str(tmp_path)}
    runs = seed_runs(sqlite_url)["trials"]
    pi = next(t for t in runs if t["device"] == "seed-pi4")
    x86 = next(t for t in runs if t["device"] == "seed-x86")
    out = run_cli("results", "compare", pi["trial_id"][:8], x86["trial_id"][:8], env=env)
    assert out.returncode == 0, out.stderr
    assert "B is faster than A by 88.9 %" in out.stdout and "a real difference" in out.stdout
    # 5 runs against 5: the exact test's smallest p, 2 / C(10, 5)
    assert "p = 0.00794" in out.stdout
    assert "seed-pi4" in out.stdout and "seed-x86" in out.stdout and f"{RUNS}" in out.stdout
    # Another run of the same configuration names the same runs: no difference.
    other_pi_run = next(t for t in runs if t["device"] == "seed-pi4" and t is not pi)
    same = run_cli("results", "compare", pi["trial_id"], other_pi_run["trial_id"], env=env)
    assert same.returncode == 0 and "no difference found" in same.stdout, same.stdout

    # One run a side (the plain seed campaign): no verdict, and why.
    seeded = seed_store(sqlite_url)
    done = {
        (t["device"], t["model"], t["batch_size"]): t
        for t in seeded["trials"]
        if t["status"] == "done"
    }
    one, other = done[("seed-pi4", "seed_digits", 1)], done[("seed-x86", "seed_digits", 1)]
    single = run_cli("results", "compare", one["trial_id"], other["trial_id"], env=env)
    assert single.returncode == 0 and "not enough runs to tell (1 and 1 runs" in single.stdout
    missing = run_cli("results", "compare", "zzzz", pi["trial_id"], env=env)
    assert missing.returncode == 1 and "no trial with an id starting 'zzzz'" in missing.stderr
    failed = next(t for t in seeded["trials"] if t["status"] == "failed")
    no_samples = run_cli("results", "compare", failed["trial_id"], pi["trial_id"], env=env)
    assert no_samples.returncode == 1 and "has no measured run yet" in no_samples.stderr


def test_an_agent_started_before_the_server_waits_for_its_broker(tmp_path, redis_url):
    """Started at once, the agent does not lose the race: it waits for the record the
    server writes (here written by hand, a second later) and goes on to enroll."""
    import json
    import subprocess
    import sys
    import time

    env = {**os.environ, "EDGEBENCH_HOME": str(tmp_path), "EDGEBENCH_BROKER_WAIT_S": "60"}
    env.pop("EDGEBENCH_BROKER_URL", None)
    agent = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "agent", "start", "--name", "early"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert agent.poll() is None  # still waiting, not failed
        (tmp_path / "broker.json").write_text(json.dumps({"url": redis_url, "pid": 1}))
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "EDGEBENCH_ENROLLMENT_TOKEN" not in "".join(lines):
            lines.append(agent.stdout.readline())
    finally:
        agent.kill()
        agent.wait()
    output = " ".join("".join(lines).split())  # rich wraps long lines
    assert "waiting up to 60 s for `edgebench server` on this machine" in output
    assert "no device key and no EDGEBENCH_ENROLLMENT_TOKEN" in output, output  # past it


def test_agent_with_bad_tags_fails_at_once_with_the_reason(tmp_path, redis_url):
    env = {"EDGEBENCH_HOME": str(tmp_path), "EDGEBENCH_BROKER_URL": redis_url}
    done = run_cli("agent", "start", "--name", "ok-name", "--tags", "my lab", env=env, timeout=60)
    assert done.returncode == 2 and "--tags" in done.stdout + done.stderr
