"""Provision, upgrade, deprovision and read the log of one device's agent over SSH.

provision: probe and checks (Python, broker and artifact server reachable from the device)
→ wheels uploaded → venv → pip install → agent.env and service → start → registration and
a heartbeat in the store.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from fabric import Connection
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.provisioning import ProvisionError, commands, device_files, records, ssh
from orchestrator.provisioning.agent_broker import (
    agent_broker_url,
    endpoint,
    is_loopback,
    redacted,
)
from orchestrator.provisioning.device_checks import check_device, choose_service, parse_probe
from orchestrator.provisioning.layout import AgentLayout
from orchestrator.provisioning.registration import (
    Registered,
    controller_running,
    current_boot_id,
    wait_for_agent,
)
from orchestrator.provisioning.request import HostRequest, Target
from orchestrator.provisioning.wheelhouse import DevicePython, Wheelhouse

MAX_INSTALL_ROUNDS = 4  # each round may add the wheels the device's pip found missing
LOG_TAIL_LINES = 15


@dataclass
class RunOptions:
    """Settings shared by every host of one command."""

    home: Path
    sessions: sessionmaker[Session]
    wheelhouse: Wheelhouse
    controller_broker_url: Optional[str] = None
    agent_broker_url: Optional[str] = None
    index_url: Optional[str] = None
    known_hosts: Optional[Path] = None
    accept_new_host_key: bool = False
    wait_s: float = 120.0
    # Written into every agent's environment besides its own settings (the artifact token).
    agent_env: dict[str, str] = field(default_factory=dict)
    # Where agents fetch artifacts over HTTP, when the controller serves them.
    artifact_base_url: Optional[str] = None
    progress: Callable[[str, str], None] = lambda name, step: None
    # A one-time enrollment token for a device name (orchestrator.enrollment), written into
    # that device's agent.env only: its agent derives its signing key from it.
    enrollment_token: Optional[Callable[[str], str]] = None


@dataclass
class Outcome:
    name: str
    target: str
    service: str = ""
    registered: Optional[Registered] = None
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)


class _Steps:
    """Times each step, for the outcome line and the bench."""

    def __init__(self, name: str, progress: Callable[[str, str], None]) -> None:
        self.name, self.progress = name, progress
        self.started = time.monotonic()
        self.times: dict[str, float] = {}

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.progress(self.name, label)
        began = time.monotonic()
        try:
            yield
        finally:
            self.times[label] = round(time.monotonic() - began, 2)

    def total(self) -> float:
        return round(time.monotonic() - self.started, 2)


@contextmanager
def _connected(
    target: Target, identity: Optional[str], options: RunOptions, known_hosts: Optional[str] = None
) -> Iterator[Connection]:
    connection = ssh.connect(
        target,
        identity=identity,
        known_hosts=Path(known_hosts) if known_hosts else options.known_hosts,
        accept_new_host_key=options.accept_new_host_key,
    )
    try:
        yield connection
    finally:
        connection.close()


def _probe(connection: Connection, python: str, where: str) -> dict:
    try:
        output = ssh.run(connection, commands.probe(python), "probing the device", timeout_s=60)
    except ssh.RemoteCommandFailed as exc:
        if exc.status == commands.NOT_FOUND:
            raise ProvisionError(
                f"no Python at {python} on {where} (choose one with --python)"
            ) from None
        raise
    facts = parse_probe(output, where)
    check_device(facts, python, where)
    return facts


BROKER_HINT = (
    "make it listen where devices can reach it (EDGEBENCH_BROKER_BIND for the embedded one) "
    "or give the URL devices use (--broker-url)"
)
ARTIFACT_HINT = (
    "serve artifacts where devices can reach them (EDGEBENCH_ARTIFACT_BIND, "
    "EDGEBENCH_ARTIFACT_BASE_URL)"
)


def _check_reachable(
    connection: Connection, python: str, host: str, port: int, what: str, hint: str
) -> None:
    """The device must open a TCP connection to what its agent will use."""
    try:
        ssh.run(connection, commands.can_connect(python, host, port), "")
    except ssh.RemoteCommandFailed as exc:
        raise ProvisionError(
            f"{connection.host} cannot reach the {what} at {host}:{port} "
            f"({exc.stderr.strip()}): {hint}"
        ) from None


def _check_services(
    connection: Connection, python: str, broker_url: str, artifact_base_url: Optional[str]
) -> None:
    """The broker, and the artifact server whose URL the scheduler sends agents."""
    _check_reachable(connection, python, *endpoint(broker_url), "broker", BROKER_HINT)
    if not artifact_base_url:
        return
    parts = urlsplit(artifact_base_url)
    host = parts.hostname or ""
    if is_loopback(host):
        raise ProvisionError(
            f"artifacts are served at {artifact_base_url}, loopback, which {connection.host} "
            f"cannot reach: {ARTIFACT_HINT}"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    _check_reachable(connection, python, host, port, "artifact server", ARTIFACT_HINT)


def _stop(connection: Connection, layout: AgentLayout, service: str, sudo: str) -> None:
    if service == "systemd":
        ssh.run(connection, commands.stop_systemd(layout, sudo), "stopping the agent")
    else:
        ssh.run(connection, commands.stop_supervised(layout), "stopping the agent")


def _stop_any(connection: Connection, layout: AgentLayout, facts: dict) -> None:
    """Stop an agent left by an earlier provisioning of this name, however it ran."""
    _stop(connection, layout, "supervised", "")
    if facts.get("systemd") and (facts.get("uid") == 0 or facts.get("sudo")):
        _stop(connection, layout, "systemd", commands.sudo_prefix(facts))


def _start(connection: Connection, layout: AgentLayout, service: str, sudo: str, user: str) -> None:
    if service == "systemd":
        staged = f"{layout.root}/{layout.unit_name}"
        ssh.write_file(connection, staged, device_files.systemd_unit(layout, user), 0o644)
        ssh.run(connection, commands.install_unit(layout, staged, sudo), "installing the unit")
        ssh.run(connection, commands.start_systemd(layout, sudo), "starting the agent")
    else:
        ssh.write_file(connection, layout.supervisor, device_files.supervisor_script(layout), 0o700)
        ssh.run(connection, commands.start_supervised(layout), "starting the agent")


@dataclass
class _DeviceWheels:
    """The wheels one device gets: the agent, pip, and the agent's dependencies unless an
    index serves them."""

    device: DevicePython
    agent: Path
    pip: Path
    dependencies: Optional[Path]

    @classmethod
    def prepare(cls, facts: dict, runtimes: list[str], options: RunOptions) -> _DeviceWheels:
        device = DevicePython.from_facts(facts)
        wheelhouse = options.wheelhouse
        agent = wheelhouse.agent_wheel()
        dependencies = None
        if not options.index_url:
            dependencies = wheelhouse.dependencies(device, agent, runtimes)
        return cls(device, agent, wheelhouse.pip_wheel(device), dependencies)

    def upload(self, connection: Connection, layout: AgentLayout) -> None:
        wheels = sorted(self.dependencies.glob("*.whl")) if self.dependencies else [self.pip]
        files = [self.agent, *(w for w in wheels if w.name != self.agent.name)]
        ssh.sync_files(connection, files, layout.wheelhouse, always=frozenset({self.agent.name}))


def _pip_install(
    connection: Connection,
    layout: AgentLayout,
    wheels: _DeviceWheels,
    runtimes: list[str],
    options: RunOptions,
    reinstall_agent: bool,
) -> None:
    """pip install on the device; wheels its pip finds missing are fetched and sent, up to
    MAX_INSTALL_ROUNDS times."""
    install = commands.pip_install(
        layout, wheels.agent.name, runtimes, options.index_url, reinstall_agent
    )
    for round_ in range(1, MAX_INSTALL_ROUNDS + 1):
        try:
            ssh.run(connection, install, "installing the agent", timeout_s=1800)
            return
        except ssh.RemoteCommandFailed as exc:
            missing = commands.missing_requirements(exc.stdout + exc.stderr)
            if wheels.dependencies is None or not missing or round_ == MAX_INSTALL_ROUNDS:
                raise
        options.wheelhouse.add(wheels.device, missing)
        wheels.upload(connection, layout)


def _wait_registered(
    connection: Connection, options: RunOptions, layout: AgentLayout, previous: Optional[str]
) -> Registered:
    url = options.controller_broker_url
    if url and not controller_running(url):
        raise ProvisionError(
            f"the agent is installed and started, but no controller runs on the broker "
            f"{redacted(url)} to register it: start `edgebench server` (the agent keeps "
            "trying and registers then)"
        )
    registered = wait_for_agent(options.sessions, layout.name, previous, options.wait_s)
    if registered is not None:
        return registered
    try:
        tail = ssh.run(connection, commands.tail_log(layout, LOG_TAIL_LINES), "reading the log")
    except ProvisionError as exc:
        tail = str(exc)
    raise ProvisionError(
        f"the agent started but did not register and heartbeat within {options.wait_s:.0f} s "
        "(is `edgebench server` running on this controller?); the end of its log "
        f"({layout.log_file}):\n{tail.rstrip()}"
    )


def provision(request: HostRequest, options: RunOptions) -> Outcome:
    name, target = request.device_name, request.target
    steps = _Steps(name, options.progress)
    previous = current_boot_id(options.sessions, name)
    with _connected(target, request.identity, options) as connection:
        with steps.step("probe"):
            facts = _probe(connection, request.python, str(target))
            service = choose_service(request.service, facts, str(target))
            layout = AgentLayout.on_device(name, facts["home"], request.remote_dir)
            broker_url = agent_broker_url(
                options.controller_broker_url, options.agent_broker_url, facts.get("ssh_client", "")
            )
            _check_services(connection, request.python, broker_url, options.artifact_base_url)
        with steps.step("upload"):
            _stop_any(connection, layout, facts)
            wheels = _DeviceWheels.prepare(facts, request.runtimes, options)
            ssh.run(connection, commands.make_folders(layout), "making the agent's folder")
            wheels.upload(connection, layout)
        with steps.step("venv"):
            venv = commands.create_venv(request.python, layout, wheels.pip.name)
            ssh.run(connection, venv, "creating the venv")
        with steps.step("install"):
            _pip_install(connection, layout, wheels, request.runtimes, options, False)
        with steps.step("start"):
            sudo = commands.sudo_prefix(facts)
            extra = {**options.agent_env, **request.env}
            if options.enrollment_token is not None:
                extra["EDGEBENCH_ENROLLMENT_TOKEN"] = options.enrollment_token(name)
            environment = device_files.agent_environment(layout, broker_url, request.tags, extra)
            ssh.write_file(connection, layout.env_file, device_files.env_file(environment), 0o600)
            _start(connection, layout, service, sudo, target.user or _remote_user(connection))
        records.save(
            options.home,
            records.ProvisionedAgent(
                name=name,
                host=target.host,
                user=target.user,
                port=target.port,
                identity=request.identity,
                known_hosts=str(options.known_hosts) if options.known_hosts else None,
                python=request.python,
                runtimes=request.runtimes,
                tags=request.tags,
                root=layout.root,
                service=service,
                sudo=sudo if service == "systemd" else "",
                broker_url_redacted=redacted(broker_url),
                index_url=options.index_url,
                env=request.env,
            ),
        )  # before waiting: an agent that does not register can still be read and removed
        with steps.step("register"):
            registered = _wait_registered(connection, options, layout, previous)
    return Outcome(name, str(target), service, registered, steps.total(), steps.times)


def _remote_user(connection: Connection) -> str:
    return ssh.run(connection, "id -un", "reading the user name").strip()


def upgrade(record: records.ProvisionedAgent, options: RunOptions) -> Outcome:
    """Install this controller's agent version in place and restart it."""
    steps = _Steps(record.name, options.progress)
    previous = current_boot_id(options.sessions, record.name)
    layout = AgentLayout(root=record.root, name=record.name)
    with _connected(record.target, record.identity, options, record.known_hosts) as connection:
        with steps.step("probe"):
            facts = _probe(connection, record.python, str(record.target))
        with steps.step("stop"):
            _stop(connection, layout, record.service, record.sudo)
        with steps.step("upload"):
            upgraded = replace(options, index_url=record.index_url)
            wheels = _DeviceWheels.prepare(facts, record.runtimes, upgraded)
            ssh.run(connection, commands.make_folders(layout), "making the agent's folder")
            wheels.upload(connection, layout)
        with steps.step("install"):
            venv = commands.create_venv(record.python, layout, wheels.pip.name, fresh=False)
            ssh.run(connection, venv, "checking the venv")
            _pip_install(connection, layout, wheels, record.runtimes, upgraded, True)
        with steps.step("start"):
            user = record.user or _remote_user(connection)
            _start(connection, layout, record.service, record.sudo, user)
        with steps.step("register"):
            registered = _wait_registered(connection, options, layout, previous)
    return Outcome(
        record.name, str(record.target), record.service, registered, steps.total(), steps.times
    )


def deprovision(record: records.ProvisionedAgent, options: RunOptions) -> Outcome:
    """Stop the agent and remove what provisioning put on the device."""
    steps = _Steps(record.name, options.progress)
    layout = AgentLayout(root=record.root, name=record.name)
    with _connected(record.target, record.identity, options, record.known_hosts) as connection:
        with steps.step("stop"):
            _stop(connection, layout, record.service, record.sudo)
            if record.service == "systemd":
                ssh.run(connection, commands.remove_unit(layout, record.sudo), "removing the unit")
        with steps.step("remove"):
            ssh.run(connection, commands.remove_files(layout), "removing the agent's files")
    records.remove(options.home, record.name)
    return Outcome(
        record.name, str(record.target), record.service, None, steps.total(), steps.times
    )


def agent_log(record: records.ProvisionedAgent, options: RunOptions, lines: int) -> str:
    layout = AgentLayout(root=record.root, name=record.name)
    with _connected(record.target, record.identity, options, record.known_hosts) as connection:
        return ssh.run(connection, commands.tail_log(layout, lines), "reading the agent log")
