"""What provisioning runs and writes on a device: plain functions, checked on their text and,
for the shell they build, by running it here with sh."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.provisioning import ProvisionError, commands, device_files
from orchestrator.provisioning.agent_broker import agent_broker_url, redacted
from orchestrator.provisioning.device_checks import check_device, choose_service, parse_probe
from orchestrator.provisioning.inventory import parse_inventory
from orchestrator.provisioning.layout import AgentLayout
from orchestrator.provisioning.request import HostRequest, parse_target
from orchestrator.provisioning.wheelhouse import DevicePython, pip_platforms

LAYOUT = AgentLayout(root="/home/pi/.edgebench-agent/pi4-a", name="pi4-a")
LINUX_FACTS = {
    "system": "Linux",
    "python": "3.11.2",
    "implementation": "CPython",
    "venv": True,
    "uid": 1000,
    "systemd": True,
    "sudo": False,
}


def sh(command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)


# -- targets and requests -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, user, host, port",
    [
        ("pi@10.0.0.5", "pi", "10.0.0.5", 22),
        ("10.0.0.5", None, "10.0.0.5", 22),
        ("pi@board.lab:2222", "pi", "board.lab", 2222),
        ("root@[fd00::5]:2200", "root", "fd00::5", 2200),
        ("fd00::5", None, "fd00::5", 22),
    ],
)
def test_targets_are_read_as_user_host_port(text, user, host, port):
    target = parse_target(text)
    assert (target.user, target.host, target.port) == (user, host, port)


@pytest.mark.parametrize("text", ["pi@", "pi@host:x", "p i@host", "host:70000", "pi@ho st"])
def test_unreadable_targets_say_so(text):
    with pytest.raises(ValueError):
        parse_target(text)


def test_a_request_defaults_its_name_and_splits_tags():
    request = HostRequest(host="pi@10.0.0.5", tags="lab, usb3", runtimes="openvino")
    assert request.device_name == "10.0.0.5"
    assert request.tags == ["lab", "usb3"]
    assert request.runtimes == ["openvino"]
    assert str(request.target) == "pi@10.0.0.5"


@pytest.mark.parametrize(
    "fields, complaint",
    [
        ({"tags": ["bad tag"]}, "tags"),
        ({"runtimes": ["tensorflow"]}, "runtimes"),
        ({"env": {"PATH": "/x"}}, "only EDGEBENCH_"),
        ({"env": {"EDGEBENCH_BROKER_URL": "redis://x"}}, "written by provisioning"),
        ({"env": {"EDGEBENCH_X": "it's"}}, "quote"),
        ({"remote_dir": "/opt/../etc"}, "'..'"),
        ({"remote_dir": "/opt/edge bench"}, "letters, digits"),
        ({"python": "python3; rm -rf /"}, "letters, digits"),
        ({"name": "-bad"}, "invalid device name"),
        ({"service": "upstart"}, "service"),
    ],
)
def test_bad_requests_name_the_field(fields, complaint):
    with pytest.raises(ValueError) as caught:
        HostRequest(host="pi@10.0.0.5", **fields)
    assert complaint in str(caught.value)


# -- layout and files -----------------------------------------------------------------


def test_layout_is_per_device_under_home_unless_absolute():
    relative = AgentLayout.on_device("pi4-a", "/home/pi", None)
    assert relative.root == "/home/pi/.edgebench-agent/pi4-a"
    assert AgentLayout.on_device("pi4-a", "/home/pi", "agents/x").root == "/home/pi/agents/x"
    absolute = AgentLayout.on_device("pi4-a", "/home/pi", "/opt/edgebench")
    assert absolute.root == "/opt/edgebench"
    assert absolute.edgebench == "/opt/edgebench/venv/bin/edgebench"
    assert absolute.unit_path == "/etc/systemd/system/edgebench-agent-pi4-a.service"


def test_env_file_quotes_every_value_and_refuses_quotes():
    environment = device_files.agent_environment(
        LAYOUT, "redis://:s3cret@10.0.0.1:6379/0", ["lab", "usb3"], {"EDGEBENCH_HEARTBEAT_S": "1"}
    )
    text = device_files.env_file(environment)
    assert "EDGEBENCH_BROKER_URL='redis://:s3cret@10.0.0.1:6379/0'\n" in text
    assert "EDGEBENCH_DEVICE_NAME='pi4-a'\n" in text
    assert "EDGEBENCH_DEVICE_TAGS='lab,usb3'\n" in text
    assert f"EDGEBENCH_HOME='{LAYOUT.agent_home}'\n" in text
    assert "EDGEBENCH_HEARTBEAT_S='1'\n" in text
    with pytest.raises(ValueError, match="quote"):
        device_files.env_file({"EDGEBENCH_X": "a'b"})


def test_env_file_reads_back_through_sh(tmp_path):
    path = tmp_path / "agent.env"
    path.write_text(device_files.env_file({"EDGEBENCH_A": "x $HOME `id` \\ y", "EDGEBENCH_B": ""}))
    done = sh(f'set -a; . {path}; printf "%s|%s" "$EDGEBENCH_A" "$EDGEBENCH_B"')
    assert done.stdout == "x $HOME `id` \\ y|"


def test_systemd_unit_runs_the_agent_from_its_env_file():
    unit = device_files.systemd_unit(LAYOUT, "pi")
    assert f"EnvironmentFile={LAYOUT.env_file}\n" in unit
    assert (
        f"ExecStart={LAYOUT.edgebench} agent start --name ${{EDGEBENCH_DEVICE_NAME}} "
        "--tags ${EDGEBENCH_DEVICE_TAGS}\n" in unit
    )
    assert "User=pi\n" in unit and "Restart=always\n" in unit
    assert f"StandardOutput=append:{LAYOUT.log_file}\n" in unit
    assert "WantedBy=multi-user.target" in unit


# -- the supervised background process, run for real ----------------------------------


@pytest.fixture
def fake_agent(tmp_path) -> AgentLayout:
    """A layout whose `edgebench` is a stand-in that records its arguments and waits."""
    layout = AgentLayout(root=str(tmp_path / "agent"), name="fake")
    bin_dir = Path(layout.venv) / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "edgebench"
    fake.write_text(
        '#!/bin/sh\necho "started $*" >> "$EDGEBENCH_HOME.args"\n'
        "trap 'echo stopped >> \"$EDGEBENCH_HOME.args\"; exit 0' TERM\n"
        "while :; do sleep 0.1; done\n"
    )
    fake.chmod(0o755)
    environment = device_files.agent_environment(layout, "redis://x", ["a", "b"], {})
    Path(layout.env_file).write_text(device_files.env_file(environment))
    Path(layout.supervisor).write_text(device_files.supervisor_script(layout))
    yield layout
    sh(commands.stop_supervised(layout, timeout_s=2))


def _agent_pids(layout: AgentLayout) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if layout.edgebench.encode() in cmdline and b"agent" in cmdline:
            found.append(int(entry))
    return found


def _wait(predicate, timeout: float = 10):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_supervisor_starts_restarts_and_stops_the_agent(fake_agent):
    layout = fake_agent
    args_file = Path(layout.agent_home + ".args")
    started = sh(commands.start_supervised(layout))
    assert started.returncode == 0, started.stderr
    assert sh(commands.supervised_status(layout)).stdout.strip() == "running"
    assert _wait(lambda: len(_agent_pids(layout)) == 1)
    assert args_file.read_text().splitlines()[0] == "started agent start --name fake --tags a,b"

    os.kill(_agent_pids(layout)[0], 9)  # the agent dies: the loop starts another
    assert _wait(lambda: args_file.read_text().count("started") == 2, timeout=10)
    assert "restarting in" in Path(layout.log_file).read_text()

    stopped = sh(commands.stop_supervised(layout))
    assert stopped.returncode == 0, stopped.stderr
    assert args_file.read_text().splitlines()[-1] == "stopped"  # SIGTERM reached the agent
    assert not Path(layout.pid_file).exists()
    assert _wait(lambda: not _agent_pids(layout), timeout=5)
    assert sh(commands.supervised_status(layout)).stdout.strip() == "stopped"


def test_stopping_when_nothing_runs_is_fine(fake_agent):
    assert sh(commands.stop_supervised(fake_agent)).returncode == 0


def test_removing_files_spares_what_provisioning_did_not_make(tmp_path):
    layout = AgentLayout(root=str(tmp_path / "chosen"), name="x")
    for folder in (layout.venv, layout.wheelhouse, layout.agent_home):
        Path(folder).mkdir(parents=True)
    Path(layout.env_file).write_text("x")
    (tmp_path / "chosen" / "users-own-file").write_text("keep me")
    assert sh(commands.remove_files(layout)).returncode == 0
    assert sorted(os.listdir(tmp_path / "chosen")) == ["users-own-file"]
    (tmp_path / "chosen" / "users-own-file").unlink()
    assert sh(commands.remove_files(layout)).returncode == 0
    assert not (tmp_path / "chosen").exists()


# -- probe, checks, install commands --------------------------------------------------


def test_probe_runs_under_a_real_python():
    done = sh(commands.probe(sys.executable))
    assert done.returncode == 0, done.stderr
    facts = parse_probe("Welcome to the lab!\n" + done.stdout, "here")
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    assert facts["system"] == "Linux" and facts["home"] and facts["venv"] is True
    check_device(facts, sys.executable, "here")


def test_probe_of_a_missing_python_exits_127():
    assert sh(commands.probe("/nonexistent/python3")).returncode == commands.NOT_FOUND


@pytest.mark.parametrize(
    "change, complaint",
    [
        ({"python": "3.8.10"}, "too old"),
        ({"python": "2.7.18"}, "too old"),
        ({"venv": False}, "python3-venv"),
        ({"system": "Darwin"}, "Linux only"),
        ({"implementation": "PyPy"}, "CPython"),
    ],
)
def test_unfit_devices_are_refused_with_the_fix(change, complaint):
    with pytest.raises(ProvisionError, match=complaint):
        check_device({**LINUX_FACTS, **change}, "/usr/bin/python3", "pi@pi4")


def test_service_choice():
    assert choose_service("auto", {**LINUX_FACTS, "uid": 0}, "h") == "systemd"
    assert choose_service("auto", {**LINUX_FACTS, "sudo": True}, "h") == "systemd"
    assert choose_service("auto", LINUX_FACTS, "h") == "supervised"  # no root, no sudo
    assert choose_service("auto", {**LINUX_FACTS, "systemd": False, "uid": 0}, "h") == "supervised"
    with pytest.raises(ProvisionError, match="systemd is not running"):
        choose_service("systemd", {**LINUX_FACTS, "systemd": False}, "h")


def test_pip_install_uses_the_wheelhouse_or_an_index():
    offline = commands.pip_install(LAYOUT, "edgebench-0.1.0-py3-none-any.whl", ["onnxruntime"])
    assert "--no-index" in offline and f"--find-links {LAYOUT.wheelhouse}" in offline
    assert f"{LAYOUT.wheelhouse}/edgebench-0.1.0-py3-none-any.whl[agent,onnxruntime]" in offline
    assert "--force-reinstall" not in offline
    online = commands.pip_install(
        LAYOUT, "edgebench.whl", ["onnxruntime", "openvino"], "https://pypi.lab/simple", True
    )
    assert "--index-url https://pypi.lab/simple" in online and "--no-index" not in online
    assert "[agent,onnxruntime,openvino]" in online
    assert "--trusted-host" not in online and "PIP_CONFIG_FILE" not in online
    assert "PIP_CONFIG_FILE=/dev/null" in offline  # only the uploaded wheels
    lan = commands.pip_install(LAYOUT, "e.whl", [], "http://10.0.0.1:3141/simple/")
    assert "--trusted-host 10.0.0.1:3141" in lan
    assert "--no-deps --force-reinstall" in online


def test_missing_requirements_are_read_from_pip_without_markers():
    output = (
        "ERROR: Could not find a version that satisfies the requirement exceptiongroup>=1.3.0; "
        'python_version < "3.11" (from celery) (from versions: none)\n'
        'ERROR: No matching distribution found for exceptiongroup>=1.3.0; python_version < "3.11"\n'
        "ERROR: No matching distribution found for async-timeout\n"
    )
    assert commands.missing_requirements(output) == ["exceptiongroup>=1.3.0", "async-timeout"]
    assert commands.missing_requirements("ERROR: something else") == []


def test_venv_is_fresh_on_provision_and_kept_on_upgrade():
    assert f"rm -rf {LAYOUT.venv}" in commands.create_venv("python3", LAYOUT, "pip.whl")
    assert "rm -rf" not in commands.create_venv("python3", LAYOUT, "pip.whl", fresh=False)


def test_newest_wheel_compares_versions_not_text():
    from orchestrator.provisioning.wheelhouse import newest

    names = [
        "pip-9.0.3-py2.py3-none-any.whl",
        "pip-26.0.1-py3-none-any.whl",
        "pip-26.3-py3-none-any.whl",
    ]
    assert newest(Path(n) for n in names).name == "pip-26.3-py3-none-any.whl"


# -- wheels for the device's platform --------------------------------------------------


def test_platforms_for_glibc_devices():
    x86 = pip_platforms("x86_64", ("glibc", "2.36"))
    assert x86[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in x86
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(x86)
    assert x86[-1] == "linux_x86_64"
    pi = pip_platforms("aarch64", ("glibc", "2.31"))
    assert "manylinux_2_31_aarch64" in pi and "manylinux2014_aarch64" in pi
    assert not any(p.startswith(("manylinux2010", "manylinux1_")) for p in pi)
    assert pip_platforms("x86_64", ("", "")) == ["linux_x86_64"]


def test_device_python_keys_a_wheelhouse():
    device = DevicePython.from_facts(
        {"python": "3.9.2", "machine": "aarch64", "libc": ["glibc", "2.31"]}
    )
    assert device.tag == "39" and device.key == "cp39-aarch64-glibc2.31"


# -- the broker URL agents get ---------------------------------------------------------


def test_agent_broker_url():
    url = "redis://:pw@127.0.0.1:6379/0"
    seen = "10.1.2.1 51234 22"
    assert agent_broker_url(url, None, seen) == "redis://:pw@10.1.2.1:6379/0"
    assert agent_broker_url(url, None, "fd00::1 5 22") == "redis://:pw@[fd00::1]:6379/0"
    assert agent_broker_url(url, None, "::ffff:10.1.2.1 5 22") == "redis://:pw@10.1.2.1:6379/0"
    external = "rediss://:pw@broker.lab:6380/0"
    assert agent_broker_url(external, None, seen) == external
    assert agent_broker_url(url, "redis://:pw@gw:1/0", seen) == "redis://:pw@gw:1/0"
    with pytest.raises(ProvisionError, match="--broker-url"):
        agent_broker_url(url, None, "")
    with pytest.raises(ProvisionError, match="no broker configured"):
        agent_broker_url(None, None, seen)
    with pytest.raises(ProvisionError, match="redis://"):
        agent_broker_url(None, "http://x", seen)
    assert redacted(url) == "redis://:***@127.0.0.1:6379/0"


# -- inventories ----------------------------------------------------------------------


def test_inventory_applies_defaults_and_the_command_line_beneath_them():
    requests = parse_inventory(
        "defaults: {user: pi, tags: [lab]}\n"
        "hosts:\n"
        "  - {host: 10.0.0.5, name: pi4-a}\n"
        "  - {host: root@10.0.0.6, name: pi4-b, tags: [lab, usb3], runtimes: [openvino]}\n"
        "  - 10.0.0.7\n",
        base={"python": "/usr/bin/python3.11", "tags": ["cli"]},
    )
    first, second, third = requests
    assert (first.user, first.tags, first.python) == ("pi", ["lab"], "/usr/bin/python3.11")
    assert (second.user, second.tags, second.runtimes) == ("root", ["lab", "usb3"], ["openvino"])
    assert third.device_name == "10.0.0.7" and third.user == "pi"


def test_inventory_errors_name_each_bad_field():
    with pytest.raises(ProvisionError) as caught:
        parse_inventory(
            "hosts:\n"
            "  - {host: 10.0.0.5, tagz: [lab]}\n"
            "  - {host: 10.0.0.6, runtimes: [tensorflow]}\n"
            "  - {host: '10.0.0.7:x'}\n"
            "  - {host: 10.0.0.8, name: same}\n"
            "  - {host: 10.0.0.9, name: same}\n"
            "extra: 1\n",
            "fleet.yaml",
        )
    message = str(caught.value)
    assert "fleet.yaml: hosts[0].tagz: Extra inputs are not permitted" in message
    assert "fleet.yaml: hosts[1].runtimes.0:" in message
    assert "fleet.yaml: hosts[2]: invalid port 'x'" in message
    assert "device name same is used 2 times" in message
    assert "fleet.yaml: extra: unknown key" in message


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("hosts: [\n  - a", "line"),
        ("- just a list", "expected a mapping"),
        ("hosts: []", "the list is empty"),
        ("defaults: {host: x}\nhosts: [a]", "belong to each host"),
    ],
)
def test_unusable_inventories_say_why(text, complaint):
    with pytest.raises(ProvisionError, match=complaint):
        parse_inventory(text, "fleet.yaml")


def test_device_markers_follow_the_device_not_the_controller():
    device = DevicePython("3.9.2", "aarch64", ("glibc", "2.31"), "6.1.21-v8+", "#1642 SMP")
    markers = device.markers()
    assert markers["python_version"] == "3.9" and markers["python_full_version"] == "3.9.2"
    assert markers["platform_machine"] == "aarch64" and markers["sys_platform"] == "linux"
    assert markers["platform_release"] == "6.1.21-v8+"


def test_the_runtimes_an_agent_installs_come_from_the_runtime_entry_points_with_extras():
    """Each runtime adapter that has an extra of its name (pyproject.toml) can be asked
    for; the null test runtime has none. Nothing lists them by hand."""
    from orchestrator.provisioning.request import installable_runtimes

    assert {"onnxruntime", "openvino", "litert"} <= set(installable_runtimes())
    assert "null" not in installable_runtimes()
    with pytest.raises(ValueError, match="'tensorflow' is not a runtime.*known: litert"):
        HostRequest(host="pi@10.0.0.5", runtimes=["tensorflow"])
