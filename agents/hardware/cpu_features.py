"""CPU instruction-set features that change inference speed, from ``/proc/cpuinfo``.

``cpu_features(root)`` returns::

    {"isa": "x86_64" | "x86" | "arm64" | "arm" | "riscv64" | None,
     "flags": [...],      # the relevant raw kernel flag names found, sorted
     "features": [...]}   # the same, normalised (see FEATURES below), sorted

Where the kernel writes the flags:

* x86: the ``flags`` line of each ``processor`` block (``arch/x86/kernel/cpu/proc.c``;
  names from ``arch/x86/include/asm/cpufeatures.h``). ``lm`` (long mode) marks a
  64-bit CPU.
* AArch64: the ``Features`` line (``arch/arm64/kernel/cpuinfo.c``, the hwcap names of
  ``Documentation/arch/arm64/elf_hwcaps.rst``): ``asimd`` is Advanced SIMD (NEON),
  ``asimddp`` the dot-product instructions, ``fphp``/``asimdhp`` half-precision
  scalar/vector arithmetic, ``sve``/``sve2``, ``i8mm``, ``bf16``.
* 32-bit ARM: the ``Features`` line too, with the 32-bit hwcap names
  (``arch/arm/kernel/setup.c``: ``half thumb fastmult vfp edsp neon ...``).

A feature counts only when every processor block lists it (on a heterogeneous CPU a
thread may land on any core). CPU frequency range and governor are in
``conditions.py``, not here. Nothing is guessed: an unreadable cpuinfo gives
``{"isa": None, "flags": [], "features": []}``. Importing this module does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

# Raw flag -> normalised feature name.
X86_FEATURES: Dict[str, str] = {
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512_vnni": "vnni",
    "avx_vnni": "vnni",
    "avx512_bf16": "bf16",
    "avx512_fp16": "fp16",
    "amx_tile": "amx",
    "amx_bf16": "amx-bf16",
    "amx_int8": "amx-int8",
}

ARM64_FEATURES: Dict[str, str] = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "fphp": "fp16",
    "asimdhp": "fp16",
    "asimdfhm": "fp16fml",
    "sve": "sve",
    "sve2": "sve2",
    "i8mm": "i8mm",
    "bf16": "bf16",
}

ARM32_FEATURES: Dict[str, str] = {
    "neon": "neon",
    "asimddp": "dotprod",  # reported by 32-bit kernels on v8.2 cores
    "asimdhp": "fp16",
    "i8mm": "i8mm",
    "bf16": "bf16",
}

# 32-bit ARM hwcap names that an AArch64 kernel never prints.
_ARM32_MARKERS = {"thumb", "vfp", "vfpv3", "vfpv4", "neon", "half", "edsp", "fastmult"}


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _blocks(text: str) -> List[Dict[str, str]]:
    """cpuinfo as a list of ``{key: value}`` per blank-line-separated block."""
    blocks: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _common_flags(blocks: List[Dict[str, str]], key: str) -> Optional[Set[str]]:
    """Flags listed in every block that has ``key``; None when no block has it."""
    common: Optional[Set[str]] = None
    for block in blocks:
        if key not in block:
            continue
        flags = set(block[key].split())
        common = flags if common is None else common & flags
    return common


def cpu_features(root: Path = Path("/")) -> Dict[str, Any]:
    """ISA, relevant raw flags and normalised features of the CPU under ``root``."""
    text = _read(Path(root) / "proc" / "cpuinfo")
    empty: Dict[str, Any] = {"isa": None, "flags": [], "features": []}
    if not text:
        return empty
    blocks = _blocks(text)

    x86 = _common_flags(blocks, "flags")
    if x86 is not None:
        isa = "x86_64" if "lm" in x86 else "x86"
        return _result(isa, x86, X86_FEATURES)

    arm = _common_flags(blocks, "Features")
    if arm is not None:
        if arm & _ARM32_MARKERS:
            return _result("arm", arm, ARM32_FEATURES)
        return _result("arm64", arm, ARM64_FEATURES)

    for block in blocks:
        isa_line = block.get("isa", "")
        match = re.match(r"rv(32|64)", isa_line)
        if match:
            return {"isa": f"riscv{match.group(1)}", "flags": [], "features": []}
    return empty


def _result(isa: str, raw: Set[str], table: Dict[str, str]) -> Dict[str, Any]:
    flags = sorted(flag for flag in raw if flag in table)
    return {"isa": isa, "flags": flags, "features": sorted({table[f] for f in flags})}
