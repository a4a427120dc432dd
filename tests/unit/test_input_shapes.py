"""Registering inputs (shapes, batch axes) and building a trial's feed from them."""

from __future__ import annotations

import numpy as np
import pytest

from agents.measurement import feeds
from orchestrator.artifacts import input_shapes
from orchestrator.artifacts.input_shapes import ModelRejected

# Silero VAD 6.2.3's inputs, as onnxruntime describes them (the survey of public wheels).
VAD = [
    {"name": "input", "shape": [None, None], "dtype": "float32", "dim_names": [None, None]},
    {"name": "state", "shape": [2, None, 128], "dtype": "float32", "dim_names": [None] * 3},
    {"name": "sr", "shape": [], "dtype": "int64", "dim_names": []},
]


def test_every_input_that_needs_a_flag_is_named_at_once_with_the_flag():
    with pytest.raises(ModelRejected) as refused:
        input_shapes.resolve(VAD, {})
    message = str(refused.value)
    assert message.startswith("2 things to give")
    assert "--input-shape input=1,<d1>" in message
    assert "--batch-axis state=1 if axis 1 is the batch" in message
    assert "--batch-axis state=none with --input-shape state=2,<d1>,128" in message


def test_given_shapes_and_axes_resolve_every_input():
    resolved = input_shapes.resolve(VAD, {"input": [1, 512]}, {"state": 1})
    assert resolved == [
        {"name": "input", "shape": [None, 512], "dtype": "float32", "batch_axis": 0},
        {"name": "state", "shape": [2, None, 128], "dtype": "float32", "batch_axis": 1},
        {"name": "sr", "shape": [], "dtype": "int64", "batch_axis": None},
    ]
    no_batch = input_shapes.resolve(VAD, {"input": [1, 512], "state": [2, 1, 128]}, {"state": None})
    assert no_batch[1] == {
        "name": "state",
        "shape": [2, 1, 128],
        "dtype": "float32",
        "batch_axis": None,
    }


def test_a_named_batch_dimension_is_the_batch_axis():
    node = {"name": "x", "shape": [7, None], "dtype": "float32", "dim_names": [None, "batch"]}
    assert input_shapes.batch_axis_of(node) == 1
    fixed = {"name": "x", "shape": [1, 3, 224, 224], "dtype": "float32"}
    assert input_shapes.batch_axis_of(fixed) == 0  # a fixed batch of 1


@pytest.mark.parametrize(
    ("shapes", "axes", "message"),
    [
        (
            {"nope": [1]},
            {},
            "--input-shape names nope, but the model's inputs are input, state, sr",
        ),
        ({}, {"nope": 0}, "--batch-axis names nope"),
        ({"input": [1, 2, 3]}, {"state": 1}, "input 'input' has 2 dimension(s)"),
        ({"input": [1, 512], "state": [3, 1, 128]}, {"state": 1}, "disagrees at axis 0"),
        ({"input": [1, 512]}, {"state": 5}, "--batch-axis state=5: input 'state' has 3 dimension"),
        ({"input": [1, 512]}, {"state": 1, "sr": 0}, "a scalar: --batch-axis sr=none"),
    ],
)
def test_wrong_flags_are_refused_naming_the_input_and_the_fix(shapes, axes, message):
    with pytest.raises(ModelRejected, match=message.replace("(", r"\(").replace(")", r"\)")):
        input_shapes.resolve(VAD, shapes, axes)


@pytest.mark.parametrize("value", ["x", "x=", "=1", "x=1,a", "x=0", "x=-1"])
def test_malformed_input_shapes_are_refused(value):
    if value == "x=":
        assert input_shapes.parse_shapes([value]) == {"x": []}  # a scalar
        return
    with pytest.raises(ModelRejected, match="expected NAME=D1,D2"):
        input_shapes.parse_shapes([value])


@pytest.mark.parametrize("value", ["x", "x=-1", "x=first", "=1"])
def test_malformed_batch_axes_are_refused(value):
    with pytest.raises(ModelRejected, match="expected NAME=K"):
        input_shapes.parse_batch_axes([value])


