"""The shell text provisioning runs on a device. POSIX sh; plain functions, unit tested.

Every path comes from an `AgentLayout` whose parts were checked to be plain characters,
and is quoted all the same.
"""

from __future__ import annotations

import re
from shlex import quote
from typing import Optional, Sequence
from urllib.parse import urlsplit

from orchestrator.provisioning.layout import AgentLayout

# Runs under the device's Python, whatever its version: no f-strings, nothing past 2.7
# at parse time, so that a too-old Python is reported as such instead of a SyntaxError.
PROBE_SCRIPT = r"""
import json, os, platform, sys
facts = {
    "python": platform.python_version(),
    "implementation": platform.python_implementation(),
    "executable": sys.executable,
    "machine": platform.machine(),
    "system": platform.system(),
    "release": platform.release(),
    "system_version": platform.version(),
    "libc": list(platform.libc_ver()),
    "hostname": platform.node(),
    "home": os.path.expanduser("~"),
    "uid": os.getuid(),
    "systemd": os.path.isdir("/run/systemd/system"),
    "ssh_client": os.environ.get("SSH_CLIENT", ""),
    "venv": False,
    "sudo": False,
}
try:
    import venv
    facts["venv"] = True
except ImportError:
    pass
try:
    import shutil, subprocess
    sudo = shutil.which("sudo")
    if sudo and os.getuid() != 0:
        facts["sudo"] = subprocess.call([sudo, "-n", "true"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL) == 0
except Exception:
    pass
print(json.dumps(facts))
"""
NOT_FOUND = 127  # the shell's exit status for a command it cannot find
STOP_TIMEOUT_S = 60


def probe(python: str) -> str:
    """Print the device's facts as JSON, or exit 127 when `python` is not there."""
    return (
        f"command -v {quote(python)} >/dev/null 2>&1 || exit {NOT_FOUND}; "
        f"{quote(python)} -c {quote(PROBE_SCRIPT)}"
    )


def can_connect(python: str, host: str, port: int, timeout_s: float = 5) -> str:
    """Exit 0 when the device opens a TCP connection to host:port, else print why."""
    script = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), {timeout_s}).close()\n"
        "except Exception as exc:\n"
        "    sys.stderr.write(str(exc))\n"
        "    sys.exit(1)\n"
    )
    return f"{quote(python)} -c {quote(script)}"


def make_folders(layout: AgentLayout) -> str:
    return f"mkdir -p {quote(layout.root)} {quote(layout.wheelhouse)}"


def create_venv(python: str, layout: AgentLayout, pip_wheel: str, fresh: bool = True) -> str:
    """The agent's virtual environment, its pip installed from the uploaded pip wheel (run
    from the wheel itself): no `ensurepip` needed, which Debian and Ubuntu split off into
    python3-venv, and a pip that knows today's wheel tags. `fresh` replaces an old venv."""
    venv_python = quote(layout.venv + "/bin/python")
    bootstrap = (
        f"{quote(python)} -m venv --without-pip {quote(layout.venv)} && "
        f"{HERMETIC}{venv_python} {quote(f'{layout.wheelhouse}/{pip_wheel}/pip')} install "
        f"{PIP_QUIET} --no-index --find-links {quote(layout.wheelhouse)} pip"
    )
    parts = [make_folders(layout)]
    if fresh:
        parts.append(f"rm -rf {quote(layout.venv)}")
    parts.append(f"{{ [ -x {venv_python} ] || {{ {bootstrap}; }}; }}")
    return " && ".join(parts)


PIP_QUIET = "--disable-pip-version-check --no-input --no-compile --quiet"
# From the uploaded wheels only: no pip configuration of the device's adds indexes or links.
HERMETIC = "PIP_CONFIG_FILE=/dev/null "


def pip_install(
    layout: AgentLayout,
    wheel_file: str,
    runtimes: Sequence[str],
    index_url: Optional[str] = None,
    reinstall_agent: bool = False,
) -> str:
    """Install the agent wheel with its extras: dependencies from the uploaded wheelhouse,
    or from `index_url` when the device can reach one (then the device's pip configuration,
    its proxy or certificates, applies)."""
    pip = f"{'' if index_url else HERMETIC}{quote(layout.venv + '/bin/python')} -m pip"
    source = f"--find-links {quote(layout.wheelhouse)}"
    source += f" --index-url {quote(index_url)}" if index_url else " --no-index"
    if index_url and urlsplit(index_url).scheme == "http":  # pip ignores plain HTTP otherwise
        source += f" --trusted-host {quote(urlsplit(index_url).netloc)}"
    wheel = f"{layout.wheelhouse}/{wheel_file}"
    extras = ",".join(["agent", *runtimes])
    steps = [f"{pip} install {PIP_QUIET} {source} {quote(f'{wheel}[{extras}]')}"]
    if reinstall_agent:  # same version number, new code: pip would keep the old one
        steps.append(f"{pip} install {PIP_QUIET} --no-deps --force-reinstall {quote(wheel)}")
    return " && ".join(steps)


