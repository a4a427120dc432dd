"""Pareto fronts: the points no other point beats on both axes at once."""

from __future__ import annotations

from typing import Sequence


def front(xs: Sequence[float], ys: Sequence[float], x_better: str, y_better: str) -> list[bool]:
    """For each point, whether it is on the Pareto front. `x_better`/`y_better` are "lower"
    or "higher". A point is dominated when another is at least as good on both axes and
    strictly better on one; equal points are all on the front."""
    for better in (x_better, y_better):
        if better not in ("lower", "higher"):
            raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    sx = 1 if x_better == "lower" else -1
    sy = 1 if y_better == "lower" else -1
    points = [(sx * x, sy * y) for x, y in zip(xs, ys)]
    on_front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            ox <= x and oy <= y and (ox < x or oy < y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        on_front.append(not dominated)
    return on_front
