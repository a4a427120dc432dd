"""Which single-board computer this is: NVIDIA Jetson or Raspberry Pi.

``detect_board(root)`` returns ``None`` on any other host, else a dict with
``family`` (``"jetson"`` or ``"raspberry-pi"``), ``model`` (the device-tree model
string, or None), ``device_class`` (one of ``DEVICE_CLASSES``, or None when the
board is recognised as the family but not as a model) and the keys of the family.

Jetson (``family == "jetson"``)
    * ``module``: the module part number (``"p3767-0005"``) taken from the
      device-tree ``compatible`` list (NUL-separated, e.g.
      ``nvidia,p3768-0000+p3767-0005 \\0 nvidia,p3767-0005 \\0 nvidia,tegra234``),
      ``module_name`` from ``JETSON_MODULES``; ``soc`` (``"tegra234"``).
    * ``l4t``: from the first line of ``/etc/nv_tegra_release``
      (``# R35 (release), REVISION: 4.1, ...`` -> ``"35.4.1"``); ``jetpack``: the
      JetPack release that ships that L4T (``JETPACK_FOR_L4T``), None when unknown.
    * ``device_class`` comes from the module part number when it is in
      ``JETSON_MODULES``, else from the model string (``JETSON_MODEL_PATTERNS``).

Raspberry Pi (``family == "raspberry-pi"``)
    * ``revision_code``: the ``Revision`` line of ``/proc/cpuinfo``, decoded per the
      Raspberry Pi documentation ("Raspberry Pi revision codes", new-style codes,
      bits ``NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR``) into ``type`` ("4B"),
      ``memory_mb``, ``manufacturer``, ``processor`` ("BCM2711") and
      ``board_revision`` ("1.4"). Old-style codes (before the Pi 2) are not decoded:
      those keys are None.
    * ``device_class`` comes from the decoded type, else from the device-tree
      ``compatible`` entry ``raspberrypi,<n>-model-b``, else from the model string.

Rules as in ``host.py``: files are read under ``root``; unreadable means None, never
a guess. Importing this module does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

DEVICE_CLASSES = (
    "jetson-nano",
    "jetson-tx2",
    "jetson-xavier-nx",
    "jetson-agx-xavier",
    "jetson-orin-nano",
    "jetson-orin-nx",
    "jetson-agx-orin",
    "raspberry-pi-3",
    "raspberry-pi-4",
    "raspberry-pi-5",
)

# --- Jetson -----------------------------------------------------------------------------

# L4T (Jetson Linux) release -> the JetPack release that contains it. From NVIDIA's
# JetPack SDK archive (https://developer.nvidia.com/embedded/jetpack-archive) and
# Jetson Linux archive (https://developer.nvidia.com/embedded/jetson-linux-archive),
# where each JetPack page names its L4T release. An L4T not listed here gives
# ``jetpack = None``: a later point release may or may not belong to a new JetPack,
# and this table does not guess. Keys are "major.minor.patch" as nv_tegra_release
# writes them (R36, REVISION: 4.0 -> "36.4.0").
JETPACK_FOR_L4T: Dict[str, str] = {
    "32.1.0": "4.2",
    "32.2.0": "4.2.1",
    "32.2.1": "4.2.2",
    "32.3.1": "4.3",
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "34.1.0": "5.0 DP",
    "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2.0": "7.0",
}

# Module (or single-part developer kit) board id -> device class, and per SKU a name.
# Board ids and SKUs: NVIDIA Jetson Linux Developer Guide ("Jetson Module EEPROM
# layout": 3448 Nano, 3310/3489/3636 TX2 family, 3668 Xavier NX, 2888 AGX Xavier;
# "Quick Start", supported modules: 3767 Orin NX/Nano, 3701 AGX Orin). Carrier
# boards (p3449, p3509, p3768, p3737, p2822) are deliberately absent: one carrier
# takes several modules (p3768 takes Orin Nano and Orin NX), so the module decides.
# p2771 (TX2 devkit), p2972 (AGX Xavier devkit) and p3450 (Nano devkit) are the
# upstream device-tree names of whole developer kits.
JETSON_BOARD_IDS: Dict[str, str] = {
    "3448": "jetson-nano",
    "3450": "jetson-nano",
    "3310": "jetson-tx2",
    "3489": "jetson-tx2",
    "3636": "jetson-tx2",  # TX2 NX: the same Tegra186 (TX2-class) SoC
    "2771": "jetson-tx2",
    "3668": "jetson-xavier-nx",
    "2888": "jetson-agx-xavier",
    "2972": "jetson-agx-xavier",
    "3701": "jetson-agx-orin",
    # 3767 is Orin NX or Orin Nano depending on the SKU: see JETSON_MODULES.
}

JETSON_MODULES: Dict[str, Tuple[str, str]] = {
    "p3448-0000": ("jetson-nano", "Jetson Nano (developer kit module)"),
    "p3448-0002": ("jetson-nano", "Jetson Nano"),
    "p3448-0003": ("jetson-nano", "Jetson Nano 2GB"),
    "p3668-0000": ("jetson-xavier-nx", "Jetson Xavier NX (developer kit module)"),
    "p3668-0001": ("jetson-xavier-nx", "Jetson Xavier NX"),
    "p3668-0003": ("jetson-xavier-nx", "Jetson Xavier NX 16GB"),
    "p2888-0001": ("jetson-agx-xavier", "Jetson AGX Xavier"),
    "p2888-0004": ("jetson-agx-xavier", "Jetson AGX Xavier 32GB"),
    "p2888-0005": ("jetson-agx-xavier", "Jetson AGX Xavier 64GB"),
    "p2888-0008": ("jetson-agx-xavier", "Jetson AGX Xavier Industrial"),
    "p3767-0000": ("jetson-orin-nx", "Jetson Orin NX 16GB"),
    "p3767-0001": ("jetson-orin-nx", "Jetson Orin NX 8GB"),
    "p3767-0003": ("jetson-orin-nano", "Jetson Orin Nano 8GB"),
    "p3767-0004": ("jetson-orin-nano", "Jetson Orin Nano 4GB"),
    "p3767-0005": ("jetson-orin-nano", "Jetson Orin Nano 8GB (developer kit module)"),
}

# Fallback on the device-tree model string (lower-cased), first match wins; the
# order matters ("orin nano" before "nano").
JETSON_MODEL_PATTERNS: List[Tuple[str, str]] = [
    (r"\borin nano\b", "jetson-orin-nano"),
    (r"\borin nx\b", "jetson-orin-nx"),
    (r"\bagx orin\b", "jetson-agx-orin"),
    (r"\bxavier nx\b", "jetson-xavier-nx"),
    (r"\bagx xavier\b|\bjetson-agx\b", "jetson-agx-xavier"),
    (r"\btx2\b", "jetson-tx2"),
    (r"\bjetson[ -]nano\b", "jetson-nano"),
]

_PART = re.compile(r"p(\d{4})-(\d{4})")
_L4T = re.compile(r"^#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", re.MULTILINE)

# --- Raspberry Pi -----------------------------------------------------------------------

# Raspberry Pi documentation, "Raspberry Pi revision codes", new-style codes
# (https://www.raspberrypi.com/documentation/computers/raspberry-pi.html#new-style-revision-codes).
PI_MEMORY_MB: Dict[int, int] = {0: 256, 1: 512, 2: 1024, 3: 2048, 4: 4096, 5: 8192, 6: 16384}
# 7 is "Other": the size is in the firmware, not in the code -> None.
PI_MANUFACTURERS: Dict[int, str] = {
    0: "Sony UK",
    1: "Egoman",
    2: "Embest",
    3: "Sony Japan",
    4: "Embest",
    5: "Stadium",
}
PI_PROCESSORS: Dict[int, str] = {
    0: "BCM2835",
    1: "BCM2836",
    2: "BCM2837",
    3: "BCM2711",
    4: "BCM2712",
}
PI_TYPES: Dict[int, str] = {
    0x00: "A",
    0x01: "B",
    0x02: "A+",
    0x03: "B+",
    0x04: "2B",
    0x05: "Alpha",
    0x06: "CM1",
    0x08: "3B",
    0x09: "Zero",
    0x0A: "CM3",
    0x0C: "Zero W",
    0x0D: "3B+",
    0x0E: "3A+",
    0x10: "CM3+",
    0x11: "4B",
    0x12: "Zero 2 W",
    0x13: "400",
    0x14: "CM4",
    0x15: "CM4S",
    0x17: "5",
    0x18: "CM5",
    0x19: "500/500+",
    0x1A: "CM5 Lite",
    0x1B: "CM0",
}
PI_TYPE_CLASSES: Dict[str, str] = {
    "2B": "raspberry-pi-2",
    "3B": "raspberry-pi-3",
    "3B+": "raspberry-pi-3",
    "3A+": "raspberry-pi-3",
    "4B": "raspberry-pi-4",
    "5": "raspberry-pi-5",
    "400": "raspberry-pi-400",
    "500/500+": "raspberry-pi-500",
    "CM3": "raspberry-pi-cm3",
    "CM3+": "raspberry-pi-cm3",
    "CM4": "raspberry-pi-cm4",
    "CM4S": "raspberry-pi-cm4",
    "CM5": "raspberry-pi-cm5",
    "CM5 Lite": "raspberry-pi-cm5",
    "Zero": "raspberry-pi-zero",
    "Zero W": "raspberry-pi-zero",
    "Zero 2 W": "raspberry-pi-zero-2-w",
}


# --- reading ----------------------------------------------------------------------------


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _read_dt(root: Path, name: str) -> Optional[str]:
    return _read(root / "proc" / "device-tree" / name) or _read(
        root / "sys" / "firmware" / "devicetree" / "base" / name
    )


def device_tree_model(root: Path) -> Optional[str]:
    text = _read_dt(Path(root), "model")
    if text is None:
        return None
    return text.replace("\x00", "").strip() or None


def device_tree_compatible(root: Path) -> List[str]:
    """The NUL-separated ``compatible`` property as a list ([] when absent)."""
    text = _read_dt(Path(root), "compatible")
    if not text:
        return []
    return [entry.strip() for entry in text.split("\x00") if entry.strip()]


def _cpuinfo_value(root: Path, key: str) -> Optional[str]:
    text = _read(Path(root) / "proc" / "cpuinfo")
    match = re.search(rf"^{re.escape(key)}\s*:\s*(\S.*)$", text or "", re.MULTILINE)
    return match.group(1).strip() if match else None


# --- Jetson -----------------------------------------------------------------------------


def parse_l4t(text: Optional[str]) -> Optional[str]:
    """``# R35 (release), REVISION: 4.1, ...`` -> ``"35.4.1"``; None if not that format."""
    match = _L4T.search(text or "")
    if not match:
        return None
    return ".".join(match.groups())


