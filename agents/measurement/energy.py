"""Energy meters synchronised to the measured window.

A meter measures the energy used between ``start()`` and ``stop()``:

    meter = detect()                 # None when this host has no meter
    meter.start()
    ...run the measured window...
    joules = meter.stop()            # None when the readings failed
    window_s = meter.window_s        # the span the joules cover

No meter, or a meter whose readings failed, gives ``None`` -- never ``0.0``: a zero
would read as "this inference cost no energy". ``energy_per_inference_mj`` keeps that
rule and subtracts an idle baseline measured with ``measure_idle_power``.

Meters (``name``):

* ``"rapl"`` -- Intel/AMD RAPL through the Linux powercap sysfs class
  (``/sys/class/powercap/intel-rapl:N/energy_uj``). The counters are read at
  ``start()`` and ``stop()``; the top-level *package* zones (``name`` starting with
  ``package-``) are summed. Subzones (``intel-rapl:N:M``: core, uncore, dram) are part
  of their package, ``psys`` (platform) contains the packages, and the
  ``intel-rapl-mmio`` control type re-exposes the same package counter: all three are
  left out so nothing is counted twice. ``energy_uj`` wraps at
  ``max_energy_range_uj`` (about 262 kJ on client parts: some 70 minutes at 65 W); a
  wrap between two reads is added back. To stay correct over windows long enough to
  wrap more than once, a background thread folds the counters in every ``poll_s``
  seconds (default 30 s; ``poll_s=None`` reads at start and stop only). Since Linux
  5.10 ``energy_uj`` is readable by root only; an unreadable counter is "no meter".
* ``"ina3221"`` -- the INA3221 power monitors of NVIDIA Jetson boards through hwmon
  (``/sys/class/hwmon/hwmonN`` whose ``name`` is ``ina3221``; L4T 35 / JetPack 5 and
  later). Channels 1-3 only (``in4..in7`` are shunt voltages, ``curr4`` a sum):
  power = ``in{N}_input`` (mV) x ``curr{N}_input`` (mA) / 1e6 W, or ``power{N}_input``
  (uW, the hwmon unit) where that file exists. When a channel is labelled ``VDD_IN``
  (or ``POM_5V_IN``) -- the module's total input -- only those channels are summed,
  because the other rails are fed from it; otherwise every channel is summed
  (disabled channels, ``in{N}_enable`` = 0, and channels labelled ``NC`` are
  skipped), which can count nested rails twice and leaves unmonitored rails out: an
  approximation of module power. The older ``ina3221x`` IIO driver (JetPack 4,
  Python 3.6) is not supported.
* ``"pi5-pmic"`` -- the Raspberry Pi 5 PMIC ADCs read with ``vcgencmd
  pmic_read_adc``: the sum of V x A over the rails that report both. It covers the
  PMIC's rails only -- not the 5 V that goes to USB, HATs or fans, nor the PMIC's
  own conversion losses -- so it reads below wall power; no correction is applied.
* ``"command"`` -- an external command (a USB power meter, a smart plug script), run
  with ``shlex.split`` (no shell) once per sample.

The external command contract: each run prints the *instantaneous power in watts*
on stdout and exits with status 0. The last non-empty line of stdout is read; it is a
number with an optional unit: ``3.2``, ``3.2 W``, ``3.2W``, ``3200 mW`` or
``0.0032 kW``. A non-zero exit, a timeout, a missing program, or output that is not
such a number (or is negative, NaN or infinite) skips that sample. If every sample
fails, ``stop()`` returns ``None``.

The sampling meters (``ina3221``, ``pi5-pmic``, ``command``) read once in
``start()``, then in a daemon thread every ``interval_s``, and once more in ``stop()``
after joining the thread; power is integrated over ``time.monotonic()`` with the
trapezoid rule. Fewer than two good samples gives ``None``. A sample is stamped at the
midpoint of its read, so a slow command is placed where it most likely measured.
Sampling costs CPU (a subprocess per sample for ``pi5-pmic`` and ``command``); the
idle baseline pays the same cost, so it cancels in the subtraction.

Every path is read under a ``root`` so tests point the meters at recorded trees;
importing this module touches no file and starts no thread.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

__all__ = [
    "CommandMeter",
    "EnergyMeter",
    "Ina3221Channel",
    "Ina3221Meter",
    "PmicMeter",
    "RaplMeter",
    "RaplZone",
    "detect",
    "energy_per_inference_mj",
    "find_ina3221_channels",
    "find_rapl_zones",
    "measure_idle_power",
    "parse_pmic_read_adc",
    "parse_watts",
    "trapezoid_joules",
]

#: Labels of the INA3221 channel that carries a Jetson module's whole input.
TOTAL_INPUT_LABELS = ("VDD_IN", "POM_5V_IN")

_RAPL_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_HWMON = re.compile(r"^hwmon\d+$")


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# --- base -----------------------------------------------------------------------------


class EnergyMeter:
    """A meter of the energy used between ``start()`` and ``stop()``.

    ``window_s`` is set by ``stop()`` to the span, in seconds, that the returned
    joules cover (None before the first stop or when the readings failed); divide by
    it, not by a separately timed interval, to get the mean power.
    ``source`` says what is measured (zones, rails, command), for the results.
    A meter can be started again after ``stop()``.
    """

    name: str = "meter"

    def __init__(self) -> None:
        self.window_s: Optional[float] = None
        self.source: str = ""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> Optional[float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.source}>"


# --- RAPL (powercap sysfs) ------------------------------------------------------------


@dataclass(frozen=True)
class RaplZone:
    path: Path  # the zone folder, e.g. <root>/sys/class/powercap/intel-rapl:0
    name: str  # its ``name`` file, e.g. "package-0"
    max_range_uj: int  # ``max_energy_range_uj``: energy_uj wraps to 0 past this


def find_rapl_zones(root: Path = Path("/")) -> List[RaplZone]:
    """The top-level RAPL package zones under ``root`` whose counters can be read.

    Only ``intel-rapl:N`` (no subzones, no ``intel-rapl-mmio``) with a ``name``
    starting with ``package`` and a readable ``energy_uj`` and ``max_energy_range_uj``.
    """
    base = Path(root) / "sys" / "class" / "powercap"
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    zones: List[Tuple[int, RaplZone]] = []
    for entry in entries:
        match = _RAPL_ZONE.match(entry.name)
        if not match:
            continue
        name = _read_text(entry / "name")
        if name is None or not name.startswith("package"):
            continue
        try:
            _read_int(entry / "energy_uj")  # root-only since Linux 5.10
            max_range = _read_int(entry / "max_energy_range_uj")
        except (OSError, ValueError):
            continue
        if max_range <= 0:
            continue
        zones.append((int(match.group(1)), RaplZone(entry, name, max_range)))
    return [zone for _, zone in sorted(zones, key=lambda item: item[0])]


class RaplMeter(EnergyMeter):
    """Sum of the RAPL package counters between start() and stop(), wraps handled.

    ``poll()`` folds the counters' progress since the last read into the total; it
    runs at start and stop and, unless ``poll_s`` is None, every ``poll_s`` seconds in
    a daemon thread, so a window may span several wraps as long as no counter wraps
    twice between two polls.
    """

    name = "rapl"

    def __init__(self, zones: Sequence[RaplZone], poll_s: Optional[float] = 30.0) -> None:
        super().__init__()
        if not zones:
            raise ValueError("RaplMeter needs at least one zone")
        if poll_s is not None and poll_s <= 0:
            raise ValueError("poll_s must be positive or None")
        self.zones = list(zones)
        self.poll_s = poll_s
        self.source = "+".join(f"{z.path.name}({z.name})" for z in self.zones)
        self._lock = threading.Lock()
        self._last: Optional[List[int]] = None
        self._total_uj = 0
        self._failed = False
        self._t0: Optional[float] = None
        self._stop_event = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read_counters(self) -> Optional[List[int]]:
        try:
            return [_read_int(zone.path / "energy_uj") for zone in self.zones]
        except (OSError, ValueError):
            return None

    def poll(self) -> bool:
        """Add each counter's progress since the previous read (one wrap allowed).

        False when the counters could not be read this time; the progress is then
        picked up by the next poll that succeeds (``stop()`` fails the window if its
        own final read fails).
        """
        with self._lock:
            if self._last is None or self._failed:
                return False
            now = self._read_counters()
            if now is None:
                return False
            for zone, before, after in zip(self.zones, self._last, now):
                delta = after - before
                if delta < 0:
                    delta += zone.max_range_uj
                if delta < 0:  # counter above its declared range: not a counter we trust
                    self._failed = True
                    return False
                self._total_uj += delta
            self._last = now
            return True

    @property
    def joules_so_far(self) -> float:
        """Energy folded in by the polls of the current window so far."""
        with self._lock:
            return self._total_uj / 1e6

    def _run(self) -> None:
        assert self.poll_s is not None
        while not self._stop_event.wait(self.poll_s):
            self.poll()

    def start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("RaplMeter.start() called twice without stop()")
        self.window_s = None
        with self._lock:
            self._total_uj = 0
            self._last = self._read_counters()
            self._failed = self._last is None
        self._t0 = time.monotonic()
        if self.poll_s is not None:
            self._stop_event.clear()
            self._thread = threading.Thread(
                target=self._run, name="edgebench-rapl-poll", daemon=True
            )
            self._thread.start()

    def stop(self) -> Optional[float]:
        if self._t0 is None:
            raise RuntimeError("RaplMeter.stop() called without start()")
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
        final_read_ok = self.poll()
        elapsed = time.monotonic() - self._t0
        self._t0 = None
        with self._lock:
            self._last = None
            if self._failed or not final_read_ok:
                return None
            self.window_s = elapsed
            return self._total_uj / 1e6


# --- sampling meters ------------------------------------------------------------------


def trapezoid_joules(samples: Sequence[Tuple[float, float]]) -> Optional[float]:
    """Integrate ``(monotonic seconds, watts)`` samples with the trapezoid rule.

    Samples must be in time order. Fewer than two samples: None (no interval).
    """
    if len(samples) < 2:
        return None
    total = 0.0
    for (t0, p0), (t1, p1) in zip(samples, samples[1:]):
        total += (t1 - t0) * (p0 + p1) / 2.0
    return total


class _SamplingMeter(EnergyMeter):
    """Samples ``read_power_w()`` in a daemon thread and integrates it."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = float(interval_s)
        self.samples: List[Tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._running = False

    def read_power_w(self) -> Optional[float]:
        """Instantaneous power in watts, or None when this reading failed."""
        raise NotImplementedError

    def _sample(self) -> None:
        before = time.monotonic()
        try:
            watts = self.read_power_w()
        except Exception:  # a meter must never break the trial: the sample is skipped
            watts = None
        after = time.monotonic()
        if watts is not None and math.isfinite(watts):
            self.samples.append(((before + after) / 2.0, watts))

    def _run(self) -> None:
        next_t = time.monotonic() + self.interval_s
        while not self._stop_event.wait(max(0.0, next_t - time.monotonic())):
            self._sample()
            next_t += self.interval_s
            now = time.monotonic()
            if next_t < now:  # fell behind (slow reads): skip, do not burst
                next_t = now + self.interval_s

    def start(self) -> None:
        if self._running:
            raise RuntimeError(f"{type(self).__name__}.start() called twice without stop()")
        self._running = True
        self.window_s = None
        self.samples = []
        self._stop_event.clear()
        self._sample()
        self._thread = threading.Thread(
            target=self._run, name=f"edgebench-{self.name}-sampler", daemon=True
        )
        self._thread.start()

    def stop(self) -> Optional[float]:
        if not self._running:
            raise RuntimeError(f"{type(self).__name__}.stop() called without start()")
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._sample()
        self._running = False
        joules = trapezoid_joules(self.samples)
        if joules is not None:
            self.window_s = self.samples[-1][0] - self.samples[0][0]
        return joules


# --- Jetson INA3221 (hwmon) -----------------------------------------------------------


@dataclass(frozen=True)
class Ina3221Channel:
    hwmon: Path  # <root>/sys/class/hwmon/hwmonN
    channel: int  # 1..3
    label: str  # in{N}_label, or "in{N}" when unlabelled

    def power_w(self) -> float:
        """Power now, in watts: power{N}_input (uW) if present, else mV x mA / 1e6."""
        power = self.hwmon / f"power{self.channel}_input"
        if power.exists():
            return _read_int(power) / 1e6
        millivolts = _read_int(self.hwmon / f"in{self.channel}_input")
        milliamps = _read_int(self.hwmon / f"curr{self.channel}_input")
        return millivolts * milliamps / 1e6


def find_ina3221_channels(root: Path = Path("/")) -> List[Ina3221Channel]:
    """The INA3221 channels to sum under ``root`` (see the module docstring).

    Every readable, enabled, connected channel 1-3 of every hwmon device named
    ``ina3221``; if any of them is labelled as the total input (``VDD_IN``), only
    those.
    """
    base = Path(root) / "sys" / "class" / "hwmon"
    try:
        entries = sorted(base.iterdir(), key=lambda p: (len(p.name), p.name))
    except OSError:
        return []
    channels: List[Ina3221Channel] = []
    for hwmon in entries:
        if not _HWMON.match(hwmon.name) or _read_text(hwmon / "name") != "ina3221":
            continue
        for n in (1, 2, 3):
            if _read_text(hwmon / f"in{n}_enable") == "0":
                continue
            label = _read_text(hwmon / f"in{n}_label") or f"in{n}"
            if label.upper() == "NC":
                continue
            has_power = (hwmon / f"power{n}_input").exists()
            has_vi = (hwmon / f"in{n}_input").exists() and (hwmon / f"curr{n}_input").exists()
            if not (has_power or has_vi):
                continue
            channel = Ina3221Channel(hwmon, n, label)
            try:
                channel.power_w()
            except (OSError, ValueError):
                continue
            channels.append(channel)
    total = [c for c in channels if c.label in TOTAL_INPUT_LABELS]
    return total or channels


class Ina3221Meter(_SamplingMeter):
    """Sum of the given INA3221 channels, sampled every ``interval_s``."""

    name = "ina3221"

    def __init__(self, channels: Sequence[Ina3221Channel], interval_s: float = 0.05) -> None:
        super().__init__(interval_s)
        if not channels:
            raise ValueError("Ina3221Meter needs at least one channel")
        self.channels = list(channels)
        self.source = "+".join(f"{c.hwmon.name}/{c.label}" for c in self.channels)

    def read_power_w(self) -> Optional[float]:
        try:
            return sum(channel.power_w() for channel in self.channels)
        except (OSError, ValueError):
            return None


# --- Raspberry Pi 5 PMIC (vcgencmd pmic_read_adc) -------------------------------------

_PMIC_LINE = re.compile(
    r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)="
    r"(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?P<unit>[AV])\s*$"
)


