"""The OpenVINO adapter against the real OpenVINO runtime, and agreement with onnxruntime.

Tolerance: the two runtimes run the same fp32 ONNX graph on the same CPU with different
kernels (oneDNN vs MLAS), so outputs may differ by float rounding; we require
|a - b| <= 1e-4 + 1e-4 * |b| element-wise.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from agents import runner, runtimes
from agents.contract import ArtifactRef, InputSpec, MeasurementPolicy, TrialSpec
from orchestrator.artifacts.builtin_models import mlp, small_cnn

TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(params=[mlp, small_cnn], ids=["mlp_digits", "small_cnn_96"])
def model(request, tmp_path):
    built = request.param()
    path = tmp_path / f"{built.name}.onnx"
    path.write_bytes(built.onnx_bytes)
    return built, path


def test_openvino_is_registered_and_offers_cpu():
    adapter = runtimes.adapter("openvino")
    assert adapter.available() and adapter.version()
    assert "CPU" in adapter.devices() and "AUTO" in adapter.devices()


def test_openvino_reads_the_onnx_model_and_reports_where_it_ran(model):
    built, path = model
    loaded = runtimes.adapter("openvino").load(str(path), {"device": "CPU"})
    [described] = loaded.inputs()
    assert described == {"name": "input", "shape": built.inputs[0]["shape"], "dtype": "float32"}
    feed = runner.make_feed(loaded.inputs(), batch_size=3)
    [out] = loaded.run(feed)
    assert out.shape == (3, 10)
    placement = loaded.placement().as_dict()
    assert placement["execution_devices"] == ["CPU"]
    assert placement["actual_device"] == "CPU" and placement["fallback"] is False
    # fp32 asked, fp32 computed (OpenVINO's CPU default is bf16 on CPUs that have it).
    assert placement["inference_precision"] == "f32"
    loaded.close()


def test_auto_is_not_a_fallback_whatever_it_picks(model):
    _, path = model
    loaded = runtimes.adapter("openvino").load(str(path), {"device": "AUTO"})
    placement = loaded.placement().as_dict()
    assert placement["actual_device"] and placement["fallback"] is False


def test_a_device_this_machine_lacks_is_refused_with_what_it_has(model):
    _, path = model
    with pytest.raises(ValueError, match="OpenVINO has no device 'NPU'.*available: CPU"):
        runtimes.adapter("openvino").load(str(path), {"device": "NPU"})


@pytest.mark.parametrize("batch_size", [1, 4])
def test_openvino_and_onnxruntime_agree(model, batch_size):
    _, path = model
    ov = runtimes.adapter("openvino").load(str(path), {"device": "CPU"})
    ort = runtimes.adapter("onnxruntime").load(str(path), {"device": "CPU"})
    feed = runner.make_feed(ort.inputs(), batch_size, seed=7)
    [a] = ov.run(feed)
    [b] = ort.run(feed)
    np.testing.assert_allclose(a, b, **TOLERANCE)
    assert np.abs(b).max() > 1e-3  # the comparison is not between two near-zero tensors


def test_a_trial_runs_on_openvino(tmp_path):
    built = small_cnn()
    path = tmp_path / "m.onnx"
    path.write_bytes(built.onnx_bytes)
    spec = TrialSpec(
        trial_id="ef" * 16,
        attempt=1,
        boot_id="b",
        campaign_id=1,
        device="d",
        model=built.name,
        artifact=ArtifactRef(
            sha256=hashlib.sha256(built.onnx_bytes).hexdigest(),
            size=len(built.onnx_bytes),
            format="onnx",
            uri=str(path),
        ),  # fmt: skip
        inputs=[InputSpec.of(i) for i in built.inputs],
        runtime="openvino",
        batch_size=2,
        policy=MeasurementPolicy(warmup_s=0, min_queries=20, min_s=0, max_s=2, idle_baseline_s=0),
        timeout_s=60,
    )
    result = runner.run_trial(spec)
    assert result["status"] == "ok" and result["actual_device"] == "CPU"
    assert result["runtime_version"].startswith("20") and result["import_ms"] > 0
    assert result["summary"]["n"] >= 20
    # compiled for the trial's exact shapes, as benchmark_app -shape does (a dynamic batch
    # ran ppocr_det 1.3-1.9x slower on the CPU plugin here)
    assert result["placement"]["options"]["static_shapes"] == "{'input': [2, 3, 96, 96]}"
    # compile_model's share of the load (a metric declared once: agents.contract.metrics)
    assert 0 < result["compile_ms"] < result["load_ms"]


def test_a_static_compile_still_runs_other_shapes_and_agrees(model):
    """The trial's shapes are compiled static; a feed of another batch (the last, smaller
    chunk of reference rows) runs on a batch-dynamic compile made when first needed."""
    built, path = model
    registered = {i["name"]: i["shape"] for i in built.inputs}
    trial = {name: [4, *shape[1:]] for name, shape in registered.items()}
    ov = runtimes.adapter("openvino").load(
        str(path), {"device": "CPU", "input_shapes": registered, "trial_shapes": trial}
    )
    assert [i["shape"] for i in ov.inputs()] == list(trial.values())
    agrees_with_onnxruntime_at_batches(ov, path, (4, 3))
    ov.close()


def agrees_with_onnxruntime_at_batches(loaded, path, batches) -> None:  # noqa: ANN001
    """`loaded` gives onnxruntime's outputs (within TOLERANCE) at each batch size, and they
    are not near zero."""
    ort = runtimes.adapter("onnxruntime").load(str(path), {"device": "CPU"})
    for batch in batches:
        feed = runner.make_feed(ort.inputs(), batch, seed=7)
        [a] = loaded.run(feed)
        [b] = ort.run(feed)
        np.testing.assert_allclose(a, b, **TOLERANCE)
        assert np.abs(b).max() > 1e-3
