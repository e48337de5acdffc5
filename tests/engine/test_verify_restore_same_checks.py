"""Deep verification applies exactly restore's member checks (one function,
engine.restore.checks.MemberChecks): every hand-built hostile archive below
has a manifest that agrees with it (consistent SHA-256s), is refused by the
extractor, and deep verification reports that same refusal, word for word,
so an archive verify calls valid is one restore accepts."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.archive.reader import scan_archive
from engine.errors import ArchiveError
from engine.restore.extract import extract_volumes
from tests.engine.test_extract_hostile import Member, archive, d, f, hard, sym


def _restore_refusal(data: bytes, tmp_path: Path) -> str:
    """The extractor's refusal, restoring every volume with a spool dir (as
    deep verification checks: a restore of everything)."""
    stages = {v: tmp_path / f"stage_{v}" for v in ("v", "w")}
    for stage in [*stages.values(), tmp_path / "spool"]:
        stage.mkdir()
    with pytest.raises(ArchiveError) as refused:
        extract_volumes(io.BytesIO(data), stages, spool_dir=tmp_path / "spool")
    return str(refused.value)


def _with_backup_json(raw: bytes, members: list[Member] = ()) -> bytes:
    """archive() with backup.json's bytes replaced (the manifest agrees)."""
    data = archive(list(members)).getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        old = tar.extractfile("backup.json").read()  # type: ignore[union-attr]
        members_in = [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]  # type: ignore[union-attr]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, content in members_in:
            if member.name == "backup.json":
                content = raw
            elif member.name == "manifest.json":
                content = _fix_manifest(content, old, raw)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return out.getvalue()


def _fix_manifest(manifest: bytes, old: bytes, new: bytes) -> bytes:
    body = json.loads(manifest)
    for entry in body["entries"]:
        if entry["path"] == "backup.json":
            entry["size"], entry["sha256"] = len(new), hashlib.sha256(new).hexdigest()
    assert hashlib.sha256(old).hexdigest() != hashlib.sha256(new).hexdigest()
    return json.dumps(body).encode()


HOSTILE: list = [
    pytest.param([f("volumes/v/../../etc/cron.d/x")], "'..' path component", id="dotdot"),
    pytest.param(
        [sym("volumes/v/etc", "/etc"), f("volumes/v/etc/passwd")],
        "parent is not an earlier directory member",
        id="file-through-symlink",
    ),
    pytest.param([hard("volumes/v/pw", "/etc/passwd")], "absolute path", id="hardlink-etc-passwd"),
    pytest.param([hard("volumes/v/pw", "../../etc/passwd")], "'..'", id="hardlink-dotdot"),
    pytest.param(
        [sym("volumes/v/s", "/etc/passwd"), hard("volumes/v/h", "volumes/v/s")],
        "a symlink",
        id="hardlink-to-symlink",
    ),
    pytest.param(
        [hard("volumes/v/h", "volumes/v/later"), f("volumes/v/later")],
        "not an earlier member",
        id="hardlink-to-later",
    ),
    pytest.param(
        [f("volumes/w/x"), hard("volumes/v/h", "volumes/w/x")],
        "outside its volume",
        id="hardlink-other-volume",
    ),
    pytest.param([hard("volumes/v/h", "backup.json")], "outside its volume", id="hardlink-json"),
    pytest.param([f("volumes/zz/x")], "unknown to backup.json", id="unknown-volume"),
    pytest.param([f("etc/passwd")], "unexpected member", id="not-in-format"),
    pytest.param([sym("config/.env", "/etc/shadow")], "must be a regular file", id="config-link"),
    pytest.param([d("databases/db-1")], "must be a regular file", id="dump-dir"),
    pytest.param([f("/etc/x")], "absolute path", id="absolute"),
]


@pytest.mark.parametrize(("members", "reason"), HOSTILE)
def test_verify_refuses_what_restore_refuses_with_the_same_reason(
    members: list[Member], reason: str, tmp_path: Path
) -> None:
    data = archive(members).getvalue()
    refusal = _restore_refusal(data, tmp_path)
    assert reason in refusal
    report = scan_archive(io.BytesIO(data))
    assert not report.valid
    assert refusal in report.errors, report.errors


def test_a_volume_root_that_is_not_a_directory(tmp_path: Path) -> None:
    data = archive([sym("volumes/v", "/"), f("volumes/v/x"), d("volumes/w")], roots=False)
    refusal = _restore_refusal(data.getvalue(), tmp_path)
    assert "not a directory" in refusal
    assert refusal in scan_archive(io.BytesIO(data.getvalue())).errors


