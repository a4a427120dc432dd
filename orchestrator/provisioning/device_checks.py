"""What the probe found on a device, judged before anything is installed there."""

from __future__ import annotations

import json
import re

from orchestrator.provisioning import ProvisionError

MIN_PYTHON = (3, 9)


def parse_probe(output: str, where: str) -> dict:
    for line in reversed(output.strip().splitlines()):  # a login banner may come first
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    raise ProvisionError(f"the probe on {where} printed no facts: {output.strip()[-300:]!r}")


def python_version(text: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def check_device(facts: dict, python: str, where: str) -> None:
    """Refuse devices the agent cannot run on, saying what to change."""
    if facts.get("system") != "Linux":
        raise ProvisionError(
            f"{where} runs {facts.get('system')}: agents are installed on Linux only"
        )
    found = facts.get("python", "?")
    if python_version(found) < MIN_PYTHON:
        raise ProvisionError(
            f"Python {found} at {python} on {where} is too old: the agent needs "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer (choose another with --python)"
        )
    if facts.get("implementation", "CPython") != "CPython":
        raise ProvisionError(
            f"{python} on {where} is {facts['implementation']}: the agent's wheels need CPython"
        )
    if not facts.get("venv"):
        raise ProvisionError(
            f"Python {found} at {python} on {where} has no venv module: install it (Debian/Ubuntu: "
            "apt install python3-venv) or choose another --python"
        )


def choose_service(requested: str, facts: dict, where: str) -> str:
    """systemd where it runs and we may use it (root or passwordless sudo), else the
    supervised background process."""
    usable = bool(facts.get("systemd")) and (facts.get("uid") == 0 or bool(facts.get("sudo")))
    if requested == "systemd" and not usable:
        why = (
            "systemd is not running" if not facts.get("systemd") else "no root or passwordless sudo"
        )
        raise ProvisionError(f"--service systemd on {where}: {why}; use --service supervised")
    if requested == "auto":
        return "systemd" if usable else "supervised"
    return requested
