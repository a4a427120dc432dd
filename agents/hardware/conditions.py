"""The conditions that explain a number: clocks, temperatures, load and throttling.

A trial records ``snapshot()`` before and after its timing loop. The snapshot holds
what the kernel and the board firmware say at that moment:

* ``governors``, ``freq_khz``, ``freq_range_khz``, ``scaling_range_khz``: cpufreq,
  per logical CPU, from ``/sys/devices/system/cpu/cpuN/cpufreq/`` or, where a kernel
  only exposes policies, ``/sys/devices/system/cpu/cpufreq/policyN/`` (mapped to the
  CPUs in its ``affected_cpus``). All in kHz, as the kernel writes them.
  ``freq_range_khz`` is the hardware range (``cpuinfo_min_freq``/``cpuinfo_max_freq``);
  ``scaling_range_khz`` is the range the governor may use (``scaling_min_freq``/
  ``scaling_max_freq``), which users, nvpmodel and jetson_clocks change.
* ``online_cpus``: ``/sys/devices/system/cpu/online`` as a list (nvpmodel modes take
  cores offline).
* ``thermal_c``: every ``/sys/class/thermal/thermal_zoneN`` in degrees Celsius
  (the kernel writes millidegrees), keyed by the zone's ``type``; where several zones
  share a type, each of them is keyed ``"<type>:thermal_zoneN"``; a zone without a
  readable type is keyed ``"thermal_zoneN"``.
* ``loadavg``: the three averages of ``/proc/loadavg``.
* ``thermal_throttle_count``: x86 (Intel ``therm_throt``) cumulative counters
  ``cpuN/thermal_throttle/{core,package}_throttle_count``.
* ``pi_throttled``: ``vcgencmd get_throttled`` decoded (Raspberry Pi).
* ``jetson``: ``nvpmodel -q`` and whether CPU clocks are locked (Jetson).

Rules, as in ``host.py``: every file is read under ``root`` so tests use fixture trees;
a value that cannot be read or parsed is ``None`` (a dict keeps only the entries that
could be read, and is ``None`` when none could) -- never 0 and never a guess. Commands
go through the ``run`` callable (argv -> stdout text, or None when the command is
missing, fails or times out). Importing this module does nothing.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

COMMAND_TIMEOUT_S = 5.0

# vcgencmd get_throttled bits (Raspberry Pi documentation, "vcgencmd", get_throttled).
PI_THROTTLE_BITS: Dict[str, int] = {
    "under_voltage_now": 0,
    "freq_capped_now": 1,
    "throttled_now": 2,
    "soft_temp_limit_now": 3,
    "under_voltage_occurred": 16,
    "freq_capped_occurred": 17,
    "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}

# A CPU under the performance governor whose current frequency is more than this
# fraction below its scaling maximum counts as held back. Drivers that derive the
# current frequency from activity counters (Tegra, some ARM SoCs) report a value a
# little off the nominal operating point; 2 % absorbs that and nothing real.
PERFORMANCE_FREQ_TOLERANCE = 0.02

_CPU_DIR = re.compile(r"^cpu(\d+)$")
_POLICY_DIR = re.compile(r"^policy(\d+)$")
_ZONE_DIR = re.compile(r"^thermal_zone(\d+)$")

Run = Callable[[List[str]], Optional[str]]


def run_command(argv: List[str]) -> Optional[str]:
    """stdout of ``argv``; None when it is missing, fails, exits non-zero or times out."""
    try:
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout


# --- reading helpers --------------------------------------------------------------------


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _read_str(path: Path) -> Optional[str]:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    return text or None


def _read_int(path: Path) -> Optional[int]:
    text = _read_str(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:  # e.g. "<unknown>" from scaling_cur_freq
        return None


def _numbered_dirs(parent: Path, pattern: re.Pattern) -> List[Tuple[int, Path]]:
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = pattern.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def parse_cpu_list(text: Optional[str]) -> Optional[List[int]]:
    """A kernel CPU list ("0-3,6", "0 1 2 3") as sorted ints; None if unparseable."""
    if text is None:
        return None
    cpus = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        bounds = part.split("-")
        try:
            if len(bounds) == 1:
                cpus.add(int(bounds[0]))
            elif len(bounds) == 2:
                cpus.update(range(int(bounds[0]), int(bounds[1]) + 1))
            else:
                return None
        except ValueError:
            return None
    return sorted(cpus)


# --- cpufreq ----------------------------------------------------------------------------


def _cpu_root(root: Path) -> Path:
    return Path(root) / "sys" / "devices" / "system" / "cpu"


def cpufreq_dirs(root: Path) -> Dict[str, Path]:
    """``{"cpu0": <cpufreq dir>, ...}``: per-CPU ``cpuN/cpufreq`` where present, else the
    ``cpufreq/policyN`` whose ``affected_cpus`` lists the CPU."""
    base = _cpu_root(root)
    dirs: Dict[int, Path] = {}
    for number, cpu_dir in _numbered_dirs(base, _CPU_DIR):
        if (cpu_dir / "cpufreq").is_dir():
            dirs[number] = cpu_dir / "cpufreq"
    for _, policy in _numbered_dirs(base / "cpufreq", _POLICY_DIR):
        for cpu in parse_cpu_list(_read(policy / "affected_cpus")) or []:
            dirs.setdefault(cpu, policy)
    return {f"cpu{n}": dirs[n] for n in sorted(dirs)}


def _per_cpu(dirs: Dict[str, Path], read: Callable[[Path], Any]) -> Optional[Dict[str, Any]]:
    values = {}
    for cpu, directory in dirs.items():
        value = read(directory)
        if value is not None:
            values[cpu] = value
    return values or None


def _pair(directory: Path, low: str, high: str) -> Optional[List[int]]:
    lo, hi = _read_int(directory / low), _read_int(directory / high)
    return [lo, hi] if lo is not None and hi is not None else None


def governors(root: Path) -> Optional[Dict[str, str]]:
    return _per_cpu(cpufreq_dirs(root), lambda d: _read_str(d / "scaling_governor"))


def current_freq_khz(root: Path) -> Optional[Dict[str, int]]:
    return _per_cpu(cpufreq_dirs(root), lambda d: _read_int(d / "scaling_cur_freq"))


def freq_range_khz(root: Path) -> Optional[Dict[str, List[int]]]:
    """Hardware range: ``[cpuinfo_min_freq, cpuinfo_max_freq]`` per CPU."""
    return _per_cpu(cpufreq_dirs(root), lambda d: _pair(d, "cpuinfo_min_freq", "cpuinfo_max_freq"))


def scaling_range_khz(root: Path) -> Optional[Dict[str, List[int]]]:
    """Range the governor may use: ``[scaling_min_freq, scaling_max_freq]`` per CPU."""
    return _per_cpu(cpufreq_dirs(root), lambda d: _pair(d, "scaling_min_freq", "scaling_max_freq"))


def online_cpus(root: Path) -> Optional[List[int]]:
    return parse_cpu_list(_read_str(_cpu_root(root) / "online"))


def thermal_throttle_count(root: Path) -> Optional[Dict[str, Dict[str, int]]]:
    """x86 cumulative thermal-throttle counters per CPU (absent elsewhere)."""
    counts = {}
    for number, cpu_dir in _numbered_dirs(_cpu_root(root), _CPU_DIR):
        entry = {}
        for kind in ("core", "package"):
            value = _read_int(cpu_dir / "thermal_throttle" / f"{kind}_throttle_count")
            if value is not None:
                entry[kind] = value
        if entry:
            counts[f"cpu{number}"] = entry
    return counts or None


# --- thermal, load ----------------------------------------------------------------------


def thermal_c(root: Path) -> Optional[Dict[str, float]]:
    """All thermal zones in degrees Celsius, keyed by type (see the module docstring)."""
    zones = []
    for number, zone in _numbered_dirs(Path(root) / "sys" / "class" / "thermal", _ZONE_DIR):
        millidegrees = _read_int(zone / "temp")
        if millidegrees is not None:
            zones.append((number, _read_str(zone / "type"), millidegrees / 1000))
    type_counts: Dict[str, int] = {}
    for _, kind, _ in zones:
        if kind is not None:
            type_counts[kind] = type_counts.get(kind, 0) + 1
    temps = {}
    for number, kind, celsius in zones:
        if kind is None:
            key = f"thermal_zone{number}"
        elif type_counts[kind] > 1:
            key = f"{kind}:thermal_zone{number}"
        else:
            key = kind
        temps[key] = celsius
    return temps or None


def loadavg(root: Path) -> Optional[List[float]]:
    text = _read(Path(root) / "proc" / "loadavg")
    if not text:
        return None
    fields = text.split()
    try:
        return [float(field) for field in fields[:3]] if len(fields) >= 3 else None
    except ValueError:
        return None


# --- Raspberry Pi -----------------------------------------------------------------------


def parse_throttled(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """Decode ``vcgencmd get_throttled`` output (``throttled=0x50005``)."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", text or "")
    if not match:
        return None
    raw = match.group(1)
    value = int(raw, 16)
    decoded: Dict[str, Any] = {"raw": raw}
    for name, bit in PI_THROTTLE_BITS.items():
        decoded[name] = bool(value >> bit & 1)
    return decoded


