"""What a trial feeds: the shapes registered with the model, the batch size on each input's
batch axis only, and the model's sample values where it has them.

Inputs without a batch axis (a scalar, a sample rate, a recurrent state's fixed size) are
fed as registered. Sample values are repeated along the batch axis to fill a larger batch.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class FeedError(ValueError):
    """Inputs that cannot be built for this trial, with the reason and the fix."""


def _batch_axis(node: Dict[str, Any]) -> Optional[int]:
    if "batch_axis" in node:
        return node["batch_axis"]
    shape = node["shape"]
    return 0 if shape and shape[0] is None else None  # described before axes were recorded


def trial_shapes(registered: List[Dict[str, Any]], batch_size: int) -> Dict[str, List[int]]:
    """Each input's concrete shape at this batch size."""
    batched = any(
        _batch_axis(node) is not None and node["shape"][_batch_axis(node)] is None
        for node in registered
    )
    if not batched and batch_size != 1:
        raise FeedError(
            f"the model has a fixed batch dimension; batch_size {batch_size} cannot be run "
            "(export it with a dynamic batch dimension)"
        )
    shapes = {}
    for node in registered:
        shape, axis = list(node["shape"]), _batch_axis(node)
        if axis is not None and shape[axis] is None:
            shape[axis] = batch_size
        if any(dim is None for dim in shape):
            raise FeedError(
                f"input {node['name']!r} has dynamic dimensions {node['shape']} beyond the batch;"
                " register the model with explicit input shapes (models add --input-shape)"
            )
        shapes[node["name"]] = shape
    return shapes


def _dtype(node: Dict[str, Any]) -> Any:
    import numpy as np

    try:
        return np.dtype(node["dtype"])
    except TypeError:
        raise FeedError(f"input {node['name']!r} has unsupported dtype {node['dtype']}") from None


def _from_sample(array: Any, node: Dict[str, Any], shape: List[int]) -> Optional[Any]:
    """The sample values at the trial's shape (rows repeated along the batch axis), or
    None where the sample has another shape beyond its batch (a shape sweep)."""
    import numpy as np

    axis = _batch_axis(node)
    if axis is not None and array.ndim == len(shape):
        array = np.take(array, np.arange(shape[axis]), axis=axis, mode="wrap")
    if list(array.shape) != shape:
        return None
    return array.astype(_dtype(node), order="C")  # (ascontiguousarray makes a scalar 1-d)


def _seeded(rng: Any, node: Dict[str, Any], shape: List[int]) -> Any:
    import numpy as np

    dtype = _dtype(node)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu" and (node.get("quantization") or dtype.itemsize == 1):
        # Quantized or byte data (images): values across the whole integer range.
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)
    if dtype.kind in "iu":
        # Reached only by models registered before sample values were required for
        # integer inputs (`models add` now refuses them without --sample-input).
        return rng.integers(0, 10, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise FeedError(f"input {node['name']!r} has unsupported dtype {node['dtype']}")


def make_feed(
    registered: List[Dict[str, Any]],
    batch_size: int,
    seed: int = 0,
    sample: Optional[Dict[str, Any]] = None,
    declared: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """{input name: array} for one query. ``declared`` is the loaded model's own view of its
    inputs (dtype, quantization); ``registered`` gives the shapes and batch axes."""
    import numpy as np

    shapes = trial_shapes(registered, batch_size)
    by_name = {node["name"]: node for node in registered}
    rng = np.random.default_rng(seed)
    feed = {}
    for node in declared or registered:
        known = by_name.get(node["name"])
        if known is None:
            raise FeedError(
                f"the model's input {node['name']!r} is not among its registered inputs "
                f"({', '.join(by_name)}): register the model again"
            )
        node = {**node, "batch_axis": _batch_axis(known)}
        shape = shapes[node["name"]]
        value = None
        if sample is not None and node["name"] in sample:
            value = _from_sample(sample[node["name"]], node, shape)
            if value is None and _dtype(node).kind != "f":
                raise FeedError(
                    f"the sample values of {node['name']!r} have shape "
                    f"{list(sample[node['name']].shape)}, this trial feeds {shape}: integer "
                    "values cannot be made up for another shape"
                )
        feed[node["name"]] = value if value is not None else _seeded(rng, node, shape)
    return feed
