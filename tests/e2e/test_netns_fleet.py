"""End to end on "device hosts": network namespaces with their own addresses and real sshd.
The controller provisions agents into them over SSH from an inventory; the agents reach
Redis and the artifact server over veth links; a campaign runs across them; one host's
link is cut and restored mid-campaign."""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from orchestrator import broker
from orchestrator.artifacts import http_server
from orchestrator.provisioning import commands
from orchestrator.provisioning.device_checks import parse_probe
from orchestrator.provisioning.wheelhouse import DevicePython, Wheelhouse
from orchestrator.store.models import Campaign, Device, Result, Trial
from tests.e2e.conftest import Fleet
from tests.e2e.test_light_agent import find_python
from tests.netns_hosts import started_lab

pytestmark = pytest.mark.e2e

# Long enough that the link can be cut while netns-1 measures.
POLICY = "policy: {warmup_s: 0.1, min_queries: 20, min_s: 1.5, max_s: 5, runs: 1}\n"


def device_pythons() -> list[str]:
    """The Debian system Python for most hosts; the oldest supported one for the last."""
    return ["/usr/bin/python3", find_python("3.9") or "/usr/bin/python3"]


def local_device(python: str) -> DevicePython:
    probed = subprocess.run(["sh", "-c", commands.probe(python)], capture_output=True, text=True)
    assert probed.returncode == 0, probed.stderr
    return DevicePython.from_facts(parse_probe(probed.stdout, python))


