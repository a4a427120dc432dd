"""A trial's operator profile: where each operator ran and how long it took, one shape for
every runtime's own profiler (onnxruntime session profiling, OpenVINO performance counters).

Taken in a pass after the timed runs, so it never perturbs them; a result carries it beside
its figures (TrialResult.profile). Times are means per query over the pass; a runtime that
says where each op ran but not how long leaves the times null, never estimated.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field

MAX_OPS = 20_000  # nodes of one graph: far above a detection model's few hundred


class OperatorRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str = Field(max_length=512)
    op_type: str = Field(max_length=128)
    calls: float = Field(ge=0)  # per query (a node in a loop runs more than once)
    time_us: Optional[float] = Field(None, ge=0)  # mean per query, all its calls
    unit: str = Field(max_length=128)  # the EP, delegate or device that ran it
    precision: Optional[str] = Field(None, max_length=16)  # executed: fp32, fp16, bf16, int8
    kernel: Optional[str] = Field(None, max_length=128)  # the runtime's kernel name
    fallback: bool = False  # ran elsewhere than the trial's requested unit


class OperatorProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field(max_length=200)  # the profiler that produced it
    requested_unit: str = Field(max_length=128)
    queries: int = Field(ge=0)  # queries of the profile pass
    wall_ms: Optional[float] = None  # mean wall time of a query during the pass
    ops: List[OperatorRow] = Field(default=[], max_length=MAX_OPS)
    # what the profile does not account for, where known (the runtime's own overhead)
    note: Optional[str] = Field(None, max_length=2000)

    def total_ms(self) -> Optional[float]:
        """The ops' time per query, or None where the profiler gave no times."""
        times = [op.time_us for op in self.ops if op.time_us is not None]
        return sum(times) / 1000 if times else None

    def fallback_summary(self) -> Dict[str, Any]:
        """How much ran off the requested unit: what the trial's placement reports."""
        off = [op for op in self.ops if op.fallback]
        total = self.total_ms()
        off_ms = sum(op.time_us or 0 for op in off) / 1000
        return {
            "profiled_ops": len(self.ops),
            "fallback_ops": len(off),
            "fallback_time_share": off_ms / total if total else None,
            "fallback_nodes": [f"{op.node} ({op.op_type} on {op.unit})" for op in off[:20]],
        }


def by_op_type(profile: OperatorProfile) -> List[Dict[str, Any]]:
    """One row per (op type, unit, precision): nodes, calls and time per query, share."""
    groups: Dict[Tuple[str, str, Optional[str]], Dict[str, Any]] = {}
    total = profile.total_ms()
    for op in profile.ops:
        key = (op.op_type, op.unit, op.precision)
        row = groups.setdefault(
            key,
            {"op_type": op.op_type, "unit": op.unit, "precision": op.precision, "nodes": 0,
             "calls": 0.0, "time_ms": None, "fallback_nodes": 0},
        )  # fmt: skip
        row["nodes"] += 1
        row["calls"] += op.calls
        row["fallback_nodes"] += int(op.fallback)
        if op.time_us is not None:
            row["time_ms"] = (row["time_ms"] or 0.0) + op.time_us / 1000
    rows = sorted(groups.values(), key=lambda r: -(r["time_ms"] or 0))
    for row in rows:
        row["share"] = row["time_ms"] / total if total and row["time_ms"] is not None else None
    return rows


def precision_of(dtype: str) -> Optional[str]:
    """A tensor or kernel type name as the precision it computes in."""
    name = dtype.lower()
    for marker, precision in (
        ("bf16", "bf16"), ("bfloat16", "bf16"), ("fp16", "fp16"), ("float16", "fp16"),
        ("f16", "fp16"), ("i8", "int8"), ("u8", "int8"), ("int8", "int8"), ("uint8", "int8"),
        ("fp32", "fp32"), ("f32", "fp32"), ("float", "fp32"),
    ):  # fmt: skip
        if marker in name:
            return precision
    return None
