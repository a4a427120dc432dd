"""Inference accelerators attached to the host: Coral Edge TPU, Intel NCS2, GPUs.

``detect_accelerators(root)`` returns a list (empty when none is found) of dicts, each
with a ``kind``:

``coral-usb``
    USB ids from ``/sys/bus/usb/devices/<port>/idVendor`` and ``idProduct``. The
    Coral USB Accelerator enumerates as ``1a6e:089a`` (Global Unichip, no firmware
    yet: ``state = "no-firmware"``) until libedgetpu loads its firmware, then as
    ``18d1:9302`` (Google: ``state = "firmware-loaded"``); these four ids are the
    constants ``kTargetDfuVendorId/ProductId`` and ``kTargetAppVendorId/ProductId``
    of libedgetpu's USB driver (github.com/google-coral/libedgetpu). Carries the
    link speed (below) and, under 5000 Mbit/s, ``warning``.
``coral-pcie``
    ``/dev/apex_N`` or ``/sys/class/apex/apex_N`` (the gasket/apex driver's device),
    or a PCI function ``1ac1:089a`` (the Coral M.2/PCIe Edge TPU) with no apex device,
    reported with ``driver_loaded = False``.
``ncs2``
    USB ``03e7:2485`` (Intel Movidius Myriad X, i.e. the Neural Compute Stick 2,
    before OpenVINO boots it). ``03e7:2150`` is the first Neural Compute Stick
    (Myriad 2) and is reported as ``ncs``; ``03e7:f63b`` is either stick after
    OpenVINO loaded its firmware and is reported as ``myriad-booted`` (the id does not
    say which stick). The ids are those of Intel's ``97-myriad-usbboot.rules``
    (OpenVINO ``install_dependencies``) and of the usb.ids database. All carry the
    link speed; ``ncs2`` and ``myriad-booted`` also the OpenVINO ``note``.
``intel-igpu``
    A DRM card (``/sys/class/drm/cardN``) whose PCI vendor is ``0x8086`` and whose
    driver is ``i915`` or ``xe``, on a host with ``/dev/dri/renderD*``. Intel's
    integrated GPU is PCI function ``0000:00:02.0``; an Intel GPU elsewhere (an Arc
    card) is reported as ``intel-dgpu``. The driver is the basename of the
    ``device/driver`` link, else the ``DRIVER=`` line of ``device/uevent``.
``nvidia-gpu``
    ``/proc/driver/nvidia/gpus/<pci slot>/information`` (``Model:`` line) from the
    NVIDIA kernel driver, and/or a PCI function with vendor ``0x10de`` and class
    ``0x0300xx`` (VGA) or ``0x0302xx`` (3D controller) under
    ``/sys/bus/pci/devices``; the two are merged by PCI slot. ``model`` is None when
    only PCI ids are known (no name database is consulted).

USB link speed: the ``speed`` file of the same device folder, in Mbit/s, as the
kernel writes it (``Documentation/ABI/testing/sysfs-bus-usb``): 1.5, 12, 480, 5000,
10000, 20000. ``usb_generation`` maps it to the USB revision that introduced that
signalling rate.

Rules as in ``host.py``: files under ``root``; unreadable means None or absent,
never a guess. Importing this module does nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

Number = Union[int, float]

USB_GENERATIONS: Dict[Number, str] = {
    1.5: "1.0",
    12: "1.1",
    480: "2.0",
    5000: "3.0",
    10000: "3.1",
    20000: "3.2",
}

# The figure comes from the project's hardware issue; Coral's documentation says only
# that USB 3 gives the best performance and USB 2 is slower.
CORAL_USB2_WARNING = "on USB 2 the Edge TPU is about 4x slower than on USB 3"
NCS_OPENVINO_NOTE = "the NCS2 (MYRIAD) is supported only by OpenVINO <= 2022.3"

# (vendor, product) -> (kind, state, name)
USB_ACCELERATORS: Dict[Tuple[str, str], Tuple[str, str, str]] = {
    ("1a6e", "089a"): ("coral-usb", "no-firmware", "Coral USB Accelerator"),
    ("18d1", "9302"): ("coral-usb", "firmware-loaded", "Coral USB Accelerator"),
    ("03e7", "2485"): ("ncs2", "unbooted", "Intel Neural Compute Stick 2 (Myriad X)"),
    ("03e7", "2150"): ("ncs", "unbooted", "Intel Movidius Neural Compute Stick (Myriad 2)"),
    ("03e7", "f63b"): ("myriad-booted", "booted", "Intel Movidius NCS or NCS2 (booted)"),
}

CORAL_PCI_ID = ("0x1ac1", "0x089a")
INTEL_VENDOR = "0x8086"
NVIDIA_VENDOR = "0x10de"
INTEL_IGPU_SLOT = "0000:00:02.0"
GPU_CLASSES = ("0x0300", "0x0302")  # VGA compatible, 3D controller

_CARD = re.compile(r"^card\d+$")


# --- reading ----------------------------------------------------------------------------


def _read_str(path: Path) -> Optional[str]:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return text or None


def _subdirs(parent: Path) -> List[Path]:
    try:
        return sorted(entry for entry in parent.iterdir() if entry.is_dir())
    except OSError:
        return []


def _uevent(device: Path) -> Dict[str, str]:
    text = _read_str(device / "uevent") or ""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _driver(device: Path) -> Optional[str]:
    """Basename of the ``driver`` link, else ``DRIVER=`` of ``uevent``; None if unbound."""
    try:
        return os.path.basename(os.readlink(device / "driver"))
    except OSError:
        pass
    return _uevent(device).get("DRIVER") or None


def _pci_slot(device: Path) -> Optional[str]:
    """``0000:00:02.0``: the link target's basename, else ``PCI_SLOT_NAME`` of uevent."""
    try:
        target = os.path.basename(os.readlink(device))
    except OSError:
        target = ""
    if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", target):
        return target
    return _uevent(device).get("PCI_SLOT_NAME") or None


