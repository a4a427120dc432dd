"""Facts about the host: CPU, architecture, cores, memory, OS, device-tree model."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any, Dict, Optional


def _read(root: Path, relative: str) -> Optional[str]:
    try:
        return (root / relative).read_text(errors="replace")
    except OSError:
        return None


def cpu_model(root: Path) -> Optional[str]:
    """The CPU's name from /proc/cpuinfo ('model name' on x86, 'Model'/'Hardware' on ARM)."""
    text = _read(root, "proc/cpuinfo")
    if not text:
        return None
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        match = re.search(rf"^{re.escape(key)}\s*:\s*(.+)$", text, re.MULTILINE)
        if match and match.group(1).strip():
            return match.group(1).strip()
    return None


def logical_cores(root: Path) -> Optional[int]:
    text = _read(root, "proc/cpuinfo")
    if not text:
        return None
    count = len(re.findall(r"^processor\s*:", text, re.MULTILINE))
    return count or None


def memory_mb(root: Path) -> Optional[int]:
    text = _read(root, "proc/meminfo")
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", text or "", re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def os_name(root: Path) -> Optional[str]:
    text = _read(root, "etc/os-release") or _read(root, "usr/lib/os-release")
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text or "", re.MULTILINE)
    return match.group(1) if match else None


def kernel(root: Path) -> Optional[str]:
    text = _read(root, "proc/sys/kernel/osrelease")
    return text.strip() if text else None


def device_tree_model(root: Path) -> Optional[str]:
    """Board name on ARM boards (Raspberry Pi, Jetson); absent on x86."""
    text = _read(root, "proc/device-tree/model") or _read(
        root, "sys/firmware/devicetree/base/model"
    )
    return text.replace("\x00", "").strip() if text else None


def device_class(arch: str, board: Optional[str]) -> str:
    """A coarse class for matching campaigns: a known board, else '<arch>-cpu'."""
    if board:
        lowered = board.lower()
        pi = re.search(r"raspberry pi (\d+)", lowered)
        if pi:
            return f"raspberry-pi-{pi.group(1)}"
        if "jetson" in lowered or "nvidia" in lowered:
            slug = re.sub(r"[^a-z0-9]+", "-", lowered).strip("-")
            return slug
    return f"{arch}-cpu"


def loadgen_version() -> Optional[str]:
    """MLPerf LoadGen's version where it is installed (the mlperf_* scenarios), found
    without importing it; None where it is not."""
    from importlib import metadata

    try:
        return metadata.version("mlcommons-loadgen")
    except metadata.PackageNotFoundError:
        return None


def probe(root: Path = Path("/")) -> Dict[str, Any]:
    """All host facts. Values that cannot be read are None, never guessed."""
    from agents.hardware import accelerators, boards, cpu_features

    root = Path(root)
    features = cpu_features.cpu_features(root)
    arch = platform.machine() if root == Path("/") else features.get("isa")
    board_info = boards.detect_board(root)
    board = device_tree_model(root)
    facts: Dict[str, Any] = {
        "cpu_model": cpu_model(root),
        "arch": arch,
        "logical_cores": logical_cores(root) or (os.cpu_count() if root == Path("/") else None),
        "memory_mb": memory_mb(root),
        "os": os_name(root),
        "kernel": kernel(root),
        "board": board,
        "board_info": board_info,
        "accelerators": accelerators.detect_accelerators(root),
        "cpu_features": features.get("features"),
        "python": platform.python_version(),
        "loadgen": loadgen_version(),
    }
    known_class = board_info.get("device_class") if board_info else None
    facts["device_class"] = known_class or device_class(arch or "unknown", board)
    return facts
