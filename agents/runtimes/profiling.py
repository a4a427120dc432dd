"""The profile pass: after a trial's timed runs, a few queries under the runtime's own
operator profiler (agents.runtimes.seam.LoadedModel.profile), and what it says about where
the model ran (the trial's placement: how many operators, what share of the time, ran off
the requested unit, named)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from agents.contract.profile import OperatorProfile
from agents.runtimes.seam import LoadedModel, Placement, ProfileUnavailable

PASS_S = 1.0  # about this long: enough queries for stable per-op means on fast models
MIN_QUERIES, MAX_QUERIES = 10, 200


def profile_queries(mean_ms: Optional[float]) -> int:
    if not mean_ms or mean_ms <= 0:
        return MIN_QUERIES
    return max(MIN_QUERIES, min(MAX_QUERIES, int(PASS_S * 1000 / mean_ms)))


def profile_pass(
    model: LoadedModel, feed: Dict[str, Any], mean_ms: Optional[float], env: Dict[str, Any]
) -> Optional[OperatorProfile]:
    """The profile, or None with the reason in `env` (the measured figures stand either way)."""
    try:
        return model.profile(feed, profile_queries(mean_ms))
    except ProfileUnavailable as exc:
        env["profile_unavailable"] = str(exc)
    except Exception as exc:  # a profiler's failure must not cost the measurement
        env["profile_error"] = f"{type(exc).__name__}: {exc}"
    return None


def with_profile(placement: Placement, profile: Optional[OperatorProfile]) -> Placement:
    """The placement corrected by the profile: a runtime that lists its providers says
    nothing of a partial fallback (onnxruntime's get_providers); the profile names it."""
    if profile is None or not profile.ops:
        return placement
    summary = profile.fallback_summary()
    placement.detail.update(summary)
    if summary["fallback_ops"]:
        placement.fallback = True
        placement.detail["fallback_kind"] = (
            "full" if summary["fallback_ops"] == len(profile.ops) else "partial"
        )
    elif placement.fallback is None:
        placement.fallback = False
    return placement
