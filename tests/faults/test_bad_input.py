"""Bad input, property-based (hypothesis): campaign specs, control-queue messages, model files.

Each gets a clear error of its own type (SpecError/PlanError, ContractError or a rejected
ingest, ModelRejected/InvalidModel), never another exception, and a refused message leaves
the store as it was. Real parts only: a real SQLite store migrated to head, real runtimes
(onnxruntime, LiteRT, OpenVINO) loading the files. Example counts are kept small so the file
runs in well under a minute; raise max_examples when hunting.
"""

from __future__ import annotations

import json
import string
import time
import uuid

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from agents.contract import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    ContractError,
    Heartbeat,
    LatencySummary,
    Registration,
    TrialResult,
    parse,
)
from agents.contract import envelope as unsigned_envelope
from agents.contract.signing import device_key, new_token, sign
from agents.contract.statistics import summarize_ns
from agents.measurement import feeds
from orchestrator import ingest, planning
from orchestrator.artifacts import input_shapes, user_models, validation
from orchestrator.artifacts.builtin_models import mlp
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.matrix import ArtifactInfo, DeviceInfo, PlanError, expand
from orchestrator.campaigns.spec import MAX_TRIALS, CampaignSpec, SpecError, load_spec, parse_spec
from orchestrator.store import migrate, repository
from orchestrator.store.models import Base, RejectedMessage
from orchestrator.store.session import session_factory
from tests.integration.test_ingest import dispatch_one

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- shared strategies -------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
keys = st.text(max_size=12) | st.sampled_from(["name", "models", "kind", "body", "schema"])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
unknown_key = st.text(alphabet=string.ascii_lowercase + "_", min_size=3, max_size=10).map(
    lambda k: f"zz_{k}"
)


def valid_spec() -> dict:
    return {
        "name": "bad-input",
        "devices": {"names": ["dev-a"]},
        "models": ["mlp_digits", {"name": "small_cnn", "input_size": 96}],
        "runtimes": ["onnxruntime", {"name": "openvino", "device": "CPU"}],
        "precisions": ["fp32"],
        "batch_sizes": [1, 8],
        "scenario": {"kind": "paced", "gap_s": 0.1},
        "policy": {"warmup_s": 0.1, "min_queries": 10, "min_s": 0.3, "max_s": 3},
        "repeats": 2,
    }


