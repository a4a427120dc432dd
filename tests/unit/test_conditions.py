"""agents.hardware.conditions: trial conditions read under a root, commands via a fake run.

tests/fixtures/conditions/README.md says where each tree and output came from:
x86_64-debian-vm is recorded (cp from the dev VM), the Raspberry Pi 4 and Jetson Orin
Nano trees and the command outputs are hand-written from documented formats.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from agents.hardware import conditions

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "conditions"
X86 = FIXTURES / "x86_64-debian-vm"
PI4 = FIXTURES / "raspberry-pi-4-handwritten"
ORIN = FIXTURES / "jetson-orin-nano-handwritten"
COMMANDS = FIXTURES / "commands"


def output(name: str) -> str:
    return (COMMANDS / name).read_text()


def fake_run(answers: Dict[str, Optional[str]]):
    """A `run` that answers by the command's first word; unknown commands -> None."""
    calls: List[List[str]] = []

    def run(argv: List[str]) -> Optional[str]:
        calls.append(list(argv))
        return answers.get(argv[0])

    run.calls = calls  # type: ignore[attr-defined]
    return run


def no_commands(argv: List[str]) -> Optional[str]:
    return None


def write(root: Path, relative: str, content: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


# --- snapshots of the fixture trees -----------------------------------------------------


def test_x86_vm_snapshot_has_only_loadavg_and_online():
    snap = conditions.snapshot(X86, run=no_commands)
    assert snap == {
        "governors": None,
        "freq_khz": None,
        "freq_range_khz": None,
        "scaling_range_khz": None,
        "online_cpus": [0, 1],
        "thermal_c": None,
        "loadavg": [0.16, 0.58, 0.64],
        "thermal_throttle_count": None,
        "pi_throttled": None,
        "jetson": None,
    }
    assert json.loads(json.dumps(snap)) == snap
    assert conditions.hottest_c(snap) is None


def test_pi4_snapshot():
    run = fake_run({"vcgencmd": output("vcgencmd_get_throttled_0x0.txt")})
    snap = conditions.snapshot(PI4, run=run)
    cpus = ["cpu0", "cpu1", "cpu2", "cpu3"]
    assert snap == {
        "governors": {cpu: "ondemand" for cpu in cpus},
        "freq_khz": {cpu: 600000 for cpu in cpus},
        "freq_range_khz": {cpu: [600000, 1500000] for cpu in cpus},
        "scaling_range_khz": {cpu: [600000, 1500000] for cpu in cpus},
        "online_cpus": [0, 1, 2, 3],
        "thermal_c": {"cpu-thermal": 51.121},
        "loadavg": [0.08, 0.03, 0.01],
        "thermal_throttle_count": None,
        "pi_throttled": {
            "raw": "0x0",
            "under_voltage_now": False,
            "freq_capped_now": False,
            "throttled_now": False,
            "soft_temp_limit_now": False,
            "under_voltage_occurred": False,
            "freq_capped_occurred": False,
            "throttled_occurred": False,
            "soft_temp_limit_occurred": False,
        },
        "jetson": None,
    }
    assert ["vcgencmd", "get_throttled"] in run.calls
    assert json.loads(json.dumps(snap)) == snap


def test_orin_nano_snapshot_via_policies():
    run = fake_run({"nvpmodel": output("nvpmodel_q_orin_nano_15W.txt")})
    snap = conditions.snapshot(ORIN, run=run)
    cpus = [f"cpu{n}" for n in range(6)]
    assert snap == {
        "governors": {cpu: "schedutil" for cpu in cpus},
        "freq_khz": {cpu: 1510400 for cpu in cpus},
        "freq_range_khz": {cpu: [115200, 1510400] for cpu in cpus},
        "scaling_range_khz": {cpu: [1510400, 1510400] for cpu in cpus},
        "online_cpus": [0, 1, 2, 3, 4, 5],
        "thermal_c": {
            "cpu-thermal": 48.593,
            "gpu-thermal": 46.812,
            "soc0-thermal": 47.25,
            "tj-thermal": 49.062,
        },
        "loadavg": [1.52, 0.91, 0.4],
        "thermal_throttle_count": None,
        "pi_throttled": None,
        "jetson": {"nvpmodel": "15W", "nvpmodel_id": 0, "clocks_locked": True},
    }
    assert ["nvpmodel", "-q"] in run.calls
    assert conditions.hottest_c(snap) == 49.062


def test_empty_root_is_all_none(tmp_path):
    snap = conditions.snapshot(tmp_path, run=no_commands)
    assert set(snap) == {
        "governors",
        "freq_khz",
        "freq_range_khz",
        "scaling_range_khz",
        "online_cpus",
        "thermal_c",
        "loadavg",
        "thermal_throttle_count",
        "pi_throttled",
        "jetson",
    }
    assert all(value is None for value in snap.values())


# --- missing and broken files -----------------------------------------------------------


def test_missing_cpufreq_files_are_omitted_never_zero(tmp_path):
    root = tmp_path / "pi"
    shutil.copytree(PI4, root)
    cpu1 = root / "sys/devices/system/cpu/cpu1/cpufreq"
    (cpu1 / "scaling_cur_freq").write_text("<unknown>\n")
    (cpu1 / "cpuinfo_max_freq").unlink()
    (root / "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor").unlink()
    assert conditions.current_freq_khz(root) == {"cpu0": 600000, "cpu2": 600000, "cpu3": 600000}
    assert set(conditions.freq_range_khz(root)) == {"cpu0", "cpu2", "cpu3"}
    assert set(conditions.governors(root)) == {"cpu0", "cpu1", "cpu3"}


def test_unreadable_zone_is_skipped_and_untyped_zone_keyed_by_number(tmp_path):
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "40000\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/type", "iwlwifi_1\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "")
    write(tmp_path, "sys/class/thermal/thermal_zone2/type", "x86_pkg_temp\n")
    assert conditions.thermal_c(tmp_path) == {"thermal_zone0": 40.0}


def test_duplicate_zone_types_are_disambiguated_by_zone_number(tmp_path):
    for number, kind, temp in [
        (0, "acpitz", "27800"),
        (1, "x86_pkg_temp", "55000"),
        (10, "acpitz", "29800"),
        (2, "acpitz", "-5000"),
    ]:
        write(tmp_path, f"sys/class/thermal/thermal_zone{number}/type", kind + "\n")
        write(tmp_path, f"sys/class/thermal/thermal_zone{number}/temp", temp + "\n")
    assert conditions.thermal_c(tmp_path) == {
        "acpitz:thermal_zone0": 27.8,
        "x86_pkg_temp": 55.0,
        "acpitz:thermal_zone2": -5.0,
        "acpitz:thermal_zone10": 29.8,
    }


def test_broken_loadavg_is_none(tmp_path):
    write(tmp_path, "proc/loadavg", "garbage\n")
    assert conditions.loadavg(tmp_path) is None
    write(tmp_path, "proc/loadavg", "")
    assert conditions.loadavg(tmp_path) is None


def test_policy_of_offline_cluster_is_not_mapped(tmp_path):
    root = tmp_path / "orin"
    shutil.copytree(ORIN, root)
    (root / "sys/devices/system/cpu/cpufreq/policy4/affected_cpus").write_text("\n")
    assert set(conditions.governors(root)) == {"cpu0", "cpu1", "cpu2", "cpu3"}


def test_cpu_list_parsing():
    assert conditions.parse_cpu_list("0-3,6\n") == [0, 1, 2, 3, 6]
    assert conditions.parse_cpu_list("4 5") == [4, 5]
    assert conditions.parse_cpu_list("") == []
    assert conditions.parse_cpu_list("a-b") is None
    assert conditions.parse_cpu_list(None) is None


def test_x86_throttle_counters(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count", "3\n")
    write(tmp_path, "sys/devices/system/cpu/cpu0/thermal_throttle/package_throttle_count", "7\n")
    write(tmp_path, "sys/devices/system/cpu/cpu1/topology/core_id", "1\n")
    assert conditions.thermal_throttle_count(tmp_path) == {"cpu0": {"core": 3, "package": 7}}


# --- Raspberry Pi get_throttled ---------------------------------------------------------


def test_parse_throttled_zero():
    decoded = conditions.parse_throttled(output("vcgencmd_get_throttled_0x0.txt"))
    assert decoded["raw"] == "0x0"
    assert not any(v for k, v in decoded.items() if k != "raw")


def test_parse_throttled_0x50005():
    assert conditions.parse_throttled(output("vcgencmd_get_throttled_0x50005.txt")) == {
        "raw": "0x50005",
        "under_voltage_now": True,
        "freq_capped_now": False,
        "throttled_now": True,
        "soft_temp_limit_now": False,
        "under_voltage_occurred": True,
        "freq_capped_occurred": False,
        "throttled_occurred": True,
        "soft_temp_limit_occurred": False,
    }


def test_parse_throttled_0x80000():
    decoded = conditions.parse_throttled(output("vcgencmd_get_throttled_0x80000.txt"))
    assert decoded["raw"] == "0x80000"
    assert [k for k, v in decoded.items() if v is True] == ["soft_temp_limit_occurred"]


def test_parse_throttled_every_bit_and_garbage():
    for name, bit in conditions.PI_THROTTLE_BITS.items():
        decoded = conditions.parse_throttled(f"throttled={hex(1 << bit)}")
        assert [k for k, v in decoded.items() if v is True] == [name]
    assert conditions.parse_throttled(None) is None
    assert conditions.parse_throttled("") is None
    assert conditions.parse_throttled('error=1 error_msg="Command not registered"') is None


# --- Jetson -----------------------------------------------------------------------------


def test_parse_nvpmodel():
    assert conditions.parse_nvpmodel(output("nvpmodel_q_orin_nano_15W.txt")) == {
        "nvpmodel": "15W",
        "nvpmodel_id": 0,
    }
    assert conditions.parse_nvpmodel("NV Power Mode: MODE_15W\n2\n") == {
        "nvpmodel": "MODE_15W",
        "nvpmodel_id": 2,
    }
    assert conditions.parse_nvpmodel(
        "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN\nNVPM WARN: x\n0\n"
    ) == {"nvpmodel": "MAXN", "nvpmodel_id": 0}
    assert conditions.parse_nvpmodel("NV Power Mode: 7W\n") == {
        "nvpmodel": "7W",
        "nvpmodel_id": None,
    }
    assert conditions.parse_nvpmodel("") is None
    assert conditions.parse_nvpmodel("something else") is None


def test_clocks_unlocked_when_one_cluster_can_scale(tmp_path):
    root = tmp_path / "orin"
    shutil.copytree(ORIN, root)
    (root / "sys/devices/system/cpu/cpufreq/policy4/scaling_min_freq").write_text("729600\n")
    assert conditions.clocks_locked(root) is False


def test_clocks_locked_unknown_when_a_range_is_unreadable(tmp_path):
    root = tmp_path / "orin"
    shutil.copytree(ORIN, root)
    (root / "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq").unlink()
    assert conditions.clocks_locked(root) is None


def test_clocks_locked_is_none_off_jetson():
    assert conditions.clocks_locked(PI4) is None


def test_jetson_without_nvpmodel_answer(tmp_path):
    snap = conditions.snapshot(ORIN, run=no_commands)
    assert snap["jetson"] == {"nvpmodel": None, "nvpmodel_id": None, "clocks_locked": True}


# --- run_command --------------------------------------------------------------------------


def test_run_command_missing_and_failing():
    assert conditions.run_command(["edgebench-no-such-command-xyz"]) is None
    assert conditions.run_command([sys.executable, "-c", "import sys; sys.exit(3)"]) is None
    assert conditions.run_command([sys.executable, "-c", "print('throttled=0x0')"]) == (
        "throttled=0x0\n"
    )


def test_run_command_timeout(monkeypatch):
    def slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(cmd=args[0], timeout=kwargs.get("timeout"))

    monkeypatch.setattr(conditions.subprocess, "run", slow)
    assert conditions.run_command(["vcgencmd", "get_throttled"]) is None


# --- hottest_c ------------------------------------------------------------------------------


def test_hottest_c():
    assert conditions.hottest_c({"thermal_c": {"a": 40.5, "b": 61.0, "c": -5.0}}) == 61.0
    assert conditions.hottest_c({"thermal_c": None}) is None
    assert conditions.hottest_c({}) is None


# --- throttled_during -----------------------------------------------------------------------


def pi_snap(raw: str) -> dict:
    return {"pi_throttled": conditions.parse_throttled(f"throttled={raw}")}


def test_no_evidence_is_none():
    vm = conditions.snapshot(X86, run=no_commands)
    assert conditions.throttled_during(vm, vm) is None
    assert conditions.throttled_during({}, {}) is None
    assert conditions.throttled_during(None, None) is None


def test_pi_clean_is_false():
    assert conditions.throttled_during(pi_snap("0x0"), pi_snap("0x0")) is False


def test_pi_occurred_bits_newly_set_is_true():
    assert conditions.throttled_during(pi_snap("0x0"), pi_snap("0x80000")) is True
    assert conditions.throttled_during(pi_snap("0x0"), pi_snap("0x40000")) is True


def test_pi_occurred_bits_already_set_before_is_false():
    assert conditions.throttled_during(pi_snap("0x50000"), pi_snap("0x50000")) is False


def test_pi_now_bits_are_true_before_or_after():
    assert conditions.throttled_during(pi_snap("0x50000"), pi_snap("0x50005")) is True
    assert conditions.throttled_during(pi_snap("0x20002"), pi_snap("0x20000")) is True
    assert conditions.throttled_during(pi_snap("0x0"), pi_snap("0x8")) is True


def test_pi_without_before_sticky_bits_decide_nothing():
    assert conditions.throttled_during({}, pi_snap("0x80000")) is None
    assert conditions.throttled_during({}, pi_snap("0x0")) is False
    assert conditions.throttled_during({}, pi_snap("0x50005")) is True


def test_pi_snapshots_from_fixture_and_outputs():
    before = conditions.snapshot(
        PI4, run=fake_run({"vcgencmd": output("vcgencmd_get_throttled_0x0.txt")})
    )
    after = conditions.snapshot(
        PI4, run=fake_run({"vcgencmd": output("vcgencmd_get_throttled_0x50005.txt")})
    )
    assert conditions.throttled_during(before, after) is True
    assert conditions.throttled_during(before, before) is False


def perf_snap(cur: int, governor: str = "performance", max_khz: int = 1500000) -> dict:
    return {
        "governors": {"cpu0": governor},
        "freq_khz": {"cpu0": cur},
        "freq_range_khz": {"cpu0": [600000, 1800000]},
        "scaling_range_khz": {"cpu0": [600000, max_khz]},
    }


def test_performance_governor_below_max_is_true():
    assert conditions.throttled_during(perf_snap(1500000), perf_snap(1000000)) is True
    assert conditions.throttled_during(perf_snap(1000000), perf_snap(1500000)) is True


def test_performance_governor_at_max_is_false_within_tolerance():
    assert conditions.throttled_during(perf_snap(1500000), perf_snap(1500000)) is False
    # counter-derived readings a little off the operating point are not throttling
    assert conditions.throttled_during(perf_snap(1497600), perf_snap(1490000)) is False


def test_performance_uses_hardware_max_without_scaling_range():
    after = perf_snap(1500000)
    del after["scaling_range_khz"]
    assert conditions.throttled_during({}, after) is True


def test_other_governors_say_nothing():
    assert (
        conditions.throttled_during(perf_snap(600000, "ondemand"), perf_snap(600000, "ondemand"))
        is None
    )
    orin = conditions.snapshot(ORIN, run=no_commands)
    assert conditions.throttled_during(orin, orin) is None


def test_x86_counters():
    before = {"thermal_throttle_count": {"cpu0": {"core": 3, "package": 7}}}
    same = {"thermal_throttle_count": {"cpu0": {"core": 3, "package": 7}}}
    grew = {"thermal_throttle_count": {"cpu0": {"core": 3, "package": 8}}}
    assert conditions.throttled_during(before, same) is False
    assert conditions.throttled_during(before, grew) is True
    assert conditions.throttled_during({}, grew) is None


def test_any_true_wins_over_clean_evidence():
    before = {**pi_snap("0x0"), **perf_snap(1500000)}
    after = {**pi_snap("0x0"), **perf_snap(900000)}
    assert conditions.throttled_during(before, after) is True


# --- wait_until_cool ------------------------------------------------------------------------


class FakeSleep:
    """Each sleep cools the copied zone file by `step` millidegrees; the clock never moves."""

    def __init__(self, temp_file: Path, step: int):
        self.temp_file = temp_file
        self.step = step
        self.pauses: List[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        current = int(self.temp_file.read_text())
        self.temp_file.write_text(f"{current - self.step}\n")


def frozen_clock() -> float:
    return 0.0


def test_wait_until_cool_reaches_target(tmp_path):
    root = tmp_path / "orin"
    shutil.copytree(ORIN, root)
    tj = root / "sys/class/thermal/thermal_zone3/temp"  # 49.062, the hottest
    sleep = FakeSleep(tj, step=1000)
    reached, last = conditions.wait_until_cool(
        48.6, timeout_s=30, root=root, poll_s=2, sleep=sleep, clock=frozen_clock
    )
    # tj 49.062 -> 48.062 after one sleep; but cpu-thermal stays at 48.593 < 48.6
    assert (reached, last) == (True, 48.593)
    assert sleep.pauses == [2]


def test_wait_until_cool_already_cool_does_not_sleep():
    sleeps: List[float] = []
    assert conditions.wait_until_cool(60.0, 10, root=PI4, sleep=sleeps.append) == (True, 51.121)
    assert sleeps == []


def test_wait_until_cool_timeout(tmp_path):
    root = tmp_path / "pi"
    shutil.copytree(PI4, root)
    sleep = FakeSleep(root / "sys/class/thermal/thermal_zone0/temp", step=100)
    reached, last = conditions.wait_until_cool(
        40.0, timeout_s=5, root=root, poll_s=2, sleep=sleep, clock=frozen_clock
    )
    assert reached is False
    assert last == pytest.approx(50.821)
    assert sleep.pauses == [2, 2, 1]


def test_wait_until_cool_without_zones_returns_true_none():
    sleeps: List[float] = []
    assert conditions.wait_until_cool(40.0, 10, root=X86, sleep=sleeps.append) == (True, None)
    assert sleeps == []


def test_wait_until_cool_zone_vanishing_midway_is_not_cool(tmp_path):
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "70000\n")
    temp = tmp_path / "sys/class/thermal/thermal_zone0/temp"

    def sleep(seconds: float) -> None:
        if temp.exists():
            temp.unlink()

    assert conditions.wait_until_cool(
        40.0, timeout_s=3, root=tmp_path, poll_s=1, sleep=sleep, clock=frozen_clock
    ) == (False, 70.0)
