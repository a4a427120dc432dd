"""Runtime adapters, found by name in the `edgebench.runtimes` entry-point group.

Adding a runtime is one module here (an adapter on agents.runtimes.seam's base classes,
which declare every hook the runner calls) and one line in pyproject.toml's
`[project.entry-points."edgebench.runtimes"]`, with its extra. A package outside edgebench
can add a runtime the same way, from its own pyproject.toml.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any, Dict, List

from agents.runtimes.seam import LoadedModel, Placement, RuntimeAdapter

__all__ = [
    "LoadedModel",
    "Placement",
    "RuntimeAdapter",
    "RuntimeUnavailable",
    "adapter",
    "inventory",
    "names",
]

GROUP = "edgebench.runtimes"
# Runtimes for testing the harness, offered only where this variable is set (a device
# would otherwise plan trials on a runtime that measures nothing real).
TEST_RUNTIMES = {"null": "EDGEBENCH_NULL_RUNTIME"}


class RuntimeUnavailable(RuntimeError):
    """The runtime is not installed or cannot run here."""


def _registered() -> Dict[str, Any]:
    """The group's entry points by name (Python 3.8/3.9 return a dict of groups)."""
    found = entry_points()
    group = found.select(group=GROUP) if hasattr(found, "select") else found.get(GROUP, [])
    return {
        point.name: point
        for point in group
        if point.name not in TEST_RUNTIMES or os.environ.get(TEST_RUNTIMES[point.name])
    }


def names() -> List[str]:
    """Every runtime this agent knows, installed or not."""
    return sorted(_registered())


def adapter(name: str) -> RuntimeAdapter:
    registered = _registered()
    if name not in registered:
        known = ", ".join(sorted(registered)) or "none: is edgebench installed (pip install -e .)?"
        raise RuntimeUnavailable(f"unknown runtime {name!r} (known: {known})")
    found = registered[name].load()()
    if not isinstance(found, RuntimeAdapter):
        raise RuntimeUnavailable(
            f"runtime {name!r} ({registered[name].value}) is not an agents.runtimes.seam."
            "RuntimeAdapter"
        )
    return found


def inventory() -> List[Dict[str, Any]]:
    """What each known runtime offers on this machine (imports each one to ask)."""
    found = []
    for name in names():
        runtime = adapter(name)
        if runtime.available():
            devices = runtime.devices()
            found.append(
                {
                    "name": name,
                    "version": runtime.version(),
                    "devices": devices,
                    "precisions": {d: runtime.precisions(d) for d in devices},
                    "formats": {d: runtime.formats(d) for d in devices},
                    "options": sorted(runtime.options.model_fields),
                }
            )
    return found