def paths_of(value, prefix=()):
    """Every path (tuple of keys/indexes) into a nested spec, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths_of(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from paths_of(inner, (*prefix, index))


SPEC_PATHS = [p for p in paths_of(valid_spec()) if p]


def get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


CONTAINER_PATHS = [p for p in [(), *SPEC_PATHS] if isinstance(get(valid_spec(), p), dict)]


def set_at(tree, path, value):
    get(tree, path[:-1])[path[-1]] = value


def assert_clean_spec_outcome(data) -> CampaignSpec | SpecError:
    try:
        return parse_spec(data)
    except SpecError as exc:
        assert str(exc).strip(), "a SpecError must say what is wrong"
        assert "Traceback" not in str(exc)
        return exc


# --- 1. campaign specs -------------------------------------------------------------------


@FEW
@given(json_values)
@example({"name": "x", "devices": {"names": ["a"]}, "models": ["m"], 1: 2})  # a non-text key
@example({"name": "x", "devices": {"names": ["a"]}, "models": []})  # an empty matrix
def test_any_structure_gives_a_spec_or_a_spec_error(data):
    assert_clean_spec_outcome(data)


@FEW
@given(st.sampled_from(SPEC_PATHS), json_values)
def test_a_wrong_value_anywhere_is_named_by_its_field(path, value):
    data = valid_spec()
    set_at(data, path, value)
    outcome = assert_clean_spec_outcome(data)
    if isinstance(outcome, SpecError):
        # The message names the top-level field the bad value sits under (the whole list
        # `models` may be named when no entry is valid; `spec` for a cross-field rule).
        assert str(path[0]) in str(outcome) or "spec:" in str(outcome), (path, str(outcome))


@FEW
@given(st.sampled_from(CONTAINER_PATHS), unknown_key, json_values)
def test_an_unknown_key_at_any_level_is_named(path, key, value):
    data = valid_spec()
    get(data, path)[key] = value
    with pytest.raises(SpecError) as raised:
        parse_spec(data)
    where = ".".join(str(p) for p in (*path, key))
    assert f"{where}: unknown key {key!r}" in str(raised.value)


@FEW
@given(st.text(max_size=200) | json_values.map(lambda v: yaml.safe_dump(v)))
@example("a: &x [*x]")  # a YAML alias that makes a list contain itself
@example("- " * 5000)  # deeply nested YAML
@example("name: !!python/object:os.system x")
@example(json.dumps(valid_spec()))
def test_any_yaml_text_gives_a_spec_or_a_spec_error(text):
    try:
        load_spec(text)
    except SpecError as exc:
        assert str(exc).startswith(("spec:", "name", "devices", "models")) or ": " in str(exc)


DEVICES = [
    DeviceInfo("dev-a", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"], "openvino": ["CPU"]}),
    DeviceInfo("dev-b", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU"]}),
]
ARTIFACTS = [ArtifactInfo(1, "mlp_digits", "onnx", "fp32")] + [
    ArtifactInfo(10 + s, f"small_cnn_{s}", "onnx", "fp32", family="small_cnn", input_size=s)
    for s in (64, 96)
]


@settings(max_examples=10, deadline=None)
@given(
    models=st.integers(1, 30),
    batches=st.integers(1, 40),
    repeats=st.integers(1, 100),
)
def test_a_matrix_over_the_trial_cap_raises_the_cap_message(models, batches, repeats):
    artifacts = ARTIFACTS + [ArtifactInfo(100 + i, f"m{i}", "onnx", "fp32") for i in range(models)]
    spec = parse_spec(
        {
            "name": "huge",
            "devices": {"names": ["dev-a", "dev-b"]},
            "models": [f"m{i}" for i in range(models)],
            "batch_sizes": list(range(1, batches + 1)),
            "repeats": repeats,
        }
    )
    trials = 2 * models * batches * repeats
    if trials > MAX_TRIALS:
        with pytest.raises(PlanError, match=f"more than {MAX_TRIALS} trials; split it"):
            expand(spec, DEVICES, artifacts)
    else:
        assert len(expand(spec, DEVICES, artifacts).trials) == trials


@FEW
@given(
    st.lists(st.text(string.ascii_letters + "_", min_size=1, max_size=10), min_size=1, max_size=3),
    st.lists(st.text(string.ascii_letters + "-", min_size=1, max_size=10), min_size=1, max_size=3),
)
def test_unknown_models_and_devices_are_named(models, devices):
    models = list(dict.fromkeys(f"nope_{m}" for m in models))
    devices = list(dict.fromkeys(f"ghost-{d}" for d in devices))
    spec = parse_spec({"name": "x", "devices": {"names": ["dev-a"]}, "models": models})
    with pytest.raises(PlanError) as raised:
        expand(spec, DEVICES, ARTIFACTS)
    assert str(raised.value).startswith("models: unknown model(s)")
    assert all(m in str(raised.value) for m in models)
    spec = parse_spec({"name": "x", "devices": {"names": devices}, "models": ["mlp_digits"]})
    with pytest.raises(PlanError, match="^devices: no registered device matches"):
        expand(spec, DEVICES, ARTIFACTS)
    spec = parse_spec(
        {"name": "x", "devices": {"names": ["dev-a", *devices]}, "models": ["mlp_digits"]}
    )
    with pytest.raises(PlanError) as raised:
        expand(spec, DEVICES, ARTIFACTS)
    assert str(raised.value).startswith("devices.names: unknown device(s)")
    assert all(d in str(raised.value) for d in devices)


# --- 2. control-queue messages -----------------------------------------------------------


def signed_result(trial_id: str, attempt: int = 1, device: str = "dev-a") -> dict:
    return unsigned_envelope(
        TrialResult(
            trial_id=trial_id,
            attempt=attempt,
            device=device,
            boot_id="boot-a",
            status="ok",
            summary=LatencySummary(**summarize_ns([1_000_000, 2_000_000, 3_000_000])),
            samples_ns=[1_000_000, 2_000_000, 3_000_000],
            sent_at=time.time(),
        )
    )


def heartbeat_wire() -> dict:
    return unsigned_envelope(Heartbeat(device="dev-a", boot_id="boot-a", sent_at=time.time()))


@FEW
@given(json_values | st.binary(max_size=64) | st.text(max_size=64))
@example('"\ud800"')  # a str that is not UTF-8 text (was UnicodeEncodeError)
@example("[" * 100_000)  # nesting deeper than the JSON decoder's recursion (was RecursionError)
@example(b"[" * 100_000)
@example({"schema": SCHEMA_VERSION, "kind": "heartbeat", "body": {"device": "\ud800"}})
def test_parse_accepts_or_raises_contract_error(raw):
    try:
        parse(raw)
    except ContractError as exc:
        assert str(exc)


@FEW
@given(
    st.sampled_from(["schema", "kind", "body"]),
    json_values.filter(lambda v: v != SCHEMA_VERSION and v not in ("heartbeat",)),
)
def test_a_broken_envelope_is_a_contract_error(field, value):
    wire = heartbeat_wire()
    if field == "body" and isinstance(value, dict) and not value:
        value = None
    wire[field] = value
    with pytest.raises(ContractError):
        parse(wire)


@settings(max_examples=3, deadline=None)
@given(st.integers(1, 4096), st.sampled_from(["str", "bytes", "dict"]))
def test_oversize_messages_are_refused(extra, form):
    wire = heartbeat_wire()
    wire["body"]["boot_id"] = "x" * (MAX_MESSAGE_BYTES + extra)
    raw = {"str": json.dumps, "bytes": lambda w: json.dumps(w).encode(), "dict": dict}[form](wire)
    with pytest.raises(ContractError, match="exceeds"):
        parse(raw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SQLite store: dev-a enrolled, the built-in models, a campaign of 2 trials on
    dev-a: one finished (a result), one dispatched (attempt 1)."""
    home = tmp_path_factory.mktemp("bad-input-store")
    url = f"sqlite:///{home / 'store.db'}"
    migrate.upgrade(url)
    sessions = session_factory(url)
    _, token_id, token_hash = new_token()
    key = device_key(token_hash, "dev-a")
    with sessions.begin() as session:
        repository.add_token(session, token_id, token_hash, local=True)
    facts = {
        "device_class": "x86_64-cpu",
        "runtimes": [{"name": "onnxruntime", "version": "1.0", "devices": ["CPU"]}],
    }
    registration = unsigned_envelope(
        Registration(
            device="dev-a",
            boot_id="boot-a",
            agent_version="t",
            facts=facts,
            sent_at=time.time(),
            enrollment_token=token_id,
        )
    )
    assert ingest.handle(sessions, sign(registration, key)) == "registered"
    with sessions.begin() as session:
        build_and_register(session, home / "artifacts")
        spec = {
            "name": "t",
            "devices": {"names": ["dev-a"]},
            "models": ["mlp_digits"],
            "repeats": 1,
        }
        campaign, _ = planning.submit(session, parse_spec({**spec, "batch_sizes": [1, 8]}))
    ids = [dispatch_one(sessions, campaign.id)[0] for _ in range(2)]
    finished, dispatched = ids
    assert ingest.handle(sessions, sign(signed_result(finished), key)) == "stored"
    return sessions, key, finished, dispatched


