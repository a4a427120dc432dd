"""Builds the built-in models into the content store and records them in the SQL store."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from orchestrator.artifacts import builtin_models, content_store
from orchestrator.store import repository


def build_and_register(
    session: Session, artifact_dir: Path, names: list[str] | None = None
) -> list[str]:
    chosen = names or list(builtin_models.BUILDERS)
    unknown = [n for n in chosen if n not in builtin_models.BUILDERS]
    if unknown:
        known = ", ".join(builtin_models.BUILDERS)
        raise ValueError(f"unknown model(s): {', '.join(unknown)} (known: {known})")
    built = []
    for name in chosen:
        model = builtin_models.BUILDERS[name]()
        digest, path = content_store.put(artifact_dir, model.onnx_bytes, ".onnx")
        repository.upsert_model(
            session,
            name=model.name,
            fmt="onnx",
            precision="fp32",
            sha256=digest,
            size=len(model.onnx_bytes),
            path=str(path.resolve()),
            inputs=model.inputs,
            recipe=model.recipe,
        )
        built.append(model.name)
    return built
