"""Children that do not outlive the command that started them."""

from __future__ import annotations

import signal
import sys


def terminate_with_parent() -> None:
    """Run in a child before exec (Linux): SIGTERM when the parent dies, even by SIGKILL, so
    nothing that `quickstart`, `server` or `dashboard` started is left running."""
    _on_parent_death(signal.SIGTERM)


def kill_with_parent() -> None:
    """As above, with SIGKILL: for a child whose graceful stop may wait on what died with
    the parent (an agent finishing a trial whose artifact server is gone). The agent loses
    nothing by it: results wait in its on-disk outbox."""
    _on_parent_death(signal.SIGKILL)


def _on_parent_death(signum: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