@pytest.fixture(scope="session")
def wheelhouse_dir(tmp_path_factory):
    """Agent wheel and dependency wheels built once per session for the devices' Pythons,
    so that provisioning times below are those of a warm controller."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    wheelhouse = Wheelhouse(folder)
    agent = wheelhouse.agent_wheel()
    for python in sorted(set(device_pythons())):
        wheelhouse.dependencies(local_device(python), agent, ["onnxruntime"])
    return folder


@pytest.fixture
def package_index(lab, wheelhouse_dir, tmp_path):
    """A PEP 503 package index on the device network, serving the session's wheels for
    Debian's Python; yields its URL and the paths it was asked for."""
    root = tmp_path / "index"
    for wheel in (wheelhouse_dir / local_device("/usr/bin/python3").key).glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        (root / "files").mkdir(parents=True, exist_ok=True)
        (root / "files" / wheel.name).symlink_to(wheel)
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        with open(page, "a") as handle:
            handle.write(f'<a href="../../files/{wheel.name}">{wheel.name}</a><br>\n')
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format, *args):  # noqa: A002, ANN001, ANN002
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer((lab.gateway, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{lab.gateway}:{server.server_address[1]}/simple/", asked
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = started_lab(tmp_path_factory.mktemp("netns") / "lab", count=4)
    yield lab
    lab.stop()


@pytest.fixture
def netns_fleet(lab, tmp_path, wheelhouse_dir):
    """A controller whose broker and artifact server listen on the device network."""
    from orchestrator.artifacts.registry import build_and_register
    from orchestrator.store import migrate

    embedded = broker.start(tmp_path / "broker", record=False, bind=[lab.gateway])
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(database_url)
    fleet = Fleet(tmp_path, embedded.url, database_url)
    fleet.env.update(
        {
            "EDGEBENCH_ARTIFACT_BIND": lab.gateway,
            "EDGEBENCH_WHEELHOUSE_DIR": str(wheelhouse_dir),
        }
    )
    with fleet.sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts", names=["mlp_digits"])
    try:
        yield fleet
    finally:
        fleet.stop()
        for host in lab.hosts:  # agents die with the test, even when it fails
            host.kill_processes(f"{tmp_path}/devices/")
        embedded.stop()


def campaign_trials(fleet) -> list[Trial]:
    with fleet.sessions() as session:
        return list(session.scalars(select(Trial).options(selectinload(Trial.device))))


def device_states(fleet, names: str = r"netns-\d") -> dict[str, str]:
    listing = fleet.cli("devices", "list")
    assert listing.returncode == 0, listing.stderr
    return dict(re.findall(rf"│ ({names}) +│ [^│]+│ (online|offline)", listing.stdout))


def test_inventory_provisioning_campaign_and_a_cut_link(lab, netns_fleet, tmp_path):
    fleet = netns_fleet
    fleet.start_controller()
    first, *others = lab.hosts[:3]
    pythons = device_pythons()
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        "defaults: {tags: [netns], runtimes: [onnxruntime]}\nhosts:\n"
        + "".join(
            f"  - {{host: {host.target}, name: netns-{host.index}, "
            f"python: {pythons[-1] if host.index == 3 else pythons[0]}, "
            f"remote_dir: {tmp_path}/devices/netns-{host.index}}}\n"
            for host in lab.hosts[:3]
        )
        + f"  - {{host: root@{lab.unused_address()}, name: nowhere}}\n"  # no such host
    )
    fleet.wait_until(lambda: http_server.recorded_url(tmp_path), 30, "the artifact server")
    provisioned = fleet.cli(
        "devices", "provision", "--inventory", str(inventory), "-i", str(lab.client_key),
        "--known-hosts", str(lab.known_hosts), "--accept-new-host-key",
        "--env", "EDGEBENCH_HEARTBEAT_S=0.5", timeout=300,
    )  # fmt: skip
    # one host failed, the others did not stop for it; the exit status says so
    assert provisioned.returncode == 1, provisioned.stdout + provisioned.stderr
    lines = [line for line in provisioned.stdout.splitlines() if line.startswith("ok")]
    assert len(lines) == 3, provisioned.stdout
    assert re.search(r"^FAIL nowhere .*cannot reach", provisioned.stdout, re.MULTILINE)
    for line in lines:  # provisioning time per host, for docs/PROVISIONING.md
        print(line)
    assert "Python 3.9" in provisioned.stdout or pythons[-1] == pythons[0]
    assert len(lab.known_hosts.read_text().splitlines()) >= 3  # the new keys were remembered
    assert device_states(fleet) == {"netns-1": "online", "netns-2": "online", "netns-3": "online"}

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: netns\ndevices: {tags: [netns]}\nmodels: [mlp_digits]\n"
        "runtimes: [onnxruntime]\nbatch_sizes: [1, 2, 4]\n" + POLICY
    )
    submitted = fleet.cli("campaign", "submit", str(spec))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    def trials_of(name: str) -> list[Trial]:
        with fleet.sessions() as session:
            query = select(Trial).join(Device).where(Device.name == name)
            return list(session.scalars(query))

    def measuring():
        """A running trial after a finished one: the model is in the device's cache by then,
        so the cut falls on the measurement, not on a download (which fails its trial)."""
        mine = trials_of("netns-1")
        if any(t.state == "done" for t in mine):
            return next((t for t in mine if t.state == "running"), None)
        return None

    cut_trial = fleet.wait_until(measuring, 90, "netns-1 to measure")
    lab.cut(first)
    cut_at = time.monotonic()
    fleet.wait_until(lambda: device_states(fleet)["netns-1"] == "offline", 30, "netns-1 offline")
    offline_after = time.monotonic() - cut_at
    fleet.wait_until(
        lambda: all(t.state == "done" for name in ("netns-2", "netns-3") for t in trials_of(name)),
        90,
        "the connected hosts to finish",
    )
    assert device_states(fleet)["netns-1"] == "offline"
    waiting = [t for t in trials_of("netns-1") if t.state != "done"]
    assert waiting, "netns-1 should still have trials when its link is down"
    status = fleet.cli("campaign", "status", "1")
    assert "running" in status.stdout, status.stdout
    for trial in waiting:
        row = next(line for line in status.stdout.splitlines() if trial.id[:12] in line)
        reason = "held: netns-1 is offline" if trial.state != "pending" else "come online"
        assert reason in row, status.stdout

    lab.restore(first)
    fleet.wait_until(lambda: device_states(fleet)["netns-1"] == "online", 60, "netns-1 back")

    def finished():
        with fleet.sessions() as session:
            campaign = session.get(Campaign, 1)
            return campaign.finished_at is not None and campaign

    campaign = fleet.wait_until(finished, 120, "the campaign to finish after the link came back")
    problems = [(t.device.name, t.state, t.attempt, t.error) for t in campaign_trials(fleet)]
    assert campaign.state == "done", problems
    with fleet.sessions() as session:
        # measured while cut off, kept in the agent's outbox, delivered once back: one attempt
        measured_offline = session.get(Trial, cut_trial.id)
        assert measured_offline.attempt == 1 and measured_offline.result.attempt == 1
        results = session.scalars(select(Result)).all()
        per_device = {}
        for result in results:
            per_device.setdefault(result.trial.device.name, []).append(result)
    assert {name: len(rows) for name, rows in per_device.items()} == {
        "netns-1": 3,
        "netns-2": 3,
        "netns-3": 3,
    }
    # the models came over the veth network from the artifact server, into each device's cache
    for host in lab.hosts[:3]:
        cache = tmp_path / "devices" / f"netns-{host.index}" / "home" / "agent"
        assert list(cache.rglob("artifacts/*")), f"no downloaded artifact on netns-{host.index}"
    print(f"netns-1 showed offline {offline_after:.1f} s after its link was cut")


