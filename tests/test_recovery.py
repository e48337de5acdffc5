"""A worker that died mid-restore: the next start puts the volume back."""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest
from django.utils import timezone

from engine.restore.volume_swap import stage_dir_for, swap_in
from snapshots.models import AppLock, Run, Snapshot
from snapshots.tasks import cleanup
from tests.engine.treegen import snapshot as tree_snapshot
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_dead_restore_mid_swap_is_rolled_back_on_next_start(
    odoo: ComposeStack, docker_client: docker.DockerClient
) -> None:
    data = Path(docker_client.volumes.get(odoo.volume("odoo_filestore")).attrs["Mountpoint"])
    before = tree_snapshot(data)
    # What a restore leaves when killed between swap and commit: new data in
    # place, the old data aside under _data.old-*.
    staged = stage_dir_for(data)
    (staged / "restored.txt").write_text("half-restored state")
    swap_in(data, staged)
    assert tree_snapshot(data) != before
    snapshot = Snapshot.objects.create(
        backup_id="backup_20260105_103000_3fa2c1", app_id=odoo.project, host_id="h",
        status=Snapshot.Status.COMPLETED,
    )  # fmt: skip
    # A pid that cannot exist on this machine: its worker is gone.
    run = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=odoo.project, snapshot=snapshot,
        state=Run.State.RUNNING, worker=f"{socket.gethostname()}:99999999",
        heartbeat_at=timezone.now(), started_at=timezone.now(),
    )  # fmt: skip
    AppLock.objects.create(
        app_id=odoo.project, run=run, acquired_at=timezone.now(), heartbeat_at=timezone.now()
    )
    result = cleanup()
    assert str(run.pk) in result["recovered_runs"]
    assert f"{odoo.volume('odoo_filestore')}: rolled_back" in result["recovered_volumes"]
    assert tree_snapshot(data) == before
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "died" in run.error
    assert not AppLock.objects.filter(app_id=odoo.project).exists()
    # The completed snapshot it was restoring from is not touched.
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.COMPLETED
    assert sorted(p.name for p in data.parent.iterdir()) == ["_data"]