def snapshot(sessions) -> dict:
    """Every row of every table but the rejection log, as plain tuples."""
    with sessions() as session:
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in session.execute(select(table))), key=str
            )
            for table in Base.metadata.sorted_tables
            if table.name != RejectedMessage.__tablename__
        }


def rejections(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(RejectedMessage))


def assert_refused_and_unchanged(sessions, raw) -> None:
    before, logged = snapshot(sessions), rejections(sessions)
    outcome = ingest.handle(sessions, raw)
    assert outcome in ("rejected", "refused"), outcome
    assert snapshot(sessions) == before
    assert rejections(sessions) - logged in (0, 1)  # a security refusal is counted, once


@FEW
@given(json_values | st.text(max_size=64))
@example('"\ud800"')
@example({"schema": SCHEMA_VERSION, "kind": "heartbeat", "body": {"device": "\ud800"}})
@example(
    {
        "schema": SCHEMA_VERSION,
        "kind": "heartbeat",
        "body": {"device": "\ud800", "boot_id": "b", "sent_at": 1},  # was UnicodeEncodeError
        "signature": "0" * 64,
    }
)
def test_ingest_refuses_junk_and_changes_nothing(store, raw):
    sessions, *_ = store
    assert_refused_and_unchanged(sessions, raw)


@FEW
@given(
    st.sampled_from(["unknown", "finished", "never_sent", "foreign_device"]),
    st.sampled_from(["signed", "unsigned", "random_signature", "other_key", "tampered"]),
    st.integers(1, 3),
)
def test_ingest_refuses_results_it_must_not_store(store, target, signing, attempt):
    sessions, key, finished, dispatched = store
    trial_id = {
        "unknown": uuid.uuid4().hex,
        "finished": finished,
        "never_sent": dispatched,
        "foreign_device": dispatched,
    }[target]
    if target == "never_sent":
        attempt += 1  # attempt 1 was sent; 2.. were not
    if target == "finished" and signing == "signed":
        attempt = 1  # another result for the attempt that has one: a replay
    wire = signed_result(
        trial_id, attempt, device="dev-b" if target == "foreign_device" else "dev-a"
    )
    if signing == "signed":
        raw = sign(wire, key)
    elif signing == "unsigned":
        raw = wire
    elif signing == "random_signature":
        raw = {**wire, "signature": uuid.uuid4().hex * 2}
    elif signing == "other_key":
        raw = sign(wire, bytes(32))
    else:  # signed, then the body changed
        raw = sign(wire, key)
        raw["body"]["throughput_ips"] = 1e9
    assert_refused_and_unchanged(sessions, raw)


