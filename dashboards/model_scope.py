"""The filters Compare, Trade-offs and Diff share: which model (family and input size),
batch size, precision and campaign. Each widget is bound to a URL query parameter (its
key), so a view can be shared as a link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboards import store_access
from orchestrator.store.queries import dashboard as dashboard_queries
from orchestrator.store.queries.dashboard import METRICS, Metric

ALL = "all"


@dataclass(frozen=True)
class Scope:
    family: str
    variants: list[dict[str, Any]]  # the chosen input size's variant, or all of the family
    batch_size: int | None
    precision: str | None  # None: every precision
    campaign_id: int | None  # None: every campaign
    options: dict[str, list[Any]]
    scenario: str | None = None  # one scenario: latencies of two load patterns never pool
    input_shapes: str | None = None  # None: every shape ("": the registered shapes)

    @property
    def model_ids(self) -> list[int]:
        return [i for variant in self.variants for i in variant["model_ids"]]

    def result_groups(self, **options: Any) -> list[dict[str, Any]]:
        """dashboard_queries.result_groups for this scope."""
        return store_access.read(
            dashboard_queries.result_groups,
            self.model_ids,
            batch_size=self.batch_size,
            precision=self.precision,
            campaign_id=self.campaign_id,
            scenario=self.scenario,
            input_shapes=self.input_shapes,
            **options,
        )


def pick_metric(label: str, names: list[str], key: str, where: Any = st) -> Metric:
    """A whitelisted metric, bound to the URL parameter `key`."""
    name = where.selectbox(
        label, names, format_func=lambda m: METRICS[m].title, key=key, bind="query-params"
    )
    return dashboard_queries.metric(name)


def pick_campaign(campaigns: list[dict[str, Any]], index: int = 0, where: Any = st) -> int:
    """One campaign (newest first), bound to the URL parameter `campaign`."""
    names = {c["id"]: c["name"] for c in campaigns}
    return where.selectbox(
        "Campaign",
        list(names),
        index=index,
        format_func=lambda c: f"{c}: {names[c]}",
        key="campaign",
        bind="query-params",
    )


def _size_label(size: Any) -> str:
    return "unknown" if size is None else f"{size} px"


def pick(one_input_size: bool = True, every_precision: bool = True) -> Scope | None:
    """Draw the filters; None (with a message shown) when there is nothing to pick."""
    variants = store_access.read(dashboard_queries.model_variants)
    families = sorted({v["family"] for v in variants})
    if not families:
        st.info("No models registered yet: `edgebench models build` adds the built-in ones.")
        return None
    columns = st.columns(5 if one_input_size else 4)
    family = columns[0].selectbox("Model", families, key="model", bind="query-params")
    members = sorted(
        (v for v in variants if v["family"] == family),
        key=lambda v: (v["input_size"] is None, v["input_size"] or 0, v["name"]),
    )
    rest = columns[1:]
    if one_input_size:
        # Plain variant names as options: they are what the link (?variant=...) carries.
        names = [v["name"] for v in members]
        by_name = {v["name"]: v for v in members}
        chosen = rest[0].selectbox(
            "Input size variant",
            names,
            key="variant",
            bind="query-params",
            disabled=len(names) == 1,
            help=", ".join(f"{n}: {_size_label(by_name[n]['input_size'])}" for n in names),
        )
        members = [by_name[chosen]]
        rest = rest[1:]
    model_ids = [i for v in members for i in v["model_ids"]]
    options = store_access.read(dashboard_queries.result_filter_options, model_ids)
    if not options["batch_sizes"]:
        st.info(f"{family} has not been run in any campaign yet.")
        return None
    batch = rest[0].selectbox(
        "Batch size", options["batch_sizes"], key="batch", bind="query-params"
    )
    precisions = ([ALL] if every_precision else []) + options["precisions"]
    precision = rest[1].selectbox("Precision", precisions, key="precision", bind="query-params")
    names = {c["id"]: c["name"] for c in options["campaigns"]}
    campaign = rest[2].selectbox(
        "Campaign",
        [ALL, *names],
        format_func=lambda c: "all campaigns" if c == ALL else f"{c}: {names[c]}",
        key="campaign",
        bind="query-params",
    )
    scenario, shapes = _pick_scenario_and_shapes(options, one_input_size)
    return Scope(
        family=family,
        variants=members,
        batch_size=batch,
        precision=None if precision == ALL else precision,
        campaign_id=None if campaign == ALL else campaign,
        options=options,
        scenario=scenario,
        input_shapes=shapes,
    )


def input_elements(shapes: str) -> int:
    """Elements per item of a sweep's shapes: every dimension but the first (the batch
    position), summed over the swept inputs."""
    total = 0
    for shape in json.loads(shapes).values():
        elements = 1
        for dim in shape[1:]:
            elements *= dim
        total += elements
    return total


def shapes_label(shapes: str) -> str:
    """A sweep's shapes as name=1x3x640x640, or "registered shapes"."""
    if not shapes:
        return "registered shapes"
    decoded = json.loads(shapes)
    return " ".join(f"{n}={'x'.join(map(str, s))}" for n, s in sorted(decoded.items()))


def _pick_scenario_and_shapes(
    options: dict[str, list[Any]], one_shape: bool
) -> tuple[str | None, str | None]:
    """The scenario (one: single-stream first) and, where a campaign swept input shapes,
    which shapes (one on Compare; all, as an axis, on Trade-offs). Drawn only when there is
    a choice to make."""
    scenarios = options.get("scenarios") or []
    shapes = options.get("input_shapes") or []
    if len(scenarios) < 2 and len(shapes) < 2:
        return (scenarios[0] if scenarios else None), None
    left, right = st.columns(2)
    ordered = sorted(scenarios, key=lambda s: (s != "single_stream", s))
    scenario = left.selectbox(
        "Scenario", ordered, key="scenario", bind="query-params", disabled=len(ordered) < 2
    )
    if len(shapes) < 2:
        return scenario, None
    choices = shapes if one_shape else [ALL, *shapes]
    chosen = right.selectbox(
        "Input shapes",
        choices,
        format_func=lambda s: "all shapes" if s == ALL else shapes_label(s),
        key="shapes",
        bind="query-params",
    )
    return scenario, None if chosen == ALL else chosen


def setup_label(row: dict[str, Any]) -> str:
    """runtime · precision (· where it actually ran, · its runtime options, · a swept
    shape, where there are)."""
    parts = [row["runtime"], row["precision"]]
    if row.get("actual_device"):
        parts.append(row["actual_device"])
    if row.get("runtime_options"):
        options = json.loads(row["runtime_options"])
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(options.items())))
    if row.get("input_shapes"):
        parts.append(shapes_label(row["input_shapes"]))
    return " · ".join(parts)
