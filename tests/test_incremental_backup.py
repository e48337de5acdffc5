"""Incremental backups of a real Compose stack through the command line and
the service: which backups are full, what the rows say, the index on the
worker host, and encryption to age recipients with no identity on it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine import discovery
from engine.age import generate_identity
from engine.incremental.index import index_path, read_index
from snapshots.models import AppBackupPolicy, Snapshot
from snapshots.services.snapshots import SnapshotInUse, delete_snapshot
from tests.backup_helpers import backup_now
from tests.incremental_helpers import incremental, incremental_dirs, small_app_fixture
from tests.small_app import data_dir
from tests.stacks import ComposeStack

__all__ = ["incremental_dirs"]  # the autouse fixture, imported

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


app = small_app_fixture(data_mb=8)


def test_first_is_full_then_incrementals_write_only_changes(
    app: ComposeStack, docker_client: docker.DockerClient, settings, capsys
) -> None:
    root = data_dir(docker_client, app)
    full = incremental(app)
    assert full.kind == "full" and full.parent is None and full.chain_length == 1
    assert full.contents["full_because"] == "the app's first backup is full"
    assert full.bytes_written == full.bytes_full and full.bytes_full >= 8 << 20
    (root / "marker.txt").write_text("after")
    (root / "blob000.bin").unlink()
    (root / "new.txt").write_text("new")
    capsys.readouterr()
    incr = incremental(app)
    out = capsys.readouterr().out
    assert f"(incremental on {full.backup_id} (chain of 2))" in out
    assert incr.kind == "incremental" and incr.parent == full and incr.chain_position == 1
    # Only the two small files were read again: the random blobs were not.
    # (backup.json, naming the parent, is some bytes longer.)
    assert incr.bytes_written < 64 * 1024
    assert abs(incr.bytes_full - (full.bytes_full - (4 << 20))) < 1024
    assert incr.size_bytes < full.size_bytes / 20
    assert incr.contents["deleted_paths"] == 1 and incr.contents["unchanged_files"] == 1
    path = index_path(settings.BACKUP_INDEX_DIR, app.project, incr.backup_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _, entries = read_index(path, incr.backup_id)
    stored_in = {os.path.basename(e["path"]): e["stored_in"] for e in entries}
    assert stored_in["blob001.bin"] == full.backup_id and stored_in["new.txt"] == incr.backup_id
    assert "blob000.bin" not in stored_in
    # The chain holds: the parent cannot go while its child exists.
    with pytest.raises(SnapshotInUse, match="depend on it"):
        delete_snapshot(full)
    delete_snapshot(incr)
    assert not path.exists()  # its index goes with it


def test_every_n_plus_first_backup_is_full(app: ComposeStack, docker_client) -> None:
    AppBackupPolicy.objects.create(app_id=app.project, incrementals_before_full=2)
    root = data_dir(docker_client, app)
    kinds = []
    for number in range(5):
        (root / "marker.txt").write_text(f"change {number}")
        kinds.append((incremental(app).kind, Snapshot.objects.latest("created_at").chain_position))
    assert kinds == [("full", 0), ("incremental", 1), ("incremental", 2), ("full", 0),
                     ("incremental", 1)]  # fmt: skip
    assert (
        "at most 2 before a full"
        in Snapshot.objects.filter(chain_position=0).latest("created_at").contents["full_because"]
    )
    # A full request stays full whatever the chain.
    assert backup_now(app.project).kind == "full"


def test_a_failed_or_missing_parent_makes_the_next_backup_full(app: ComposeStack, settings) -> None:
    first = incremental(app)
    # The latest finished backup failed (its row as a failed backup leaves
    # it): the chain is not continued across it.
    failed = Snapshot.objects.create(
        backup_id="backup_20000101_000000_faaaaa", app_id=app.project, host_id="h",
        status=Snapshot.Status.FAILED, error="disk full",
    )  # fmt: skip
    after_failure = incremental(app)
    assert after_failure.kind == "full"
    assert failed.backup_id in after_failure.contents["full_because"]
    assert first.kind == "full"
    # The parent's archive is gone: full again.
    (Path(settings.BACKUP_ROOT) / after_failure.storage_key).unlink()
    missing = incremental(app)
    assert missing.kind == "full" and "missing" in missing.contents["full_because"]
    # The parent's index on this host is lost: full, with a warning that says what to run.
    index_path(settings.BACKUP_INDEX_DIR, app.project, missing.backup_id).unlink()
    lost = incremental(app)
    assert lost.kind == "full" and lost.parent is None
    assert any(f"backup index-rebuild {missing.backup_id}" in w for w in lost.warnings)
    assert incremental(app).kind == "incremental"


def test_incremental_encrypted_to_recipients_needs_no_identity(
    app: ComposeStack, docker_client: docker.DockerClient, settings, tmp_path: Path
) -> None:
    identity, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    settings.BACKUP_AGE_IDENTITY_FILE = ""  # the worker holds no secret
    full = incremental(app)
    (data_dir(docker_client, app) / "marker.txt").write_text("encrypted change")
    incr = incremental(app)
    assert full.encrypted and incr.encrypted
    assert incr.kind == "incremental" and incr.parent == full
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity + "\n")
    # The index lost: rebuilding it reads the archives, which needs the key.
    path = index_path(settings.BACKUP_INDEX_DIR, app.project, incr.backup_id)
    kept = path.read_bytes()
    path.unlink()
    with pytest.raises(CommandError, match="identity"):
        call_command("backup", "index-rebuild", incr.backup_id)
    assert not path.exists()
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    call_command("backup", "index-rebuild", incr.backup_id)
    # The block digests of large files (engine.incremental.delta) too.
    assert b'"blocks":' in kept
    assert sorted(path.read_bytes().splitlines()) == sorted(kept.splitlines())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    call_command("backup", "verify", incr.backup_id, "--deep")


def test_only_a_full_backup_measures_the_volumes_first(
    app: ComposeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full's progress total is its volumes' sizes; an incremental reads
    only what changed, so it does not walk every volume to measure them
    before its own walk (a spy on the real measuring function: it still runs)."""
    measured: list[str] = []
    real = discovery.apparent_size

    def spy(path: str) -> int:
        measured.append(path)
        return real(path)

    monkeypatch.setattr(discovery, "apparent_size", spy)
    assert incremental(app).kind == "full"
    assert measured, "a full backup measures its volumes"
    measured.clear()
    assert incremental(app).kind == "incremental"
    assert measured == []
