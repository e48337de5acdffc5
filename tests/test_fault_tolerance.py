"""Rollback, resume and commit when a step fails: every other step is still
tried, and the result says what was put back and what could not be.

The Docker engine's faults are real failures of real requests (FlakyEngine:
a real client whose requests fail from a chosen one on, as docker-py's do
when the engine is unreachable or slow); the filesystem's is a real file
that cannot be deleted (the append-only attribute)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import snapshots.services.backup as backup_service
import snapshots.services.restore as restore_service
from engine.restore.drop import wait_for_drops
from engine.restore.volume_swap import OLD_PREFIX, TRASH_PREFIX
from snapshots.locks import app_is_locked
from snapshots.models import Run, Snapshot
from snapshots.tasks import cleanup
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now, restore_now
from tests.engine.treegen import snapshot as tree_snapshot
from tests.flaky_engine import FlakyEngine, request_to
from tests.small_app import data_dir, deploy_small_app, remove_small_app, statuses
from tests.stacks import ComposeStack, mariadb_sql

pytestmark = RESTORE_TEST_MARKS

POSTS = (
    "CREATE TABLE posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(200));"
    "INSERT INTO posts (title) SELECT CONCAT('post ', seq) FROM seq_1_to_500;"
)


@pytest.fixture
def small_app(
    docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., ComposeStack]]:
    stacks: list[ComposeStack] = []

    def deploy(*services: str) -> ComposeStack:
        stacks.append(deploy_small_app(docker_client, tmp_path, services or ("web",)))
        return stacks[-1]

    yield deploy
    for stack in stacks:
        remove_small_app(stack)


def test_engine_unreachable_during_the_rollback_still_puts_the_volumes_back(
    wordpress: ComposeStack, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine goes away when the restore starts the app (after its volume
    was swapped and its database restored): starting fails, and so does every
    Docker call of the rollback. The volume is still put back (no Docker
    needed), each Docker step is tried and listed as not rolled back, and
    the run is handed to this host's recovery, which finishes the rollback
    (the database from the safety backup, the app started) once the engine
    answers again. The database's tables were swapped in from a shadow
    database: the rollback's swap back fails with the engine, recovery's
    does it."""
    mariadb_sql(wordpress, POSTS)
    backup = backup_now(wordpress.project)
    files = Path(docker_client.volumes.get(wordpress.volume("wordpress")).attrs["Mountpoint"])
    (files / "index.php").write_text("<?php // changed after the backup\n")
    mariadb_sql(wordpress, "DELETE FROM posts WHERE id > 10")
    current_files = tree_snapshot(files)
    app = wordpress.container("wordpress")
    flaky = FlakyEngine()
    flaky.break_at(request_to("POST", f"/containers/{app.id}/start"))
    monkeypatch.setattr(restore_service, "connect", lambda _host: flaky.client)
    run = restore_now(wordpress.project, backup.backup_id)
    flaky.repair()

    # Not over: the app is not as it was.
    assert run.state == Run.State.RUNNING and run.phase == "awaiting recovery"
    assert run.result["rolled_back"] == [f"volume {wordpress.volume('wordpress')}"]
    not_back = run.result["not_rolled_back"]
    for container in wordpress.containers.values():
        assert any(i.startswith(f"start {container.name}: ConnectionError") for i in not_back)
    # The database was loaded live (never stopped), so only the app has a stop to undo.
    stops = [i for i in not_back if i.startswith("stop ")]
    assert [s.split(":")[0] for s in stops] == [f"stop {app.name}"], not_back
    # Loaded into a shadow database while the app ran and swapped in: the
    # swap back needs the engine too, and the previous tables wait aside.
    assert any(
        i.startswith("database wordpress (its previous tables are in bs_restore_") for i in not_back
    ), not_back
    assert "NOT rolled back" in run.error and f"start {app.name}" in run.error
    # What was put back is back; nothing of the restore is left beside it.
    assert tree_snapshot(files) == current_files
    assert sorted(p.name for p in files.parent.iterdir()) == ["_data"]
    # What the result says was not rolled back was not: the database holds
    # the backup's rows, the app container was never started again.
    assert mariadb_sql(wordpress, "SELECT COUNT(*) FROM posts").strip() == "500"
    assert statuses(wordpress)["wordpress"] == "exited"
    assert app_is_locked(wordpress.project)  # nobody else gets in meanwhile

    # The engine answers again: the next recovery round finishes the job.
    monkeypatch.undo()
    recovery = cleanup()["recovered_runs"][str(run.pk)]
    assert recovery["failed"] == [], recovery
    assert "database wordpress: its previous tables swapped back" in recovery["done"], recovery
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "put the app back" in run.error
    assert mariadb_sql(wordpress, "SELECT COUNT(*) FROM posts").strip() == "10"
    assert statuses(wordpress) == {"mariadb": "running", "wordpress": "running"}
    assert tree_snapshot(files) == current_files
    assert not app_is_locked(wordpress.project)
    own = "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bs\\_%'"
    assert mariadb_sql(wordpress, own).strip() == "0"  # the restore's databases dropped