_MISSING = re.compile(r"No matching distribution found for ([^\s;]+)")


def missing_requirements(pip_output: str) -> list[str]:
    """What pip on the device could not find in the wheelhouse, without environment markers.

    The controller resolves for the device's Python version and platform, but pip evaluates
    markers (python_full_version < "3.11.3") against the controller's own interpreter; the
    device's pip tells what that left out.
    """
    found = []
    for match in _MISSING.finditer(pip_output):
        requirement = match.group(1).strip()
        if requirement not in found:
            found.append(requirement)
    return found


def sudo_prefix(facts: dict) -> str:
    return "" if facts.get("uid") == 0 else "sudo -n "


# -- supervised background process ---------------------------------------------------

_ALIVE = (
    # kill -0 succeeds on a zombie: where nobody reaps an exited loop, look at its state too.
    'alive() { kill -0 "$1" 2>/dev/null && '
    "[ \"$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1)\" != Z ]; }"
)


def start_supervised(layout: AgentLayout) -> str:
    """Start the restart loop detached from the SSH session; wait for its pidfile."""
    script = quote(layout.supervisor)
    pid_file = quote(layout.pid_file)
    return (
        f"chmod 700 {script} && rm -f {pid_file} && "
        "if command -v setsid >/dev/null 2>&1; then "
        f"setsid sh {script} </dev/null >/dev/null 2>&1 & "
        f"else nohup sh {script} </dev/null >/dev/null 2>&1 & fi; "
        f"i=0; while [ ! -s {pid_file} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
        f"[ -s {pid_file} ] || {{ echo 'the agent supervisor did not start' >&2; exit 1; }}"
    )


def stop_supervised(layout: AgentLayout, timeout_s: int = STOP_TIMEOUT_S) -> str:
    """SIGTERM the loop (the agent finishes its trial), SIGKILL its group after `timeout_s`."""
    pid_file = quote(layout.pid_file)
    ticks = timeout_s * 10
    return (
        f"{_ALIVE}; "
        f"if [ -s {pid_file} ]; then pid=$(cat {pid_file}); "
        'if alive "$pid"; then kill -TERM "$pid"; i=0; '
        f'while alive "$pid" && [ $i -lt {ticks} ]; do sleep 0.1; i=$((i+1)); done; '
        'if alive "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; fi; '
        f"fi; rm -f {pid_file}; fi"
    )


def supervised_status(layout: AgentLayout) -> str:
    """Print `running` or `stopped`."""
    pid_file = quote(layout.pid_file)
    return (
        f"{_ALIVE}; "
        f'if [ -s {pid_file} ] && alive "$(cat {pid_file})"; then echo running; '
        "else echo stopped; fi"
    )


# -- systemd -------------------------------------------------------------------------


def install_unit(layout: AgentLayout, staged_unit: str, sudo: str) -> str:
    return (
        f"{sudo}install -m 0644 {quote(staged_unit)} {quote(layout.unit_path)} && "
        f"rm -f {quote(staged_unit)} && {sudo}systemctl daemon-reload"
    )


def start_systemd(layout: AgentLayout, sudo: str) -> str:
    unit = quote(layout.unit_name)
    return f"{sudo}systemctl enable {unit} && {sudo}systemctl restart {unit}"


def stop_systemd(layout: AgentLayout, sudo: str) -> str:
    unit = quote(layout.unit_name)
    return f"{sudo}systemctl disable --now {unit} 2>/dev/null || true"


def remove_unit(layout: AgentLayout, sudo: str) -> str:
    return f"{sudo}rm -f {quote(layout.unit_path)} && {sudo}systemctl daemon-reload"


# -- files ---------------------------------------------------------------------------


def tail_log(layout: AgentLayout, lines: int = 100) -> str:
    log = quote(layout.log_file)
    return f"if [ -f {log} ]; then tail -n {int(lines)} {log}; else echo 'no agent log yet' >&2; fi"


def remove_files(layout: AgentLayout) -> str:
    """Remove what provisioning made, by name: never `rm -rf` a folder the user chose."""
    made = [
        layout.venv,
        layout.wheelhouse,
        layout.agent_home,
        layout.env_file,
        layout.log_file,
        layout.pid_file,
        layout.supervisor,
    ]
    return f"rm -rf {' '.join(quote(path) for path in made)} && rmdir {quote(layout.root)} 2>/dev/null; true"
