"""Issue 15, points 1, 3 and 5, on real Docker stacks: a restore validates
and stages in one read while the app keeps serving, refuses a corrupt
archive with the app untouched, falls back to the old order where a second
copy does not fit beside the live data (a real small tmpfs), deletes the old
data off the critical path (a crash before that is cleaned up), and reports
its downtime beside its whole duration."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

import engine.restore.drop as drop
import engine.restore.staging as staging
from engine.restore.drop import wait_for_drops
from engine.restore.volume_swap import STAGING_PREFIX, TRASH_PREFIX
from snapshots.models import Run, Snapshot
from snapshots.services.api_keys import create_api_key
from snapshots.services.restore import RestoreOptions, request_restore, run_restore
from tests.backup_helpers import backup_now
from tests.small_app import data_dir, deploy_small_app, remove_small_app, statuses
from tests.stacks import ComposeStack
from tests.test_crash_recovery import (
    LEASE_SECONDS,
    app_state,
    assert_clean,
    prepare_restore,
    recover,
    run_killed,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fault_settings(settings: Any, tmp_path: Path) -> Any:
    """As in test_crash_recovery: a short lease, so a killed run is dead soon."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    settings.BACKUP_LEASE_SECONDS = LEASE_SECONDS
    return settings


def _restore(app_id: str, backup_id: str, **options: Any) -> Run:
    run = request_restore(app_id, backup_id, RestoreOptions(**options))
    return run_restore(str(run.pk))


def _started_at(stack: ComposeStack) -> dict[str, tuple[str, str]]:
    """Each container's status and Docker's record of when it last started."""
    seen = {}
    for name, container in stack.containers.items():
        container.reload()
        seen[name] = (container.status, container.attrs["State"]["StartedAt"])
    return seen


def _volume_dirs(client: docker.DockerClient, stack: ComposeStack) -> list[Path]:
    return [
        Path(client.volumes.get(name).attrs["Mountpoint"]).parent for name in stack.volume_names
    ]


def _leftovers(client: docker.DockerClient, stack: ComposeStack) -> list[str]:
    return [
        p.name
        for d in _volume_dirs(client, stack)
        for p in d.iterdir()
        if p.name.startswith((STAGING_PREFIX, TRASH_PREFIX)) or p.name.startswith("_data.old-")
    ]


