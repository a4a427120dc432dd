"""Each input of a model as registered: its full shape and which axis is the batch.

A trial feeds exactly these shapes, with its batch size on the batch axis only; an input
without a batch axis (a scalar, a sample rate) is fed as registered. edgebench never
guesses a dimension or an axis: where the model file leaves one open, the refusal names
the input, its shape and the flag that settles it (``--input-shape``, ``--batch-axis``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# A symbolic dimension with one of these names (or containing "batch") is the batch axis.
BATCH_NAMES = ("n", "b", "bs")
NOT_GIVEN = object()


class ModelRejected(ValueError):
    """A user's model that cannot be registered, with the reason and the fix."""


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    """``name=1,3,224,224`` options into {name: [1, 3, 224, 224]}; ``name=`` is a scalar."""
    shapes = {}
    for value in values:
        name, sep, dims = value.partition("=")
        try:
            shape = [int(d) for d in dims.split(",")] if dims.strip() else []
        except ValueError:
            shape = None
        if not name or not sep or shape is None or any(d < 1 for d in shape):
            raise ModelRejected(
                f"--input-shape {value!r}: expected NAME=D1,D2,... with every dimension >= 1"
            )
        shapes[name] = shape
    return shapes


def parse_batch_axes(values: list[str]) -> dict[str, int | None]:
    """``name=1`` / ``name=none`` options into {name: 1} / {name: None}."""
    axes: dict[str, int | None] = {}
    for value in values:
        name, _, axis = value.partition("=")
        axis = axis.strip().lower()
        if name and axis == "none":
            axes[name] = None
        elif name and axis.isdigit():
            axes[name] = int(axis)
        else:
            raise ModelRejected(
                f"--batch-axis {value!r}: expected NAME=K (the batch axis, from 0) or NAME=none"
            )
    return axes


def template(shape: list[int | None], batch_axis: int | None) -> str:
    """The --input-shape value to complete: fixed sizes kept, the batch as 1, the rest named."""
    return ",".join(
        "1" if i == batch_axis else (str(d) if d is not None else f"<d{i}>")
        for i, d in enumerate(shape)
    )


def _looks_like_batch(dim_name: str | None) -> bool:
    return bool(dim_name) and (dim_name.lower() in BATCH_NAMES or "batch" in dim_name.lower())


def batch_axis_of(node: dict[str, Any], given: Any = NOT_GIVEN) -> int | None:
    """The batch axis of a declared input: the one given, else the model's named batch
    dimension, else a dynamic first axis, else the first axis of an all-fixed shape (a
    fixed batch). A fixed first axis with dynamic ones after it is asked, never guessed."""
    name, shape = node["name"], list(node["shape"])
    if given is not NOT_GIVEN:
        if given is not None and given >= len(shape):
            raise ModelRejected(
                f"--batch-axis {name}={given}: input {name!r} has {len(shape)} dimension(s) "
                f"{shape}" + (f" (a scalar: --batch-axis {name}=none)" if not shape else "")
            )
        return given
    if not shape:
        return None
    named = [i for i, d in enumerate(node.get("dim_names") or []) if _looks_like_batch(d)]
    if len(named) == 1:
        return named[0]
    if shape[0] is None:
        return 0
    dynamic = [i for i, d in enumerate(shape) if d is None]
    if not dynamic:
        return 0
    axis = dynamic[0]
    rest = [i for i in dynamic if i != axis]
    also = (
        f", and --input-shape {name}={template(shape, axis)} for its other dynamic dimensions"
        if rest
        else ""
    )
    raise ModelRejected(
        f"input {name!r} has shape {shape}: its first axis is fixed, so edgebench cannot tell "
        f"which axis is the batch. Give --batch-axis {name}={axis} if axis {axis} is the batch"
        f"{also}; or --batch-axis {name}=none with --input-shape {name}="
        f"{template(shape, None)}"
    )


