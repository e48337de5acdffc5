"""Archive format v1: what goes in comes out, with all metadata, and the
manifest catches every change."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.archive.layout import BACKUP_JSON, MANIFEST_JSON
from engine.archive.manifest import Manifest
from engine.archive.reader import scan_archive
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor, open_decompressor
from tests.engine.treegen import make_tree, snapshot


def _write_archive(src: Path, out: io.BytesIO, compression: str = "zstd") -> Manifest:
    compressor = open_compressor(out, compression)  # type: ignore[arg-type]
    writer = ArchiveWriter(compressor, Manifest(backup_id="backup_20260105_103000_3fa2c1"))
    writer.add_backup_json({"app_id": "wp", "volumes": ["wp_data"]})
    writer.add_volume("wp_data", src)
    dump = src.parent / "dump.sql"
    dump.write_text("-- Dump completed\n")
    writer.add_file("databases/wp-db-1/wordpress.sql", dump)
    writer.close()
    compressor.close()
    return writer.manifest


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    make_tree(root)
    return root


def test_system_tar_restores_everything_with_metadata(tree: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    _write_archive(tree, out)
    archive = tmp_path / "a.tar.zst"
    archive.write_bytes(out.getvalue())
    dest = tmp_path / "restored"
    dest.mkdir()
    # The promise of DESIGN.md: without our software, zstd -d | tar -x restores.
    subprocess.run(
        f"zstd -dc {archive} | tar -x --numeric-owner -p --sparse -C {dest}",
        shell=True, check=True,
    )  # fmt: skip
    assert snapshot(dest / "volumes" / "wp_data") == snapshot(tree)
    assert (dest / "databases/wp-db-1/wordpress.sql").read_text() == "-- Dump completed\n"


def test_member_order_backup_json_first_manifest_last(tree: Path) -> None:
    out = io.BytesIO()
    _write_archive(tree, out)
    out.seek(0)
    with tarfile.open(fileobj=open_decompressor(out, "zstd"), mode="r|") as tar:
        names = [m.name for m in tar]
    assert names[0] == BACKUP_JSON and names[-1] == MANIFEST_JSON
    assert "volumes/wp_data" in names and "volumes/wp_data/content/uploads/photo.jpg" in names


def test_manifest_describes_every_entry(tree: Path) -> None:
    out = io.BytesIO()
    manifest = _write_archive(tree, out)
    by_path = {e.path: e for e in manifest.entries}
    photo = by_path["volumes/wp_data/content/uploads/photo.jpg"]
    assert (photo.uid, photo.gid, photo.type, photo.size) == (33, 33, "file", 200_000)
    assert len(photo.sha256 or "") == 64 and photo.ino and photo.ctime_ns
    assert by_path["volumes/wp_data/shared"].mode == 0o2775
    assert by_path["volumes/wp_data/absolute-link"].link_target == "/etc/passwd"
    assert by_path["volumes/wp_data/index.php"].mtime_ns == 1_600_000_000_123_456_789
    hardlinks = {e.path: e.link_target for e in manifest.entries if e.type == "hardlink"}
    assert len(hardlinks) == 2
    assert by_path["volumes/wp_data/sparse.img"].sparse is True
    round_trip = Manifest.from_bytes(manifest.to_bytes())
    assert round_trip.entries == manifest.entries


def test_sparse_files_are_not_read_as_data(tree: Path) -> None:
    """50 MB of holes cost almost nothing in the compressed archive."""
    out = io.BytesIO()
    _write_archive(tree, out)
    assert len(out.getvalue()) < 2 * 1024 * 1024


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_scan_reports_contents(tree: Path, compression: str) -> None:
    out = io.BytesIO()
    _write_archive(tree, out, compression)
    out.seek(0)
    report = scan_archive(open_decompressor(out, compression))  # type: ignore[arg-type]
    assert report.valid, report.errors
    assert report.backup["app_id"] == "wp"
    assert report.databases == ["wp-db-1/wordpress.sql"]
    volume = report.volumes["wp_data"]
    regular = sum(1 for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    assert volume.files == regular - 2  # two of them are hardlinks to others
    assert report.file_count == volume.files


def _raw_tar(tree: Path) -> bytearray:
    out = io.BytesIO()
    _write_archive(tree, out, "none")
    return bytearray(out.getvalue())


def test_scan_detects_changed_content(tree: Path) -> None:
    raw = _raw_tar(tree)
    marker = raw.find(b"<?php echo 'hello';")
    raw[marker] ^= 0x01
    report = scan_archive(io.BytesIO(bytes(raw)))
    assert not report.valid
    # The content is stored once, under the first name of the hardlinked pair.
    assert any("index" in e and "SHA-256" in e for e in report.errors)


def test_scan_detects_truncation(tree: Path) -> None:
    raw = _raw_tar(tree)
    report = scan_archive(io.BytesIO(bytes(raw[: len(raw) // 2])))
    assert not report.valid
    assert any("truncated" in e or "manifest.json is missing" in e for e in report.errors)


def test_scan_detects_member_missing_from_manifest(tree: Path) -> None:
    out = io.BytesIO()
    manifest = Manifest(backup_id="b")
    writer = ArchiveWriter(out, manifest)
    writer.add_backup_json({})
    writer.add_volume("v", tree)
    manifest.entries = [e for e in manifest.entries if not e.path.endswith("run.sh")]
    writer.close()
    report = scan_archive(io.BytesIO(out.getvalue()))
    assert not report.valid
    assert any("run.sh" in e and "not in the manifest" in e for e in report.errors)


def test_file_changing_during_read_keeps_the_tar_valid(tmp_path: Path) -> None:
    """A live file that shrinks after being listed still yields a valid tar
    (padded), flagged in the manifest, as GNU tar does."""
    root = tmp_path / "v"
    root.mkdir()
    victim = root / "log.txt"
    victim.write_bytes(b"a" * 5_000_000)
    out = io.BytesIO()
    manifest = Manifest(backup_id="b")
    writer = ArchiveWriter(out, manifest)
    writer.add_backup_json({"volumes": [{"name": "v"}]})  # restorable: verify checks as restore
    real_fstat = os.fstat
    calls = {"n": 0}

    def shrinking_fstat(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        calls["n"] += stat.S_ISREG(result.st_mode)  # directories are fstat'ed too
        if calls["n"] == 1 and stat.S_ISREG(result.st_mode):  # right after open: truncated
            os.truncate(victim, 1000)
        return result

    os.fstat = shrinking_fstat  # type: ignore[assignment]
    try:
        writer.add_volume("v", root)
    finally:
        os.fstat = real_fstat  # type: ignore[assignment]
    writer.close()
    entry = next(e for e in manifest.entries if e.path == "volumes/v/log.txt")
    assert entry.changed_during_read and entry.size == 5_000_000
    report = scan_archive(io.BytesIO(out.getvalue()))
    assert report.valid, report.errors
    assert json.loads(Manifest.from_bytes(manifest.to_bytes()).to_bytes())["entries"]


def test_mtimes_before_1970_keep_their_exact_value(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    old = root / "old.txt"
    old.write_text("from the sixties")
    os.utime(old, ns=(-1_500_000_000, -1_500_000_000))  # 1969-12-31 23:59:58.5
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_volume("v", root)
    writer.close()
    archive = tmp_path / "a.tar"
    archive.write_bytes(out.getvalue())
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-x", "-C", str(dest), "-f", str(archive)], check=True)
    assert (dest / "volumes/v/old.txt").stat().st_mtime_ns == -1_500_000_000


def test_output_error_surfaces_in_the_caller_and_abandon_stops(tree: Path) -> None:
    """The output is fed from a thread: its errors reach the caller all the same."""

    class FailingOutput:
        def __init__(self) -> None:
            self.writes = 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes > 1:
                raise OSError("disk full")
            return len(data)

    out = FailingOutput()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    with pytest.raises(OSError, match="disk full"):
        writer.add_volume("v", tree)
        writer.close()
    writer.abandon()
    writes = out.writes
    with pytest.raises(ValueError, match="closed"):
        writer.close()
    assert out.writes == writes
