"""Paths longer than PATH_MAX, and trees deeper than the walk keeps fds open for
(issue 19, point 7).

120 nested directories of 40-character names (made with dir_fd, as an app
can) gave a path past 4096 bytes, and every backup of the app failed with
Errno 36. The fd-relative walk never hands the kernel more than one name.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.archive import walk
from engine.archive.manifest import Manifest
from engine.archive.reader import scan_archive
from engine.archive.walk import CHANGED, DIR, DIR_OPEN, MEMBER, walk_tree
from engine.archive.writer import ArchiveWriter
from engine.restore.extract import extract_volumes


def _deep_tree(root: Path, depth: int, name_length: int) -> list[str]:
    """DEPTH nested dirs under ROOT, a file in the deepest and one in each tenth;
    the names of the directories, outermost first."""
    names = [f"{i:03d}".ljust(name_length, "n") for i in range(depth)]
    fd = os.open(root, DIR_OPEN)
    try:
        for i, name in enumerate(names):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, DIR_OPEN, dir_fd=fd)
            os.close(fd)
            fd = child
            if i % 10 == 9:
                _write(fd, "marker.txt", f"level {i + 1}".encode())
        _write(fd, "deepest.txt", b"at the bottom")
    finally:
        os.close(fd)
    return names


def _write(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_a_path_longer_than_path_max_is_archived(tmp_path: Path) -> None:
    volume = tmp_path / "v"
    volume.mkdir()
    names = _deep_tree(volume, depth=120, name_length=40)
    deepest = "volumes/v/" + "/".join(names) + "/deepest.txt"
    assert len(os.fsencode(deepest)) > 4096
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_backup_json({"volumes": [{"name": "v"}]})  # restorable: verify checks as restore
    writer.add_volume("v", volume)
    writer.close()
    raw = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        handle = tar.extractfile(deepest)
        assert handle is not None and handle.read() == b"at the bottom"
        assert len([m for m in tar if m.name.endswith("/marker.txt")]) == 12
    report = scan_archive(io.BytesIO(raw))
    assert report.valid, report.errors
    assert writer.summary.volumes["v"]["files"] == 13 and not writer.manifest.skipped


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_deep_tree_keeps_the_open_fds_bounded_and_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deeper than MAX_OPEN_DIRS (made small here to go deep quickly): the
    shallowest fds are closed and reopened on the way back, and the walk
    still yields every member, depth first in name order."""
    monkeypatch.setattr(walk, "MAX_OPEN_DIRS", 8)
    volume = tmp_path / "v"
    volume.mkdir()
    names = _deep_tree(volume, depth=60, name_length=3)
    # Siblings at several levels: the walk must come back to each level.
    level = volume
    for name in names[:30]:
        (level / "zz-after.txt").write_text("after the subdirectory")
        level = level / name
    baseline = _open_fds()
    peak = 0
    seen: list[str] = []
    for kind, rel, _parent, _leaf, _st in walk_tree(os.fspath(volume)):
        assert kind in (DIR, MEMBER)
        peak = max(peak, _open_fds() - baseline)
        seen.append(rel)
    assert peak <= 8 + 1  # the listing's own fd, briefly
    assert _open_fds() == baseline  # nothing left open
    expected: list[str] = []
    for root, dirs, files in os.walk(volume):
        dirs.sort()
        rel = os.path.relpath(root, volume)
        expected.append(rel)
        expected.extend(f if rel == "." else f"{rel}/{f}" for f in sorted(files))
    # os.walk lists a directory's files before its subdirectories; ours is
    # name order: compare as sets, then check each directory comes before its content.
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    position = {rel: i for i, rel in enumerate(seen)}
    for rel in seen:
        if "/" in rel:
            assert position[rel.rsplit("/", 1)[0]] < position[rel]
    assert seen.index(names[0]) < seen.index("zz-after.txt")  # name order: "000" < "zz-after"


def test_a_closed_ancestor_renamed_meanwhile_is_noted_as_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reopening goes by name from an open ancestor and checks each inode: a
    directory moved away while we were below it is not walked again under
    its old name (something else may be there now)."""
    monkeypatch.setattr(walk, "MAX_OPEN_DIRS", 4)
    volume = tmp_path / "v"
    volume.mkdir()
    names = _deep_tree(volume, depth=12, name_length=3)
    (volume / names[0] / names[1] / "zz-later.txt").write_text("walked after the subtree")
    moved = False
    steps: list[tuple[str, str]] = []
    for kind, rel, _parent, _leaf, _st in walk_tree(os.fspath(volume)):
        steps.append((kind, rel))
        if rel.endswith("deepest.txt") and not moved:
            # names[1]'s fd was closed long ago; an impostor takes its name.
            os.rename(volume / names[0] / names[1], volume / names[0] / "moved")
            (volume / names[0] / names[1]).mkdir()
            (volume / names[0] / names[1] / "zz-later.txt").write_text("impostor")
            moved = True
    changed = [rel for kind, rel in steps if kind == CHANGED]
    assert changed and all(rel.startswith(f"{names[0]}/{names[1]}") for rel in changed)
    assert (MEMBER, f"{names[0]}/{names[1]}/zz-later.txt") not in steps


def test_a_deep_tree_comes_back_through_a_restore(tmp_path: Path) -> None:
    """Round trip through the restore's extraction (fd-relative as well). Kept
    under PATH_MAX: engine.restore.checks refuses longer member names (a
    clear ArchiveError), a limit of the restore side, not of this walk."""
    volume = tmp_path / "v"
    volume.mkdir()
    names = _deep_tree(volume, depth=90, name_length=40)
    assert 3500 < len("volumes/v/" + "/".join(names) + "/deepest.txt") < 4096
    out = io.BytesIO()
    writer = ArchiveWriter(out, Manifest(backup_id="b"))
    writer.add_backup_json({"app_id": "a", "volumes": [{"name": "v"}]})
    writer.add_volume("v", volume)
    writer.close()
    stage = tmp_path / "stage"
    stage.mkdir()
    out.seek(0)
    extract_volumes(out, {"v": stage})
    fd = os.open(stage, DIR_OPEN)
    try:
        for name in names:  # the restored path is as long: walk it by fd
            child = os.open(name, DIR_OPEN, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("deepest.txt", os.O_RDONLY, dir_fd=fd)
        try:
            assert os.read(leaf, 100) == b"at the bottom"
        finally:
            os.close(leaf)
    finally:
        os.close(fd)
