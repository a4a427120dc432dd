"""orchestrator.campaigns.matrix: selection, the product, skipped entries, plan errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.campaigns.matrix import (
    TRIAL_OVERHEAD_S,
    ArtifactInfo,
    DeviceInfo,
    PlanError,
    PlannedTrial,
    expand,
    select_devices,
)
from orchestrator.campaigns.spec import MAX_TRIALS, SpecError, load_spec, parse_spec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

DEVICES = [
    DeviceInfo("pi4-a", "raspberry-pi-4", ("lab", "arm"), {"onnxruntime": ["CPU"]}),
    DeviceInfo("pi4-b", "raspberry-pi-4", ("lab",), {"onnxruntime": ["CPU"]}),
    DeviceInfo("nano", "nvidia-jetson-nano", ("lab", "gpu"), {"onnxruntime": ["CPU", "CUDA"]}),
    DeviceInfo("x86", "x86_64-cpu", ("office",), {}),  # no runtime installed
]
ARTIFACTS = [
    ArtifactInfo(1, "mlp_digits", "onnx", "fp32"),
    ArtifactInfo(2, "small_cnn_96", "onnx", "fp32"),
    ArtifactInfo(3, "mlp_digits", "onnx", "int8"),
]


def spec(**fields):
    data = {"name": "t", "devices": {"tags": ["lab"]}, "models": ["mlp_digits"]}
    if "repeats" not in fields and "policy" not in fields:
        data["policy"] = {"runs": 1}  # one run per configuration unless a test says more
    data.update(fields)
    return parse_spec(data)


def plan(**fields):
    return expand(spec(**fields), DEVICES, ARTIFACTS)


# --- device selection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"names": ["nano", "pi4-b"]}, ["pi4-b", "nano"]),  # in registry order
        ({"tags": ["lab"]}, ["pi4-a", "pi4-b", "nano"]),
        ({"tags": ["lab", "gpu"]}, ["nano"]),  # every tag is required
        ({"tags": ["arm"]}, ["pi4-a"]),
        ({"classes": ["raspberry-pi-4"]}, ["pi4-a", "pi4-b"]),
        ({"classes": ["raspberry-pi-4", "nvidia-jetson-nano"]}, ["pi4-a", "pi4-b", "nano"]),
        ({"names": ["pi4-a", "nano"], "classes": ["raspberry-pi-4"]}, ["pi4-a"]),  # all criteria
        ({"tags": ["lab"], "classes": ["nvidia-jetson-nano"]}, ["nano"]),
    ],
)
def test_select_devices(selector, expected):
    chosen = select_devices(spec(devices=selector), DEVICES)
    assert [d.name for d in chosen] == expected


def test_plan_lists_the_chosen_devices():
    assert plan(devices={"classes": ["raspberry-pi-4"]}).devices == ["pi4-a", "pi4-b"]


# --- the product -----------------------------------------------------------------------


def test_product_count_and_contents():
    result = plan(
        devices={"tags": ["lab"]},  # 3 devices
        models=["mlp_digits", "small_cnn_96"],  # 2 models
        runtimes=["onnxruntime"],  # 1 runtime
        precisions=["fp32"],  # 1 precision
        batch_sizes=[1, 4, 16],  # 3 batch sizes
        repeats=2,  # 2 repeats
    )
    assert len(result.trials) == 3 * 2 * 1 * 1 * 3 * 2 == 36
    assert result.skipped == []
    keys = {
        (t.device, t.model, t.runtime, t.precision, t.batch_size, t.repeat) for t in result.trials
    }
    assert len(keys) == 36, "every trial is a distinct combination"
    assert {t.repeat for t in result.trials} == {1, 2}
    assert {t.batch_size for t in result.trials} == {1, 4, 16}
    assert {t.scenario for t in result.trials} == {"single_stream"}
    assert {t.requested_device for t in result.trials} == {"CPU"}
    ids = {(t.model, t.model_id) for t in result.trials}
    assert ids == {("mlp_digits", 1), ("small_cnn_96", 2)}


def test_product_with_two_precisions():
    # 1 device x 1 model x 2 precisions x 2 batch sizes x 3 repeats = 12
    result = plan(
        devices={"names": ["pi4-a"]},
        precisions=["fp32", "int8"],
        batch_sizes=[1, 8],
        repeats=3,
    )
    assert len(result.trials) == 12
    assert {(t.precision, t.model_id) for t in result.trials} == {("fp32", 1), ("int8", 3)}


def test_one_planned_trial_exactly():
    result = plan(
        devices={"names": ["nano"]},
        runtimes=[{"name": "onnxruntime", "device": "CUDA"}],
        batch_sizes=[4],
        policy={"warmup_s": 2, "min_queries": 10, "min_s": 1, "max_s": 40, "runs": 1},
    )
    assert result.trials == [
        PlannedTrial(
            device="nano",
            model="mlp_digits",
            model_id=1,
            runtime="onnxruntime",
            requested_device="CUDA",
            precision="fp32",
            batch_size=4,
            scenario="single_stream",
            scenario_params={},
            repeat=1,
            timeout_s=163.0,  # warmup 2 + max_s 40 + idle baseline 1 + overhead 120
        )
    ]


def test_timeout_is_warmup_plus_max_s_plus_idle_baseline_plus_overhead():
    result = plan(policy={"warmup_s": 2.5, "min_queries": 10, "min_s": 1, "max_s": 40})
    # 2.5 + 40 + 1 (default idle baseline) + 120 = 163.5
    assert TRIAL_OVERHEAD_S == 120.0
    assert {t.timeout_s for t in result.trials} == {2.5 + 40 + 1 + TRIAL_OVERHEAD_S} == {163.5}


def test_timeout_covers_a_soak_and_a_cool_down():
    result = plan(
        scenario={"kind": "soak", "minutes": 10},
        policy={
            "warmup_s": 1,
            "max_s": 30,
            "idle_baseline_s": 0,
            "cool_below_c": 60,
            "cool_timeout_s": 200,
        },
    )
    # 1 + 600 (soak) + 0 + 200 (cool-down) + 120
    assert {t.timeout_s for t in result.trials} == {921.0}
    assert {tuple(t.scenario_params.items()) for t in result.trials} == {(("minutes", 10.0),)}


def test_timeout_with_default_policy():
    # defaults warmup_s 1 + max_s 30 + idle baseline 1 + 120
    assert {t.timeout_s for t in plan().trials} == {152.0}


# --- skipped entries -------------------------------------------------------------------


def test_runtime_not_installed_on_a_device_is_skipped():
    result = plan(devices={"names": ["pi4-a", "x86"]}, batch_sizes=[1, 2])
    assert {t.device for t in result.trials} == {"pi4-a"}
    assert len(result.trials) == 2
    assert result.skipped == [
        {
            "device": "x86",
            "model": "mlp_digits",
            "runtime": "onnxruntime",
            "requested_device": "CPU",
            "precision": "fp32",
            "batch_size": b,
            "reason": "runtime onnxruntime is not installed on x86",
        }
        for b in (1, 2)
    ]


def test_missing_artifact_for_a_precision_is_skipped():
    result = plan(
        devices={"names": ["pi4-a"]},
        models=["mlp_digits", "small_cnn_96"],
        precisions=["fp32", "int8"],
    )
    # mlp fp32, mlp int8, cnn fp32 run; cnn int8 has no artifact
    assert sorted((t.model, t.precision) for t in result.trials) == [
        ("mlp_digits", "fp32"),
        ("mlp_digits", "int8"),
        ("small_cnn_96", "fp32"),
    ]
    assert [(s["model"], s["precision"], s["reason"]) for s in result.skipped] == [
        ("small_cnn_96", "int8", "no onnx int8 artifact of small_cnn_96")
    ]


def test_unsupported_runtime_is_skipped_not_rejected():
    result = plan(runtimes=["onnxruntime", "tvm"], batch_sizes=[1, 2])
    assert len(result.trials) == 3 * 2  # 3 lab devices x 2 batch sizes, onnxruntime only
    assert {t.runtime for t in result.trials} == {"onnxruntime"}
    assert len(result.skipped) == 3 * 2
    assert {s["runtime"] for s in result.skipped} == {"tvm"}
    assert {s["reason"] for s in result.skipped} == {
        f"runtime tvm is not installed on {device}" for device in ("pi4-a", "pi4-b", "nano")
    }


def test_a_runtime_the_controller_never_heard_of_is_planned_from_what_its_agent_reports():
    """Which formats a runtime loads comes from the agent: a device whose agent offers a
    new runtime reading ONNX gets its trials with no change to the controller."""
    tvm = DeviceInfo(
        "orin", "jetson-orin", ("lab",), {"tvm": ["CPU"]}, formats={"tvm": {"CPU": ["onnx"]}}
    )
    result = expand(spec(runtimes=["tvm"]), [tvm], ARTIFACTS)
    assert [(t.runtime, t.model_id) for t in result.trials] == [("tvm", 1)]  # the ONNX file


def test_the_formats_an_agent_reports_are_the_ones_planned():
    """An agent whose OpenVINO loads only its IR (it says so) gets no trial from the ONNX
    file; agents that said nothing are planned as agents of that time loaded (ONNX)."""
    ir_only = DeviceInfo(
        "pi4-a", "raspberry-pi-4", ("lab",), {"openvino": ["CPU"]},
        formats={"openvino": {"CPU": ["openvino-ir"]}},
    )  # fmt: skip
    older = DeviceInfo("pi4-b", "raspberry-pi-4", ("lab",), {"openvino": ["CPU"]})
    result = expand(spec(runtimes=["openvino"]), [ir_only, older], ARTIFACTS)
    assert [(t.device, t.model_id) for t in result.trials] == [("pi4-b", 1)]  # the ONNX file
    assert [s["reason"] for s in result.skipped] == ["no openvino-ir fp32 artifact of mlp_digits"]


def test_input_size_without_that_variant_is_skipped_naming_the_built_sizes():
    result = plan(
        devices={"names": ["pi4-a"]},
        models=["small_cnn_96", {"name": "mlp_digits", "input_size": 8}],
    )
    assert [t.model for t in result.trials] == ["small_cnn_96"]
    assert [(s["model"], s["reason"]) for s in result.skipped] == [
        ("mlp_digits", "mlp_digits has no input size 8 (built: none)")
    ]


VARIANTS = [
    ArtifactInfo(20, "mobilenet_v2_96", "onnx", "fp32", "mobilenet_v2", 96),
    ArtifactInfo(21, "mobilenet_v2_224", "onnx", "fp32", "mobilenet_v2", 224),
    ArtifactInfo(22, "mobilenet_v2_224", "tflite", "int8", "mobilenet_v2", 224),
    ArtifactInfo(23, "digits_cnn", "tflite", "fp32", "digits_cnn", 8),
]


@pytest.mark.parametrize(
    ("entry", "model", "reason"),
    [
        ("mobilenet_v2", "mobilenet_v2_224", None),  # a family: its largest input size
        ({"name": "mobilenet_v2", "input_size": 96}, "mobilenet_v2_96", None),
        ("mobilenet_v2_96", "mobilenet_v2_96", None),  # a variant by its own name
        ({"name": "digits_cnn", "input_size": 8}, "digits_cnn", None),
        (
            {"name": "mobilenet_v2", "input_size": 160},
            "mobilenet_v2",
            "mobilenet_v2 has no input size 160 (built: 96, 224)",
        ),
    ],
)
def test_spec_entries_resolve_to_input_size_variants(entry, model, reason):
    from orchestrator.campaigns.matrix import resolve_variant

    [choice] = spec(models=[entry]).model_choices()
    assert resolve_variant(choice, VARIANTS) == (model, reason)


def test_litert_runs_tflite_artifacts_and_each_runtime_gets_its_format():
    devices = [
        DeviceInfo("pi5", "raspberry-pi-5", ("lab",), {"litert": ["CPU"], "onnxruntime": ["CPU"]})
    ]
    result = expand(
        spec(
            models=["mobilenet_v2"], runtimes=["litert", "onnxruntime"], precisions=["fp32", "int8"]
        ),
        devices,
        VARIANTS,
    )
    assert sorted((t.runtime, t.precision, t.model_id) for t in result.trials) == [
        ("litert", "int8", 22),
        ("onnxruntime", "fp32", 21),
    ]
    assert sorted(s["reason"] for s in result.skipped) == [
        "no onnx int8 artifact of mobilenet_v2_224",
        "no tflite fp32 artifact of mobilenet_v2_224",
    ]


def test_requested_device_not_offered_is_skipped():
    result = plan(runtimes=[{"name": "onnxruntime", "device": "CUDA"}])
    assert [t.device for t in result.trials] == ["nano"]
    assert {s["device"]: s["reason"] for s in result.skipped} == {
        "pi4-a": "onnxruntime on pi4-a offers no CUDA (offers: CPU)",
        "pi4-b": "onnxruntime on pi4-b offers no CUDA (offers: CPU)",
    }


def test_design_example_plans_with_skips():
    artifacts = ARTIFACTS + [ArtifactInfo(7, "mobilenet_v2", "onnx", "fp32")]
    artifacts.append(ArtifactInfo(8, "digits_cnn", "onnx", "fp32"))
    design_example = (FIXTURES / "campaigns" / "design-example.yaml").read_text()
    result = expand(load_spec(design_example), DEVICES, artifacts)
    # only mobilenet_v2 / onnxruntime / fp32 runs: 3 lab devices x 2 batch sizes
    assert len(result.trials) == 6
    assert {(t.model, t.runtime, t.precision) for t in result.trials} == {
        ("mobilenet_v2", "onnxruntime", "fp32")
    }
    # 3 devices x 2 models x 3 runtimes x 2 precisions x 2 batch sizes, minus the 6 trials
    assert len(result.skipped) == 3 * 2 * 3 * 2 * 2 - 6
    reasons = {s["reason"] for s in result.skipped}
    assert "runtime litert is not installed on pi4-a" in reasons
    assert "runtime openvino is not installed on pi4-a" in reasons
    assert "no onnx int8 artifact of mobilenet_v2" in reasons
    assert "digits_cnn has no input size 8 (built: none)" in reasons


# --- plan errors -----------------------------------------------------------------------


def test_no_matching_device():
    with pytest.raises(PlanError, match="no registered device matches") as caught:
        plan(devices={"tags": ["nowhere"]})
    assert "pi4-a" in str(caught.value), "the error lists the devices that exist"


def test_no_device_registered_at_all():
    with pytest.raises(PlanError, match="none registered"):
        expand(spec(), [], ARTIFACTS)


def test_unknown_device_name():
    with pytest.raises(PlanError, match=r"devices\.names: unknown device\(s\): ghost"):
        plan(devices={"names": ["pi4-a", "ghost"]})


def test_unknown_model():
    with pytest.raises(PlanError) as caught:
        plan(models=["mlp_digits", "resnet50"])
    message = str(caught.value)
    assert "unknown model(s): resnet50" in message
    assert "mlp_digits, small_cnn_96" in message, "the error lists the available models"


def test_unknown_model_with_an_empty_store_says_how_to_build():
    with pytest.raises(PlanError, match="run edgebench models build"):
        expand(spec(), DEVICES, [])


def test_no_runnable_trial():
    with pytest.raises(PlanError) as caught:
        plan(runtimes=["tvm"])
    message = str(caught.value)
    assert "no runnable trial" in message
    assert "runtime tvm is not installed on pi4-a" in message


def test_no_runnable_trial_on_a_device_without_runtimes():
    with pytest.raises(PlanError, match="runtime onnxruntime is not installed on x86"):
        plan(devices={"names": ["x86"]})


def test_exactly_max_trials_is_allowed():
    # 1 device x 1 model x 100 batch sizes x 100 repeats = 10_000 = MAX_TRIALS
    assert MAX_TRIALS == 10_000
    result = plan(devices={"names": ["pi4-a"]}, batch_sizes=list(range(1, 101)), repeats=100)
    assert len(result.trials) == MAX_TRIALS


def test_more_than_max_trials_is_rejected():
    # 101 batch sizes x 100 repeats = 10_100
    with pytest.raises(PlanError, match="more than 10000 trials"):
        plan(devices={"names": ["pi4-a"]}, batch_sizes=list(range(1, 102)), repeats=100)


def test_openvino_runs_the_onnx_artifact_until_an_ir_exists():
    from orchestrator.campaigns.matrix import ArtifactInfo, DeviceInfo
    from orchestrator.campaigns.spec import parse_spec

    device = DeviceInfo(
        "x86", "x86_64-cpu", (), {"onnxruntime": ["CPU"], "openvino": ["CPU", "AUTO"]}
    )
    onnx = ArtifactInfo(1, "m", "onnx", "fp32")
    ir = ArtifactInfo(2, "m", "openvino-ir", "fp32")
    spec = parse_spec(
        {"name": "c", "devices": {"names": ["x86"]}, "models": ["m"], "policy": {"runs": 1},
         "runtimes": ["onnxruntime", "openvino", {"name": "openvino", "device": "GPU"}]}
    )  # fmt: skip
    planned = expand(spec, [device], [onnx])
    assert [(t.runtime, t.requested_device, t.model_id) for t in planned.trials] == [
        ("onnxruntime", "CPU", 1),
        ("openvino", "CPU", 1),
    ]
    assert planned.skipped[0]["reason"] == "openvino on x86 offers no GPU (offers: CPU, AUTO)"
    with_ir = expand(spec, [device], [onnx, ir])
    assert [t.model_id for t in with_ir.trials if t.runtime == "openvino"] == [2]


# --- capabilities: precisions per runtime device, Edge TPU models ------------------------

CORAL = DeviceInfo(
    "coral-box",
    "x86_64-cpu",
    ("lab",),
    {"litert": ["CPU", "EdgeTPU"]},
    {"litert": {"CPU": ["fp32", "fp16", "int8"], "EdgeTPU": ["int8"]}},
)


def test_a_precision_the_runtime_device_does_not_run_is_skipped_with_what_it_runs():
    artifacts = [*VARIANTS, ArtifactInfo(30, "digits_cnn", "tflite", "int8", "digits_cnn", 8)]
    result = expand(
        spec(
            models=["digits_cnn"],
            runtimes=[{"name": "litert", "device": "EdgeTPU"}],
            precisions=["fp32", "int8"],
        ),
        [CORAL, *DEVICES],
        artifacts + [ArtifactInfo(31, "digits_cnn", "tflite-edgetpu", "int8", "digits_cnn", 8)],
    )
    assert [(t.device, t.precision, t.model_id) for t in result.trials] == [
        ("coral-box", "int8", 31)
    ]
    assert {s["reason"] for s in result.skipped if s["device"] == "coral-box"} == {
        "litert EdgeTPU on coral-box runs no fp32 (runs: int8)"
    }


def test_the_edge_tpu_needs_a_compiled_model_and_the_plan_says_so():
    artifacts = [ArtifactInfo(30, "digits_cnn", "tflite", "int8", "digits_cnn", 8)]
    with pytest.raises(PlanError) as caught:
        expand(
            spec(
                devices={"names": ["coral-box"]},
                models=["digits_cnn"],
                runtimes=[{"name": "litert", "device": "EdgeTPU"}],
                precisions=["int8"],
            ),
            [CORAL],
            artifacts,
        )
    assert "litert on EdgeTPU needs an Edge-TPU-compiled model: no int8 one of digits_cnn" in str(
        caught.value
    )


def test_devices_that_did_not_report_precisions_are_not_filtered():
    result = plan(precisions=["int8"])  # DEVICES carry no precisions: the artifact decides
    assert {t.model for t in result.trials} == {"mlp_digits"}


# --- by class: any device of the class, spread ---------------------------------------------

PIS = [
    DeviceInfo("pi4-a", "raspberry-pi-4", ("lab",), {"onnxruntime": ["CPU"]}),
    DeviceInfo("pi4-b", "raspberry-pi-4", ("lab",), {"onnxruntime": ["CPU"]}),
    DeviceInfo("pi4-c", "raspberry-pi-4", ("lab",), {"onnxruntime": ["CPU"]}, online=False),
    DeviceInfo("nano", "nvidia-jetson-nano", ("lab",), {"onnxruntime": ["CPU"]}),
]


def test_a_class_runs_each_trial_once_spread_over_its_online_devices():
    result = expand(
        spec(devices={"classes": ["raspberry-pi-4"]}, batch_sizes=[1, 2, 4, 8], repeats=2),
        PIS,
        ARTIFACTS,
    )
    assert len(result.trials) == 4 * 2  # once per combination and run, not per device
    per_device = {d: sum(t.device == d for t in result.trials) for d in ("pi4-a", "pi4-b", "pi4-c")}
    assert per_device == {"pi4-a": 4, "pi4-b": 4, "pi4-c": 0}  # the offline one waits out
    # Both runs of a configuration are on one device: they are compared with each other.
    runs_on = {}
    for t in result.trials:
        runs_on.setdefault(t.batch_size, set()).add(t.device)
    assert all(len(devices) == 1 for devices in runs_on.values())


def test_a_class_with_only_offline_devices_still_gets_its_trials():
    offline = [
        DeviceInfo("pi4-c", "raspberry-pi-4", ("lab",), {"onnxruntime": ["CPU"]}, online=False)
    ]
    result = expand(spec(devices={"classes": ["raspberry-pi-4"]}), offline, ARTIFACTS)
    assert [t.device for t in result.trials] == ["pi4-c"]


def test_a_combination_no_device_of_the_class_runs_is_one_skip_with_every_reason():
    result = expand(
        spec(
            devices={"classes": ["raspberry-pi-4", "nvidia-jetson-nano"]},
            runtimes=["onnxruntime", "openvino"],
        ),
        PIS,
        ARTIFACTS,
    )
    assert sorted(t.device for t in result.trials) == ["nano", "pi4-a"]
    assert sorted((s["device"], s["reason"]) for s in result.skipped) == [
        ("any nvidia-jetson-nano", "runtime openvino is not installed on nano"),
        (
            "any raspberry-pi-4",
            "runtime openvino is not installed on pi4-a; runtime openvino is not installed on pi4-b;"
            " runtime openvino is not installed on pi4-c",
        ),
    ]


# --- runs --------------------------------------------------------------------------------


def test_a_configuration_is_measured_five_times_by_default():
    result = expand(parse_spec({"name": "t", "devices": {"names": ["pi4-a"]}, "models": ["mlp_digits"]}), DEVICES, ARTIFACTS)  # fmt: skip
    assert [t.repeat for t in result.trials] == [1, 2, 3, 4, 5]


def test_runs_are_interleaved_across_configurations():
    """A B C A B C: drift during the campaign falls on every configuration alike."""
    result = plan(devices={"names": ["pi4-a"]}, batch_sizes=[1, 4, 16], policy={"runs": 3})
    order = [(t.repeat, t.batch_size) for t in result.trials]
    assert order == [(r, b) for r in (1, 2, 3) for b in (1, 4, 16)]


def test_repeats_is_the_older_name_of_policy_runs():
    assert len(plan(devices={"names": ["pi4-a"]}, repeats=3).trials) == 3
    assert len(plan(devices={"names": ["pi4-a"]}, repeats=3, policy={"runs": 3}).trials) == 3
    with pytest.raises(SpecError, match="repeats .3. and policy.runs .2. disagree"):
        spec(repeats=3, policy={"runs": 2})


def test_runs_stay_on_the_controller_and_are_not_sent_to_agents():
    policy = spec(policy={"runs": 4, "min_queries": 7}).policy
    sent = policy.measurement().model_dump()
    assert "runs" not in sent and sent["min_queries"] == 7


def test_a_fixed_batch_and_a_runtime_that_refused_the_model_are_skips_with_reasons():
    devices = [
        DeviceInfo("pc", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"], "openvino": ["CPU"]})
    ]
    artifacts = [
        ArtifactInfo(1, "face", "onnx", "fp32", fixed_batch=(1, 128, 128, 3)),
        ArtifactInfo(
            2, "vad", "onnx", "fp32", refused_by=(("openvino", "OpenVINO could not convert it"),)
        ),
        ArtifactInfo(3, "vad", "onnx", "int8", refused_by=(("openvino:int8", "no QDQ here"),)),
    ]
    planned = expand(
        spec(
            models=["face", "vad"],
            runtimes=["onnxruntime", "openvino"],
            precisions=["fp32", "int8"],
            batch_sizes=[1, 4],
        ),
        devices,
        artifacts,
    )
    ran = {(t.model, t.runtime, t.precision, t.batch_size) for t in planned.trials}
    assert ran == {
        ("face", "onnxruntime", "fp32", 1),
        ("face", "openvino", "fp32", 1),
        ("vad", "onnxruntime", "fp32", 1),
        ("vad", "onnxruntime", "fp32", 4),
        ("vad", "onnxruntime", "int8", 1),
        ("vad", "onnxruntime", "int8", 4),
    }
    reasons = {
        (s["model"], s["runtime"], s["precision"], s["batch_size"]): s["reason"]
        for s in planned.skipped
    }
    assert (
        "has a fixed batch (input shape [1, 128, 128, 3]): batch_size 4"
        in reasons[("face", "onnxruntime", "fp32", 4)]
    )
    assert reasons[("vad", "openvino", "fp32", 1)] == (
        "openvino cannot run vad: OpenVINO could not convert it"
    )
    assert reasons[("vad", "openvino", "int8", 4)] == "openvino cannot run vad int8: no QDQ here"


def test_an_input_shape_sweep_is_a_configuration_axis_checked_against_the_open_axes():
    devices = [DeviceInfo("pc", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"]})]
    det = ("x", (None, 3, 320, 320), 0, (2, 3))  # registered at 320; height and width open
    artifacts = [ArtifactInfo(1, "det", "onnx", "fp32", inputs=(det,))]
    sweep = {"x": [[1, 3, 320, 320], [1, 3, 640, 480], [1, 4, 320, 320]]}
    planned = expand(
        spec(
            models=[{"name": "det", "shapes": sweep}], runtimes=["onnxruntime"], batch_sizes=[1, 2]
        ),
        devices,
        artifacts,
    )
    assert sorted((t.batch_size, t.input_shapes["x"][2]) for t in planned.trials) == [
        (1, 320), (1, 640), (2, 320), (2, 640),
    ]  # fmt: skip
    [reason] = {s["reason"] for s in planned.skipped}
    assert reason == (
        "det (onnx) cannot take x=[1, 4, 320, 320]: axis 1 is fixed "
        "(registered [None, 3, 320, 320], open axes [2, 3])"
    )
    typo = expand(
        spec(models=[{"name": "det", "shapes": {"image": [[1, 3, 8, 8]]}}, "det"]),
        [DeviceInfo("pc", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"]})],
        artifacts,
    )
    assert typo.skipped[0]["reason"] == "det (onnx) has no input 'image' (inputs: x)"


def test_a_sweep_spec_is_validated():
    with pytest.raises(SpecError, match="models.0.shapes.x.0.1"):
        spec(models=[{"name": "det", "shapes": {"x": [[1, 0, 8]]}}])
    with pytest.raises(SpecError, match="models.0.shapes.x"):
        spec(models=[{"name": "det", "shapes": {"x": []}}])
    two = spec(models=[{"name": "m", "shapes": {"a": [[1, 2], [1, 3]], "b": [[4], [5]]}}])
    assert len(two.model_choices()[0].shape_sets()) == 4


def test_a_runtime_without_a_file_says_why_the_file_was_not_made_and_a_converted_batch_why():
    devices = [DeviceInfo("pc", "x86_64-cpu", ("lab",), {"litert": ["CPU"]})]
    why = "no TFLite variant: onnx2tf could not convert it (at ONNX node Add_4: ValueError: x)"
    converted = "onnx2tf converted it at the registered shapes, batch 1: it needs them static"
    artifacts = [
        ArtifactInfo(1, "bert", "onnx", "fp32", refused_by=(("litert", why),)),
        ArtifactInfo(2, "det", "onnx", "fp32", refused_by=(("litert:int8", "float inputs only"),)),
        ArtifactInfo(3, "det", "tflite", "fp32", fixed_batch=(1, 3, 32, 32), fixed_by=converted),
    ]
    planned = expand(
        spec(models=["bert", "det"], runtimes=["litert"], precisions=["fp32", "int8"],
             batch_sizes=[1, 2]),
        devices,
        artifacts,
    )  # fmt: skip
    assert {(t.model, t.precision, t.batch_size) for t in planned.trials} == {("det", "fp32", 1)}
    reasons = {(s["model"], s["precision"], s["batch_size"]): s["reason"] for s in planned.skipped}
    assert reasons[("bert", "fp32", 1)] == f"litert cannot run bert: {why}"
    assert reasons[("det", "int8", 1)] == "litert cannot run det int8: float inputs only"
    assert reasons[("det", "fp32", 2)].endswith(f"batch_size 2 cannot run ({converted})")


def test_an_mlperf_scenario_skips_a_device_whose_agent_reports_no_loadgen():
    devices = [
        DeviceInfo("with", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"]}, has_loadgen=True),
        DeviceInfo("without", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"]}, has_loadgen=False),
        DeviceInfo("older", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"]}),  # did not say
    ]
    artifacts = [ArtifactInfo(1, "mlp_digits", "onnx", "fp32")]
    planned = expand(spec(scenario={"kind": "mlperf_offline"}), devices, artifacts)
    assert sorted(t.device for t in planned.trials) == ["older", "with"]
    assert planned.skipped[0]["reason"] == (
        "mlperf_offline needs MLPerf LoadGen on without: pip install 'edgebench[mlperf]' there"
    )
