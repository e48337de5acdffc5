"""Incremental archives: change detection against the parent's index (every
kind of change), the `deleted` list, the index on the worker host, and the
promise that `tar -x` in chain order (removing each archive's `deleted`
paths first) gives back the tree as it was at the incremental's time."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from engine.archive.layout import volume_member
from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor
from engine.incremental.changes import ParentState
from engine.incremental.index import IndexHeader, IndexWriter, index_path, read_index
from tests.engine.treegen import make_tree, snapshot

FULL, INCR, INCR2 = (
    "backup_20260105_103000_aaaaaa", "backup_20260105_110000_bbbbbb",
    "backup_20260105_120000_cccccc",
)  # fmt: skip
VOLUME = "wp_data"


def _backup(
    src: Path, out_dir: Path, index_dir: Path, backup_id: str, parent_id: str | None = None
) -> Manifest:
    """An archive of SRC as volume VOLUME, its index kept in INDEX_DIR; an
    incremental when PARENT_ID is given."""
    parent = None
    if parent_id is not None:
        header, entries = read_index(index_path(index_dir, "wp", parent_id), parent_id)
        parent = ParentState(header.backup_id, entries)
    kind = "full" if parent is None else "incremental"
    index = IndexWriter(index_dir, "wp", IndexHeader(backup_id, parent_id, kind))
    manifest = Manifest(backup_id=backup_id, kind=kind, parent_backup_id=parent_id)  # type: ignore[arg-type]
    out = io.BytesIO()
    compressor = open_compressor(out, "zstd")
    writer = ArchiveWriter(compressor, manifest, index=index, parent=parent)
    writer.add_backup_json({"app_id": "wp", "volumes": [{"name": VOLUME}]})
    writer.add_volume(VOLUME, src)
    if parent is not None:
        manifest.deleted = parent.deleted()
    writer.close()
    compressor.close()
    index.commit()
    (out_dir / f"{backup_id}.tar.zst").write_bytes(out.getvalue())
    return manifest


def _tar_x(archive: Path, dest: Path) -> None:
    subprocess.run(
        f"zstd -dc {archive} | tar -x --numeric-owner -p --sparse -C {dest}",
        shell=True, check=True,
    )  # fmt: skip


# README's loop: each archive in chain order, its deleted paths removed first.
DELETED = (
    'import json,sys; sys.stdout.buffer.write(b"\\0".join(p.encode("utf-8", "surrogateescape")'
    ' for p in json.load(sys.stdin)["deleted"]))'
)
BY_HAND = """
for f in {archives}; do
  zstd -dc "$f" | tar -xO manifest.json | python3 -c '{deleted}' \\
    | (cd {dest} && xargs -0r rm -rf --)
  zstd -dc "$f" | tar -x --numeric-owner -p --sparse -C {dest}
