"""`edgebench quickstart` and the embedded default, as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.broker import free_port

pytestmark = pytest.mark.e2e


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBENCH_")}
    # onnx2tf stays off, as in the whole suite (tests/conftest.py): 20-90 s a model
    env.update(EDGEBENCH_HOME=str(home), COLUMNS="200", EDGEBENCH_ONNX2TF_PYTHON="off")
    return env


def processes_using(home: Path) -> list[str]:
    """Command lines of live processes started with this EDGEBENCH_HOME (or inside it)."""
    marker = str(home).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with (
                open(f"/proc/{entry}/environ", "rb") as e,
                open(f"/proc/{entry}/cmdline", "rb") as c,
            ):
                cmdline = c.read()
                if marker in e.read() or marker in cmdline:
                    found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def wait_for_text(path: Path, pattern: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        if process.poll() is not None:
            raise AssertionError(f"quickstart exited ({process.returncode}):\n{text}")
        time.sleep(0.3)
    raise AssertionError(f"no {pattern!r} within {timeout} s:\n{path.read_text(errors='replace')}")


def openvino_cpu_precisions() -> set[str]:
    """What OpenVINO's CPU plugin says it runs on this machine (the agent plans from it)."""
    from agents import runtimes

    return set(runtimes.adapter("openvino").precisions("CPU"))


def test_quickstart_measures_serves_the_dashboard_and_stops_everything_on_ctrl_c(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    out = tmp_path / "out.txt"
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "quickstart", "--port", str(port)],
            env=clean_env(home),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = wait_for_text(out, r"dashboard.*http://127\.0\.0\.1", process, timeout=420)
        rows = [line for line in text.splitlines() if "/CPU" in line]
        # batch 1 and 8 of: mlp_digits and small_cnn_96 (ONNX fp32) on onnxruntime and
        # OpenVINO; digits_cnn in every format and precision each runtime runs here
        # (OpenVINO's fp16 only where its CPU plugin lists FP16: not on an AVX2-only EPYC)
        openvino_digits = len(openvino_cpu_precisions() & {"fp32", "fp16", "int8"})
        assert len(rows) == 2 * (2 * 2 + 2 + openvino_digits + 3), text
        assert sum("onnxruntime/CPU" in row for row in rows) == 2 * 4
        assert sum("openvino/CPU" in row for row in rows) == 2 * (2 + openvino_digits)
        assert sum("litert/CPU" in row for row in rows) == 2 * 3
        assert "measured in one run" in text  # the quickstart says it used one run each
        assert all(" done " in row for row in rows), text
        digits = [row for row in rows if "digits_cnn" in row]
        # accuracy on the held-out digits, per precision, measured on the device
        assert len(digits) == 2 * (2 + openvino_digits + 3), text
        assert all(re.search(r"\b\d{2}\.\d%", row) for row in digits), text
        numbers = [float(x) for row in rows for x in re.findall(r"\b\d+\.\d{3}\b", row)[:3]]
        assert numbers and all(n > 0 for n in numbers), text  # p50/p90/p99 are measured
        # Each trial's first figures were on screen as its result was stored, before the table
        streamed = re.findall(r"^\s*(\d+\.\d) s\s+measured \S+ on \S+ CPU, .* p50 ", text, re.M)
        assert len(streamed) == len(rows), text
        assert text.index(" measured ") < text.index("┏"), text
        print(f"first figure on screen {float(streamed[0]):.1f} s after quickstart started")

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert (home / "broker.json").exists()

        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()  # its children get SIGTERM from the kernel (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 30
    while processes_using(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_using(home) == []
    assert (home / "edgebench.db").exists()  # the store stays
    assert not (home / "broker.json").exists()
    # Every trial has its operator profile; onnxruntime's and OpenVINO's have times, and
    # the command that shows int8 against fp32 works as printed.
    profiled = (
        sqlite3.connect(home / "edgebench.db")
        .execute(
            "SELECT t.runtime, p.total_ms FROM result_profiles p JOIN results r ON r.id = p.result_id"
            " JOIN trials t ON t.id = r.trial_id"
        )
        .fetchall()
    )
    assert len(profiled) == len(rows), profiled
    assert all(total > 0 for runtime, total in profiled if runtime != "litert"), profiled
    hint = re.search(r"`edgebench (results profile \w+ --vs \w+)`", text.replace("\n", " "))
    assert hint, text[-2000:]
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", *hint.group(1).split()],
        env=clean_env(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0 and "B is " in shown.stdout, shown.stdout + shown.stderr


def test_server_records_its_embedded_broker_and_agent_finds_it(tmp_path):
    home = tmp_path / "home"
    env = clean_env(home)
    env["EDGEBENCH_HEARTBEAT_S"] = "0.5"
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("server", "agent")}  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "server"],
        env=env, stdout=logs["server"], stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    agent = None
    try:
        deadline = time.monotonic() + 60
        while not (home / "broker.json").exists():
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "server did not record its broker"
            time.sleep(0.2)
        assert oct((home / "broker.json").stat().st_mode & 0o777) == "0o600"
        second = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", "server"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1 and "already runs on this machine" in second.stderr
        assert (home / "broker.json").exists()  # the running server's record is untouched
        agent = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "agent", "start", "--name", "solo"],
            env=env, stdout=logs["agent"], stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            listing = subprocess.run(
                [sys.executable, "-m", "orchestrator.cli.main", "devices", "list"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if "solo" in listing.stdout and "online" in listing.stdout:
                break
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
            time.sleep(0.5)
    finally:
        for process in (agent, server):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    assert not (home / "broker.json").exists()
    assert processes_using(home) == []


def test_children_stop_even_when_quickstart_is_killed_hard(tmp_path):
    home = tmp_path / "home"
    out = tmp_path / "out.txt"
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "quickstart", "--port", str(free_port())],
            env=clean_env(home), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_text(out, r"device\s+\S+ registered", process, timeout=120)
        assert len(processes_using(home)) >= 3  # quickstart, controller, agent (and redis)
    finally:
        process.kill()  # SIGKILL: no handler runs
        process.wait()
    deadline = time.monotonic() + 40
    while processes_using(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_using(home) == []  # controller, agent and the embedded redis-server


def test_quickstart_benchmarks_a_users_model_added_with_the_flag_its_refusal_names(tmp_path):
    """`quickstart --model FILE`: a public detection model with dynamic height and width is
    refused naming --input-shape (nothing started), then added with it and measured."""
    from tests import public_models

    model = next(m for m in public_models.CORPUS if m.name == "ppocr_det")
    try:
        path = public_models.fetch(model)
    except RuntimeError as exc:
        from tests.conftest import missing_service

        missing_service(f"the public-model corpus could not be fetched: {exc}")
    home = tmp_path / "home"
    command = [sys.executable, "-m", "orchestrator.cli.main", "quickstart", "--no-dashboard"]
    refused = subprocess.run(
        [*command, "--model", str(path)],
        env=clean_env(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "give --input-shape x=1,3,<d2>,<d3>" in refused.stderr
    assert not processes_using(home) and not (home / "broker.json").exists()

    done = subprocess.run(
        [*command, "--model", str(path), "--input-shape", "x=1,3,64,64"],
        env=clean_env(home), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if "ppocr_det" in line and "done" in line]
    runtimes = {line.split("│")[3].strip().split("/")[0] for line in rows}
    assert {"onnxruntime", "openvino"} <= runtimes, done.stdout
    assert "not run:" in done.stdout  # what the plan skipped, with its reasons
    assert not processes_using(home)
