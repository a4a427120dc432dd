"""`devices provision --inventory fleet.yaml`: many devices from one file.

```yaml
defaults:                 # optional; any host field, applied to every host
  user: pi
  tags: [lab]
  runtimes: [onnxruntime]
hosts:
  - host: 10.0.0.5        # or pi@10.0.0.5:2222
    name: pi4-a
  - {host: 10.0.0.6, name: pi4-b, tags: [lab, usb3], python: /usr/bin/python3.11}
```
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator.provisioning import ProvisionError
from orchestrator.provisioning.request import HostRequest

ALLOWED_TOP = {"defaults", "hosts"}


def field_errors(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{prefix}{'.' + where if where else ''}: {message}")
    return lines


def parse_inventory(
    text: str, source: str = "inventory", base: dict | None = None
) -> list[HostRequest]:
    """Every host with the defaults applied (the file's over `base`, the command line's);
    a ProvisionError lists each bad field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ProvisionError(
            f"{source}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("hosts"), list):
        raise ProvisionError(f"{source}: expected a mapping with a list under `hosts:`")
    problems = [f"{source}: {key}: unknown key" for key in document if key not in ALLOWED_TOP]
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ProvisionError(f"{source}: defaults: expected a mapping")
    defaults = {**(base or {}), **defaults}
    if "host" in defaults or "name" in defaults:
        problems.append(f"{source}: defaults: `host` and `name` belong to each host")
    requests: list[HostRequest] = []
    for index, entry in enumerate(document["hosts"]):
        if isinstance(entry, str):
            entry = {"host": entry}
        if not isinstance(entry, dict):
            problems.append(f"{source}: hosts[{index}]: expected a mapping with `host:`")
            continue
        try:
            requests.append(HostRequest.model_validate({**defaults, **entry}))
        except ValidationError as exc:
            problems += field_errors(exc, f"{source}: hosts[{index}]")
    if not document["hosts"]:
        problems.append(f"{source}: hosts: the list is empty")
    seen: dict[str, int] = {}
    for request in requests:
        seen[request.device_name] = seen.get(request.device_name, 0) + 1
    problems += [
        f"{source}: device name {name} is used {n} times" for name, n in seen.items() if n > 1
    ]
    if problems:
        raise ProvisionError("\n".join(problems))
    return requests


def load_inventory(path: Path, base: dict | None = None) -> list[HostRequest]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProvisionError(f"cannot read inventory {path}: {exc.strerror}") from None
    return parse_inventory(text, str(path), base)
