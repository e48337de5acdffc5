"""POST verify (quick inline, deep queued), POST restore (checks, 409s),
GET tasks/<id>."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from snapshots.models import AppLock, Run, Snapshot
from snapshots.services import snapshots as snapshot_services
from tests.api.conftest import API, MakeSnapshot, envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Tasks the services send to Celery, captured instead of sent."""
    calls: list[dict] = []
    monkeypatch.setattr(
        snapshot_services.celery_app, "send_task", lambda name, **kw: calls.append({name: kw})
    )
    return calls


def test_quick_verify_reports_inline(
    api: APIClient, stored_snapshot: Callable[..., Snapshot]
) -> None:
    snapshot = stored_snapshot(b"archive bytes", contents={"volumes": ["v1"], "file_count": 2})
    response = api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {}, format="json")
    report = envelope(response, 200)
    assert response.json()["message"] == "snapshot is valid"
    assert report["valid"] and report["checksum_match"] and report["sidecar_match"]
    assert report["deep"] is False and report["errors"] == []
    assert report["sha256"] == snapshot.sha256 and report["size_bytes"] == 13
    assert report["contents"]["volumes"] == ["v1"] and report["contents"]["file_count"] == 2
    run = Run.objects.get(pk=report["task_id"])
    assert run.operation == "verify" and run.state == "completed"


def test_quick_verify_detects_a_changed_byte(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    snapshot = stored_snapshot(b"archive bytes")
    (backup_root / snapshot.storage_key).write_bytes(b"archive bytez")
    response = api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {"deep": False}, "json")
    report = envelope(response, 200)
    assert not report["valid"] and not report["checksum_match"] and not report["sidecar_match"]
    assert "does not match" in report["errors"][0]
    assert response.json()["message"] == "snapshot is NOT valid"


def test_deep_verify_is_queued_with_the_run_id_as_task_id(
    api: APIClient, stored_snapshot: Callable[..., Snapshot], sent: list, settings,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    settings.BACKUP_TASK_QUEUE = "test-queue"
    snapshot = stored_snapshot(b"archive bytes")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {"deep": True}, "json")
    data = envelope(response, 202)
    run = Run.objects.get(pk=data["task_id"])
    assert run.options == {"deep": True} and run.state == "pending"
    assert data["backup_id"] == snapshot.backup_id and data["operation"] == "verify"
    task_id = str(run.pk)
    assert sent == [
        {
            "snapshots.verify_snapshot": {
                "args": [task_id],
                "task_id": task_id,
                "queue": "test-queue",
            }
        }
    ]


def test_verify_of_a_failed_snapshot_is_409_and_bad_body_400(
    api: APIClient, make_snapshot: MakeSnapshot
) -> None:
    failed = make_snapshot(status="failed")
    envelope(api.post(f"{API}/snapshots/{failed.backup_id}/verify", {}, format="json"), 409)
    ok = make_snapshot()
    data = envelope(
        api.post(f"{API}/snapshots/{ok.backup_id}/verify", {"deep": "maybe"}, format="json"), 400
    )
    assert "deep" in data
    assert not Run.objects.exists()


def test_restore_is_queued_with_its_options(
    api: APIClient, make_snapshot: MakeSnapshot, sent: list, settings,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    settings.BACKUP_TASK_QUEUE = ""  # unset: routed by host (fleet)
    # On no host's inventory: restored on the host that made the snapshot.
    snapshot = make_snapshot(host_id="vm7")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"{API}/restore/wordpress001/{snapshot.backup_id}",
            {"stop_app": False, "backup_before_restore": False}, format="json",
        )  # fmt: skip
    data = envelope(response, 202)
    run = Run.objects.get(pk=data["task_id"])
    assert run.operation == "restore" and run.snapshot == snapshot
    assert run.options == {
        "stop_app": False, "restore_database": True, "backup_before_restore": False,
        "accept_no_database_rollback": False,
    }  # fmt: skip
    assert sent[0]["snapshots.restore_backup"]["queue"] == "host.vm7"


def test_a_second_restore_of_an_app_is_409(
    api: APIClient, make_snapshot: MakeSnapshot, sent: list
) -> None:
    snapshot = make_snapshot()
    url = f"{API}/restore/wordpress001/{snapshot.backup_id}"
    envelope(api.post(url, {}, format="json"), 202)
    response = api.post(url, {}, format="json")
    envelope(response, 409)
    assert "busy" in response.json()["message"]
    assert Run.objects.filter(operation="restore").count() == 1


