"""agents.measurement.energy: meters on hand-written sysfs trees and fake meter commands.

tests/fixtures/energy/README.md says where every value comes from (all hand-written
from the documented formats; nothing there is recorded from a board). Tests that
change a counter copy the tree into tmp_path first. The fake meter commands and the
fake vcgencmd are scripts this file writes into tmp_path.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agents.measurement import energy
from agents.measurement.energy import (
    CommandMeter,
    Ina3221Meter,
    PmicMeter,
    RaplMeter,
    detect,
    energy_per_inference_mj,
    find_ina3221_channels,
    find_rapl_zones,
    measure_idle_power,
    parse_pmic_read_adc,
    parse_watts,
    trapezoid_joules,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "energy"
RAPL = FIXTURES / "rapl-x86"
RAPL_2SOCKET = FIXTURES / "rapl-x86-2socket"
JETSON = FIXTURES / "jetson-orin-ina3221"
PMIC_TEXT = FIXTURES / "pi5-pmic_read_adc.txt"

MAX_RANGE_UJ = 262143328850  # max_energy_range_uj in the RAPL fixtures
ABSENT_PROGRAM = "edgebench-no-such-vcgencmd"

posix_only = pytest.mark.skipif(os.name != "posix", reason="fake meter commands are sh scripts")


def copy_tree(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def write(path: Path, value: object) -> None:
    """Replace a file in one step, so a sampler thread never reads it half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def script(tmp_path: Path, name: str, body: str) -> Path:
    """An executable /bin/sh script in tmp_path."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def powercap(root: Path) -> Path:
    return root / "sys" / "class" / "powercap"


# --- import hygiene -----------------------------------------------------------------


def test_module_respects_the_measurement_boundary():
    source = Path(energy.__file__).read_text()
    for forbidden in ("agents.hardware", "agents.runtimes", "celery", "psutil", "numpy"):
        assert forbidden not in source, forbidden


def test_import_touches_no_file_and_starts_no_thread():
    """Import in a fresh interpreter under an audit hook: the only files opened are
    the package's own modules, no process is started, no thread is left running."""
    probe = (
        "import sys, threading\n"
        "import re, shlex, shutil, subprocess, dataclasses, math, pathlib, typing\n"
        "events = []\n"
        "def hook(event, args):\n"
        "    if event in ('open', 'subprocess.Popen', 'os.system', 'os.scandir', 'os.listdir'):\n"
        "        events.append((event, str(args[0]) if args else ''))\n"
        "sys.addaudithook(hook)\n"
        "import agents.measurement.energy\n"
        "bad = [e for e in events if e[0] != 'open' and e[0] != 'os.listdir'\n"
        "       or e[0] == 'open' and not e[1].endswith(('.py', '.pyc'))\n"
        "       or e[0] == 'os.listdir' and 'agents' not in e[1]]\n"
        "print(repr(bad)); print(threading.active_count())\n"
    )
    root = Path(__file__).resolve().parent.parent.parent
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "1"], done.stdout + done.stderr


# --- RAPL ---------------------------------------------------------------------------


def test_rapl_zones_are_top_level_packages_only():
    zones = find_rapl_zones(RAPL)
    assert [(z.path.name, z.name) for z in zones] == [("intel-rapl:0", "package-0")]
    assert zones[0].max_range_uj == MAX_RANGE_UJ


def test_rapl_two_sockets_both_packages():
    zones = find_rapl_zones(RAPL_2SOCKET)
    assert [(z.path.name, z.name) for z in zones] == [
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:1", "package-1"),
    ]


