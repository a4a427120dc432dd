"""`edgebench models build|list|show|add|remove`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from orchestrator.cli.store_access import console, fail, open_sessions
from orchestrator.settings import Settings

app = typer.Typer(help="Models to benchmark.", no_args_is_help=True)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("build")
def build(
    only: Optional[str] = typer.Option(None, help="Build just this model."),
    quick: bool = typer.Option(False, help="The small set used by quickstart and tests."),
) -> None:
    """Build models locally: seeded or locally trained weights, nothing downloaded.

    With no option: the full standard set (MobileNetV2, MobileNetV3-Small, EfficientNet-B0,
    ResNet-50 at several input sizes, and the digits CNN) in every format and precision.
    """
    from orchestrator.artifacts import registry

    if only and quick:
        fail("give --only NAME or --quick, not both")
    if only:
        names = [only]
    elif quick:
        names = list(registry.QUICK)
        if not registry.tensorflow_available():
            names = list(registry.TINY)
            console.print(
                "[yellow]note:[/yellow] digits_cnn skipped: building it needs TensorFlow "
                "(pip install 'edgebench[modelzoo]')"
            )
    else:
        names = registry.full_set()
    needs_tf = [n for n in names if n not in registry.TINY]
    if needs_tf and not registry.tensorflow_available():
        fail("building the standard model set needs TensorFlow: pip install 'edgebench[modelzoo]'")
    settings = Settings()
    sessions = open_sessions(settings)
    log_path = settings.home / "models-build.log"

    def report(done: registry.Registered) -> None:
        total = sum(size for _, _, size in done.artifacts)
        variants = ", ".join(f"{f} {p}" for f, p, _ in done.artifacts)
        console.print(f"built {done.name} in {done.seconds:.1f} s: {variants} ({_size(total)})")

    for name in names:  # one transaction per model: a failure keeps what was built
        try:
            with sessions.begin() as session:
                registry.build_and_register(
                    session, settings.artifact_dir(), [name], on_built=report, log_path=log_path
                )
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))


@app.command("list")
def list_models() -> None:
    """Registered models and every artifact: format, precision, size, hash."""
    from orchestrator.store import model_catalog

    with open_sessions()() as session:
        rows = model_catalog.artifacts(session)
    if not rows:
        console.print("no models yet: run `edgebench models build --quick`")
        return
    table = Table("name", "task", "format", "precision", "inputs", "size", "sha256")
    for row in rows:
        inputs = "; ".join(f"{i['name']} {i['shape']} {i['dtype']}" for i in row["inputs"])
        table.add_row(
            row["name"],
            row["task"] or "",
            row["format"],
            row["precision"],
            inputs,
            _size(row["bytes"]),
            row["sha256"][:12],
        )
    console.print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Model name.")) -> None:
    """A model's card (task, inputs, source, license, recipe) and its artifacts."""
    import json

    from rich.markup import escape

    from orchestrator.store import model_catalog

    with open_sessions()() as session:
        card = model_catalog.card(session, name)
    if card is None:
        fail(f"no model named {name!r}: see `edgebench models list`")
    for key in ("name", "family", "input_size", "version", "task", "layout", "source", "license"):
        console.print(f"[bold]{key}:[/bold] {card[key]}")
    console.print(f"[bold]preprocessing:[/bold] {card['preprocessing'].get('description', '')}")
    console.print(f"[bold]inputs:[/bold] {escape(json.dumps(card['inputs']))}")
    for role, stored in card["data"].items():
        console.print(
            f"[bold]{role} data:[/bold] {stored['sha256'][:12]} ({_size(stored['size'])})"
        )
    console.print(f"[bold]recipe:[/bold] {escape(json.dumps(card['recipe'], indent=1))}")
    table = Table("format", "precision", "size", "sha256", "made by")
    for artifact in card["artifacts"]:
        made_by = artifact["recipe"].get("converter") or artifact["recipe"].get("made_by", "")
        table.add_row(
            artifact["format"],
            artifact["precision"],
            _size(artifact["bytes"]),
            artifact["sha256"],
            str(made_by),
        )
    console.print(table)


@app.command("add")
def add(
    path: Path = typer.Argument(..., help="A .onnx, .tflite or OpenVINO .xml (with its .bin)."),
    name: str = typer.Option(..., "--name", help="The name campaigns will use."),
    precision: str = typer.Option("fp32", help="The model's precision: fp32, fp16 or int8."),
    input_shape: List[str] = typer.Option(
        [], "--input-shape", help="NAME=D1,D2,... for an input with dynamic dimensions."
    ),
    batch_axis: List[str] = typer.Option(
        [],
        "--batch-axis",
        help="NAME=K: the input's batch axis (from 0), or NAME=none for an input without one.",
    ),
    sample_input: Optional[Path] = typer.Option(
        None, help=".npz with one array per input (real values: token ids, sample rates...)."
    ),
    task: str = typer.Option("unspecified", help="What the model does."),
    license_name: str = typer.Option("unspecified", "--license", help="The model's license."),
    version: str = typer.Option("1", help="The model's version."),
) -> None:
    """Register your own model: it is loaded to check it, then its variants are derived."""
    from orchestrator.artifacts import input_shapes, user_models, validation

    if precision not in ("fp32", "fp16", "int8"):
        fail(f"--precision {precision!r}: expected fp32, fp16 or int8")
    settings = Settings()
    try:
        shapes = input_shapes.parse_shapes(input_shape)
        axes = input_shapes.parse_batch_axes(batch_axis)
        candidate = user_models.prepare(path, name, precision, shapes, sample_input, axes)
        with open_sessions(settings).begin() as session:
            stored = user_models.register(
                session,
                settings.artifact_dir(),
                candidate,
                source=str(path.resolve()),
                task=task,
                license_name=license_name,
                version=version,
                sample_path=sample_input,
            )
    except (user_models.ModelRejected, validation.InvalidModel) as exc:
        fail(str(exc))
    for fmt, variant, size in stored:
        console.print(f"added {name}: {fmt} {variant} ({_size(size)})")
    for note in candidate.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


@app.command("remove")
def remove(name: str = typer.Argument(..., help="Model name.")) -> None:
    """Forget a model and delete its files (refused while campaigns refer to it)."""
    from orchestrator.artifacts import registry

    try:
        with open_sessions().begin() as session:
            deleted = registry.remove(session, name)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"removed {name} ({len(deleted)} file(s) deleted)")


@app.command("setup-onnx2tf")
def setup_onnx2tf(
    python: Optional[str] = typer.Option(
        None, help="The Python to make the environment with (3.10 or later; default: this one)."
    ),
) -> None:
    """Install onnx2tf in an environment of its own, so `models add` derives TFLite variants
    of ONNX models (onnx2tf pins its own TensorFlow: it is kept apart from edgebench's)."""
    from orchestrator.artifacts import onnx2tf_env

    home = onnx2tf_env.default_home()
    console.print(f"installing {onnx2tf_env.REQUIREMENT} into {home} (about 2.5 GB, minutes)...")
    try:
        made = onnx2tf_env.install(python)
    except onnx2tf_env.SetupFailed as exc:
        fail(str(exc))
    console.print(f"onnx2tf ready: {made} (`models add` of an ONNX model now derives TFLite)")
    if os.environ.get(onnx2tf_env.PYTHON_VARIABLE):
        console.print(
            f"[yellow]note:[/yellow] {onnx2tf_env.PYTHON_VARIABLE} is set: `models add` uses "
            "that Python, not this environment"
        )