def test_a_listed_volume_without_members(tmp_path: Path) -> None:
    """backup.json lists w, the archive has nothing of it: a restore of it
    is refused, so verify says so too, in the same words."""
    data = archive([d("volumes/v"), f("volumes/v/x")], roots=False).getvalue()
    refusal = _restore_refusal(data, tmp_path)
    reason = "volume 'w' has no member in the archive"
    assert refusal == f"archive does not match its manifest: {reason}"
    assert reason in scan_archive(io.BytesIO(data)).errors


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'["volumes", "v"]', "a JSON list, not an object"),
        (b'"v"', "a JSON string, not an object"),
        (b'{"volumes": {"v": 1}}', "volumes is not a list"),
        (b'{"volumes": [{"name": "v"}, {"name": "w"}], "databases": [1]}', "databases[0]"),
        (
            b'{"volumes": [{"name": "v"}, {"name": "w"}], "databases": [{"container": "c"}]}',
            "databases[0].engine is missing",
        ),
        (b'{"volumes": [{"name": "v"}, {"name": "w"}], "containers": [["x"]]}', "containers[0]"),
        (b'{"volumes": [{"name": 7}]}', "volumes[0].name"),
        (b"[" * 100_000 + b"]" * 100_000, "backup.json is unreadable"),
    ],
    ids=["list", "string", "volumes-dict", "db-int", "db-fields", "containers", "name", "deep"],
)
def test_a_backup_json_of_the_wrong_shape(raw: bytes, reason: str, tmp_path: Path) -> None:
    """A JSON list (or any wrong shape) was an AttributeError in verify and
    restore: now the same clear refusal in both, and no exception."""
    data = _with_backup_json(raw)
    refusal = _restore_refusal(data, tmp_path)
    assert reason in refusal
    report = scan_archive(io.BytesIO(data))
    assert refusal in report.errors, report.errors


def test_a_valid_archive_passes_both(tmp_path: Path) -> None:
    members = [
        d("volumes/v/dir"),
        f("volumes/v/dir/a", b"alpha"),
        hard("volumes/v/b", "volumes/v/dir/a"),
        sym("volumes/v/link", "/etc/passwd"),
        f("volumes/w/x"),
        f("config/.env", b"A=1\n"),
    ]
    data = archive(members).getvalue()
    report = scan_archive(io.BytesIO(data))
    assert report.valid, report.errors
    stages = {v: tmp_path / f"stage_{v}" for v in ("v", "w")}
    for stage in [*stages.values(), tmp_path / "spool"]:
        stage.mkdir()
    extract_volumes(io.BytesIO(data), stages, spool_dir=tmp_path / "spool")
    assert (stages["v"] / "b").read_bytes() == b"alpha"


def test_a_path_longer_than_path_max_verifies_and_restores(tmp_path: Path) -> None:
    """The backup archives such paths (fd-relative walk) and extraction
    creates them one component at a time: both accept them, so verify's
    "valid" holds for them too."""
    from engine.archive.manifest import Manifest
    from engine.archive.writer import ArchiveWriter
    from tests.engine.test_walk_long_paths import _deep_tree

    volume = tmp_path / "v"
    volume.mkdir()
    names = _deep_tree(volume, depth=120, name_length=40)
    assert len("volumes/v/" + "/".join(names)) > 4096
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_backup_json({"volumes": [{"name": "v"}]})
    writer.add_volume("v", volume)
    writer.close()
    report = scan_archive(io.BytesIO(out.getvalue()))
    assert report.valid, report.errors
    stage = tmp_path / "stage"
    stage.mkdir()
    extract_volumes(io.BytesIO(out.getvalue()), {"v": stage})
    assert report.file_count == 13


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda body: body.pop("backup_id"), "no 'backup_id'"),
        (lambda body: body.pop("kind"), "no 'kind'"),
        (lambda body: body["entries"][-1].update(weird=1), "unknown field 'weird'"),
        (lambda body: body["entries"][-1].pop("size"), "no 'size'"),
    ],
    ids=["no-backup-id", "no-kind", "unknown-field", "no-size"],
)
def test_a_manifest_restore_cannot_read_is_not_valid(
    edit: Callable[[dict], object], reason: str, tmp_path: Path
) -> None:
    """Restore reads manifest.json with Manifest.from_bytes: what that
    refuses, verify refuses too (it was valid before)."""
    raw = archive([f("volumes/v/x"), d("volumes/w/d")]).getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]  # type: ignore[union-attr]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, content in members:
            if member.name == "manifest.json":
                body = json.loads(content)
                edit(body)
                content = json.dumps(body).encode()
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    data = out.getvalue()
    stages = {v: tmp_path / f"stage_{v}" for v in ("v", "w")}
    for stage in stages.values():
        stage.mkdir()
    with pytest.raises(ArchiveError, match=r"manifest\.json"):
        extract_volumes(io.BytesIO(data), stages)
    report = scan_archive(io.BytesIO(data))
    assert not report.valid and any(reason in e for e in report.errors), report.errors


def test_volume_names_alone_become_objects_for_every_reader() -> None:
    """restore's plan reads volumes[i]["name"]: a list of names is not a
    TypeError there."""
    from engine.restore.checks import parse_backup_json

    backup = parse_backup_json(b'{"volumes": ["v", {"name": "w", "labels": {}}]}')
    assert backup["volumes"] == [{"name": "v"}, {"name": "w", "labels": {}}]
