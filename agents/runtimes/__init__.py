"""Runtime adapters, looked up by name. Adding a runtime is adding one module here.

An adapter has ``name``, ``available()``, ``version()``, ``devices()`` and
``precisions(device)`` and ``load(path, options)`` returning a loaded model with ``inputs()``, ``run(feed)``,
``bind(feed)``, ``placement()`` and ``close()``. ``bind(feed)`` returns the operation a
trial times, the same work on every runtime: inputs bound once, each call runs the model
and leaves its outputs in host memory (as the vendors' benchmark tools time it), with an
``outputs()`` attribute that reads them (untimed); ``run(feed)`` is the application's call
(inputs passed, outputs returned as arrays), timed beside it.
Runtime libraries are imported only inside the adapter, only when used.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

REGISTRY: Dict[str, str] = {
    "onnxruntime": "agents.runtimes.onnxruntime:OnnxRuntimeAdapter",
    "openvino": "agents.runtimes.openvino:OpenVinoAdapter",
    "litert": "agents.runtimes.litert:LiteRtAdapter",
}


class RuntimeUnavailable(RuntimeError):
    """The runtime is not installed or cannot run here."""


def adapter(name: str) -> Any:
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise RuntimeUnavailable(f"unknown runtime {name!r} (known: {known})") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def inventory() -> List[Dict[str, Any]]:
    """What each known runtime offers on this machine (imports each one to ask)."""
    found = []
    for name in sorted(REGISTRY):
        runtime = adapter(name)
        if runtime.available():
            devices = runtime.devices()
            found.append(
                {
                    "name": name,
                    "version": runtime.version(),
                    "devices": devices,
                    "precisions": {d: runtime.precisions(d) for d in devices},
                }
            )
    return found
