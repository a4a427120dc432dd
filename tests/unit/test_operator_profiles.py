"""Operator profiles from the runtimes' own profilers (onnxruntime session profiling,
OpenVINO performance counters), real sessions, no mocks; the placement they correct; the
op-type table and the diff of two profiles."""

from __future__ import annotations

import numpy as np
import pytest

from agents.contract import TrialResult
from agents.contract.profile import OperatorProfile, OperatorRow, by_op_type, precision_of
from agents.runtimes import profiling
from agents.runtimes.onnxruntime import LoadedOnnxModel, OnnxRuntimeAdapter
from agents.runtimes.seam import LoadedModel, ProfileUnavailable
from orchestrator.artifacts import builtin_models
from orchestrator.store.queries import profile_diff

FEED = {"input": np.random.default_rng(1).random((8, 64), dtype=np.float32)}


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlp") / "mlp_digits.onnx"
    path.write_bytes(builtin_models.mlp().onnx_bytes)
    return str(path)


def check_rows(profile: OperatorProfile, queries: int) -> None:
    assert profile.queries == queries and profile.ops
    assert all(op.calls == 1 and op.time_us is not None and op.time_us > 0 for op in profile.ops)
    assert {op.unit for op in profile.ops} == {"CPU"} and not any(op.fallback for op in profile.ops)
    # the kernels' time is part of the wall time of the queries it was taken over
    assert 0 < profile.total_ms() <= 1.5 * profile.wall_ms


def test_onnxruntime_session_profiling_gives_every_node_its_time_and_provider(mlp_file):
    model = OnnxRuntimeAdapter().load(mlp_file, {"device": "CPU"})
    profile = model.profile(FEED, 30)
    check_rows(profile, 30)
    assert {"Gemm"} <= {op.op_type for op in profile.ops}
    assert {op.precision for op in profile.ops} == {"fp32"}
    # it travels in the result message
    assert TrialResult.model_fields["profile"].annotation == OperatorProfile | None
    assert OperatorProfile.model_validate_json(profile.model_dump_json()) == profile


def test_openvino_performance_counters_give_each_layer_its_kernel_and_precision(mlp_file):
    pytest.importorskip("openvino")
    from agents.runtimes.openvino import OpenVinoAdapter

    model = OpenVinoAdapter().load(
        mlp_file, {"device": "CPU", "precision": "fp32", "trial_shapes": {"input": [8, 64]}}
    )
    profile = model.profile(FEED, 30)
    check_rows(profile, 30)
    assert all(op.kernel for op in profile.ops)
    # asked for fp32 explicitly (no silent bf16 on CPUs that have it)
    assert "fp32" in {op.precision for op in profile.ops}
    # (the plugin's own layer types: it may fuse the whole MLP into one Subgraph)


