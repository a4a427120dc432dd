"""Children that do not outlive the command that started them."""

from __future__ import annotations

import signal
import sys


def terminate_with_parent() -> None:
    """Run in a child before exec (Linux): SIGTERM when the parent dies, even by SIGKILL, so
    nothing that `quickstart`, `server` or `dashboard` started is left running."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
