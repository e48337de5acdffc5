"""Deep verification's scan (engine.archive.reader.scan_archive): every check
on the members and the manifest, the contents summary, errors instead of
exceptions on broken streams, and memory that does not grow with the
number of members."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.reader import ArchiveReport, scan_archive
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor, open_decompressor
from tests.engine.treegen import make_tree

BACKUP = {"app_id": "wp", "volumes": [{"name": "v"}]}


def _written(
    tree: Path | None = None,
    extras: dict[str, bytes] | None = None,
    edit: Callable[[Manifest], None] | None = None,
    compression: str = "none",
) -> bytes:
    """An archive as the backup writes it; EDIT changes the manifest only."""
    out = io.BytesIO()
    compressor = open_compressor(out, compression)  # type: ignore[arg-type]
    writer = ArchiveWriter(compressor, Manifest(backup_id="b"))
    writer.add_backup_json(BACKUP)
    if tree is not None:
        writer.add_volume("v", tree)
    for name, data in (extras or {}).items():
        writer.add_bytes(name, data)
    if edit is not None:
        edit(writer.manifest)
    writer.close()
    compressor.close()
    return out.getvalue()


def _scan(raw: bytes, **kwargs: object) -> ArchiveReport:
    return scan_archive(io.BytesIO(raw), **kwargs)  # type: ignore[arg-type]


def _member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data), link
    info.mode, info.mtime = 0o644, 1_600_000_000
    return info, data


def _entry(info: tarfile.TarInfo, data: bytes) -> dict[str, object]:
    kinds = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink"}
    entry: dict[str, object] = {
        "path": info.name, "type": kinds[info.type], "size": len(data), "mode": info.mode,
        "uid": 0, "gid": 0, "mtime_ns": int(info.mtime) * 10**9,
    }  # fmt: skip
    if info.isreg():
        entry["sha256"] = hashlib.sha256(data).hexdigest()
    if info.linkname:
        entry["link_target"] = info.linkname
    return entry


def _handmade(
    members: list[tuple], manifest: bytes | None = None, after: list[tuple] = ()
) -> bytes:
    """A PAX tar of MEMBERS, then manifest.json (by default one that agrees
    with them, in the same order), then the AFTER members."""
    if manifest is None:
        body = {"format_version": 1, "backup_id": "b", "kind": "full",
                "entries": [_entry(info, data) for info, data in members]}  # fmt: skip
        manifest = json.dumps(body).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in [*members, _member("manifest.json", manifest), *after]:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _basic() -> list[tuple]:
    return [
        _member("backup.json", json.dumps(BACKUP).encode()),
        _member("volumes/v", kind=tarfile.DIRTYPE),
        _member("volumes/v/a.txt", b"alpha"),
        _member("volumes/v/link", kind=tarfile.SYMTYPE, link="a.txt"),
        _member("databases/db-1/app.sql", b"-- Dump completed\n"),
        _member("config/.env", b"A=1\n"),
    ]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    make_tree(root)
    return root


# -- a valid archive -------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_summary_and_dump_copies(tree: Path, tmp_path: Path, compression: str) -> None:
    dump = b"-- MariaDB dump\n" + b"INSERT INTO t VALUES (1);\n" * 100_000
    extras = {"databases/db-1/app.sql": dump, "config/.env": b"A=1\n"}
    raw = _written(tree, extras, compression=compression)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    stream = open_decompressor(io.BytesIO(raw), compression)  # type: ignore[arg-type]
    report = scan_archive(stream, dump_dir=dumps)
    assert report.valid, report.errors
    with tarfile.open(fileobj=io.BytesIO(_written(tree, extras))) as tar:
        listed = tar.extractfile("manifest.json")
        assert listed is not None
        manifest = Manifest.from_bytes(listed.read())
    volume = [e for e in manifest.entries if e.path.startswith("volumes/")]
    files = [e for e in volume if e.type == "file"]
    summary = report.volumes["v"]
    assert summary.files == len(files) == report.file_count
    assert summary.dirs == sum(e.type == "dir" for e in volume)
    assert summary.links == sum(e.type in ("symlink", "hardlink") for e in volume)
    assert summary.bytes == sum(e.size for e in files)
    assert report.total_bytes == summary.bytes + len(dump)
    assert report.databases == ["db-1/app.sql"] and report.config_files == [".env"]
    assert report.backup == BACKUP
    assert report.dump_files["databases/db-1/app.sql"].read_bytes() == dump


def test_a_handmade_archive_with_a_pretty_printed_manifest_is_valid() -> None:
    """Any JSON layout of manifest.json: here indented, one entry per line."""
    members = _basic()
    body = {"entries": [_entry(i, d) for i, d in members], "kind": "full", "format_version": 1,
            "backup_id": "b"}  # fmt: skip
    report = _scan(_handmade(members, json.dumps(body, indent=2).encode()))
    assert report.valid, report.errors
    assert report.volumes["v"].files == 1 and report.volumes["v"].links == 1


def test_the_archive_writers_order_is_compared_pairwise(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer lists entries in member order: the constant-memory pass
    does the whole comparison, the by-name one (which holds every member) is
    never needed."""

    def by_name(*args: object) -> None:
        raise AssertionError("compared by name")

    monkeypatch.setattr("engine.archive.manifest_check._compare_by_name", by_name)
    report = _scan(_written(tree, {"config/.env": b"A=1\n"}))
    assert report.valid, report.errors


