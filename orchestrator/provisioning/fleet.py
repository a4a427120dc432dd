"""One action on many devices at once: each in its own thread, a failure stays its own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from orchestrator.provisioning import ProvisionError
from orchestrator.provisioning.installer import Outcome

Job = TypeVar("Job")


@dataclass
class HostResult:
    name: str
    target: str
    outcome: Optional[Outcome] = None
    error: Optional[str] = None


def run_parallel(
    jobs: Sequence[Job],
    action: Callable[[Job], Outcome],
    describe: Callable[[Job], tuple[str, str]],
    parallel: int = 8,
) -> Iterator[HostResult]:
    """Yield one HostResult per job as each finishes. `describe` gives (name, target)."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs)))) as pool:
        futures = {pool.submit(action, job): job for job in jobs}
        for future in as_completed(futures):
            name, target = describe(futures[future])
            try:
                yield HostResult(name, target, outcome=future.result())
            except ProvisionError as exc:
                yield HostResult(name, target, error=str(exc))
            except Exception as exc:  # a bug on one host must not hide the others' results
                yield HostResult(name, target, error=f"unexpected {type(exc).__name__}: {exc}")