def jetpack_for_l4t(l4t: Optional[str]) -> Optional[str]:
    return JETPACK_FOR_L4T.get(l4t) if l4t else None


def _jetson_module(compatible: List[str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(part number, device class, module name)`` of the first known module or kit."""
    parts: List[str] = []
    for entry in compatible:
        if entry.startswith("nvidia,"):
            parts.extend(f"p{board}-{sku}" for board, sku in _PART.findall(entry))
    for part in parts:
        if part in JETSON_MODULES:
            device_class, name = JETSON_MODULES[part]
            return part, device_class, name
    for part in parts:
        board = part[1:5]
        if board in JETSON_BOARD_IDS:
            return part, JETSON_BOARD_IDS[board], None
    return None, None, None


def _jetson_class_from_model(model: Optional[str]) -> Optional[str]:
    lowered = (model or "").lower()
    for pattern, device_class in JETSON_MODEL_PATTERNS:
        if re.search(pattern, lowered):
            return device_class
    return None


def _is_jetson(root: Path, model: Optional[str], compatible: List[str]) -> bool:
    if (root / "etc" / "nv_tegra_release").is_file():
        return True
    if any(entry.startswith("nvidia,tegra") for entry in compatible):
        return True
    return "jetson" in (model or "").lower()


def jetson_facts(root: Path, model: Optional[str], compatible: List[str]) -> Dict[str, Any]:
    module, device_class, module_name = _jetson_module(compatible)
    if device_class is None:
        device_class = _jetson_class_from_model(model)
    soc = next(
        (entry.split(",", 1)[1] for entry in compatible if entry.startswith("nvidia,tegra")),
        None,
    )
    l4t = parse_l4t(_read(root / "etc" / "nv_tegra_release"))
    return {
        "family": "jetson",
        "model": model,
        "device_class": device_class,
        "module": module,
        "module_name": module_name,
        "soc": soc,
        "compatible": compatible,
        "l4t": l4t,
        "jetpack": jetpack_for_l4t(l4t),
    }


# --- Raspberry Pi -----------------------------------------------------------------------


def decode_pi_revision(code: Optional[str]) -> Optional[Dict[str, Any]]:
    """Decode a new-style revision code (hex text); None for old-style or unparseable.

    ``memory_mb`` is None for the "Other" memory field (7); names absent from the
    documented tables are None."""
    if not code:
        return None
    try:
        value = int(code, 16)
    except ValueError:
        return None
    if not value >> 23 & 1:  # old-style code: no bit fields
        return None
    board_type = PI_TYPES.get(value >> 4 & 0xFF)
    return {
        "type": board_type,
        "memory_mb": PI_MEMORY_MB.get(value >> 20 & 0x7),
        "manufacturer": PI_MANUFACTURERS.get(value >> 16 & 0xF),
        "processor": PI_PROCESSORS.get(value >> 12 & 0xF),
        "board_revision": f"1.{value & 0xF}",
    }


def _is_pi(root: Path, model: Optional[str], compatible: List[str]) -> bool:
    if any(entry.startswith("raspberrypi,") for entry in compatible):
        return True
    # Without a device tree (some containers), the Pi kernel's cpuinfo "Model" line.
    return (model or _cpuinfo_value(root, "Model") or "").startswith("Raspberry Pi")


def _pi_class(
    board_type: Optional[str], model: Optional[str], compatible: List[str]
) -> Optional[str]:
    if board_type is not None:
        return PI_TYPE_CLASSES.get(board_type)
    for entry in compatible:
        match = re.fullmatch(r"raspberrypi,(\d+)-model-[ab](?:-plus)?", entry)
        if match:
            return f"raspberry-pi-{match.group(1)}"
    match = re.match(r"Raspberry Pi (\d+) Model", model or "")
    return f"raspberry-pi-{match.group(1)}" if match else None


def pi_facts(root: Path, model: Optional[str], compatible: List[str]) -> Dict[str, Any]:
    if model is None:
        model = _cpuinfo_value(root, "Model")
    code = _cpuinfo_value(root, "Revision")
    code = code.lower() if code else None
    decoded = decode_pi_revision(code) or {}
    board_type = decoded.get("type")
    return {
        "family": "raspberry-pi",
        "model": model,
        "device_class": _pi_class(board_type, model, compatible),
        "compatible": compatible,
        "revision_code": code,
        "type": board_type,
        "memory_mb": decoded.get("memory_mb"),
        "manufacturer": decoded.get("manufacturer"),
        "processor": decoded.get("processor"),
        "board_revision": decoded.get("board_revision"),
    }


# --- entry point ------------------------------------------------------------------------


def detect_board(root: Path = Path("/")) -> Optional[Dict[str, Any]]:
    """Jetson or Raspberry Pi facts for the host under ``root``; None on other hosts."""
    root = Path(root)
    model = device_tree_model(root)
    compatible = device_tree_compatible(root)
    if _is_jetson(root, model, compatible):
        return jetson_facts(root, model, compatible)
    if _is_pi(root, model, compatible):
        return pi_facts(root, model, compatible)
    return None