@pytest.fixture
def watch_staging(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Callables run when the staging pass starts extracting (the real
    extraction follows: nothing is replaced)."""
    hooks: list[Callable[[], None]] = []
    real = staging.extract_volumes

    def extract_volumes(*args: Any, **kwargs: Any) -> Any:
        for hook in hooks:
            hook()
        return real(*args, **kwargs)

    monkeypatch.setattr(staging, "extract_volumes", extract_volumes)
    return hooks


def test_the_app_keeps_serving_while_the_archive_is_staged(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any,
    watch_staging: list[Callable[[], None]],
) -> None:  # fmt: skip
    _, new, backup_id = prepare_restore(wordpress, docker_client, rows=2_000)
    before = _started_at(wordpress)
    assert {status for status, _ in before.values()} == {"running"}
    during: list[dict[str, tuple[str, str]]] = []
    staged_dirs: list[list[str]] = []

    def at_extracting() -> None:
        during.append(_started_at(wordpress))
        staged_dirs.append(_leftovers(docker_client, wordpress))
        # The app still answers: it serves its files and its database.
        wordpress.exec("wordpress", ["cat", "/var/www/html/added-after-backup"])

    watch_staging.append(at_extracting)
    run = _restore(wordpress.project, backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    assert during == [before]  # running, never restarted, while staging
    assert staged_dirs and all(n.startswith(STAGING_PREFIX) for n in staged_dirs[0])
    assert len(staged_dirs[0]) == 1  # the files volume; the database comes from its dump
    assert app_state(wordpress, docker_client) == new
    result = run.result
    assert result["staged_while_running"] is True
    assert {"validate_and_stage", "safety_backup", "stop", "swap", "databases", "start",
            "check"} <= result["phases"].keys()  # fmt: skip
    assert "validate" not in result["phases"] and "extract" not in result["phases"]
    assert 0 < result["downtime_seconds"] < result["duration_seconds"]
    # Downtime is the stop, swap, databases and start, not the staging.
    down = sum(result["phases"][p] for p in ("stop", "swap", "databases", "start"))
    assert result["downtime_seconds"] == pytest.approx(down, abs=1.5)
    assert wait_for_drops(60)
    assert_clean(wordpress, docker_client, fault_settings)


def test_a_corrupt_archive_is_refused_in_the_staging_pass_with_the_app_untouched(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any,
    watch_staging: list[Callable[[], None]],
) -> None:  # fmt: skip
    old, _, backup_id = prepare_restore(wordpress, docker_client, rows=2_000)
    snapshot = Snapshot.objects.get(backup_id=backup_id)
    archive = Path(fault_settings.BACKUP_ROOT) / snapshot.storage_key
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01  # in the middle: the volume's files or the dump
    archive.write_bytes(bytes(data))
    before = _started_at(wordpress)
    staged: list[bool] = []
    watch_staging.append(lambda: staged.append(True))

    run = _restore(wordpress.project, backup_id)
    assert run.state == Run.State.FAILED
    assert "failed validation" in run.error and "nothing was changed" in run.error
    assert staged == [True]  # refused by the one pass, not by a separate read
    assert "validate_and_stage" in run.result["phases"]
    assert run.result["downtime_seconds"] == 0.0
    assert _started_at(wordpress) == before  # nothing stopped
    assert app_state(wordpress, docker_client) == old
    assert _leftovers(docker_client, wordpress) == []
    assert not Snapshot.objects.filter(purpose=Snapshot.Purpose.PRE_RESTORE).exists()
    assert_clean(wordpress, docker_client, fault_settings)


@pytest.fixture
def small_fs_app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    """A small app whose volume lives on a 64 MiB tmpfs mounted over the
    volume's directory: the live data fits, a second copy plus the running
    app's headroom does not."""
    stack = deploy_small_app(docker_client, tmp_path)
    root = data_dir(docker_client, stack)
    mounted = root.parent
    web = stack.containers["web"]
    try:
        web.stop(timeout=1)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mounted)],
                       check=True)  # fmt: skip
        root.mkdir()
        (root / "marker.txt").write_text("on the tmpfs")
        (root / "blob.bin").write_bytes(b"x" * (8 << 20))
        web.start()
        yield stack
    finally:
        web.reload()
        if web.status == "running":
            web.stop(timeout=1)
        subprocess.run(["umount", "-l", str(mounted)], check=False)
        remove_small_app(stack)


def test_no_room_for_a_second_copy_falls_back_to_stopping_first(
    small_fs_app: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any,
    watch_staging: list[Callable[[], None]],
) -> None:  # fmt: skip
    stack = small_fs_app
    root = data_dir(docker_client, stack)
    # The container sees the tmpfs as its volume (Docker mounts what is there now).
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "on the tmpfs"
    backup = backup_now(stack.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    (root / "marker.txt").write_text("after the backup")
    staged: list[bool] = []
    watch_staging.append(lambda: staged.append(True))

    run = _restore(stack.project, backup.backup_id, backup_before_restore=False)
    assert run.state == Run.State.COMPLETED, run.error
    assert staged == []  # the one pass was not taken
    result = run.result
    assert result["staged_while_running"] is False
    assert "free" in result["staged_while_running_why_not"]
    assert any("not staged while the app ran" in w for w in result["warnings"])
    assert {"validate", "stop", "extract", "swap", "start"} <= result["phases"].keys()
    assert "validate_and_stage" not in result["phases"]
    # Extracted while the app was down: downtime covers the extraction.
    assert result["downtime_seconds"] >= result["phases"]["extract"]
    assert stack.exec("web", ["cat", "/data/marker.txt"]) == "on the tmpfs"
    assert statuses(stack) == {"web": "running"}
    assert wait_for_drops(60)
    assert sorted(p.name for p in root.parent.iterdir()) == ["_data"]


def test_downtime_is_in_the_cli_output_and_the_api(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any
) -> None:
    _, new, backup_id = prepare_restore(wordpress, docker_client, rows=500)
    out = io.StringIO()
    call_command("backup", "restore", wordpress.project, backup_id, stdout=out)
    printed = json.loads(out.getvalue())
    assert 0 < printed["downtime_seconds"] < printed["duration_seconds"]
    assert printed["phases"]["validate_and_stage"] > 0
    run = Run.objects.filter(operation="restore", app_id=wordpress.project).latest("created_at")
    assert run.result["downtime_seconds"] == printed["downtime_seconds"]
    assert app_state(wordpress, docker_client) == new
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=create_api_key("tests", scope="admin")[1])
    answer = api.get(f"/api/v1/backup/tasks/{run.pk}")
    assert answer.status_code == 200
    served = answer.json()["data"]["result"]
    assert served["downtime_seconds"] == printed["downtime_seconds"]
    assert served["phases"] == printed["phases"]
    assert wait_for_drops(60)


