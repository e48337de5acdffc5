"""SIGKILL at every step of a restore and of a pause/stop backup, then this
host's recovery: the app runs again on either its old data or the restored
data, whole (files and rows of the same side, never a mix), with no lease,
spool, staging or partial file left. The kill is real (tests/faults/kill_at.py
runs `manage.py backup ...` in a process that SIGKILLs itself at the step);
recovery runs once the dead run's lease has expired, as a worker's timer
would run it. Each case prints its recovery time (run with -s)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from backup_project.celery import app as celery_app
from snapshots.models import AppBackupPolicy, AppLock, Run, Snapshot
from snapshots.services.backup import request_backup, run_backup
from snapshots.services.restore import RestoreOptions, request_restore
from snapshots.services.snapshots import RESTORE_TASK
from snapshots.tasks import cleanup
from storage.base import TEMP_MARKER
from tests.conftest import REPO_ROOT, subprocess_env
from tests.engine.treegen import snapshot as tree_snapshot
from tests.realistic_data import load_rows, mariadb_sql, table_digest
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LEASE_SECONDS = 4
ROWS = 8_000  # a 5 MB dump: its restore takes a second or two


@pytest.fixture
def fault_settings(settings: Any, tmp_path: Path) -> Any:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    settings.BACKUP_LEASE_SECONDS = LEASE_SECONDS
    return settings


def run_killed(
    fault: str, *command: str, namespace: bool = False
) -> subprocess.CompletedProcess[str]:
    """NAMESPACE: as in a worker container, in a PID and UTS namespace of its
    own: the killed process is PID 2 under a hostname that then vanishes,
    so neither its PID (alive on the host) nor its hostname tells anything."""
    argv = [sys.executable, "-m", "tests.faults.kill_at", fault, "backup", *command]
    if namespace:
        inner = "hostname worker-container-gone && " + " ".join(shlex.quote(a) for a in argv)
        argv = ["unshare", "--pid", "--uts", "--fork", "--mount-proc", "sh", "-c", inner]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    killed = done.returncode in (-9, 128 + 9)  # directly, or as the shell's child
    assert killed, f"not killed at {fault}: {done.returncode}\n{done.stderr}"
    return done


def recover(app_id: str, killed_at: float, run_id: Any = None) -> tuple[Run, float]:
    """Call this host's recovery as its worker's timer does, until the dead
    run (RUN_ID, or the app's newest) is recovered; the seconds from the kill
    to the app being back."""
    recovered = Run.objects.filter(
        app_id=app_id, state=Run.State.FAILED, result__has_key="recovery"
    )
    if run_id is not None:
        recovered = recovered.filter(pk=run_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = cleanup()
        if recovered.exists() if run_id is not None else result["recovered_runs"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the dead run was never recovered")
    took = time.monotonic() - killed_at
    return recovered.latest("created_at"), took


def app_state(stack: ComposeStack, client: docker.DockerClient) -> tuple[str, Any]:
    files = Path(client.volumes.get(stack.volume("wordpress")).attrs["Mountpoint"])
    return table_digest(stack, "notes"), tree_snapshot(files)


def assert_clean(stack: ComposeStack, client: docker.DockerClient, settings: Any) -> None:
    for service in ("mariadb", "wordpress"):
        container = stack.container(service)
        container.reload()
        assert container.status == "running", service
    assert not AppLock.objects.held().filter(app_id=stack.project).exists()
    spool = Path(settings.BACKUP_SPOOL_DIR)
    assert not spool.exists() or list(spool.iterdir()) == []
    for key in ("wordpress", "mysql_data"):
        volume_dir = Path(client.volumes.get(stack.volume(key)).attrs["Mountpoint"]).parent
        assert sorted(p.name for p in volume_dir.iterdir()) == ["_data"], volume_dir
    backups = Path(settings.BACKUP_ROOT) / stack.project
    if backups.exists():
        assert [p.name for p in backups.iterdir() if TEMP_MARKER in p.name] == []


# step to kill at -> which data the app must run on after recovery
RESTORE_CASES = [
    ("guard:stop", "old"),  # nothing changed yet
    ("guard:swap", "old"),  # stopped, staged, no swap
    ("guard:database", "old"),  # volumes swapped
    ("guard:database+0.5", "old"),  # in the middle of the database restore
    ("guard:start", "old"),  # volumes and database restored, app still stopped
    ("guard:commit", "new"),  # app up on the restored data: the restore is kept
]


def prepare_restore(
    stack: ComposeStack, client: docker.DockerClient, rows: int = ROWS
) -> tuple[Any, Any, str]:
    """A backup ("new" data), then changes ("old" data, what runs now)."""
    load_rows(stack, "notes", rows=rows, row_bytes=600)
    backup = run_backup(str(request_backup(stack.project).pk))
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    new = app_state(stack, client)
    mariadb_sql(stack, "UPDATE notes SET body = 'changed after the backup' WHERE id <= 4000")
    stack.exec("wordpress", ["sh", "-c", "echo later > /var/www/html/added-after-backup"])
    old = app_state(stack, client)
    assert old != new
    return old, new, backup.backup_id


@pytest.mark.parametrize(("fault", "expected"), RESTORE_CASES, ids=[c[0] for c in RESTORE_CASES])
def test_sigkill_during_restore_then_recovery(
    fault: str, expected: str, wordpress: ComposeStack, docker_client: docker.DockerClient,
    fault_settings: Any,
) -> None:  # fmt: skip
    stack = wordpress
    old, new, backup_id = prepare_restore(stack, docker_client)
    run_killed(fault, "restore", stack.project, backup_id)
    killed_at = time.monotonic()
    run, took = recover(stack.project, killed_at)

    assert run.operation == Run.Operation.RESTORE and "died" in run.error
    assert run.result["recovery"]["failed"] == [], run.result["recovery"]
    assert app_state(stack, docker_client) == (old if expected == "old" else new)
    assert_clean(stack, docker_client, fault_settings)
    print(f"\n[restore {fault}] -> {expected} data, recovered {took:.1f} s after the kill: "
          f"{run.result['recovery']['done']}")  # fmt: skip


@pytest.mark.parametrize("mode", ["pause", "stop"])
def test_sigkill_during_quiesced_backup_then_recovery(
    mode: str, wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any
) -> None:
    stack = wordpress
    AppBackupPolicy.objects.create(app_id=stack.project, include_databases=False)
    load_rows(stack, "notes", rows=100)
    before = app_state(stack, docker_client)
    # Killed while reading the volumes: the containers are paused (stopped).
    run_killed(
        "call:engine.archive.writer:ArchiveWriter.add_volume",
        "create", stack.project, "--consistency", mode,
    )  # fmt: skip
    killed_at = time.monotonic()
    for service in ("mariadb", "wordpress"):
        container = stack.container(service)
        container.reload()
        assert container.status == ("paused" if mode == "pause" else "exited"), service
    run, took = recover(stack.project, killed_at)
    assert run.operation == Run.Operation.BACKUP
    snapshot = Snapshot.objects.get(pk=run.snapshot_id)
    assert snapshot.status == Snapshot.Status.FAILED and "died" in snapshot.error
    assert app_state(stack, docker_client) == before
    assert_clean(stack, docker_client, fault_settings)
    print(f"\n[backup {mode}, killed reading volumes] -> app running, recovered {took:.1f} s "
          f"after the kill: {run.result['recovery']['done']}")  # fmt: skip


def test_worker_in_its_own_pid_namespace_killed_mid_restore_is_recovered(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any
) -> None:
    """What `docker restart` / a recreate of a worker container does: the dead
    run's worker was PID 2 of a namespace under a hostname gone since. The
    old recovery trusted both; the lease's expiry is all that counts now."""
    old, _, backup_id = prepare_restore(wordpress, docker_client)
    run_killed("guard:database", "restore", wordpress.project, backup_id, namespace=True)
    dead = Run.objects.get(app_id=wordpress.project, operation=Run.Operation.RESTORE)
    assert dead.worker.startswith("worker-container-gone:"), dead.worker
    run, took = recover(wordpress.project, time.monotonic())
    assert run.pk == dead.pk and run.result["recovery"]["failed"] == []
    assert app_state(wordpress, docker_client) == old
    assert_clean(wordpress, docker_client, fault_settings)
    print(f"\n[restore in a PID namespace, killed at database] -> old data, {took:.1f} s")


def test_hard_time_limit_mid_restore_is_recovered_by_the_timer(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any,
    celery_queue: str, tmp_path: Path,
) -> None:  # fmt: skip
    """A Celery hard time limit kills only the pool's child: no exception, no
    `finally`, and no worker start follows. The restore is killed wherever
    it is at 3 s; the periodic recovery (here: its task, called as beat
    would) finds the run and puts the app back on one side, whole."""
    # A restore of ~10 s: the limit strikes well inside it, even on a loaded machine.
    old, new, backup_id = prepare_restore(wordpress, docker_client, rows=25_000)
    fault_settings.BACKUP_TASK_QUEUE = celery_queue
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backup_project", "worker", "-Q", celery_queue,
         "--pool", "prefork", "--concurrency", "1",
         "--hostname", f"limit-{celery_queue}@%h", "--loglevel", "INFO"],
        cwd=REPO_ROOT, env=subprocess_env() | {"TEST_CELERY_TASK_TIME_LIMIT": "3"}, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        run = request_restore(wordpress.project, backup_id, RestoreOptions())
        # The message carries the sender's time limits (Celery's send_task
        # takes them from the sender's task registry), so this test's own
        # 300/330 s would override the worker's: send 3 s, hard only.
        celery_app.send_task(
            RESTORE_TASK, args=[str(run.pk)], task_id=str(run.pk), queue=celery_queue,
            time_limit=3, soft_time_limit=None,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while b"TimeLimitExceeded" not in (tmp_path / "worker.log").read_bytes():
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        killed_at = time.monotonic()
        run.refresh_from_db()
        # billiard sends SIGTERM and SIGKILLs 0.1 s later: where the restore
        # can end cleanly on SIGTERM within that (inside the safety backup, say)
        # it is failed already; otherwise the killed child left it running.
        ended_on_sigterm = run.state == Run.State.FAILED and "recovery" not in (run.result or {})
        if not ended_on_sigterm:
            assert run.state == Run.State.RUNNING, run.state
            # Killed inside the safety backup, that backup's own run is
            # recovered too (and is newer): ask for the restore's.
            recovered, took = recover(wordpress.project, killed_at, run_id=run.pk)
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
    if not ended_on_sigterm:
        assert recovered.pk == run.pk and recovered.result["recovery"]["failed"] == []
    assert app_state(wordpress, docker_client) in (old, new)
    assert_clean(wordpress, docker_client, fault_settings)
    how = "ended on SIGTERM" if ended_on_sigterm else f"recovered in {took:.1f} s"
    data = "old" if app_state(wordpress, docker_client) == old else "new"
    print(f"\n[restore, hard time limit at 3 s] -> {data} data, {how}")
