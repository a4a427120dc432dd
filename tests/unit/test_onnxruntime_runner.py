"""agents.runtimes.onnxruntime and agents.runner against the real onnxruntime, no mocks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents import runner, runtimes
from agents.contract import (
    ArtifactRef,
    InputSpec,
    MeasurementPolicy,
    TrialResult,
    TrialSpec,
    statistics,
)
from orchestrator.artifacts import builtin_models

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TINY_POLICY = MeasurementPolicy(warmup_s=0, min_queries=20, min_s=0, max_s=2)


@pytest.fixture(scope="module")
def mlp():
    return builtin_models.mlp()


@pytest.fixture
def model_file(tmp_path, mlp) -> Path:
    path = tmp_path / "mlp_digits.onnx"
    path.write_bytes(mlp.onnx_bytes)
    return path


def make_spec(path: Path, sha256: str | None = None, **fields) -> TrialSpec:
    data = path.read_bytes() if path.exists() else b""
    values = {
        "trial_id": "0123456789abcdef0123456789abcdef",
        "attempt": 1,
        "boot_id": "boot-1",
        "campaign_id": 1,
        "device": "dev-vm",
        "model": "mlp_digits",
        "artifact": ArtifactRef(
            sha256=sha256 or hashlib.sha256(data).hexdigest(),
            size=len(data),
            format="onnx",
            uri=str(path),
        ),
        "inputs": [InputSpec(name="input", shape=[None, 64], dtype="float32")],
        "runtime": "onnxruntime",
        "batch_size": 1,
        "policy": TINY_POLICY,
        "timeout_s": 60,
    }
    values.update(fields)
    return TrialSpec(**values)


def onnx_model(path: Path, shape: list, elem_type: str = "FLOAT") -> Path:
    """An Identity model with one input of the given shape (None -> a named dynamic dim)."""
    import onnx
    from onnx import TensorProto, helper

    dims = [f"d{i}" if d is None else d for i, d in enumerate(shape)]
    kind = getattr(TensorProto, elem_type)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", kind, dims)],
        [helper.make_tensor_value_info("y", kind, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


# --- the adapter -----------------------------------------------------------------------


def test_adapter_lookup():
    import onnxruntime

    adapter = runtimes.adapter("onnxruntime")
    assert adapter.name == "onnxruntime"
    assert adapter.available() is True
    assert adapter.version() == onnxruntime.__version__
    assert "CPU" in adapter.devices()


def test_unknown_runtime_name():
    with pytest.raises(runtimes.RuntimeUnavailable, match="unknown runtime 'mxnet'"):
        runtimes.adapter("mxnet")


def test_load_inputs_run_placement(model_file, mlp):
    model = runtimes.adapter("onnxruntime").load(str(model_file), {"device": "CPU"})
    try:
        assert model.inputs() == [
            {"name": "input", "shape": [None, 64], "dtype": "float32", "dim_names": ["N", None]}
        ]  # the batch axis is named N in the file
        assert [{**port, "dim_names": None} for port in model.inputs()] == [
            {**port, "dim_names": None} for port in mlp.inputs
        ]
        feed = {"input": np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)}
        outputs = model.run(feed)
        assert len(outputs) == 1
        assert outputs[0].shape == (3, 10)
        assert outputs[0].dtype == np.float32
        # the last layer is a softmax: each row sums to 1
        np.testing.assert_allclose(outputs[0].sum(axis=1), np.ones(3), rtol=1e-5)
        placement = model.placement().as_dict()
        assert placement["providers"] == ["CPUExecutionProvider"]
        assert placement["requested_provider"] == "CPUExecutionProvider"
        assert placement["actual_device"] == "CPU"
        assert placement["fallback"] is False
    finally:
        model.close()


def test_load_defaults_to_cpu(model_file):
    model = runtimes.adapter("onnxruntime").load(str(model_file))
    assert model.placement().actual_device == "CPU"
    model.close()


def test_load_with_an_unknown_device(model_file):
    with pytest.raises(ValueError, match="onnxruntime has no device 'NPU'"):
        runtimes.adapter("onnxruntime").load(str(model_file), {"device": "NPU"})


def test_int16_input_dtype_is_reported_as_numpy_name(tmp_path):
    # Once a BUG (a mapping in the adapter missed int16, uint16, uint32 and uint64, so
    # inputs() reported "tensor(int16)", which numpy (make_feed) cannot read): the adapter
    # and the upload validation now share one reader (agents.contract.ports).
    path = onnx_model(tmp_path / "int16.onnx", [None, 4], "INT16")
    model = runtimes.adapter("onnxruntime").load(str(path))
    assert model.inputs()[0]["dtype"] == "int16", (
        f"BUG: int16 input reported as {model.inputs()[0]['dtype']!r}"
    )


# --- make_feed -------------------------------------------------------------------------


def test_make_feed_fills_the_batch_dimension():
    feed = runner.make_feed(
        [
            {"name": "image", "shape": [None, 3, 8, 8], "dtype": "float32"},
            {"name": "token", "shape": [None, 5], "dtype": "int64"},
            {"name": "mask", "shape": [None, 5], "dtype": "bool"},
        ],
        batch_size=4,
    )
    assert feed["image"].shape == (4, 3, 8, 8)
    assert feed["image"].dtype == np.float32
    assert feed["token"].shape == (4, 5)
    assert feed["token"].dtype == np.int64
    assert feed["token"].min() >= 0 and feed["token"].max() <= 9
    assert feed["mask"].dtype == np.bool_


def test_make_feed_is_seeded():
    declared = [{"name": "x", "shape": [None, 16], "dtype": "float32"}]
    a = runner.make_feed(declared, 2)["x"]
    b = runner.make_feed(declared, 2)["x"]
    c = runner.make_feed(declared, 2, seed=1)["x"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_make_feed_rejects_a_dynamic_non_batch_dimension():
    with pytest.raises(runner.TrialError, match="dynamic dimensions"):
        runner.make_feed([{"name": "x", "shape": [None, None, 4], "dtype": "float32"}], 1)
    with pytest.raises(runner.TrialError, match="explicit input shapes"):
        runner.make_feed([{"name": "x", "shape": [1, None], "dtype": "float32"}], 1)
    registered = {"name": "x", "shape": [1, None], "dtype": "float32", "batch_axis": 1}
    assert runner.make_feed([registered], 3)["x"].shape == (1, 3)


def test_make_feed_rejects_an_unsupported_dtype():
    with pytest.raises(runner.TrialError, match="unsupported dtype"):
        runner.make_feed([{"name": "s", "shape": [None, 2], "dtype": "str"}], 1)


def test_make_feed_turns_an_unknown_onnx_type_into_a_trial_error():
    # BUG (runner.make_feed): adapters pass unknown ONNX types through unchanged
    # ("tensor(string)", "tensor(int16)"); np.dtype() then raises TypeError, not TrialError.
    try:
        runner.make_feed([{"name": "s", "shape": [None, 2], "dtype": "tensor(string)"}], 1)
    except runner.TrialError:
        pass
    except TypeError as exc:
        pytest.fail(f"BUG: unknown input type raised TypeError, not TrialError: {exc}")
    else:
        pytest.fail("BUG: an input of type tensor(string) was fed")


def test_make_feed_does_not_silently_ignore_the_batch_size():
    # BUG (runner.make_feed): a static first dimension is kept as it is, so a model with
    # input [1, 64] run at batch_size 4 is fed 1 item per run while throughput() counts 4:
    # throughput is overstated 4x. Either feed 4 items or refuse with a TrialError.
    declared = [{"name": "input", "shape": [1, 64], "dtype": "float32"}]
    try:
        feed = runner.make_feed(declared, batch_size=4)
    except runner.TrialError:
        return
    assert feed["input"].shape[0] == 4, (
        f"BUG: batch_size 4 requested, fed shape {feed['input'].shape}; throughput counts 4"
    )


# --- run_trial in process --------------------------------------------------------------


def test_run_trial_ok(model_file, mlp):
    import onnxruntime

    result = runner.run_trial(make_spec(model_file))
    assert result["status"] == "ok"
    assert result["summary"]["n"] == len(result["samples_ns"]) == 20  # min_queries, min_s 0
    assert all(s > 0 for s in result["samples_ns"])
    assert result["summary"]["min_ms"] > 0
    # Throughput is over the wall-clock measured window, so the loop itself is never faster
    # than the samples say; on this loop's overhead it is within a small factor of them.
    service = statistics.throughput(result["samples_ns"], 1)
    assert 0.3 * service < result["throughput_ips"] <= service
    assert result["peak_rss_mb"] > 0
    assert result["model_bytes"] == model_file.stat().st_size == len(mlp.onnx_bytes)
    assert result["load_ms"] > 0
    assert result["first_inference_ms"] > 0
    assert result["runtime_version"] == onnxruntime.__version__
    assert result["actual_device"] == "CPU"
    assert result["fallback"] is False
    assert result["placement"]["providers"] == ["CPUExecutionProvider"]
    assert result["wall_s"] > 0
    assert result["environment"]["pid"] == os.getpid()
    # what the runner returns is a valid TrialResult body once the agent adds its ids
    TrialResult(
        trial_id="0123456789abcdef0123456789abcdef",
        attempt=1,
        device="dev-vm",
        boot_id="b",
        sent_at=0.0,
        **result,
    )


def test_run_trial_batch_size_scales_throughput(model_file):
    result = runner.run_trial(make_spec(model_file, batch_size=8))
    samples = result["samples_ns"]
    service = len(samples) * 8 * 1e9 / sum(samples)
    assert 0.3 * service < result["throughput_ips"] <= service


def test_run_trial_accepts_a_file_uri(model_file):
    spec = make_spec(model_file)
    spec.artifact.uri = model_file.as_uri()
    assert runner.run_trial(spec)["status"] == "ok"


def test_run_trial_wrong_sha256(model_file):
    with pytest.raises(runner.TrialError, match="hash mismatch"):
        runner.run_trial(make_spec(model_file, sha256="0" * 64))


def test_run_trial_missing_file(tmp_path):
    spec = make_spec(tmp_path / "gone.onnx", sha256="1" * 64)
    with pytest.raises(runner.TrialError, match="not found"):
        runner.run_trial(spec)


def test_run_trial_unsupported_uri_scheme(model_file):
    spec = make_spec(model_file)
    spec.artifact.uri = "ftp://example.invalid/model.onnx"
    with pytest.raises(runner.TrialError, match="scheme 'ftp'"):
        runner.run_trial(spec)


def test_run_trial_unknown_runtime(model_file):
    with pytest.raises(runner.TrialError, match="unknown runtime 'mxnet'"):
        runner.run_trial(make_spec(model_file, runtime="mxnet"))


def test_run_trial_dynamic_non_batch_dimension(tmp_path):
    path = onnx_model(tmp_path / "dyn.onnx", [None, None, 4])
    registered = [InputSpec(name="x", shape=[None, None, 4], dtype="float32")]
    with pytest.raises(runner.TrialError, match="dynamic dimensions.*--input-shape"):
        runner.run_trial(make_spec(path, inputs=registered))


def test_run_trial_refuses_a_model_whose_inputs_are_not_the_registered_ones(tmp_path):
    path = onnx_model(tmp_path / "other.onnx", [None, 4])
    with pytest.raises(runner.TrialError, match="input 'x' is not among its registered inputs"):
        runner.run_trial(make_spec(path))


# --- python -m agents.runner as a real child process ----------------------------------


def run_runner(tmp_path: Path, spec: TrialSpec) -> dict:
    spec_path = tmp_path / "spec.json"
    out_path = tmp_path / "out.json"
    spec_path.write_text(spec.model_dump_json())
    env = {k: v for k, v in os.environ.items() if k != "EDGEBENCH_AGENT_PID"}
    completed = subprocess.run(
        [sys.executable, "-m", "agents.runner", str(spec_path), str(out_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(out_path.read_text())


def test_runner_subprocess_ok(tmp_path, model_file):
    outcome = run_runner(tmp_path, make_spec(model_file))
    assert outcome["status"] == "ok", outcome.get("error")
    assert outcome["summary"]["n"] == len(outcome["samples_ns"]) == 20
    assert outcome["model_bytes"] == model_file.stat().st_size
    assert outcome["environment"]["pid"] != os.getpid()


def test_runner_subprocess_corrupt_model(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    outcome = run_runner(tmp_path, make_spec(path))  # the sha256 matches the random bytes
    assert outcome["status"] == "failed"
    assert "onnxruntime could not load mlp_digits" in outcome["error"]


def test_runner_subprocess_usage():
    completed = subprocess.run(
        [sys.executable, "-m", "agents.runner"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "usage" in completed.stderr
