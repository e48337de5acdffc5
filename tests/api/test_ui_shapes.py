"""The platform UI is written against the original API: its verify and
restore fields keep their names and types (contains holds counts, not
lists; restored_volumes is a count), snapshot_id names the backup, and a
restore that failed under ?wait=true is an error envelope, not a 200."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor
from snapshots.api.serializers import RestoreResultSerializer, VerifyReportSerializer
from snapshots.models import Run, Snapshot
from snapshots.services import snapshots as snapshot_services
from snapshots.services.restore import run_restore
from snapshots.services.verify import run_verify
from tests.api.conftest import API, envelope

pytestmark = pytest.mark.django_db

StoredSnapshot = Callable[..., Snapshot]
SQL_DUMP = (
    "-- MariaDB dump 10.19\nCREATE TABLE t (x INT);\n-- Dump completed on 2026-01-05 10:30:00\n"
)


def is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass: not a count


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def real_archive(tmp_path: Path) -> bytes:
    """A small valid archive: volumes wp_data (2 files) and wp_empty, one
    MariaDB dump, one config file."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "wp_data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    (data / "b.txt").write_text("bb")
    (tmp_path / "wp_empty").mkdir()
    dump = tmp_path / "wordpress.sql"
    dump.write_text(SQL_DUMP)
    compose = tmp_path / "compose.yml"
    compose.write_text("services: {}\n")
    entry = {
        "container": "wp-db-1", "engine": "mariadb", "server_version": "10.11",
        "database": "wordpress", "format": "sql", "size": dump.stat().st_size,
        "sha256": hashlib.sha256(dump.read_bytes()).hexdigest(),
        "archive_name": "databases/wp-db-1/wordpress.sql",
    }  # fmt: skip
    sink = io.BytesIO()
    compressor = open_compressor(sink, "zstd")
    writer = ArchiveWriter(compressor, Manifest(backup_id="b"))
    writer.add_backup_json({
        "app_id": "wordpress001", "databases": [entry],
        "volumes": [{"name": "wp_data"}, {"name": "wp_empty"}],
        "config_files": ["config/docker-compose.yml"],
    })  # fmt: skip
    writer.add_volume("wp_data", data)
    writer.add_volume("wp_empty", tmp_path / "wp_empty")
    writer.add_file(entry["archive_name"], dump)
    writer.add_file("config/docker-compose.yml", compose)
    writer.close()
    compressor.close()
    return sink.getvalue()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list]]:
    """Tasks the services send to Celery: captured, sent at once (in a test
    transaction on_commit never fires)."""
    calls: list[tuple[str, list]] = []
    monkeypatch.setattr(
        snapshot_services.celery_app,
        "send_task",
        lambda name, args, **_: calls.append((name, args)),
    )
    monkeypatch.setattr(snapshot_services.transaction, "on_commit", lambda send: send())
    return calls


# -- verify --------------------------------------------------------------------


def test_quick_verify_has_counts_in_contains_and_the_lists_in_contents(
    api: APIClient, stored_snapshot: StoredSnapshot
) -> None:
    recorded = {
        "volumes": {"wp_data": {"files": 2, "bytes": 3}, "wp_db": {"files": 9, "bytes": 90}},
        "databases": [{"database": "wordpress", "engine": "mariadb"}],
        "config_files": ["docker-compose.yml", ".env"],
        "file_count": 11,
    }
    snapshot = stored_snapshot(b"archive bytes", contents=recorded)
    data = envelope(api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {}, "json"), 200)
    assert data["contains"] == {"volumes": 2, "databases": 1, "config_files": 2}
    assert all(is_int(n) for n in data["contains"].values())
    assert data["snapshot_id"] == data["backup_id"] == snapshot.backup_id
    assert data["contents"] == recorded
    # The run row holds the same report (the CLI and the admin read it).
    result = Run.objects.get(pk=data["task_id"]).result
    assert result["contains"] == data["contains"] and result["snapshot_id"] == snapshot.backup_id
    assert result["contents"] == recorded


def test_quick_verify_of_a_snapshot_that_recorded_nothing_counts_zero(
    api: APIClient, stored_snapshot: StoredSnapshot, backup_root: Path
) -> None:
    snapshot = stored_snapshot(b"archive bytes")
    (backup_root / snapshot.storage_key).write_bytes(b"archive bytez")
    data = envelope(api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {}, "json"), 200)
    assert data["valid"] is False and data["snapshot_id"] == snapshot.backup_id
    assert data["contains"] == {"volumes": 0, "databases": 0, "config_files": 0}


def test_deep_verify_task_result_has_the_same_shape(
    api: APIClient, stored_snapshot: StoredSnapshot, sent: list, tmp_path: Path
) -> None:
    snapshot = stored_snapshot(real_archive(tmp_path / "src"))
    accepted = envelope(
        api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {"deep": True}, "json"), 202
    )
    assert sent == [("snapshots.verify_snapshot", [accepted["task_id"]])]
    run_verify(accepted["task_id"])  # the worker's part
    task = envelope(api.get(f"{API}/tasks/{accepted['task_id']}"), 200)
    assert task["state"] == "completed", task["error"]
    result = task["result"]
    assert result["valid"] is True and result["deep"] is True
    assert result["snapshot_id"] == snapshot.backup_id
    assert result["contains"] == {"volumes": 2, "databases": 1, "config_files": 1}
    assert all(is_int(n) for n in result["contains"].values())
    contents = result["contents"]
    assert sorted(contents["volumes"]) == ["wp_data", "wp_empty"]
    assert contents["databases"] == ["wp-db-1/wordpress.sql"]
    assert contents["config_files"] == ["docker-compose.yml"]
    assert contents["file_count"] == 2 and contents["database_count"] == 1
    required = {name for name, field in VerifyReportSerializer().fields.items() if field.required}
    assert set(result) >= required - {"task_id"}  # copies, read_from: off-site snapshots only


