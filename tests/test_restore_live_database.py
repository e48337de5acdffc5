"""A database restored from its dump is loaded into its running container
(issue 15): the database container is neither stopped nor started when none
of its volumes is swapped, the rest of the app is; a failure in the load
rolls everything back with the database still running; recovery after a
dead worker leaves such a database running; several database containers
are loaded at the same time.

Real stacks on the real engine; whether a container was restarted is read
from the engine's own State.StartedAt."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
from django.db.models.functions import Now

from engine import steps
from engine.dumps import DatabaseRestoreError
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.restore.volume_users import databases_kept_running
from snapshots.locks import acquire_app_lock
from snapshots.models import AppLock, Run, Snapshot
from snapshots.tasks import cleanup
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now, restore_now
from tests.engine.treegen import snapshot as tree_snapshot
from tests.images import APP_IMAGE, MARIADB_IMAGE, POSTGRES_IMAGE
from tests.stacks import (
    SEED_APP_FILES,
    ComposeStack,
    ServiceSpec,
    all_running,
    mariadb_sql,
    random_project,
    volume_dir,
    wait_for_mariadb,
    wait_for_postgres,
)

pytestmark = RESTORE_TEST_MARKS

POSTS = (
    "CREATE TABLE posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(200));"
    "INSERT INTO posts (title) SELECT CONCAT('post ', seq) FROM seq_1_to_500;"
)


@pytest.fixture
def load_in_downtime(settings: Any) -> None:
    """The load into the live server in the downtime, which these tests
    inject faults into: MariaDB dumps otherwise go into a shadow database
    while the app runs (tests/test_restore_shadow_database.py), and that
    path never calls restore_database."""
    settings.BACKUP_RESTORE_LOAD_WHILE_RUNNING = False


def _started_at(stack: ComposeStack, service: str) -> str:
    container = stack.container(service)
    container.reload()
    return container.attrs["State"]["StartedAt"]


def test_the_database_is_loaded_running_and_only_the_app_is_restarted(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    mariadb_sql(wordpress, POSTS)
    files = volume_dir(docker_client, wordpress, "wordpress")
    before_files = tree_snapshot(files)
    before_rows = mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id")
    backup = backup_now(wordpress.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    (files / "index.php").write_text("<?php // changed\n")
    mariadb_sql(wordpress, "DELETE FROM posts WHERE id > 10; CREATE TABLE junk (x INT)")
    db_started, app_started = _started_at(wordpress, "mariadb"), _started_at(wordpress, "wordpress")

    run = restore_now(wordpress.project, backup.backup_id, "--no-safety-backup")

    assert run.state == Run.State.COMPLETED, run.error
    assert mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id") == before_rows
    assert mariadb_sql(wordpress, "SHOW TABLES").split() == [
        "posts"
    ]  # the dump's database, exactly
    assert tree_snapshot(files) == before_files
    assert _started_at(wordpress, "mariadb") == db_started  # never stopped
    assert _started_at(wordpress, "wordpress") != app_started  # stopped and started
    assert run.result["started_containers"] == [wordpress.container("wordpress").name]
    assert run.result["database_restored"] is True and run.result["downtime_seconds"] > 0
    assert all_running(wordpress)


def test_a_failed_load_rolls_back_with_the_database_running(
    wordpress: ComposeStack,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
    load_in_downtime: None,
) -> None:
    mariadb_sql(wordpress, POSTS)
    backup = backup_now(wordpress.project)
    files = volume_dir(docker_client, wordpress, "wordpress")
    (files / "index.php").write_text("<?php // current\n")
    mariadb_sql(wordpress, "DELETE FROM posts WHERE id > 10; UPDATE posts SET title = 'current'")
    current_files = tree_snapshot(files)
    current_rows = mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id")
    db_started = _started_at(wordpress, "mariadb")
    import engine.restore.orchestrate as orchestrate

    real_restore = orchestrate.restore_database
    calls = {"n": 0}

    def fail_after_first_restore(*args: Any, **kwargs: Any) -> None:
        """Failure injected in-process: the dump is really loaded (the
        database is changed), then the step fails, as a crash would."""
        calls["n"] += 1
        real_restore(*args, **kwargs)
        if calls["n"] == 1:
            raise DatabaseRestoreError("injected failure after the database was changed")

    monkeypatch.setattr(orchestrate, "restore_database", fail_after_first_restore)
    run = restore_now(wordpress.project, backup.backup_id)

    assert run.state == Run.State.FAILED and "injected failure" in run.error
    assert calls["n"] == 2  # the load, then the rollback's load of the safety backup
    assert mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id") == current_rows
    assert tree_snapshot(files) == current_files
    assert any(item.startswith("database") for item in run.result["rolled_back"])
    assert _started_at(wordpress, "mariadb") == db_started  # not even by the rollback
    assert all_running(wordpress)


def test_a_database_that_dies_during_its_load_is_started_by_the_rollback(
    wordpress: ComposeStack, monkeypatch: pytest.MonkeyPatch, load_in_downtime: None
) -> None:
    """No safety backup, so no database rollback to start it: the rollback
    itself starts the database container it had left running."""
    backup = backup_now(wordpress.project)
    import engine.restore.orchestrate as orchestrate

    def server_dies(*args: Any, **kwargs: Any) -> None:
        wordpress.container("mariadb").kill()  # a crash of the server mid-load
        raise DatabaseRestoreError("injected: the server went away")

    monkeypatch.setattr(orchestrate, "restore_database", server_dies)
    run = restore_now(wordpress.project, backup.backup_id, "--no-safety-backup")

    assert run.state == Run.State.FAILED and "server went away" in run.error
    assert f"started {wordpress.container('mariadb').name}" in run.result["rolled_back"]
    assert all_running(wordpress)


def _db_info(stack: ComposeStack, service: str) -> DatabaseInfo:
    container = stack.container(service)
    container.reload()
    info = ContainerInfo(container.id, container.name, service, MARIADB_IMAGE, container.status)
    return DatabaseInfo(info, "mariadb", DatabaseCredentials("root", None))


def test_a_database_mounting_a_swapped_volume_or_paused_is_stopped_as_before(
    wordpress: ComposeStack,
    docker_client: docker.DockerClient,
) -> None:
    db = _db_info(wordpress, "mariadb")
    files, data = wordpress.volume("wordpress"), wordpress.volume("mysql_data")
    assert databases_kept_running(docker_client, [db], [files]) == [db.container]
    assert databases_kept_running(docker_client, [db], [files, data]) == []
    wordpress.container("mariadb").pause()
    try:
        # Paused since discovery looked: the engine's word counts.
        assert databases_kept_running(docker_client, [db], [files]) == []
        assert databases_kept_running(docker_client, [_db_info(wordpress, "mariadb")], []) == []
    finally:
        wordpress.container("mariadb").unpause()


def test_recovery_of_a_dead_restore_leaves_a_database_that_ran_running(
    wordpress: ComposeStack, settings: Any
) -> None:
    """The journal of a restore killed while it loaded a dump into a
    database it did not stop: recovery starts the app again and leaves the
    database running (before, a database step's container outside the
    stopped ones was taken for one the restore had started, and stopped)."""
    app, db = wordpress.container("wordpress"), wordpress.container("mariadb")
    app.stop(timeout=5)
    snapshot = Snapshot.objects.create(
        backup_id="backup_20260105_103000_3fa2c2", app_id=wordpress.project,
        host_id=settings.BACKUP_HOST_ID, status=Snapshot.Status.COMPLETED,
    )  # fmt: skip
    run = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=wordpress.project, snapshot=snapshot,
        state=Run.State.RUNNING, worker="gone-container-3f2a:1", host_id=settings.BACKUP_HOST_ID,
        heartbeat_at=Now() - timedelta(hours=1),
        journal=[
            {"step": steps.STOP, "containers": [app.id], "paused": []},
            {"step": steps.DATABASE, "container": db.id, "running": True},
        ],
    )  # fmt: skip
    acquire_app_lock(wordpress.project, run)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - timedelta(hours=1))
    AppLock.objects.filter(app_id=wordpress.project).update(expires_at=Now() - timedelta(hours=1))

    recovery = cleanup()["recovered_runs"][str(run.pk)]

    assert f"started {app.name}" in recovery["done"], recovery
    assert any("no safety backup" in item for item in recovery["failed"]), recovery
    assert not any(db.name in item for item in recovery["done"]), recovery
    assert all_running(wordpress)


def _two_database_stack(client: docker.DockerClient, workdir: Path) -> ComposeStack:
    """An app on MariaDB and PostgreSQL at once: two database containers."""
    project = random_project("twodb")
    services = [
        ServiceSpec("mariadb", MARIADB_IMAGE,
                    {"MYSQL_ROOT_PASSWORD": "root-pw-2db", "MYSQL_DATABASE": "wordpress"},
                    {"mysql_data": "/var/lib/mysql"}),
        ServiceSpec("postgres", POSTGRES_IMAGE,
                    {"POSTGRES_USER": project, "POSTGRES_DB": "app",
                     "POSTGRES_HOST_AUTH_METHOD": "trust"},
                    {"postgres_data": "/var/lib/postgresql/data"}),
        ServiceSpec("app", APP_IMAGE, {}, {"files": "/srv"},
                    ["sh", "-c", SEED_APP_FILES.format(root="/srv")],
                    depends_on={"mariadb": "service_started", "postgres": "service_started"}),
    ]  # fmt: skip
    return ComposeStack(client, project, workdir / project, services)


def test_two_database_containers_are_loaded_at_the_same_time(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    load_in_downtime: None,
) -> None:
    stack = _two_database_stack(docker_client, tmp_path)
    try:
        stack.up()
        wait_for_mariadb(stack.container("mariadb"), "root-pw-2db")
        wait_for_postgres(stack.container("postgres"), stack.project)
        mariadb_sql(stack, POSTS)
        psql = ["psql", "-U", stack.project, "-d", "app", "-tAc"]
        stack.exec("postgres", [*psql, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS n"])
        backup = backup_now(stack.project)
        assert backup.status == Snapshot.Status.COMPLETED, backup.error
        mariadb_sql(stack, "DELETE FROM posts")
        stack.exec("postgres", [*psql, "DELETE FROM t"])
        import engine.restore.orchestrate as orchestrate

        real_restore = orchestrate.restore_database
        spans: dict[str, tuple[float, float]] = {}
        lock = threading.Lock()

        def timed_restore(client: Any, db: DatabaseInfo, *args: Any, **kwargs: Any) -> None:
            """The real load, timed: when each container's began and ended."""
            began = time.monotonic()
            time.sleep(1.0)  # so two loads that run one after the other cannot touch
            real_restore(client, db, *args, **kwargs)
            with lock:
                spans[db.container.service] = (began, time.monotonic())

        monkeypatch.setattr(orchestrate, "restore_database", timed_restore)
        run = restore_now(stack.project, backup.backup_id, "--no-safety-backup")

        assert run.state == Run.State.COMPLETED, run.error
        assert mariadb_sql(stack, "SELECT COUNT(*) FROM posts").strip() == "500"
        assert stack.exec("postgres", [*psql, "SELECT count(*) FROM t"]).strip() == "1000"
        (a_began, a_ended), (b_began, b_ended) = spans["mariadb"], spans["postgres"]
        assert a_began < b_ended and b_began < a_ended, spans  # the loads overlapped
        assert all_running(stack)
    finally:
        stack.remove()
