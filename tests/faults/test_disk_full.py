"""An agent whose disk is full when it fetches an artifact: the trial fails with a reason a
user can act on (the cache folder, "no space left"), nothing half-written stays in the cache,
and the same agent runs the next trial once there is room again.

The full disk is real: an 8 MiB tmpfs mounted as the agent's artifact cache
(EDGEBENCH_ARTIFACT_CACHE_DIR), filled but for 100 KiB, and a model (396 kB, with 1.8 MB of reference data) to fetch into it.
Mounting needs root (or CAP_SYS_ADMIN); without it the test is skipped (failed in CI).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from sqlalchemy import select

from orchestrator.artifacts import http_server
from orchestrator.store.models import Device, Model
from tests.e2e.test_artifact_http import run_campaign
from tests.faults import invariants
from tests.faults.conftest import online

pytestmark = pytest.mark.e2e

ROOM_LEFT = 100 * 1024


@pytest.fixture
def small_disk(tmp_path):
    from tests.conftest import missing_service

    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        missing_service(f"cannot mount a tmpfs for a full disk: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(disk, leave: int) -> None:
    """Take all but `leave` bytes of the disk with one file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize <= leave + 4096


def test_a_full_disk_fails_the_fetch_clearly_and_the_agent_goes_on(fleet, tmp_path, small_disk):
    cache = small_disk / "cache"
    fleet.env["EDGEBENCH_ARTIFACT_CACHE_DIR"] = str(cache)
    fleet.start_controller()
    agent = fleet.start_agent("fetcher")
    fleet.wait_until(online(fleet, "fetcher"), 60, "the agent to register")
    fleet.wait_until(lambda: http_server.recorded_url(tmp_path), 30, "the artifact server")
    with fleet.sessions() as session:
        model = session.scalar(
            select(Model).where(
                Model.name == "small_cnn_96", Model.format == "onnx", Model.precision == "fp32"
            )
        )
        boot = session.scalar(select(Device.boot_id).where(Device.name == "fetcher"))
    assert model.size > ROOM_LEFT
    _fill(small_disk, ROOM_LEFT)

    started = time.monotonic()
    trial = run_campaign(fleet, tmp_path, "disk-full", "small_cnn_96")
    failed_in = time.monotonic() - started
    assert trial.state == "failed", trial.error
    campaigns = [trial.campaign_id]
    assert "no space left" in trial.error and str(cache) in trial.error, trial.error
    assert sorted(p.name for p in cache.iterdir() if p.name != ".lock") == []  # no .part

    (small_disk / "filler").unlink()  # room again
    started = time.monotonic()
    trial = run_campaign(fleet, tmp_path, "disk-freed", "small_cnn_96")
    done_in = time.monotonic() - started
    assert trial.state == "done", trial.error
    assert (cache / model.sha256).stat().st_size == model.size
    campaigns.append(trial.campaign_id)
    assert agent.poll() is None  # the same agent process went on
    with fleet.sessions() as session:
        assert session.scalar(select(Device.boot_id).where(Device.name == "fetcher")) == boot
    for campaign in campaigns:
        invariants.assert_holds(fleet.database_url, campaign)
    print(
        f"disk full: trial failed in {failed_in:.1f} s; after freeing space done in {done_in:.1f} s"
    )
