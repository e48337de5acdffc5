"""Hand-built hostile archives of a real app, with consistent checksums (the
snapshot row, the .sha256 sidecar and manifest.json all agree with them):
deep verification and a real restore both refuse them, with the same
reason, and the app's data is left as it was (issue 19, point 5)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.compression import open_compressor, open_decompressor
from engine.hashing import sidecar_text
from snapshots.models import Run, Snapshot
from snapshots.services.verify import verify_snapshot
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now
from tests.small_app import data_dir, deploy_small_app, remove_small_app
from tests.stacks import ComposeStack

pytestmark = RESTORE_TEST_MARKS


@pytest.fixture
def app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    stack = deploy_small_app(docker_client, tmp_path)
    yield stack
    remove_small_app(stack)


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_600_000_000
    return info, data


def _entry(info: tarfile.TarInfo, data: bytes) -> dict:
    kinds = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
             tarfile.LNKTYPE: "hardlink"}  # fmt: skip
    entry = {"path": info.name, "type": kinds[info.type], "size": len(data), "mode": info.mode,
             "uid": 0, "gid": 0, "mtime_ns": int(info.mtime) * 10**9}  # fmt: skip
    if info.isreg():
        entry["sha256"] = hashlib.sha256(data).hexdigest()
    if info.linkname:
        entry["link_target"] = info.linkname
    return entry


def _replace_archive(snapshot: Snapshot, root: Path, backup_json: bytes, members: list) -> None:
    """The snapshot's archive becomes backup.json + MEMBERS + an agreeing
    manifest, zstd-compressed; the row's SHA-256 and the sidecar follow."""
    everything = [_member("backup.json", data=backup_json), *members]
    manifest = {"format_version": 1, "backup_id": snapshot.backup_id, "kind": "full",
                "entries": [_entry(i, d) for i, d in everything]}  # fmt: skip
    out = io.BytesIO()
    compressor = open_compressor(out, "zstd")
    with tarfile.open(fileobj=compressor, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, data in [
            *everything,
            _member("manifest.json", data=json.dumps(manifest).encode()),
        ]:
            tar.addfile(info, io.BytesIO(data))
    compressor.close()
    raw = out.getvalue()
    path = root / snapshot.storage_key
    path.write_bytes(raw)
    sha256 = hashlib.sha256(raw).hexdigest()
    Path(f"{path}.sha256").write_text(sidecar_text(sha256, path.name))
    Snapshot.objects.filter(pk=snapshot.pk).update(sha256=sha256, size_bytes=len(raw))
    snapshot.refresh_from_db()


def _backup_json(snapshot: Snapshot, root: Path) -> dict:
    with (
        (root / snapshot.storage_key).open("rb") as stored,
        tarfile.open(fileobj=open_decompressor(stored, "zstd"), mode="r|") as tar,
    ):
        first = tar.next()
        assert first is not None and first.name == "backup.json"
        return json.loads(tar.extractfile(first).read())  # type: ignore[union-attr]


def _restore(app_id: str, backup_id: str) -> Run:
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", app_id, backup_id, "--no-safety-backup")
    return Run.objects.filter(operation="restore", app_id=app_id).latest("created_at")


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        (
            [_member("{v}/../../../../etc/cron.d/pwned", data=b"* * * * * root id\n")],
            "'..' path component",
        ),
        (
            [
                _member("{v}/etc", tarfile.SYMTYPE, link="/etc"),
                _member("{v}/etc/passwd", data=b"root::0:0::/:/bin/sh\n"),
            ],
            "its parent is not an earlier directory member",
        ),
        ([_member("{v}/pw", tarfile.LNKTYPE, link="/etc/passwd")], "is an absolute path"),
        ("list", "backup.json is invalid: a JSON list, not an object"),
    ],
    ids=["dotdot", "through-symlink", "hardlink-etc-passwd", "backup-json-list"],
)
def test_deep_verify_and_restore_refuse_alike(
    app: ComposeStack, settings, hostile: list | str, reason: str
) -> None:
    snapshot = backup_now(app.project)
    root = settings.BACKUP_ROOT
    backup = _backup_json(snapshot, root)
    volume = f"volumes/{app.volume('data')}"
    members = [_member(volume, tarfile.DIRTYPE), _member(f"{volume}/marker.txt", data=b"after")]
    if hostile == "list":
        backup_json = json.dumps(backup["volumes"]).encode()
    else:
        backup_json = json.dumps(backup).encode()
        for info, data in hostile:
            placed = copy.copy(info)  # the parameters stay as they are, for a rerun
            placed.name = info.name.replace("{v}", volume)
            members.append((placed, data))
    _replace_archive(snapshot, root, backup_json, members)

    report = verify_snapshot(snapshot, deep=True)
    assert report["checksum_match"] and report["sidecar_match"]  # consistent checksums
    assert not report["valid"]
    refusal = next(e for e in report["errors"] if reason in e)

    run = _restore(app.project, snapshot.backup_id)
    assert run.state == Run.State.FAILED
    assert refusal in run.error, (refusal, run.error)
    assert "nothing was changed" in run.error or "failed validation" in run.error
    assert (data_dir(app.client, app) / "marker.txt").read_text() == "before"
    assert not Path("/etc/cron.d/pwned").exists()
