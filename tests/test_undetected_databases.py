"""Databases whose image name says nothing, on the real Docker engine: a
PostgreSQL built under a private name is found by its environment, its data
directory and its server process, and dumped; a volume that only looks like a
live data directory is copied raw, with a warning on the snapshot, in
backup.json, the API and the command's output."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from engine.backup import BackupOptions, create_backup
from engine.database_detection import undumped_warnings
from engine.discovery import get_app
from engine.errors import DatabaseDumpError
from engine.inventory import AppInfo, ContainerInfo, DatabaseCredentials, DatabaseInfo
from snapshots.models import AppBackupPolicy, Run, Snapshot
from snapshots.services.api_keys import create_api_key
from storage.local import LocalStorage
from tests.backup_helpers import archive_path, backup_now, extract_with_system_tools
from tests.images import APP_IMAGE, POSTGRES_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project, wait_for_postgres, wait_until


@pytest.fixture
def backup_root(settings, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    return settings.BACKUP_ROOT


@pytest.fixture
def private_postgres_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The local PostgreSQL test image under a private registry's name that
    no image rule knows (never pulled: a tag of the local image); the tag is
    removed afterwards, the image stays."""
    repository = "registry.example/acme/pgsrv"
    tag = f"t{secrets.token_hex(4)}"
    assert docker_client.images.get(POSTGRES_IMAGE).tag(repository, tag)
    yield f"{repository}:{tag}"
    docker_client.images.remove(f"{repository}:{tag}")


@pytest.fixture
def stacks() -> Iterator[list[ComposeStack]]:
    """Stacks a test deploys; removed before the image tag they use."""
    made: list[ComposeStack] = []
    yield made
    for stack in made:
        stack.remove()


def _deploy(
    docker_client: docker.DockerClient, tmp_path: Path, stacks: list[ComposeStack],
    kind: str, services: list[ServiceSpec],
) -> ComposeStack:  # fmt: skip
    project = random_project(kind)
    stack = ComposeStack(docker_client, project, tmp_path / project, services)
    stacks.append(stack)
    stack.up()
    return stack


