"""Real backups of a real small app stack (tests/small_app.py) to a real S3
server (moto's): `local+s3` keeps the archive and puts the same bytes on S3
with the snapshot's SHA-256 in the object's metadata; `s3` keeps no local
copy, and verify --deep and restore then read the archive from S3 as a
stream; a full local disk fails the backup naming the location, with
nothing completed and nothing on S3."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.core.management import CommandError, call_command

from engine.age.keys import generate_identity
from snapshots.models import Run, Snapshot
from snapshots.models_offsite import OffsiteCopy
from snapshots.services.verify import request_verify, run_verify
from tests.backup_helpers import backup_now
from tests.conftest import REPO_ROOT, subprocess_env
from tests.offsite_helpers import moto, offsite, s3_object
from tests.small_app import data_dir, deploy_small_app, remove_small_app
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
__all__ = ["moto", "offsite"]


@pytest.fixture
def small_app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    stack = deploy_small_app(docker_client, tmp_path, data_mb=8)  # random: ~8 MiB, 2 parts
    yield stack
    remove_small_app(stack)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.iterdir())
        if p.is_file()
    }


def test_local_plus_s3_backup_puts_the_same_bytes_on_s3(
    small_app: ComposeStack, offsite: dict[str, Any], settings: Any
) -> None:
    snapshot = backup_now(small_app.project, "--storage", "local+s3")
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    local = (settings.BACKUP_ROOT / snapshot.storage_key).read_bytes()
    body, head = s3_object(offsite["client"], offsite["bucket"], snapshot.storage_key)
    assert body == local and hashlib.sha256(body).hexdigest() == snapshot.sha256
    assert head["Metadata"]["sha256"] == snapshot.sha256
    upload = Run.objects.get(snapshot=snapshot, operation=Run.Operation.UPLOAD)
    assert upload.state == Run.State.COMPLETED and upload.bytes_done == snapshot.size_bytes
    assert upload.result["copies"]["s3"]["parts_sent"] == 2
    assert OffsiteCopy.objects.get(snapshot=snapshot).state == OffsiteCopy.State.VERIFIED


def test_s3_only_backup_verifies_deep_and_restores_from_s3(
    small_app: ComposeStack,
    offsite: dict[str, Any],
    settings: Any,
    docker_client: docker.DockerClient,
) -> None:
    root = data_dir(docker_client, small_app)
    before = _digests(root)
    snapshot = backup_now(small_app.project, "--storage", "s3")
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    assert not (settings.BACKUP_ROOT / snapshot.storage_key).exists()  # only on S3 now

    for deep in (False, True):
        run = run_verify(str(request_verify(snapshot, deep=deep).pk))
        assert run.state == Run.State.COMPLETED, run.error
        assert run.result["valid"] and run.result["deep"] is deep
    assert run.result["contents"]["volumes"]  # the deep scan walked the archive's members

    (root / "marker.txt").write_text("after")
    (root / "blob000.bin").unlink()
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", small_app.project, snapshot.backup_id,
                     "--no-safety-backup")  # fmt: skip
    restore = Run.objects.filter(operation="restore", app_id=small_app.project).latest("created_at")
    assert restore.state == Run.State.COMPLETED, restore.error
    assert _digests(root) == before and (root / "marker.txt").read_text() == "before"
    # Streamed: the archive never came back to the local disk, nor to the spool.
    names = [p.name for d in (settings.BACKUP_ROOT, settings.BACKUP_SPOOL_DIR) if d.exists()
             for p in d.rglob("*") if p.is_file()]  # fmt: skip
    assert not [n for n in names if snapshot.backup_id in n], names


def test_an_encrypted_backup_puts_only_ciphertext_off_site(
    small_app: ComposeStack, offsite: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    """The policy says encrypt: the object on S3 is the age file the backup
    wrote (encrypted before it left the host), and a restore reads it back."""
    identity, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    key_file = tmp_path / "identity.txt"
    key_file.write_text(identity + "\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    snapshot = backup_now(small_app.project, "--storage", "s3")
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    assert snapshot.encrypted and snapshot.storage_key.endswith(".age")
    body, head = s3_object(offsite["client"], offsite["bucket"], snapshot.storage_key)
    assert body.startswith(b"age-encryption.org/v1\n")
    assert hashlib.sha256(body).hexdigest() == snapshot.sha256 == head["Metadata"]["sha256"]
    # Member names a plain tar.zst shows in the clear (zstd keeps such
    # literals as they are): none of them is in the object.
    assert b"backup.json" not in body and b"blob000.bin" not in body
    run = run_verify(str(request_verify(snapshot, deep=True).pk))
    assert run.state == Run.State.COMPLETED and run.result["valid"], run.error


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs) as the local backup disk."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_local_disk_fails_the_backup_and_nothing_goes_off_site(
    small_app: ComposeStack, offsite: dict[str, Any], settings: Any, tiny_disk: Path
) -> None:
    settings.BACKUP_ROOT = tiny_disk
    with pytest.raises(CommandError) as failed:
        backup_now(small_app.project, "--storage", "s3")
    snapshot = Snapshot.objects.get(app_id=small_app.project)
    assert snapshot.status == Snapshot.Status.FAILED
    assert "storage 'local'" in snapshot.error and "space" in snapshot.error, snapshot.error
    assert "storage 'local'" in str(failed.value)
    assert not Run.objects.filter(snapshot=snapshot, operation=Run.Operation.UPLOAD).exists()
    listed = offsite["client"].list_objects_v2(Bucket=offsite["bucket"]).get("Contents", [])
    assert listed == [] and not list(tiny_disk.rglob("*.zst*"))


def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """ARGV with its standard error on a pseudo-terminal (so the progress
    bar draws); its exit code, standard output and what the terminal got."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=300)
    reader.join(10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_cli_progress_bar_shows_the_upload(
    small_app: ComposeStack, offsite: dict[str, Any], settings: Any
) -> None:
    argv = [sys.executable, "manage.py", "backup", "create", small_app.project,
            "--storage", "local+s3"]  # fmt: skip
    code, out, terminal = _run_on_a_terminal(argv, subprocess_env() | offsite["env"])
    assert code == 0, terminal[-2000:]
    assert "copied off-site: s3" in out
    frames = [frame.strip() for frame in terminal.split("\r") if "uploading to s3" in frame]
    assert frames and "100.0%" in frames[-1], frames[-3:]
    snapshot = Snapshot.objects.get(app_id=small_app.project)
    upload = Run.objects.get(snapshot=snapshot, operation=Run.Operation.UPLOAD)
    assert upload.state == Run.State.COMPLETED and upload.bytes_done == snapshot.size_bytes