def pi_throttled(run: Run = run_command) -> Optional[Dict[str, Any]]:
    return parse_throttled(run(["vcgencmd", "get_throttled"]))


# --- Jetson -----------------------------------------------------------------------------


def is_jetson(root: Path) -> bool:
    return (Path(root) / "etc" / "nv_tegra_release").is_file()


def parse_nvpmodel(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """``nvpmodel -q`` output: ``NV Power Mode: <name>`` then the mode id on a line.

    Returns ``{"nvpmodel": name, "nvpmodel_id": id or None}``; other lines (NVPM
    warnings) are ignored."""
    if not text:
        return None
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        match = re.match(r"NV Power Mode\s*:\s*(.+)$", line)
        if not match:
            continue
        mode_id = None
        for following in lines[index + 1 :]:
            if re.fullmatch(r"\d+", following):
                mode_id = int(following)
                break
            if following and not following.startswith("NVPM"):
                break
        return {"nvpmodel": match.group(1).strip(), "nvpmodel_id": mode_id}
    return None


def clocks_locked(root: Path) -> Optional[bool]:
    """Jetson: True when every CPU's ``scaling_min_freq`` equals its ``scaling_max_freq``
    (what jetson_clocks does to the CPUs; GPU and EMC clocks are not looked at).
    None when the board is not a Jetson or any CPU's range cannot be read."""
    if not is_jetson(root):
        return None
    dirs = cpufreq_dirs(root)
    if not dirs:
        return None
    ranges = [_pair(d, "scaling_min_freq", "scaling_max_freq") for d in dirs.values()]
    if any(r is None for r in ranges):
        return None
    return all(lo == hi for lo, hi in ranges)


def jetson(root: Path, run: Run = run_command) -> Optional[Dict[str, Any]]:
    """nvpmodel mode and clock lock; None unless the root is a Jetson
    (``etc/nv_tegra_release``) or ``nvpmodel -q`` answers."""
    jetson_board = is_jetson(root)
    mode = parse_nvpmodel(run(["nvpmodel", "-q"]))
    if not jetson_board and mode is None:
        return None
    facts: Dict[str, Any] = {"nvpmodel": None, "nvpmodel_id": None}
    if mode:
        facts.update(mode)
    facts["clocks_locked"] = clocks_locked(root)
    return facts


# --- the snapshot -----------------------------------------------------------------------


def snapshot(root: Path = Path("/"), run: Run = run_command) -> Dict[str, Any]:
    """Everything above, as a JSON-safe dict. Unreadable values are None."""
    root = Path(root)
    return {
        "governors": governors(root),
        "freq_khz": current_freq_khz(root),
        "freq_range_khz": freq_range_khz(root),
        "scaling_range_khz": scaling_range_khz(root),
        "online_cpus": online_cpus(root),
        "thermal_c": thermal_c(root),
        "loadavg": loadavg(root),
        "thermal_throttle_count": thermal_throttle_count(root),
        "pi_throttled": pi_throttled(run),
        "jetson": jetson(root, run),
    }


def hottest_c(snap: Dict[str, Any]) -> Optional[float]:
    """The highest zone temperature in a snapshot; None without thermal zones."""
    temps = (snap or {}).get("thermal_c") or {}
    values = [t for t in temps.values() if isinstance(t, (int, float))]
    return max(values) if values else None


# --- throttling verdict -----------------------------------------------------------------

_PI_NOW = ("under_voltage_now", "freq_capped_now", "throttled_now", "soft_temp_limit_now")
_PI_OCCURRED = (
    "under_voltage_occurred",
    "freq_capped_occurred",
    "throttled_occurred",
    "soft_temp_limit_occurred",
)


def _pi_verdict(before: Optional[dict], after: Optional[dict]) -> Optional[bool]:
    if not after:
        # Only "now" bits at the start say anything about the trial.
        if before and any(before.get(k) for k in _PI_NOW):
            return True
        return None
    if any(after.get(k) for k in _PI_NOW):
        return True
    if before and any(before.get(k) for k in _PI_NOW):
        return True
    if before:
        if any(after.get(k) and not before.get(k) for k in _PI_OCCURRED):
            return True
        return False
    # No "before": sticky bits already set may predate the trial, so they decide nothing.
    if any(after.get(k) for k in _PI_OCCURRED):
        return None
    return False


def _counter_verdict(before: Optional[dict], after: Optional[dict]) -> Optional[bool]:
    if not before or not after:
        return None
    compared = False
    for cpu, counts in after.items():
        for kind, value in counts.items():
            previous = (before.get(cpu) or {}).get(kind)
            if previous is None:
                continue
            compared = True
            if value > previous:
                return True
    return False if compared else None


def _performance_verdict(snap: Optional[dict]) -> Optional[bool]:
    """One moment: a CPU under the performance governor running below its scaling
    maximum (hardware maximum where the scaling range is unreadable) is held back."""
    if not snap:
        return None
    governors_ = snap.get("governors") or {}
    freqs = snap.get("freq_khz") or {}
    scaling = snap.get("scaling_range_khz") or {}
    hardware = snap.get("freq_range_khz") or {}
    verdict = None
    for cpu, governor in governors_.items():
        if governor != "performance" or freqs.get(cpu) is None:
            continue
        limits = scaling.get(cpu) or hardware.get(cpu)
        if not limits:
            continue
        if freqs[cpu] < limits[1] * (1 - PERFORMANCE_FREQ_TOLERANCE):
            return True
        verdict = False
    return verdict


def throttled_during(before: Optional[dict], after: Optional[dict]) -> Optional[bool]:
    """Did throttling hold the trial back between two snapshots?

    Evidence, strongest first:

    1. Raspberry Pi firmware bits (``pi_throttled``). True if a throttling-related
       "now" bit (under-voltage, frequency capped, throttled, soft temperature limit)
       is set in ``before`` or ``after``, or if an "occurred" bit is set in ``after``
       but not in ``before`` (the firmware keeps those bits until reboot, so a newly
       set one means it happened during the trial). False when both were read and
       none of that holds. Without ``before``, "occurred" bits already set in
       ``after`` could predate the trial: no verdict from them.
    2. x86 thermal-throttle counters: True if any counter grew, False if they were
       compared and none did.
    3. cpufreq samples at the two moments: a CPU with the performance governor whose
       current frequency is more than ``PERFORMANCE_FREQ_TOLERANCE`` below its scaling
       maximum (hardware maximum if that is unreadable) is held back -> True; such CPUs
       at their maximum in both samples -> False. Samples can miss a short episode in
       between; other governors change frequency on their own, so they say nothing.

    Any True wins. Otherwise False if any source gave a clean verdict, else None
    (no evidence either way: e.g. a VM without cpufreq, counters and vcgencmd).
    """
    before = before or {}
    after = after or {}
    verdicts = [
        _pi_verdict(before.get("pi_throttled"), after.get("pi_throttled")),
        _counter_verdict(before.get("thermal_throttle_count"), after.get("thermal_throttle_count")),
        _performance_verdict(before),
        _performance_verdict(after),
    ]
    if any(v is True for v in verdicts):
        return True
    if any(v is False for v in verdicts):
        return False
    return None


# --- thermal protocol -------------------------------------------------------------------


def wait_until_cool(
    target_c: float,
    timeout_s: float,
    root: Path = Path("/"),
    poll_s: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Tuple[bool, Optional[float]]:
    """Wait until the hottest thermal zone is strictly below ``target_c``.

    Returns ``(reached, last hottest temperature)``. When the first reading finds no
    readable thermal zone there is nothing to wait for: ``(True, None)`` -- the None
    in the record shows the protocol could not be applied. A zone that becomes
    unreadable later does not count as cool. Gives up with ``(False, last)`` once
    ``timeout_s`` has passed, by the clock or by the time slept (so a fake ``sleep``
    in tests ends the loop too).
    """
    start = clock()
    slept = 0.0
    last: Optional[float] = None
    first = True
    while True:
        temps = thermal_c(root)
        hottest = max(temps.values()) if temps else None
        if hottest is None and first:
            return True, None
        first = False
        if hottest is not None:
            last = hottest
            if hottest < target_c:
                return True, hottest
        remaining = timeout_s - max(slept, clock() - start)
        if remaining <= 0:
            return False, last
        pause = min(poll_s, remaining)
        sleep(pause)
        slept += pause