# --- USB --------------------------------------------------------------------------------


def parse_usb_speed(text: Optional[str]) -> Optional[Number]:
    """``"480"`` -> 480, ``"1.5"`` -> 1.5; None when absent or not a number."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def usb_generation(speed_mbps: Optional[Number]) -> Optional[str]:
    return USB_GENERATIONS.get(speed_mbps) if speed_mbps is not None else None


def usb_accelerators(root: Path) -> List[Dict[str, Any]]:
    found = []
    for device in _subdirs(Path(root) / "sys" / "bus" / "usb" / "devices"):
        vendor = (_read_str(device / "idVendor") or "").lower()
        product = (_read_str(device / "idProduct") or "").lower()
        known = USB_ACCELERATORS.get((vendor, product))
        if known is None:
            continue
        kind, state, name = known
        speed = parse_usb_speed(_read_str(device / "speed"))
        fact: Dict[str, Any] = {
            "kind": kind,
            "name": name,
            "usb_id": f"{vendor}:{product}",
            "usb_path": device.name,
            "state": state,
            "usb_speed_mbps": speed,
            "usb_generation": usb_generation(speed),
        }
        if kind == "coral-usb" and speed is not None and speed < 5000:
            fact["warning"] = CORAL_USB2_WARNING
        if kind in ("ncs2", "myriad-booted"):
            fact["note"] = NCS_OPENVINO_NOTE
        found.append(fact)
    return found


# --- PCI / character devices ------------------------------------------------------------


def _pci_devices(root: Path) -> List[Tuple[Path, str, str, str]]:
    """``(dir, vendor, device, class)`` of each PCI function, lower-case hex text."""
    devices = []
    for device in _subdirs(Path(root) / "sys" / "bus" / "pci" / "devices"):
        vendor = (_read_str(device / "vendor") or "").lower()
        product = (_read_str(device / "device") or "").lower()
        pci_class = (_read_str(device / "class") or "").lower()
        devices.append((device, vendor, product, pci_class))
    return devices


def _hex4(text: str) -> str:
    return text[2:] if text.startswith("0x") else text


def coral_pcie(root: Path) -> List[Dict[str, Any]]:
    root = Path(root)
    names = set()
    for parent in (root / "dev", root / "sys" / "class" / "apex"):
        try:
            names.update(e.name for e in parent.iterdir() if re.fullmatch(r"apex_\d+", e.name))
        except OSError:
            pass
    found = [
        {
            "kind": "coral-pcie",
            "name": name,
            "dev_node": f"/dev/{name}" if (root / "dev" / name).exists() else None,
            "driver_loaded": True,
        }
        for name in sorted(names)
    ]
    if not found:
        for device, vendor, product, _ in _pci_devices(root):
            if (vendor, product) == CORAL_PCI_ID:
                found.append(
                    {
                        "kind": "coral-pcie",
                        "name": None,
                        "dev_node": None,
                        "driver_loaded": False,
                        "pci_slot": device.name,
                        "pci_id": f"{_hex4(vendor)}:{_hex4(product)}",
                    }
                )
    return found


def intel_gpus(root: Path) -> List[Dict[str, Any]]:
    root = Path(root)
    try:
        render_nodes = sorted(
            e.name for e in (root / "dev" / "dri").iterdir() if e.name.startswith("renderD")
        )
    except OSError:
        render_nodes = []
    if not render_nodes:
        return []
    found = []
    for card in _subdirs(root / "sys" / "class" / "drm"):
        if not _CARD.match(card.name):
            continue
        device = card / "device"
        vendor = (_read_str(device / "vendor") or "").lower()
        driver = _driver(device)
        if vendor != INTEL_VENDOR or driver not in ("i915", "xe"):
            continue
        slot = _pci_slot(device)
        try:
            own = sorted(e.name for e in (device / "drm").iterdir() if e.name in render_nodes)
        except OSError:
            own = []
        product = _read_str(device / "device")
        found.append(
            {
                "kind": "intel-igpu" if slot == INTEL_IGPU_SLOT else "intel-dgpu",
                "card": card.name,
                "driver": driver,
                "pci_slot": slot,
                "pci_id": f"8086:{_hex4(product.lower())}" if product else None,
                "render_node": f"/dev/dri/{own[0]}" if own else None,
            }
        )
    return found


def nvidia_gpus(root: Path) -> List[Dict[str, Any]]:
    root = Path(root)
    version = _read_str(root / "proc" / "driver" / "nvidia" / "version")
    match = re.search(r"Kernel Module\s+(\d+(?:\.\d+)+)", version or "")
    driver_version = match.group(1) if match else None
    by_slot: Dict[str, Dict[str, Any]] = {}
    for gpu in _subdirs(root / "proc" / "driver" / "nvidia" / "gpus"):
        info = _read_str(gpu / "information") or ""
        model = re.search(r"^Model:\s*(.+)$", info, re.MULTILINE)
        by_slot[gpu.name] = {
            "kind": "nvidia-gpu",
            "model": model.group(1).strip() if model else None,
            "pci_slot": gpu.name,
            "pci_id": None,
            "driver": "nvidia",
            "driver_version": driver_version,
        }
    for device, vendor, product, pci_class in _pci_devices(root):
        if vendor != NVIDIA_VENDOR or not pci_class.startswith(GPU_CLASSES):
            continue
        fact = by_slot.setdefault(
            device.name,
            {
                "kind": "nvidia-gpu",
                "model": None,
                "pci_slot": device.name,
                "pci_id": None,
                "driver": _driver(device),
                "driver_version": None,
            },
        )
        fact["pci_id"] = f"10de:{_hex4(product)}" if product else None
        if fact["driver"] == "nvidia" and fact["driver_version"] is None:
            fact["driver_version"] = driver_version
    return [by_slot[slot] for slot in sorted(by_slot)]


def detect_accelerators(root: Path = Path("/")) -> List[Dict[str, Any]]:
    """Every accelerator found under ``root``: USB sticks, Coral PCIe, Intel and NVIDIA
    GPUs, in that order; [] when there is none."""
    root = Path(root)
    return usb_accelerators(root) + coral_pcie(root) + intel_gpus(root) + nvidia_gpus(root)