def test_restore_while_a_backup_holds_the_app_lock_is_409(
    api: APIClient, make_snapshot: MakeSnapshot, sent: list
) -> None:
    snapshot = make_snapshot()
    backup = Run.objects.create(operation="backup", app_id="wordpress001", state="running")
    from django.utils import timezone

    AppLock.objects.create(
        host_id=snapshot.host_id, app_id="wordpress001", run=backup,
        acquired_at=timezone.now(), heartbeat_at=timezone.now(),
    )  # fmt: skip
    envelope(api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}", {}, "json"), 409)


@pytest.mark.parametrize("state", ["pending", "running"])
def test_restore_while_a_backup_run_is_active_is_409(
    api: APIClient, make_snapshot: MakeSnapshot, sent: list, state: str
) -> None:
    """A backup requested (queued, no lock yet) or running keeps the app busy."""
    from snapshots.services.backup import request_backup
    from snapshots.services.restore import AppBusy, RestoreOptions, request_restore

    snapshot = make_snapshot()
    backup = request_backup("wordpress001", host_id=snapshot.host_id)  # where it restores
    Run.objects.filter(pk=backup.pk).update(state=state)
    assert not AppLock.objects.exists()
    response = api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}", {}, "json")
    envelope(response, 409)
    assert "busy" in response.json()["message"]
    with pytest.raises(AppBusy):
        request_restore("wordpress001", snapshot.backup_id, RestoreOptions(), snapshot.host_id)
    assert not Run.objects.filter(operation="restore").exists()
    # Another app's backup does not make this one busy; an ended one neither.
    request_backup("odoo001")
    Run.objects.filter(pk=backup.pk).update(state="completed")
    envelope(api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}", {}, "json"), 202)


def test_restore_whose_databases_the_policy_keeps_out_of_safety_backups_is_409(
    api: APIClient, make_snapshot: MakeSnapshot, sent: list
) -> None:
    """include_databases=false: the safety backup would hold no dump, so a
    failed restore could not give the databases back. Refused unless the
    caller accepts it, or restores without the database or without a
    safety backup (choices that need no rollback from it)."""
    from snapshots.models import AppBackupPolicy

    AppBackupPolicy.objects.create(app_id="wordpress001", include_databases=False)
    dumps = {"databases": [{"container": "wordpress001-db-1", "archive_name": "databases/x"}]}
    snapshot = make_snapshot(contents=dumps)
    url = f"{API}/restore/wordpress001/{snapshot.backup_id}"
    response = api.post(url, {}, "json")
    envelope(response, 409)
    message = response.json()["message"]
    assert "could not be rolled back" in message and "include_databases=false" in message
    assert "nothing was changed" in message and "accept_no_database_rollback" in message
    assert not Run.objects.exists()
    for body in ({"restore_database": False}, {"backup_before_restore": False},
                 {"accept_no_database_rollback": True}):  # fmt: skip
        data = envelope(api.post(url, body, "json"), 202)
        run = Run.objects.get(pk=data["task_id"])
        assert run.options["accept_no_database_rollback"] is body.get(
            "accept_no_database_rollback", False
        )
        Run.objects.filter(pk=run.pk).update(state="failed")
    # A snapshot without dumps restores no database: nothing to refuse.
    files_only = make_snapshot(minutes=1, contents={"databases": []})
    envelope(api.post(f"{API}/restore/wordpress001/{files_only.backup_id}", {}, "json"), 202)


@pytest.mark.parametrize("status", ["failed", "pending", "running"])
def test_restore_of_an_incomplete_snapshot_is_409(
    api: APIClient, make_snapshot: MakeSnapshot, status: str
) -> None:
    snapshot = make_snapshot(status=status)
    response = api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}", {}, format="json")
    envelope(response, 409)
    assert status in response.json()["message"]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("app_id", "backup_id"),
    [
        ("odoo001", None),  # a snapshot of another app
        ("wordpress001", "backup_20260105_103000_000000"),
        ("wordpress001", "backup_x"),
        ("wordpress001", "..%2F..%2Fetc"),
        ("Bad App", None),
    ],
)
def test_restore_of_unknown_things_is_404(
    api: APIClient, make_snapshot: MakeSnapshot, app_id: str, backup_id: str | None
) -> None:
    snapshot = make_snapshot()
    envelope(api.post(f"{API}/restore/{app_id}/{backup_id or snapshot.backup_id}", {}, "json"), 404)
    assert not Run.objects.exists()


