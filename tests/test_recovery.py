"""Recovery from a run's journal, for a restore whose worker died mid-swap:
whatever the PID or hostname it ran under, once its heartbeat is a lease
old, this host's recovery rolls the volume back and starts the containers
it had stopped (the crash itself, with real SIGKILLs at every step, is in
test_crash_recovery.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
import redis
from django.db.models.functions import Now

from engine import steps
from engine.restore.volume_swap import stage_dir_for, swap_in
from snapshots.locks import acquire_app_lock
from snapshots.models import AppLock, Run, Snapshot
from snapshots.tasks import cleanup, recover_hosts_task
from tests.engine.treegen import snapshot as tree_snapshot
from tests.images import APP_IMAGE
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_dead_restore_mid_swap_is_rolled_back_and_its_app_started(
    odoo: ComposeStack, docker_client: docker.DockerClient, settings: Any
) -> None:
    volume = odoo.volume("odoo_filestore")
    data = Path(docker_client.volumes.get(volume).attrs["Mountpoint"])
    before = tree_snapshot(data)
    app = odoo.container("odoo")
    app.stop(timeout=5)
    # What a restore leaves when killed between swap and commit: the app
    # stopped, new data in place, the old data aside under _data.old-*.
    staged = stage_dir_for(data)
    (staged / "restored.txt").write_text("half-restored state")
    swap_in(data, staged)
    assert tree_snapshot(data) != before
    snapshot = Snapshot.objects.create(
        backup_id="backup_20260105_103000_3fa2c1", app_id=odoo.project,
        host_id=settings.BACKUP_HOST_ID, status=Snapshot.Status.COMPLETED,
    )  # fmt: skip
    # PID 1 of some other container and a hostname that no longer exists:
    # neither matters, only the heartbeat's age does.
    run = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=odoo.project, snapshot=snapshot,
        state=Run.State.RUNNING, worker="gone-container-3f2a:1", host_id=settings.BACKUP_HOST_ID,
        journal=[
            {"step": steps.STOP, "containers": [app.id]},
            {"step": steps.SWAP, "volume": volume, "dir": str(data.parent)},
        ],
    )  # fmt: skip
    acquire_app_lock(odoo.project, run)
    # Still within its lease: nothing is touched.
    assert cleanup()["recovered_runs"] == {}
    assert tree_snapshot(data) != before
    Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - timedelta(hours=1))
    AppLock.objects.filter(app_id=odoo.project).update(expires_at=Now() - timedelta(hours=1))

    result = cleanup()
    recovery = result["recovered_runs"][str(run.pk)]
    assert f"volume {volume}: rolled_back" in recovery["done"], recovery
    assert f"started {app.name}" in recovery["done"], recovery
    assert recovery["failed"] == [] and recovery["left_for_operator"] == []
    assert tree_snapshot(data) == before
    app.reload()
    assert app.status == "running"
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "died" in run.error and "put the app back" in run.error
    assert run.result["recovery"] == recovery
    assert not AppLock.objects.held().filter(app_id=odoo.project).exists()
    # The completed snapshot it was restoring from is not touched.
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.COMPLETED
    assert sorted(p.name for p in data.parent.iterdir()) == ["_data"]
    # Recovering again finds nothing to do.
    assert cleanup()["recovered_runs"] == {}


def test_pending_runs_never_picked_up_are_failed_with_the_reason(settings: Any) -> None:
    snapshot = Snapshot.objects.create(
        backup_id="backup_20260105_103000_aaaaaa", app_id="app1", host_id="h1",
    )  # fmt: skip
    run = Run.objects.create(
        operation=Run.Operation.BACKUP, app_id="app1", snapshot=snapshot, host_id="h1"
    )
    fresh = Run.objects.create(operation=Run.Operation.BACKUP, app_id="app2", host_id="h1")
    Run.objects.filter(pk=run.pk).update(
        created_at=Now() - timedelta(seconds=settings.BACKUP_PENDING_TIMEOUT_SECONDS + 5)
    )
    cleanup()
    run.refresh_from_db()
    fresh.refresh_from_db()
    assert run.state == Run.State.FAILED and "never started" in run.error
    assert "host.h1" in run.error
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.FAILED
    assert fresh.state == Run.State.PENDING


def test_spool_left_by_a_killed_run_is_swept(settings: Any, tmp_path: Path) -> None:
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    live = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id="app1", state=Run.State.RUNNING
    )
    for name in (f"restore-{live.pk}", "restore-0b0b", "backup_20260105_103000_bbbbbb"):
        (settings.BACKUP_SPOOL_DIR / name).mkdir(parents=True)
        (settings.BACKUP_SPOOL_DIR / name / "db.sql").write_text("users' rows")
    swept = cleanup()["swept_spool"]
    assert sorted(swept) == ["backup_20260105_103000_bbbbbb", "restore-0b0b"]
    assert [p.name for p in settings.BACKUP_SPOOL_DIR.iterdir()] == [f"restore-{live.pk}"]


def test_recovery_never_swaps_a_volume_under_a_container_outside_the_run(
    odoo: ComposeStack, docker_client: docker.DockerClient, settings: Any
) -> None:
    """A container of another project mounts the half-restored volume and
    runs: recovery leaves that volume as it is and says so, rather than
    pull the data from under it."""
    volume = odoo.volume("odoo_filestore")
    data = Path(docker_client.volumes.get(volume).attrs["Mountpoint"])
    app = odoo.container("odoo")
    app.stop(timeout=5)
    staged = stage_dir_for(data)
    (staged / "restored.txt").write_text("half-restored state")
    swap_in(data, staged)
    bystander = docker_client.containers.run(
        APP_IMAGE, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        detach=True, name=f"bystander-{odoo.project}", volumes={volume: {"bind": "/shared"}},
    )  # fmt: skip
    try:
        run = Run.objects.create(
            operation=Run.Operation.RESTORE, app_id=odoo.project, state=Run.State.RUNNING,
            host_id=settings.BACKUP_HOST_ID, heartbeat_at=Now() - timedelta(hours=1),
            journal=[
                {"step": steps.STOP, "containers": [app.id]},
                {"step": steps.SWAP, "volume": volume, "dir": str(data.parent)},
            ],
        )  # fmt: skip
        recovery = cleanup()["recovered_runs"][str(run.pk)]
        assert any(volume in note and bystander.name in note
                   for note in recovery["left_for_operator"]), recovery  # fmt: skip
        assert (data / "restored.txt").exists()  # untouched under the running container
        run.refresh_from_db()
        # The run stays, the app busy, until the volume is free.
        assert run.state == Run.State.RUNNING and "recovery waits" in run.error
        assert AppLock.objects.held().filter(app_id=odoo.project).exists()
        bystander.stop(timeout=5)
        Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - timedelta(hours=1))
        AppLock.objects.filter(app_id=odoo.project).update(expires_at=Now() - timedelta(hours=1))
        recovery = cleanup()["recovered_runs"][str(run.pk)]
        assert f"volume {volume}: rolled_back" in recovery["done"], recovery
        assert not (data / "restored.txt").exists()
        run.refresh_from_db()
        assert run.state == Run.State.FAILED and "put the app back" in run.error
        app.reload()
        assert app.status == "running"
    finally:
        bystander.remove(force=True)


def test_a_host_recovers_only_its_own_runs_and_beat_sends_the_others_theirs(
    settings: Any,
) -> None:
    """A dead restore of host A is never touched by host B's recovery (B's
    engine has none of A's containers or volumes); the periodic task sends
    A's recovery to A's own queue."""
    other = f"host-a-{Run.objects.count()}-{settings.BACKUP_HOST_ID}"
    run = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id="app-on-a", state=Run.State.RUNNING,
        host_id=other, heartbeat_at=Now() - timedelta(hours=1),
        journal=[{"step": steps.SWAP, "volume": "v", "dir": "/nonexistent/on/host/a"}],
    )  # fmt: skip
    assert cleanup()["recovered_runs"] == {}
    run.refresh_from_db()
    assert run.state == Run.State.RUNNING

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = f"host.{other}"
    broker.delete(queue)
    try:
        sent = recover_hosts_task()
        assert other in sent["hosts"]
        assert broker.llen(queue) == 1  # one recover_host message, for host A only
    finally:
        broker.delete(queue)


def test_an_unlabelled_volume_a_dead_restore_swapped_is_put_back(
    docker_client: docker.DockerClient, settings: Any
) -> None:
    """An external volume (no Compose label: the old recovery listed volumes
    by label and never saw it) is found through the run's journal."""
    volume = docker_client.volumes.create(name=f"external-{Run.objects.count()}-{id(settings)}")
    try:
        data = Path(volume.attrs["Mountpoint"])
        (data / "kept.txt").write_text("the data before the restore")
        before = tree_snapshot(data)
        staged = stage_dir_for(data)
        (staged / "restored.txt").write_text("half-restored state")
        swap_in(data, staged)
        run = Run.objects.create(
            operation=Run.Operation.RESTORE, app_id="app-with-external-volume",
            state=Run.State.RUNNING, host_id=settings.BACKUP_HOST_ID,
            heartbeat_at=Now() - timedelta(hours=1),
            journal=[{"step": steps.SWAP, "volume": volume.name, "dir": str(data.parent)}],
        )  # fmt: skip
        recovery = cleanup()["recovered_runs"][str(run.pk)]
        assert f"volume {volume.name}: rolled_back" in recovery["done"], recovery
        assert tree_snapshot(data) == before
    finally:
        volume.remove(force=True)