def _put_file(stack: ComposeStack, service: str, path: Path, directory: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    assert stack.container(service).put_archive(directory, buffer.getvalue())


@pytest.mark.docker
@pytest.mark.slow
def test_real_data_directories_are_recognised_and_dumped_ones_give_no_warning(
    docker_client: docker.DockerClient, wordpress: ComposeStack
) -> None:
    app = get_app(docker_client, wordpress.project)
    (data_dir,) = app.data_dirs
    assert data_dir.volume == wordpress.volume("mysql_data") and data_dir.path == ""
    assert data_dir.engine == "mariadb"
    assert set(data_dir.markers) == {"aria_log_control", "ibdata1", "mysql/"}
    assert app.databases[0].detected_by == "image localtest/mariadb:10.11"
    assert app.suspects == ()
    assert undumped_warnings(app, consistency="live") == []
    (warning,) = undumped_warnings(app, consistency="live", include_databases=False)
    assert "include_databases is off" in warning


def test_a_failed_dump_of_a_database_found_by_its_signals_says_why_it_was_dumped(
    tmp_path: Path,
) -> None:
    container = ContainerInfo("c" * 64, "acme-db-1", "db", "registry.example/acme/pgsrv:1",
                              "running")  # fmt: skip
    reason = "detected postgres from env POSTGRES_PASSWORD, binary postgres (running)"
    database = DatabaseInfo(container, "postgres", DatabaseCredentials("postgres", None), reason)
    app = AppInfo("acme", (container,), (), (database,), ())

    def failing_dump(*args: object) -> list:
        raise DatabaseDumpError("pg_dump exited 1: connection refused")

    with pytest.raises(DatabaseDumpError) as excinfo:
        create_backup(
            client=None, app=app, backup_id="backup_20260105_103000_3fa2c1",  # type: ignore[arg-type]
            storage=LocalStorage(tmp_path / "store"), options=BackupOptions(),
            spool_dir=tmp_path / "spool", dump_database=failing_dump,
        )  # fmt: skip
    message = str(excinfo.value)
    assert message.startswith("pg_dump exited 1: connection refused (acme-db-1: detected postgres")
    assert 'database_overrides {"db": {"skip": true}}' in message


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_postgres_under_a_private_image_name_is_dumped(
    docker_client: docker.DockerClient, private_postgres_image: str, stacks: list[ComposeStack],
    backup_root: Path, tmp_path: Path,
) -> None:  # fmt: skip
    password = f"pg-{secrets.token_hex(8)}"
    db = ServiceSpec(
        "db", private_postgres_image, {"POSTGRES_PASSWORD": password, "POSTGRES_DB": "shop"},
        {"pgdata": "/var/lib/postgresql/data"},
    )  # fmt: skip
    app = ServiceSpec("app", APP_IMAGE, {"DB_HOST": "db"}, {"files": "/srv"}, ["sleep", "300"])
    stack = _deploy(docker_client, tmp_path, stacks, "acme", [db, app])
    wait_for_postgres(stack.container("db"), "postgres")
    stack.exec("db", ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "shop", "-v",
                      "ON_ERROR_STOP=1", "-c", "CREATE TABLE orders (id int); "
                      "INSERT INTO orders VALUES (4242);"], {"PGPASSWORD": password})  # fmt: skip

    snapshot = backup_now(stack.project)
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    assert snapshot.warnings == []
    dumps = snapshot.contents["databases"]
    container = stack.container("db").name
    assert {(d["container"], d["engine"], d["database"]) for d in dumps} >= {
        (container, "postgres", "shop")
    }
    (detection,) = snapshot.contents["detection"]
    assert detection["container"] == container and detection["engine"] == "postgres"
    reason = detection["detected_by"]
    assert reason.startswith("detected postgres from env POSTGRES_PASSWORD")
    assert f"PG_VERSION in volume {stack.volume('pgdata')}" in reason
    assert "binary postgres (running)" in reason
    assert password not in json.dumps(snapshot.contents)

    # The archive holds a real pg_dump of the private image's database.
    archive = archive_path(snapshot, backup_root)
    dest = tmp_path / "restored"
    extract_with_system_tools(archive, dest)
    dump = dest / "databases" / container / "shop.dump"
    assert dump.read_bytes()[:5] == b"PGDMP"
    _put_file(stack, "db", dump, "/tmp")
    assert "4242" in stack.exec("db", ["pg_restore", "--data-only", "-f", "-", "/tmp/shop.dump"])
    info = json.loads((dest / "backup.json").read_text())
    assert info["warnings"] == [] and info["detection"] == snapshot.contents["detection"]

    # The app's own override still wins: skipped, no dump and no warning.
    AppBackupPolicy.objects.create(app_id=stack.project, database_overrides={"db": {"skip": True}})
    skipped = backup_now(stack.project)
    assert skipped.status == Snapshot.Status.COMPLETED, skipped.error
    assert skipped.contents["databases"] == [] and skipped.warnings == []


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_data_directory_marker_alone_is_copied_raw_with_a_warning(
    docker_client: docker.DockerClient, stacks: list[ComposeStack], backup_root: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # An app container whose volume looks like a PostgreSQL data directory.
    seed = "echo 15 > /data/PG_VERSION && mkdir -p /data/base && exec sleep 300"
    app = ServiceSpec("app", APP_IMAGE, {}, {"appdata": "/data"}, ["sh", "-c", seed])
    stack = _deploy(docker_client, tmp_path, stacks, "marker", [app])
    volume = stack.volume("appdata")
    mountpoint = Path(docker_client.volumes.get(volume).attrs["Mountpoint"])
    wait_until(lambda: (mountpoint / "PG_VERSION").exists(), 30, "PG_VERSION in the volume")
    container = stack.container("app").name

    call_command("backup", "create", stack.project)
    out = capsys.readouterr().out
    snapshot = Snapshot.objects.filter(app_id=stack.project).latest("created_at")
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    assert snapshot.contents["databases"] == []  # no dump: the raw copy is kept
    assert volume in snapshot.contents["volumes"]
    (warning,) = snapshot.warnings
    assert f"volume {volume} (container {container})" in warning
    assert "PostgreSQL data directory (PG_VERSION)" in warning
    assert "no PostgreSQL environment variables" in warning
    assert f"database_overrides of app {stack.project}" in warning
    assert '{"app": {"engine": "postgres"}}' in warning and "consistency=stop" in warning

    # `backup create` says it, and so do backup.json, the run, the API and `backup list --json`.
    assert f"warning: {warning}" in out
    extract_with_system_tools(archive_path(snapshot, backup_root), tmp_path / "x")
    assert json.loads((tmp_path / "x" / "backup.json").read_text())["warnings"] == [warning]
    run = Run.objects.get(snapshot=snapshot, operation=Run.Operation.BACKUP)
    assert run.result["warnings"] == [warning]
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=create_api_key("tests")[1])
    detail = api.get(f"/api/v1/backup/snapshots/{snapshot.backup_id}").json()["data"]
    assert detail["warnings"] == [warning]
    listed = api.get("/api/v1/backup/snapshots", {"app_id": stack.project}).json()["data"]
    assert [s["warnings"] for s in listed["snapshots"]] == [[warning]]
    call_command("backup", "list", "--app", stack.project, "--json")
    (row,) = json.loads(capsys.readouterr().out)
    assert row["warnings"] == [warning]

    # Stopped while its volumes are read, the copy is at rest: nothing to warn about.
    AppBackupPolicy.objects.create(app_id=stack.project, consistency="stop")
    stopped = backup_now(stack.project)
    assert stopped.status == Snapshot.Status.COMPLETED, stopped.error
    assert stopped.warnings == []
