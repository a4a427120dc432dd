"""The trial process's memory: its peak and its current resident size (Linux /proc)."""

from __future__ import annotations

import resource
import sys
from typing import Optional


def _status_mb(field: str) -> Optional[float]:
    """A memory field of /proc/self/status (Linux), in MB; None where unreadable."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory of this trial process.

    Linux: VmHWM, the high-water mark of this process image. Not ru_maxrss, which keeps the
    larger resident size of the parent at fork (the agent, with its runtimes imported) across
    exec, and so would report the agent's memory rather than the trial's.
    """
    if sys.platform.startswith("linux"):
        return _status_mb("VmHWM")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> Optional[float]:
    """Resident memory of this process now (Linux), or None where unreadable."""
    return _status_mb("VmRSS")
