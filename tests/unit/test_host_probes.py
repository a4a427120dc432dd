"""agents.hardware.host: probes read a root path; recorded and documented trees in fixtures.

tests/fixtures/hosts/README.md says where each tree came from: x86_64-debian-vm is
recorded (cp from the dev VM), raspberry-pi-4-handwritten is written by hand from the
documented formats.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.hardware import host

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
X86 = HOSTS / "x86_64-debian-vm"
PI4 = HOSTS / "raspberry-pi-4-handwritten"


def write(root: Path, relative: str, content: str | bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def test_fixture_trees_are_present():
    assert (X86 / "proc" / "cpuinfo").is_file()
    assert (PI4 / "proc" / "device-tree" / "model").read_bytes() == (
        b"Raspberry Pi 4 Model B Rev 1.4\x00"
    )


# --- recorded x86_64 VM ----------------------------------------------------------------


def test_x86_cpu_model():
    assert host.cpu_model(X86) == "AMD EPYC"


def test_x86_logical_cores():
    assert host.logical_cores(X86) == 2


def test_x86_memory_mb():
    # MemTotal: 24684096 kB -> 24684096 // 1024 = 24105 MB
    assert host.memory_mb(X86) == 24105


def test_x86_os_name():
    assert host.os_name(X86) == "Debian GNU/Linux 12 (bookworm)"


def test_x86_kernel():
    assert host.kernel(X86) == "6.18.44-fc-v595"


def test_x86_has_no_device_tree():
    assert host.device_tree_model(X86) is None


def test_x86_probe():
    facts = host.probe(X86)
    assert facts["cpu_model"] == "AMD EPYC"
    assert facts["logical_cores"] == 2
    assert facts["memory_mb"] == 24105
    assert facts["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert facts["kernel"] == "6.18.44-fc-v595"
    assert facts["board"] is None
    # in a recorded tree the architecture comes from its /proc/cpuinfo, not this machine
    assert facts["arch"] == "x86_64"
    assert facts["device_class"] == "x86_64-cpu"
    assert "avx2" in facts["cpu_features"] and facts["accelerators"] == []


# --- hand-written Raspberry Pi 4 -------------------------------------------------------


def test_pi4_device_tree_model_drops_the_nul():
    assert host.device_tree_model(PI4) == "Raspberry Pi 4 Model B Rev 1.4"


def test_pi4_cpu_model_comes_from_the_model_line():
    # arm64 cpuinfo has no "model name"; the probe takes "Model" before "Hardware"
    assert host.cpu_model(PI4) == "Raspberry Pi 4 Model B Rev 1.4"


def test_pi4_logical_cores():
    assert host.logical_cores(PI4) == 4


def test_pi4_tree_lacks_the_other_files():
    assert host.memory_mb(PI4) is None
    assert host.os_name(PI4) is None
    assert host.kernel(PI4) is None


def test_pi4_probe():
    facts = host.probe(PI4)
    assert facts["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert facts["device_class"] == "raspberry-pi-4"
    assert facts["logical_cores"] == 4
    assert facts["memory_mb"] is None
    assert facts["arch"] == "arm64"  # from the tree's cpuinfo Features line


# --- device_class ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "board", "expected"),
    [
        ("aarch64", "Raspberry Pi 4 Model B Rev 1.4", "raspberry-pi-4"),
        ("armv7l", "Raspberry Pi 3 Model B Plus Rev 1.3", "raspberry-pi-3"),
        ("aarch64", "Raspberry Pi 5 Model B Rev 1.0", "raspberry-pi-5"),
        ("aarch64", "NVIDIA Jetson Nano Developer Kit", "nvidia-jetson-nano-developer-kit"),
        ("aarch64", "Pine64 RockPro64 v2.1", "aarch64-cpu"),
        ("x86_64", None, "x86_64-cpu"),
        ("x86_64", "", "x86_64-cpu"),
    ],
)
def test_device_class(arch, board, expected):
    assert host.device_class(arch, board) == expected


def test_device_class_of_the_fixture_trees():
    assert host.device_class("aarch64", host.device_tree_model(PI4)) == "raspberry-pi-4"
    assert host.device_class("x86_64", host.device_tree_model(X86)) == "x86_64-cpu"


# --- missing or unusable files give None, never a guess --------------------------------


def test_empty_root_gives_none_everywhere(tmp_path):
    assert host.cpu_model(tmp_path) is None
    assert host.logical_cores(tmp_path) is None
    assert host.memory_mb(tmp_path) is None
    assert host.os_name(tmp_path) is None
    assert host.kernel(tmp_path) is None
    assert host.device_tree_model(tmp_path) is None


def test_probe_of_an_empty_root_guesses_nothing(tmp_path):
    facts = host.probe(tmp_path)
    for key in ("cpu_model", "arch", "logical_cores", "memory_mb", "os", "kernel", "board"):
        assert facts[key] is None, key


def test_missing_root_gives_none(tmp_path):
    facts = host.probe(tmp_path / "does-not-exist")
    assert facts["cpu_model"] is None
    assert facts["logical_cores"] is None


def test_cpuinfo_without_known_keys_gives_none(tmp_path):
    write(tmp_path, "proc/cpuinfo", "flags\t: fpu vme\nbogomips\t: 5192.29\n")
    assert host.cpu_model(tmp_path) is None
    assert host.logical_cores(tmp_path) is None


def test_empty_files_give_none(tmp_path):
    for relative in ("proc/cpuinfo", "proc/meminfo", "etc/os-release", "proc/sys/kernel/osrelease"):
        write(tmp_path, relative, "")
    assert host.cpu_model(tmp_path) is None
    assert host.logical_cores(tmp_path) is None
    assert host.memory_mb(tmp_path) is None
    assert host.os_name(tmp_path) is None
    assert host.kernel(tmp_path) is None


def test_meminfo_without_memtotal_gives_none(tmp_path):
    write(tmp_path, "proc/meminfo", "MemFree:        23900632 kB\n")
    assert host.memory_mb(tmp_path) is None


def test_armv7_cpuinfo_model_name(tmp_path):
    # 32-bit Raspberry Pi OS prints "model name" per core: that wins over "Model"
    write(
        tmp_path,
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\n\n"
        "processor\t: 1\nmodel name\t: ARMv7 Processor rev 3 (v7l)\n\n"
        "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n",
    )
    assert host.cpu_model(tmp_path) == "ARMv7 Processor rev 3 (v7l)"
    assert host.logical_cores(tmp_path) == 2


def test_hardware_line_is_used_when_there_is_no_model(tmp_path):
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nHardware\t: BCM2835\n")
    assert host.cpu_model(tmp_path) == "BCM2835"


def test_device_tree_model_falls_back_to_sysfs(tmp_path):
    write(tmp_path, "sys/firmware/devicetree/base/model", b"NVIDIA Jetson Nano Developer Kit\x00")
    assert host.device_tree_model(tmp_path) == "NVIDIA Jetson Nano Developer Kit"


def test_os_release_falls_back_to_usr_lib(tmp_path):
    write(tmp_path, "usr/lib/os-release", 'NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    assert host.os_name(tmp_path) == "Debian GNU/Linux 12"


def test_os_release_without_quotes(tmp_path):
    write(tmp_path, "etc/os-release", "PRETTY_NAME=Alpine\nNAME=Alpine\n")
    assert host.os_name(tmp_path) == "Alpine"


def test_kernel_strips_the_newline(tmp_path):
    write(tmp_path, "proc/sys/kernel/osrelease", "6.6.51+rpt-rpi-v8\n")
    assert host.kernel(tmp_path) == "6.6.51+rpt-rpi-v8"