def parse_pmic_read_adc(text: str) -> float:
    """Watts from ``vcgencmd pmic_read_adc`` output: sum of V x A over the rails that
    report both a ``<RAIL>_A current(n)=...A`` and a ``<RAIL>_V volt(n)=...V`` line.

    Rails with only one of the two (``EXT5V_V``, ``BATT_V``) are ignored. Raises
    ValueError when no rail has both.
    """
    amps = {}
    volts = {}
    for line in text.splitlines():
        match = _PMIC_LINE.match(line)
        if not match or match.group("kind") != match.group("unit"):
            continue
        value = float(match.group("value"))
        if match.group("kind") == "A":
            amps[match.group("rail")] = value
        else:
            volts[match.group("rail")] = value
    rails = [rail for rail in amps if rail in volts]
    if not rails:
        raise ValueError("no rail with both a current and a voltage in pmic_read_adc output")
    return sum(volts[rail] * amps[rail] for rail in rails)


class PmicMeter(_SamplingMeter):
    """Raspberry Pi 5 PMIC rails via ``vcgencmd pmic_read_adc``, sampled every
    ``interval_s`` (each sample runs vcgencmd, so keep it at 0.1 s or more)."""

    name = "pi5-pmic"

    def __init__(
        self, vcgencmd: str = "vcgencmd", interval_s: float = 0.1, timeout_s: float = 2.0
    ) -> None:
        super().__init__(interval_s)
        self.argv = [vcgencmd, "pmic_read_adc"]
        self.timeout_s = timeout_s
        self.source = " ".join(self.argv)

    def read_power_w(self) -> Optional[float]:
        output = _run_stdout(self.argv, self.timeout_s)
        if output is None:
            return None
        try:
            return parse_pmic_read_adc(output)
        except ValueError:
            return None


