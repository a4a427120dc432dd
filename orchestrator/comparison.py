"""Is trial B faster than trial A, by how much, and is the difference real?

Works on the raw samples: medians with distribution-free 95 % intervals, and a
Mann-Whitney U test. A difference is called significant only when both agree: the
test rejects "same distribution" at `alpha` AND the two median intervals do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from agents.contract import statistics

ALPHA = 0.01


@dataclass(frozen=True)
class Comparison:
    n_a: int
    n_b: int
    p50_a_ms: float
    p50_b_ms: float
    ci_a_ms: tuple[float, float] | None
    ci_b_ms: tuple[float, float] | None
    change_pct: float  # (B - A) / A; negative: B is faster
    p_value: float
    intervals_overlap: bool | None

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA and self.intervals_overlap is False

    def verdict(self) -> str:
        direction = "faster" if self.change_pct < 0 else "slower"
        size = f"{abs(self.change_pct):.1f} %"
        medians = f"p50 {self.p50_a_ms:.4g} → {self.p50_b_ms:.4g} ms"
        if self.significant:
            return f"B is {direction} than A by {size} ({medians}): significant"
        if self.p_value < ALPHA:
            return (
                f"B looks {direction} than A by {size} ({medians}), but the median intervals "
                "overlap: not a significant difference"
            )
        return f"no significant difference ({medians}, change {self.change_pct:+.1f} %)"


def compare(samples_a_ns: Sequence[int], samples_b_ns: Sequence[int]) -> Comparison:
    if not samples_a_ns or not samples_b_ns:
        raise ValueError("both trials need measured samples")
    a = sorted(s / 1e6 for s in samples_a_ns)
    b = sorted(s / 1e6 for s in samples_b_ns)
    p50_a, p50_b = statistics.percentile(a, 50), statistics.percentile(b, 50)
    ci_a, ci_b = statistics.median_ci(a), statistics.median_ci(b)
    overlap = None if ci_a is None or ci_b is None else not (ci_a[1] < ci_b[0] or ci_b[1] < ci_a[0])
    _, p_value = statistics.mann_whitney(a, b)
    return Comparison(
        n_a=len(a),
        n_b=len(b),
        p50_a_ms=p50_a,
        p50_b_ms=p50_b,
        ci_a_ms=ci_a,
        ci_b_ms=ci_b,
        change_pct=(p50_b - p50_a) / p50_a * 100.0 if p50_a > 0 else float("nan"),
        p_value=p_value,
        intervals_overlap=overlap,
    )
