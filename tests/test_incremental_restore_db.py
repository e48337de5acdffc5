"""A chain of a stack with a database: restoring an incremental gives back
the files and the rows of its time (the dump is always whole), also when
the chain is encrypted to age recipients (the worker that made it had no
identity; the restore has one)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.age import generate_identity
from snapshots.models import Run, Snapshot
from tests.backup_helpers import backup_now
from tests.engine.treegen import snapshot as tree_snapshot
from tests.incremental_helpers import incremental_dirs
from tests.stacks import ComposeStack, mariadb_sql

__all__ = ["incremental_dirs"]  # the autouse fixture, imported

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_wordpress_chain_encrypted_to_recipients_restores_files_and_rows(
    wordpress: ComposeStack, docker_client: docker.DockerClient, settings, tmp_path: Path
) -> None:
    identity, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    settings.BACKUP_AGE_IDENTITY_FILE = ""  # the backups are made with no identity
    files = Path(docker_client.volumes.get(wordpress.volume("wordpress")).attrs["Mountpoint"])
    mariadb_sql(wordpress, "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100));"
                    "INSERT INTO posts VALUES (1, 'first'), (2, 'second')")  # fmt: skip
    full = backup_now(wordpress.project, "--incremental")
    (files / "index.php").write_text("<?php // edited for the incremental\n")
    (files / "uploads-new.txt").write_text("uploaded after the full")
    mariadb_sql(
        wordpress,
        "UPDATE posts SET title = 'edited' WHERE id = 1; INSERT INTO posts VALUES (3, 'third')",
    )
    incr = backup_now(wordpress.project, "--incremental")
    assert full.status == incr.status == Snapshot.Status.COMPLETED, incr.error
    assert incr.kind == "incremental" and incr.parent == full and incr.encrypted
    at_incr_files = tree_snapshot(files)
    at_incr_rows = mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id")
    (files / "index.php").unlink()
    (files / "junk.txt").write_text("after the incremental")
    mariadb_sql(wordpress, "DELETE FROM posts; INSERT INTO posts VALUES (9, 'junk')")
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity + "\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", wordpress.project, incr.backup_id)
    run = Run.objects.filter(operation="restore", app_id=wordpress.project).latest("created_at")
    assert run.state == Run.State.COMPLETED, run.error
    assert tree_snapshot(files) == at_incr_files
    assert mariadb_sql(wordpress, "SELECT id, title FROM posts ORDER BY id") == at_incr_rows
    assert "edited" in at_incr_rows and "third" in at_incr_rows
    assert run.result["database_restored"] is True
