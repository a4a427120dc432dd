"""orchestrator.campaigns.spec: the campaign YAML, validated; errors name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator.campaigns.spec import (
    CampaignSpec,
    ModelChoice,
    RuntimeChoice,
    SpecError,
    load_spec,
    parse_spec,
)

# The campaign example from DESIGN.md, copied verbatim (comments included).
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DESIGN_EXAMPLE = (FIXTURES / "campaigns" / "design-example.yaml").read_text()

MINIMAL = "name: x\ndevices: {tags: [lab]}\nmodels: [mlp_digits]\n"


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(text)
    return str(caught.value)


def test_design_example_is_valid():
    spec = load_spec(DESIGN_EXAMPLE)
    assert isinstance(spec, CampaignSpec)
    assert spec.name == "pi-vs-nano"
    assert spec.devices.tags == ["lab"]
    assert spec.devices.names is None
    assert spec.devices.classes is None
    assert spec.model_choices() == [
        ModelChoice(name="mobilenet_v2"),
        ModelChoice(name="digits_cnn", input_size=8),
    ]
    # runtimes other than onnxruntime are accepted here; planning skips them later
    assert spec.runtime_choices() == [
        RuntimeChoice(name="onnxruntime", device="CPU"),
        RuntimeChoice(name="litert", device="CPU"),
        RuntimeChoice(name="openvino", device="CPU"),
    ]
    assert spec.precisions == ["fp32", "int8"]
    assert spec.batch_sizes == [1, 10]
    assert spec.scenario.kind == "single_stream"
    assert spec.policy.warmup_s == 1
    assert spec.policy.min_queries == 200
    assert spec.policy.min_s == 3
    assert spec.policy.max_s == 30
    assert spec.runs == 1 and spec.repeats == 1  # the older name of policy.runs


def test_defaults_of_a_minimal_spec():
    spec = load_spec(MINIMAL)
    assert spec.runtime_choices() == [RuntimeChoice(name="onnxruntime", device="CPU")]
    assert spec.precisions == ["fp32"]
    assert spec.batch_sizes == [1]
    assert spec.scenario.kind == "single_stream"
    assert (spec.policy.warmup_s, spec.policy.min_queries, spec.policy.min_s) == (1.0, 200, 3.0)
    assert (spec.policy.max_s, spec.policy.max_queries) == (30.0, 100_000)
    assert spec.runs == 5 and spec.repeats is None and spec.policy.runs is None


def test_runtime_with_a_device():
    spec = load_spec(MINIMAL + "runtimes: [{name: openvino, device: GPU}, onnxruntime]\n")
    assert spec.runtime_choices() == [
        RuntimeChoice(name="openvino", device="GPU"),
        RuntimeChoice(name="onnxruntime", device="CPU"),
    ]


@pytest.mark.parametrize(
    "devices",
    [
        "{names: [pi4-a, nano]}",
        "{classes: [raspberry-pi-4]}",
        "{tags: [lab], classes: [x86_64-cpu]}",
    ],
)
def test_each_device_criterion_is_enough(devices):
    spec = load_spec(f"name: x\ndevices: {devices}\nmodels: [m]\n")
    assert spec.devices.names or spec.devices.tags or spec.devices.classes


def test_parse_spec_takes_a_dict():
    spec = parse_spec({"name": "x", "devices": {"names": ["pi4-a"]}, "models": ["m"]})
    assert spec.devices.names == ["pi4-a"]


# --- errors ----------------------------------------------------------------------------


def test_unknown_top_level_key_is_named():
    message = spec_error(MINIMAL + "colour: red\n")
    assert "colour" in message
    assert "unknown key" in message


def test_unknown_nested_key_is_named_with_its_path():
    message = spec_error(MINIMAL + "policy: {foo: 1}\n")
    assert "policy.foo" in message
    assert "unknown key 'foo'" in message


def test_unknown_key_in_device_selector():
    assert "devices.tag" in spec_error("name: x\ndevices: {tag: [lab]}\nmodels: [m]\n")


def test_unknown_key_in_a_model_entry():
    message = spec_error("name: x\ndevices: {tags: [lab]}\nmodels: [{name: m, foo: 1}]\n")
    assert "models.0.foo" in message
    assert "unknown key 'foo'" in message


def test_unknown_key_in_a_runtime_entry():
    message = spec_error(MINIMAL + "runtimes: [{name: onnxruntime, devcie: CPU}]\n")
    assert "runtimes.0.devcie" in message


@pytest.mark.parametrize(
    ("extra", "key"),
    [("Colour: red\n", "Colour"), ("policy: {Foo: 1}\n", "Foo"), ("str: 1\n", "str")],
)
def test_unknown_key_is_named_whatever_its_spelling(extra, key):
    # BUG (spec._describe): location parts that start with an upper-case letter, or are
    # "str"/"int"/"float", are dropped as pydantic union-branch labels, including the
    # user's own unknown key. "Colour" gives "spec: unknown key"; "policy: {Foo: 1}"
    # gives "policy: unknown key 'policy'", naming the wrong key.
    message = spec_error(MINIMAL + extra)
    assert f"unknown key {key!r}" in message, (
        f"BUG: unknown key {key!r} is not named in the error: {message!r}"
    )


def test_wrong_type_names_the_item():
    message = spec_error(MINIMAL + 'batch_sizes: ["a"]\n')
    assert "batch_sizes.0" in message
    assert "integer" in message


def test_batch_size_zero_is_rejected():
    message = spec_error(MINIMAL + "batch_sizes: [1, 0]\n")
    assert "batch_sizes.1" in message
    assert "greater than or equal to 1" in message


def test_empty_models_list_is_rejected():
    message = spec_error("name: x\ndevices: {tags: [lab]}\nmodels: []\n")
    assert message.startswith("models:")
    assert "at least 1" in message


def test_max_s_below_min_s_is_rejected():
    message = spec_error(MINIMAL + "policy: {min_s: 5, max_s: 2}\n")
    assert "policy.max_s" in message
    assert "must be at least min_s" in message


def test_max_queries_below_min_queries_is_rejected():
    message = spec_error(MINIMAL + "policy: {min_queries: 10, max_queries: 5}\n")
    assert "policy.max_queries" in message


@pytest.mark.parametrize(
    "scenario, params",
    [
        ("{kind: offline}", {}),
        ("{kind: paced, gap_s: 0.5}", {"gap_s": 0.5}),
        ("{kind: poisson, rate: 20}", {"rate": 20.0, "seed": 0}),
        ("{kind: poisson, rate: 20, seed: 7}", {"rate": 20.0, "seed": 7}),
        ("{kind: soak, minutes: 2}", {"minutes": 2.0}),
    ],
)
def test_every_scenario_kind_with_its_parameter(scenario, params):
    spec = load_spec(MINIMAL + f"scenario: {scenario}\n")
    assert spec.scenario.params() == params


@pytest.mark.parametrize(
    "scenario, expected",
    [
        ("{kind: paced}", "scenario paced needs gap_s"),
        ("{kind: poisson}", "scenario poisson needs rate"),
        ("{kind: soak}", "scenario soak needs minutes"),
        ("{kind: single_stream, gap_s: 1}", "gap_s applies to scenario paced, not single_stream"),
        (
            "{kind: paced, gap_s: 1, rate: 3}",
            "rate applies to scenario poisson or mlperf_server, not paced",
        ),
        ("{kind: paced, gap_s: 0}", "scenario.gap_s"),
    ],
)
def test_scenario_parameters_must_fit_the_kind(scenario, expected):
    assert expected in spec_error(MINIMAL + f"scenario: {scenario}\n")


def test_soak_duration_sets_the_measured_time():
    spec = load_spec(MINIMAL + "scenario: {kind: soak, minutes: 2}\n")
    assert spec.scenario.duration_s(30) == 120.0
    assert load_spec(MINIMAL).scenario.duration_s(30) == 30


def test_unknown_scenario_kind_is_rejected():
    assert "scenario.kind" in spec_error(MINIMAL + "scenario: {kind: bogus}\n")


@pytest.mark.parametrize("devices", ["{}", "{names: []}", "{tags: [], classes: []}"])
def test_device_selector_without_a_criterion(devices):
    message = spec_error(f"name: x\ndevices: {devices}\nmodels: [m]\n")
    assert message.startswith("devices:")
    assert "at least one of names, tags or classes" in message


def test_unknown_precision_is_rejected():
    assert "precisions.0" in spec_error(MINIMAL + "precisions: [int4]\n")


def test_repeats_zero_is_rejected():
    assert "repeats" in spec_error(MINIMAL + "repeats: 0\n")


def test_missing_required_field_is_named():
    message = spec_error("devices: {tags: [lab]}\nmodels: [m]\n")
    assert "name" in message
    assert "required" in message


def test_every_bad_field_is_reported():
    message = spec_error(MINIMAL + "batch_sizes: [0]\nrepeats: 0\ncolour: red\n")
    assert "batch_sizes.0" in message
    assert "repeats" in message
    assert "colour" in message


@pytest.mark.parametrize(
    "text", ["- a\n- b\n", "just a string\n", "42\n", "", "# only a comment\n"]
)
def test_non_mapping_yaml_is_rejected(text):
    assert "must be a YAML mapping" in spec_error(text)


def test_parse_spec_rejects_a_non_dict():
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        parse_spec(["name", "x"])


def test_invalid_yaml_is_rejected():
    message = spec_error("name: [unclosed\ndevices: {tags: [lab]}\n")
    assert message.startswith("spec: not valid YAML")


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("{kind: multi_stream}", "scenario multi_stream needs interval_s"),
        ("{kind: mlperf_server}", "scenario mlperf_server needs rate"),
        (
            "{kind: single_stream, samples_per_query: 4}",
            "samples_per_query applies to scenario multi_stream or mlperf_multi_stream, not "
            "single_stream",
        ),
    ],
)
def test_multi_stream_and_mlperf_scenarios_take_their_own_parameters(scenario, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(
            yaml.safe_load(f"name: t\ndevices: {{tags: [a]}}\nmodels: [m]\nscenario: {scenario}")
        )


def test_an_mlperf_multi_stream_scenario_sends_its_samples_per_query():
    spec = parse_spec(
        yaml.safe_load(
            "name: t\ndevices: {tags: [a]}\nmodels: [m]\n"
            "scenario: {kind: mlperf_multi_stream, samples_per_query: 4}"
        )
    )
    assert spec.scenario.params() == {"samples_per_query": 4}
