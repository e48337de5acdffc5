"""Helpers for tests that make real backups."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from snapshots.models import Run, Snapshot

# The marks of a module of real restores: the engine, slow, rows visible to
# the worker's own connections, backups in the test's tmp dir.
RESTORE_TEST_MARKS = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("backup_dirs"),
]


def backup_now(app_id: str, *args: str) -> Snapshot:
    """Run `manage.py backup create APP_ID` in-process; return the snapshot."""
    call_command("backup", "create", app_id, *args)
    return Snapshot.objects.filter(app_id=app_id).latest("created_at")


def restore_now(app_id: str, backup_id: str, *flags: str) -> Run:
    """Run `manage.py backup restore APP_ID BACKUP_ID` in-process; return its
    run, whether it succeeded or not (the run says)."""
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", app_id, backup_id, *flags)
    return Run.objects.filter(operation="restore", app_id=app_id).latest("created_at")


def archive_path(snapshot: Snapshot, root: Path) -> Path:
    return root / snapshot.storage_key


def extract_with_system_tools(archive: Path, dest: Path, identity: Path | None = None) -> None:
    """Restore the way a person would, without our software."""
    dest.mkdir(parents=True, exist_ok=True)
    decrypt = f"age -d -i {identity} {archive} | " if identity else f"cat {archive} | "
    decompress = "zstd -dc" if ".tar.zst" in archive.name else "gzip -dc"
    subprocess.run(
        f"{decrypt}{decompress} | tar -x --numeric-owner -p -C {dest}", shell=True, check=True
    )
