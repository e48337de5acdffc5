"""A restore where the app has nothing left on this host (the service path
a migration takes, on the local engine): its containers, network and
volumes are recreated from the backup, filled and started; a failure after
they were made removes all of them and says so."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models.functions import Now

from engine import steps
from engine.discovery import get_app
from engine.recreate.create import planned_names, recreate_app
from engine.recreate.record import app_record
from snapshots.locks import acquire_app_lock
from snapshots.models import AppLock, Run, Snapshot
from tests.backup_helpers import backup_now
from tests.engine.treegen import snapshot as tree_snapshot
from tests.images import APP_IMAGE
from tests.stacks import (
    ComposeStack,
    ServiceSpec,
    project_leftovers,
    random_project,
    remove_project,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("backup_dirs"),
]

PROJECT_LABEL = "com.docker.compose.project"
# Ends at once, at its start, when its data says so: the restored copy does.
APP = (
    "if [ -e /data/fail-on-start ]; then exit 3; fi; "
    "[ -e /data/sub/blob ] || "
    "{ mkdir -p /data/sub; head -c 20000 /dev/urandom > /data/sub/blob; }; "
    "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"
)


@pytest.fixture
def app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    project = random_project("gone")
    stack = ComposeStack(
        docker_client, project, tmp_path / project,
        [ServiceSpec("web", APP_IMAGE, {"TOKEN": "tok-3f9a1c"}, {"data": "/data"},
                     ["sh", "-c", APP], stop_grace_period=3)],
    )  # fmt: skip
    try:
        stack.up()
        yield stack
    finally:
        remove_project(docker_client, project)  # the recreated ones first: they use the volume
        stack.remove()


def _restore(app_id: str, backup_id: str) -> Run:
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", app_id, backup_id)
    return Run.objects.filter(operation="restore", app_id=app_id).latest("created_at")


def _data(client: docker.DockerClient, stack: ComposeStack) -> Path:
    return Path(client.volumes.get(stack.volume("data")).attrs["Mountpoint"])


def test_an_app_with_nothing_left_here_is_recreated_and_started(
    app: ComposeStack, docker_client: docker.DockerClient
) -> None:
    app.container("web").exec_run(["sh", "-c", "test -e /data/sub/blob"])  # seeded
    backup = backup_now(app.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    files = tree_snapshot(_data(docker_client, app))
    app.remove()  # uninstalled: no container, volume or network left
    assert project_leftovers(docker_client, app.project) == []

    run = _restore(app.project, backup.backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    name = f"{app.project}-web-1"
    assert run.result["recreated"] == {
        "containers": [name], "volumes": [app.volume("data")], "networks": [app.network_name],
    }  # fmt: skip
    assert run.result["started_containers"] == [name]
    assert run.result["safety_backup_id"] is None  # nothing was here to keep
    assert tree_snapshot(_data(docker_client, app)) == files
    container = docker_client.containers.get(name)
    assert container.status == "running"
    assert container.labels[PROJECT_LABEL] == app.project
    assert "tok-3f9a1c" not in str(run.result)


def test_a_failure_after_the_recreate_removes_all_it_made(
    app: ComposeStack, docker_client: docker.DockerClient
) -> None:
    # Written after the start: the backup holds it, the restored app dies of it.
    app.container("web").exec_run(["sh", "-c", "touch /data/fail-on-start"])
    backup = backup_now(app.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    app.remove()

    run = _restore(app.project, backup.backup_id)
    assert run.state == Run.State.FAILED
    assert "the containers, volumes and networks this restore created were removed" in run.error
    assert run.result["recreated"] is None
    assert run.result["not_rolled_back"] == []
    assert project_leftovers(docker_client, app.project) == []
    assert "tok-3f9a1c" not in run.error + str(run.result)


def test_an_incremental_records_the_containers_too(
    app: ComposeStack, docker_client: docker.DockerClient
) -> None:
    full = backup_now(app.project)
    assert full.status == Snapshot.Status.COMPLETED, full.error
    app.container("web").exec_run(["sh", "-c", "echo changed > /data/sub/note"])
    incremental = backup_now(app.project, "--incremental")
    assert incremental.kind == Snapshot.Kind.INCREMENTAL, incremental.error
    files = tree_snapshot(_data(docker_client, app))
    app.remove()

    run = _restore(app.project, incremental.backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    assert run.result["recreated"]["containers"] == [f"{app.project}-web-1"]
    assert tree_snapshot(_data(docker_client, app)) == files
    assert docker_client.containers.get(f"{app.project}-web-1").status == "running"


def test_a_dead_restore_that_recreated_the_app_is_undone_by_recovery(
    app: ComposeStack, docker_client: docker.DockerClient, settings
) -> None:
    """Its worker died after the recreate (the journal says what it was to
    make): recovery removes all of it, started or not, and nothing else."""
    from snapshots.tasks import cleanup

    record = app_record(docker_client, get_app(docker_client, app.project))
    app.remove()
    made = recreate_app(docker_client, app.project, record)
    docker_client.containers.get(made.containers[0]).start()  # the restore had started it
    snapshot = Snapshot.objects.create(
        backup_id="backup_20260105_103000_3fa2c1", app_id=app.project,
        host_id=settings.BACKUP_HOST_ID, status=Snapshot.Status.COMPLETED,
    )  # fmt: skip
    run = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=app.project, snapshot=snapshot,
        state=Run.State.RUNNING, worker="gone-worker:1", host_id=settings.BACKUP_HOST_ID,
        journal=[
            {"step": steps.RECREATE, **planned_names(app.project, record)},
            {"step": steps.STOP, "containers": made.containers},
        ],
    )  # fmt: skip
    acquire_app_lock(app.project, run)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - timedelta(hours=1))
    AppLock.objects.filter(app_id=app.project).update(expires_at=Now() - timedelta(hours=1))

    recovery = cleanup()["recovered_runs"][str(run.pk)]
    assert recovery["failed"] == [] and recovery["left_for_operator"] == [], recovery
    assert f"removed volume {app.volume('data')} (recreated by the restore)" in recovery["done"]
    assert project_leftovers(docker_client, app.project) == []
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "put the app back" in run.error
