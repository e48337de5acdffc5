"""The whole API on a real WordPress-like stack, through a real Celery worker
on Redis: back up → poll → verify quick and deep → download (whole and a
range) → restore → data as backed up → delete (files gone, space freed)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from rest_framework.test import APIClient

from fleet.services import refresh_inventory
from snapshots.models import Snapshot
from tests.api.conftest import API, envelope
from tests.api.test_snapshot_detail import open_files_under
from tests.engine.treegen import snapshot as tree_snapshot
from tests.stacks import ComposeStack

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def worker(backup_root: Path, settings: Any, celery_queue: str, request: pytest.FixtureRequest):
    """A worker that sees our BACKUP_ROOT (set before it starts) and gets
    the tasks the API sends."""
    settings.BACKUP_TASK_QUEUE = celery_queue
    settings.BACKUP_API_WAIT_SECONDS = 300
    return request.getfixturevalue("celery_worker")


def wait_for_task(api: APIClient, task_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = envelope(api.get(f"{API}/tasks/{task_id}"), 200)
        if task["state"] in ("completed", "failed"):
            return task
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} did not end in {timeout}s: {task}")


def sql(stack: ComposeStack, query: str) -> str:
    password = stack.services[0].environment["MYSQL_ROOT_PASSWORD"]
    return stack.exec(
        "mariadb", ["mariadb", "-uroot", "-N", "-B", "wordpress", "-e", query],
        environment={"MYSQL_PWD": password},
    ).strip()  # fmt: skip


def volume_tree(client: docker.DockerClient, name: str) -> dict:
    return tree_snapshot(Path(client.volumes.get(name).attrs["Mountpoint"]))


def test_backup_verify_download_restore_delete(
    api: APIClient, worker: Any, wordpress: ComposeStack, backup_root: Path,
    docker_client: docker.DockerClient,
) -> None:  # fmt: skip
    app_id = wordpress.project
    sql(wordpress, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT); "
                   "INSERT INTO notes VALUES (1, 'before'), (2, 'kept')")  # fmt: skip
    files_before = volume_tree(docker_client, wordpress.volume("wordpress"))

    # The app is listed with its database, and no credential is shown. The
    # worker started before the stack: its host's inventory is refreshed now
    # (what the worker's timer does), for real against the engine.
    refresh_inventory()
    listed = envelope(api.get(f"{API}/apps/{app_id}"), 200)
    assert [d["engine"] for d in listed["databases"]] in (["mysql"], ["mariadb"])
    assert wordpress.services[0].environment["MYSQL_ROOT_PASSWORD"] not in str(listed)

    # Back up through the worker, polling the task.
    accepted = envelope(api.post(f"{API}/snapshots", {"app_id": app_id}, format="json"), 202)
    task = wait_for_task(api, accepted["task_id"])
    assert task["state"] == "completed", task
    assert task["progress"] == 1.0 and task["backup_id"] == accepted["backup_id"]
    backup_id = accepted["backup_id"]
    snapshot = envelope(api.get(f"{API}/snapshots/{backup_id}"), 200)
    assert snapshot["status"] == "completed" and snapshot["size_bytes"] > 0
    listing = envelope(api.get(f"{API}/snapshots", {"app_id": app_id}), 200)
    assert [s["backup_id"] for s in listing["snapshots"]] == [backup_id]

    # Verify: quick answers now, deep runs on the worker.
    quick = envelope(api.post(f"{API}/snapshots/{backup_id}/verify", {}, format="json"), 200)
    assert quick["valid"] and quick["checksum_match"] and quick["sidecar_match"]
    deep = envelope(api.post(f"{API}/snapshots/{backup_id}/verify", {"deep": True}, "json"), 202)
    deep_task = wait_for_task(api, deep["task_id"])
    assert deep_task["state"] == "completed", deep_task
    inside = deep_task["result"]["contents"]
    assert deep_task["result"]["valid"] and inside["file_count"] > 0
    assert wordpress.volume("wordpress") in inside["volumes"]
    assert deep_task["result"]["contains"]["volumes"] == len(inside["volumes"])

    # Download: the body is the archive; a range is the right slice.
    response = api.get(f"{API}/snapshots/{backup_id}/download")
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == snapshot["sha256"] == response["X-Checksum-SHA256"]
    assert len(body) == snapshot["size_bytes"] == int(response["Content-Length"])
    part = api.get(f"{API}/snapshots/{backup_id}/download", HTTP_RANGE="bytes=100-4195")
    assert part.status_code == 206 and b"".join(part.streaming_content) == body[100:4196]

    # Change the app, then restore it (waiting for the result).
    sql(wordpress, "UPDATE notes SET body = 'after' WHERE id = 1; DELETE FROM notes WHERE id = 2")
    wordpress.exec(
        "wordpress", ["sh", "-c", "rm /var/www/html/index.php; echo x > /var/www/html/new"]
    )
    assert volume_tree(docker_client, wordpress.volume("wordpress")) != files_before
    restored = envelope(api.post(f"{API}/restore/{app_id}/{backup_id}?wait=true", {}, "json"), 200)
    assert restored["state"] == "completed", restored
    outcome = restored["result"]
    assert outcome["backup_id"] == outcome["snapshot_id"] == backup_id
    assert outcome["restored_volumes"] == len(outcome["restored_volume_names"]) >= 1
    # The safety backup of the state before the restore is a snapshot like any other.
    safety_id = restored["result"]["safety_backup_id"]
    safety = envelope(api.get(f"{API}/snapshots/{safety_id}"), 200)
    assert safety["purpose"] == "pre_restore" and safety["status"] == "completed"
    assert sql(wordpress, "SELECT id, body FROM notes ORDER BY id") == "1\tbefore\n2\tkept"
    assert volume_tree(docker_client, wordpress.volume("wordpress")) == files_before
    for service in ("wordpress", "mariadb"):
        container = wordpress.container(service)
        container.reload()
        assert container.status == "running", service

    # Delete: archive and sidecar gone, nothing holds them open, row gone.
    archive = backup_root / Snapshot.objects.get(backup_id=backup_id).storage_key
    assert archive.exists() and archive.stat().st_nlink == 1
    deleted = envelope(api.delete(f"{API}/snapshots/{backup_id}"), 200)
    assert deleted["freed_bytes"] >= len(body)
    assert not archive.exists() and not Path(f"{archive}.sha256").exists()
    assert not open_files_under(backup_root)
    envelope(api.get(f"{API}/snapshots/{backup_id}"), 404)