def test_a_valid_result_for_the_dispatched_trial_is_still_stored(store):
    """The refusals above are not everything refused: the store still takes a good result."""
    sessions, key, _, dispatched = store
    assert ingest.handle(sessions, sign(signed_result(dispatched), key)) == "stored"


# --- 3. model files ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_files():
    """A valid ONNX model (built-in mlp) and a valid TFLite model (a tiny Keras model)."""
    from orchestrator.artifacts.architectures import quiet_tensorflow
    from orchestrator.artifacts.converters import keras_to_tflite

    tf = quiet_tensorflow()
    keras_model = tf.keras.Sequential(
        [tf.keras.Input((4,)), tf.keras.layers.Dense(3, activation="softmax")]
    )
    tflite, _ = keras_to_tflite(keras_model, "fp32")
    return {"onnx": mlp().onnx_bytes, "tflite": tflite}


def prepare(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return user_models.prepare(path, "candidate", "fp32", {}, None)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["onnx", "tflite"]), st.floats(0, 1, exclude_max=True))
@example("onnx", 0.0)
@example("tflite", 0.5)
def test_a_truncated_model_is_rejected(model_files, tmp_path, fmt, fraction):
    data = model_files[fmt]
    cut = data[: int(len(data) * fraction)]
    with pytest.raises(user_models.ModelRejected) as raised:
        prepare(tmp_path, f"cut.{fmt}", cut)
    assert "the file is empty" in str(raised.value) or f"not a loadable {fmt} model" in str(
        raised.value
    )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["onnx", "tflite"]), st.lists(st.integers(0, 2**20), min_size=1, max_size=4))