# -- every check -------------------------------------------------------------


def _edit(path: str, **changes: object) -> Callable[[Manifest], None]:
    def edit(manifest: Manifest) -> None:
        for entry in manifest.entries:
            if entry.path == path:
                for key, value in changes.items():
                    setattr(entry, key, value)

    return edit


@pytest.mark.parametrize(
    ("path", "changes", "problem"),
    [
        ("volumes/v/run.sh", {"type": "dir"}, "type file != manifest dir"),
        ("volumes/v/run.sh", {"size": 1}, "size 10 != manifest 1"),
        ("volumes/v/run.sh", {"mode": 0o755}, "mode or owner differs from the manifest"),
        ("volumes/v/shared", {"uid": 0}, "mode or owner differs from the manifest"),
        ("volumes/v/shared", {"gid": 0}, "mode or owner differs from the manifest"),
        ("volumes/v/hardlink-to-index", {"mtime_ns": 1_600_000_001_123_456_789},
         "mtime differs from the manifest"),
        ("volumes/v/relative-link", {"link_target": "x"}, "link target differs from the manifest"),
        ("volumes/v/index.php", {"link_target": "volumes/v/run.sh"},
         "link target differs from the manifest"),
    ],
)  # fmt: skip
def test_each_difference_from_the_manifest_is_reported(
    tree: Path, path: str, changes: dict[str, object], problem: str
) -> None:
    report = _scan(_written(tree, edit=_edit(path, **changes)))
    assert report.errors == [f"{path!r}: {problem}"]
    assert not report.valid


def test_changed_content_is_caught(tree: Path) -> None:
    raw = bytearray(_written(tree))
    marker = raw.find(b"#!/bin/sh\n")
    raw[marker] ^= 0x01
    report = _scan(bytes(raw))
    assert report.errors == ["'volumes/v/run.sh': SHA-256 does not match the manifest"]


def test_an_mtime_within_a_millisecond_is_the_same(tree: Path) -> None:
    edit = _edit("volumes/v/hardlink-to-index", mtime_ns=1_600_000_000_123_456_789 + 999_999)
    assert _scan(_written(tree, edit=edit)).valid


def test_manifest_entries_missing_from_the_archive(tree: Path) -> None:
    def add_ghost(manifest: Manifest) -> None:
        manifest.entries.append(ManifestEntry("volumes/v/ghost", "file", 1, 0o644, 0, 0, 1))

    report = _scan(_written(tree, edit=add_ghost))
    assert report.errors == ["'volumes/v/ghost' is in the manifest but not in the archive"]


def test_members_missing_from_the_manifest(tree: Path) -> None:
    def drop(manifest: Manifest) -> None:
        manifest.entries = [e for e in manifest.entries if not e.path.endswith("run.sh")]

    report = _scan(_written(tree, edit=drop))
    assert report.errors == ["member 'volumes/v/run.sh' is not in the manifest"]


def test_another_order_falls_back_to_a_precise_comparison_by_name(tree: Path) -> None:
    """A foreign or tampered archive whose manifest lists the members in
    another order: still compared entry by entry, with the same messages."""

    def shuffle(manifest: Manifest) -> None:
        manifest.entries.reverse()
        _edit("volumes/v/secret.key", mode=0o644)(manifest)

    report = _scan(_written(tree, edit=shuffle))
    assert report.errors == ["'volumes/v/secret.key': mode or owner differs from the manifest"]
    assert report.volumes["v"].files > 10  # the summary too


def test_duplicate_members() -> None:
    """Listed twice in the manifest too, in the same places: only the
    duplicate is wrong."""
    members = [*_basic(), _member("config/.env", b"A=2\n")]
    report = _scan(_handmade(members))
    assert report.errors == ["duplicate member 'config/.env'"]


