"""Incremental archives: change detection against the parent's index (every
kind of change), the `deleted` list, the index on the worker host, and the
promise that `tar -x` in chain order (removing each archive's `deleted`
paths first) gives back the tree as it was at the incremental's time."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tracemalloc
from pathlib import Path

import pytest

from engine.archive.layout import volume_member
from engine.archive.manifest import Manifest
from engine.incremental.changes import ParentState
from engine.incremental.index import IndexHeader, IndexWriter, index_path, read_index
from engine.incremental.rebuild import OpenTar
from tests.engine.chaingen import FULL, INCR, INCR2, VOLUME, backup, mutate, opener, restore_by_hand
from tests.engine.treegen import make_tree, snapshot


def _archive(out_dir: Path, backup_id: str) -> OpenTar:
    return opener(out_dir / f"{backup_id}.tar.zst")


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
    full = backup(src, out_dir, index_dir, FULL)
    at_full = snapshot(src)
    written, deleted = mutate(src)
    incr = backup(src, out_dir, index_dir, INCR, FULL)
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
    incr2 = backup(src, out_dir, index_dir, INCR2, INCR)
    several_names = {"hardlink-to-index", "zz-new-hardlink", "content/uploads/photo.jpg"}
    assert _written_files(incr2) == several_names and incr2.deleted == []

    assert snapshot(restore_by_hand(out_dir, [FULL], tmp_path / "r0")) == at_full
    assert snapshot(restore_by_hand(out_dir, [FULL, INCR], tmp_path / "r1")) == at_incr
    assert snapshot(restore_by_hand(out_dir, [FULL, INCR, INCR2], tmp_path / "r2")) == at_incr


def test_index_holds_the_whole_state_private_with_where_each_file_is(tmp_path: Path) -> None:
    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    backup(src, out_dir, index_dir, FULL)
    (src / "index.php").write_text("changed")
    backup(src, out_dir, index_dir, INCR, FULL)
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


@pytest.mark.parametrize(
    "damage", ["missing", "other snapshot", "garbage line", "data after an entry"]
)
def test_an_unusable_parent_index_makes_a_full_backup_with_a_warning(
    tmp_path: Path, damage: str
) -> None:
    from engine.incremental.chain import ChainLink, start_chain

    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    backup(src, out_dir, index_dir, FULL)
    path = index_path(index_dir, "wp", FULL)
    if damage == "missing":
        path.unlink()
    elif damage == "other snapshot":
        shutil.copy(path, tmp_path / "x")
        os.replace(tmp_path / "x", path)
        path.write_bytes(path.read_bytes().replace(FULL.encode(), INCR2.encode(), 1))
    elif damage == "garbage line":
        path.write_bytes(path.read_bytes() + b"{not json\n")
    else:  # each line is parsed by itself (index._entries): one value, nothing after it
        path.write_bytes(path.read_bytes() + b'{"path": "volumes/wp_data/x"} 1\n')
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
    backup(src, out_dir, index_dir, FULL)
    mutate(src)
    backup(src, out_dir, index_dir, INCR, FULL)
    backup(src, out_dir, index_dir, INCR2, INCR)
    for backup_id in (FULL, INCR, INCR2):
        with open(out_dir / f"{backup_id}.tar.zst", "rb") as raw:
            report = scan_archive(open_decompressor(raw, "zstd"))
        assert report.errors == [] and report.valid, backup_id


def test_index_rebuilt_from_the_archives_equals_the_one_kept(tmp_path: Path) -> None:

    from engine.errors import ArchiveError
    from engine.incremental.rebuild import rebuild_index

    src, out_dir, index_dir = tmp_path / "volume", tmp_path / "out", tmp_path / "index"
    make_tree(src)
    out_dir.mkdir()
    backup(src, out_dir, index_dir, FULL)
    mutate(src)
    backup(src, out_dir, index_dir, INCR, FULL)
    (src / "run.sh").unlink()
    backup(src, out_dir, index_dir, INCR2, INCR)

    def lines(directory: Path) -> dict[str, dict]:
        header, entries = read_index(index_path(directory, "wp", INCR2), INCR2)
        assert header.parent_backup_id == INCR
        return {entry["path"]: entry for entry in entries}

    # With the block digests of large files (engine.incremental.delta).
    kept = lines(index_dir)
    assert kept[f"volumes/{VOLUME}/sparse.img"]["blocks"]

    rebuilt_dir = tmp_path / "rebuilt"
    path, count = rebuild_index(
        rebuilt_dir, "wp", [_archive(out_dir, b) for b in (FULL, INCR, INCR2)], INCR2
    )
    assert lines(rebuilt_dir) == kept and count == len(kept)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A chain with a link missing is refused, and leaves no index.
    with pytest.raises(ArchiveError, match="parent"):
        rebuild_index(
            tmp_path / "bad",
            "wp",
            [_archive(out_dir, FULL), _archive(out_dir, INCR2)],
            INCR2,
        )
    assert not index_path(tmp_path / "bad", "wp", INCR2).exists()


def test_the_parent_index_is_read_again_not_held_and_carried_lines_are_copied_exactly(
    tmp_path: Path,
) -> None:
    """bench_incremental found the parent's parsed lines took 1.8 KB per file
    (93 MiB for 51,550 files): the parent is now packed records pointing into
    its index file, and a carried line is the parent's bytes, unparsed."""
    files = 20_000
    writer = IndexWriter(tmp_path, "wp", IndexHeader(FULL, None, "full"))
    for number in range(files):
        writer.add_raw({
            "path": f"volumes/{VOLUME}/src/pkg{number % 200}/module_{number}.py", "type": "file",
            "size": 1000 + number, "mode": 0o644, "uid": 0, "gid": 0,
            "mtime_ns": 1_764_755_000_123_456_789 + number, "ino": 1_234_567 + number,
            "ctime_ns": 1_764_755_000_123_456_789 + number, "sha256": f"{number:064x}",
            "stored_in": FULL,
        })  # fmt: skip
    path = writer.commit()
    tracemalloc.start()
    parent = ParentState.from_index(path, FULL)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\n[parent index] {held / files:.0f} bytes per entry")
    assert held / files < 400, f"{held / files:.0f} bytes per entry"

    lines = path.read_bytes().splitlines(keepends=True)
    target = tmp_path / "f"
    target.write_bytes(b"x" * 1007)
    st = os.lstat(target)
    # One line made to match the file on disk: carried as the parent's exact bytes.
    line = lines[8].replace(b'"size":1007', f'"size":{st.st_size}'.encode())
    for field, value in (("mtime_ns", st.st_mtime_ns), ("ctime_ns", st.st_ctime_ns),
                         ("ino", st.st_ino), ("uid", st.st_uid), ("gid", st.st_gid),
                         ("mode", stat.S_IMODE(st.st_mode))):  # fmt: skip
        line = re.sub(rf'"{field}":\d+'.encode(), f'"{field}":{value}'.encode(), line)
    path.write_bytes(b"".join(lines[:8]) + line + b"".join(lines[9:]))
    parent.close()
    parent = ParentState.from_index(path, FULL)
    name = f"volumes/{VOLUME}/src/pkg7/module_7.py"
    assert parent.visit(name, "file", st) == line
    assert parent.last_file is not None and parent.last_file["path"] == name
    other = f"volumes/{VOLUME}/src/pkg8/module_8.py"
    assert parent.visit(other, "file", st) is None  # differs: written again
    assert parent.last_file is not None and parent.last_file["sha256"] == f"{8:064x}"
    assert parent.carried_files == 1 and len(parent.deleted()) == files - 2
    parent.close()
