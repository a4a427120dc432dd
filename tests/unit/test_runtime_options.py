"""Runtime options from the campaign spec to the adapters, and what each trial reports:
threads, graph optimization, performance hint, and cold start without and with the
runtime's own cache."""

from __future__ import annotations

import pytest

from agents import runner, runtimes
from agents.contract import RuntimeOptions
from orchestrator.artifacts.builtin_models import small_cnn
from orchestrator.campaigns.matrix import ArtifactInfo, DeviceInfo, expand
from orchestrator.campaigns.spec import SpecError, parse_spec
from tests.unit.test_onnxruntime_runner import make_spec


@pytest.fixture
def cnn_file(tmp_path):
    path = tmp_path / "cnn.onnx"
    path.write_bytes(small_cnn().onnx_bytes)
    return path


def cnn_spec(path, runtime, **options):
    from agents.contract import InputSpec

    return make_spec(
        path,
        model="small_cnn_96",
        inputs=[InputSpec(name="input", shape=[None, 3, 96, 96], dtype="float32")],
        runtime=runtime,
        runtime_options=RuntimeOptions(**options),
    )


def test_spec_takes_runtime_options_and_names_an_unknown_one():
    spec = parse_spec(
        {
            "name": "t",
            "devices": {"tags": ["lab"]},
            "models": ["m"],
            "runtimes": [{"name": "openvino", "options": {"threads": 2, "cache": True}}],
        }
    )
    assert spec.runtime_choices()[0].options == RuntimeOptions(threads=2, cache=True)
    with pytest.raises(SpecError, match="warp_speed"):
        parse_spec(
            {
                "name": "t",
                "devices": {"tags": ["lab"]},
                "models": ["m"],
                "runtimes": [{"name": "openvino", "options": {"warp_speed": 9}}],
            }
        )
    with pytest.raises(SpecError, match="graph_optimization"):
        parse_spec(
            {
                "name": "t",
                "devices": {"tags": ["lab"]},
                "models": ["m"],
                "runtimes": [{"name": "onnxruntime", "options": {"graph_optimization": "max"}}],
            }
        )


def test_openvino_cache_gives_a_second_cold_start_from_the_cache(cnn_file):
    result = runner.run_trial(cnn_spec(cnn_file, "openvino", cache=True, threads=1))
    assert result["load_ms"] > 0 and result["load_cached_ms"] > 0
    placement = result["placement"]
    assert placement["runtime_cache"] is True
    assert placement["threads"] == "1" and placement["options"]["INFERENCE_NUM_THREADS"] == "1"
    assert "runtime_cache" not in result["environment"]


def test_a_runtime_without_a_cache_says_so_and_loads_once(cnn_file):
    result = runner.run_trial(cnn_spec(cnn_file, "onnxruntime", cache=True))
    assert result["load_cached_ms"] is None
    assert "keeps no model cache" in result["environment"]["runtime_cache"]


def test_onnxruntime_threads_and_graph_optimization_are_applied_and_reported(cnn_file):
    result = runner.run_trial(
        cnn_spec(
            cnn_file, "onnxruntime", threads=1, inter_op_threads=1, graph_optimization="disable"
        )
    )
    assert result["placement"]["options"] == {
        "intra_op_threads": 1,
        "inter_op_threads": 1,
        "graph_optimization": "disable",
    }


def test_openvino_throughput_hint_is_passed_on(cnn_file):
    result = runner.run_trial(cnn_spec(cnn_file, "openvino", performance_hint="throughput"))
    assert result["placement"]["options"]["PERFORMANCE_HINT"] == "THROUGHPUT"


def test_each_runtime_declares_the_options_it_applies_and_its_agent_reports_them():
    reported = {r["name"]: r["options"] for r in runtimes.inventory()}
    assert reported["onnxruntime"] == [
        "cache", "graph_optimization", "inter_op_threads", "threads", "trt_fp16",
    ]  # fmt: skip
    assert reported["openvino"] == ["cache", "num_streams", "performance_hint", "threads"]
    for name, options in reported.items():
        assert "cache" in options, name  # the runner's: a runtime without a cache loads once
        assert set(options) <= set(RuntimeOptions.model_fields), name


def test_a_plan_refuses_an_option_the_runtime_would_ignore_naming_it():
    """The option is named with what the runtime takes, from its agent's registration; an
    agent that did not say is planned, and its runner refuses the option at load."""
    said = DeviceInfo(
        "a", "x86_64-cpu", ("lab",), {"openvino": ["CPU"]},
        options={"openvino": ["cache", "num_streams", "performance_hint", "threads"]},
    )  # fmt: skip
    older = DeviceInfo("b", "x86_64-cpu", ("lab",), {"openvino": ["CPU"]})
    spec = parse_spec(
        {
            "name": "t", "devices": {"tags": ["lab"]}, "models": ["m"], "policy": {"runs": 1},
            "runtimes": [{"name": "openvino", "options": {"trt_fp16": True, "threads": 2}}],
        }
    )  # fmt: skip
    plan = expand(spec, [said, older], [ArtifactInfo(1, "m", "onnx", "fp32")])
    assert [t.device for t in plan.trials] == ["b"]
    assert [s["reason"] for s in plan.skipped] == [
        "openvino does not take runtime option trt_fp16 "
        "(it takes: cache, num_streams, performance_hint, threads)"
    ]


def test_the_runner_refuses_an_option_its_runtime_does_not_take(cnn_file):
    with pytest.raises(runner.TrialError, match="openvino does not take runtime option "):
        runner.run_trial(cnn_spec(cnn_file, "openvino", graph_optimization="all"))