def test_duplicate_members_in_many_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond one partition of name hashes, duplicates are still all found."""
    monkeypatch.setattr("engine.archive.member_log.DUPLICATE_PARTITION", 8)
    members = _basic() + [_member(f"config/f{i}", b"x") for i in range(100)]
    members += [_member("config/f7", b"x"), _member("config/f70", b"x")]
    report = _scan(_handmade(members))
    assert [e for e in report.errors if e.startswith("duplicate")] == [
        "duplicate member 'config/f7'",
        "duplicate member 'config/f70'",
    ]


def test_backup_json_must_come_first() -> None:
    members = _basic()
    members[0], members[1] = members[1], members[0]
    report = _scan(_handmade(members))
    # Restore's words: deep verification runs restore's member checks.
    assert report.errors == ["backup.json must be the first member, not 'volumes/v'"]


def test_members_after_the_manifest() -> None:
    report = _scan(_handmade(_basic(), after=[_member("config/late", b"x")]))
    assert report.errors == ["member 'config/late' comes after manifest.json"]


def test_a_missing_manifest_means_truncation() -> None:
    raw = _handmade(_basic())
    end = raw.index(b"manifest.json") // 512 * 512
    report = _scan(raw[:end])
    assert report.errors == ["manifest.json is missing (archive truncated?)"]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b'{"format_version": 2, "entries": []}', "unsupported manifest format version 2"),
        (b'{"format_version": 1, "entries": [', "manifest.json is truncated"),
        (b'{"format_version": 1, "entries": [{"type": "file"}]}', "has no path"),
        (b'{"format_version": 1, "entries": [{"path": "backup.json"}]}', "is malformed"),
    ],
)
def test_an_unreadable_manifest_is_one_error_not_half_a_comparison(
    manifest: bytes, message: str
) -> None:
    report = _scan(_handmade(_basic(), manifest))
    assert len(report.errors) == 1 and message in report.errors[0], report.errors
    assert report.file_count == 0 and report.volumes == {}


# -- broken streams: errors, not exceptions --------------------------------------


def test_truncated_anywhere_is_an_error(tree: Path) -> None:
    raw = _written(tree)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        manifest = tar.getmember("manifest.json")
    end = manifest.offset_data + manifest.size  # then only zero blocks: the tar's end
    for cut in [100, 512, 700, end // 3, end // 2, manifest.offset, end - 1]:
        report = _scan(raw[:cut])
        assert not report.valid
        assert any("truncated" in e for e in report.errors), (cut, report.errors)


def test_a_corrupt_header_is_an_error(tree: Path) -> None:
    raw = bytearray(_written(tree))
    raw[raw.find(b"volumes/v/index.php")] ^= 0x20
    report = _scan(bytes(raw))
    assert report.errors == [
        "archive is unreadable or truncated: invalid tar header checksum (corrupt archive?)"
    ]


def test_corrupt_compressed_data_is_an_error(tree: Path) -> None:
    raw = _written(tree, compression="zstd")
    broken_frame = raw[:4] + bytes(60) + raw[64:]
    report = scan_archive(open_decompressor(io.BytesIO(broken_frame), "zstd"))
    assert len(report.errors) == 1
    assert report.errors[0].startswith("archive is unreadable or truncated: archive stream is")
    middle = len(raw) // 2
    broken_data = raw[:middle] + bytes(64) + raw[middle + 64 :]
    report = scan_archive(open_decompressor(io.BytesIO(broken_data), "zstd"))
    assert not report.valid and report.errors  # whatever zstd makes of it


def test_an_invalid_backup_json_is_an_error() -> None:
    members = _basic()
    members[0] = _member("backup.json", b"{not json")
    report = _scan(_handmade(members))
    assert len(report.errors) == 1 and "unreadable" in report.errors[0]


# -- memory --------------------------------------------------------------------


def _tiny_members(count: int) -> bytes:
    members = _basic() + [
        _member(f"volumes/v/d{i // 100}/file-with-a-longish-name-{i}.txt", b"x" * (i % 7))
        for i in range(count)
    ]
    members[2:2] = [_member(f"volumes/v/d{j}", kind=tarfile.DIRTYPE) for j in range(count // 100)]
    return _handmade(members)


def _peak_bytes(raw: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        report = _scan(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.valid, report.errors[:3]
    return peak


def test_memory_does_not_grow_with_the_number_of_members(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-member records go to a temporary file and the manifest is read
    incrementally: 4x the members costs nothing more. (Holding a record and
    a manifest entry per member, as a dict would, costs ~1 KB each.) The
    fixed-size buffers (read-ahead, record batches, name hashes, manifest
    window) are made small here, so the smaller archive fills them too."""
    monkeypatch.setattr("engine.archive.reader.READ_CHUNK", 64 << 10)
    monkeypatch.setattr("engine.archive.reader.READ_AHEAD", 2)
    monkeypatch.setattr("engine.archive.member_log.BATCH", 256)
    monkeypatch.setattr("engine.archive.member_log.DUPLICATE_PARTITION", 1000)
    monkeypatch.setattr("engine.archive.manifest_stream.READ_SIZE", 32 << 10)
    small, large = _tiny_members(2_000), _tiny_members(8_000)
    grown = _peak_bytes(large) - _peak_bytes(small)
    assert grown < 100_000, f"peak grew by {grown} bytes for 6000 more members"
