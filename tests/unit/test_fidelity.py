"""agents.measurement.fidelity: exact values for hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.measurement import fidelity


def test_identical_outputs_are_perfect():
    ref = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    got = fidelity.compare(ref.copy(), ref)
    assert got["fidelity_cosine"] == pytest.approx(1.0, abs=1e-15)  # float rounding only
    assert got == {
        "fidelity_max_abs_error": 0.0,
        "fidelity_cosine": got["fidelity_cosine"],
        "fidelity_top1_agreement": 1.0,
        "accuracy": None,
        "accuracy_n": None,
    }


def test_hand_computed_error_cosine_agreement_and_accuracy():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [1.0, 2.0]])
    out = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0], [2.0, 1.0]])
    labels = [0, 0, 1, 1]
    got = fidelity.compare(out, ref, labels)
    assert got["fidelity_max_abs_error"] == 1.0
    # cosines per sample: 1, 0, 1, (2+2)/(sqrt5*sqrt5) = 0.8
    assert got["fidelity_cosine"] == pytest.approx((1 + 0 + 1 + 0.8) / 4, abs=1e-15)
    assert got["fidelity_top1_agreement"] == 0.5  # samples 0 and 2 keep their arg-max
    # predictions 0, 0, 1, 0 against labels 0, 0, 1, 1
    assert got["accuracy"] == 0.75 and got["accuracy_n"] == 4


def test_zero_vectors_agree_only_with_zero():
    ref = np.array([[0.0, 0.0], [0.0, 0.0]])
    out = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert fidelity.compare(out, ref)["fidelity_cosine"] == 0.5


def test_shape_mismatch_and_label_count_are_errors():
    with pytest.raises(ValueError, match="do not match"):
        fidelity.compare(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="3 labels for 2 outputs"):
        fidelity.compare(np.zeros((2, 3)), np.zeros((2, 3)), [0, 1, 2])


def test_quantize_and_dequantize_with_scale_and_zero_point():
    declared = {"name": "x", "dtype": "int8", "quantization": [0.5, -3]}
    values = np.array([0.0, 1.0, -1.24, 1000.0, -1000.0])
    assert fidelity.to_model_dtype(values, declared).tolist() == [-3, -1, -5, 127, -128]
    out = np.array([-3, 1, 127], dtype=np.int8)
    assert fidelity.to_float(out, {"quantization": [0.5, -3]}).tolist() == [0.0, 2.0, 65.0]
    # a float output is passed through (as float64), quantization or not
    assert fidelity.to_float(np.array([1.5], np.float32), None).tolist() == [1.5]


def test_integer_input_without_scale_is_refused():
    with pytest.raises(ValueError, match="without a quantization scale"):
        fidelity.to_model_dtype(np.zeros(2), {"name": "ids", "dtype": "int64"})


def test_chunks_cover_everything_once():
    assert fidelity.chunks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert fidelity.chunks(0, 3) == []
    covered = [i for part in fidelity.chunks(450, 8) for i in range(450)[part]]
    assert covered == list(range(450)) and math.ceil(450 / 8) == len(fidelity.chunks(450, 8))
