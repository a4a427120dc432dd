"""Provisioning's SSH path against real OpenSSH servers in network namespaces: host keys,
authentication, unreachable hosts, the device probe, and the errors the CLI prints."""

from __future__ import annotations

import glob
import subprocess
import sys

import pytest

from orchestrator.provisioning import ProvisionError, commands, ssh
from orchestrator.provisioning.device_checks import parse_probe
from orchestrator.provisioning.request import parse_target
from tests.conftest import missing_service, run_cli
from tests.netns_hosts import started_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = started_lab(tmp_path_factory.mktemp("netns") / "lab", count=2)
    yield lab
    lab.stop()


@pytest.fixture
def known_hosts(lab, tmp_path):
    """An empty known_hosts for one test."""
    path = tmp_path / "known_hosts"
    path.touch()
    return path


def connect(lab, host, known_hosts, **kwargs):  # noqa: ANN001, ANN201
    kwargs.setdefault("identity", str(lab.client_key))
    return ssh.connect(parse_target(host.target), known_hosts=known_hosts, **kwargs)


def host_key_line(host) -> str:  # noqa: ANN001
    kind, key = host.host_key_pub.read_text().split()[:2]
    return f"{host.address} {kind} {key}\n"


def test_an_unknown_host_key_is_refused_unless_accepted_explicitly(lab, known_hosts):
    host = lab.hosts[0]
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(host.host_key_pub)], capture_output=True, text=True
    ).stdout.split()[1]
    with pytest.raises(ssh.UnknownHostKey) as refused:
        connect(lab, host, known_hosts)
    assert fingerprint in str(refused.value) and "--accept-new-host-key" in str(refused.value)
    assert known_hosts.read_text() == ""

    connection = connect(lab, host, known_hosts, accept_new_host_key=True)
    assert ssh.run(connection, "echo $((6 * 7))", "arithmetic").strip() == "42"
    connection.close()
    assert known_hosts.read_text() == host_key_line(host)  # remembered, as OpenSSH writes it

    connect(lab, host, known_hosts).close()  # known now: no flag needed


def test_a_changed_host_key_is_refused_even_with_accept_new(lab, known_hosts):
    first, second = lab.hosts
    known_hosts.write_text(host_key_line(second).replace(second.address, first.address))
    for accept in (False, True):
        with pytest.raises(ProvisionError, match="CHANGED"):
            connect(lab, first, known_hosts, accept_new_host_key=accept)


def test_authentication_needs_a_key_the_device_accepts(lab, known_hosts, tmp_path):
    known_hosts.write_text(host_key_line(lab.hosts[0]))
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(ProvisionError, match="authentication as root@.* failed.*--identity"):
        connect(lab, lab.hosts[0], known_hosts, identity=str(stranger))
    with pytest.raises(ProvisionError, match="no SSH key at"):
        connect(lab, lab.hosts[0], known_hosts, identity=str(tmp_path / "missing"))


def test_unreachable_hosts_and_closed_ports_are_named(lab, known_hosts):
    with pytest.raises(ProvisionError, match=r"cannot reach root@.*:2222: .*refused"):
        ssh.connect(parse_target(f"root@{lab.hosts[0].address}:2222"), known_hosts=known_hosts)
    with pytest.raises(ProvisionError, match=f"cannot reach root@{lab.unused_address()}"):
        ssh.connect(
            parse_target(f"root@{lab.unused_address()}"), known_hosts=known_hosts, timeout_s=3
        )


def test_the_probe_over_ssh_reports_the_device_and_the_controller_address(lab, known_hosts):
    known_hosts.write_text(host_key_line(lab.hosts[0]))
    connection = connect(lab, lab.hosts[0], known_hosts)
    try:
        facts = parse_probe(ssh.run(connection, commands.probe(sys.executable), "probe"), "h")
        with pytest.raises(ssh.RemoteCommandFailed) as missing:
            ssh.run(connection, commands.probe("/nonexistent/python3"), "probe")
    finally:
        connection.close()
    assert facts["uid"] == 0 and facts["system"] == "Linux" and facts["venv"] is True
    assert facts["ssh_client"].split()[0] == lab.gateway  # how the device sees the controller
    assert missing.value.status == commands.NOT_FOUND


# -- the command line: clear errors, never a traceback ---------------------------------


def old_python() -> str:
    found = sorted(glob.glob("/root/.pyenv/versions/3.[5-8].*/bin/python3.[5-8]"))
    found += sorted(glob.glob("/usr/bin/python3.[5-8]"))
    if not found:
        missing_service("no Python older than 3.9 here to show the version check")
    return found[-1]


@pytest.fixture
def cli_env(lab, tmp_path, redis_url, sqlite_url):
    return {
        "EDGEBENCH_HOME": str(tmp_path / "home"),
        "EDGEBENCH_DATABASE_URL": sqlite_url,
        "EDGEBENCH_BROKER_URL": redis_url,
        "EDGEBENCH_ARTIFACT_SERVER": "false",
    }


def provision(lab, env, *args):  # noqa: ANN001, ANN201
    return run_cli(
        "devices", "provision", *args, "-i", str(lab.client_key),
        "--known-hosts", str(lab.known_hosts), env=env, timeout=180,
    )  # fmt: skip


def assert_clear_error(done, *fragments):  # noqa: ANN001, ANN201
    assert done.returncode != 0, done.stdout
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


def test_cli_refuses_an_unknown_host_key(lab, cli_env):
    done = provision(lab, cli_env, lab.hosts[1].target, "--name", "unknown-key")
    assert_clear_error(done, "unknown host key", "--accept-new-host-key")


def test_cli_names_what_is_wrong_with_the_device(lab, cli_env):
    lab.trust_host_keys([lab.hosts[0]])
    target = lab.hosts[0].target
    too_old = old_python()
    assert_clear_error(provision(lab, cli_env, target, "--python", too_old), "too old", too_old)
    assert_clear_error(
        provision(lab, cli_env, target, "--python", "/nonexistent/python3"),
        "no Python at /nonexistent/python3",
    )
    # The broker the agent would get is not reachable from the device (nothing listens there).
    assert_clear_error(
        provision(lab, cli_env, target, "--broker-url", f"redis://:pw@{lab.gateway}:1/0"),
        f"cannot reach the broker at {lab.gateway}:1",
    )
    # The test's broker listens on loopback only: the device cannot reach it either.
    assert_clear_error(provision(lab, cli_env, target), "cannot reach the broker", "BROKER_BIND")
    assert_clear_error(
        provision(lab, cli_env, f"root@{lab.unused_address()}"), "cannot reach root@"
    )


def test_cli_reports_bad_input_before_connecting(lab, cli_env, tmp_path):
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        "hosts:\n  - {host: 10.0.0.5, tagz: [x]}\n  - {host: 10.0.0.6, name: -x}\n"
    )
    assert_clear_error(
        provision(lab, cli_env, "--inventory", str(inventory)),
        "hosts[0].tagz",
        "hosts[1].name",
    )
    inventory.write_text("hosts: [\n")
    assert_clear_error(provision(lab, cli_env, "--inventory", str(inventory)), "not valid YAML")
    assert_clear_error(
        provision(lab, cli_env, "root@h", "--env", "PATH=/x"), "only EDGEBENCH_* variables"
    )
    assert_clear_error(provision(lab, cli_env), "give either a device")
    assert_clear_error(run_cli("devices", "logs", "nobody", env=cli_env), "no agent named nobody")
