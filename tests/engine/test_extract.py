"""Extraction of an archive's volumes: what went in comes out with all its
metadata, dumps and config reach the caller, and the manifest is enforced."""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from engine.archive.manifest import Manifest
from engine.archive.read_ahead import Source
from engine.archive.tar_reader import TarReader
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor, open_decompressor
from engine.errors import ArchiveError, EngineError
from engine.progress import Progress
from engine.restore.extract import extract_volumes
from tests.engine.treegen import make_tree, snapshot

BACKUP_ID = "backup_20260105_103000_3fa2c1"


def write_archive(
    out: io.BytesIO,
    volumes: dict[str, Path],
    extras: dict[str, bytes] | None = None,
    compression: str = "zstd",
    tamper: dict[str, int] | None = None,
) -> Manifest:
    """An archive as the backup writes it. TAMPER: member -> mtime_ns put in
    the manifest only (the tar header keeps the file's own)."""
    compressor = open_compressor(out, compression)  # type: ignore[arg-type]
    writer = ArchiveWriter(compressor, Manifest(backup_id=BACKUP_ID))
    writer.add_backup_json({"app_id": "wp", "volumes": [{"name": v} for v in volumes]})
    for name, root in volumes.items():
        writer.add_volume(name, root)
    for name, data in (extras or {}).items():
        writer.add_bytes(name, data)
    for entry in writer.manifest.entries:
        if tamper and entry.path in tamper:
            entry.mtime_ns = tamper[entry.path]
    writer.close()
    compressor.close()
    out.seek(0)
    return writer.manifest


def stream(out: io.BytesIO, compression: str = "zstd") -> io.BufferedIOBase:
    out.seek(0)
    return open_decompressor(out, compression)  # type: ignore[arg-type,return-value]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    make_tree(root)
    os.chown(root, 1000, 1001)
    os.chmod(root, 0o751)  # the volume root's own metadata must come back too
    os.lchown(root / "relative-link", 1234, 5678)  # symlink owners: lchown
    os.chown(root / "secret.key", 3_000_000, 4_000_000)  # too big for ustar: PAX records
    with open(root / "zeros.bin", "wb") as handle:  # zeros, but no holes
        handle.write(bytes(100_000))
    # Directory mtimes are set last, deepest first: give them distinct values.
    for rel, ns in (("content", 1_400_000_000_111_111_111), (".", 1_450_000_000_222_222_222)):
        os.utime(root / rel, ns=(ns, ns))
    return root


def dir_mtimes(root: Path) -> dict[str, int]:
    found = {".": os.lstat(root).st_mtime_ns}
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = os.lstat(path).st_mtime_ns
    return found


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_round_trip_keeps_everything(tree: Path, tmp_path: Path, compression: str) -> None:
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree}, compression=compression)
    stage = tmp_path / "stage"
    stage.mkdir(mode=0o700)
    report = extract_volumes(stream(out, compression), {"wp_data": stage})
    # Owners, modes (setgid dir, setuid file), mtimes, symlinks (absolute and
    # dangling too), hardlink groups, empty dirs, odd and undecodable names.
    assert snapshot(stage) == snapshot(tree)
    assert dir_mtimes(stage) == dir_mtimes(tree)
    root = os.lstat(stage)
    assert (stat.S_IMODE(root.st_mode), root.st_uid, root.st_gid) == (0o751, 1000, 1001)
    assert os.lstat(stage / "index.php").st_mtime_ns == 1_600_000_000_123_456_789
    assert os.lstat(stage / "absolute-link").st_mtime_ns == 1_500_000_000 * 10**9
    assert os.readlink(stage / "absolute-link") == "/etc/passwd"
    link = os.lstat(stage / "relative-link")
    assert (link.st_uid, link.st_gid) == (1234, 5678)
    assert os.lstat(stage / "shared").st_mode & 0o7777 == 0o2775
    assert os.lstat(stage / "run.sh").st_mode & 0o7777 == 0o4755
    assert os.stat(stage / "index.php").st_ino == os.stat(stage / "hardlink-to-index").st_ino
    summary = report.volumes["wp_data"]
    assert (summary.dirs, summary.symlinks, summary.hardlinks) == (4, 3, 2)
    assert report.backup["app_id"] == "wp" and report.manifest.backup_id == BACKUP_ID


def test_sparse_files_keep_their_holes(tree: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree})
    stage = tmp_path / "stage"
    stage.mkdir()
    extract_volumes(stream(out), {"wp_data": stage})
    for name in ("sparse.img", "sparse-middle.img"):
        restored = os.stat(stage / name)
        assert restored.st_size == os.stat(tree / name).st_size
        # 50 MB and 20 MB files: a few blocks of data, not megabytes of zeros.
        assert restored.st_blocks <= os.stat(tree / name).st_blocks + 16
    # A file of zeros that had no holes keeps its blocks (fidelity, not thrift).
    assert os.stat(stage / "zeros.bin").st_blocks * 512 >= 100_000