# --- external command -----------------------------------------------------------------

_WATTS = re.compile(
    r"^\s*(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[mk]?W)?\s*$"
)
_UNIT_SCALE = {None: 1.0, "W": 1.0, "mW": 1e-3, "kW": 1e3}


def parse_watts(text: str) -> Optional[float]:
    """Watts from a meter command's stdout (the contract in the module docstring):
    the last non-empty line, a number with an optional ``W``/``mW``/``kW`` unit.
    None when it is not such a number, or is negative, NaN or infinite."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    match = _WATTS.match(lines[-1])
    if not match:
        return None
    watts = float(match.group("value")) * _UNIT_SCALE[match.group("unit")]
    if not math.isfinite(watts) or watts < 0:
        return None
    return watts


def _run_stdout(argv: List[str], timeout_s: float) -> Optional[str]:
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


class CommandMeter(_SamplingMeter):
    """Runs ``command`` (split with shlex, no shell) every ``interval_s``; each run
    prints the instantaneous power in watts (see the module docstring)."""

    name = "command"

    def __init__(self, command: str, interval_s: float = 0.1, timeout_s: float = 2.0) -> None:
        super().__init__(interval_s)
        argv = shlex.split(command)
        if not argv:
            raise ValueError("empty energy meter command")
        self.command = command
        self.argv = argv
        self.timeout_s = timeout_s
        self.source = command

    def read_power_w(self) -> Optional[float]:
        output = _run_stdout(self.argv, self.timeout_s)
        return None if output is None else parse_watts(output)


# --- detection and arithmetic ---------------------------------------------------------


def _pmic_works(vcgencmd: str) -> bool:
    if shutil.which(vcgencmd) is None:
        return False
    output = _run_stdout([vcgencmd, "pmic_read_adc"], timeout_s=5.0)
    if output is None:
        return False
    try:
        parse_pmic_read_adc(output)
    except ValueError:
        return False
    return True


def detect(
    root: Path = Path("/"), command: Optional[str] = None, vcgencmd: str = "vcgencmd"
) -> Optional[EnergyMeter]:
    """The meter to use here, or None when there is none.

    ``command`` (non-empty) wins and is returned as a CommandMeter without being run.
    Otherwise the first available of RAPL, INA3221 and the Pi 5 PMIC (only when
    ``vcgencmd`` is on PATH and ``vcgencmd pmic_read_adc`` answers with rails; that
    runs it once). Files are read under ``root``.
    """
    if command:
        return CommandMeter(command)
    zones = find_rapl_zones(root)
    if zones:
        return RaplMeter(zones)
    channels = find_ina3221_channels(root)
    if channels:
        return Ina3221Meter(channels)
    if _pmic_works(vcgencmd):
        return PmicMeter(vcgencmd)
    return None


def energy_per_inference_mj(
    window_j: Optional[float], window_s: float, idle_w: Optional[float], inferences: int
) -> Optional[float]:
    """Millijoules per inference: ``(window_j - idle_w * window_s) / inferences * 1000``.

    * ``window_j`` None (no meter, failed readings) -> None, never 0.
    * ``idle_w`` None -> no baseline subtracted: the gross energy per inference.
    * ``inferences`` < 1 -> None (nothing to divide among).
    * The result is NOT clamped. A negative value means the window used less than the
      idle baseline predicts: the workload's share is below the meter's noise (or the
      baseline was taken in a different state). It is returned as measured so that it
      stays visible; turning it into 0 would claim a free inference and turning it
      into None would hide a measurement.

    ``window_s`` should be the meter's ``window_s`` (the span its joules cover).
    ``inferences`` counts inferences, not batches: with batch size b and q queries,
    pass ``b * q`` for energy per sample.
    """
    if window_j is None or not math.isfinite(window_j):
        return None
    if inferences < 1:
        return None
    if window_s < 0 or not math.isfinite(window_s):
        raise ValueError(f"window_s must be a finite non-negative number, got {window_s}")
    net_j = window_j
    if idle_w is not None:
        if not math.isfinite(idle_w):
            return None
        net_j -= idle_w * window_s
    return net_j / inferences * 1000.0


def measure_idle_power(meter: EnergyMeter, seconds: float) -> Optional[float]:
    """Mean power in watts over ``seconds`` of doing nothing, or None when the meter
    failed. Joules over the meter's own ``window_s`` (the span they cover)."""
    if not seconds > 0:
        raise ValueError("seconds must be positive")
    t0 = time.monotonic()
    meter.start()
    time.sleep(seconds)
    joules = meter.stop()
    elapsed = time.monotonic() - t0
    if joules is None:
        return None
    window_s = meter.window_s if meter.window_s else elapsed
    if not window_s > 0:
        return None
    return joules / window_s
