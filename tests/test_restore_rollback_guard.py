"""A restore whose failure could not be rolled back is refused before it
touches anything, unless the caller accepts it (issue 18, "refusal"); a
failed restore leaves stopped containers stopped (issue 18, point 10).
Real stacks, real backups, real restores; nothing is mocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.age import generate_identity
from snapshots.models import AppBackupPolicy, Run, Snapshot
from snapshots.services.restore import RestoreOptions, request_restore, run_restore
from tests.backup_helpers import backup_now, restore_now
from tests.stacks import (
    SEED_APP_FILES,
    ComposeStack,
    mariadb_sql,
    random_project,
    wait_for_mariadb,
    wordpress_stack,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROWS = "SELECT id, title FROM posts ORDER BY id"


@pytest.fixture(autouse=True)
def unencrypted_backups(backup_dirs: None, settings) -> None:
    settings.BACKUP_AGE_RECIPIENTS = []
    settings.BACKUP_AGE_IDENTITY_FILE = ""
    settings.BACKUP_PASSPHRASE = ""


def _with_posts(stack: ComposeStack) -> tuple[Snapshot, str]:
    """A backup holding 3 posts, then the live rows changed; returns the
    backup and the changed rows (what a refused restore must leave)."""
    mariadb_sql(stack, "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(50));"
                "INSERT INTO posts VALUES (1, 'one'), (2, 'two'), (3, 'three')")  # fmt: skip
    backup = backup_now(stack.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    assert backup.contents["databases"]
    mariadb_sql(stack, "DELETE FROM posts WHERE id = 3; UPDATE posts SET title = 'current'")
    return backup, mariadb_sql(stack, ROWS)


def _safety_backups(app_id: str) -> int:
    return Snapshot.objects.filter(app_id=app_id, purpose=Snapshot.Purpose.PRE_RESTORE).count()


def test_policy_without_databases_refuses_unless_accepted(wordpress: ComposeStack) -> None:
    """include_databases=false: the safety backup holds no dump, so the
    database rollback would silently do nothing. Refused at the request
    (CLI and API) and again on the worker; accepted, it runs and says so."""
    backup, current = _with_posts(wordpress)
    app_id = wordpress.project
    policy = AppBackupPolicy.objects.create(app_id=app_id, include_databases=False)
    with pytest.raises(CommandError, match="could not be rolled back") as refused:
        call_command("backup", "restore", app_id, backup.backup_id)
    assert "include_databases=false" in str(refused.value)
    assert "--accept-no-database-rollback" in str(refused.value)
    assert not Run.objects.filter(operation="restore").exists()
    # A run requested before the policy changed is refused by the worker.
    AppBackupPolicy.objects.filter(pk=policy.pk).update(include_databases=True)
    early = request_restore(app_id, backup.backup_id, RestoreOptions())
    AppBackupPolicy.objects.filter(pk=policy.pk).update(include_databases=False)
    run = run_restore(str(early.pk))
    assert run.state == Run.State.FAILED
    assert "could not be rolled back" in run.error and "include_databases=false" in run.error
    assert "nothing was changed" in run.error
    assert _safety_backups(app_id) == 0  # refused before even the safety backup
    assert mariadb_sql(wordpress, ROWS) == current
    # Accepted: the restore runs, and its result says there was no rollback.
    run = restore_now(app_id, backup.backup_id, "--accept-no-database-rollback")
    assert run.state == Run.State.COMPLETED, run.error
    assert mariadb_sql(wordpress, ROWS) == "1\tone\n2\ttwo\n3\tthree\n"
    assert run.result["database_rollback"] is False
    assert any("include_databases=false" in w for w in run.result["warnings"]), run.result
    safety = Snapshot.objects.get(backup_id=run.result["safety_backup_id"])
    assert safety.status == Snapshot.Status.COMPLETED and safety.contents["databases"] == []


def test_safety_backup_that_this_worker_cannot_read_refuses_unless_accepted(
    wordpress: ComposeStack, settings, tmp_path: Path
) -> None:
    """Safety backups encrypted to age recipients only: with no identity the
    refusal comes before the safety backup; with an identity that does not
    match, the safety backup is taken, read back as a rollback would, found
    unreadable, and the restore refused before anything else."""
    backup, current = _with_posts(wordpress)  # unencrypted: this worker can read it
    app_id = wordpress.project
    _, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    run = restore_now(app_id, backup.backup_id)
    assert run.state == Run.State.FAILED
    assert "could not be rolled back" in run.error and "age recipients only" in run.error
    assert "nothing was changed" in run.error and "accept_no_database_rollback" in run.error
    assert _safety_backups(app_id) == 0
    assert mariadb_sql(wordpress, ROWS) == current
    other_identity, _ = generate_identity()
    key_file = tmp_path / "other-identity.txt"
    key_file.write_text(other_identity + "\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    run = restore_now(app_id, backup.backup_id)
    assert run.state == Run.State.FAILED
    assert "cannot be read back on this worker" in run.error, run.error
    assert "nothing was changed" in run.error
    safety = Snapshot.objects.get(backup_id=run.result["safety_backup_id"])
    assert safety.encrypted and safety.contents["databases"]  # dumps there, but unreadable
    assert mariadb_sql(wordpress, ROWS) == current
    run = restore_now(app_id, backup.backup_id, "--accept-no-database-rollback")
    assert run.state == Run.State.COMPLETED, run.error
    assert run.result["database_rollback"] is False
    assert any("cannot be read back" in w for w in run.result["warnings"]), run.result
    assert mariadb_sql(wordpress, ROWS) == "1\tone\n2\ttwo\n3\tthree\n"


CRASH_MARKER = "crash-on-start"


@pytest.fixture
def fragile_wordpress(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    """The wordpress stack, whose app exits at once on start when its files
    volume holds CRASH_MARKER (as an app does on data it cannot use)."""
    project = random_project("wordpress")
    stack = wordpress_stack(docker_client, project, tmp_path_factory.mktemp(project) / project)
    root = "/var/www/html"
    stack.services[1].command = [
        "sh", "-c",
        f"if [ -e {root}/{CRASH_MARKER} ]; then echo 'cannot use this data' >&2; exit 3; fi; "
        + SEED_APP_FILES.format(root=root),
    ]  # fmt: skip
    try:
        stack.up()
        wait_for_mariadb(stack.container("mariadb"), stack.services[0].environment[
            "MYSQL_ROOT_PASSWORD"])  # fmt: skip
        yield stack
    finally:
        stack.remove()


def _status(stack: ComposeStack, service: str) -> str:
    container = stack.container(service)
    container.reload()
    return container.status


def test_failed_restore_leaves_a_stopped_database_stopped(
    fragile_wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    """The database container was stopped before the restore; the restore
    starts it to load the dump, then fails (the app exits at once on the
    restored files). The rollback puts the files back, starts the app as it
    was, and stops the database again. --no-safety-backup: a stopped
    database cannot be dumped, and the result says no database rollback was
    possible."""
    stack = fragile_wordpress
    files = Path(docker_client.volumes.get(stack.volume("wordpress")).attrs["Mountpoint"])
    (files / CRASH_MARKER).write_text("")  # read only at start: the app keeps running
    backup, _ = _with_posts(stack)
    (files / CRASH_MARKER).unlink()
    stack.container("mariadb").stop()
    run = restore_now(stack.project, backup.backup_id, "--no-safety-backup")
    assert run.state == Run.State.FAILED
    assert "did not stay running (exit code" in run.error
    assert "cannot use this data" not in run.error  # its log is not copied: it may hold rows
    assert run.result["database_rollback"] is False
    assert any("no safety backup was taken" in w for w in run.result["warnings"])
    rolled = run.result["rolled_back"]
    assert f"volume {stack.volume('wordpress')}" in rolled, rolled
    assert not (files / CRASH_MARKER).exists()
    assert _status(stack, "wordpress") == "running"
    assert _status(stack, "mariadb") == "exited", "the rollback left the database running"
