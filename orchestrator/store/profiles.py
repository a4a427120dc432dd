"""Operator profiles in the store: a result's profile as its rows, and its nodes back."""

from __future__ import annotations

import json
import zlib
from typing import Any

from agents.contract.profile import OperatorProfile, by_op_type
from orchestrator.store.models import ProfileOpType, ResultProfile


def stored_profile(profile: OperatorProfile) -> ResultProfile:
    """The rows a result's profile is kept as (added with the result)."""
    nodes = [op.model_dump() for op in profile.ops]
    return ResultProfile(
        method=profile.method,
        requested_unit=profile.requested_unit,
        queries=profile.queries,
        wall_ms=profile.wall_ms,
        total_ms=profile.total_ms(),
        note=profile.note,
        nodes_zlib=zlib.compress(json.dumps(nodes, separators=(",", ":")).encode(), 6),
        op_types=[ProfileOpType(**row) for row in by_op_type(profile)],
    )


def nodes_of(stored: ResultProfile) -> list[dict[str, Any]]:
    """Every node of a stored profile, as OperatorRow fields."""
    return json.loads(zlib.decompress(stored.nodes_zlib))