def test_restore_body_is_validated(api: APIClient, make_snapshot: MakeSnapshot) -> None:
    snapshot = make_snapshot()
    url = f"{API}/restore/wordpress001/{snapshot.backup_id}"
    assert "stop_app" in envelope(api.post(url, {"stop_app": "please"}, format="json"), 400)
    assert "wait" in envelope(api.post(f"{url}?wait=sometimes", {}, format="json"), 400)
    assert not Run.objects.exists()


def test_task_shows_state_progress_and_result(api: APIClient, make_snapshot: MakeSnapshot) -> None:
    snapshot = make_snapshot()
    run = Run.objects.create(
        operation="backup", app_id="wordpress001", snapshot=snapshot, state="running",
        phase="archiving", bytes_done=250, bytes_total=1000,
    )  # fmt: skip
    data = envelope(api.get(f"{API}/tasks/{run.pk}"), 200)
    assert data["task_id"] == str(run.pk) and data["backup_id"] == snapshot.backup_id
    assert (data["state"], data["phase"], data["progress"]) == ("running", "archiving", 0.25)
    assert data["bytes_done"] == 250 and data["bytes_total"] == 1000
    Run.objects.filter(pk=run.pk).update(state="failed", error="disk full", result={"a": 1})
    data = envelope(api.get(f"{API}/tasks/{run.pk}"), 200)
    assert data["state"] == "failed" and data["error"] == "disk full" and data["result"] == {"a": 1}


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "1", "x" * 300])
def test_unknown_tasks_are_404(api: APIClient, task_id: str) -> None:
    envelope(api.get(f"{API}/tasks/{task_id}"), 404)


def test_restore_wait_answers_202_when_the_wait_limit_passes(
    api: APIClient, make_snapshot: MakeSnapshot, sent: list, settings
) -> None:
    settings.BACKUP_API_WAIT_SECONDS = 0.3  # and no worker runs it
    snapshot = make_snapshot()
    response = api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}?wait=true", {}, "json")
    data = envelope(response, 202)
    assert "still running" in response.json()["message"] and data["state"] == "pending"


def test_restore_wait_returns_the_result_once_the_run_ended(
    api: APIClient, make_snapshot: MakeSnapshot, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """A stand-in worker finishes the run as soon as its task is sent."""
    settings.BACKUP_API_WAIT_SECONDS = 30
    result = {
        "app_id": "wordpress001", "restored_volumes": 1, "restored_volume_names": ["v1"],
        "duration_seconds": 1.5,
    }  # fmt: skip

    def finish(name: str, args: list, **_: object) -> None:
        Run.objects.filter(pk=args[0]).update(state="completed", result=result)

    monkeypatch.setattr(snapshot_services.celery_app, "send_task", finish)
    snapshot = make_snapshot()
    # In a test transaction on_commit never fires: send at once.
    monkeypatch.setattr(snapshot_services.transaction, "on_commit", lambda send: send())
    response = api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}?wait=1", {}, "json")
    data = envelope(response, 200)
    assert response.json()["message"] == "restore completed"
    assert data["state"] == "completed" and data["result"] == result


@pytest.mark.django_db(transaction=True)
def test_two_restore_requests_at_the_same_moment_let_one_in(
    make_snapshot: MakeSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests pass the "busy" query before either inserts (a barrier
    holds them there); the database's constraint then refuses the second."""
    import threading

    from django.db import connection

    from snapshots.services import restore as restore_service

    snapshot = make_snapshot()
    barrier = threading.Barrier(2, timeout=30)
    real_filter = AppLock.objects.filter

    def filter_after_both_checked(*args: object, **kwargs: object) -> object:
        barrier.wait()  # both threads have run the Run query: neither saw the other
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(AppLock.objects, "filter", filter_after_both_checked)
    outcomes: list[str] = []

    def request() -> None:
        try:
            restore_service.request_restore(
                "wordpress001", snapshot.backup_id, restore_service.RestoreOptions()
            )
            outcomes.append("accepted")
        except restore_service.AppBusy:
            outcomes.append("busy")
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["accepted", "busy"]
    assert Run.objects.filter(operation="restore", state="pending").count() == 1