def test_a_slow_engine_when_resuming_still_resumes_the_others(
    small_app: Callable[..., ComposeStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first unpause times out (ReadTimeout, not an APIError): the other
    container is still unpaused, the backup's error names the one left
    paused and how to bring it back, and recovery then brings it back."""
    stack = small_app("web", "worker")
    flaky = FlakyEngine()
    flaky.fail_once(lambda request: request.path_url.endswith("/unpause"))
    monkeypatch.setattr(backup_service, "connect", lambda _host: flaky.client)
    with pytest.raises(CommandError):
        call_command("backup", "create", stack.project, "--consistency", "pause")
    [failed_request] = flaky.failures
    stuck = next(c for c in stack.containers.values() if f"/containers/{c.id}/" in failed_request)
    other = next(c for c in stack.containers.values() if c is not stuck)
    snapshot = Snapshot.objects.get(app_id=stack.project)
    assert snapshot.status == Snapshot.Status.FAILED
    assert f"could not bring back {stuck.name} (ReadTimeout" in snapshot.error
    assert f"left paused; run `docker unpause {stuck.name}`" in snapshot.error
    assert other.name not in snapshot.error
    assert statuses(stack) == {
        next(k for k, c in stack.containers.items() if c is stuck): "paused",
        next(k for k, c in stack.containers.items() if c is other): "running",
    }
    # The run is not over while a container is left paused: this host's
    # recovery takes it and unpauses what the backup paused.
    run = Run.objects.get(snapshot=snapshot)
    assert run.state == Run.State.RUNNING and run.phase == "awaiting recovery"
    assert app_is_locked(stack.project)
    monkeypatch.undo()
    recovery = cleanup()["recovered_runs"][str(run.pk)]
    assert f"unpaused {stuck.name}" in recovery["done"], recovery
    assert set(statuses(stack).values()) == {"running"}
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "put the app back" in run.error
    assert not app_is_locked(stack.project)


def test_engine_gone_after_a_stop_mode_backup_names_every_container_left_stopped(
    small_app: Callable[..., ComposeStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = small_app("web", "worker")
    flaky = FlakyEngine()
    flaky.break_at(request_to("POST", "/start"))
    monkeypatch.setattr(backup_service, "connect", lambda _host: flaky.client)
    with pytest.raises(CommandError):
        call_command("backup", "create", stack.project, "--consistency", "stop")
    flaky.repair()
    # Each container's start was tried (and its state checked, failing too).
    assert sum(1 for f in flaky.failures if f.split("?")[0].endswith("/start")) == 2
    snapshot = Snapshot.objects.get(app_id=stack.project)
    assert snapshot.status == Snapshot.Status.FAILED and "left stopped" in snapshot.error
    for container in stack.containers.values():
        assert f"{container.name} (ConnectionError" in snapshot.error
    assert set(statuses(stack).values()) == {"exited"}


@pytest.fixture
def append_only(docker_client: docker.DockerClient) -> Iterator[list[Path]]:
    """Files given the append-only attribute: they cannot be deleted. The
    attribute is removed at the end, wherever the files are by then."""
    files: list[Path] = []
    yield files
    for path in files:
        for moved in path.parent.parent.glob(f"*/{path.name}"):
            subprocess.run(["chattr", "-a", str(moved)], check=False)


def test_old_data_that_cannot_be_deleted_is_left_for_the_next_cleanup(
    small_app: Callable[..., ComposeStack], docker_client: docker.DockerClient,
    append_only: list[Path], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The old data is deleted in the background once the app is up (issue
    15): a file that cannot be deleted leaves it renamed aside, logged, for
    the next cleanup; the restore has succeeded all the same."""
    stack = small_app("web")
    root = data_dir(docker_client, stack)
    backup = backup_now(stack.project)
    (root / "marker.txt").write_text("after the backup")
    audit = root / "audit.log"
    audit.write_text("appended to, never deleted\n")
    subprocess.run(["chattr", "+a", str(audit)], check=True)
    append_only.append(audit)
    assert "a" in subprocess.run(["lsattr", str(audit)], capture_output=True, text=True,
                                 check=True).stdout.split()[0]  # fmt: skip

    run = restore_now(stack.project, backup.backup_id, "--no-safety-backup")
    assert run.state == Run.State.COMPLETED, run.error
    assert run.result["warnings"] == []
    assert wait_for_drops(60)
    # The app runs on the restored data; the old data waits beside it.
    assert statuses(stack) == {"web": "running"}
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "before"
    trash = [p.name for p in root.parent.iterdir() if p.name.startswith(TRASH_PREFIX)]
    assert len(trash) == 1
    assert any(trash[0] in r.getMessage() and "PermissionError" in r.getMessage()
               for r in caplog.records)  # fmt: skip

    # The next restore is not refused: the trash is decided, not pending.
    again = restore_now(stack.project, backup.backup_id, "--no-safety-backup")
    assert again.state == Run.State.COMPLETED, again.error
    assert wait_for_drops(60)
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(TRASH_PREFIX)] == trash

    # Once the file can be deleted, the next cleanup finishes what was left.
    subprocess.run(["chattr", "-a", str(root.parent / trash[0] / "audit.log")], check=True)
    assert str(root.parent / trash[0]) in cleanup()["swept_old_data"]
    assert sorted(os.listdir(root.parent)) == ["_data"]
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "before"


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Directories given the immutable attribute (nothing in them can be
    renamed); removed at the end."""
    dirs: list[Path] = []
    yield dirs
    for path in dirs:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_old_data_that_cannot_even_be_given_up_is_reported(
    small_app: Callable[..., ComposeStack], docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch, immutable: list[Path],
) -> None:  # fmt: skip
    """The volume's directory becomes immutable when the restore starts the
    app: renaming the old data to trash (the decision) fails. The restore
    has succeeded all the same, and its warning says where the old data is
    and that the next restore refuses until it is removed."""
    stack = small_app("web")
    root = data_dir(docker_client, stack)
    backup = backup_now(stack.project)
    (root / "marker.txt").write_text("after the backup")

    def freeze() -> None:
        subprocess.run(["chattr", "+i", str(root.parent)], check=True)
        immutable.append(root.parent)

    flaky = FlakyEngine()
    flaky.before(request_to("POST", f"/containers/{stack.container('web').id}/start"), freeze)
    monkeypatch.setattr(restore_service, "connect", lambda _host: flaky.client)
    run = restore_now(stack.project, backup.backup_id, "--no-safety-backup")
    assert run.state == Run.State.COMPLETED, run.error
    [warning] = run.result["warnings"]
    [old] = [p for p in root.parent.iterdir() if p.name.startswith(OLD_PREFIX)]
    assert f"volume {stack.volume('data')}: restored and in use, but its previous data" in warning
    assert "could not be given up (PermissionError" in warning and str(old) in warning
    assert "the next restore of this app refuse" in warning
    assert statuses(stack) == {"web": "running"}
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "before"
    assert (old / "marker.txt").read_text() == "after the backup"
