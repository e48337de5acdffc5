"""Restores of incrementals on a real Compose stack: from every point of a
chain the volume equals its state at that point, with full metadata; a
chain with a missing or corrupt link is refused before anything changes."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from snapshots.models import Run, Snapshot
from tests.engine.chaingen import mutate
from tests.engine.treegen import make_tree
from tests.engine.treegen import snapshot as tree_snapshot
from tests.incremental_helpers import incremental, incremental_dirs, small_app_fixture
from tests.small_app import data_dir, statuses
from tests.stacks import ComposeStack

__all__ = ["incremental_dirs"]  # the autouse fixture, imported

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


app = small_app_fixture(data_mb=4)


def _restore(app_id: str, backup_id: str) -> Run:
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", app_id, backup_id)
    return Run.objects.filter(operation="restore", app_id=app_id).latest("created_at")


def _chain(app: ComposeStack, root: Path) -> list[tuple[Snapshot, dict]]:
    """A full and two incrementals, with changes of every kind between
    them; each with the volume's state when it was taken."""
    make_tree(root / "tree")
    points = [(incremental(app), tree_snapshot(root))]
    mutate(root / "tree")
    (root / "marker.txt").write_text("first incremental")
    points.append((incremental(app), tree_snapshot(root)))
    shutil.rmtree(root / "tree" / "content")  # a directory with its files
    os.rename(root / "tree" / "renamed", root / "tree" / "-dash")  # renamed back
    os.unlink(root / "blob000.bin")
    (root / "tree" / "shared" / "added.txt").write_text("second incremental")
    os.chmod(root / "tree" / "shared", 0o750)
    points.append((incremental(app), tree_snapshot(root)))
    assert [s.kind for s, _ in points] == ["full", "incremental", "incremental"]
    return points


def _vandalise(root: Path) -> None:
    (root / "marker.txt").write_text("vandalised")
    shutil.rmtree(root / "tree")
    (root / "junk.txt").write_text("must go")


def test_restore_from_every_point_of_the_chain(
    app: ComposeStack, docker_client: docker.DockerClient
) -> None:
    root = data_dir(docker_client, app)
    points = _chain(app, root)
    for snapshot, state in [points[2], points[1], points[0], points[2]]:
        _vandalise(root)
        run = _restore(app.project, snapshot.backup_id)
        assert run.state == Run.State.COMPLETED, run.error
        root = data_dir(docker_client, app)
        assert tree_snapshot(root) == state, snapshot.backup_id
        assert run.result["staged_while_running"] is True
        assert set(statuses(app).values()) == {"running"}


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_link_refuses_before_anything_changes(
    app: ComposeStack, docker_client: docker.DockerClient, settings, damage: str
) -> None:
    root = data_dir(docker_client, app)
    points = _chain(app, root)
    _vandalise(root)
    before = tree_snapshot(root)
    middle = Path(settings.BACKUP_ROOT) / points[1][0].storage_key
    if damage == "missing":
        middle.unlink()
    else:
        data = bytearray(middle.read_bytes())
        data[len(data) // 2] ^= 0xFF
        middle.write_bytes(bytes(data))
    snapshots_before = Snapshot.objects.count()
    run = _restore(app.project, points[2][0].backup_id)
    assert run.state == Run.State.FAILED
    assert points[1][0].backup_id in run.error
    assert ("is missing" if damage == "missing" else "SHA-256") in run.error
    assert tree_snapshot(data_dir(docker_client, app)) == before
    assert set(statuses(app).values()) == {"running"}
    assert Snapshot.objects.count() == snapshots_before  # no safety backup was taken
    assert not list(Path(settings.BACKUP_SPOOL_DIR).glob("restore-*"))


def test_deep_verify_of_an_incremental_checks_its_chain(
    app: ComposeStack, docker_client: docker.DockerClient, settings
) -> None:
    from snapshots.services.verify import verify_snapshot

    points = _chain(app, data_dir(docker_client, app))
    newest = points[2][0]
    report = verify_snapshot(newest, deep=True)
    assert report["valid"], report["errors"]
    assert report["chain"] == [s.backup_id for s, _ in points]
    (Path(settings.BACKUP_ROOT) / points[0][0].storage_key).unlink()
    report = verify_snapshot(newest, deep=True)
    assert not report["valid"]
    assert any(points[0][0].backup_id in e and "is missing" in e for e in report["errors"])