def test_rapl_window_sums_packages_not_subzones_psys_or_mmio(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    pc = powercap(root)
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    write(pc / "intel-rapl:0" / "energy_uj", 91830476328 + 2_500_000)  # +2.5 J package
    write(pc / "intel-rapl:0:0" / "energy_uj", 40117265031 + 1_000_000_000)  # core
    write(pc / "intel-rapl:0:1" / "energy_uj", 1930284712 + 7_000_000_000)  # uncore
    write(pc / "intel-rapl:1" / "energy_uj", 187220371865 + 9_000_000_000)  # psys
    write(pc / "intel-rapl-mmio:0" / "energy_uj", 91830471002 + 5_000_000_000)  # mmio
    joules = meter.stop()
    assert joules == pytest.approx(2.5, abs=1e-9)
    assert meter.window_s is not None and meter.window_s >= 0


def test_rapl_two_packages_are_summed(tmp_path):
    root = copy_tree(RAPL_2SOCKET, tmp_path)
    pc = powercap(root)
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    write(pc / "intel-rapl:0" / "energy_uj", 15028311476 + 1_250_000)
    write(pc / "intel-rapl:1" / "energy_uj", 201554900317 + 3_000_000)
    write(pc / "intel-rapl:1:0" / "energy_uj", 12774003219 + 99_000_000)  # dram: ignored
    assert meter.stop() == pytest.approx(4.25, abs=1e-9)


def test_rapl_window_across_a_wrap(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    counter = powercap(root) / "intel-rapl:0" / "energy_uj"
    write(counter, MAX_RANGE_UJ - 1_000_000)  # 1 J before the wrap
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    write(counter, 4_000_000)  # wrapped, then 4 J more
    assert meter.stop() == pytest.approx(5.0, abs=1e-9)


def test_rapl_poll_follows_several_wraps(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    counter = powercap(root) / "intel-rapl:0" / "energy_uj"
    write(counter, MAX_RANGE_UJ - 1_000_000)
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    write(counter, 2_000_000)  # first wrap: +3 J
    meter.poll()
    write(counter, MAX_RANGE_UJ - 500_000)  # +(MAX - 2.5 J)
    meter.poll()
    write(counter, 1_500_000)  # second wrap: +2 J
    joules = meter.stop()
    expected_uj = 3_000_000 + (MAX_RANGE_UJ - 2_500_000) + 2_000_000
    assert joules == pytest.approx(expected_uj / 1e6, abs=1e-6)


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the sampler"
        time.sleep(0.005)


def test_rapl_poll_thread_follows_laps_a_start_stop_read_cannot_see(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    counter = powercap(root) / "intel-rapl:0" / "energy_uj"
    m = MAX_RANGE_UJ
    write(counter, 0)
    meter = RaplMeter(find_rapl_zones(root), poll_s=0.01)
    meter.start()
    write(counter, 6 * m // 10)
    wait_until(lambda: meter.joules_so_far == pytest.approx(6 * m // 10 / 1e6))
    write(counter, 2 * m // 10)  # wrapped
    wait_until(lambda: meter.joules_so_far > 6 * m // 10 / 1e6)
    write(counter, 5 * m // 10)
    joules = meter.stop()
    # 0 -> 0.6 M -> (wrap) 0.2 M -> 0.5 M is 1.5 laps; start/stop alone would see 0.5.
    expected_uj = 6 * m // 10 + (m - 6 * m // 10 + 2 * m // 10) + (5 * m // 10 - 2 * m // 10)
    assert joules == pytest.approx(expected_uj / 1e6, abs=1e-6)
    assert joules > m / 1e6
    assert not any(t.name == "edgebench-rapl-poll" for t in threading.enumerate())


def test_rapl_meter_can_be_reused(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    counter = powercap(root) / "intel-rapl:0" / "energy_uj"
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    write(counter, 91830476328 + 1_000_000)
    assert meter.stop() == pytest.approx(1.0)
    meter.start()
    write(counter, 91830476328 + 4_000_000)
    assert meter.stop() == pytest.approx(3.0)


def test_rapl_transient_failed_poll_is_picked_up_later(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    counter = powercap(root) / "intel-rapl:0" / "energy_uj"
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    counter.rename(counter.with_name("gone"))
    assert meter.poll() is False
    write(counter, 91830476328 + 6_000_000)
    assert meter.poll() is True
    assert meter.stop() == pytest.approx(6.0)


def test_rapl_counter_vanishing_gives_none(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    meter = RaplMeter(find_rapl_zones(root), poll_s=None)
    meter.start()
    (powercap(root) / "intel-rapl:0" / "energy_uj").unlink()
    assert meter.stop() is None
    assert meter.window_s is None


def test_rapl_unreadable_counter_is_no_meter(tmp_path):
    # Since Linux 5.10 energy_uj is root-only; an unreadable counter (here a directory in its
    # place, which fails to read even for root) must not become a meter reading zero.
    root = copy_tree(RAPL, tmp_path)
    counter = powercap(root) / "intel-rapl:0" / "energy_uj"
    counter.unlink()
    counter.mkdir()
    assert find_rapl_zones(root) == []


def test_rapl_stop_without_start_is_an_error(tmp_path):
    meter = RaplMeter(find_rapl_zones(RAPL), poll_s=None)
    with pytest.raises(RuntimeError):
        meter.stop()


# --- INA3221 (Jetson hwmon) ---------------------------------------------------------


def test_ina3221_sums_only_vdd_in_when_labelled():
    channels = find_ina3221_channels(JETSON)
    assert [(c.hwmon.name, c.channel, c.label) for c in channels] == [("hwmon1", 1, "VDD_IN")]
    meter = Ina3221Meter(channels)
    assert meter.read_power_w() == pytest.approx(5064 * 1176 / 1e6)  # 5.955264 W


def test_ina3221_without_total_rail_sums_enabled_connected_channels(tmp_path):
    root = copy_tree(JETSON, tmp_path)
    hwmon = root / "sys" / "class" / "hwmon" / "hwmon1"
    write(hwmon / "in1_label", "VDD_GPU_SOC")
    write(hwmon / "in2_label", "NC")
    write(hwmon / "in3_enable", 0)
    second = root / "sys" / "class" / "hwmon" / "hwmon2"
    second.mkdir()
    write(second / "name", "ina3221")
    write(second / "in1_label", "VDDQ_VDD2_1V8AO")
    write(second / "in1_input", 5000)
    write(second / "curr1_input", 200)
    channels = find_ina3221_channels(root)
    assert [(c.hwmon.name, c.label) for c in channels] == [
        ("hwmon1", "VDD_GPU_SOC"),
        ("hwmon2", "VDDQ_VDD2_1V8AO"),
    ]
    assert Ina3221Meter(channels).read_power_w() == pytest.approx(5.955264 + 1.0)


def test_ina3221_prefers_power_input_in_microwatts(tmp_path):
    root = copy_tree(JETSON, tmp_path)
    write(root / "sys" / "class" / "hwmon" / "hwmon1" / "power1_input", 7_250_000)
    meter = Ina3221Meter(find_ina3221_channels(root))
    assert meter.read_power_w() == pytest.approx(7.25)


def test_ina3221_sampling_integrates_constant_power(tmp_path):
    root = copy_tree(JETSON, tmp_path)
    meter = Ina3221Meter(find_ina3221_channels(root), interval_s=0.01)
    t0 = time.monotonic()
    meter.start()
    time.sleep(0.3)
    joules = meter.stop()
    elapsed = time.monotonic() - t0
    assert joules is not None and joules > 0
    assert len(meter.samples) >= 5
    assert meter.window_s is not None
    # Constant power: the trapezoid is exact over the sampled span...
    assert joules == pytest.approx(5.955264 * meter.window_s, rel=1e-9)
    # ...and the sampled span is the window (first read in start(), last in stop()).
    assert 0.3 <= meter.window_s <= elapsed
    assert 5.955264 * 0.3 * (1 - 1e-9) <= joules <= 5.955264 * elapsed
    assert not any(t.name.startswith("edgebench-ina3221") for t in threading.enumerate())


def test_ina3221_failed_reads_give_none(tmp_path):
    root = copy_tree(JETSON, tmp_path)
    meter = Ina3221Meter(find_ina3221_channels(root), interval_s=0.01)
    (root / "sys" / "class" / "hwmon" / "hwmon1" / "curr1_input").unlink()
    meter.start()
    time.sleep(0.05)
    assert meter.stop() is None
    assert meter.window_s is None


# --- Raspberry Pi 5 PMIC ------------------------------------------------------------


def test_parse_pmic_read_adc_fixture_exact():
    # Sum over the 12 rails with both lines; the table is in the fixture README.
    products = [
        3.71780000 * 0.00390372,
        3.31144600 * 0.05172390,
        1.79926000 * 0.16980000,
        1.11040400 * 0.02049450,
        0.60439560 * 0.00000000,
        1.10396600 * 0.18740000,
        0.80402900 * 0.33500000,
        0.88095200 * 0.76000000,
        3.30402900 * 0.00009158,
        3.30036600 * 0.00006105,
        0.80170940 * 0.00317460,
        5.15384400 * 0.02380000,
    ]
    watts = parse_pmic_read_adc(PMIC_TEXT.read_text())
    assert watts == pytest.approx(math.fsum(products), rel=1e-12)
    assert watts == pytest.approx(1.78553280233476, rel=1e-12)


def test_parse_pmic_read_adc_needs_both_current_and_voltage():
    assert parse_pmic_read_adc("VDD_CORE_A current(7)=2.0A\nVDD_CORE_V volt(15)=0.5V\n") == 1.0
    with pytest.raises(ValueError):
        parse_pmic_read_adc("   EXT5V_V volt(24)=5.12322000V\n   VDD_CORE_A current(7)=0.7A\n")
    with pytest.raises(ValueError):
        parse_pmic_read_adc('error=1 error_msg="Command not registered"\n')


@posix_only
def test_pmic_meter_samples_fake_vcgencmd(tmp_path):
    fake = script(tmp_path, "vcgencmd", f'cat "{PMIC_TEXT}"\n')
    meter = detect(tmp_path / "empty-root", vcgencmd=str(fake))
    assert isinstance(meter, PmicMeter)
    assert meter.name == "pi5-pmic"
    meter.interval_s = 0.02
    meter.start()
    time.sleep(0.2)
    joules = meter.stop()
    assert joules == pytest.approx(1.78553280233476 * meter.window_s, rel=1e-9)


# --- external command ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "watts"),
    [
        ("3.2", 3.2),
        ("3.2 W\n", 3.2),
        ("3.2W", 3.2),
        ("  12\n", 12.0),
        ("3200 mW", 3.2),
        ("0.0032 kW", 3.2),
        ("1e1", 10.0),
        ("connecting...\n4.5 W\n\n", 4.5),
        ("0", 0.0),
    ],
)
def test_parse_watts_accepts(text, watts):
    assert parse_watts(text) == pytest.approx(watts)


@pytest.mark.parametrize(
    "text", ["", "\n", "W", "3.2 V", "power=3.2", "-1.5", "nan", "inf", "3.2 W x"]
)
def test_parse_watts_rejects(text):
    assert parse_watts(text) is None


@posix_only
def test_command_meter_constant_watts(tmp_path):
    fake = script(tmp_path, "meter.sh", 'echo "4.0 W"\n')
    meter = detect(tmp_path, command=f"{fake} --port /dev/ttyUSB0")
    assert isinstance(meter, CommandMeter)
    assert meter.argv == [str(fake), "--port", "/dev/ttyUSB0"]
    meter.interval_s = 0.02
    t0 = time.monotonic()
    meter.start()
    time.sleep(0.3)
    joules = meter.stop()
    elapsed = time.monotonic() - t0
    assert joules is not None
    assert len(meter.samples) >= 3
    assert joules == pytest.approx(4.0 * meter.window_s, rel=1e-9)
    assert 0.3 <= meter.window_s <= elapsed
    assert 4.0 * 0.3 * (1 - 1e-9) <= joules <= 4.0 * elapsed


@posix_only
def test_command_meter_python_script_and_skipped_samples(tmp_path):
    """Every other run fails; the good samples still integrate to W x t."""
    state = tmp_path / "count"
    fake = tmp_path / "meter.py"
    fake.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(state)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "if n % 2: sys.exit(3)\n"
        "print('2500 mW')\n"
    )
    meter = CommandMeter(f"{sys.executable} {fake}", interval_s=0.02)
    meter.start()
    wait_until(lambda: state.exists() and int(state.read_text() or 0) >= 4)
    joules = meter.stop()
    runs = int(state.read_text())
    assert 2 <= len(meter.samples) <= (runs + 1) // 2
    assert joules == pytest.approx(2.5 * meter.window_s, rel=1e-9)


@posix_only
@pytest.mark.parametrize(
    "body", ["exit 1\n", "echo 'no reading'\n", "echo '-3 W'\n", "echo 5; exit 2\n"]
)
def test_command_meter_failing_command_gives_none(tmp_path, body):
    fake = script(tmp_path, "meter.sh", body)
    meter = CommandMeter(str(fake), interval_s=0.02)
    meter.start()
    time.sleep(0.1)
    assert meter.stop() is None
    assert meter.window_s is None
    assert measure_idle_power(meter, 0.05) is None


def test_command_meter_missing_program_gives_none(tmp_path):
    meter = CommandMeter(str(tmp_path / "no-such-meter"), interval_s=0.02)
    meter.start()
    time.sleep(0.05)
    assert meter.stop() is None


@posix_only
def test_command_meter_timeout_skips_sample(tmp_path):
    fake = script(tmp_path, "slow.sh", "sleep 5\necho 3\n")
    meter = CommandMeter(str(fake), interval_s=0.02, timeout_s=0.1)
    t0 = time.monotonic()
    meter.start()
    assert meter.stop() is None
    assert time.monotonic() - t0 < 2.0


def test_empty_command_is_rejected():
    with pytest.raises(ValueError):
        CommandMeter("   ")


# --- trapezoid, idle power, per-inference arithmetic ---------------------------------


def test_trapezoid_joules_exact():
    assert trapezoid_joules([]) is None
    assert trapezoid_joules([(1.0, 5.0)]) is None
    assert trapezoid_joules([(0.0, 2.0), (1.0, 4.0)]) == 3.0
    assert trapezoid_joules([(0.0, 2.0), (1.0, 4.0), (3.0, 0.0)]) == 7.0


@posix_only
def test_measure_idle_power_with_fake_command(tmp_path):
    fake = script(tmp_path, "meter.sh", "echo 1.75\n")
    meter = CommandMeter(str(fake), interval_s=0.02)
    assert measure_idle_power(meter, 0.15) == pytest.approx(1.75, rel=1e-9)


def test_measure_idle_power_with_ina3221(tmp_path):
    meter = Ina3221Meter(find_ina3221_channels(copy_tree(JETSON, tmp_path)), interval_s=0.01)
    assert measure_idle_power(meter, 0.1) == pytest.approx(5.955264, rel=1e-9)


def test_measure_idle_power_rejects_non_positive_seconds(tmp_path):
    meter = Ina3221Meter(find_ina3221_channels(JETSON))
    with pytest.raises(ValueError):
        measure_idle_power(meter, 0)


def test_energy_per_inference_arithmetic():
    # (12 J - 2 W * 4 s) / 100 inferences = 0.04 J = 40 mJ
    assert energy_per_inference_mj(12.0, 4.0, 2.0, 100) == pytest.approx(40.0)
    # no idle baseline: gross energy, 12 J / 100 = 120 mJ
    assert energy_per_inference_mj(12.0, 4.0, None, 100) == pytest.approx(120.0)
    # idle baseline of exactly zero watts is a baseline, not "absent"
    assert energy_per_inference_mj(12.0, 4.0, 0.0, 100) == pytest.approx(120.0)
    # below the idle baseline: returned as measured, negative, not clamped to 0
    assert energy_per_inference_mj(7.0, 4.0, 2.0, 100) == pytest.approx(-10.0)


def test_energy_per_inference_absent_is_none_never_zero():
    assert energy_per_inference_mj(None, 4.0, 2.0, 100) is None
    assert energy_per_inference_mj(float("nan"), 4.0, 2.0, 100) is None
    assert energy_per_inference_mj(12.0, 4.0, float("nan"), 100) is None
    assert energy_per_inference_mj(12.0, 4.0, 2.0, 0) is None
    with pytest.raises(ValueError):
        energy_per_inference_mj(12.0, -1.0, 2.0, 100)


# --- detect -------------------------------------------------------------------------


def test_detect_empty_root_is_none(tmp_path):
    assert detect(tmp_path, vcgencmd=ABSENT_PROGRAM) is None


def test_detect_rapl():
    meter = detect(RAPL, vcgencmd=ABSENT_PROGRAM)
    assert isinstance(meter, RaplMeter)
    assert meter.name == "rapl"
    assert [z.name for z in meter.zones] == ["package-0"]


def test_detect_ina3221():
    meter = detect(JETSON, vcgencmd=ABSENT_PROGRAM)
    assert isinstance(meter, Ina3221Meter)
    assert meter.name == "ina3221"
    assert meter.source == "hwmon1/VDD_IN"


def test_detect_prefers_rapl_over_ina3221(tmp_path):
    root = copy_tree(RAPL, tmp_path)
    shutil.copytree(JETSON / "sys" / "class" / "hwmon", root / "sys" / "class" / "hwmon")
    assert isinstance(detect(root, vcgencmd=ABSENT_PROGRAM), RaplMeter)


def test_detect_command_wins(tmp_path):
    meter = detect(RAPL, command="my-usb-meter --watts")
    assert isinstance(meter, CommandMeter)
    assert meter.name == "command"
    assert meter.argv == ["my-usb-meter", "--watts"]


def test_detect_empty_command_falls_back_to_autodetect():
    assert isinstance(detect(RAPL, command="", vcgencmd=ABSENT_PROGRAM), RaplMeter)


@posix_only
def test_detect_pmic_needs_a_working_vcgencmd(tmp_path):
    broken = script(tmp_path, "vcgencmd", 'echo "error=1 error_msg=\\"Command not registered\\""\n')
    assert detect(tmp_path / "empty-root", vcgencmd=str(broken)) is None
    failing = script(tmp_path, "vcgencmd-fails", "exit 255\n")
    assert detect(tmp_path / "empty-root", vcgencmd=str(failing)) is None
