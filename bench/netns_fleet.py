"""A fleet of "device hosts" on this machine, provisioned over SSH, through a link cut.

Makes N network namespaces (tests/netns_hosts.py: own address, veth link, real sshd),
starts `edgebench server` with its embedded broker and artifact server listening on the
device network (EDGEBENCH_BROKER_BIND, EDGEBENCH_ARTIFACT_BIND), provisions an agent into
every host with `edgebench devices provision --inventory`, runs a campaign across them,
cuts the first host's link mid-campaign and restores it. Prints the provisioning time per
host (with its steps), how long the cut host took to show offline, and the campaign's time.
Everything it made is removed on exit.

Needs root, iproute2 and openssh-server (tests/run.sh installs them).
Usage: sudo .venv/bin/python bench/netns_fleet.py [--hosts 3] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.netns_hosts import NetnsLab, unavailable  # noqa: E402

SPEC = """name: netns-bench
devices: {tags: [netns]}
models: [mlp_digits]
runtimes: [onnxruntime]
batch_sizes: [1, 2, 4, 8]
policy: {warmup_s: 0.2, min_queries: 50, min_s: 2, max_s: 5, runs: 1}
"""


class Controller:
    def __init__(self, home: Path, lab: NetnsLab) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "EDGEBENCH_HOME": str(home),
            "EDGEBENCH_BROKER_BIND": lab.gateway,
            "EDGEBENCH_ARTIFACT_BIND": lab.gateway,
            "EDGEBENCH_OFFLINE_AFTER_S": "6",
            "EDGEBENCH_SCHEDULER_INTERVAL_S": "0.5",
        }
        for key in ("EDGEBENCH_BROKER_URL", "EDGEBENCH_DATABASE_URL"):
            self.env.pop(key, None)
        self.server: subprocess.Popen | None = None

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def must(self, *args: str, timeout: float = 600) -> str:
        done = self.cli(*args, timeout=timeout)
        if done.returncode != 0:
            raise SystemExit(f"edgebench {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        log = open(self.home / "server.log", "ab")  # noqa: SIM115
        self.server = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "server"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (self.home / "broker.json").exists():
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise SystemExit(
                    f"the server did not start:\n{(self.home / 'server.log').read_text()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()

    def device_status(self, name: str) -> str | None:
        match = re.search(rf"│ {re.escape(name)} +│ [^│]+│ (\w+)", self.must("devices", "list"))
        return match.group(1) if match else None

    def campaign(self) -> dict:
        with_status = self.must("campaign", "list")
        match = re.search(r"│ (\d+) +│ netns-bench +│ ([a-z ]+?) +│", with_status)
        return {"id": match.group(1), "state": match.group(2)} if match else {}


def wait_for(predicate, timeout: float, what: str, every_s: float = 0.5):  # noqa: ANN001, ANN201
    """The predicate's first true value, asked every `every_s`; exits after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--python", default="/usr/bin/python3", help="the devices' Python")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"cannot make device hosts here: {reason}")

    workdir = Path(tempfile.mkdtemp(prefix="edgebench-netns-"))
    lab = NetnsLab(workdir / "lab", count=args.hosts)
    controller = None
    try:
        lab.start()
        lab.trust_host_keys()
        controller = Controller(workdir / "controller", lab)
        controller.home.mkdir()
        print(f"{args.hosts} device hosts on {lab.subnet}, controller at {lab.gateway}")
        controller.start()
        controller.must("models", "build", "--only", "mlp_digits")
        inventory = workdir / "fleet.yaml"
        inventory.write_text(
            json.dumps(
                {
                    "defaults": {"tags": ["netns"], "python": args.python},
                    "hosts": [
                        {
                            "host": host.target,
                            "name": f"netns-{host.index}",
                            "remote_dir": str(workdir / "devices" / f"netns-{host.index}"),
                        }
                        for host in lab.hosts
                    ],
                }
            )
        )
        started = time.monotonic()
        output = controller.must(
            "devices", "provision", "--inventory", str(inventory), "-i", str(lab.client_key),
            "--known-hosts", str(lab.known_hosts), "--env", "EDGEBENCH_HEARTBEAT_S=1",
        )  # fmt: skip
        print(f"\nprovisioning, {args.hosts} hosts in parallel: {time.monotonic() - started:.1f} s")
        for line in output.splitlines():
            if line.startswith(("ok", "FAIL")):
                print("  " + line.split(": ", 1)[0] if line.startswith("ok") else "  " + line)

        spec = workdir / "spec.yaml"
        spec.write_text(SPEC)
        started = time.monotonic()
        controller.must("campaign", "submit", str(spec))
        victim = lab.hosts[0]
        # Cut once netns-1 has a result: its model is cached by then, so the cut falls on a
        # measurement, not on a download (an interrupted download fails its trial).
        wait_for(
            lambda: re.search(r"│ netns-1 +│.*│ done ", controller.must("campaign", "status", "1")),
            300,
            "netns-1's first result",
        )
        lab.cut(victim)
        cut_at = time.monotonic()
        wait_for(lambda: controller.device_status("netns-1") == "offline", 60, "netns-1 offline")
        offline_after = time.monotonic() - cut_at
        time.sleep(5)
        lab.restore(victim)
        restored_at = time.monotonic()
        wait_for(lambda: controller.device_status("netns-1") == "online", 60, "netns-1 online")
        online_after = time.monotonic() - restored_at
        campaign = wait_for(
            lambda: (c := controller.campaign()) and c["state"] != "running" and c,
            600,
            "the campaign",
        )
        print(
            f"\ncampaign across {args.hosts} hosts: {campaign['state']} in {time.monotonic() - started:.1f} s"
        )
        print(
            f"  netns-1 offline {offline_after:.1f} s after its link was cut (EDGEBENCH_OFFLINE_AFTER_S=6)"
        )
        print(f"  netns-1 online again {online_after:.1f} s after the link came back")
        print(controller.must("campaign", "status", campaign["id"]))
    finally:
        if controller is not None:
            controller.stop()
        lab.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
