"""SIGTERM ends a backup or a restore the way a failure does, in the command
line and in a real Celery worker: paused or stopped containers are brought
back, a restore is rolled back, the run is failed with the reason, and the
process exits soon after (well within a container's stop grace period)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from engine.restore.volume_swap import STAGING_PREFIX
from snapshots.locks import app_is_locked
from snapshots.models import Run, Snapshot
from snapshots.services.restore import RestoreOptions
from snapshots.services.snapshots import start_restore
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now
from tests.conftest import REPO_ROOT, _wait_for_worker, manage_py, subprocess_env
from tests.engine.treegen import snapshot as tree_snapshot
from tests.small_app import data_dir, deploy_small_app, remove_small_app, statuses
from tests.stacks import ComposeStack

pytestmark = RESTORE_TEST_MARKS

# zstd level 19 on one thread compresses random data at ~3 MB/s here: reading
# a 40 MB volume takes long enough to be stopped in the middle.
SLOW_BACKUP = {"BACKUP_COMPRESSION_LEVEL": "19", "BACKUP_COMPRESSION_THREADS": "1"}
GRACE_SECONDS = 60  # the process must be gone well before a stop grace period


@pytest.fixture
def small_app(
    docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[Callable[..., ComposeStack]]:
    stacks: list[ComposeStack] = []

    def deploy(data_mb: int) -> ComposeStack:
        stacks.append(deploy_small_app(docker_client, tmp_path, ("web",), data_mb))
        return stacks[-1]

    yield deploy
    for stack in stacks:
        remove_small_app(stack)


def _wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process ended first ({proc.returncode})")
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def _extracting(volume_dir: Path) -> bool:
    """A restore is writing into a staging dir beside the volume's data."""
    return any(any(stage.iterdir()) for stage in volume_dir.glob(f"{STAGING_PREFIX}*"))


def _stop(proc: subprocess.Popen[Any]) -> tuple[float, str]:
    """SIGTERM; returns how long the process took to exit, and its stderr."""
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=GRACE_SECONDS)
    return time.monotonic() - sent, err or ""


@pytest.mark.parametrize(("mode", "quiesced"), [("pause", "paused"), ("stop", "exited")])
def test_sigterm_while_the_volumes_are_read_brings_the_app_back(
    mode: str, quiesced: str, small_app: Callable[..., ComposeStack], settings: Any
) -> None:
    stack = small_app(data_mb=40)
    proc = manage_py("backup", "create", stack.project, "--consistency", mode,
                     env=subprocess_env() | SLOW_BACKUP)  # fmt: skip

    def reading() -> bool:
        phases = Run.objects.filter(app_id=stack.project).values_list("phase", flat=True)
        return statuses(stack)["web"] == quiesced and list(phases) == ["archiving"]

    _wait_for(reading, f"the app {quiesced} and its volume being read", proc)
    time.sleep(1)  # well into the volume's data
    took, err = _stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "create stopped by SIGTERM" in err
    assert statuses(stack) == {"web": "running"}
    snapshot = Snapshot.objects.get(app_id=stack.project)
    assert snapshot.status == Snapshot.Status.FAILED and snapshot.error == "stopped by SIGTERM"
    run = Run.objects.get(snapshot=snapshot)
    assert run.state == Run.State.FAILED and run.error == "stopped by SIGTERM"
    assert not app_is_locked(stack.project)
    assert not list(Path(settings.BACKUP_ROOT).rglob("*backup_*")), "no archive, not even partial"
    assert took < 15


