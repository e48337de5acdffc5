"""Backups that go wrong, on real disks, real Docker volumes and real
processes: a failed backup never looks completed and loses nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from engine.backup import BackupOptions, create_backup
from engine.discovery import get_app
from engine.errors import VolumeNotFound
from snapshots.models import AppBackupPolicy, AppLock, Run, Snapshot
from snapshots.services.backup import request_backup, run_backup
from snapshots.tasks import cleanup
from storage.base import TEMP_MARKER
from storage.local import LocalStorage
from tests.backup_helpers import backup_now
from tests.conftest import manage_py
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _fill_volume(client: docker.DockerClient, volume: str, megabytes: int) -> None:
    """Random (incompressible) data straight into the volume's mountpoint."""
    path = Path(client.volumes.get(volume).attrs["Mountpoint"]) / "big.bin"
    with path.open("wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1024 * 1024))


def _files_only(app_id: str) -> None:
    # These tests are about storage and processes; skipping the database dump
    # keeps them fast. Dumps have their own failure tests.
    AppBackupPolicy.objects.create(app_id=app_id, include_databases=False)


@pytest.fixture
def small_disk(tmp_path: Path, settings) -> Iterator[Path]:
    """BACKUP_ROOT on a real 24 MB tmpfs."""
    root = tmp_path / "small-disk"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(root)], check=True)
    settings.BACKUP_ROOT = root
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_disk_full_fails_clearly_and_keeps_earlier_backups(
    wordpress: ComposeStack, small_disk: Path, docker_client: docker.DockerClient
) -> None:
    _files_only(wordpress.project)
    first = backup_now(wordpress.project)
    assert first.status == Snapshot.Status.COMPLETED, first.error
    first_file = small_disk / first.storage_key
    first_bytes = first_file.read_bytes()
    _fill_volume(docker_client, wordpress.volume("wordpress"), 40)
    with pytest.raises(Exception, match="space"):
        backup_now(wordpress.project)
    failed = Snapshot.objects.filter(app_id=wordpress.project).latest("created_at")
    assert failed.status == Snapshot.Status.FAILED
    assert "space" in failed.error and str(small_disk) in failed.error
    names = [p.name for p in small_disk.rglob("*") if p.is_file()]
    assert not any(failed.backup_id in name for name in names), names
    assert not any(TEMP_MARKER in name for name in names), names
    assert first_file.read_bytes() == first_bytes
    assert hashlib.sha256(first_bytes).hexdigest() == first.sha256
    assert not AppLock.objects.held().filter(app_id=wordpress.project).exists()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def test_sigkill_mid_backup_leaves_no_completed_snapshot_and_next_start_cleans_up(
    wordpress: ComposeStack, docker_client: docker.DockerClient, settings, tmp_path: Path
) -> None:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_LEASE_SECONDS = 4  # the child gets it too: recovery after 4 s of silence
    _files_only(wordpress.project)
    _fill_volume(docker_client, wordpress.volume("wordpress"), 600)
    proc = manage_py("backup", "create", wordpress.project)
    app_dir = settings.BACKUP_ROOT / wordpress.project
    try:
        _wait_for(
            lambda: Run.objects.filter(app_id=wordpress.project, phase="archiving").exists()
            and app_dir.exists() and any(TEMP_MARKER in p.name for p in app_dir.iterdir()),
            60, "the backup to start writing",
        )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    snapshot = Snapshot.objects.get(app_id=wordpress.project)
    assert snapshot.status == Snapshot.Status.RUNNING  # what the dead worker left
    assert not (settings.BACKUP_ROOT / f"{wordpress.project}/{snapshot.backup_id}.tar.zst").exists()
    assert any(TEMP_MARKER in p.name for p in app_dir.iterdir())
    # A live run is never recovered; once its lease has run out, it is.
    assert cleanup()["recovered_runs"] == {}
    time.sleep(settings.BACKUP_LEASE_SECONDS + 1)
    result = cleanup()
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.FAILED and "died" in snapshot.error
    run = Run.objects.get(snapshot=snapshot)
    assert run.state == Run.State.FAILED and str(run.pk) in result["recovered_runs"]
    assert not AppLock.objects.held().filter(app_id=wordpress.project).exists()
    leftovers = [p.name for p in app_dir.iterdir()] if app_dir.exists() else []
    assert leftovers == [], leftovers
    # And the app can be backed up again.
    assert backup_now(wordpress.project).status == Snapshot.Status.COMPLETED


def test_missing_volume_is_a_clear_error(
    odoo: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    app = get_app(docker_client, odoo.project)
    # The volume disappears between discovery and the backup (app uninstalled).
    odoo.container("odoo").remove(force=True)
    docker_client.volumes.get(odoo.volume("odoo_filestore")).remove()
    storage = LocalStorage(tmp_path / "b")
    with pytest.raises(VolumeNotFound, match=odoo.volume("odoo_filestore")):
        create_backup(
            client=docker_client, app=app, backup_id="backup_20260101_000000_abcdef",
            storage=storage, options=BackupOptions(include_databases=False),
            spool_dir=tmp_path / "spool",
        )  # fmt: skip
    assert list(storage.list()) == []


def test_same_app_runs_one_at_a_time_different_apps_run_together(
    deploy_stack, docker_client: docker.DockerClient, settings, tmp_path: Path
) -> None:
    """A backup runs in another process (another worker); a second request for
    the same app is made in this process while the first holds the app lock."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    first, second = deploy_stack("wordpress"), deploy_stack("odoo")
    for stack, volume in ((first, "wordpress"), (second, "odoo_filestore")):
        _files_only(stack.project)
        _fill_volume(docker_client, stack.volume(volume), 400)

    def start_and_wait_for_lock(app_id: str) -> subprocess.Popen[str]:
        proc = manage_py("backup", "create", app_id)
        _wait_for(
            lambda: Run.objects.filter(app_id=app_id, phase="archiving", state="running").exists(),
            60, "the first backup to hold the lock",
        )  # fmt: skip
        return proc

    # Same app twice: the second is refused at once, with a clear message.
    a = start_and_wait_for_lock(first.project)
    c = manage_py("backup", "create", second.project)  # another app meanwhile
    refused = run_backup(str(request_backup(first.project).pk))
    assert a.poll() is None, "the first backup ended too early for this test"
    assert refused.status == Snapshot.Status.FAILED and "is busy" in refused.error
    for proc in (a, c):
        out = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    assert Snapshot.objects.get(app_id=second.project).status == Snapshot.Status.COMPLETED
    # With a wait, a second request queues behind the first: both complete.
    a = start_and_wait_for_lock(first.project)
    waited = run_backup(str(request_backup(first.project).pk), wait_for_lock_seconds=300)
    a.communicate(timeout=300)
    assert a.returncode == 0 and waited.status == Snapshot.Status.COMPLETED, waited.error
    first_run = Snapshot.objects.filter(app_id=first.project, status="completed").order_by(
        "created_at"
    )[1]
    assert waited.started_at >= first_run.finished_at  # it really waited its turn
    assert Snapshot.objects.filter(app_id=first.project, status="completed").count() == 3
