"""Small ONNX models built from their architecture, with seeded weights: no download.

The full standard model set (MobileNet, EfficientNet, ResNet in every format) is a
separate builder; these two give the quickstart and the tests real work to measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

OPSET = 17


@dataclass(frozen=True)
class BuiltModel:
    name: str
    onnx_bytes: bytes
    inputs: list[dict]
    recipe: dict


def _initializer(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(array.astype(np.float32), name)


def _finish(graph, name: str, seed: int, description: str) -> bytes:
    import onnx
    from onnx import helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgebench",
        doc_string=f"{description}; seeded weights (seed {seed})",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mlp(seed: int = 1) -> BuiltModel:
    """Two dense layers on 8x8 digit images flattened to 64 features."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((64, 256)) * np.sqrt(2 / 64)
    w2 = rng.standard_normal((256, 10)) * np.sqrt(2 / 256)
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h1b"]),
        helper.make_node("Relu", ["h1b"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("Add", ["h2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [
            _initializer("w1", w1),
            _initializer("b1", np.zeros(256)),
            _initializer("w2", w2),
            _initializer("b2", np.zeros(10)),
        ],
    )
    return BuiltModel(
        "mlp_digits",
        _finish(graph, "mlp_digits", seed, "MLP 64-256-10"),
        [{"name": "input", "shape": [None, 64], "dtype": "float32"}],
        {"builder": "builtin_models.mlp", "seed": seed, "opset": OPSET},
    )


def small_cnn(seed: int = 2, size: int = 96) -> BuiltModel:
    """Four strided 3x3 convolutions and a classifier on a size x size RGB image."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    channels = [3, 16, 32, 64, 128]
    nodes, inits, previous = [], [], "input"
    for i, (cin, cout) in enumerate(zip(channels, channels[1:])):
        weight = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9))
        inits += [_initializer(f"conv{i}_w", weight), _initializer(f"conv{i}_b", np.zeros(cout))]
        nodes += [
            helper.make_node(
                "Conv",
                [previous, f"conv{i}_w", f"conv{i}_b"],
                [f"conv{i}"],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            ),
            helper.make_node("Relu", [f"conv{i}"], [f"act{i}"]),
        ]
        previous = f"act{i}"
    fc = rng.standard_normal((channels[-1], 10)) * np.sqrt(2 / channels[-1])
    inits += [_initializer("fc_w", fc), _initializer("fc_b", np.zeros(10))]
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
    ]
    name = f"small_cnn_{size}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return BuiltModel(
        name,
        _finish(graph, name, seed, f"CNN 4x conv3x3/2 on {size}x{size}"),
        [{"name": "input", "shape": [None, 3, size, size], "dtype": "float32"}],
        {"builder": "builtin_models.small_cnn", "seed": seed, "size": size, "opset": OPSET},
    )


BUILDERS: dict[str, Callable[[], BuiltModel]] = {
    "mlp_digits": mlp,
    "small_cnn_96": small_cnn,
}