def test_sigterm_during_extraction_leaves_the_app_on_its_old_data(
    small_app: Callable[..., ComposeStack], docker_client: docker.DockerClient
) -> None:
    stack = small_app(data_mb=400)
    root = data_dir(docker_client, stack)
    backup = backup_now(stack.project)
    (root / "marker.txt").write_text("current")
    current = tree_snapshot(root)
    proc = manage_py("backup", "restore", stack.project, backup.backup_id, "--no-safety-backup")
    _wait_for(lambda: _extracting(root.parent), "the extraction", proc)
    took, err = _stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    run = Run.objects.get(operation=Run.Operation.RESTORE, app_id=stack.project)
    assert run.state == Run.State.FAILED
    # Extraction runs with the app still up (issue 15): nothing to roll back.
    assert run.error == "stopped by SIGTERM; nothing was changed", run.error
    assert run.result["rolled_back"] == [] and run.result["downtime_seconds"] == 0.0
    assert run.result["not_rolled_back"] == []
    assert "restore stopped by SIGTERM" in err
    assert statuses(stack) == {"web": "running"}
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "current"
    assert tree_snapshot(root) == current
    assert sorted(p.name for p in root.parent.iterdir()) == ["_data"]
    assert not app_is_locked(stack.project)
    assert took < 15


@pytest.fixture
def prefork_worker(
    settings: Any, celery_queue: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real `celery worker` with the production pool (prefork), one child."""
    settings.BACKUP_TASK_QUEUE = celery_queue
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backup_project", "worker",
             "-Q", celery_queue, "--pool", "prefork", "--concurrency", "1",
             "--loglevel", "INFO", "--hostname", f"{celery_queue}@%h"],
            cwd=REPO_ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_worker(celery_queue, proc, log_path)
        yield proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_to_a_worker_rolls_its_restore_back_before_it_exits(
    small_app: Callable[..., ComposeStack], docker_client: docker.DockerClient,
    prefork_worker: tuple[subprocess.Popen[bytes], Path],
) -> None:  # fmt: skip
    """`docker stop` of the worker: SIGTERM to its main process only. The
    main process passes it on to the pool process running the restore,
    which removes what it staged (the app never stopped) and fails the run,
    then the worker exits."""
    worker, log_path = prefork_worker
    stack = small_app(data_mb=400)
    root = data_dir(docker_client, stack)
    backup = backup_now(stack.project)
    (root / "marker.txt").write_text("current")
    current = tree_snapshot(root)
    no_safety = RestoreOptions(backup_before_restore=False)
    run = start_restore(stack.project, backup.backup_id, no_safety)
    _wait_for(lambda: _extracting(root.parent), "the extraction", worker)
    worker.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    worker.wait(timeout=GRACE_SECONDS)
    took = time.monotonic() - sent
    log = log_path.read_text(errors="replace")
    # Read once the worker is gone: the run was failed before it exited.
    run.refresh_from_db()
    assert run.state == Run.State.FAILED, log[-3000:]
    assert run.error == "stopped by SIGTERM; nothing was changed"  # staged with the app up
    assert run.result["rolled_back"] == [] and run.result["downtime_seconds"] == 0.0
    assert worker.returncode == 0 and took < 30, log[-3000:]
    assert "ending snapshots.restore_backup" in log
    assert statuses(stack) == {"web": "running"}
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "current"
    assert tree_snapshot(root) == current
    assert sorted(p.name for p in root.parent.iterdir()) == ["_data"]
    assert not app_is_locked(stack.project)


def test_sigterm_to_a_solo_worker_rolls_its_restore_back_before_it_exits(
    small_app: Callable[..., ComposeStack], docker_client: docker.DockerClient, settings: Any,
    celery_queue: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """The same with the task in the worker's main process (solo pool, as
    the tests' worker fixture runs it)."""
    settings.BACKUP_TASK_QUEUE = celery_queue
    worker = request.getfixturevalue("celery_worker")
    stack = small_app(data_mb=400)
    root = data_dir(docker_client, stack)
    backup = backup_now(stack.project)
    (root / "marker.txt").write_text("current")
    no_safety = RestoreOptions(backup_before_restore=False)
    run = start_restore(stack.project, backup.backup_id, no_safety)
    _wait_for(lambda: _extracting(root.parent), "the extraction", worker)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=GRACE_SECONDS)
    run.refresh_from_db()
    assert run.state == Run.State.FAILED
    assert run.error == "stopped by SIGTERM; nothing was changed"  # staged with the app up
    assert statuses(stack) == {"web": "running"}
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "current"
    assert sorted(p.name for p in root.parent.iterdir()) == ["_data"]
    assert os.path.exists(root / "marker.txt")
