"""A restore never loses data it was not asked to replace (issue 19, points
1, 2, 3 and --no-stop), on real stacks: real MariaDB, real containers,
real volumes, the real CLI."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from engine.archive.source import open_tar_source
from engine.discovery import get_app
from engine.recovery import RecoveryReport, bring_back
from engine.restore.database_volumes import DATABASE_VOLUMES_KEY
from engine.restore.plan import make_plan
from snapshots.models import Run, Snapshot
from snapshots.storage_locations import get_storage
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now, restore_now
from tests.engine.treegen import snapshot as tree_snapshot
from tests.images import APP_IMAGE
from tests.realistic_data import load_rows, mariadb_sql
from tests.stacks import TEST_LABEL, ComposeStack

pytestmark = RESTORE_TEST_MARKS

# Ends on SIGTERM at once, as a real server does.
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]


@pytest.fixture
def extra_containers(docker_client: docker.DockerClient) -> Iterator[list[Container]]:
    """Containers a test starts beside a stack; removed after it, only those."""
    made: list[Container] = []
    yield made
    for container in made:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=False)


def _mountpoint(client: docker.DockerClient, volume: str) -> Path:
    return Path(client.volumes.get(volume).attrs["Mountpoint"])


def _tree_digest(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """relpath -> (mode, uid, size, sha256) of every entry: a database's
    files are too large to hold as bytes, their digests say the same."""
    found: dict[str, tuple[int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            digest = ""
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_size, digest)
    return found


def _member(snapshot: Snapshot, name: str) -> bytes | None:
    """The bytes of member NAME of SNAPSHOT's archive (None if absent)."""
    source = open_tar_source(
        get_storage(snapshot.storage_location), snapshot.storage_key,
        compression=snapshot.compression, encrypted=False,  # type: ignore[arg-type]
    )  # fmt: skip
    with source as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.name == name:
                extracted = tar.extractfile(member)
                return extracted.read() if extracted is not None else None
    return None


def _idle_container(
    client: docker.DockerClient, name: str, volume: str, labels: dict[str, str]
) -> Container:
    container = client.containers.create(
        APP_IMAGE, command=IDLE, name=name, labels={TEST_LABEL: "1", **labels},
        volumes={volume: {"bind": "/data", "mode": "rw"}},
    )  # fmt: skip
    container.start()
    return container


def _cat(container: Container, path: str) -> str:
    result = container.exec_run(["cat", path])
    assert result.exit_code == 0, result.output.decode()[-500:]
    return result.output.decode()


# -- Point 1 -----------------------------------------------------------------