def test_variants_take_the_registered_shapes_by_name():
    registered = input_shapes.resolve(VAD, {"input": [1, 512]}, {"state": 1})
    described = [{k: v for k, v in node.items() if k != "dim_names"} for node in VAD]
    stored = input_shapes.for_artifact(described, registered)
    assert [{k: v for k, v in n.items() if k != "open_axes"} for n in stored] == registered
    # What a shape sweep may change: the axes the file leaves open beyond the batch.
    assert [n["open_axes"] for n in stored] == [[1], [], []]
    other = [{"name": "y", "shape": [None, 3], "dtype": "float32"}]
    assert input_shapes.for_artifact(other, registered)[0]["batch_axis"] == 0


def test_integer_inputs_wider_than_a_byte_need_real_values():
    assert input_shapes.wide_integers(VAD) == ["sr"]
    image = [{"name": "img", "shape": [1, 8, 8, 3], "dtype": "uint8"}]
    assert input_shapes.wide_integers(image) == []


# --- the trial's feed ------------------------------------------------------------------


def registered_vad():
    return input_shapes.resolve(VAD, {"input": [1, 512]}, {"state": 1})


def test_the_batch_goes_on_each_inputs_own_axis_and_scalars_stay_as_given():
    sample = {
        "input": np.arange(2 * 512, dtype=np.float32).reshape(2, 512),
        "state": np.zeros((2, 2, 128), np.float32),
        "sr": np.array(16000),
    }
    feed = feeds.make_feed(registered_vad(), 3, sample=sample)
    assert feed["input"].shape == (3, 512) and feed["state"].shape == (2, 3, 128)
    assert feed["sr"].shape == () and int(feed["sr"]) == 16000 and feed["sr"].dtype == np.int64
    # Sample rows repeat along the batch axis to fill a larger batch.
    np.testing.assert_array_equal(feed["input"][2], sample["input"][0])


def test_integer_samples_of_another_shape_are_refused_floats_are_seeded():
    registered = [{"name": "ids", "shape": [None, 16], "dtype": "int64", "batch_axis": 0}]
    with pytest.raises(feeds.FeedError, match="integer values cannot be made up"):
        feeds.make_feed(registered, 1, sample={"ids": np.ones((1, 8), np.int64)})
    floats = [{"name": "x", "shape": [None, 16], "dtype": "float32", "batch_axis": 0}]
    fed = feeds.make_feed(floats, 2, sample={"x": np.ones((1, 8), np.float32)})
    assert fed["x"].shape == (2, 16)


def test_a_fixed_batch_runs_at_batch_one_only():
    fixed = [{"name": "x", "shape": [1, 4], "dtype": "float32", "batch_axis": 0}]
    assert feeds.trial_shapes(fixed, 1) == {"x": [1, 4]}
    with pytest.raises(feeds.FeedError, match="fixed batch dimension; batch_size 2"):
        feeds.trial_shapes(fixed, 2)


def test_calibration_takes_one_row_of_every_batch_axis_at_a_time():
    from orchestrator.artifacts import user_variants

    registered = registered_vad()
    sample = {
        "input": np.arange(3 * 512, dtype=np.float32).reshape(3, 512),
        "state": np.ones((2, 3, 128), np.float32),
        "sr": np.array(16000),
    }
    feeds_, seeded = user_variants.calibration_feeds(registered, sample)
    assert not seeded and len(feeds_) == 3
    assert feeds_[2]["input"].shape == (1, 512) and feeds_[2]["input"][0, 0] == 1024
    assert feeds_[0]["state"].shape == (2, 1, 128) and feeds_[0]["sr"].shape == ()
    assert user_variants.calibration_feeds(registered, None) is None  # int64 sr: no values
    floats = [{"name": "x", "shape": [None, 4], "dtype": "float32", "batch_axis": 0}]
    seeded_feeds, seeded = user_variants.calibration_feeds(floats, None)
    assert seeded and len(seeded_feeds) == 8 and seeded_feeds[0]["x"].shape == (1, 4)
