"""Restores of real stacks: data, rows and metadata come back exactly; a bad
archive or a failure mid-way leaves the app as it was, running."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest

from engine.age import generate_identity
from engine.dumps import DatabaseRestoreError
from snapshots.models import Run, Snapshot
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now, restore_now
from tests.engine.treegen import snapshot as tree_snapshot
from tests.stacks import ComposeStack, all_running, mariadb_sql, volume_dir

pytestmark = RESTORE_TEST_MARKS

POSTS = (
    "CREATE TABLE posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(200), body TEXT);"
    "INSERT INTO posts (title, body) SELECT CONCAT('post ', seq), REPEAT('x', seq % 500)"
    " FROM seq_1_to_2000;"
)


def _psql(stack: ComposeStack, sql: str, db: str = "odoo") -> str:
    return stack.exec("postgres", ["psql", "-U", stack.project, "-d", db, "-tAc", sql])


def _vandalise(root: Path) -> None:
    """What an operator regrets: files changed, deleted, added."""
    (root / "index.php").write_text("<?php // hacked\n")
    shutil.rmtree(root / "content")
    (root / "new-file.txt").write_text("should not survive the restore")
    (root / "link-to-index").unlink()


def test_wordpress_restore_brings_back_files_and_rows(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    mariadb_sql(wordpress, POSTS)
    files = volume_dir(docker_client, wordpress, "wordpress")
    before_files = tree_snapshot(files)
    before_rows = mariadb_sql(wordpress, "SELECT id, title, MD5(body) FROM posts ORDER BY id")
    backup = backup_now(wordpress.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    _vandalise(files)
    mariadb_sql(wordpress, "DELETE FROM posts WHERE id % 3 = 0; UPDATE posts SET title = 'changed';"
                    "CREATE TABLE junk (x INT)")  # fmt: skip
    run = restore_now(wordpress.project, backup.backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    assert tree_snapshot(files) == before_files
    assert (
        mariadb_sql(wordpress, "SELECT id, title, MD5(body) FROM posts ORDER BY id") == before_rows
    )
    assert all_running(wordpress)
    result = run.result
    assert result["restored_volume_names"] == [wordpress.volume("wordpress")]
    assert result["restored_volumes"] == 1 and type(result["restored_volumes"]) is int
    assert result["database_restored"] is True and result["duration_seconds"] > 0
    assert result["snapshot_id"] == backup.backup_id and result["app_id"] == wordpress.project
    assert result["restored_databases"]
    assert result["database_rollback"] is True and result["warnings"] == []
    safety = Snapshot.objects.get(backup_id=result["safety_backup_id"])
    assert safety.purpose == Snapshot.Purpose.PRE_RESTORE
    assert safety.status == Snapshot.Status.COMPLETED


def test_odoo_restore_with_postgres_user_equal_to_app_id(
    odoo: ComposeStack, docker_client: docker.DockerClient
) -> None:
    _psql(odoo, "CREATE DATABASE odoo", db="postgres")
    _psql(
        odoo,
        "CREATE TABLE res_partner (id serial PRIMARY KEY, name text);"
        "INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, 5000) g",
    )
    files = volume_dir(docker_client, odoo, "odoo_filestore")
    before_files = tree_snapshot(files)
    before_rows = _psql(odoo, "SELECT md5(string_agg(name, ',' ORDER BY id)) FROM res_partner")
    backup = backup_now(odoo.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    _vandalise(files)
    _psql(
        odoo, "DELETE FROM res_partner WHERE id > 100; INSERT INTO res_partner (name) VALUES ('x')"
    )
    run = restore_now(odoo.project, backup.backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    assert tree_snapshot(files) == before_files
    after = _psql(odoo, "SELECT md5(string_agg(name, ',' ORDER BY id)) FROM res_partner")
    assert after == before_rows
    assert all_running(odoo)


def test_one_flipped_byte_is_refused_and_nothing_changes(
    wordpress: ComposeStack, docker_client: docker.DockerClient, settings
) -> None:
    backup = backup_now(wordpress.project)
    files = volume_dir(docker_client, wordpress, "wordpress")
    _vandalise(files)
    vandalised = tree_snapshot(files)
    archive = settings.BACKUP_ROOT / backup.storage_key
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x01
    archive.write_bytes(bytes(data))
    run = restore_now(wordpress.project, backup.backup_id)
    assert run.state == Run.State.FAILED
    assert "failed validation" in run.error and "nothing was changed" in run.error
    assert tree_snapshot(files) == vandalised
    assert all_running(wordpress)
    assert not Snapshot.objects.filter(purpose=Snapshot.Purpose.PRE_RESTORE).exists()


def test_failure_in_database_step_rolls_everything_back(
    wordpress: ComposeStack,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
    settings,
) -> None:
    # The load into the live database in the downtime, where the fault is
    # injected (a shadow load is tests/test_restore_shadow_database.py's).
    settings.BACKUP_RESTORE_LOAD_WHILE_RUNNING = False
    mariadb_sql(wordpress, POSTS)
    backup = backup_now(wordpress.project)
    files = volume_dir(docker_client, wordpress, "wordpress")
    _vandalise(files)
    mariadb_sql(wordpress, "DELETE FROM posts WHERE id > 10; UPDATE posts SET title = 'current'")
    current_files = tree_snapshot(files)
    current_rows = mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id")
    import engine.restore.orchestrate as orchestrate

    real_restore = orchestrate.restore_database
    calls = {"n": 0}

    def fail_after_first_restore(*args, **kwargs):
        """Failure injected in-process: the dump is really restored (the
        database is changed), then the step fails, as a crash would."""
        calls["n"] += 1
        real_restore(*args, **kwargs)
        if calls["n"] == 1:
            raise DatabaseRestoreError("injected failure after the database was changed")

    monkeypatch.setattr(orchestrate, "restore_database", fail_after_first_restore)
    run = restore_now(wordpress.project, backup.backup_id)
    assert run.state == Run.State.FAILED and "injected failure" in run.error
    assert calls["n"] == 2  # the restore, then the rollback from the safety backup
    assert tree_snapshot(files) == current_files
    assert mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id") == current_rows
    rolled = run.result["rolled_back"]
    assert f"volume {wordpress.volume('wordpress')}" in rolled
    assert any(item.startswith("database") for item in rolled)
    assert all_running(wordpress)


def test_encrypted_backup_restores_with_the_identity(
    odoo: ComposeStack, docker_client: docker.DockerClient, settings, tmp_path: Path
) -> None:
    identity, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    key_file = tmp_path / "identity.txt"
    key_file.write_text(identity + "\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    files = volume_dir(docker_client, odoo, "odoo_filestore")
    before = tree_snapshot(files)
    backup = backup_now(odoo.project)
    assert backup.encrypted
    _vandalise(files)
    run = restore_now(odoo.project, backup.backup_id, "--no-safety-backup")
    assert run.state == Run.State.COMPLETED, run.error
    assert tree_snapshot(files) == before and run.result["safety_backup_id"] is None
    # Without the identity, the restore is refused before anything changes.
    settings.BACKUP_AGE_IDENTITY_FILE = ""
    _vandalise(files)
    refused = restore_now(odoo.project, backup.backup_id)
    assert refused.state == Run.State.FAILED and "nothing was changed" in refused.error
    assert "needs the age identity" in refused.error


def test_restore_after_the_apps_volume_was_removed(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    files_before = tree_snapshot(volume_dir(docker_client, wordpress, "wordpress"))
    backup = backup_now(wordpress.project)
    # The app container and its files volume are gone (partly uninstalled).
    wordpress.container("wordpress").remove(force=True)
    docker_client.volumes.get(wordpress.volume("wordpress")).remove()
    run = restore_now(wordpress.project, backup.backup_id, "--no-database")
    assert run.state == Run.State.COMPLETED, run.error
    volume = docker_client.volumes.get(wordpress.volume("wordpress"))
    assert volume.attrs["Labels"]["com.docker.compose.project"] == wordpress.project
    assert volume.attrs["Labels"]["com.docker.compose.volume"] == "wordpress"
    assert tree_snapshot(Path(volume.attrs["Mountpoint"])) == files_before
