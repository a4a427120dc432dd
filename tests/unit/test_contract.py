"""agents.contract: envelopes round-trip; anything else is a ContractError naming the problem."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agents.contract import (
    MAX_MESSAGE_BYTES,
    MESSAGE_KINDS,
    SCHEMA_VERSION,
    ArtifactRef,
    ContractError,
    Heartbeat,
    InputSpec,
    LatencySummary,
    MeasurementPolicy,
    Registration,
    TrialResult,
    TrialSpec,
    TrialStarted,
    agent_queue,
    envelope,
    parse,
    read_embedded_broker_url,
    validate_device_name,
)

SHA = "ab" * 32


def registration() -> Registration:
    return Registration(
        device="pi4-01",
        boot_id="boot-1",
        agent_version="0.1.0",
        tags=["lab", "arm"],
        facts={"cpu_model": "Cortex-A72", "logical_cores": 4, "board": None},
        sent_at=1700000000.25,
    )


def heartbeat() -> Heartbeat:
    return Heartbeat(
        device="pi4-01",
        boot_id="boot-1",
        sent_at=1.5,
        current_trial="0123456789abcdef0123456789abcdef",
        current_attempt=2,
    )


def trial_started() -> TrialStarted:
    return TrialStarted(
        trial_id="0123456789abcdef0123456789abcdef",
        attempt=1,
        device="pi4-01",
        boot_id="boot-1",
        sent_at=2.0,
    )


def trial_result() -> TrialResult:
    return TrialResult(
        trial_id="0123456789abcdef0123456789abcdef",
        attempt=1,
        device="pi4-01",
        boot_id="boot-1",
        status="ok",
        runtime_version="1.18.0",
        actual_device="CPU",
        fallback=False,
        placement={"providers": ["CPUExecutionProvider"]},
        summary=LatencySummary(
            n=3,
            min_ms=1.0,
            max_ms=3.0,
            mean_ms=2.0,
            stdev_ms=1.0,
            cv=0.5,
            p50_ms=2.0,
            p90_ms=2.8,
            p95_ms=2.9,
            p99_ms=2.98,
        ),
        throughput_ips=500.0,
        samples_ns=[1_000_000, 2_000_000, 3_000_000],
        sent_at=3.0,
    )


def trial_spec() -> TrialSpec:
    return TrialSpec(
        trial_id="0123456789abcdef0123456789abcdef",
        attempt=1,
        boot_id="boot-1",
        campaign_id=7,
        device="pi4-01",
        model="mlp_digits",
        artifact=ArtifactRef(sha256=SHA, size=123, format="onnx", uri="/tmp/model.onnx"),
        inputs=[InputSpec(name="input", shape=[None, 64], dtype="float32")],
        runtime="onnxruntime",
        batch_size=4,
        policy=MeasurementPolicy(warmup_s=0, min_queries=5, min_s=0, max_s=1),
        timeout_s=60,
    )


MESSAGES = {
    "registration": registration,
    "heartbeat": heartbeat,
    "trial_started": trial_started,
    "trial_result": trial_result,
    "trial_spec": trial_spec,
}


def test_every_kind_has_a_test_message():
    assert set(MESSAGES) == set(MESSAGE_KINDS)


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_envelope_round_trip(kind):
    message = MESSAGES[kind]()
    wire = envelope(message)
    assert wire["schema"] == SCHEMA_VERSION == 7
    assert wire["kind"] == kind
    assert set(wire) == {"schema", "kind", "body"}
    # a plain dict, through JSON text and through bytes: the same message each time
    assert parse(wire) == message
    text = json.dumps(wire)
    assert parse(text) == message
    assert parse(text.encode()) == message
    assert type(parse(text)) is type(message)


def test_envelope_body_is_json_safe():
    wire = envelope(trial_spec())
    assert json.loads(json.dumps(wire)) == wire
    assert wire["body"]["artifact"]["sha256"] == SHA
    assert wire["body"]["inputs"] == [
        {"name": "input", "shape": [None, 64], "dtype": "float32", "batch_axis": 0}
    ]


@pytest.mark.parametrize("schema", [0, 1, 2, 3, "4", None, 4.5])
def test_other_schema_version_is_rejected(schema):
    wire = envelope(heartbeat())
    wire["schema"] = schema
    with pytest.raises(ContractError) as caught:
        parse(wire)
    assert f"unsupported schema version {schema!r}" in str(caught.value)


def test_missing_schema_is_rejected():
    wire = envelope(heartbeat())
    del wire["schema"]
    with pytest.raises(ContractError, match="unsupported schema version None"):
        parse(wire)


@pytest.mark.parametrize("kind", ["explode", "", "Heartbeat", None, 3])
def test_unknown_kind_is_rejected(kind):
    wire = envelope(heartbeat())
    wire["kind"] = kind
    with pytest.raises(ContractError, match="unknown message kind"):
        parse(wire)


@pytest.mark.parametrize(
    ("raw", "type_name"), [([1, 2], "list"), (42, "int"), (None, "NoneType"), ("[1]", "list")]
)
def test_non_object_is_rejected(raw, type_name):
    with pytest.raises(ContractError, match=f"must be a JSON object, got {type_name}"):
        parse(raw)


@pytest.mark.parametrize("raw", ["not json{", "", b"\xff\xfe", "{'single': 'quotes'}"])
def test_non_json_text_is_rejected(raw):
    with pytest.raises(ContractError, match="not JSON"):
        parse(raw)


def test_oversize_string_is_rejected():
    with pytest.raises(ContractError, match="exceeds"):
        parse("x" * (MAX_MESSAGE_BYTES + 1))


def test_size_limit_boundary():
    text = json.dumps(envelope(heartbeat()))
    at_limit = text + " " * (MAX_MESSAGE_BYTES - len(text))  # trailing spaces are valid JSON
    assert len(at_limit.encode()) == MAX_MESSAGE_BYTES
    assert parse(at_limit) == heartbeat()
    with pytest.raises(ContractError, match="exceeds"):
        parse(at_limit + " ")
    with pytest.raises(ContractError, match="exceeds"):
        parse((at_limit + " ").encode())


def test_size_limit_counts_utf8_bytes_not_characters():
    # BUG (contract.parse): len(raw) of a str counts characters, so a message of more than
    # MAX_MESSAGE_BYTES bytes passes when it is made of multi-byte characters. Here:
    # about 4.2 M characters of 'é' (2 bytes each in UTF-8), so about 8.4 MB.
    body = envelope(heartbeat())
    body["body"]["boot_id"] = "é" * (MAX_MESSAGE_BYTES // 2 + 1000)
    text = json.dumps(body, ensure_ascii=False)
    assert len(text) < MAX_MESSAGE_BYTES < len(text.encode("utf-8"))
    with pytest.raises(ContractError, match="exceeds"):
        parse(text)
        pytest.fail(  # reached only when parse accepted it
            f"BUG: a {len(text.encode())}-byte message passed the {MAX_MESSAGE_BYTES}-byte limit"
        )


def test_invalid_body_names_the_field():
    wire = envelope(heartbeat())
    del wire["body"]["boot_id"]
    with pytest.raises(ContractError) as caught:
        parse(wire)
    assert str(caught.value) == "invalid heartbeat message: boot_id: Field required"


def test_invalid_nested_body_names_the_path():
    wire = envelope(trial_spec())
    wire["body"]["artifact"]["sha256"] = "not-a-hash"
    with pytest.raises(ContractError, match=r"invalid trial_spec message: artifact\.sha256"):
        parse(wire)


def test_invalid_value_names_the_field():
    wire = envelope(trial_spec())
    wire["body"]["batch_size"] = 0
    with pytest.raises(ContractError, match="invalid trial_spec message: batch_size"):
        parse(wire)


def test_wrong_status_is_rejected():
    wire = envelope(trial_result())
    wire["body"]["status"] = "maybe"
    with pytest.raises(ContractError, match="invalid trial_result message: status"):
        parse(wire)


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_extra_key_in_body_is_rejected(kind):
    wire = envelope(MESSAGES[kind]())
    wire["body"]["surprise"] = 1
    with pytest.raises(ContractError) as caught:
        parse(wire)
    assert f"invalid {kind} message: surprise" in str(caught.value)


def test_missing_body_is_rejected():
    wire = envelope(heartbeat())
    del wire["body"]
    with pytest.raises(ContractError, match="invalid heartbeat message"):
        parse(wire)


def test_contract_error_is_a_value_error():
    assert issubclass(ContractError, ValueError)


# --- device names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pi4-01", "a", "9", "jetson.orin_nano-2", "x" * 64])
def test_valid_device_names(name):
    assert validate_device_name(name) == name


@pytest.mark.parametrize(
    "name", ["bad name!", "", "-leading-dash", ".hidden", "x" * 65, "a/b", "pi4:1", "ünï"]
)
def test_invalid_device_names(name):
    with pytest.raises(ValueError, match="invalid device name"):
        validate_device_name(name)


def test_device_name_with_a_trailing_newline_is_invalid():
    # BUG (contract.validate_device_name): re.match with a pattern ending in "$" accepts
    # one trailing "\n" ("$" matches before a final newline), so "pi4\n" is a valid name
    # and its queue is "agent.pi4\n". Fix: re.fullmatch instead of re.match.
    with pytest.raises(ValueError, match="invalid device name"):
        validate_device_name("pi4\n")
        pytest.fail("BUG: 'pi4\\n' was accepted as a device name")


def test_registration_rejects_a_bad_device_name():
    with pytest.raises(ValidationError, match="invalid device name"):
        Registration(device="bad name!", boot_id="b", agent_version="0", sent_at=0.0)


def test_parse_rejects_a_registration_with_a_bad_device_name():
    wire = envelope(registration())
    wire["body"]["device"] = "bad name!"
    with pytest.raises(ContractError) as caught:
        parse(wire)
    message = str(caught.value)
    assert message.startswith("invalid registration message: device:")
    assert "invalid device name 'bad name!'" in message


def test_agent_queue():
    assert agent_queue("pi4-01") == "agent.pi4-01"


# --- MeasurementPolicy -----------------------------------------------------------------


def test_policy_defaults():
    policy = MeasurementPolicy()
    assert (policy.warmup_s, policy.min_queries, policy.min_s) == (1.0, 200, 3.0)
    assert (policy.max_s, policy.max_queries) == (30.0, 100_000)


def test_policy_max_s_equal_to_min_s_is_allowed():
    assert MeasurementPolicy(min_s=5, max_s=5).max_s == 5


def test_policy_max_s_below_min_s_is_rejected():
    with pytest.raises(ValidationError, match=r"max_s \(2\.0\) must be at least min_s \(5\.0\)"):
        MeasurementPolicy(min_s=5, max_s=2)


def test_policy_max_queries_below_min_queries_is_rejected():
    with pytest.raises(ValidationError, match=r"max_queries \(5\) must be at least min_queries"):
        MeasurementPolicy(min_queries=10, max_queries=5)


def test_policy_max_queries_equal_to_min_queries_is_allowed():
    assert MeasurementPolicy(min_queries=10, max_queries=10).max_queries == 10


@pytest.mark.parametrize(
    "fields",
    [
        {"warmup_s": -0.1},
        {"warmup_s": 601},
        {"min_queries": 0},
        {"min_s": -1},
        {"max_s": 0},
        {"max_s": 24 * 3600 + 1},
        {"max_queries": 0},
        {"max_queries": 1_000_001},
        {"unknown": 1},
    ],
)
def test_policy_bounds(fields):
    field = next(iter(fields))
    with pytest.raises(ValidationError) as caught:
        MeasurementPolicy(**fields)
    assert field in str(caught.value)


def test_policy_zero_warmup_and_zero_min_s_are_allowed():
    policy = MeasurementPolicy(warmup_s=0, min_queries=1, min_s=0, max_s=0.5)
    assert (policy.warmup_s, policy.min_s) == (0, 0)


# --- embedded broker discovery file ----------------------------------------------------


def test_read_embedded_broker_url(tmp_path):
    assert read_embedded_broker_url(tmp_path) is None
    (tmp_path / "broker.json").write_text(json.dumps({"url": "redis://:pw@127.0.0.1:6390/0"}))
    assert read_embedded_broker_url(tmp_path) == "redis://:pw@127.0.0.1:6390/0"
    (tmp_path / "broker.json").write_text("{not json")
    assert read_embedded_broker_url(tmp_path) is None
    (tmp_path / "broker.json").write_text("{}")
    assert read_embedded_broker_url(tmp_path) is None


def test_an_input_names_its_batch_axis_and_older_inputs_read_as_batch_first():
    older = InputSpec(name="x", shape=[None, 3], dtype="float32")
    assert older.batch_axis == 0
    assert InputSpec(name="sr", shape=[], dtype="int64").batch_axis is None
    state = InputSpec(name="state", shape=[2, None, 128], dtype="float32", batch_axis=1)
    assert state.batch_axis == 1
    fixed = InputSpec(name="x", shape=[1, 3], dtype="float32", batch_axis=None)
    assert fixed.batch_axis is None
    with pytest.raises(ValidationError, match="batch_axis 3 is outside the 2-d input"):
        InputSpec(name="x", shape=[None, 3], dtype="float32", batch_axis=3)
