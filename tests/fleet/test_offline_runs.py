"""A host that stops heartbeating: beat's recovery round fails its runs once
their lease expired and releases their apps' locks (no worker is there to
recover them); when the host's worker runs again it puts the app back from
the run's journal. The dead worker's pause is real (the engine's container
is paused), and so is the unpausing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models.functions import Now

from engine import steps
from fleet.models import Host
from snapshots import tasks
from snapshots.db_time import db_ago
from snapshots.locks import app_is_locked, lease_seconds, try_acquire
from snapshots.models import AppLock, Run, Snapshot
from snapshots.recovery_offline import AWAITING, recover_after_offline
from snapshots.services.backup import new_backup_id
from tests.fleet.helpers import age_host
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

GONE = "fleet-gone-host"


def _dead_backup(app_id: str, container_id: str) -> Run:
    """A backup of APP_ID on GONE that paused CONTAINER_ID, then its worker
    died: the run's heartbeat and its lease are a lease old."""
    snapshot = Snapshot.objects.create(
        backup_id=new_backup_id(), app_id=app_id, host_id=GONE, status=Snapshot.Status.RUNNING
    )
    run = Run.objects.create(
        operation=Run.Operation.BACKUP, app_id=app_id, snapshot=snapshot, host_id=GONE,
        state=Run.State.RUNNING, phase="volumes", started_at=Now(),
    )  # fmt: skip
    assert try_acquire(app_id, run.pk) is not None
    Run.objects.filter(pk=run.pk).update(
        journal=[{"step": steps.PAUSE, "containers": [container_id]}],
        heartbeat_at=db_ago(lease_seconds() + 5),
    )
    AppLock.objects.filter(app_id=app_id).update(expires_at=db_ago(5))
    return Run.objects.get(pk=run.pk)


def test_runs_of_an_offline_host_fail_after_their_lease_and_come_back_with_its_worker(
    tiny_app: ComposeStack, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(
        tasks.recover_host_task, "apply_async", lambda **kw: sent.append(kw["queue"])
    )
    container = tiny_app.container("web")
    Host.objects.create(id=GONE, last_heartbeat=Now())
    container.pause()  # what the dead worker did before it died
    run = _dead_backup(tiny_app.project, container.id)

    # Its host still heartbeats: the run is its own worker's to recover.
    assert tasks.recover_hosts_task()["failed_offline"] == {}
    assert sent == [f"host.{GONE}"]
    assert Run.objects.get(pk=run.pk).state == Run.State.RUNNING

    age_host(GONE, heartbeat_seconds=settings.BACKUP_HOST_OFFLINE_SECONDS + 5)
    assert tasks.recover_hosts_task()["failed_offline"] == {GONE: [str(run.pk)]}
    assert sent == [f"host.{GONE}"]  # nothing queued for a worker that is not there
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and f"host {GONE} is offline" in run.error
    assert run.result[AWAITING] is True and run.finished_at is not None
    assert Snapshot.objects.get(pk=run.snapshot_id).status == Snapshot.Status.FAILED
    assert not app_is_locked(tiny_app.project)
    container.reload()
    assert container.status == "paused"  # nobody could reach it

    # The host's worker runs again: its recovery puts the app back.
    settings.BACKUP_HOST_ID = GONE
    done = recover_after_offline(GONE)
    assert "unpaused" in str(done[str(run.pk)]["done"])
    container.reload()
    assert container.status == "running"
    run.refresh_from_db()
    assert run.result[AWAITING] is False and run.result["recovery"]["done"]
    assert not app_is_locked(tiny_app.project)
    assert recover_after_offline(GONE) == {}  # once


def test_a_busy_app_waits_for_a_later_round(tiny_app: ComposeStack, settings) -> None:
    container = tiny_app.container("web")
    Host.objects.create(id=GONE, last_heartbeat=db_ago(3600))
    run = _dead_backup(tiny_app.project, container.id)
    tasks.recover_hosts_task()
    # The same app on the same host (an app id elsewhere is another app).
    other = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=tiny_app.project, state=Run.State.RUNNING,
        host_id=GONE,
    )  # fmt: skip
    lease = try_acquire(tiny_app.project, other.pk, host_id=GONE)
    assert lease is not None
    assert recover_after_offline(GONE) == {}
    assert Run.objects.get(pk=run.pk).result[AWAITING] is True
    lease.release()
    assert str(run.pk) in recover_after_offline(GONE)
