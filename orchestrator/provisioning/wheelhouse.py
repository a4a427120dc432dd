"""Wheels for devices, built and downloaded on the controller: devices may have no internet.

The agent wheel is built from this installation's source tree (or fetched from the index
for a release install); its dependencies are downloaded as wheels for the device's Python
version and platform. Everything is kept under EDGEBENCH_HOME/wheelhouse and reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from orchestrator.provisioning import ProvisionError

MANYLINUX_ARCHES = {"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x"}
LEGACY_MANYLINUX = (("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5))
LEGACY_ONLY_ON = {"manylinux2010": {"x86_64", "i686"}, "manylinux1": {"x86_64", "i686"}}
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in")
PIP_TIMEOUT_S = 900
# pip evaluates environment markers (python_version < "3.10") for the interpreter it runs
# on, even with --python-version (pip issue 11664); this runs pip with the device's values.
PIP_WITH_DEVICE_MARKERS = """
import json, sys
device = json.loads(sys.argv[1])
try:
    from pip._vendor.packaging import markers
    controller = markers.default_environment
    markers.default_environment = lambda: {**controller(), **device}
except (ImportError, AttributeError):
    pass  # the device's pip then names what is missing, and provisioning fetches it
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass(frozen=True)
class DevicePython:
    """The interpreter the agent will run on, as the device's probe reported it."""

    version: str  # "3.11.2"
    machine: str  # "aarch64"
    libc: tuple[str, str]  # ("glibc", "2.36")
    release: str = ""
    system_version: str = ""

    @classmethod
    def from_facts(cls, facts: dict) -> DevicePython:
        libc = facts.get("libc") or ["", ""]
        return cls(
            str(facts["python"]),
            str(facts["machine"]),
            (str(libc[0]), str(libc[1])),
            str(facts.get("release", "")),
            str(facts.get("system_version", "")),
        )

    def markers(self) -> dict[str, str]:
        """PEP 508 marker values on the device (CPython on Linux, as checked before)."""
        major, minor = self.version.split(".")[:2]
        return {
            "implementation_name": "cpython",
            "implementation_version": self.version,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": self.release,
            "platform_system": "Linux",
            "platform_version": self.system_version,
            "python_full_version": self.version,
            "python_version": f"{major}.{minor}",
            "sys_platform": "linux",
        }

    @property
    def tag(self) -> str:
        major, minor = self.version.split(".")[:2]
        return f"{major}{minor}"

    @property
    def key(self) -> str:
        """One wheelhouse per interpreter version and platform."""
        libc = "".join(self.libc) or "unknown-libc"
        return f"cp{self.tag}-{self.machine}-{libc}"


def pip_platforms(machine: str, libc: tuple[str, str]) -> list[str]:
    """`pip download --platform` values a device's pip accepts, newest first."""
    name, version = libc
    platforms = []
    if name == "glibc" and machine in MANYLINUX_ARCHES:
        try:
            glibc_minor = int(version.split(".")[1])
        except (IndexError, ValueError):
            raise ProvisionError(f"cannot read the device's glibc version {version!r}") from None
        platforms += [f"manylinux_2_{minor}_{machine}" for minor in range(glibc_minor, 4, -1)]
        for legacy, minimum in LEGACY_MANYLINUX:
            if glibc_minor >= minimum and machine in LEGACY_ONLY_ON.get(legacy, {machine}):
                platforms.append(f"{legacy}_{machine}")
    platforms.append(f"linux_{machine}")
    return platforms


