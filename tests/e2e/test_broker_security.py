"""Transport rules against real processes: JSON only (a pickled message is refused by the
controller and by an agent, which both keep working), a password on any broker beyond
loopback, and rediss:// with the certificate verified against a CA the test creates."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import missing_service, run_cli
from tests.e2e.conftest import Fleet
from tests.e2e.test_fleet import QUICK_POLICY, online

pytestmark = pytest.mark.e2e


class Detonator:
    """Unpickling this makes a folder: if it exists, a pickle was deserialized."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def run_one_trial(fleet: Fleet, tmp_path: Path, device: str) -> None:
    """A campaign of one trial on `device`, submitted and waited for: it must finish."""
    spec = tmp_path / f"{device}.yaml"
    header = f"name: {device}\ndevices: {{names: [{device}]}}\nmodels: [mlp_digits]\n"
    spec.write_text(header + QUICK_POLICY)
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log("controller")[-3000:]
    assert "done" in done.stdout


def test_pickled_messages_are_refused_and_both_sides_keep_working(fleet, tmp_path):
    from celery import Celery

    from agents.contract import CONTROL_QUEUE, INGEST_TASK, RUN_TRIAL_TASK, agent_queue

    fleet.start_controller()
    fleet.start_agent("picky")
    fleet.wait_until(online(fleet, "picky"), 60, "the agent to register")

    intruder = Celery("intruder", broker=fleet.env["EDGEBENCH_BROKER_URL"], set_as_current=False)
    intruder.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    to_controller, to_agent = tmp_path / "unpickled-by-controller", tmp_path / "unpickled-by-agent"
    intruder.send_task(INGEST_TASK, args=[Detonator(to_controller)], queue=CONTROL_QUEUE)
    intruder.send_task(RUN_TRIAL_TASK, args=[Detonator(to_agent)], queue=agent_queue("picky"))

    # the controller reads its queue itself (orchestrator.control_queue), the agent via kombu
    refused = "untrusted content of type 'application/x-python-serialize'"
    fleet.wait_until(lambda: refused in fleet.log("controller"), 30, "the controller to refuse")
    refused = "Refusing to deserialize untrusted content of type pickle"
    fleet.wait_until(lambda: refused in fleet.log("agent-picky"), 30, "the agent to refuse")
    assert not to_controller.exists() and not to_agent.exists()

    # Both still work: a trial goes to the agent and its result is ingested.
    run_one_trial(fleet, tmp_path, "picky")
    assert fleet.processes["controller"].poll() is None
    assert fleet.processes["agent-picky"].poll() is None


def test_the_embedded_broker_always_has_a_password(tmp_path):
    import redis

    from orchestrator import broker

    try:
        embedded = broker.start(tmp_path / "home", record=False, bind=["127.0.0.1"])
    except broker.BrokerError as exc:
        missing_service(f"cannot start redis-server: {exc}")
    try:
        assert redis.Redis.from_url(embedded.url).ping()
        port = embedded.url.rsplit(":", 1)[1].split("/")[0]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=int(port)).ping()
    finally:
        embedded.stop()