done
"""


def _restore_by_hand(out_dir: Path, chain: list[str], dest: Path) -> Path:
    dest.mkdir()
    archives = " ".join(str(out_dir / f"{backup_id}.tar.zst") for backup_id in chain)
    script = BY_HAND.format(archives=archives, dest=dest, deleted=DELETED)
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True)
    return dest / "volumes" / VOLUME


def _mutate(root: Path) -> tuple[set[str], set[str]]:
    """One change of every kind; returns the names the incremental is
    expected to write as files, and those it is expected to list as deleted.
    (A hardlinked inode is stored under the first of its names in walk order.)"""
    written: set[str] = set()
    deleted: set[str] = set()
    (root / "index.php").write_text("<?php echo 'edited';\n")  # edited (keeps its hardlink)
    written.add("hardlink-to-index")
    with open(root / "run.sh", "a") as handle:  # appended
        handle.write("echo appended\n")
    written.add("run.sh")
    with open(root / "sparse-middle.img", "r+b") as handle:  # truncated
        handle.truncate(1000)
    written.add("sparse-middle.img")
    (root / "secret.key").unlink()  # deleted
    deleted.add("secret.key")
    latin1 = os.fsdecode(b"latin1-\xe9t\xe9")  # a name that is no UTF-8
    (root / latin1).unlink()
    deleted.add(latin1)
    os.rename(root / "-dash", root / "renamed")  # renamed
    deleted.add("-dash")
    written.add("renamed")
    os.chmod(root / "spaces and 'quotes'.txt", 0o640)  # mode
    written.add("spaces and 'quotes'.txt")
    os.chown(root / "new\nline", 1234, 1234)  # owner
    written.add("new\nline")
    os.link(root / "ünïcødé-файл.txt", root / "zz-new-hardlink")  # new hardlink
    written.add("zz-new-hardlink")  # the inode's ctime moved: written again
    deleted.add("ünïcødé-файл.txt")  # a file before, now a hardlink to zz-new-hardlink
    os.unlink(root / "relative-link")  # symlink retargeted
    os.symlink("run.sh", root / "relative-link")
    (root / ("x" * 200)).unlink()  # file replaced by a directory
    (root / ("x" * 200)).mkdir()
    (root / ("x" * 200) / "inside.txt").write_text("now a directory")
    deleted.add("x" * 200)
    written.add(f"{'x' * 200}/inside.txt")
    shutil.rmtree(root / "empty-dir")  # directory replaced by a file
    (root / "empty-dir").write_text("now a file")
    deleted.add("empty-dir")
    written.add("empty-dir")
    # Rewritten in place with size and mtime put back: only ctime tells.
    photo = root / "content" / "uploads" / "photo.jpg"
    before = photo.stat()
    with open(photo, "r+b") as handle:
        handle.write(b"\xff" * 16)
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))
    written.add("content/uploads/photo.jpg")
    return written, deleted


def _written_files(manifest: Manifest) -> set[str]:
    prefix = f"volumes/{VOLUME}/"
    return {e.path.removeprefix(prefix) for e in manifest.entries if e.type == "file"
            and e.path.startswith(prefix)}  # fmt: skip


def test_incremental_writes_only_changes_and_tar_in_chain_order_restores(
    tmp_path: Path,
) -> None:
    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    full = _backup(src, out_dir, index_dir, FULL)
    at_full = snapshot(src)
    written, deleted = _mutate(src)
    incr = _backup(src, out_dir, index_dir, INCR, FULL)
    at_incr = snapshot(src)

    assert incr.kind == "incremental" and incr.parent_backup_id == FULL
    assert _written_files(incr) == written
    assert incr.deleted == sorted(volume_member(VOLUME, name) for name in deleted)
    # Directories, symlinks and hardlinks are always there, exact.
    kinds = {e.path: e.type for e in incr.entries}
    assert kinds[volume_member(VOLUME, "relative-link")] == "symlink"
    assert kinds[volume_member(VOLUME, "index.php")] == "hardlink"
    assert kinds[volume_member(VOLUME, "ünïcødé-файл.txt")] == "hardlink"
    assert kinds[volume_member(VOLUME, "empty-dir")] == "file"
    assert len(_written_files(full)) > len(_written_files(incr))

    # Nothing changed since: the next incremental writes only the files of
    # several names (a hardlink member must point into its own archive).
    incr2 = _backup(src, out_dir, index_dir, INCR2, INCR)
    several_names = {"hardlink-to-index", "zz-new-hardlink", "content/uploads/photo.jpg"}
    assert _written_files(incr2) == several_names and incr2.deleted == []

    assert snapshot(_restore_by_hand(out_dir, [FULL], tmp_path / "r0")) == at_full
    assert snapshot(_restore_by_hand(out_dir, [FULL, INCR], tmp_path / "r1")) == at_incr
    assert snapshot(_restore_by_hand(out_dir, [FULL, INCR, INCR2], tmp_path / "r2")) == at_incr


def test_index_holds_the_whole_state_private_with_where_each_file_is(tmp_path: Path) -> None:
    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    _backup(src, out_dir, index_dir, FULL)
    (src / "index.php").write_text("changed")
    _backup(src, out_dir, index_dir, INCR, FULL)
    path = index_path(index_dir, "wp", INCR)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    header, entries = read_index(path, INCR)
    assert header.parent_backup_id == FULL and header.kind == "incremental"
    by_path = {e["path"]: e for e in entries}
    prefix = f"volumes/{VOLUME}"
    expected = {prefix} | {f"{prefix}/{name}" for name in snapshot(src)}
    assert set(by_path) == expected
    assert by_path[f"{prefix}/index.php"]["stored_in"] == INCR
    assert by_path[f"{prefix}/run.sh"]["stored_in"] == FULL  # carried over unchanged
    assert by_path[f"{prefix}/run.sh"]["sha256"]
    # No temp file is left beside the committed indexes.
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{FULL}.index", f"{INCR}.index"]


def test_a_file_read_while_it_changed_is_never_carried_over(tmp_path: Path) -> None:
    src = tmp_path / "volume"
    src.mkdir()
    (src / "a.txt").write_text("a")
    st = os.lstat(src / "a.txt")
    line = {
        "path": "volumes/v/a.txt", "type": "file", "size": st.st_size, "mode": 0o644,
        "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, "stored_in": FULL,
    }  # fmt: skip
    os.chmod(src / "a.txt", 0o644)
    line["ctime_ns"] = os.lstat(src / "a.txt").st_ctime_ns
    st = os.lstat(src / "a.txt")
    assert ParentState(FULL, [dict(line)]).visit("volumes/v/a.txt", "file", st) is not None
    torn = dict(line, changed_during_read=True)
    assert ParentState(FULL, [torn]).visit("volumes/v/a.txt", "file", st) is None


@pytest.mark.parametrize("damage", ["missing", "other snapshot", "garbage line"])
def test_an_unusable_parent_index_makes_a_full_backup_with_a_warning(
    tmp_path: Path, damage: str
) -> None:
    from engine.incremental.chain import ChainLink, start_chain

    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    _backup(src, out_dir, index_dir, FULL)
    path = index_path(index_dir, "wp", FULL)
    if damage == "missing":
        path.unlink()
    elif damage == "other snapshot":
        shutil.copy(path, tmp_path / "x")
        os.replace(tmp_path / "x", path)
        path.write_bytes(path.read_bytes().replace(FULL.encode(), INCR2.encode(), 1))
    else:
        path.write_bytes(path.read_bytes() + b"{not json\n")
    started = start_chain(index_dir, "wp", INCR, ChainLink(FULL, "0" * 64, 1))
    started.index.abort()
    assert started.parent is None and started.link is None
    assert started.warning is not None and "full backup instead" in started.warning
    assert f"backup index-rebuild {FULL}" in started.warning


def test_deep_scan_of_each_incremental_finds_it_valid(tmp_path: Path) -> None:
    """Hardlinks to a file carried over from the parent point to a member of
    an earlier archive: the archive itself is still valid."""
    from engine.archive.reader import scan_archive
    from engine.compression import open_decompressor

    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    _backup(src, out_dir, index_dir, FULL)
    _mutate(src)
    _backup(src, out_dir, index_dir, INCR, FULL)
    _backup(src, out_dir, index_dir, INCR2, INCR)
    for backup_id in (FULL, INCR, INCR2):
        with open(out_dir / f"{backup_id}.tar.zst", "rb") as raw:
            report = scan_archive(open_decompressor(raw, "zstd"))
        assert report.errors == [] and report.valid, backup_id


def test_index_rebuilt_from_the_archives_equals_the_one_kept(tmp_path: Path) -> None:
    from contextlib import contextmanager

    from engine.compression import open_decompressor
    from engine.errors import ArchiveError
    from engine.incremental.rebuild import rebuild_index

    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    _backup(src, out_dir, index_dir, FULL)
    _mutate(src)
    _backup(src, out_dir, index_dir, INCR, FULL)
    (src / "run.sh").unlink()
    _backup(src, out_dir, index_dir, INCR2, INCR)

    def opener(backup_id: str):
        @contextmanager
        def open_tar():
            with open(out_dir / f"{backup_id}.tar.zst", "rb") as raw:
                yield open_decompressor(raw, "zstd")

        return open_tar

    def lines(directory: Path) -> dict[str, dict]:
        header, entries = read_index(index_path(directory, "wp", INCR2), INCR2)
        assert header.parent_backup_id == INCR
        return {entry["path"]: entry for entry in entries}

    rebuilt_dir = tmp_path / "rebuilt"
    path, count = rebuild_index(rebuilt_dir, "wp", [opener(b) for b in (FULL, INCR, INCR2)], INCR2)
    assert lines(rebuilt_dir) == lines(index_dir) and count == len(lines(index_dir))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A chain with a link missing is refused, and leaves no index.
    with pytest.raises(ArchiveError, match="parent"):
        rebuild_index(tmp_path / "bad", "wp", [opener(FULL), opener(INCR2)], INCR2)
    assert not index_path(tmp_path / "bad", "wp", INCR2).exists()
