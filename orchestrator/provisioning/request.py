"""What the user asks for one device: where it is, what to call it, what to install.

The same model validates a command line and an inventory entry, so errors name the field.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agents.contract import Tag, validate_device_name


@functools.lru_cache(maxsize=1)
def installable_runtimes() -> tuple[str, ...]:
    """The runtimes an agent can be installed with: each adapter in the edgebench.runtimes
    entry-point group that has an extra of its own name in pyproject.toml (its runtime
    library), read from this installation's metadata: a new runtime module needs no
    change here."""
    try:
        extras = set(metadata.metadata("edgebench").get_all("Provides-Extra") or [])
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return ()
    found = metadata.entry_points()
    group = (
        found.select(group="edgebench.runtimes")
        if hasattr(found, "select")
        else found.get("edgebench.runtimes", [])
    )
    return tuple(sorted({point.name for point in group} & extras))


def _known_runtime(name: str) -> str:
    known = installable_runtimes()
    if name not in known:
        raise ValueError(
            f"{name!r} is not a runtime an agent can be installed with "
            f"(known: {', '.join(known) or 'none: install edgebench first'})"
        )
    return name


# The agent extras that bring a runtime (pyproject.toml's optional dependencies).
Runtime = Annotated[str, AfterValidator(_known_runtime)]
ServiceKind = Literal["auto", "systemd", "supervised"]

# Written by provisioning itself; an inventory's `env` may not override them.
MANAGED_ENV = (
    "EDGEBENCH_BROKER_URL",
    "EDGEBENCH_DEVICE_NAME",
    "EDGEBENCH_DEVICE_TAGS",
    "EDGEBENCH_HOME",
    "EDGEBENCH_ARTIFACT_TOKEN",
    "EDGEBENCH_ENROLLMENT_TOKEN",
)
# Paths and commands end up in shell text and unit files: keep them to plain characters.
PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")
ENV_NAME = re.compile(r"^EDGEBENCH_[A-Z0-9_]+$")
SSH_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SSH_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class Target:
    """An SSH destination."""

    host: str
    user: Optional[str] = None
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.user}@{host}" if self.user else host
        return where if self.port == 22 else f"{where}:{self.port}"


def parse_target(text: str, user: Optional[str] = None, port: Optional[int] = None) -> Target:
    """`host`, `user@host`, `user@host:port` or `user@[v6addr]:port`; `user` and `port`
    apply where the text has none."""
    rest = text.strip()
    found_user = None
    if "@" in rest:
        found_user, rest = rest.rsplit("@", 1)
    found_port = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            found_port = tail[1:]
        elif tail:
            raise ValueError(f"cannot read {text!r} as user@host[:port]")
    elif rest.count(":") == 1:
        host, found_port = rest.split(":")
    else:
        host = rest
    if not host or not SSH_HOST.match(host):
        raise ValueError(f"cannot read a host name in {text!r} (expected user@host[:port])")
    chosen_user = found_user or user
    if chosen_user is not None and not SSH_USER.match(chosen_user):
        raise ValueError(f"invalid SSH user {chosen_user!r} in {text!r}")
    if found_port is not None and not found_port.isdigit():
        raise ValueError(f"invalid port {found_port!r} in {text!r}")
    chosen_port = int(found_port) if found_port else (port or 22)
    if not 0 < chosen_port < 65536:
        raise ValueError(f"port {chosen_port} is out of range")
    return Target(host=host, user=chosen_user, port=chosen_port)


def default_name(target: Target) -> str:
    """A device name from the host as the user wrote it (unique within an inventory)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", target.host)[:64].strip("-.")
    return name or "device"


class HostRequest(BaseModel):
    """One device to provision."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="user@host[:port]")
    user: Optional[str] = None
    port: Optional[int] = None
    name: Optional[str] = None
    tags: list[Tag] = Field(default=[], max_length=32)
    runtimes: list[Runtime] = ["onnxruntime"]
    python: str = "python3"
    identity: Optional[str] = None
    remote_dir: Optional[str] = None
    env: dict[str, str] = {}
    service: ServiceKind = "auto"

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value

    @field_validator("runtimes", mode="before")
    @classmethod
    def _one_runtime(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _stringify_env(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not ENV_NAME.match(key):
                raise ValueError(f"{key}: only EDGEBENCH_* variables can be set on an agent")
            if key in MANAGED_ENV:
                raise ValueError(f"{key} is written by provisioning itself")
            check_env_value(key, text)
        return value

    @field_validator("python", "identity")
    @classmethod
    def _plain_command(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not PLAIN_PATH.match(value.replace("~", "")):
            raise ValueError(f"{value!r}: use a path of letters, digits and . _ / + - only")
        return value

    @field_validator("remote_dir")
    @classmethod
    def _plain_dir(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        if not PLAIN_PATH.match(value) or ".." in value.split("/"):
            raise ValueError(
                f"{value!r}: use a path of letters, digits and . _ / + - only, without '..'"
            )
        return value.rstrip("/") or "/"

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: Optional[str]) -> Optional[str]:
        return validate_device_name(value) if value is not None else value

    @model_validator(mode="after")
    def _resolve(self) -> HostRequest:
        parsed = parse_target(self.host, self.user, self.port)  # ValueError names the problem
        self.user, self.port = parsed.user, parsed.port
        self.host = parsed.host
        if self.name is None:
            self.name = default_name(parsed)
        self.runtimes = list(dict.fromkeys(self.runtimes))
        return self

    @property
    def target(self) -> Target:
        return Target(host=self.host, user=self.user, port=self.port or 22)

    @property
    def device_name(self) -> str:
        assert self.name is not None  # set by _resolve
        return self.name


def check_env_value(key: str, value: str) -> str:
    """Values are written single-quoted, which both sh and systemd read literally."""
    if any(char in value for char in "'\n\r\0"):
        raise ValueError(f"{key}: a value cannot contain a quote ('), a newline or a NUL")
    return value