def source_tree() -> Path | None:
    """This installation's project folder when it runs from a checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "edgebench"' in pyproject.read_text():
        return root
    return None


def _package_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def _source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    files = [root / name for name in SOURCE_FILES if (root / name).is_file()]
    for package in _package_dirs(root):
        files += sorted(
            p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per folder, across threads and processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip(*args: str, what: str, markers: dict[str, str] | None = None, hint: str = "") -> None:
    runner = ["-m", "pip"]
    if markers is not None:
        runner = ["-c", PIP_WITH_DEVICE_MARKERS, json.dumps(markers)]
    command = [sys.executable, *runner, "--disable-pip-version-check", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"{what}: pip did not finish within {PIP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
        raise ProvisionError(
            f"{what} failed: " + " | ".join(lines[-4:]) + (f"; {hint}" if hint else "")
        )


class Wheelhouse:
    def __init__(self, root: Path) -> None:
        self.root = root

    def agent_wheel(self) -> Path:
        """The edgebench wheel of this controller's version (built once per source change)."""
        source = source_tree()
        version = importlib.metadata.version("edgebench")
        folder = self.root / "agent" / (_source_digest(source) if source else version)
        with _locked(self.root / "agent.lock"):
            found = sorted(folder.glob("edgebench-*.whl"))
            if found:
                return found[-1]
            staging = Path(tempfile.mkdtemp(prefix="wheel-", dir=self.root))
            try:
                if source is not None:
                    # Built from a copy: an in-tree build would race others using the tree.
                    copy = staging / "src"
                    copy.mkdir()
                    for name in SOURCE_FILES:
                        if (source / name).is_file():
                            shutil.copy2(source / name, copy / name)
                    for package in _package_dirs(source):
                        shutil.copytree(
                            package,
                            copy / package.name,
                            ignore=shutil.ignore_patterns("__pycache__"),
                        )
                    _pip(
                        "wheel",
                        "--quiet",
                        "--no-deps",
                        "--wheel-dir",
                        str(staging / "out"),
                        str(copy),
                        what="building the agent wheel",
                    )
                else:
                    _pip(
                        "download",
                        "--quiet",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--dest",
                        str(staging / "out"),
                        f"edgebench=={version}",
                        what=f"fetching the edgebench {version} wheel",
                    )
                wheel = next((staging / "out").glob("edgebench-*.whl"))
                folder.mkdir(parents=True, exist_ok=True)
                shutil.move(str(wheel), folder / wheel.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return folder / wheel.name

    def dependencies(
        self, device: DevicePython, agent_wheel: Path, runtimes: Sequence[str]
    ) -> Path:
        """Wheels of the agent's dependencies (and pip) for `device`, in one folder.

        Resolved again only when the agent's requirements change: a stamp names what the
        folder already satisfies, so a controller without internet reuses it."""
        folder = self.root / device.key
        extras = ",".join(["agent", *runtimes])
        with _locked(self.root / f"{device.key}.lock"):
            stamp = hashlib.sha256(
                json.dumps([device.markers(), extras, requires_dist(agent_wheel)]).encode()
            ).hexdigest()[:16]
            if not (folder / f".resolved-{stamp}").exists():
                self._download(device, [f"{agent_wheel}[{extras}]", "pip"])
                (folder / f".resolved-{stamp}").touch()
        return folder

    def pip_wheel(self, device: DevicePython) -> Path:
        """The newest pip wheel for `device` (fetched alone when only the agent is uploaded)."""
        folder = self.root / device.key
        with _locked(self.root / f"{device.key}.lock"):
            if not list(folder.glob("pip-*.whl")):
                self._download(device, ["pip"])
        return newest(folder.glob("pip-*.whl"))

    def add(self, device: DevicePython, requirements: Sequence[str]) -> Path:
        """Download what the device's pip found missing (it stays for the next install)."""
        with _locked(self.root / f"{device.key}.lock"):
            return self._download(device, requirements)

    def _download(self, device: DevicePython, requirements: Sequence[str]) -> Path:
        """Download `requirements` and what they need for `device` into its wheelhouse
        (the caller holds the folder's lock)."""
        folder = self.root / device.key
        platforms = [
            arg for p in pip_platforms(device.machine, device.libc) for arg in ("--platform", p)
        ]
        names = ", ".join(r.split("/")[-1] for r in requirements)
        _pip(
            "download",
            "--quiet",
            "--dest",
            str(folder),
            "--only-binary=:all:",
            "--python-version",
            device.version,
            "--implementation",
            "cp",
            "--abi",
            f"cp{device.tag}",
            *platforms,
            *requirements,
            what=f"downloading wheels for Python {device.version} on {device.machine} ({names})",
            markers=device.markers(),
            hint="where a package has no wheel for this platform, give the device an index "
            "it can reach (--index-url)",
        )
        return folder


def newest(wheels: Iterable[Path]) -> Path:
    """The wheel with the highest version among wheels of one project."""

    def version(wheel: Path) -> tuple:
        text = wheel.name.split("-")[1]
        return tuple(int(part) if part.isdigit() else -1 for part in text.split("."))

    return max(wheels, key=version)


def requires_dist(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's metadata."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    return [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
