"""Builds models into the content store and records them (cards and artifacts) in the SQL store.

Two kinds of built models: the tiny ONNX graphs of ``builtin_models`` (no TensorFlow
needed; the tests' and quickstart's fast load) and the standard set of
``standard_set`` (TensorFlow, every format and precision). Every artifact is loaded by
its runtime before it is recorded.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from orchestrator.artifacts import (
    builtin_models,
    content_store,
    converters,
    input_shapes,
    validation,
)
from orchestrator.store import repository

TINY = list(builtin_models.BUILDERS)
QUICK = [*TINY, "digits_cnn"]
REFERENCE_SEED = 11
REFERENCE_SAMPLES = 16


@dataclass
class Registered:
    name: str
    artifacts: list[tuple[str, str, int]]  # (format, precision, bytes)
    seconds: float


def full_set() -> list[str]:
    from orchestrator.artifacts import standard_set

    return [*TINY, *standard_set.names()]


@contextlib.contextmanager
def build_log(path: Path) -> Iterator[None]:
    """Send what converters print (TensorFlow's C++ logs included) to a file, not the user.

    On failure the log's tail is attached to the error, so nothing is hidden.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as exc:
            tail = path.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"{exc}\n--- last lines of {path} ---\n" + "\n".join(tail)) from exc
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _store_file(artifact_dir: Path, data: bytes, suffix: str) -> dict[str, Any]:
    digest, path = content_store.put(artifact_dir, data, suffix)
    return {"sha256": digest, "size": len(data), "path": str(path.resolve())}


def register_artifact(
    session: Session,
    artifact_dir: Path,
    name: str,
    fmt: str,
    precision: str,
    data: bytes,
    recipe: dict,
    registered: list[dict[str, Any]] | None = None,
) -> int:
    """Check the artifact loads, store it by hash, record it; returns its size.

    ``registered`` (the inputs as the user resolved them: shapes and batch axes) fills the
    dimensions this variant's file leaves dynamic beyond its batch.
    """
    inputs = input_shapes.for_artifact(validation.describe(data, fmt), registered)
    stored = _store_file(artifact_dir, data, validation.SUFFIXES[fmt])
    repository.upsert_model(
        session,
        name=name,
        fmt=fmt,
        precision=precision,
        sha256=stored["sha256"],
        size=stored["size"],
        path=stored["path"],
        inputs=inputs,
        recipe=recipe,
    )
    return len(data)


def _tiny(session: Session, artifact_dir: Path, name: str) -> list[tuple[str, str, int]]:
    import onnxruntime

    model = builtin_models.BUILDERS[name]()
    size = register_artifact(
        session, artifact_dir, name, "onnx", "fp32", model.onnx_bytes, model.recipe
    )
    shape = [REFERENCE_SAMPLES, *model.inputs[0]["shape"][1:]]
    inputs = np.random.default_rng(REFERENCE_SEED).standard_normal(shape).astype(np.float32)
    session_ort = onnxruntime.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    reference = converters.reference_npz(
        inputs, lambda x: session_ort.run(None, {model.inputs[0]["name"]: x})[0]
    )
    repository.upsert_card(
        session,
        {
            "name": name,
            "family": name,
            "input_size": model.recipe.get("size"),
            "version": "1",
            "task": "synthetic load (seeded random weights)",
            "layout": "NCHW" if len(shape) == 4 else None,
            "preprocessing": {"description": "standard normal noise; no real data"},
            "inputs": model.inputs,
            "source": f"edgebench {model.recipe['builder']} (ONNX graph built in code)",
            "license": "Apache-2.0",
            "data": {"reference": _store_file(artifact_dir, reference, ".npz")},
            "recipe": {**model.recipe, "reference": "onnxruntime fp32, seeded normal inputs"},
        },
    )
    return [("onnx", "fp32", size)]


def _standard(session: Session, artifact_dir: Path, name: str) -> list[tuple[str, str, int]]:
    from orchestrator.artifacts import standard_set

    built = standard_set.build(name)
    artifacts = []
    for artifact in built.artifacts:
        size = register_artifact(
            session,
            artifact_dir,
            name,
            artifact.format,
            artifact.precision,
            artifact.data,
            artifact.recipe,
        )
        artifacts.append((artifact.format, artifact.precision, size))
    fp32_onnx = next(a for a in built.artifacts if a.format == "onnx" and a.precision == "fp32")
    card = {
        **built.card,
        "inputs": input_shapes.for_artifact(validation.describe(fp32_onnx.data, "onnx"), None),
        "data": {"reference": _store_file(artifact_dir, built.reference, ".npz")},
    }
    if name == "digits_cnn":
        card["data"]["evaluation"] = card["data"]["reference"]  # the labelled test split
    repository.upsert_card(session, card)
    return artifacts


def build_and_register(
    session: Session,
    artifact_dir: Path,
    names: list[str] | None = None,
    on_built: Callable[[Registered], None] | None = None,
    log_path: Path | None = None,
) -> list[str]:
    """Build the named models (default: the tiny built-ins) and record them."""
    import time

    chosen = names or TINY
    standard = [n for n in chosen if n not in TINY]
    if standard:
        from orchestrator.artifacts import standard_set

        unknown = [n for n in standard if n not in standard_set.names()]
        if unknown:
            known_names = ", ".join(full_set())
            raise ValueError(f"unknown model(s): {', '.join(unknown)} (known: {known_names})")
    log_path = log_path or Path(tempfile.gettempdir()) / "edgebench-models-build.log"
    built = []
    for name in chosen:
        started = time.perf_counter()
        if name in TINY:
            artifacts = _tiny(session, artifact_dir, name)
        else:
            with build_log(log_path):
                artifacts = _standard(session, artifact_dir, name)
        built.append(name)
        if on_built is not None:
            on_built(Registered(name, artifacts, time.perf_counter() - started))
    return built


def remove(session: Session, name: str) -> list[str]:
    """Forget a model (card and artifacts) and delete files nothing else refers to.

    Refused while trials refer to it: their results would lose their model.
    """
    from sqlalchemy import func, select

    from orchestrator.store.models import Model, ModelCard, Trial

    rows = list(session.scalars(select(Model).where(Model.name == name)))
    card = session.scalar(select(ModelCard).where(ModelCard.name == name))
    if not rows and card is None:
        raise ValueError(f"no model named {name!r}")
    campaigns = sorted(
        set(
            session.scalars(
                select(Trial.campaign_id).where(Trial.model_id.in_([r.id for r in rows]))
            )
        )
    )
    if campaigns:
        listed = ", ".join(str(c) for c in campaigns)
        raise ValueError(
            f"model {name!r} is used by campaign(s) {listed}: their results refer to it"
        )
    paths = [r.path for r in rows] + [f["path"] for f in (card.data if card else {}).values()]
    paths += [f["path"] for r in rows for f in (r.recipe or {}).get("data", {}).values()]
    for row in rows:
        session.delete(row)
    if card is not None:
        session.delete(card)
    session.flush()
    deleted = []
    for path in set(paths):
        still_used = session.scalar(
            select(func.count()).select_from(Model).where(Model.path == path)
        )
        shared = any(
            f.get("path") == path
            for c in session.scalars(select(ModelCard))
            for f in c.data.values()
        ) or any(
            f.get("path") == path
            for m in session.scalars(select(Model))
            for f in (m.recipe or {}).get("data", {}).values()
        )
        if not still_used and not shared and Path(path).is_file():
            Path(path).unlink()
            deleted.append(path)
    return deleted


def tensorflow_available() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None for m in ("tensorflow", "tf2onnx", "sklearn")
    )
