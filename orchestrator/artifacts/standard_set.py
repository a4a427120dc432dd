"""Builds one model of the standard set in every format and precision the runtimes need.

Per model: ONNX fp32 and int8, TFLite fp32, fp16 and int8, OpenVINO IR fp32 and fp16,
all with a dynamic batch dimension, plus the fp32 reference outputs on a seeded input
set (for the digits CNN: its labelled held-out test split) that trials measure output
fidelity and accuracy against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.artifacts import architectures, converters

MODEL_VERSION = "1"
SEED = 7


@dataclass
class BuiltArtifact:
    format: str
    precision: str
    data: bytes
    recipe: dict[str, Any]


@dataclass
class BuiltModel:
    card: dict[str, Any]
    reference: bytes
    artifacts: list[BuiltArtifact] = field(default_factory=list)
    seconds: float = 0.0


def names() -> list[str]:
    """Every model of the full set: the digits CNN, then each architecture at each size."""
    found = [architectures.DIGITS]
    for arch in architectures.ARCHITECTURES.values():
        found += [arch.variant(size) for size in arch.sizes]
    return found


def _variants(keras_model: Any, shape: tuple[int, ...], calibration: np.ndarray) -> list:
    built = []
    for precision in ("fp32", "fp16", "int8"):
        data, recipe = converters.keras_to_tflite(keras_model, precision, calibration)
        built.append(BuiltArtifact("tflite", precision, data, recipe))
    onnx_fp32, onnx_recipe = converters.keras_to_onnx(keras_model, shape)
    built.append(BuiltArtifact("onnx", "fp32", onnx_fp32, onnx_recipe))
    data, recipe = converters.onnx_to_int8(onnx_fp32, calibration)
    built.append(BuiltArtifact("onnx", "int8", data, {**recipe, "from": "onnx fp32"}))
    for precision, fp16 in (("fp32", False), ("fp16", True)):
        data, recipe = converters.onnx_to_openvino_ir(onnx_fp32, fp16)
        built.append(BuiltArtifact("openvino-ir", precision, data, {**recipe, "from": "onnx fp32"}))
    return built


def _predict(keras_model: Any) -> Any:
    return lambda x: keras_model.predict(x, verbose=0, batch_size=len(x))


def build(name: str) -> BuiltModel:
    """Build one model (a name from ``names()``); raises ValueError for an unknown one."""
    started = time.perf_counter()
    tf = architectures.quiet_tensorflow()
    versions = {
        "tensorflow": tf.__version__,
        "keras": converters.version_of("keras"),
        "tf2onnx": converters.version_of("tf2onnx"),
        "onnxruntime": converters.version_of("onnxruntime"),
        "openvino": converters.version_of("openvino"),
    }
    if name == architectures.DIGITS:
        model, facts = architectures.train_digits_cnn(SEED)
        train_x, _, test_x, test_y = architectures.digits_split()
        calibration = train_x[:100]
        reference = converters.reference_npz(test_x, _predict(model), test_y)
        card = {
            "family": name,
            "input_size": 8,
            "task": "image-classification (digits 0-9)",
            "layout": "NHWC",
            "preprocessing": {"description": "8x8 grey digits, pixel values 0..16 divided by 16"},
            "source": "edgebench: small CNN trained on scikit-learn's bundled digits data",
            "license": "BSD-3-Clause (scikit-learn digits data)",
            "recipe": {"seed": SEED, "training": facts, "versions": versions},
        }
        shape: tuple[int, ...] = (8, 8, 1)
    else:
        arch = next(
            (
                a
                for a in architectures.ARCHITECTURES.values()
                for s in a.sizes
                if a.variant(s) == name
            ),
            None,
        )
        if arch is None:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(names())})")
        size = int(name.rsplit("_", 1)[1])
        model = architectures.build_classifier(arch, size, SEED)
        transform = arch.preprocessing.transform
        calibration = transform(
            architectures.seeded_images(architectures.CALIBRATION_SAMPLES, size, SEED + 2)
        )
        inputs = transform(
            architectures.seeded_images(architectures.REFERENCE_SAMPLES, size, SEED + 3)
        )
        reference = converters.reference_npz(inputs.astype(np.float32), _predict(model))
        card = {
            "family": arch.family,
            "input_size": size,
            "task": "image-classification (1000 classes)",
            "layout": "NHWC",
            "preprocessing": {"description": arch.preprocessing.description},
            "source": f"keras.applications.{arch.keras_name} architecture, seeded random weights",
            "license": arch.license,
            "recipe": {
                "seed": SEED,
                "weights": "random (seeded); batch-norm statistics from one pass over seeded images",
                "versions": versions,
            },
        }
        shape = (size, size, 3)
    calibration = np.asarray(calibration, np.float32)
    built = BuiltModel(card={"name": name, "version": MODEL_VERSION, **card}, reference=reference)
    try:
        built.artifacts = _variants(model, shape, calibration)
    finally:
        # Keras keeps every model's graph until told: a full build would grow to ~14 GB.
        import gc

        import keras

        del model
        keras.backend.clear_session()
        gc.collect()
    built.seconds = time.perf_counter() - started
    return built