def test_a_report_stored_flat_before_contents_was_nested_is_still_shown(
    make_snapshot: Callable[..., Snapshot],
) -> None:
    snapshot = make_snapshot()
    run = Run.objects.create(
        operation="verify", app_id=snapshot.app_id, snapshot=snapshot, state="completed",
        result={"valid": True, "checksum_match": True, "sidecar_match": None, "sha256": "ab",
                "size_bytes": 9, "deep": False, "errors": [], "backup_id": snapshot.backup_id,
                "app_id": snapshot.app_id, "volumes": ["v1"], "file_count": 2},
    )  # fmt: skip
    report = VerifyReportSerializer(VerifyReportSerializer.from_run(run, snapshot.backup_id)).data
    assert report["contents"] == {"volumes": ["v1"], "file_count": 2}
    assert report["contains"] == {"volumes": 1, "databases": 0, "config_files": 0}
    assert report["snapshot_id"] == snapshot.backup_id


# -- restore -------------------------------------------------------------------


def test_a_restore_that_fails_under_wait_is_a_500_envelope_with_the_task(
    api: APIClient, stored_snapshot: StoredSnapshot, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """The archive is no archive: validation fails before anything (Docker
    included) is touched. The stand-in worker runs the restore as it is sent."""
    settings.BACKUP_API_WAIT_SECONDS = 30
    monkeypatch.setattr(
        snapshot_services.celery_app, "send_task", lambda name, args, **_: run_restore(args[0])
    )
    monkeypatch.setattr(snapshot_services.transaction, "on_commit", lambda send: send())
    snapshot = stored_snapshot(b"not a zstd archive at all")
    response = api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}?wait=true", {}, "json")
    data = envelope(response, 500)
    run = Run.objects.get(pk=data["task_id"])
    assert run.state == "failed" and "failed validation" in run.error
    assert response.json()["message"] == f"restore failed: {run.error}"
    assert data["state"] == "failed" and data["error"] == run.error
    assert data["backup_id"] == snapshot.backup_id
    result = data["result"]
    assert result == run.result
    assert result["app_id"] == "wordpress001" and result["snapshot_id"] == snapshot.backup_id
    assert is_int(result["restored_volumes"]) and result["restored_volumes"] == 0
    assert result["database_restored"] is False
    assert is_number(result["duration_seconds"]) and result["duration_seconds"] >= 0
    assert result["restored_volume_names"] == [] and result["restored_databases"] == []
    assert result["rolled_back"] == [] and result["safety_backup_id"] is None
    assert result["not_rolled_back"] == [] and result["warnings"] == []
    # What the schema documents is what is sent.
    assert set(result) == set(RestoreResultSerializer().fields)


def test_a_completed_restore_under_wait_is_200_with_the_seed_fields(
    api: APIClient, make_snapshot: Callable[..., Snapshot], monkeypatch: pytest.MonkeyPatch,
    settings,
) -> None:  # fmt: skip
    settings.BACKUP_API_WAIT_SECONDS = 30
    snapshot = make_snapshot()
    result = {
        "app_id": "wordpress001", "snapshot_id": snapshot.backup_id,
        "backup_id": snapshot.backup_id, "restored_volumes": 2,
        "restored_volume_names": ["wordpress001_data", "wordpress001_db"],
        "database_restored": True, "restored_databases": ["wordpress"], "skipped_volumes": {},
        "started_containers": ["wordpress001-app-1"], "safety_backup_id": None,
        "duration_seconds": 1.5, "downtime_seconds": 0.5, "staged_while_running": True,
        "staged_while_running_why_not": None, "database_rollback": False, "recreated": None,
        "phases": {"validate_and_stage": 0.7, "stop": 0.1, "swap": 0.01, "databases": 0.3,
                   "start": 0.1, "check": 0.3},
        "warnings": ["no safety backup was taken: if the restore fails, the databases (db) "
                     "cannot be rolled back"],
    }  # fmt: skip
    failed_only = {"rolled_back", "not_rolled_back"}
    assert set(result) == set(RestoreResultSerializer().fields) - failed_only

    def finish(name: str, args: list, **_: object) -> None:
        Run.objects.filter(pk=args[0]).update(state="completed", result=result)

    monkeypatch.setattr(snapshot_services.celery_app, "send_task", finish)
    monkeypatch.setattr(snapshot_services.transaction, "on_commit", lambda send: send())
    response = api.post(f"{API}/restore/wordpress001/{snapshot.backup_id}?wait=1", {}, "json")
    data = envelope(response, 200)
    assert response.json()["message"] == "restore completed"
    assert data["state"] == "completed" and data["result"] == result


# -- snapshot_id ----------------------------------------------------------------


def test_the_snapshot_id_addresses_the_snapshot_wherever_a_backup_id_is_taken(
    api: APIClient, stored_snapshot: StoredSnapshot, sent: list
) -> None:
    """No request body or query string takes a backup id; the paths take it
    under any name, so the snapshot_id of an answer works in each of them."""
    snapshot = stored_snapshot(b"archive bytes")
    verified = envelope(api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {}, "json"), 200)
    snapshot_id = verified["snapshot_id"]
    assert envelope(api.get(f"{API}/snapshots/{snapshot_id}"), 200)["backup_id"] == snapshot_id
    queued = envelope(api.post(f"{API}/restore/wordpress001/{snapshot_id}", {}, "json"), 202)
    assert queued["backup_id"] == snapshot_id and sent[0][0] == "snapshots.restore_backup"
    download = api.get(f"{API}/snapshots/{snapshot_id}/download")  # last: it ends the request
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"archive bytes"
