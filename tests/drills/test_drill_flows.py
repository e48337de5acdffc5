"""Drills through their doors: the API and a real worker, a schedule, the
failure notification to a real local receiver, retention's protection,
the limits (disk space, one per host) and cleanup after kill -9."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import docker
import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from drills.models import Drill
from drills.services.requests import request_drill
from drills.services.run import host_lock_id, run_drill
from schedules import runner
from schedules.models import Notification, Schedule, ScheduleFiring
from schedules.notifications import attempt_delivery
from schedules.retention import DRILL_PASSED_REASON
from schedules.retention_service import plan_retention
from schedules.secrets import encrypt_targets
from snapshots.locks import try_acquire
from snapshots.models import Run, Snapshot
from snapshots.services.api_keys import create_api_key
from tests.backup_helpers import archive_path, backup_now
from tests.conftest import manage_py
from tests.drills.helpers import container_states, drill_objects, seed_mariadb
from tests.fleet.helpers import report_app
from tests.schedules import notify_servers
from tests.schedules.notify_servers import HttpReceiver
from tests.stacks import ComposeStack

API = "/api/v1/backup"
http_receiver = notify_servers.http_receiver


def _api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("drill-tests")[1])
    return client


def _data(response: Any, status: int) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"code", "message", "data"}
    return body["data"]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.celery
def test_the_api_queues_a_drill_a_worker_runs_it_and_the_snapshot_and_app_show_it(
    wordpress: ComposeStack, celery_worker: object, celery_queue: str, settings: Any
) -> None:
    settings.BACKUP_TASK_QUEUE = celery_queue
    seed_mariadb(wordpress)
    snapshot = backup_now(wordpress.project)
    api = _api()

    accepted = _data(api.post(f"{API}/snapshots/{snapshot.backup_id}/drill"), 202)
    assert accepted["operation"] == "drill" and accepted["backup_id"] == snapshot.backup_id
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        task = _data(api.get(f"{API}/tasks/{accepted['task_id']}"), 200)
        if task["state"] in ("completed", "failed"):
            break
        time.sleep(1)
    assert task["state"] == "completed", task
    assert task["result"]["outcome"] == "passed"

    listed = _data(api.get(f"{API}/drills", {"snapshot_id": snapshot.backup_id}), 200)
    assert listed["total"] == 1 and listed["drills"][0]["outcome"] == "passed"
    assert listed["drills"][0]["databases"][0]["rows"] == 42
    assert _data(api.get(f"{API}/drills", {"app_id": "nope"}), 200)["total"] == 0
    detail = _data(api.get(f"{API}/snapshots/{snapshot.backup_id}"), 200)
    assert detail["last_drill"]["outcome"] == "passed"
    assert detail["last_drill"]["drill_id"] == accepted["task_id"]
    page = _data(api.get(f"{API}/snapshots", {"app_id": wordpress.project}), 200)
    assert page["snapshots"][0]["last_drill"]["outcome"] == "passed"
    app = _data(api.get(f"{API}/apps/{wordpress.project}"), 200)
    assert app["last_drill"]["backup_id"] == snapshot.backup_id


@pytest.mark.django_db
def test_the_drills_list_refuses_ids_that_cannot_exist_naming_the_filter() -> None:
    # Schemathesis found a NUL byte in snapshot_id answered 400 while the
    # schema allowed any string: the filters now carry the ids' patterns.
    api = _api()
    for query in ({"snapshot_id": "%\x004k"}, {"snapshot_id": "x"}, {"app_id": "Not An App"}):
        response = api.get(f"{API}/drills", query)
        assert response.status_code == 400, query
        assert next(iter(query)) in response.json()["message"]
    assert (
        _data(api.get(f"{API}/drills", {"snapshot_id": "backup_20260105_103000_aaaaaa"}), 200)[
            "total"
        ]
        == 0
    )


@pytest.mark.django_db
def test_a_snapshot_that_is_not_completed_cannot_be_drilled() -> None:
    failed = Snapshot.objects.create(backup_id="backup_20260105_103000_aaaaaa", app_id="a1",
                                     host_id="h", status=Snapshot.Status.FAILED)  # fmt: skip
    response = _api().post(f"{API}/snapshots/{failed.backup_id}/drill")
    assert response.status_code == 409
    assert "only a completed snapshot can be drilled" in response.json()["message"]
    assert not Drill.objects.exists() and not Run.objects.exists()
    assert _api().post(f"{API}/snapshots/backup_20260105_103000_bbbbbb/drill").status_code == 404


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_scheduled_drill_that_fails_settles_its_firing_and_notifies_the_targets(
    wordpress: ComposeStack,
    http_receiver: HttpReceiver,
    docker_client: docker.DockerClient,
    settings: Any,
) -> None:
    seed_mariadb(wordpress)
    backup_now(wordpress.project)  # older: the schedule drills the latest one
    latest = backup_now(wordpress.project)
    path = archive_path(latest, Path(settings.BACKUP_ROOT))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the stored file no longer verifies
    path.write_bytes(bytes(data))
    schedule = Schedule.objects.create(
        app_id=wordpress.project, action=Schedule.Action.DRILL, frequency="weekly", weekday=6,
        notification_targets_encrypted=encrypt_targets([http_receiver.url()]),
    )  # fmt: skip
    firing = ScheduleFiring.objects.create(schedule=schedule, scheduled_for=timezone.now())
    settings.BACKUP_TASK_QUEUE = f"drill-test-unconsumed-{os.getpid()}"  # the drill runs here
    before = container_states(docker_client, wordpress)

    started = runner.start(firing.pk)
    assert started is not None and started.state == ScheduleFiring.State.RUNNING
    drill = Drill.objects.get(pk=started.run_id)
    assert drill.snapshot_id == latest.pk and drill.schedule_id == schedule.pk
    drill = run_drill(str(drill.pk))

    assert drill.outcome == Drill.Outcome.FAILED
    assert drill.reason.startswith("deep verify failed: SHA-256 of the stored file")
    firing.refresh_from_db()
    assert firing.state == ScheduleFiring.State.FAILED and firing.error == drill.reason
    note = Notification.objects.get(event=Notification.Event.DRILL_FAILED)
    assert note.schedule_id == schedule.pk
    attempt_delivery(note.pk)
    received = http_receiver.wait_for(1)
    assert received and latest.backup_id in received[0]["body"]["title"]
    assert "Restore drill failed" in received[0]["body"]["title"]
    assert "deep verify failed" in received[0]["body"]["message"]
    assert container_states(docker_client, wordpress) == before
    assert drill_objects(docker_client, str(drill.pk)) == []


@pytest.mark.django_db
def test_a_drill_schedule_without_a_snapshot_is_skipped_saying_so() -> None:
    schedule = Schedule.objects.create(app_id="nothing_here", action=Schedule.Action.DRILL)
    firing = ScheduleFiring.objects.create(schedule=schedule, scheduled_for=timezone.now())
    ended = runner.start(firing.pk)
    assert ended is not None and ended.state == ScheduleFiring.State.SKIPPED
    assert ended.error == "app nothing_here has no completed snapshot to drill"


def _snapshot(app_id: str, suffix: str, minutes: int) -> Snapshot:
    row = Snapshot.objects.create(
        backup_id=f"backup_20260105_10{minutes:02d}00_{suffix}", app_id=app_id, host_id="h",
        status=Snapshot.Status.COMPLETED, purpose=Snapshot.Purpose.SCHEDULED, size_bytes=10,
    )  # fmt: skip
    Snapshot.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(days=30) + timedelta(minutes=minutes)
    )
    return row


@pytest.mark.django_db
def test_retention_keeps_the_newest_snapshot_whose_drill_passed() -> None:
    passed = _snapshot("ret_app", "aaaaaa", 1)
    failed = _snapshot("ret_app", "bbbbbb", 2)
    _snapshot("ret_app", "cccccc", 3)
    older_passed = _snapshot("ret_app", "dddddd", 0)
    Schedule.objects.create(app_id="ret_app", keep_last=1)
    for snapshot, outcome in ((passed, "passed"), (failed, "failed"), (older_passed, "passed")):
        drill = request_drill(snapshot)
        Drill.objects.filter(pk=drill.pk).update(state=Drill.State.FINISHED, outcome=outcome,
                                                 finished_at=timezone.now())  # fmt: skip
        Run.objects.filter(pk=drill.pk).update(state=Run.State.COMPLETED)

    plan = {d.backup_id: d for d in plan_retention("ret_app").plan.decisions}

    assert plan[passed.backup_id].keep and DRILL_PASSED_REASON in plan[passed.backup_id].reasons
    assert not plan[failed.backup_id].keep
    assert not plan[older_passed.backup_id].keep  # only the newest that passed


@pytest.mark.django_db
def test_a_drill_is_skipped_when_the_host_lacks_disk_space(settings: Any) -> None:
    snapshot = _snapshot("room_app", "eeeeee", 1)
    Snapshot.objects.filter(pk=snapshot.pk).update(contents={"databases": [{"size": 5 << 30}]})
    settings.BACKUP_DRILL_MIN_FREE_BYTES = 1 << 60  # more than any disk here
    drill = run_drill(str(request_drill(snapshot).pk))
    assert drill.outcome == Drill.Outcome.SKIPPED
    assert drill.reason.startswith("not enough free disk space in the spool")
    assert "5120 MiB of dumps" in drill.reason
    assert Run.objects.get(pk=drill.pk).state == Run.State.COMPLETED  # not a failure


@pytest.mark.django_db
def test_only_one_drill_runs_per_host() -> None:
    snapshot = _snapshot("lock_app", "ffffff", 1)
    holder = request_drill(snapshot)
    lease = try_acquire(host_lock_id(), holder.pk)
    assert lease is not None
    Run.objects.filter(pk=holder.pk).update(state=Run.State.RUNNING)
    try:
        second = run_drill(str(request_drill(snapshot).pk))
    finally:
        lease.release()
    assert second.outcome == Drill.Outcome.SKIPPED
    assert second.reason.startswith("another drill is running on this host")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_drill_killed_mid_way_leaves_leftovers_that_cleanup_removes(
    wordpress: ComposeStack, docker_client: docker.DockerClient, settings: Any
) -> None:
    seed_mariadb(wordpress)
    snapshot = backup_now(wordpress.project)
    before = container_states(docker_client, wordpress)
    settings.BACKUP_LEASE_SECONDS = 4
    from tests.conftest import subprocess_env

    proc = manage_py("backup", "drill", snapshot.backup_id, env=subprocess_env())
    try:
        deadline = time.monotonic() + 120

        def started() -> bool:  # this drill's own container, by its label
            drill = Drill.objects.filter(backup_id=snapshot.backup_id).first()
            label = {"label": f"backup-drill={drill.pk}"} if drill else None
            return bool(label and docker_client.containers.list(all=True, filters=label))

        while not started():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no drill container appeared"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # This drill's objects only: another test run may drill on this engine too.
    killed = str(Drill.objects.get(backup_id=snapshot.backup_id).pk)
    left = drill_objects(docker_client, killed)
    assert left, "the SIGKILL left nothing to clean up: the test proves nothing"
    time.sleep(5)  # the run's heartbeat is older than the lease: it is dead

    call_command("backup", "cleanup")

    assert drill_objects(docker_client, killed) == []
    drill = Drill.objects.get(backup_id=snapshot.backup_id)
    assert drill.state == Drill.State.FINISHED and drill.outcome == Drill.Outcome.FAILED
    assert "died" in drill.reason
    assert not (Path(settings.BACKUP_SPOOL_DIR) / f"drill-{drill.pk}").exists()
    assert container_states(docker_client, wordpress) == before


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.django_db
def test_a_schedule_can_be_made_a_drill_schedule_through_the_api(wordpress: ComposeStack) -> None:
    report_app(wordpress.project)  # schedules are checked against the stored inventory
    api = _api()
    body = {"app_id": wordpress.project, "frequency": "weekly", "weekday": 6, "time": "04:00",
            "action": "drill"}  # fmt: skip
    created = _data(api.post(f"{API}/schedules", body, format="json"), 201)
    assert created["action"] == "drill"
    assert Schedule.objects.get(pk=created["id"]).action == Schedule.Action.DRILL
    refused = api.post(f"{API}/schedules", body | {"action": "restore"}, format="json")
    assert refused.status_code == 400 and "action" in refused.json()["data"]
    call_command("schedule", "create", wordpress.project, "--frequency", "daily",
                 "--schedule-action", "drill", stdout=StringIO())  # fmt: skip
    assert Schedule.objects.filter(action=Schedule.Action.DRILL).count() == 2