# ONNX bit 21 turns the producer name into a doc string: onnxruntime loads the model, OpenVINO
# cannot convert it (was a traceback from openvino.tools.ovc; now a note, no IR variant).
@example("onnx", [21])
def test_a_bit_flipped_model_is_rejected_or_loads(model_files, tmp_path, fmt, bits):
    # A flip in a weight (most of the file) leaves a model that still parses and runs: it
    # may be accepted. A flip in the structure must give ModelRejected, never a crash.
    flipped = bytearray(model_files[fmt])
    for bit in bits:
        bit %= len(flipped) * 8
        flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        candidate = prepare(tmp_path, f"flipped.{fmt}", bytes(flipped))
    except user_models.ModelRejected as exc:
        assert str(exc)
    else:
        assert candidate.fmt == fmt and candidate.inputs


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("zero.onnx", b"", "the file is empty"),
        ("zero.tflite", b"", "the file is empty"),
        ("zeros.onnx", b"\x00" * 4096, "not a loadable onnx model"),
        ("zeros.tflite", b"\x00" * 4096, "not a loadable tflite model"),
        ("model.pt", "onnx", "unknown model file type"),
        ("model.onnx.bak", "onnx", "unknown model file type"),
        ("really-tflite.onnx", "tflite", "not a loadable onnx model"),
        ("really-onnx.tflite", "onnx", "not a loadable tflite model"),
    ],
)
def test_zero_bytes_wrong_extension_and_another_format_are_rejected(
    model_files, tmp_path, name, content, message
):
    data = model_files.get(content, content)
    with pytest.raises((user_models.ModelRejected, validation.InvalidModel), match=message):
        prepare(tmp_path, name, data)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(list(validation.SUFFIXES)), st.binary(max_size=256))
@example("openvino-ir", b"")
@example("tflite", b"TFL3" + b"\xff" * 64)
def test_describe_random_bytes_raises_invalid_model(fmt, data):
    with pytest.raises(validation.InvalidModel, match=f"not a loadable {fmt} model|IR tar"):
        validation.describe(data, fmt)


# --- input shapes, batch axes and sample files -----------------------------------------

dims = st.one_of(st.none(), st.integers(1, 8))
declared_inputs = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["x", "state", "sr", "ids"]),
            "shape": st.lists(dims, max_size=4),
            "dtype": st.sampled_from(["float32", "int64", "uint8", "bool", "float16"]),
            "dim_names": st.just([]),
        }
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda node: node["name"],
)
flag_text = st.text(alphabet="xstaeidr=,0123456789-none ", max_size=16)


@settings(max_examples=200, deadline=None)
@given(declared_inputs, st.lists(flag_text, max_size=3), st.lists(flag_text, max_size=3))
def test_any_shape_and_axis_flags_give_inputs_or_a_refusal(declared, shape_flags, axis_flags):
    try:
        shapes = input_shapes.parse_shapes(shape_flags)
        axes = input_shapes.parse_batch_axes(axis_flags)
        resolved = input_shapes.resolve(declared, shapes, axes)
    except user_models.ModelRejected as exc:
        assert str(exc)
        return
    for node in resolved:  # what a trial can feed: every dimension known but a dynamic batch
        axis = node["batch_axis"]
        assert all(d is not None for i, d in enumerate(node["shape"]) if i != axis)
        feeds.trial_shapes([node], 1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.integers(0, 5), max_size=4),
    st.sampled_from(["float32", "int64", "float64", "bool"]),
    st.sampled_from(["x", "y"]),
    st.booleans(),
)
def test_any_sample_file_is_taken_or_refused(tmp_path, shape, dtype, name, corrupt):
    import numpy as np

    inputs = [{"name": "x", "shape": [None, 3], "dtype": "int64", "batch_axis": 0}]
    path = tmp_path / "sample.npz"
    if corrupt:
        path.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        np.savez(path, **{name: np.zeros(shape, dtype=dtype)})
    try:
        arrays = user_models.load_sample(path, inputs)
    except user_models.ModelRejected as exc:
        assert str(path) in str(exc)
    else:
        assert arrays["x"].shape[1:] == (3,) and arrays["x"].dtype == np.int64
