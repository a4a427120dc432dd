"""What a profile says, and what two profiles' difference is made of: the op types that
account for it ("int8 is 0.40 ms slower: DequantizeLinear +0.30 ms, 24 nodes ...")."""

from __future__ import annotations

from typing import Any, Optional

COVERAGE_TOLERANCE = 0.15  # the profile's total within this of the measured mean


def coverage(profile: dict[str, Any]) -> Optional[float]:
    """The ops' time per query over the trial's measured mean per query (1.0: all of it)."""
    total, mean = profile.get("total_ms"), profile.get("measured_mean_ms")
    return total / mean if total is not None and mean else None


def coverage_words(profile: dict[str, Any]) -> str:
    share = coverage(profile)
    if share is None:
        return "the profiler gave no operator times: " + (profile.get("note") or "")
    words = (
        f"the operators account for {profile['total_ms']:.3f} ms of the "
        f"{profile['measured_mean_ms']:.3f} ms measured mean per query ({share * 100:.0f} %)"
    )
    slowdown = profiler_slowdown(profile)
    if share > 1 + COVERAGE_TOLERANCE and slowdown and slowdown > 1 + COVERAGE_TOLERANCE:
        words += (
            f"; the profiled queries took {profile['wall_ms']:.3f} ms each, {slowdown:.1f}x the "
            "timed ones: the profiler's own cost is in every operator's time (read the shares, "
            "not the absolute times)"
        )
    elif abs(share - 1) > COVERAGE_TOLERANCE:
        wall = profile.get("wall_ms")
        if wall:
            words += (
                f"; the profiled queries took {wall:.3f} ms each, the operators "
                f"{profile['total_ms'] / wall * 100:.0f} % of that"
            )
        if profile.get("note"):
            words += f"; the rest: {profile['note']}"
    return words


def profiler_slowdown(profile: dict[str, Any]) -> Optional[float]:
    """How much slower the profiled queries ran than the timed ones (the profiler's cost)."""
    wall, mean = profile.get("wall_ms"), profile.get("measured_mean_ms")
    return wall / mean if wall and mean else None


def by_type(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Op type → time per query, nodes, the units and precisions it ran on, fallbacks."""
    types: dict[str, dict[str, Any]] = {}
    for row in profile["op_types"]:
        entry = types.setdefault(
            row["op_type"], {"time_ms": 0.0, "nodes": 0, "units": set(), "precisions": set(),
                             "fallback_nodes": 0, "timed": False}
        )  # fmt: skip
        entry["time_ms"] += row["time_ms"] or 0.0
        entry["timed"] |= row["time_ms"] is not None
        entry["nodes"] += row["nodes"]
        entry["fallback_nodes"] += row["fallback_nodes"]
        entry["units"].add(row["unit"])
        if row["precision"]:
            entry["precisions"].add(row["precision"])
    return types


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per op type: A's and B's time per query and B − A, largest difference first."""
    types_a, types_b = by_type(a), by_type(b)
    rows = []
    for op_type in set(types_a) | set(types_b):
        in_a, in_b = types_a.get(op_type), types_b.get(op_type)
        ms_a = in_a["time_ms"] if in_a else 0.0
        ms_b = in_b["time_ms"] if in_b else 0.0
        rows.append({
            "op_type": op_type, "a_ms": ms_a, "b_ms": ms_b, "delta_ms": ms_b - ms_a,
            "a_nodes": in_a["nodes"] if in_a else 0, "b_nodes": in_b["nodes"] if in_b else 0,
            "a_units": sorted(in_a["units"]) if in_a else [],
            "b_units": sorted(in_b["units"]) if in_b else [],
            "b_fallback_nodes": in_b["fallback_nodes"] if in_b else 0,
            "b_precisions": sorted(in_b["precisions"]) if in_b else [],
        })  # fmt: skip
    return sorted(rows, key=lambda r: -abs(r["delta_ms"]))


def explain(a: dict[str, Any], b: dict[str, Any], top: int = 3) -> str:
    """One sentence: how much slower or faster B is than A per query (by the measured means)
    and the op types that account for most of it, from the profiles."""
    measured = (b["measured_mean_ms"] or 0) - (a["measured_mean_ms"] or 0)
    way = "slower" if measured > 0 else "faster"
    if a["total_ms"] is None or b["total_ms"] is None:
        return (
            f"B is {abs(measured):.3f} ms {way} per query than A (measured means); the profiles "
            "have no operator times to say where"
        )
    rows = diff(a, b)
    profiled = b["total_ms"] - a["total_ms"]
    parts = []
    for row in [r for r in rows if r["delta_ms"] * profiled > 0][:top]:
        where = ", ".join(row["b_units"] or row["a_units"])  # B's, or A's where B has none
        nodes = row["b_nodes"] if row["delta_ms"] > 0 else row["a_nodes"]
        parts.append(
            f"{row['op_type']} {row['delta_ms']:+.3f} ms ({nodes} node{'s' * (nodes != 1)} on "
            f"{where})"
        )
    words = (
        f"B is {abs(measured):.3f} ms {way} per query than A (measured means; the profiles "
        f"differ by {profiled:+.3f} ms)" + (": " + "; ".join(parts) if parts else "")
    )
    if measured * profiled < 0:
        words += (
            " — the profiles' difference has the other sign: the profiler's own cost differs "
            "between the two, so these are the profiles' account, not the measured one"
        )
    return words