def resolve_input(
    node: dict[str, Any], given_shape: list[int] | None, given_axis: Any = NOT_GIVEN
) -> dict[str, Any]:
    """The stored form of one input: every dimension known but a dynamic batch."""
    name, shape = node["name"], list(node["shape"])
    axis = batch_axis_of(node, given_axis)
    if given_shape is not None:
        if len(given_shape) != len(shape):
            raise ModelRejected(
                f"input {name!r} has {len(shape)} dimension(s) {shape}; --input-shape gave "
                f"{len(given_shape)}: give --input-shape {name}={template(shape, axis)}"
            )
        clash = [i for i, (d, g) in enumerate(zip(shape, given_shape)) if d not in (None, g)]
        if clash:
            raise ModelRejected(
                f"input {name!r} is fixed at {shape}; --input-shape {given_shape} disagrees "
                f"at axis {clash[0]}: give --input-shape {name}={template(shape, axis)}"
            )
        # The batch axis keeps the model's own size: dynamic, or a fixed batch.
        shape = [d if i == axis else g for i, (d, g) in enumerate(zip(shape, given_shape))]
    open_axes = [i for i, d in enumerate(shape) if d is None and i != axis]
    if open_axes:
        where = f"beyond the batch (axis {axis})" if axis is not None else "and no batch axis"
        raise ModelRejected(
            f"input {name!r} has dynamic dimensions {list(node['shape'])} {where}: give "
            f"--input-shape {name}={template(shape, axis)} with the sizes to run "
            "(edgebench does not guess shapes)"
        )
    return {"name": name, "shape": shape, "dtype": node["dtype"], "batch_axis": axis}


def resolve(
    declared: list[dict[str, Any]],
    shapes: dict[str, list[int]],
    axes: dict[str, int | None] | None = None,
    more_refusals: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every declared input resolved, or every refusal at once (with ``more_refusals``, the
    caller's own), so one attempt shows all the flags a model needs."""
    axes = axes or {}
    names = [node["name"] for node in declared]
    for flag, given in (("--input-shape", shapes), ("--batch-axis", axes)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ModelRejected(
                f"{flag} names {', '.join(unknown)}, but the model's inputs are {', '.join(names)}"
            )
    resolved, refusals = [], []
    for node in declared:
        try:
            resolved.append(
                resolve_input(node, shapes.get(node["name"]), axes.get(node["name"], NOT_GIVEN))
            )
        except ModelRejected as exc:
            refusals.append(str(exc))
    refusals += more_refusals or []
    if len(refusals) == 1:
        raise ModelRejected(refusals[0])
    if refusals:
        raise ModelRejected(
            f"{len(refusals)} things to give:\n" + "\n".join(f"  - {r}" for r in refusals)
        )
    return resolved


def for_artifact(
    described: list[dict[str, Any]], resolved: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """A variant's own inputs (as its runtime describes them) with the registered shapes
    and batch axes applied by name; inputs the registration does not name keep their own
    shape, with the batch axis inferred."""
    by_name = {node["name"]: node for node in resolved or []}
    stored = []
    for node in described:
        known = by_name.get(node["name"])
        if known is not None and len(known["shape"]) == len(node["shape"]):
            axis = known["batch_axis"]
            shape = [
                d if (i == axis and d is None) or k is None else k
                for i, (d, k) in enumerate(zip(node["shape"], known["shape"]))
            ]
        else:
            shape = list(node["shape"])
            try:
                axis = batch_axis_of(node)
            except ModelRejected:
                axis = None
        # The axes the file leaves open beyond the batch: what a shape sweep may change.
        open_axes = [i for i, d in enumerate(node["shape"]) if d is None and i != axis]
        stored.append(
            {
                "name": node["name"],
                "shape": shape,
                "dtype": node["dtype"],
                "batch_axis": axis,
                "open_axes": open_axes,
            }
        )
    return stored


def wide_integers(inputs: list[dict[str, Any]]) -> list[str]:
    """Inputs whose values matter and cannot be invented: integers wider than a byte
    (token ids, sample rates, sizes) and booleans. Bytes are image or quantized data."""
    found = []
    for node in inputs:
        try:
            dtype = np.dtype(node["dtype"])
        except TypeError:
            continue  # a type numpy cannot hold; the trial says so
        if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize > 1):
            found.append(node["name"])
    return found