def test_single_host_from_an_index_then_logs_upgrade_and_deprovision(
    lab, netns_fleet, package_index, tmp_path
):
    fleet = netns_fleet
    index_url, asked = package_index
    host = lab.hosts[3]
    lab.trust_host_keys([host])
    remote = tmp_path / "devices" / "solo"
    ssh_args = ["-i", str(lab.client_key), "--known-hosts", str(lab.known_hosts)]
    # No controller yet: the agent is installed and started, and the command says why it
    # cannot register instead of waiting for nothing.
    provisioned = fleet.cli(
        "devices", "provision", host.target, "--name", "solo", "--tags", "lab,solo",
        "--python", "/usr/bin/python3", "--remote-dir", str(remote), "--index-url", index_url,
        "--env", "EDGEBENCH_HEARTBEAT_S=0.5", *ssh_args, timeout=300,
    )  # fmt: skip
    assert provisioned.returncode == 1, provisioned.stdout + provisioned.stderr
    assert "no controller runs on the broker" in provisioned.stdout, provisioned.stdout
    assert "Traceback" not in provisioned.stdout + provisioned.stderr
    # only the agent and pip were uploaded; the rest came from the index
    uploaded = sorted(p.name.split("-")[0] for p in (remote / "wheelhouse").iterdir())
    assert uploaded == ["edgebench", "pip"]
    assert "/simple/celery/" in asked and any(path.startswith("/files/") for path in asked)
    env_file = remote / "agent.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert "EDGEBENCH_DEVICE_TAGS='lab,solo'" in env_file.read_text()

    fleet.start_controller()  # the agent, still trying, registers now
    fleet.wait_until(lambda: device_states(fleet, "solo").get("solo") == "online", 60, "solo")
    with fleet.sessions() as session:
        first_boot = session.scalar(select(Device.boot_id).where(Device.name == "solo"))

    logs = fleet.cli("devices", "logs", "solo", "--lines", "50")
    assert logs.returncode == 0 and "solo@" in logs.stdout, logs.stdout + logs.stderr

    upgraded = fleet.cli("devices", "upgrade", "solo", timeout=300)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "ok   solo" in upgraded.stdout and "runtimes: onnxruntime" in upgraded.stdout
    assert len(list((remote / "wheelhouse").iterdir())) == 2  # still with the index
    with fleet.sessions() as session:
        assert session.scalar(select(Device.boot_id).where(Device.name == "solo")) != first_boot

    removed = fleet.cli("devices", "deprovision", "solo", "--retire", timeout=120)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not remote.exists()
    leftovers = [
        pid
        for pid in subprocess.run(
            ["ip", "netns", "pids", host.namespace], capture_output=True, text=True
        ).stdout.split()
        if int(pid) != host.sshd.pid and str(remote) in _cmdline(pid)
    ]
    assert not leftovers, "the agent outlived deprovision"
    with fleet.sessions() as session:
        assert session.scalar(select(Device.retired).where(Device.name == "solo")) is True
    again = fleet.cli("devices", "logs", "solo")
    assert again.returncode == 1 and "no agent named solo" in again.stderr


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
