"""Backups of real Compose stacks through the service layer and the
management command: what lands on disk, what the rows say, and the modes."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.age import generate_identity
from snapshots.models import AppBackupPolicy, Run, Snapshot
from tests.backup_helpers import archive_path, backup_now, extract_with_system_tools
from tests.engine.treegen import snapshot as tree_snapshot
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def backup_root(settings, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    return settings.BACKUP_ROOT


def _volume_path(client: docker.DockerClient, name: str) -> Path:
    return Path(client.volumes.get(name).attrs["Mountpoint"])


def test_wordpress_backup_is_complete_checksummed_and_restorable_by_hand(
    wordpress: ComposeStack, backup_root: Path, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    snapshot = backup_now(wordpress.project)
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    archive = archive_path(snapshot, backup_root)
    assert archive.name == f"{snapshot.backup_id}.tar.zst"
    assert snapshot.backup_id.startswith("backup_") and len(snapshot.backup_id) == 29
    # The row, the sidecar and the bytes agree; sha256sum -c checks by hand.
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == snapshot.sha256
    assert snapshot.size_bytes == archive.stat().st_size
    check = subprocess.run(
        ["sha256sum", "-c", archive.name + ".sha256"], cwd=archive.parent, capture_output=True
    )
    assert check.returncode == 0, check.stdout
    contents = snapshot.contents
    assert set(contents["volumes"]) == {
        wordpress.volume("wordpress"),
        wordpress.volume("mysql_data"),
    }
    assert contents["config_files"] == ["docker-compose.yml", ".env"] or set(
        contents["config_files"]
    ) == {"docker-compose.yml", ".env"}
    assert [d["database"] for d in contents["databases"]] == ["wordpress"]
    # zstd -d | tar -x restores the app volume exactly, metadata included.
    dest = tmp_path / "restored"
    extract_with_system_tools(archive, dest)
    app_volume = wordpress.volume("wordpress")
    assert tree_snapshot(dest / "volumes" / app_volume) == tree_snapshot(
        _volume_path(docker_client, app_volume)
    )
    assert (dest / "config" / "docker-compose.yml").read_text() == wordpress.config_file.read_text()
    dump = next((dest / "databases").rglob("wordpress.sql"))
    assert "Dump completed" in dump.read_text()[-200:]
    run = Run.objects.get(snapshot=snapshot, operation=Run.Operation.BACKUP)
    assert run.state == Run.State.COMPLETED and run.result["sha256"] == snapshot.sha256
    # Progress was recorded on the run row as the engine reported it.
    assert run.bytes_done > 0 and run.phase == "done" and run.heartbeat_at is not None


def test_verify_quick_and_deep_then_detect_one_flipped_byte(
    odoo: ComposeStack, backup_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = backup_now(odoo.project)
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    call_command("backup", "verify", snapshot.backup_id)
    call_command("backup", "verify", snapshot.backup_id, "--deep")
    deep = Run.objects.filter(snapshot=snapshot, operation="verify").latest("created_at").result
    assert deep["valid"] and deep["checksum_match"] and deep["sidecar_match"]
    inside = deep["contents"]
    assert set(inside["volumes"]) == {odoo.volume("odoo_filestore"), odoo.volume("postgres_data")}
    assert inside["file_count"] > 0 and inside["databases"]
    # globals + the odoo user's default database, each checked structurally
    assert inside["database_count"] >= 2
    assert all(check["ok"] for check in inside["database_checks"])
    assert deep["contains"]["volumes"] == 2 and deep["snapshot_id"] == snapshot.backup_id
    assert deep["contains"]["databases"] == len(inside["databases"])
    archive = archive_path(snapshot, backup_root)
    before = archive.stat().st_mtime_ns
    assert archive.stat().st_mtime_ns == before  # verification never writes
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="does not match"):
        call_command("backup", "verify", snapshot.backup_id)
    with pytest.raises(CommandError):
        call_command("backup", "verify", snapshot.backup_id, "--deep")


def test_encrypted_backup_needs_only_public_keys_and_age_cli_reads_it(
    wordpress: ComposeStack, backup_root: Path, settings, tmp_path: Path
) -> None:
    identity, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    settings.BACKUP_AGE_IDENTITY_FILE = ""  # the worker holds no secret
    snapshot = backup_now(wordpress.project)
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    assert snapshot.encrypted and snapshot.storage_key.endswith(".tar.zst.age")
    archive = archive_path(snapshot, backup_root)
    assert archive.read_bytes().startswith(b"age-encryption.org/v1\n")
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity + "\n")
    dest = tmp_path / "restored"
    extract_with_system_tools(archive, dest, identity=key_file)
    assert (dest / "backup.json").exists() and (dest / "manifest.json").exists()
    # Quick verification needs no key; deep needs the identity.
    call_command("backup", "verify", snapshot.backup_id)
    with pytest.raises(CommandError, match="needs the age identity"):
        call_command("backup", "verify", snapshot.backup_id, "--deep")
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    call_command("backup", "verify", snapshot.backup_id, "--deep")


@pytest.mark.parametrize(("mode", "during"), [("pause", "paused"), ("stop", "exited")])
def test_consistency_modes_quiesce_while_reading_volumes_then_resume(
    wordpress: ComposeStack, backup_root: Path, mode: str, during: str
) -> None:
    AppBackupPolicy.objects.create(app_id=wordpress.project, consistency=mode)
    seen: list[str] = []
    stop = threading.Event()
    app = wordpress.container("wordpress")

    def watch() -> None:
        while not stop.is_set():
            app.reload()
            seen.append(app.status)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        snapshot = backup_now(wordpress.project)
    finally:
        stop.set()
        watcher.join()
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    assert snapshot.consistency == mode
    assert during in seen
    for service in ("wordpress", "mariadb"):
        container = wordpress.container(service)
        container.reload()
        assert container.status == "running", service


def test_backup_of_unknown_app_fails_clearly_and_leaves_nothing(backup_root: Path) -> None:
    with pytest.raises(CommandError, match="no app 'no_such_app'"):
        backup_now("no_such_app")
    # Refused before any row is made (issue 19, point 9): no failed snapshot each time.
    assert not Snapshot.objects.filter(app_id="no_such_app").exists()
    assert not Run.objects.filter(app_id="no_such_app").exists()
    assert not any(backup_root.rglob("*.tar*")) if backup_root.exists() else True


def test_database_overrides_skip_or_name_the_credentials(
    wordpress: ComposeStack, backup_root: Path
) -> None:
    root_password = wordpress.services[0].environment["MYSQL_ROOT_PASSWORD"]
    # Root sees this database, the app's own user does not.
    wordpress.exec("mariadb", ["mariadb", "-uroot", "-e", "CREATE DATABASE extra_db"],
                   {"MYSQL_PWD": root_password})  # fmt: skip
    assert [d["database"] for d in backup_now(wordpress.project).contents["databases"]] == [
        "extra_db",
        "wordpress",
    ]
    policy = AppBackupPolicy.objects.create(
        app_id=wordpress.project, database_overrides={"mariadb": {"skip": True}}
    )
    skipped = backup_now(wordpress.project)
    assert skipped.status == Snapshot.Status.COMPLETED, skipped.error
    assert skipped.contents["databases"] == []
    # The app's own user instead of root; the password is read from the
    # container's environment variable the override names, never stored.
    policy.database_overrides = {"mariadb": {"user": "wordpress", "password_env": "MYSQL_PASSWORD"}}
    policy.save()
    as_user = backup_now(wordpress.project)
    assert as_user.status == Snapshot.Status.COMPLETED, as_user.error
    assert [d["database"] for d in as_user.contents["databases"]] == ["wordpress"]
    policy.database_overrides = {"mariadb": {"password_env": "NO_SUCH_VARIABLE"}}
    policy.save()
    with pytest.raises(CommandError, match="NO_SUCH_VARIABLE"):
        backup_now(wordpress.project)


def test_gzip_backup_is_read_by_tar_xz_and_gzip_t(
    odoo: ComposeStack, backup_root: Path, settings, docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:  # fmt: skip
    settings.BACKUP_COMPRESSION = "gzip"
    snapshot = backup_now(odoo.project)
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    archive = archive_path(snapshot, backup_root)
    assert archive.name.endswith(".tar.gz") and archive.read_bytes()[:2] == b"\x1f\x8b"
    subprocess.run(["gzip", "-t", str(archive)], check=True)
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xz", "--numeric-owner", "-p", "-f", str(archive), "-C", str(dest)],
                   check=True)  # fmt: skip
    volume = odoo.volume("odoo_filestore")
    assert tree_snapshot(dest / "volumes" / volume) == tree_snapshot(
        _volume_path(docker_client, volume)
    )
    call_command("backup", "verify", snapshot.backup_id, "--deep")
