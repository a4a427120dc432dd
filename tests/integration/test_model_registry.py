"""The model registry for real: `models build --quick` (TensorFlow, tf2onnx, onnxruntime
quantization, OpenVINO conversion), `models list|show|add|remove` through the command line,
and trials of every digits_cnn variant on the three runtimes, with fidelity and accuracy.

The quick build runs once for the module (about 20 s on this machine).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agents import runner, runtimes
from agents.contract import ArtifactRef, InputSpec, MeasurementPolicy, TrialSpec
from agents.runtimes import Placement
from orchestrator.artifacts.builtin_models import mlp
from tests.conftest import run_cli

pytest.importorskip("tensorflow", reason="the modelzoo extra (tensorflow) is not installed")

DIGITS_VARIANTS = [
    ("tflite", "fp32"),
    ("tflite", "fp16"),
    ("tflite", "int8"),
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("openvino-ir", "fp32"),
    ("openvino-ir", "fp16"),
]
RUNTIME_OF = {"tflite": "litert", "onnx": "onnxruntime", "openvino-ir": "openvino"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A home with the quick set built by the command line, on the embedded SQLite store."""
    home = tmp_path_factory.mktemp("home")
    env = {"EDGEBENCH_HOME": str(home)}
    done = run_cli("models", "build", "--quick", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return home, env, done.stdout


def rows(home: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(home / "edgebench.db") as db:
        return db.execute(sql, args).fetchall()


def stored_files(home: Path) -> set[str]:
    return {p.name for p in (home / "artifacts").iterdir()}


def test_quick_build_registers_every_variant_with_hash_and_size(built):
    home, env, output = built
    assert "built digits_cnn" in output and "built mlp_digits" in output
    listed = run_cli("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    found = rows(
        home, "select format, precision, sha256, size, path from models where name='digits_cnn'"
    )
    assert sorted((f, p) for f, p, *_ in found) == sorted(DIGITS_VARIANTS)
    for fmt, precision, sha, size, path in found:
        data = Path(path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size
        line = next(
            line
            for line in listed.stdout.splitlines()
            if "digits_cnn" in line and f" {fmt} " in line and f" {precision} " in line
        )
        assert sha[:12] in line
    # int8 is smaller than fp32, in both formats that have it
    size = {(f, p): s for f, p, _, s, _ in found}
    assert size[("tflite", "int8")] < size[("tflite", "fp16")] < size[("tflite", "fp32")]
    assert size[("onnx", "int8")] < size[("onnx", "fp32")]


def test_show_gives_the_card_and_how_each_artifact_was_made(built):
    _, env, _ = built
    shown = run_cli("models", "show", "digits_cnn", env=env)
    assert shown.returncode == 0, shown.stderr
    for expected in (
        "image-classification",
        "BSD-3-Clause",
        "evaluation data",
        "fp32_test_accuracy",
        "tf.lite.TFLiteConverter",
        "onnxruntime.quantization.quantize_static",
        "openvino.convert_model",
    ):
        assert expected in shown.stdout
    missing = run_cli("models", "show", "no_such_model", env=env)
    assert missing.returncode == 1 and "no model named 'no_such_model'" in missing.stderr


def spec_for(home: Path, fmt: str, precision: str, batch: int = 10) -> TrialSpec:
    [(sha, size, path, inputs)] = rows(
        home,
        "select sha256, size, path, inputs from models where name='digits_cnn' "
        "and format=? and precision=?",
        fmt,
        precision,
    )
    [(data,)] = rows(home, "select data from model_cards where name='digits_cnn'")
    reference = json.loads(data)["reference"]
    return TrialSpec(
        trial_id="a" * 32,
        attempt=1,
        boot_id="b",
        campaign_id=1,
        device="here",
        model="digits_cnn",
        artifact=ArtifactRef(sha256=sha, size=size, format=fmt, uri=path),
        reference=ArtifactRef(
            sha256=reference["sha256"], size=reference["size"], format="npz", uri=reference["path"]
        ),
        inputs=[InputSpec.of(i) for i in json.loads(inputs)],
        runtime=RUNTIME_OF[fmt],
        precision=precision,
        batch_size=batch,
        policy=MeasurementPolicy(warmup_s=0, min_queries=20, min_s=0, max_s=1, idle_baseline_s=0),
        timeout_s=60,
    )


def int8_cosine_bound(fmt: str) -> float:
    """How close int8 outputs must be to fp32, from what this CPU can do. An x86 CPU without
    VNNI runs onnxruntime's u8s8 kernels on VPMADDUBSW, whose int16 pair sums saturate
    (onnxruntime's quantization guide: "reduce_range"), so its ONNX int8 agrees a little less
    (cosine 0.998 measured on an AVX2-only EPYC, above 0.999 with AVX-512 VNNI)."""
    import platform

    flags = set()
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    exact_int8_dot = platform.machine() not in ("x86_64", "AMD64") or bool(
        flags & {"avx512_vnni", "avx_vnni"}
    )
    return 0.999 if exact_int8_dot or fmt != "onnx" else 0.995


@pytest.mark.parametrize(("fmt", "precision"), DIGITS_VARIANTS, ids=lambda v: str(v))
def test_every_variant_runs_with_fidelity_and_accuracy(built, fmt, precision):
    home, _, _ = built
    [(recipe,)] = rows(home, "select recipe from model_cards where name='digits_cnn'")
    fp32_accuracy = json.loads(recipe)["training"]["fp32_test_accuracy"]
    result = runner.run_trial(spec_for(home, fmt, precision))  # batch 10: dynamic batch
    assert result["status"] == "ok" and result["summary"]["n"] >= 20
    assert result["accuracy_n"] == 450  # the held-out test split, labelled
    if precision == "int8":
        assert result["fidelity_cosine"] > int8_cosine_bound(fmt)
        assert result["fidelity_top1_agreement"] >= 0.99
        assert result["accuracy"] >= fp32_accuracy - 0.01
    else:
        assert result["fidelity_cosine"] > 0.99999
        assert result["fidelity_top1_agreement"] == 1.0
        assert result["accuracy"] == fp32_accuracy
        # The bound follows the precision the runtime executed: OpenVINO runs an fp16 request
        # in bf16 (8-bit mantissa) on a CPU with AVX512-BF16 and no fp16 (Zen 4: 0.135).
        executed = result["placement"].get("inference_precision")
        bound = {"bf16": 0.25}.get(executed, 0.05 if precision == "fp16" else 1e-3)
        assert result["fidelity_max_abs_error"] < bound, executed
    assert result["placement"]["actual_device"] == "CPU" and result["fallback"] is False


def test_litert_reports_its_delegate_and_partial_delegation(built):
    home, _, _ = built
    result = runner.run_trial(spec_for(home, "tflite", "fp32", batch=1))
    placement = result["placement"]
    assert placement["delegate"] == "XNNPACK" and placement["delegate_applied"] is True
    # The dynamic-batch Flatten (SHAPE, STRIDED_SLICE, PACK, RESHAPE) stays outside XNNPACK.
    assert placement["delegated_partitions"] == 2 and placement["fully_delegated"] is False


@pytest.mark.parametrize(
    "runtime, fmt", [("onnxruntime", "onnx"), ("openvino", "openvino-ir"), ("litert", "tflite"),
                     ("tvm", "onnx")],
)  # fmt: skip
def test_every_runtime_says_where_it_ran_in_one_shape(built, runtime, fmt):
    """requested, actual, fallback, applied options and the runtime's own detail: the same
    fields from every adapter (agents.runtimes.seam.Placement), so a page or a query reads
    them without knowing the runtime."""
    if runtime not in runtimes.names():
        pytest.skip(f"{runtime} is not installed here")
    home, _, _ = built
    [(path,)] = rows(
        home,
        "select path from models where name='digits_cnn' and format=? and precision='fp32'",
        fmt,
    )
    shapes = {"input": [1, 8, 8, 1]}  # digits_cnn's one input (8 x 8 digits), at batch 1
    loaded = runtimes.adapter(runtime).load(path, {"device": "CPU", "trial_shapes": shapes})
    try:
        placement = loaded.placement()
    finally:
        loaded.close()
    assert isinstance(placement, Placement)
    assert placement.requested_device == "CPU" == placement.actual_device
    assert placement.fallback is False
    stored = placement.as_dict()
    common = {"requested_device", "actual_device", "fallback", "options", "runtime_cache"}
    assert common | set(placement.detail) == set(stored)


def test_edgetpu_needs_a_compiled_model_and_says_so(built):
    home, _, _ = built
    [(path,)] = rows(
        home,
        "select path from models where name='digits_cnn' and format='tflite' and precision='int8'",
    )
    with pytest.raises(ValueError, match="not compiled for the Edge TPU"):
        runtimes.adapter("litert").load(path, {"device": "EdgeTPU"})


def reference_slice(home: Path, n: int) -> tuple:
    """The first n reference inputs of digits_cnn and their fp32 outputs."""
    [(data,)] = rows(home, "select data from model_cards where name='digits_cnn'")
    with np.load(json.loads(data)["reference"]["path"]) as reference:
        return reference["inputs"][:n], reference["outputs"][:n]


def load_fp32(home: Path, fmt: str):  # noqa: ANN201
    """digits_cnn's fp32 variant in `fmt`, loaded by its runtime on the CPU."""
    [(path,)] = rows(
        home,
        "select path from models where name='digits_cnn' and format=? and precision='fp32'",
        fmt,
    )
    return runtimes.adapter(RUNTIME_OF[fmt]).load(path, {"device": "CPU", "precision": "fp32"})


def test_fp32_variants_agree_across_the_three_runtimes(built):
    home, _, _ = built
    inputs, expected = reference_slice(home, 32)
    for fmt in ("tflite", "onnx", "openvino-ir"):
        loaded = load_fp32(home, fmt)
        [name] = [i["name"] for i in loaded.inputs()]
        [out] = loaded.run({name: inputs})
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-4, rtol=1e-4)
        loaded.close()


def test_every_runtime_times_the_same_bound_operation_and_the_call_beside_it(built):
    """The timed operation computes what the application's call computes, on every runtime,
    and a trial reports the call's latency beside it (labelled)."""
    home, _, _ = built
    inputs, expected = reference_slice(home, 8)
    for fmt in ("tflite", "onnx", "openvino-ir"):
        loaded = load_fp32(home, fmt)
        if hasattr(loaded, "prepare"):
            loaded.prepare({i["name"]: [8, *i["shape"][1:]] for i in loaded.inputs()})
        [name] = [i["name"] for i in loaded.inputs()]
        feed = {name: np.ascontiguousarray(inputs)}
        run_bound = loaded.bind(feed)
        for _ in range(3):
            assert run_bound() is None  # outputs stay in the runtime's host memory
        [bound_out] = run_bound.outputs()
        # What the bound operation computed is the fp32 reference answer.
        np.testing.assert_allclose(np.asarray(bound_out), expected, atol=1e-4, rtol=1e-4)
        loaded.close()
        result = runner.run_trial(spec_for(home, fmt, "fp32", batch=1))
        assert result["environment"]["timed_operation"].startswith("bound")
        call = result["environment"]["application_call"]
        assert call["n"] > 0 and call["p50_ms"] > 0 and call["what"].startswith("run(feed)")


# --- models add / remove ---------------------------------------------------------------


def dynamic_onnx() -> bytes:
    """Input [N, 3, H, W]: spatial size unknown until the user says."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["out"]),
        ],
        "dyn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.onnx", b"", "the file is empty"),
        ("truncated.onnx", "half", "not a loadable onnx model"),
        ("garbage.onnx", b"\x00\x01garbage" * 50, "not a loadable onnx model"),
        ("model.pt", "good", "unknown model file type"),
        ("really-tflite.onnx", "tflite", "not a loadable onnx model"),
        ("garbage.tflite", b"TFL3" + b"\xff" * 64, "not a loadable tflite model"),
        ("lonely.xml", b"<net/>", "needs its weights file lonely.bin"),
        ("missing.onnx", None, "no such file"),
    ],
)
def test_bad_model_files_are_refused_and_nothing_is_stored(built, tmp_path, name, content, message):
    home, env, _ = built
    good = mlp().onnx_bytes
    tflite = rows(home, "select path from models where format='tflite' limit 1")[0][0]
    data = {"half": good[: len(good) // 2], "good": good, "tflite": Path(tflite).read_bytes()}.get(
        content, content
    )
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    before = rows(home, "select count(*) from models")[0][0], stored_files(home)
    done = run_cli("models", "add", str(path), "--name", "broken", env=env)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert (rows(home, "select count(*) from models")[0][0], stored_files(home)) == before


def test_dynamic_dimensions_need_explicit_shapes(built, tmp_path):
    home, env, _ = built
    path = tmp_path / "dyn.onnx"
    path.write_bytes(dynamic_onnx())
    refused = run_cli("models", "add", str(path), "--name", "dyn", env=env)
    assert refused.returncode == 1
    assert "dynamic dimensions [None, 3, None, None] beyond the batch" in refused.stderr
    assert "--input-shape input=1,3,<d2>,<d3>" in refused.stderr
    wrong = run_cli(
        "models", "add", str(path), "--name", "dyn", "--input-shape", "x=1,3,32,32", env=env
    )
    assert wrong.returncode == 1 and "the model's inputs are input" in wrong.stderr
    added = run_cli(
        "models", "add", str(path), "--name", "dyn", "--input-shape", "input=1,3,32,32", env=env
    )
    assert added.returncode == 0, added.stderr
    shapes = {
        (fmt, json.dumps(json.loads(inputs)[0]["shape"]))
        for fmt, inputs in rows(home, "select format, inputs from models where name='dyn'")
    }
    assert shapes == {("onnx", "[null, 3, 32, 32]"), ("openvino-ir", "[null, 3, 32, 32]")}


def test_a_user_onnx_model_gets_openvino_variants_and_reference_outputs(built, tmp_path):
    home, env, _ = built
    path = tmp_path / "mine.onnx"
    path.write_bytes(mlp(seed=42).onnx_bytes)
    added = run_cli(
        "models",
        "add",
        str(path),
        "--name",
        "my_mlp",
        "--task",
        "tabular",
        "--license",
        "MIT",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    variants = rows(home, "select format, precision, recipe from models where name='my_mlp'")
    assert sorted((f, p) for f, p, _ in variants) == [
        ("onnx", "fp16"),
        ("onnx", "fp32"),
        ("onnx", "int8"),
        ("onnx", "int8_dynamic"),
        ("openvino-ir", "fp16"),
        ("openvino-ir", "fp32"),
    ]
    recipes = {(f, p): json.loads(r) for f, p, r in variants}
    assert recipes[("openvino-ir", "fp16")]["from"] == "onnx fp32 (user upload)"
    # No sample input: the int8 variant is calibrated on seeded values, and says so.
    assert recipes[("onnx", "int8")]["calibration"] == "seeded normal values"
    assert "its accuracy is not meaningful" in added.stdout
    assert recipes[("onnx", "fp16")]["options"] == {"keep_io_types": True}
    assert recipes[("onnx", "fp32")]["made_by"] == "user upload"
    [(task, license_name, data)] = rows(
        home, "select task, license, data from model_cards where name='my_mlp'"
    )
    assert (task, license_name) == ("tabular", "MIT")
    with np.load(json.loads(data)["reference"]["path"]) as reference:
        assert reference["inputs"].shape == (8, 64) and reference["outputs"].shape == (8, 10)
    again = run_cli("models", "add", str(path), "--name", "my_mlp", env=env)
    assert again.returncode == 1 and "a model named 'my_mlp' exists" in again.stderr


def test_a_user_tflite_model_gets_an_onnx_variant(built, tmp_path):
    home, env, _ = built
    [(source,)] = rows(
        home,
        "select path from models where name='digits_cnn' and format='tflite' and precision='fp32'",
    )
    path = tmp_path / "digits.tflite"
    path.write_bytes(Path(source).read_bytes())
    added = run_cli("models", "add", str(path), "--name", "my_digits", env=env, timeout=180)
    assert added.returncode == 0, added.stderr
    made = {
        (f, p): json.loads(r)
        for f, p, r in rows(
            home, "select format, precision, recipe from models where name='my_digits'"
        )
    }
    assert set(made) == {("tflite", "fp32"), ("onnx", "fp32")}
    assert made[("onnx", "fp32")]["converter"] == "tf2onnx.convert.from_tflite"


def test_remove_deletes_files_nothing_else_uses(built, tmp_path):
    home, env, _ = built
    path = tmp_path / "gone.onnx"
    path.write_bytes(mlp(seed=99).onnx_bytes)
    assert run_cli("models", "add", str(path), "--name", "gone", env=env).returncode == 0
    files = {p for (p,) in rows(home, "select path from models where name='gone'")}
    assert all(Path(p).exists() for p in files)
    removed = run_cli("models", "remove", "gone", env=env)
    assert removed.returncode == 0, removed.stderr
    assert not any(Path(p).exists() for p in files)
    assert rows(home, "select count(*) from model_cards where name='gone'") == [(0,)]
    again = run_cli("models", "remove", "gone", env=env)
    assert again.returncode == 1 and "no model named 'gone'" in again.stderr


def test_add_list_and_remove_on_both_stores_and_refuse_removing_a_used_model(store_url, tmp_path):
    """The registry's writes on SQLite and PostgreSQL; a model a campaign used stays."""
    import time

    from agents.contract import Registration
    from orchestrator import planning
    from orchestrator.campaigns.spec import parse_spec
    from orchestrator.store import repository
    from orchestrator.store.session import session_factory

    env = {"EDGEBENCH_DATABASE_URL": store_url, "EDGEBENCH_HOME": str(tmp_path / "home")}
    path = tmp_path / "used.onnx"
    path.write_bytes(mlp(seed=5).onnx_bytes)
    assert run_cli("models", "add", str(path), "--name", "used", env=env).returncode == 0
    listed = run_cli("models", "list", env=env)
    # onnx fp32, int8, int8_dynamic and fp16, IR fp32 and fp16
    assert listed.returncode == 0 and listed.stdout.count("used") == 6
    facts = {"runtimes": [{"name": "openvino", "version": "x", "devices": ["CPU"]}]}
    sessions = session_factory(store_url)
    with sessions.begin() as session:
        repository.register_device(
            session,
            Registration(
                device="box",
                boot_id="b",
                agent_version="t",
                tags=["lab"],
                facts=facts,
                sent_at=time.time(),
            ),
        )
        spec = parse_spec(
            {
                "name": "c",
                "devices": {"names": ["box"]},
                "models": ["used"],
                "runtimes": ["openvino"],
                "policy": {"runs": 1},
            }
        )
        campaign, plan = planning.submit(session, spec)
        campaign_id = campaign.id
    assert [t.model for t in plan.trials] == ["used"]
    refused = run_cli("models", "remove", "used", env=env)
    assert refused.returncode == 1
    assert f"model 'used' is used by campaign(s) {campaign_id}" in refused.stderr
    assert run_cli("models", "list", env=env).stdout.count("used") == 6


SCENARIOS = [
    ("single_stream", {}),
    ("offline", {}),
    ("paced", {"gap_s": 0.01}),
    ("poisson", {"rate": 200.0, "seed": 1.0}),
    ("soak", {"minutes": 0.01}),
]


@pytest.mark.parametrize(("scenario", "params"), SCENARIOS, ids=[s for s, _ in SCENARIOS])
@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino-ir"])
def test_every_scenario_runs_on_every_runtime(built, scenario, params, fmt):
    home, _, _ = built
    spec = spec_for(home, fmt, "fp32", batch=1).model_copy(
        update={"scenario": scenario, "scenario_params": params}
    )
    result = runner.run_trial(spec)
    assert result["status"] == "ok" and result["summary"]["n"] >= 1
    assert result["accuracy"] is not None
    if scenario != "single_stream" and scenario != "offline":
        assert result["scenario_report"], scenario
