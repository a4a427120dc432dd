"""agents.hardware.boards / accelerators / cpu_features against the trees in
tests/fixtures/boards/ (tests/fixtures/boards/README.md says where each value comes
from: x86_64-debian-vm is recorded from the dev VM, the others are written from
documented formats and public outputs) and against small trees built in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.hardware import boards
from agents.hardware.accelerators import detect_accelerators
from agents.hardware.boards import detect_board
from agents.hardware.cpu_features import cpu_features as features_of

BOARDS = Path(__file__).resolve().parent.parent / "fixtures" / "boards"

CORAL_WARNING = "on USB 2 the Edge TPU is about 4x slower than on USB 3"
NCS2_NOTE = "the NCS2 (MYRIAD) is supported only by OpenVINO <= 2022.3"


def write(root: Path, relative: str, content: str | bytes = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def usb_device(root: Path, port: str, vendor: str, product: str, speed: str | None) -> None:
    write(root, f"sys/bus/usb/devices/{port}/idVendor", vendor + "\n")
    write(root, f"sys/bus/usb/devices/{port}/idProduct", product + "\n")
    if speed is not None:
        write(root, f"sys/bus/usb/devices/{port}/speed", speed + "\n")


# --- the fixture trees, fact by fact ----------------------------------------------------

EXPECTED_BOARDS = {
    "jetson-nano": {
        "family": "jetson",
        "model": "NVIDIA Jetson Nano Developer Kit",
        "device_class": "jetson-nano",
        "module": "p3448-0000",
        "module_name": "Jetson Nano (developer kit module)",
        "soc": "tegra210",
        "compatible": [
            "nvidia,p3449-0000-b00+p3448-0000-b00",
            "nvidia,jetson-nano",
            "nvidia,tegra210",
        ],
        "l4t": "32.7.1",
        "jetpack": "4.6.1",
    },
    "jetson-xavier-nx": {
        "family": "jetson",
        "model": "NVIDIA Jetson Xavier NX Developer Kit",
        "device_class": "jetson-xavier-nx",
        "module": "p3668-0000",
        "module_name": "Jetson Xavier NX (developer kit module)",
        "soc": "tegra194",
        "compatible": ["nvidia,p3509-0000+p3668-0000", "nvidia,p3668-0000", "nvidia,tegra194"],
        "l4t": "35.3.1",
        "jetpack": "5.1.1",
    },
    "jetson-orin-nano": {
        "family": "jetson",
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit",
        "device_class": "jetson-orin-nano",
        "module": "p3767-0005",
        "module_name": "Jetson Orin Nano 8GB (developer kit module)",
        "soc": "tegra234",
        "compatible": ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"],
        "l4t": "36.3.0",
        "jetpack": "6.0",
    },
    "raspberry-pi-3": {
        "family": "raspberry-pi",
        "model": "Raspberry Pi 3 Model B Rev 1.2",
        "device_class": "raspberry-pi-3",
        "compatible": ["raspberrypi,3-model-b", "brcm,bcm2837"],
        "revision_code": "a02082",
        "type": "3B",
        "memory_mb": 1024,
        "manufacturer": "Sony UK",
        "processor": "BCM2837",
        "board_revision": "1.2",
    },
    "raspberry-pi-4": {
        "family": "raspberry-pi",
        "model": "Raspberry Pi 4 Model B Rev 1.4",
        "device_class": "raspberry-pi-4",
        "compatible": ["raspberrypi,4-model-b", "brcm,bcm2711"],
        "revision_code": "c03114",  # 4 GB per the revision-code table (d03114 is 8 GB)
        "type": "4B",
        "memory_mb": 4096,
        "manufacturer": "Sony UK",
        "processor": "BCM2711",
        "board_revision": "1.4",
    },
    "raspberry-pi-5": {
        "family": "raspberry-pi",
        "model": "Raspberry Pi 5 Model B Rev 1.0",
        "device_class": "raspberry-pi-5",
        "compatible": ["raspberrypi,5-model-b", "brcm,bcm2712"],
        "revision_code": "d04170",
        "type": "5",
        "memory_mb": 8192,
        "manufacturer": "Sony UK",
        "processor": "BCM2712",
        "board_revision": "1.0",
    },
    "x86-coral-usb2-ncs2": None,
    "x86-nvidia-gpu": None,
    "x86_64-debian-vm": None,
}

EXPECTED_ACCELERATORS = {
    "jetson-nano": [],
    "jetson-xavier-nx": [],
    "jetson-orin-nano": [],
    "raspberry-pi-3": [],
    "raspberry-pi-4": [],
    "raspberry-pi-5": [],
    "x86-coral-usb2-ncs2": [
        {
            "kind": "coral-usb",
            "name": "Coral USB Accelerator",
            "usb_id": "1a6e:089a",
            "usb_path": "1-1",
            "state": "no-firmware",
            "usb_speed_mbps": 480,
            "usb_generation": "2.0",
            "warning": CORAL_WARNING,
        },
        {
            "kind": "ncs2",
            "name": "Intel Neural Compute Stick 2 (Myriad X)",
            "usb_id": "03e7:2485",
            "usb_path": "2-1",
            "state": "unbooted",
            "usb_speed_mbps": 5000,
            "usb_generation": "3.0",
            "note": NCS2_NOTE,
        },
    ],
    "x86-nvidia-gpu": [
        {
            "kind": "intel-igpu",
            "card": "card0",
            "driver": "i915",
            "pci_slot": "0000:00:02.0",
            "pci_id": "8086:4692",
            "render_node": "/dev/dri/renderD128",
        },
        {
            "kind": "nvidia-gpu",
            "model": "NVIDIA GeForce RTX 3060",
            "pci_slot": "0000:01:00.0",
            "pci_id": "10de:2504",
            "driver": "nvidia",
            "driver_version": "535.183.01",
        },
    ],
    "x86_64-debian-vm": [],
}

EXPECTED_CPU = {
    "jetson-nano": {"isa": "arm64", "flags": ["asimd"], "features": ["neon"]},
    "jetson-xavier-nx": {
        "isa": "arm64",
        "flags": ["asimd", "asimdhp", "fphp"],
        "features": ["fp16", "neon"],
    },
    "jetson-orin-nano": {
        "isa": "arm64",
        "flags": ["asimd", "asimddp", "asimdhp", "fphp"],
        "features": ["dotprod", "fp16", "neon"],
    },
    "raspberry-pi-3": {"isa": "arm", "flags": ["neon"], "features": ["neon"]},
    "raspberry-pi-4": {"isa": "arm64", "flags": ["asimd"], "features": ["neon"]},
    "raspberry-pi-5": {
        "isa": "arm64",
        "flags": ["asimd", "asimddp", "asimdhp", "fphp"],
        "features": ["dotprod", "fp16", "neon"],
    },
    "x86-coral-usb2-ncs2": {
        "isa": "x86_64",
        "flags": ["avx", "avx2", "f16c", "fma"],
        "features": ["avx", "avx2", "f16c", "fma"],
    },
    "x86-nvidia-gpu": {
        "isa": "x86_64",
        "flags": ["avx", "avx2", "avx_vnni", "f16c", "fma"],
        "features": ["avx", "avx2", "f16c", "fma", "vnni"],
    },
    # Recorded: `grep flags /proc/cpuinfo` on the dev VM (AMD EPYC, 2 vCPUs) lists
    # avx avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16 avx512_vnni, no AMX.
    "x86_64-debian-vm": {
        "isa": "x86_64",
        "flags": [
            "avx",
            "avx2",
            "avx512_bf16",
            "avx512_vnni",
            "avx512bw",
            "avx512f",
            "avx512vl",
            "f16c",
            "fma",
        ],
        "features": [
            "avx",
            "avx2",
            "avx512",
            "avx512bw",
            "avx512vl",
            "bf16",
            "f16c",
            "fma",
            "vnni",
        ],
    },
}


def test_every_fixture_tree_is_covered_and_documented():
    trees = sorted(p.name for p in BOARDS.iterdir() if p.is_dir())
    assert trees == sorted(EXPECTED_BOARDS) == sorted(EXPECTED_ACCELERATORS) == sorted(EXPECTED_CPU)
    readme = (BOARDS / "README.md").read_text()
    for tree in trees:
        assert f"`{tree}/`" in readme


@pytest.mark.parametrize("tree", sorted(EXPECTED_BOARDS))
def test_board(tree):
    assert detect_board(BOARDS / tree) == EXPECTED_BOARDS[tree]


@pytest.mark.parametrize("tree", sorted(EXPECTED_ACCELERATORS))
def test_accelerators(tree):
    assert detect_accelerators(BOARDS / tree) == EXPECTED_ACCELERATORS[tree]


@pytest.mark.parametrize("tree", sorted(EXPECTED_CPU))
def test_cpu_features(tree):
    assert features_of(BOARDS / tree) == EXPECTED_CPU[tree]


def test_recorded_vm_is_the_dev_vm():
    cpuinfo = (BOARDS / "x86_64-debian-vm" / "proc" / "cpuinfo").read_text()
    assert "model name\t: AMD EPYC" in cpuinfo
    assert cpuinfo.count("processor\t:") == 2
    # The VM has PCI functions (one Intel host bridge, virtio devices) but no GPU.
    assert (
        BOARDS / "x86_64-debian-vm" / "sys/bus/pci/devices/0000:00:00.0/vendor"
    ).read_text() == ("0x8086\n")


# --- missing files: None / [] , never a guess --------------------------------------------


def test_empty_root(tmp_path):
    assert detect_board(tmp_path) is None
    assert detect_accelerators(tmp_path) == []
    assert features_of(tmp_path) == {"isa": None, "flags": [], "features": []}


def test_missing_root(tmp_path):
    missing = tmp_path / "nope"
    assert detect_board(missing) is None
    assert detect_accelerators(missing) == []
    assert features_of(missing) == {"isa": None, "flags": [], "features": []}


# --- Jetson -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "l4t", "jetpack"),
    [
        ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref", "35.4.1", "5.1.2"),
        ("# R35 (release), REVISION: 5.0, GCID: 1, BOARD: t186ref", "35.5.0", "5.1.3"),
        ("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic", "36.4.0", "6.1"),
        ("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic", "36.4.3", "6.2"),
        ("# R32 (release), REVISION: 7.4, GCID: 1, BOARD: t210ref", "32.7.4", "4.6.4"),
        ("# R35 (release), REVISION: 9.9, GCID: 1, BOARD: t186ref", "35.9.9", None),
        ("# R99 (release), REVISION: 1.0, GCID: 1, BOARD: generic", "99.1.0", None),
        ("garbage", None, None),
        ("", None, None),
    ],
)
def test_l4t_and_jetpack(tmp_path, line, l4t, jetpack):
    write(tmp_path, "etc/nv_tegra_release", line + "\n")
    facts = detect_board(tmp_path)
    assert facts is not None
    assert facts["family"] == "jetson"
    assert (facts["l4t"], facts["jetpack"]) == (l4t, jetpack)


def test_unknown_l4t_in_a_copy_of_a_fixture(tmp_path):
    root = tmp_path / "jetson"
    shutil.copytree(BOARDS / "jetson-orin-nano", root)
    write(root, "etc/nv_tegra_release", "# R36 (release), REVISION: 7.2, GCID: 1, BOARD: generic\n")
    facts = detect_board(root)
    assert facts["device_class"] == "jetson-orin-nano"
    assert facts["l4t"] == "36.7.2"
    assert facts["jetpack"] is None


def test_jetson_release_file_alone(tmp_path):
    write(tmp_path, "etc/nv_tegra_release", "# R35 (release), REVISION: 3.1, GCID: 1\n")
    assert detect_board(tmp_path) == {
        "family": "jetson",
        "model": None,
        "device_class": None,
        "module": None,
        "module_name": None,
        "soc": None,
        "compatible": [],
        "l4t": "35.3.1",
        "jetpack": "5.1.1",
    }


def test_jetson_without_release_file_has_no_l4t(tmp_path):
    write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    write(
        tmp_path,
        "proc/device-tree/compatible",
        b"nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00",
    )
    facts = detect_board(tmp_path)
    assert facts["device_class"] == "jetson-agx-orin"
    assert facts["module"] == "p3701-0005"
    assert facts["module_name"] is None  # SKU names only where documented in the table
    assert (facts["l4t"], facts["jetpack"]) == (None, None)


def test_module_beats_model_string(tmp_path):
    # An Orin NX module in the Orin Nano developer kit carrier (p3768).
    write(tmp_path, "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0\n")
    write(tmp_path, "proc/device-tree/model", b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    write(
        tmp_path,
        "proc/device-tree/compatible",
        b"nvidia,p3768-0000+p3767-0000\x00nvidia,p3767-0000\x00nvidia,tegra234\x00",
    )
    facts = detect_board(tmp_path)
    assert facts["device_class"] == "jetson-orin-nx"
    assert facts["module_name"] == "Jetson Orin NX 16GB"


@pytest.mark.parametrize(
    ("model", "device_class"),
    [
        ("NVIDIA Jetson Orin Nano Developer Kit", "jetson-orin-nano"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "jetson-orin-nx"),
        ("Jetson AGX Orin Developer Kit", "jetson-agx-orin"),
        ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"),
        ("Jetson-AGX", "jetson-agx-xavier"),
        ("NVIDIA Jetson AGX Xavier Developer Kit", "jetson-agx-xavier"),
        ("NVIDIA Jetson TX2 Developer Kit", "jetson-tx2"),
        ("NVIDIA Jetson Nano Developer Kit", "jetson-nano"),
        ("NVIDIA Jetson Thor Developer Kit", None),
    ],
)
def test_jetson_class_from_model_string(tmp_path, model, device_class):
    write(tmp_path, "proc/device-tree/model", model.encode() + b"\x00")
    facts = detect_board(tmp_path)
    assert facts["family"] == "jetson"
    assert facts["device_class"] == device_class


def test_jetson_tables_use_known_classes():
    classes = set(boards.DEVICE_CLASSES)
    assert {c for c, _ in boards.JETSON_MODULES.values()} <= classes
    assert set(boards.JETSON_BOARD_IDS.values()) <= classes
    assert {c for _, c in boards.JETSON_MODEL_PATTERNS} <= classes
    for l4t in boards.JETPACK_FOR_L4T:
        assert boards.parse_l4t(f"# R{l4t.split('.')[0]} (release), REVISION: 0.0") is not None


def test_sysfs_device_tree_path(tmp_path):
    write(tmp_path, "sys/firmware/devicetree/base/model", b"Raspberry Pi 4 Model B Rev 1.5\x00")
    facts = detect_board(tmp_path)
    assert facts["family"] == "raspberry-pi"
    assert facts["device_class"] == "raspberry-pi-4"
    assert facts["revision_code"] is None
    assert facts["memory_mb"] is None


# --- Raspberry Pi -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "decoded"),
    [
        ("c03111", ("4B", 4096, "Sony UK", "BCM2711", "1.1")),
        ("d03114", ("4B", 8192, "Sony UK", "BCM2711", "1.4")),
        ("a020d3", ("3B+", 1024, "Sony UK", "BCM2837", "1.3")),
        ("a22082", ("3B", 1024, "Embest", "BCM2837", "1.2")),
        ("a52082", ("3B", 1024, "Stadium", "BCM2837", "1.2")),
        ("e04171", ("5", 16384, "Sony UK", "BCM2712", "1.1")),
        ("902120", ("Zero 2 W", 512, "Sony UK", "BCM2837", "1.0")),
        ("c03130", ("400", 4096, "Sony UK", "BCM2711", "1.0")),
        ("d04190", ("500/500+", 8192, "Sony UK", "BCM2712", "1.0")),
        ("80c03111", ("4B", 4096, "Sony UK", "BCM2711", "1.1")),  # overvoltage bit 31 set
        ("f04170", ("5", None, "Sony UK", "BCM2712", "1.0")),  # memory field 7: "Other"
        ("c031f1", (None, 4096, "Sony UK", "BCM2711", "1.1")),  # type not in the table
    ],
)
def test_decode_pi_revision(code, decoded):
    keys = ("type", "memory_mb", "manufacturer", "processor", "board_revision")
    assert boards.decode_pi_revision(code) == dict(zip(keys, decoded))


@pytest.mark.parametrize("code", ["000e", "0002", "1000002", "zz", "", None])
def test_old_style_or_bad_revision_is_not_decoded(code):
    assert boards.decode_pi_revision(code) is None


def test_pi_with_old_style_code_keeps_class_from_device_tree(tmp_path):
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi Model B Rev 2\x00")
    write(tmp_path, "proc/device-tree/compatible", b"raspberrypi,model-b-rev2\x00brcm,bcm2835\x00")
    write(tmp_path, "proc/cpuinfo", "Hardware\t: BCM2835\nRevision\t: 000e\n")
    facts = detect_board(tmp_path)
    assert facts["revision_code"] == "000e"
    assert (facts["type"], facts["memory_mb"], facts["device_class"]) == (None, None, None)


def test_pi_class_from_compatible_without_revision(tmp_path):
    write(
        tmp_path, "proc/device-tree/compatible", b"raspberrypi,3-model-b-plus\x00brcm,bcm2837\x00"
    )
    facts = detect_board(tmp_path)
    assert facts["device_class"] == "raspberry-pi-3"
    assert facts["model"] is None


def test_pi_without_device_tree_uses_cpuinfo_model(tmp_path):
    write(tmp_path, "proc/cpuinfo", (BOARDS / "raspberry-pi-5" / "proc" / "cpuinfo").read_text())
    facts = detect_board(tmp_path)
    assert facts["model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert facts["device_class"] == "raspberry-pi-5"
    assert facts["compatible"] == []


def test_revision_line_alone_is_not_a_pi(tmp_path):
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nRevision\t: c03114\n")
    assert detect_board(tmp_path) is None


# --- Coral USB --------------------------------------------------------------------------


def test_coral_on_usb3_has_no_warning(tmp_path):
    root = tmp_path / "host"
    shutil.copytree(BOARDS / "x86-coral-usb2-ncs2", root)
    (root / "sys/bus/usb/devices/1-1/speed").write_text("5000\n")
    coral = [a for a in detect_accelerators(root) if a["kind"] == "coral-usb"]
    assert coral == [
        {
            "kind": "coral-usb",
            "name": "Coral USB Accelerator",
            "usb_id": "1a6e:089a",
            "usb_path": "1-1",
            "state": "no-firmware",
            "usb_speed_mbps": 5000,
            "usb_generation": "3.0",
        }
    ]


@pytest.mark.parametrize(
    ("speed", "mbps", "generation", "warned"),
    [
        ("480", 480, "2.0", True),
        ("12", 12, "1.1", True),
        ("1.5", 1.5, "1.0", True),
        ("5000", 5000, "3.0", False),
        ("10000", 10000, "3.1", False),
        ("20000", 20000, "3.2", False),
        ("40000", 40000, None, False),
        ("unknown", None, None, False),
        (None, None, None, False),
    ],
)
def test_coral_after_firmware_load_and_link_speeds(tmp_path, speed, mbps, generation, warned):
    usb_device(tmp_path, "3-2", "18d1", "9302", speed)
    (coral,) = detect_accelerators(tmp_path)
    assert coral["kind"] == "coral-usb"
    assert coral["state"] == "firmware-loaded"
    assert coral["usb_id"] == "18d1:9302"
    assert coral["usb_speed_mbps"] == mbps
    assert coral["usb_generation"] == generation
    assert ("warning" in coral) is warned
    if warned:
        assert coral["warning"] == CORAL_WARNING


def test_other_usb_devices_and_interfaces_are_ignored(tmp_path):
    usb_device(tmp_path, "usb1", "1d6b", "0002", "480")
    usb_device(tmp_path, "1-3", "046d", "c52b", "12")
    write(tmp_path, "sys/bus/usb/devices/1-3:1.0/bInterfaceClass", "03\n")
    assert detect_accelerators(tmp_path) == []


# --- Intel NCS ----------------------------------------------------------------------------


def test_ncs_ids(tmp_path):
    usb_device(tmp_path, "1-1", "03e7", "f63b", "480")
    usb_device(tmp_path, "1-2", "03e7", "2150", "480")
    booted, ncs1 = detect_accelerators(tmp_path)
    assert booted["kind"] == "myriad-booted"
    assert booted["note"] == NCS2_NOTE
    assert booted["usb_generation"] == "2.0"
    assert ncs1["kind"] == "ncs"
    assert "note" not in ncs1
    assert "warning" not in booted and "warning" not in ncs1


# --- Coral PCIe -------------------------------------------------------------------------


def test_coral_pcie_device_node(tmp_path):
    write(tmp_path, "dev/apex_0")
    write(tmp_path, "sys/class/apex/apex_0/temp", "40000\n")
    assert detect_accelerators(tmp_path) == [
        {"kind": "coral-pcie", "name": "apex_0", "dev_node": "/dev/apex_0", "driver_loaded": True}
    ]


def test_coral_pcie_sysfs_only(tmp_path):
    write(tmp_path, "sys/class/apex/apex_1/temp", "40000\n")
    (coral,) = detect_accelerators(tmp_path)
    assert (coral["name"], coral["dev_node"]) == ("apex_1", None)


def test_coral_pcie_without_driver(tmp_path):
    base = "sys/bus/pci/devices/0000:03:00.0"
    write(tmp_path, f"{base}/vendor", "0x1ac1\n")
    write(tmp_path, f"{base}/device", "0x089a\n")
    write(tmp_path, f"{base}/class", "0x0000ff\n")
    assert detect_accelerators(tmp_path) == [
        {
            "kind": "coral-pcie",
            "name": None,
            "dev_node": None,
            "driver_loaded": False,
            "pci_slot": "0000:03:00.0",
            "pci_id": "1ac1:089a",
        }
    ]


# --- GPUs -------------------------------------------------------------------------------


def intel_card(root: Path, card: str, slot: str, driver: str, render: str | None) -> None:
    base = f"sys/class/drm/{card}/device"
    write(root, f"{base}/vendor", "0x8086\n")
    write(root, f"{base}/device", "0x56a0\n")
    write(root, f"{base}/uevent", f"DRIVER={driver}\nPCI_SLOT_NAME={slot}\n")
    if render:
        write(root, f"{base}/drm/{render}/dev", "226:128\n")
        write(root, f"dev/dri/{render}")


def test_intel_gpu_needs_a_render_node(tmp_path):
    intel_card(tmp_path, "card0", "0000:00:02.0", "i915", None)
    assert detect_accelerators(tmp_path) == []


def test_intel_xe_and_discrete(tmp_path):
    intel_card(tmp_path, "card0", "0000:00:02.0", "xe", "renderD128")
    intel_card(tmp_path, "card1", "0000:03:00.0", "i915", "renderD129")
    igpu, dgpu = detect_accelerators(tmp_path)
    assert (igpu["kind"], igpu["driver"], igpu["render_node"]) == (
        "intel-igpu",
        "xe",
        "/dev/dri/renderD128",
    )
    assert (dgpu["kind"], dgpu["pci_slot"]) == ("intel-dgpu", "0000:03:00.0")


def test_intel_card_with_other_driver_is_ignored(tmp_path):
    intel_card(tmp_path, "card0", "0000:00:02.0", "vfio-pci", "renderD128")
    assert detect_accelerators(tmp_path) == []


def test_nvidia_from_pci_only(tmp_path):
    base = "sys/bus/pci/devices/0000:65:00.0"
    write(tmp_path, f"{base}/vendor", "0x10de\n")
    write(tmp_path, f"{base}/device", "0x20b5\n")
    write(tmp_path, f"{base}/class", "0x030200\n")
    write(tmp_path, f"{base}/uevent", "DRIVER=nouveau\n")
    # an NVIDIA audio function is not a GPU
    write(tmp_path, "sys/bus/pci/devices/0000:65:00.1/vendor", "0x10de\n")
    write(tmp_path, "sys/bus/pci/devices/0000:65:00.1/class", "0x040300\n")
    assert detect_accelerators(tmp_path) == [
        {
            "kind": "nvidia-gpu",
            "model": None,
            "pci_slot": "0000:65:00.0",
            "pci_id": "10de:20b5",
            "driver": "nouveau",
            "driver_version": None,
        }
    ]


def test_nvidia_from_proc_only(tmp_path):
    write(
        tmp_path,
        "proc/driver/nvidia/gpus/0000:01:00.0/information",
        "Model: \t\t NVIDIA A2\nBus Location: \t 0000:01:00.0\n",
    )
    (gpu,) = detect_accelerators(tmp_path)
    assert (gpu["model"], gpu["pci_id"], gpu["driver_version"]) == ("NVIDIA A2", None, None)


# --- CPU features -----------------------------------------------------------------------


def test_arm64_sve_i8mm_bf16(tmp_path):
    features = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
    features += "jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat "
    features += "ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svepmull svebitperm svesha3 "
    features += "svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh"
    write(tmp_path, "proc/cpuinfo", f"processor\t: 0\nFeatures\t: {features}\n")
    assert features_of(tmp_path) == {
        "isa": "arm64",
        "flags": ["asimd", "asimddp", "asimdfhm", "asimdhp", "bf16", "fphp", "i8mm", "sve", "sve2"],
        "features": ["bf16", "dotprod", "fp16", "fp16fml", "i8mm", "neon", "sve", "sve2"],
    }


def test_x86_amx(tmp_path):
    flags = "fpu lm avx avx2 fma f16c avx512f avx512_vnni avx512_bf16 avx512_fp16 "
    flags += "amx_bf16 amx_tile amx_int8"
    write(tmp_path, "proc/cpuinfo", f"processor\t: 0\nflags\t\t: {flags}\n")
    facts = features_of(tmp_path)
    assert facts["isa"] == "x86_64"
    assert facts["features"] == [
        "amx",
        "amx-bf16",
        "amx-int8",
        "avx",
        "avx2",
        "avx512",
        "bf16",
        "f16c",
        "fma",
        "fp16",
        "vnni",
    ]


def test_feature_must_be_on_every_core(tmp_path):
    write(
        tmp_path,
        "proc/cpuinfo",
        "processor\t: 0\nflags\t\t: lm avx avx2 avx512f\n\n"
        "processor\t: 1\nflags\t\t: lm avx avx2\n",
    )
    assert features_of(tmp_path)["flags"] == ["avx", "avx2"]


def test_32_bit_x86_and_riscv(tmp_path):
    write(tmp_path, "x86/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu sse sse2\n")
    assert features_of(tmp_path / "x86") == {"isa": "x86", "flags": [], "features": []}
    write(tmp_path, "rv/proc/cpuinfo", "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdc\n")
    assert features_of(tmp_path / "rv") == {"isa": "riscv64", "flags": [], "features": []}


@pytest.mark.parametrize(
    "tree, device_class, accelerators",
    [
        ("jetson-orin-nano", "jetson-orin-nano", []),
        ("raspberry-pi-5", "raspberry-pi-5", []),
        ("x86-coral-usb2-ncs2", "x86_64-cpu", ["coral-usb", "ncs2"]),
        ("x86-nvidia-gpu", "x86_64-cpu", ["intel-igpu", "nvidia-gpu"]),
    ],
)
def test_agent_facts_carry_board_class_and_accelerators(tree, device_class, accelerators):
    from agents.contract import HostFacts
    from agents.hardware import host

    facts = host.probe(BOARDS / tree)
    assert facts["device_class"] == device_class
    assert sorted(a["kind"] for a in facts["accelerators"]) == accelerators
    HostFacts.model_validate(facts)  # what registration sends must pass the contract
