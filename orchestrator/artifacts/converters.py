"""Format and precision conversions: Keras -> TFLite and ONNX, ONNX -> int8 and OpenVINO IR.

Each converter returns the artifact's bytes and the recipe that made it (converter,
version, options), which the registry stores with the artifact. Converter libraries
are imported only inside the function that uses them.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

OPSET = 17
INPUT_NAME = "input"
# An OpenVINO IR is two files; the registry keeps them as one uncompressed tar.
IR_XML, IR_BIN = "model.xml", "model.bin"


def version_of(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def keras_to_tflite(
    model: Any, precision: str, calibration: np.ndarray | None = None
) -> tuple[bytes, dict]:
    """fp32, fp16 (float16 weights) or full-integer int8 (int8 input and output)."""
    from orchestrator.artifacts.architectures import quiet_tensorflow

    tf = quiet_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    options: dict[str, Any] = {}
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        options = {"optimizations": "DEFAULT", "supported_types": "float16"}
    elif precision == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs a calibration set")

        def representative():
            for sample in calibration:
                yield [sample[np.newaxis].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        options = {
            "optimizations": "DEFAULT",
            "full_integer": True,
            "io": "int8",
            "calibration_samples": len(calibration),
        }
    elif precision != "fp32":
        raise ValueError(f"TFLite precision {precision!r} is not built (fp32, fp16, int8)")
    data = converter.convert()
    recipe = {
        "converter": "tf.lite.TFLiteConverter.from_keras_model",
        "tensorflow": tf.__version__,
        "options": options,
    }
    return data, recipe


def keras_to_onnx(model: Any, shape: tuple[int, ...]) -> tuple[bytes, dict]:
    """ONNX with a dynamic batch dimension, input named ``input``, NHWC as in Keras."""
    from orchestrator.artifacts.architectures import quiet_tensorflow

    tf = quiet_tensorflow()
    import tf2onnx

    signature = (tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME),)
    # from_keras freezes every variable (a traced tf.function can leave some, e.g. an
    # un-adapted Normalization layer's, as graph inputs); it needs a functional model.
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    dangling = [i.name for i in proto.graph.input if i.name != INPUT_NAME]
    if dangling:
        raise RuntimeError(f"tf2onnx left inputs other than {INPUT_NAME!r}: {dangling}")
    recipe = {
        "converter": "tf2onnx.convert.from_keras",
        "tf2onnx": version_of("tf2onnx"),
        "tensorflow": tf.__version__,
        "opset": OPSET,
    }
    return proto.SerializeToString(), recipe


class _Calibration:
    """onnxruntime's CalibrationDataReader over a list of feeds ({input name: array})."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def onnx_to_int8(onnx_bytes: bytes, calibration: np.ndarray) -> tuple[bytes, dict]:
    """Static QDQ int8 of a single-input model, calibrated one sample at a time."""
    import onnx

    name = onnx.load_from_string(onnx_bytes).graph.input[0].name
    feeds = [{name: s[np.newaxis].astype(np.float32)} for s in calibration]
    return onnx_feeds_to_int8(onnx_bytes, feeds)


def onnx_feeds_to_int8(onnx_bytes: bytes, feeds: list[dict[str, np.ndarray]]) -> tuple[bytes, dict]:
    """Static QDQ quantization (int8 weights per channel, uint8 activations) by onnxruntime,
    calibrated on the given feeds."""
    from onnxruntime import quantization

    with tempfile.TemporaryDirectory(prefix="edgebench-quant-") as work:
        source, target = Path(work, "fp32.onnx"), Path(work, "int8.onnx")
        source.write_bytes(onnx_bytes)
        quantization.quantize_static(
            str(source),
            str(target),
            _Calibration(feeds),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            weight_type=quantization.QuantType.QInt8,
            activation_type=quantization.QuantType.QUInt8,
        )
        data = target.read_bytes()
    recipe = {
        "converter": "onnxruntime.quantization.quantize_static",
        "onnxruntime": version_of("onnxruntime"),
        "options": {
            "format": "QDQ",
            "per_channel": True,
            "weights": "int8",
            "activations": "uint8",
            "calibration_samples": len(feeds),
        },
    }
    return data, recipe


def onnx_to_int8_dynamic(onnx_bytes: bytes) -> tuple[bytes, dict]:
    """Dynamic quantization by onnxruntime: int8 weights ahead of time, activations
    quantized per query from their observed range (no calibration data)."""
    from onnxruntime import quantization

    with tempfile.TemporaryDirectory(prefix="edgebench-quant-") as work:
        source, target = Path(work, "fp32.onnx"), Path(work, "int8_dynamic.onnx")
        source.write_bytes(onnx_bytes)
        quantization.quantize_dynamic(
            str(source), str(target), weight_type=quantization.QuantType.QInt8
        )
        data = target.read_bytes()
    recipe = {
        "converter": "onnxruntime.quantization.quantize_dynamic",
        "onnxruntime": version_of("onnxruntime"),
        "options": {"weights": "int8", "activations": "quantized per query (uint8)"},
    }
    return data, recipe


def onnx_to_fp16(onnx_bytes: bytes) -> tuple[bytes, dict]:
    """fp16 weights and compute, float32 inputs and outputs kept (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

    converted = float16.convert_float_to_float16(
        onnx.load_from_string(onnx_bytes), keep_io_types=True
    )
    recipe = {
        "converter": "onnxconverter_common.float16.convert_float_to_float16",
        "onnxconverter-common": version_of("onnxconverter-common"),
        "options": {"keep_io_types": True},
    }
    return converted.SerializeToString(), recipe


def onnx_to_openvino_ir(onnx_bytes: bytes, fp16: bool) -> tuple[bytes, dict]:
    """OpenVINO IR (xml + bin in one tar); fp16 compresses the weights."""
    import openvino

    with tempfile.TemporaryDirectory(prefix="edgebench-ir-") as work:
        source = Path(work, "model.onnx")
        source.write_bytes(onnx_bytes)
        converted = openvino.convert_model(str(source))
        openvino.save_model(converted, str(Path(work, IR_XML)), compress_to_fp16=fp16)
        data = pack_ir(Path(work, IR_XML).read_bytes(), Path(work, IR_BIN).read_bytes())
    recipe = {
        "converter": "openvino.convert_model from ONNX",
        "openvino": openvino.get_version().split("-")[0],
        "options": {"compress_to_fp16": fp16},
    }
    return data, recipe


def pack_ir(xml: bytes, weights: bytes) -> bytes:
    """One reproducible tar (fixed names, times and owners) holding model.xml and model.bin."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in ((IR_XML, xml), (IR_BIN, weights)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def reference_npz(
    inputs: np.ndarray, run: Callable[[np.ndarray], np.ndarray], labels: np.ndarray | None = None
) -> bytes:
    """The reference file trials measure fidelity against: inputs, fp32 outputs, labels."""
    arrays = {"inputs": inputs.astype(np.float32), "outputs": np.asarray(run(inputs), np.float32)}
    if labels is not None:
        arrays["labels"] = labels.astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
