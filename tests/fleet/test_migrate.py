"""Migration end to end on two real Docker hosts (tests/fleet/two_engines.py):
an app with a MariaDB is backed up on host A to S3 (a real moto server),
nothing of it removed on A, then restored with target_host_id=B, where the
app has nothing. On B's engine: its containers exist under the same Compose
project and run, its volume data matches A's (tree digest) and its
database's rows match (CHECKSUM TABLE and counts). A is left as it was."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from rest_framework.test import APIClient

from fleet.models import HostApp
from snapshots.api.serializers import BackupRequestSerializer, storage_location_field
from snapshots.models import Run
from tests.api.conftest import API, envelope
from tests.engine.treegen import snapshot as tree_snapshot
from tests.fleet.test_two_hosts import Worker
from tests.fleet.two_engines import second_engine, wait_for
from tests.images import APP_IMAGE, MARIADB_IMAGE
from tests.offsite_helpers import moto, offsite  # noqa: F401 - fixtures
from tests.stacks import ComposeStack, remove_project, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.celery,
    pytest.mark.slow,
]  # fmt: skip

POSTS = (
    "CREATE TABLE posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(200), body TEXT);"
    "INSERT INTO posts (title, body) SELECT CONCAT('post ', seq), REPEAT('x', seq % 500)"
    " FROM seq_1_to_3000;"
)
CHECK = "SELECT COUNT(*), SUM(CRC32(CONCAT(id, title, body))) FROM posts; CHECKSUM TABLE posts"
PROJECT_LABEL = "com.docker.compose.project"


def _ended(run: Run) -> Run | None:
    run.refresh_from_db()
    return run if run.state in (Run.State.COMPLETED, Run.State.FAILED) else None


def _sql(client: docker.DockerClient, container: str, password: str, sql: str) -> str:
    result = client.containers.get(container).exec_run(
        ["mariadb", "-uroot", "-N", "wordpress", "-e", sql], environment={"MYSQL_PWD": password},
        demux=True,
    )  # fmt: skip
    out, err = result.output
    assert result.exit_code == 0, (err or b"").decode()[-2000:]
    return (out or b"").decode()


def _files(client: docker.DockerClient, volume: str) -> Path:
    return Path(client.volumes.get(volume).attrs["Mountpoint"])


def test_an_app_backed_up_on_a_to_s3_comes_up_on_b(
    api: APIClient, docker_client: docker.DockerClient, wordpress: ComposeStack,
    offsite: dict[str, Any],  # noqa: F811 - the fixture
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # The serializer's choices were read at import, before `offsite` configured s3.
    fields = BackupRequestSerializer._declared_fields
    monkeypatch.setitem(fields, "storage_location", storage_location_field(default="local"))
    engine_a = settings.DOCKER_HOST
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"  # the web process: no engine
    settings.BACKUP_TASK_QUEUE = ""  # routed by host
    password = wordpress.services[0].environment["MYSQL_ROOT_PASSWORD"]
    db_a = wordpress.container("mariadb").name
    _sql(docker_client, db_a, password, POSTS)
    rows_a = _sql(docker_client, db_a, password, CHECK)
    files_a = tree_snapshot(_files(docker_client, wordpress.volume("wordpress")))
    app = wordpress.project
    host_a, host_b = f"mig-a-{uuid.uuid4().hex[:6]}", f"mig-b-{uuid.uuid4().hex[:6]}"
    workers: list[Worker] = []
    with second_engine(docker_client, [APP_IMAGE, MARIADB_IMAGE]) as engine_b:
        try:
            workers.append(Worker(host_a, engine_a, tmp_path / "a.log", offsite["env"]))
            worker_b = Worker(host_b, engine_b.url, tmp_path / "b.log", offsite["env"])
            workers.append(worker_b)
            wait_for("A's inventory", lambda: HostApp.objects.filter(app_id=app).exists())
            wait_for("B online", lambda: _online(api, host_b))

            body = {"app_id": app, "host_id": host_a, "storage_location": "s3", "encrypt": False}
            backup = Run.objects.get(
                pk=envelope(api.post(f"{API}/snapshots", body, format="json"), 202)["task_id"]
            )
            backup = wait_for("backup on A", lambda: _ended(backup), 180)
            assert backup.state == Run.State.COMPLETED, backup.error
            snapshot = backup.snapshot
            assert snapshot is not None and snapshot.storage_location == "s3"
            assert password not in str(snapshot.contents) + str(backup.result)

            started = time.monotonic()
            response = api.post(
                f"{API}/restore/{app}/{snapshot.backup_id}", {"target_host_id": host_b}, "json"
            )
            restore = Run.objects.get(pk=envelope(response, 202)["task_id"])
            restore = wait_for("restore on B", lambda: _ended(restore), 300)
            seconds = time.monotonic() - started
            log_b = worker_b.log.read_text()
            assert restore.state == Run.State.COMPLETED, (restore.error, log_b[-4000:])
            assert restore.host_id == host_b and restore.worker == worker_b.name
            result = restore.result
            print(f"migration restore on B: {seconds:.1f} s, phases {result['phases']}")
            names = sorted(c.name for c in wordpress.containers.values())
            assert sorted(result["recreated"]["containers"]) == names
            assert result["database_restored"] and result["restored_databases"]
            assert password not in str(result) + str(restore.error) + log_b

            # On B: the same project's containers, running.
            on_b = engine_b.client.containers.list(
                all=True, filters={"label": f"{PROJECT_LABEL}={app}"}
            )
            assert sorted(c.name for c in on_b) == names
            assert {c.status for c in on_b} == {"running"}
            wait_until(  # it stays up
                lambda: all(c.reload() or c.status == "running" for c in on_b), 3, "still up"
            )
            # The data as on A: files and rows.
            files_b = tree_snapshot(_files(engine_b.client, wordpress.volume("wordpress")))
            assert files_b == files_a
            db_b = f"{app}-mariadb-1"
            assert _sql(engine_b.client, db_b, password, CHECK) == rows_a
            labels = engine_b.client.volumes.get(wordpress.volume("mysql_data")).attrs["Labels"]
            assert labels[PROJECT_LABEL] == app

            # A as it was: nothing removed, still running.
            for container in wordpress.containers.values():
                container.reload()
                assert container.status == "running"
            assert _sql(docker_client, db_a, password, CHECK) == rows_a
        finally:
            for worker in workers:
                worker.stop()
            remove_project(engine_b.client, app)


def _online(api: APIClient, host_id: str) -> bool:
    hosts = envelope(api.get(f"{API}/hosts"), 200)["hosts"]
    return any(h["host_id"] == host_id and h["online"] for h in hosts)
