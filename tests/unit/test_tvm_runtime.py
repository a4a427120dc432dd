"""The Apache TVM adapter against the real TVM (apache-tvm from PyPI), and agreement with
onnxruntime on the same fp32 ONNX graphs (same tolerance as OpenVINO's: different kernels,
float rounding only)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from agents import runner, runtimes
from agents.contract import ArtifactRef, InputSpec, MeasurementPolicy, RuntimeOptions, TrialSpec
from orchestrator.artifacts.builtin_models import small_cnn
from orchestrator.campaigns.matrix import ArtifactInfo, DeviceInfo, expand
from orchestrator.campaigns.spec import parse_spec
from tests.conftest import missing_service
from tests.unit.test_openvino_runtime import (  # noqa: F401 (model: a fixture)
    agrees_with_onnxruntime_at_batches,
    model,
)


@pytest.fixture(autouse=True)
def tvm_installed():
    if not runtimes.adapter("tvm").available():
        missing_service("apache-tvm is not installed (pip install -e '.[tvm]')")


def shapes_at(built, batch: int) -> dict:
    return {i["name"]: [batch, *i["shape"][1:]] for i in built.inputs}


def test_tvm_is_found_and_says_what_it_runs():
    tvm = runtimes.adapter("tvm")
    assert tvm.version() and "CPU" in tvm.devices()
    assert tvm.formats("CPU") == ["onnx"] and tvm.precisions("CPU") == ["fp32"]


def test_tvm_compiles_at_the_trial_shapes_and_agrees_with_onnxruntime(model):  # noqa: F811
    """Compiled for batch 4; a feed of batch 3 (fidelity's last chunk) compiles again."""
    built, path = model
    loaded = runtimes.adapter("tvm").load(
        str(path), {"device": "CPU", "trial_shapes": shapes_at(built, 4)}
    )
    assert [i["shape"] for i in loaded.inputs()] == list(shapes_at(built, 4).values())
    agrees_with_onnxruntime_at_batches(loaded, path, (4, 3))
    bound = loaded.bind(runner.make_feed(built.inputs, 4, seed=7))
    bound()
    assert bound.outputs()[0].shape == (4, 10)
    placement = loaded.placement().as_dict()
    assert placement["target_kind"] == "llvm" and placement["schedules"] == "TVM defaults, untuned"
    assert placement["actual_device"] == "CPU" and placement["fallback"] is False
    loaded.close()


def test_a_trial_on_tvm_times_the_compile_and_reads_it_back_from_its_cache(tmp_path):
    built = small_cnn()
    path = tmp_path / "m.onnx"
    path.write_bytes(built.onnx_bytes)
    spec = TrialSpec(
        trial_id="ab" * 16, attempt=1, boot_id="b", campaign_id=1, device="d",
        model=built.name,
        artifact=ArtifactRef(
            sha256=hashlib.sha256(built.onnx_bytes).hexdigest(), size=len(built.onnx_bytes),
            format="onnx", uri=str(path),
        ),
        inputs=[InputSpec.of(i) for i in built.inputs], runtime="tvm", batch_size=2,
        runtime_options=RuntimeOptions(cache=True),
        policy=MeasurementPolicy(warmup_s=0, min_queries=10, min_s=0, max_s=2, idle_baseline_s=0),
        timeout_s=120,
    )  # fmt: skip
    result = runner.run_trial(spec)
    assert result["status"] == "ok" and result["actual_device"] == "CPU"
    assert result["summary"]["n"] >= 10
    # the first load compiled (cold start holds it); the second read the exported module
    assert result["placement"]["loaded_from_cache"] is True
    assert result["load_cached_ms"] < result["load_ms"]
    # the build at the trial's shapes, of the first (cold) load: part of it, not the cache read
    assert result["load_cached_ms"] < result["compile_ms"] < result["load_ms"]


def test_the_plan_says_what_tvm_does_not_run():
    """From what the agent reports: TVM loads ONNX and computes in fp32 here, so an int8
    model and a TFLite-only model are skipped with the reason."""
    [tvm] = [r for r in runtimes.inventory() if r["name"] == "tvm"]
    device = DeviceInfo(
        "here", "x86_64-cpu", (), {"tvm": tvm["devices"]},
        precisions={"tvm": tvm["precisions"]}, formats={"tvm": tvm["formats"]},
    )  # fmt: skip
    artifacts = [
        ArtifactInfo(1, "mlp_digits", "onnx", "fp32"),
        ArtifactInfo(2, "mlp_digits", "onnx", "int8"),
        ArtifactInfo(3, "face", "tflite", "fp32"),
    ]
    spec = parse_spec(
        {"name": "t", "devices": {"names": ["here"]}, "models": ["mlp_digits", "face"],
         "runtimes": ["tvm"], "precisions": ["fp32", "int8"], "policy": {"runs": 1}}
    )  # fmt: skip
    result = expand(spec, [device], artifacts)
    assert [(t.model, t.precision) for t in result.trials] == [("mlp_digits", "fp32")]
    reasons = {(s["model"], s["precision"]): s["reason"] for s in result.skipped}
    assert reasons[("mlp_digits", "int8")] == "tvm CPU on here runs no int8 (runs: fp32)"
    assert reasons[("face", "fp32")] == "no onnx fp32 artifact of face"


def flatten_by_shape_arithmetic(path) -> None:
    """An ONNX graph that flattens as tf2onnx writes it: the target shape computed at run
    time from the input's shape (Shape, Gather, Cast, Slice, Concat, Cast, Reshape)."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values, dtype=TensorProto.INT64):
        return helper.make_tensor(name, dtype, [len(values)], values)

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape32"], to=TensorProto.INT32),
        helper.make_node("Slice", ["shape32", "starts", "ends", "axes"], ["batch"]),
        helper.make_node("Concat", ["batch", "minus_one"], ["target32"], axis=0),
        helper.make_node("Cast", ["target32"], ["target"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "flatten",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 24])],
        initializer=[
            const("starts", [0], TensorProto.INT32), const("ends", [1], TensorProto.INT32),
            const("axes", [0], TensorProto.INT32), const("minus_one", [-1], TensorProto.INT32),
        ],
    )  # fmt: skip
    flatten = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(flatten, str(path))


def test_tvm_runs_a_flatten_whose_shape_is_computed_at_run_time(tmp_path):
    """TVM's importer refuses a Reshape fed by shape arithmetic (the built digits CNN has
    one, from tf2onnx); the adapter folds it at the trial's fixed shapes first."""
    path = tmp_path / "flatten.onnx"
    flatten_by_shape_arithmetic(path)
    loaded = runtimes.adapter("tvm").load(str(path), {"trial_shapes": {"x": [3, 2, 3, 4]}})
    x = np.arange(72, dtype=np.float32).reshape(3, 2, 3, 4)
    [y] = loaded.run({"x": x})
    np.testing.assert_array_equal(y, x.reshape(3, 24))