def test_nodes_another_provider_ran_are_a_fallback_get_providers_does_not_show(mlp_file):
    """The Azure provider of the CPU build takes no node: each falls to the CPU provider.
    get_providers() lists the requested provider first, so the placement of today's
    sessions read no fallback; the profile names every node that ran elsewhere."""
    import onnxruntime

    if "AzureExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has no AzureExecutionProvider")
    providers = ["AzureExecutionProvider", "CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(mlp_file, providers=providers)
    model = LoadedOnnxModel(session, "AzureExecutionProvider")

    def profiling_session(prefix: str):  # noqa: ANN202
        options = onnxruntime.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, prefix
        return onnxruntime.InferenceSession(mlp_file, options, providers=providers)

    model.profiling_session = profiling_session
    placement = model.placement()
    assert placement.fallback is False  # the blind spot
    profile = model.profile(FEED, 10)
    assert profile.ops and all(op.fallback and op.unit == "CPU" for op in profile.ops)
    placement = profiling.with_profile(placement, profile)
    assert placement.fallback is True and placement.detail["fallback_kind"] == "full"
    assert placement.detail["fallback_ops"] == len(profile.ops)
    assert any("Gemm on CPU" in named for named in placement.detail["fallback_nodes"])


def rows(*ops: tuple) -> list[OperatorRow]:
    return [
        OperatorRow(node=n, op_type=t, calls=1, time_us=us, unit=u, fallback=f, precision=p)
        for n, t, us, u, f, p in ops
    ]


def test_a_partial_fallback_is_counted_with_its_share_of_the_time():
    profile = OperatorProfile(
        method="t", requested_unit="CUDA", queries=10, wall_ms=1.0,
        ops=rows(("conv1", "Conv", 600, "CUDA", False, "fp16"),
                 ("nms", "NonMaxSuppression", 300, "CPU", True, "fp32"),
                 ("conv2", "Conv", 100, "CUDA", False, "fp16")),
    )  # fmt: skip
    summary = profile.fallback_summary()
    assert summary["fallback_ops"] == 1 and summary["fallback_time_share"] == pytest.approx(0.3)
    assert summary["fallback_nodes"] == ["nms (NonMaxSuppression on CPU)"]
    from agents.runtimes.seam import Placement

    placement = profiling.with_profile(Placement("CUDA", "CUDA", False), profile)
    assert placement.fallback is True and placement.detail["fallback_kind"] == "partial"
    table = by_op_type(profile)
    assert [(r["op_type"], r["nodes"], r["time_ms"]) for r in table] == [
        ("Conv", 2, pytest.approx(0.7)),
        ("NonMaxSuppression", 1, pytest.approx(0.3)),
    ]
    assert sum(r["share"] for r in table) == pytest.approx(1.0)


def test_a_runtime_without_a_profiler_says_so_and_the_measurement_stands():
    class Bare(LoadedModel):
        applied: dict = {}

        def inputs(self):  # noqa: ANN202
            return []

        def run(self, feed):  # noqa: ANN001, ANN202
            return []

        def bind(self, feed):  # noqa: ANN001, ANN202
            return lambda: None

        def placement(self):  # noqa: ANN202
            raise AssertionError

        def close(self) -> None:
            pass

    env: dict = {}
    assert profiling.profile_pass(Bare(), {}, 1.0, env) is None
    assert "no operator profiler" in env["profile_unavailable"]
    with pytest.raises(ProfileUnavailable):
        Bare().profile({}, 1)


@pytest.mark.parametrize(
    "name, precision",
    [("float", "fp32"), ("float16", "fp16"), ("uint8", "int8"), ("int8", "int8"),
     ("bfloat16", "bf16"), ("f32", "fp32"), ("I8", "int8"), ("bf16", "bf16"), ("int64", None)],
)  # fmt: skip
def test_type_and_kernel_names_read_as_precisions(name, precision):
    assert precision_of(name) == precision


def stored(profile: OperatorProfile, mean_ms: float) -> dict:
    return {"op_types": by_op_type(profile), "total_ms": profile.total_ms(),
            "measured_mean_ms": mean_ms, "note": profile.note}  # fmt: skip


def test_the_diff_names_the_op_types_that_make_the_difference():
    fp32 = OperatorProfile(
        method="t", requested_unit="CPU", queries=10,
        ops=rows(("c1", "Conv", 500, "CPU", False, "fp32"), ("r", "Relu", 50, "CPU", False, "fp32")),
    )  # fmt: skip
    int8 = OperatorProfile(
        method="t", requested_unit="CPU", queries=10,
        ops=rows(("c1", "ConvInteger", 300, "CPU", False, "int8"),
                 ("q", "QuantizeLinear", 100, "CPU", False, "fp32"),
                 *[(f"d{i}", "DequantizeLinear", 200, "CPU", False, "int8") for i in range(3)]),
    )  # fmt: skip
    a, b = stored(fp32, 0.6), stored(int8, 1.1)
    first = profile_diff.diff(a, b)[0]
    assert first["op_type"] == "DequantizeLinear" and first["delta_ms"] == pytest.approx(0.6)
    words = profile_diff.explain(a, b)
    assert words.startswith("B is 0.500 ms slower per query than A")
    assert "DequantizeLinear +0.600 ms (3 nodes on CPU)" in words
    assert profile_diff.coverage(a) == pytest.approx(0.55 / 0.6)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_runner_profiles_after_the_timed_runs_when_the_policy_asks(tmp_path, runtime):
    pytest.importorskip(runtime)
    from agents import runner
    from tests.unit.test_onnxruntime_runner import TINY_POLICY, make_spec

    path = tmp_path / "mlp_digits.onnx"
    path.write_bytes(builtin_models.mlp().onnx_bytes)
    policy = TINY_POLICY.model_copy(update={"profile": True})
    result = runner.run_trial(make_spec(path, runtime=runtime, policy=policy, batch_size=4))
    message = TrialResult(**{**result, "trial_id": "0" * 32, "attempt": 1, "device": "d",
                             "boot_id": "b", "sent_at": 0})  # fmt: skip
    profile = message.profile
    assert profile is not None and profile.queries >= profiling.MIN_QUERIES
    assert result["placement"]["profiled_ops"] == len(profile.ops) > 0
    assert result["placement"]["fallback_ops"] == 0 and result["fallback"] is False
    # measured before the profile pass: the samples are the timed runs' alone
    assert len(result["samples_ns"]) == result["summary"]["n"]
    unprofiled = runner.run_trial(make_spec(path, runtime=runtime, batch_size=4))
    assert unprofiled["profile"] is None and "profiled_ops" not in unprofiled["placement"]


def test_litert_names_where_each_operator_of_a_public_model_ran_without_inventing_times():
    """BlazeFace from the mediapipe wheel (tests/public_models.py): every node inside the one
    XNNPACK partition, as its delegation says; LiteRT's Python API gives no op times."""
    pytest.importorskip("ai_edge_litert")
    from agents.runtimes.litert import LiteRtAdapter, delegation
    from tests.public_models import CORPUS, fetch

    path = fetch(next(m for m in CORPUS if m.name == "face_detection"))
    model = LiteRtAdapter().load(str(path), {"device": "CPU"})
    feed = {p["name"]: np.zeros([d or 1 for d in p["shape"]], np.float32) for p in model.inputs()}
    profile = model.profile(feed, 5)
    assert delegation(model._interpreter) == (1, True)
    assert len(profile.ops) > 100
    assert {(op.unit, op.kernel) for op in profile.ops} == {("XNNPACK", "partition 0")}
    assert all(op.time_us is None for op in profile.ops) and profile.total_ms() is None
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= {op.op_type for op in profile.ops}
    assert profile.wall_ms > 0 and not profile.fallback_summary()["fallback_ops"]
    words = profile_diff.coverage_words({"total_ms": None, "note": profile.note})
    assert words.startswith("the profiler gave no operator times") and "never estimated" in words


def test_a_profiler_that_slows_the_queries_is_said_to_and_its_times_read_as_shares():
    inflated = {"total_ms": 2.0, "measured_mean_ms": 1.0, "wall_ms": 2.5, "note": "kernels"}
    words = profile_diff.coverage_words(inflated)
    assert "(200 %)" in words and "took 2.500 ms each, 2.5x the timed ones" in words
    assert "read the shares" in words
    close = {"total_ms": 0.95, "measured_mean_ms": 1.0, "wall_ms": 1.1, "note": "kernels"}
    assert profile_diff.coverage_words(close).endswith("(95 %)")


def test_profiles_that_disagree_with_the_measured_difference_are_said_to():
    a = {"op_types": [{"op_type": "Conv", "unit": "CPU", "precision": "fp32", "nodes": 1,
                       "calls": 1, "time_ms": 1.0, "share": 1.0, "fallback_nodes": 0}],
         "total_ms": 1.0, "measured_mean_ms": 1.0}  # fmt: skip
    b = {"op_types": [{"op_type": "QLinearConv", "unit": "CPU", "precision": "int8", "nodes": 1,
                       "calls": 1, "time_ms": 1.5, "share": 1.0, "fallback_nodes": 0}],
         "total_ms": 1.5, "measured_mean_ms": 0.8}  # fmt: skip
    words = profile_diff.explain(a, b)
    assert (
        words.startswith("B is 0.200 ms faster")
        and "QLinearConv +1.500 ms (1 node on CPU)" in words
    )
    assert "the profiles' difference has the other sign" in words
    assert "QLinearConv -1.500 ms (1 node on CPU)" in profile_diff.explain(b, a)  # A has it, B not