def test_the_old_data_is_deleted_after_the_restore_has_ended(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The deletion is held back until the run has ended: the run completes
    with the old data still there, renamed aside; then it goes."""
    _, new, backup_id = prepare_restore(wordpress, docker_client, rows=500)
    release = threading.Event()
    real_remove = drop.remove_tree

    def held_remove(path: Path) -> None:
        assert release.wait(120)
        real_remove(path)

    monkeypatch.setattr(drop, "remove_tree", held_remove)
    run = _restore(wordpress.project, backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    assert app_state(wordpress, docker_client) == new
    waiting = _leftovers(docker_client, wordpress)
    assert len(waiting) == 1 and waiting[0].startswith(TRASH_PREFIX)
    release.set()
    assert wait_for_drops(60)
    assert _leftovers(docker_client, wordpress) == []


def test_a_crash_after_the_start_before_the_drop_is_cleaned_up(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any
) -> None:
    _, new, backup_id = prepare_restore(wordpress, docker_client)
    run_killed("call:engine.restore.settle:drop_in_background", "restore", wordpress.project,
               backup_id)  # fmt: skip
    killed_at = time.monotonic()
    assert any(n.startswith(TRASH_PREFIX) for n in _leftovers(docker_client, wordpress))
    run, _ = recover(wordpress.project, killed_at)
    assert run.result["recovery"]["failed"] == [], run.result["recovery"]
    assert app_state(wordpress, docker_client) == new  # committed: the restore is kept
    assert_clean(wordpress, docker_client, fault_settings)


def test_old_data_a_finished_run_left_is_swept_by_cleanup(
    small_app_stack: ComposeStack, docker_client: docker.DockerClient
) -> None:
    """A process that exited before its drop finished (a CLI killed after
    printing the result) leaves renamed-aside old data of a completed run:
    the next cleanup deletes it, and only it."""
    from snapshots.tasks import cleanup

    root = data_dir(docker_client, small_app_stack)
    trash = root.parent / f"{TRASH_PREFIX}0123456789abcdef"
    (trash / "deep" / "er").mkdir(parents=True)
    (trash / "deep" / "er" / "file").write_text("old")
    (trash / "link").symlink_to(root / "marker.txt")
    swept = cleanup()["swept_old_data"]
    assert str(trash) in swept
    assert sorted(p.name for p in root.parent.iterdir()) == ["_data"]
    assert (root / "marker.txt").read_text() == "before"  # the symlink was not followed


def test_a_crash_while_staging_leaves_the_app_running_and_cleanup_removes_the_staging(
    wordpress: ComposeStack, docker_client: docker.DockerClient, fault_settings: Any
) -> None:
    old, _, backup_id = prepare_restore(wordpress, docker_client, rows=2_000)
    before = _started_at(wordpress)
    run_killed("call:engine.restore.staging:extract_volumes", "restore", wordpress.project,
               backup_id)  # fmt: skip
    killed_at = time.monotonic()
    assert _started_at(wordpress) == before  # never stopped
    assert any(n.startswith(STAGING_PREFIX) for n in _leftovers(docker_client, wordpress))
    run, _ = recover(wordpress.project, killed_at)
    assert run.result["recovery"]["failed"] == [], run.result["recovery"]
    assert any("staging dir" in done for done in run.result["recovery"]["done"])
    assert _started_at(wordpress) == before
    assert app_state(wordpress, docker_client) == old
    assert_clean(wordpress, docker_client, fault_settings)


@pytest.fixture
def small_app_stack(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    stack = deploy_small_app(docker_client, tmp_path)
    yield stack
    remove_small_app(stack)
