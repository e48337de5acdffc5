"""A backup whose last steps fail (the sidecar, the archive's commit, the
snapshot's own row) keeps no file: a failed snapshot never leaves a stored
archive that nothing would ever delete (issue 18, point 6)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import snapshots.services.backup as backup_service
from engine.backup import BackupOptions, create_backup
from engine.errors import StorageError, StorageFull
from engine.inventory import AppInfo, VolumeInfo
from snapshots.locks import app_is_locked
from snapshots.models import AppBackupPolicy, Snapshot
from snapshots.services.backup import request_backup, run_backup
from storage.local import LocalStorage
from tests.stacks import ComposeStack

FILLER = "filler.bin"


def _fill(root: Path) -> None:
    """Write zeros into ROOT's filesystem until the kernel says ENOSPC
    (tmpfs allocates a page for every page written, zeros included)."""
    with open(root / FILLER, "ab", buffering=0) as handle:
        for chunk in (1024 * 1024, 4096, 1):
            while True:
                try:
                    handle.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path: Path, settings) -> Iterator[Path]:
    """BACKUP_ROOT on a real 16 MB tmpfs (the spool stays on the real disk)."""
    root = tmp_path / "small-disk"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], check=True)
    settings.BACKUP_ROOT = root
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    try:
        yield root
    finally:
        if subprocess.run(["umount", str(root)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=True)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_disk_full_at_the_sidecar_keeps_neither_file(
    wordpress: ComposeStack, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is real: the stack, the backup, the tmpfs and its ENOSPC, raised by
    the kernel when the sidecar is written. What is arranged: the moment the
    disk fills. The archive's bytes are all written (as a temp file) when
    the sidecar's writer opens; the test fills the tmpfs right then, as
    another writer on the same disk would, so the archive fits and the
    sidecar does not."""
    AppBackupPolicy.objects.create(app_id=wordpress.project, include_databases=False)
    real_open_writer = LocalStorage.open_writer

    def open_writer(self: LocalStorage, key: str):
        if key.endswith(".sha256"):
            archive = key.removesuffix(".sha256").rsplit("/", 1)[-1]
            written = [p for p in _files(small_disk) if p.endswith(archive)]  # temp or final
            assert written, "the archive should be written by now"
            _fill(small_disk)
        return real_open_writer(self, key)

    monkeypatch.setattr(LocalStorage, "open_writer", open_writer)
    snapshot = run_backup(str(request_backup(wordpress.project).pk))
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.FAILED
    assert _files(small_disk) == [FILLER]  # no archive, no sidecar, no temp file
    assert "no space left" in snapshot.error, snapshot.error
    assert f"{wordpress.project}/{snapshot.backup_id}.tar.zst was not kept" in snapshot.error
    assert snapshot.storage_key == ""  # nothing stored, nothing to delete later
    assert snapshot.runs.get().state == "failed"
    assert not app_is_locked(wordpress.project)
    # Space back: the next backup completes, archive and sidecar side by side.
    (small_disk / FILLER).unlink()
    monkeypatch.setattr(LocalStorage, "open_writer", real_open_writer)
    again = run_backup(str(request_backup(wordpress.project).pk))
    assert again.status == Snapshot.Status.COMPLETED, again.error
    assert _files(small_disk) == sorted([again.storage_key, f"{again.storage_key}.sha256"])


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_archive_was_stored_removes_it(
    wordpress: ComposeStack, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive and its sidecar are committed, then recording the end of
    the run fails (injected: the database going away at that moment). The
    snapshot is failed, says its archive was removed, and no file is left."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    AppBackupPolicy.objects.create(app_id=wordpress.project, include_databases=False)

    def finish_run(run, result):
        assert (settings.BACKUP_ROOT / result["storage_key"]).is_file()  # really stored
        raise RuntimeError("connection to the database lost")

    monkeypatch.setattr(backup_service, "finish_run", finish_run)
    snapshot = run_backup(str(request_backup(wordpress.project).pk))
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.FAILED
    assert "internal error (RuntimeError)" in snapshot.error
    assert "the stored archive was removed" in snapshot.error, snapshot.error
    assert _files(settings.BACKUP_ROOT) == []
    assert snapshot.storage_key == ""


def test_archive_commit_failure_after_the_sidecar_removes_the_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Engine level, no Docker: the sidecar is committed, then renaming the
    archive to its final name fails (injected EIO in os.replace, the only
    fake here; the files and directories are real). The sidecar goes too."""
    data = tmp_path / "volume"
    data.mkdir()
    (data / "file.txt").write_text("hello\n")
    app = AppInfo(
        app_id="demo_app1", containers=(), databases=(), config_files=(),
        volumes=(VolumeInfo(name="demo_app1_data", mountpoint=str(data)),),
    )  # fmt: skip
    root = tmp_path / "backups"
    storage = LocalStorage(root)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".tar.zst"):
            assert (Path(str(dst)).parent / (Path(str(dst)).name + ".sha256")).is_file()
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr("storage.local.os.replace", replace)
    with pytest.raises(StorageError, match="was not kept") as raised:
        create_backup(
            client=None, app=app, backup_id="backup_20260101_000000_abcdef",  # type: ignore[arg-type]
            storage=storage, options=BackupOptions(include_databases=False),
            spool_dir=tmp_path / "spool",
        )  # fmt: skip
    assert "Input/output error" in str(raised.value)
    assert not isinstance(raised.value, StorageFull)
    assert list(storage.list()) == []
    assert (_files(root) if root.exists() else []) == []
