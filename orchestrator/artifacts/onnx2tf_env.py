"""onnx2tf in a Python environment of its own.

onnx2tf pins exact versions of what it needs (1.29: TensorFlow 2.19, numpy 1.26, onnx 1.19,
onnxruntime 1.23) and sets process-wide state when imported (legacy Keras, seeds, hidden
GPUs). Installed beside edgebench it would replace the runtimes edgebench measures, so it
gets its own environment, made once by ``edgebench models setup-onnx2tf``, and each
conversion runs there in a child process (orchestrator/artifacts/onnx2tf_job.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

REQUIREMENT = "onnx2tf==1.29.24"
PYTHON_VARIABLE = "EDGEBENCH_ONNX2TF_PYTHON"
MIN_PYTHON = (3, 10)  # onnx2tf 1.29 asks for 3.10.12 or later


class SetupFailed(RuntimeError):
    """The environment could not be made, with pip's reason."""


def default_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgebench" / "converters" / REQUIREMENT.replace("==", "-")


def _python_in(home: Path) -> Path:
    return home / "bin" / "python"


def managed() -> Path | None:
    """The Python of the environment `setup-onnx2tf` made, once it is complete."""
    candidate = _python_in(default_home())
    ready = default_home() / "ready"
    return candidate if candidate.is_file() and ready.is_file() else None


def python() -> Path | None:
    """The Python that has onnx2tf: $EDGEBENCH_ONNX2TF_PYTHON (``off``: none, conversions
    skipped), else the environment `setup-onnx2tf` made; None where there is neither."""
    configured = os.environ.get(PYTHON_VARIABLE)
    if configured == "off":
        return None
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    return managed()


def missing_reason() -> str:
    configured = os.environ.get(PYTHON_VARIABLE)
    if configured == "off":
        return f"onnx2tf is turned off ({PYTHON_VARIABLE}=off)"
    if configured:
        return f"{PYTHON_VARIABLE}={configured} is not a file"
    return (
        "onnx2tf is not set up (`edgebench models setup-onnx2tf` installs it in an "
        "environment of its own: it pins its own TensorFlow)"
    )


def install(base_python: str | None = None, home: Path | None = None) -> Path:
    """Make the environment (or finish a half-made one); returns its Python."""
    home = home or default_home()
    base = base_python or sys.executable
    version = subprocess.run(
        [base, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
        capture_output=True,
        text=True,
    )
    if version.returncode != 0:
        raise SetupFailed(f"{base} does not run: {version.stderr.strip()[-300:]}")
    found = tuple(int(part) for part in version.stdout.split())
    if found < MIN_PYTHON:
        raise SetupFailed(
            f"{REQUIREMENT} needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later; {base} is "
            f"{found[0]}.{found[1]} (give another with --python)"
        )
    if not _python_in(home).is_file():
        if base == sys.executable:
            venv.EnvBuilder(with_pip=True, clear=True).create(home)
        else:
            made = subprocess.run([base, "-m", "venv", "--clear", str(home)], capture_output=True)
            if made.returncode != 0:
                raise SetupFailed(f"{base} -m venv failed: {made.stderr.decode()[-500:]}")
    done = subprocess.run(
        [str(_python_in(home)), "-m", "pip", "install", "--quiet", REQUIREMENT],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SetupFailed(f"pip install {REQUIREMENT} failed:\n{done.stderr.strip()[-1500:]}")
    (home / "ready").write_text(REQUIREMENT + "\n")
    return _python_in(home)
