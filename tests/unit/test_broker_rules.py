"""The broker transport rules: a password beyond loopback, TLS verified (agents.contract.broker_rules)."""

from __future__ import annotations

import ssl

import pytest

from agents.contract import broker_ssl_options
from agents.contract.broker_rules import (
    BrokerRefused,
    broker_host,
    check_authenticated,
    check_tls,
    has_password,
    is_loopback_host,
)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.3.4.5", "::1", "[::1]", None, ""],
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "broker",
        "broker.lab",
        "localhost.example.com",
        "mylocalhost",
        "10.0.0.5",
        "0.0.0.0",
        "::",
        "fe80::1",
        "128.0.0.1",
        "192.168.1.20",
    ],
)
def test_hosts_beyond_loopback(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost:6379/0",
        "redis://127.9.9.9/0",
        "redis://[::1]:6379/0",
        "rediss://localhost:6380/0",
        "redis://",
        "redis+socket:///run/redis.sock",
        "unix:///run/redis.sock",
    ],
)
def test_no_password_is_fine_on_loopback(url):
    check_authenticated(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@broker.lab:6379/0",
        "redis://bench:s3cret@broker.lab:6379/0",
        "rediss://:s3cret@10.0.0.5:6380/0",
        "rediss://bench:p%40ss@[fd00::5]:6380/0",
    ],
)
def test_a_password_is_enough_beyond_loopback(url):
    assert has_password(url)
    check_authenticated(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("redis://broker.lab:6379/0", "broker.lab:6379"),
        ("rediss://broker.lab:6380/0", "broker.lab:6380"),
        ("redis://10.0.0.5/0", "10.0.0.5"),
        ("redis://bench@10.0.0.5:6379/0", "10.0.0.5:6379"),  # a user with no password
        ("redis://:@10.0.0.5:6379/0", "10.0.0.5:6379"),  # an empty password
        ("redis://[fd00::5]:6379/0", "[fd00::5]:6379"),
        ("redis://0.0.0.0:6379/0", "0.0.0.0:6379"),
    ],
)
def test_no_password_beyond_loopback_is_refused_naming_the_host(url, host):
    with pytest.raises(BrokerRefused) as refused:
        check_authenticated(url)
    message = str(refused.value)
    assert host in message and "no password" in message
    assert "--insecure" in message and "EDGEBENCH_INSECURE=1" in message
    check_authenticated(url, insecure=True)


def test_broker_host_never_shows_credentials():
    assert broker_host("rediss://bench:s3cret@broker.lab:6380/0") == "broker.lab:6380"
    assert broker_host("redis://:s3cret@[::1]:6379/0") == "[::1]:6379"


def test_rediss_verifies_the_server_with_the_given_ca(tmp_path):
    assert broker_ssl_options("redis://:pw@broker:6379/0") is None
    assert broker_ssl_options("rediss://:pw@broker:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    ca = tmp_path / "ca.pem"
    assert broker_ssl_options("rediss://:pw@broker:6380/0", ca) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(ca),
    }
    # A URL that sets ssl_cert_reqs itself is the operator's explicit choice.
    assert broker_ssl_options("rediss://:pw@broker:6380/0?ssl_cert_reqs=required", ca) is None


def test_a_ca_for_a_plain_broker_or_a_missing_ca_file_is_refused(tmp_path):
    ca = tmp_path / "ca.pem"
    with pytest.raises(BrokerRefused, match="redis:// \\(no TLS\\)"):
        check_tls("redis://:pw@broker.lab:6379/0", ca)
    with pytest.raises(BrokerRefused, match="no such file"):
        check_tls("rediss://:pw@broker.lab:6380/0", ca)