@pytest.mark.parametrize("command", [("server",), ("agent", "start", "--name", "far")])
def test_an_unauthenticated_remote_broker_is_refused_through_the_cli(command, tmp_path):
    env = {
        "EDGEBENCH_HOME": str(tmp_path),
        "EDGEBENCH_BROKER_URL": "redis://broker.invalid:6379/0",
        "EDGEBENCH_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    refused = run_cli(*command, env=env, timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "refusing the broker at broker.invalid:6379" in said
    assert "no password" in said and "--insecure" in said


# -- rediss:// ----------------------------------------------------------------------------


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject, issuer, public_key, signer, ca: bool, names=()):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write_ca(folder: Path, name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = _certificate(subject, subject, key.public_key(), key, ca=True)
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    return cert, key


def _write_server_cert(folder: Path, ca_cert, ca_key) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = _certificate(subject, ca_cert.subject, key.public_key(), ca_key, ca=False, names=names)
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def _redis_server_binaries() -> list[str]:
    from orchestrator import broker

    found = [shutil.which("redis-server"), "/usr/bin/redis-server"]
    try:
        found.append(broker.redis_server_binary())
    except broker.BrokerError:
        pass
    return list(dict.fromkeys(b for b in found if b and os.access(b, os.X_OK)))


def _start_tls_redis(folder: Path, ca: Path, cert: Path, key: Path, password: str):
    """A redis-server speaking TLS only, from the first binary built with TLS."""
    import redis

    from orchestrator import broker

    for binary in _redis_server_binaries():
        port = broker.free_port()
        conf = folder / "redis.conf"
        conf.write_text(
            f"port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {cert}\n"
            f"tls-key-file {key}\ntls-ca-cert-file {ca}\ntls-auth-clients no\n"
            f'requirepass {password}\nsave ""\nappendonly no\ndir {folder}\n'
        )
        conf.chmod(0o600)
        log = open(folder / "redis.log", "wb")  # noqa: SIM115
        process = subprocess.Popen([binary, str(conf)], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(
            host="localhost",
            port=port,
            password=password,
            ssl=True,
            ssl_ca_certs=str(ca),
            socket_timeout=1,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.ping():
                    return process, port
            except redis.RedisError:
                time.sleep(0.1)
        process.kill()
        process.wait()
    missing_service(
        f"no redis-server built with TLS among {_redis_server_binaries()} "
        "(Debian's redis-server package is)"
    )


@pytest.fixture
def tls_broker(tmp_path):
    """A TLS-only Redis with a password, its certificate signed by a CA made here; also a
    second CA that did not sign it."""
    pytest.importorskip("cryptography")
    folder = tmp_path / "tls"
    folder.mkdir()
    ca_cert, ca_key = _write_ca(folder, "test-ca")
    _write_ca(folder, "other-ca")
    cert, key = _write_server_cert(folder, ca_cert, ca_key)
    password = secrets.token_urlsafe(16)
    process, port = _start_tls_redis(folder, folder / "test-ca.pem", cert, key, password)
    yield {
        "url": f"rediss://:{password}@localhost:{port}/0",
        "password": password,
        "ca": folder / "test-ca.pem",
        "other_ca": folder / "other-ca.pem",
    }
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tls_fleet(tmp_path: Path, url: str, ca: Path) -> Fleet:
    from orchestrator.artifacts.registry import build_and_register
    from orchestrator.store import migrate

    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(database_url)
    fleet = Fleet(tmp_path, url, database_url)
    fleet.env["EDGEBENCH_BROKER_CA"] = str(ca)
    with fleet.sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts")
    return fleet


def test_a_trial_round_trips_over_rediss_with_the_certificate_verified(tls_broker, tmp_path):
    fleet = _tls_fleet(tmp_path, tls_broker["url"], tls_broker["ca"])
    try:
        fleet.start_controller()
        fleet.start_agent("tls-agent")
        fleet.wait_until(online(fleet, "tls-agent"), 90, "the agent to register over TLS")
        run_one_trial(fleet, tmp_path, "tls-agent")
    finally:
        fleet.stop()


@pytest.mark.parametrize("which", ["another CA", "the system CAs"])
def test_a_certificate_that_does_not_verify_is_refused(tls_broker, tmp_path, which):
    """No silent fallback to an unverified connection: both sides stop with the reason."""
    env = {
        "EDGEBENCH_HOME": str(tmp_path),
        "EDGEBENCH_BROKER_URL": tls_broker["url"],
        "EDGEBENCH_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    if which == "another CA":
        env["EDGEBENCH_BROKER_CA"] = str(tls_broker["other_ca"])
    elif "EDGEBENCH_BROKER_CA" in os.environ:
        pytest.skip("EDGEBENCH_BROKER_CA is set in this environment")
    for command in (("server",), ("agent", "start", "--name", "tls-wrong")):
        refused = run_cli(*command, env=env, timeout=60)
        output = refused.stdout + refused.stderr
        said = " ".join(output.split())
        assert refused.returncode == 2, output
        assert "cannot verify the TLS certificate of the broker at localhost:" in said
        assert "certificate verify failed" in said and "EDGEBENCH_BROKER_CA" in said
        assert tls_broker["password"] not in output


def test_the_celery_and_lease_connections_verify_the_certificate(tls_broker):
    """What the preflight checks, the connections themselves do too: right CA in, wrong out."""
    import redis
    from kombu.exceptions import OperationalError

    from agents.worker import celery_app
    from orchestrator.controller_lease import ControllerLease
    from orchestrator.transport import control_app

    url = tls_broker["url"]
    for ca, works in ((tls_broker["ca"], True), (tls_broker["other_ca"], False)):
        for app in (control_app(url, ca), celery_app(url, "tls-probe", ca)):
            with app.connection_for_write() as connection:
                if works:
                    connection.ensure_connection(max_retries=1)
                else:
                    with pytest.raises(OperationalError, match="certificate verify failed"):
                        connection.ensure_connection(max_retries=1)
        lease = ControllerLease(url, ca)
        if works:
            assert lease.client.ping()
        else:
            with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
                lease.client.ping()
        lease.client.close()