def test_dumps_and_config_are_delivered(tree: Path, tmp_path: Path) -> None:
    extras = {
        "databases/wp-db-1/wordpress.sql": b"-- MariaDB dump\nINSERT INTO t VALUES (1);\n",
        "databases/wp-db-1/_globals.sql": b"",
        "config/docker-compose.yml": b"services: {}\n",
        "config/.env": b"DB_PASSWORD=secret\n",
    }
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree}, extras)
    stage, spool = tmp_path / "stage", tmp_path / "spool"
    stage.mkdir()
    spool.mkdir()
    report = extract_volumes(stream(out), {"wp_data": stage}, spool_dir=spool)
    assert report.spooled == {name: spool / name for name in extras}
    for name, data in extras.items():
        assert (spool / name).read_bytes() == data
        assert stat.S_IMODE(os.stat(spool / name).st_mode) == 0o600  # dumps hold secrets
    # Without a spool dir they are read past (and still listed in the manifest).
    other = tmp_path / "stage2"
    other.mkdir()
    report = extract_volumes(stream(out), {"wp_data": other})
    assert report.spooled == {} and report.skipped_members == len(extras)
    strict = tmp_path / "stage3"
    strict.mkdir()
    with pytest.raises(ArchiveError, match="nowhere to go"):
        extract_volumes(stream(out), {"wp_data": strict}, skip_other_members=False)


def test_spool_only_restores_no_volume(tree: Path, tmp_path: Path) -> None:
    """The safety backup's databases: dumps only, every volume read past."""
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree}, {"databases/db-1/app.sql": b"-- dump\n"})
    spool = tmp_path / "spool"
    spool.mkdir()
    report = extract_volumes(stream(out), {}, spool_dir=spool)
    assert (spool / "databases/db-1/app.sql").read_bytes() == b"-- dump\n"
    assert report.volumes == {} and report.skipped_members > 20


def test_only_the_asked_volumes_are_written(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a/file").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b/file").write_text("b")
    out = io.BytesIO()
    write_archive(out, {"vol_a": tmp_path / "a", "vol_b": tmp_path / "b"})
    stage = tmp_path / "stage"
    stage.mkdir()
    report = extract_volumes(stream(out), {"vol_b": stage})
    assert (stage / "file").read_text() == "b" and report.skipped_members == 2
    assert list(report.volumes) == ["vol_b"]
    strict, missing = tmp_path / "s2", tmp_path / "s3"
    strict.mkdir()
    missing.mkdir()
    with pytest.raises(ArchiveError, match="not being restored"):
        extract_volumes(stream(out), {"vol_b": strict}, skip_other_members=False)
    with pytest.raises(ArchiveError, match="no volume 'vol_c'"):
        extract_volumes(stream(out), {"vol_c": missing})


def test_manifest_mtime_wins_over_the_tar_header(tmp_path: Path) -> None:
    root = tmp_path / "v"
    (root / "sub").mkdir(parents=True)
    (root / "sub/f").write_text("x")
    os.symlink("f", root / "sub/l")
    (root / "old").write_text("1969")
    # Before 1970 with a fraction: the tar header says -2.5 s (the writer
    # floors the seconds), the manifest the exact -1.5 s.
    os.utime(root / "old", ns=(-1_500_000_000, -1_500_000_000))
    exact = {
        "volumes/v/old": -1_500_000_000,
        "volumes/v/sub/f": 1_234_567_890_987_654_321,
        "volumes/v/sub/l": 1_111_111_111_000_000_001,
        "volumes/v/sub": 1_222_222_222_000_000_002,
    }
    out = io.BytesIO()
    write_archive(out, {"v": root}, tamper=exact)
    stage = tmp_path / "stage"
    stage.mkdir()
    extract_volumes(stream(out), {"v": stage})
    for member, ns in exact.items():
        assert os.lstat(stage / member.removeprefix("volumes/v/")).st_mtime_ns == ns


def test_progress_is_reported(tree: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree})
    seen: list[Progress] = []
    stage = tmp_path / "stage"
    stage.mkdir()
    extract_volumes(stream(out), {"wp_data": stage}, progress=seen.append, bytes_total=123)
    assert seen and all(p.phase == "restoring" for p in seen)
    assert seen[-1].bytes_done >= 70_000_000 and seen[-1].bytes_total == 123


def test_parser_reads_what_tarfile_reads(tree: Path) -> None:
    """TarReader, our lean header parser, agrees with tarfile on every member."""
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree}, {"config/.env": b"A=1\n"}, compression="none")
    raw = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
        expected = [
            (m.name, m.size if m.isreg() else 0, m.mode, m.uid, m.gid, m.linkname, m.type)
            for m in tar
        ]
    source = Source(io.BytesIO(raw))
    reader = TarReader(source)
    kinds = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE}  # fmt: skip
    got = []
    while (member := reader.next()) is not None:
        got.append((member.name, member.size, member.mode, member.uid, member.gid,
                    member.linkname, kinds[member.kind]))  # fmt: skip
    source.close()
    assert got == expected
    assert any("\udce9" in name for name, *_ in got)  # the undecodable name survived


def test_a_full_disk_is_an_error_not_a_hostile_archive(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.BytesIO()
    write_archive(out, {"wp_data": tree})
    stage = tmp_path / "stage"
    stage.mkdir()

    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(EngineError, match="No space left") as caught:
        extract_volumes(stream(out), {"wp_data": stage})
    assert not isinstance(caught.value, ArchiveError)