def test_safety_backup_is_taken_when_the_containers_are_gone_but_the_volumes_hold_data(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    backup = backup_now(wordpress.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    for container in wordpress.containers.values():
        container.remove(force=True)  # `docker rm -f`: only the volumes are left
    files = _mountpoint(docker_client, wordpress.volume("wordpress"))
    (files / "written-after-the-backup.txt").write_text("only copy of this\n")
    run = restore_now(wordpress.project, backup.backup_id, "--no-database")
    assert run.state == Run.State.COMPLETED, run.error
    assert not (files / "written-after-the-backup.txt").exists()  # restored as backed up
    safety_id = run.result["safety_backup_id"]
    assert safety_id is not None
    safety = Snapshot.objects.get(backup_id=safety_id)
    assert safety.purpose == Snapshot.Purpose.PRE_RESTORE
    assert safety.status == Snapshot.Status.COMPLETED
    member = f"volumes/{wordpress.volume('wordpress')}/written-after-the-backup.txt"
    assert _member(safety, member) == b"only copy of this\n"


# -- Point 2 -----------------------------------------------------------------


def test_no_database_leaves_the_database_volume_when_its_container_is_gone(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    load_rows(wordpress, "entries", 1000, row_bytes=200)
    backup = backup_now(wordpress.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    mariadb_sql(wordpress, "INSERT INTO entries VALUES (1001, 'after the backup')")
    wordpress.container("mariadb").remove(force=True)
    db_volume = wordpress.volume("mysql_data")
    data = _mountpoint(docker_client, db_volume)
    before = _tree_digest(data)
    run = restore_now(wordpress.project, backup.backup_id, "--no-database")
    assert run.state == Run.State.COMPLETED, run.error
    assert _tree_digest(data) == before  # not a byte changed
    assert db_volume not in run.result["restored_volume_names"]
    assert "left as it is" in run.result["skipped_volumes"][db_volume]
    assert run.result["restored_volume_names"] == [wordpress.volume("wordpress")]
    # An archive from before backup.json recorded database volumes: the
    # data directory on disk (ibdata1, mysql/...) says it, too.
    app = get_app(docker_client, wordpress.project)
    backup_json = {
        "volumes": [{"name": v, "labels": {}} for v in (db_volume, wordpress.volume("wordpress"))],
        "containers": [], "databases": [],
    }  # fmt: skip
    assert DATABASE_VOLUMES_KEY not in backup_json
    plan = make_plan(docker_client, app, backup_json, restore_database=False)
    assert plan.raw_volumes == [wordpress.volume("wordpress")]
    assert plan.skipped_volumes[db_volume].startswith(("holds a MariaDB", "holds a MySQL"))


# -- Point 3 -----------------------------------------------------------------


def test_restore_refuses_while_another_apps_container_mounts_the_volume(
    wordpress: ComposeStack, docker_client: docker.DockerClient, extra_containers: list[Container]
) -> None:
    backup = backup_now(wordpress.project)
    volume = wordpress.volume("wordpress")
    files = _mountpoint(docker_client, volume)
    (files / "index.php").write_text("<?php // current\n")
    other_project = f"{wordpress.project}x"
    other = _idle_container(
        docker_client, f"{other_project}-reader-1", volume,
        {"com.docker.compose.project": other_project, "com.docker.compose.service": "reader"},
    )  # fmt: skip
    extra_containers.append(other)
    before = tree_snapshot(files)
    run = restore_now(wordpress.project, backup.backup_id)
    assert run.state == Run.State.FAILED
    assert other.name in run.error and f"app {other_project}" in run.error
    assert "nothing was changed" in run.error
    assert tree_snapshot(files) == before
    assert not Snapshot.objects.filter(purpose=Snapshot.Purpose.PRE_RESTORE).exists()
    other.reload()
    assert other.status == "running"
    assert _cat(other, "/data/index.php") == "<?php // current\n"  # its mount is intact
    for container in wordpress.containers.values():
        container.reload()
        assert container.status == "running"


def test_a_container_that_mounts_the_volume_during_the_restore_makes_it_roll_back(
    wordpress: ComposeStack,
    docker_client: docker.DockerClient,
    extra_containers: list[Container],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checked again just before the swap: a container of another app that
    started meanwhile (here: right after the safety backup, started from
    the test in-process) makes the restore fail, roll back, swap nothing."""
    import snapshots.services.restore as restore_service

    backup = backup_now(wordpress.project)
    volume = wordpress.volume("wordpress")
    files = _mountpoint(docker_client, volume)
    (files / "index.php").write_text("<?php // current\n")
    before = tree_snapshot(files)
    real_safety = restore_service.take_safety_backup

    def safety_then_a_reader(*args, **kwargs):  # type: ignore[no-untyped-def]
        safety = real_safety(*args, **kwargs)
        extra_containers.append(
            _idle_container(docker_client, f"{wordpress.project}y-late-1", volume,
                            {"com.docker.compose.project": f"{wordpress.project}y"})
        )  # fmt: skip
        return safety

    monkeypatch.setattr(restore_service, "take_safety_backup", safety_then_a_reader)
    run = restore_now(wordpress.project, backup.backup_id)
    assert run.state == Run.State.FAILED
    assert f"{wordpress.project}y-late-1" in run.error and "nothing was swapped" in run.error
    assert tree_snapshot(files) == before
    assert _cat(extra_containers[0], "/data/index.php") == "<?php // current\n"
    for container in wordpress.containers.values():
        container.reload()
        assert container.status == "running"


def test_paused_container_of_the_app_is_stopped_restored_and_paused_again(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    files = _mountpoint(docker_client, wordpress.volume("wordpress"))
    original = (files / "index.php").read_text()
    backup = backup_now(wordpress.project)
    (files / "index.php").write_text("<?php // vandalised\n")
    app_container = wordpress.container("wordpress")
    app_container.pause()
    run = restore_now(wordpress.project, backup.backup_id)
    assert run.state == Run.State.COMPLETED, run.error
    assert (files / "index.php").read_text() == original
    app_container.reload()
    assert app_container.status == "paused"  # as the operator left it
    app_container.unpause()
    # The container sees the restored data, not the old directory swapped away.
    assert _cat(app_container, "/var/www/html/index.php") == original
    assert app_container.name in run.result["started_containers"]


def test_stopped_then_paused_again_by_crash_recovery(
    docker_client: docker.DockerClient, extra_containers: list[Container], tmp_path: Path
) -> None:
    """The recovery side of the same decision: a restore that died after
    stopping a paused container (journal: stop, with `paused`) has it
    started and paused again, as it was."""
    volume = docker_client.volumes.create(name=f"hardening-{os.getpid()}-{tmp_path.name[-8:]}",
                                          labels={TEST_LABEL: "1"})  # fmt: skip
    container = _idle_container(docker_client, f"{volume.name}-c", volume.name, {})
    extra_containers.append(container)
    try:
        container.stop(timeout=5)  # as the dead restore left it
        report = RecoveryReport()
        bring_back(docker_client, [container.id], report, paused=[container.id])
        container.reload()
        assert container.status == "paused", report.to_json()
        assert f"paused {container.name} again" in report.done
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
        volume.remove(force=True)


# -- --no-stop ---------------------------------------------------------------


def test_no_stop_that_cannot_be_followed_is_said_in_the_result(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    backup = backup_now(wordpress.project)
    run = restore_now(wordpress.project, backup.backup_id, "--no-stop", "--no-database",
                   "--no-safety-backup")  # fmt: skip
    assert run.state == Run.State.COMPLETED, run.error
    said = [w for w in run.result["warnings"] if "--no-stop" in w]
    assert len(said) == 1, run.result["warnings"]
    assert wordpress.volume("wordpress") in said[0]
    assert wordpress.container("wordpress").name in said[0]
