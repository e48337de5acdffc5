"""A drill's limits on a real MariaDB stack: the time limit stops a step in
its middle (the deep verify, a restore), and while a drill runs it is at
backup priority (the process niced and at I/O class best-effort 7, the
sandbox at a low CPU weight) and a second drill on the host is skipped.
(The disk-space check is in test_drill_flows.)"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from drills.models import Drill
from drills.services.requests import request_drill
from drills.services.run import run_drill, spool_dir
from engine.drill.sandbox import LABEL, Limits
from schedules.models import AppNotificationTargets, Notification
from schedules.secrets import encrypt_targets
from snapshots.models import Snapshot
from tests.backup_helpers import archive_path, backup_now
from tests.conftest import manage_py, subprocess_env
from tests.drills.helpers import (
    container_states,
    drill_objects,
    restamp,
    seed_mariadb,
    sleep_in_dump,
)
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def _drill(backup_id: str) -> Drill:
    with contextlib.suppress(CommandError):  # the drill row says why
        call_command("backup", "drill", backup_id)
    return Drill.objects.filter(backup_id=backup_id).latest("created_at")


def _sleeping_snapshot(stack: ComposeStack) -> Snapshot:
    """A snapshot of STACK whose dump, restored, sleeps 600 s first (and
    passes deep verify: a structurally valid dump that restores slowly)."""
    seed_mariadb(stack)
    snapshot = backup_now(stack.project)
    path = archive_path(snapshot, Path(settings.BACKUP_ROOT))
    sleep_in_dump(path, 600)
    restamp(snapshot, path)
    call_command("backup", "verify", snapshot.backup_id, "--deep")  # raises if it does not pass
    return snapshot


def test_the_time_limit_stops_the_deep_verify_and_a_restore_in_their_middle(
    wordpress: ComposeStack, docker_client: docker.DockerClient, settings: Any
) -> None:
    snapshot = _sleeping_snapshot(wordpress)
    before = container_states(docker_client, wordpress)
    AppNotificationTargets.objects.create(  # recorded, not sent: no worker here
        app_id=wordpress.project, targets_encrypted=encrypt_targets(["json://127.0.0.1:9/"])
    )

    settings.BACKUP_DRILL_TIME_LIMIT_SECONDS = 0
    drill = _drill(snapshot.backup_id)
    assert drill.outcome == Drill.Outcome.FAILED
    assert drill.reason == "the drill's time limit (0 s) was reached during the deep verify"

    # A good drill of this stack takes ~10 s even on a loaded machine: at the
    # limit, the restore (which would sleep 600 s) is under way.
    limit = settings.BACKUP_DRILL_TIME_LIMIT_SECONDS = 40
    started = time.monotonic()
    drill = _drill(snapshot.backup_id)
    elapsed = time.monotonic() - started

    mariadb = wordpress.container("mariadb").name
    assert drill.outcome == Drill.Outcome.FAILED
    assert drill.reason == (
        f"the drill's time limit ({limit} s) was reached during the restore of its dumps in the "
        f"sandbox of {mariadb} (the sandbox was stopped and removed)"
    )
    assert limit <= elapsed < limit + 20, elapsed  # stopped at the limit, not after the 600 s sleep
    assert drill.verify["valid"] is True  # the deep verify had passed
    assert drill_objects(docker_client, str(drill.pk)) == []
    assert not spool_dir(drill.pk).exists()
    assert container_states(docker_client, wordpress) == before
    note = Notification.objects.filter(event=Notification.Event.DRILL_FAILED).latest("pk")
    assert f"time limit ({limit} s) was reached during the restore" in note.body


def _ioprio(pid: int) -> tuple[int, int]:
    """(class, level) of process PID: the ioprio_get syscall, as `ionice -p`."""
    number = {"x86_64": 252, "aarch64": 31}[platform.machine()]
    value = ctypes.CDLL(None, use_errno=True).syscall(number, 1, pid)  # IOPRIO_WHO_PROCESS
    return value >> 13, value & 7


def _nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat; fields[0] is field 3


def _restoring_sandbox(client: docker.DockerClient, proc: Any, backup_id: str) -> Any:
    """The sandbox of the drill of BACKUP_ID once its dump is being fed to the server."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        drill = Drill.objects.filter(backup_id=backup_id).first()
        found = client.containers.list(filters={"label": f"{LABEL}={drill.pk}"}) if drill else []
        for container in found:
            with contextlib.suppress(docker.errors.APIError):  # not running yet
                processes = container.top(ps_args="-eo pid,args").get("Processes") or []
                if any(p[-1].startswith(("mariadb ", "mysql ")) for p in processes):
                    return container
        time.sleep(0.3)
    raise AssertionError("no drill restore began within 120 s")


def test_a_running_drill_is_at_backup_priority_and_a_second_one_is_skipped(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    snapshot = _sleeping_snapshot(wordpress)
    proc = manage_py("backup", "drill", snapshot.backup_id, env=subprocess_env())
    try:
        sandbox = _restoring_sandbox(docker_client, proc, snapshot.backup_id)

        # The drill's own process: as niced as a backup, I/O best-effort level 7.
        assert _nice(proc.pid) == settings.BACKUP_NICE == 10
        assert _ioprio(proc.pid) == (2, 7)
        # The sandbox: no network, and a low CPU weight that the kernel applies.
        host = docker_client.api.inspect_container(sandbox.id)["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["CpuShares"] == Limits().cpu_shares == 256
        shares = Path(f"/sys/fs/cgroup/cpu/docker/{sandbox.id}/cpu.shares")
        if shares.exists():  # cgroup v1 with the cgroupfs driver, as here
            assert shares.read_text().strip() == "256"
        # Block I/O weight needs blkio.weight (BFQ): this kernel has none, so
        # Docker discards it with a warning; where it has, it must be set.
        if any(Path("/sys/fs/cgroup/blkio").glob("blkio*weight")):
            assert host["BlkioWeight"] == Limits().blkio_weight
        else:
            assert host["BlkioWeight"] == 0

        # One drill per host: a second one, of any snapshot, is skipped at once.
        second = run_drill(str(request_drill(snapshot).pk))
        assert second.outcome == Drill.Outcome.SKIPPED
        assert second.reason == (
            f"another drill is running on this host ({settings.BACKUP_HOST_ID}); one at a time"
        )
        assert drill_objects(docker_client, str(second.pk)) == []  # it made no sandbox
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed: the drill still removes its sandbox
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    first = Drill.objects.exclude(pk=second.pk).get(backup_id=snapshot.backup_id)
    assert first.outcome == Drill.Outcome.FAILED and first.reason == "stopped by SIGTERM"
    assert drill_objects(docker_client, str(first.pk)) == []
