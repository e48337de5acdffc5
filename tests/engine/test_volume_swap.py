"""Swapping restored data into a volume: commit, rollback, and recovery
after a crash at any point between the renames."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.restore.extract import extract_volumes
from engine.restore.volume_swap import (
    OLD_PREFIX,
    STAGING_PREFIX,
    TRASH_PREFIX,
    discard_stage,
    recover_volume,
    stage_dir_for,
    swap_in,
)
from tests.engine.test_extract import stream, write_archive
from tests.engine.treegen import make_tree, snapshot


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """/var/lib/docker/volumes/<name> as Docker lays it out: _data inside."""
    root = tmp_path / "volumes" / "wp_data"
    make_tree(root / "_data")
    return root


def staged_with(volume: Path, text: str) -> Path:
    staged = stage_dir_for(volume / "_data")
    (staged / "new.txt").write_text(text)
    return staged


def leftovers(volume: Path) -> list[str]:
    return sorted(name for name in os.listdir(volume) if name != "_data")


def test_stage_dir_is_private_and_beside_the_data(volume: Path) -> None:
    staged = stage_dir_for(volume / "_data")
    assert staged.parent == volume and staged.name.startswith(STAGING_PREFIX)
    st = os.lstat(staged)
    assert stat.S_IMODE(st.st_mode) == 0o700 and os.listdir(staged) == []
    assert st.st_dev == os.lstat(volume / "_data").st_dev


def test_swap_then_commit(volume: Path) -> None:
    staged = staged_with(volume, "restored")
    handle = swap_in(volume / "_data", staged)
    assert (volume / "_data/new.txt").read_text() == "restored"
    assert [name.startswith(OLD_PREFIX) for name in leftovers(volume)] == [True]
    handle.commit()
    assert leftovers(volume) == [] and os.listdir(volume / "_data") == ["new.txt"]
    with pytest.raises(EngineError, match="already committed"):
        handle.rollback()


def test_swap_then_rollback_restores_the_exact_old_tree(volume: Path) -> None:
    before = snapshot(volume / "_data")
    root_before = os.lstat(volume / "_data")
    handle = swap_in(volume / "_data", staged_with(volume, "restored"))
    handle.rollback()
    assert snapshot(volume / "_data") == before
    root_after = os.lstat(volume / "_data")
    assert (root_after.st_ino, root_after.st_mode, root_after.st_mtime_ns) == (
        root_before.st_ino, root_before.st_mode, root_before.st_mtime_ns,
    )  # fmt: skip
    assert leftovers(volume) == []


def test_swap_into_a_volume_without_data(tmp_path: Path) -> None:
    volume = tmp_path / "new_volume"
    volume.mkdir()
    handle = swap_in(volume / "_data", staged_with(volume, "restored"))
    assert (volume / "_data/new.txt").exists()
    handle.rollback()
    assert os.listdir(volume / "_data") == [] and leftovers(volume) == []


def test_swap_refuses_an_unfinished_earlier_swap(volume: Path) -> None:
    swap_in(volume / "_data", staged_with(volume, "first"))  # never committed
    with pytest.raises(EngineError, match="recover first"):
        swap_in(volume / "_data", staged_with(volume, "second"))


def test_swap_refuses_a_stage_elsewhere(volume: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / f"{STAGING_PREFIX}x"
    elsewhere.mkdir()
    with pytest.raises(EngineError, match="not a staging dir beside"):
        swap_in(volume / "_data", elsewhere)
    assert (volume / "_data/index.php").exists()


def crash_after_first_rename(volume: Path) -> Path:
    """swap_in's first rename done, the process dies before the second."""
    staged = staged_with(volume, "restored")
    token = staged.name.removeprefix(STAGING_PREFIX)
    os.rename(volume / "_data", volume / f"{OLD_PREFIX}{token}")
    return staged


def test_recover_between_the_two_renames(volume: Path) -> None:
    before = snapshot(volume / "_data")
    crash_after_first_rename(volume)
    assert not (volume / "_data").exists()
    assert recover_volume(volume) == "rolled_back"
    assert snapshot(volume / "_data") == before and leftovers(volume) == []


def test_recover_after_both_renames_before_commit(volume: Path) -> None:
    """The restore never finished: its data must not half-apply."""
    before = snapshot(volume / "_data")
    swap_in(volume / "_data", staged_with(volume, "restored"))
    assert recover_volume(volume) == "rolled_back"
    assert snapshot(volume / "_data") == before and leftovers(volume) == []


def test_recover_during_rollback(volume: Path) -> None:
    before = snapshot(volume / "_data")
    handle = swap_in(volume / "_data", staged_with(volume, "restored"))
    os.rename(handle.data_dir, handle.staged)  # rollback's first rename, then a crash
    assert recover_volume(volume) == "rolled_back"
    assert snapshot(volume / "_data") == before and leftovers(volume) == []


def test_recover_during_commit_finishes_it(volume: Path) -> None:
    handle = swap_in(volume / "_data", staged_with(volume, "restored"))
    token = handle.old.name.removeprefix(OLD_PREFIX)
    os.rename(handle.old, volume / f"{TRASH_PREFIX}{token}")  # commit decided, then a crash
    assert recover_volume(volume) == "finished_commit"
    assert os.listdir(volume / "_data") == ["new.txt"] and leftovers(volume) == []


def test_recover_removes_an_abandoned_stage(volume: Path) -> None:
    before = snapshot(volume / "_data")
    staged_with(volume, "half extracted")
    assert recover_volume(volume) == "removed_staging"
    assert snapshot(volume / "_data") == before and leftovers(volume) == []
    assert recover_volume(volume) == "clean"


def test_recover_refuses_two_unfinished_swaps(volume: Path) -> None:
    crash_after_first_rename(volume)
    (volume / f"{OLD_PREFIX}other").mkdir()
    with pytest.raises(EngineError, match="resolve by hand"):
        recover_volume(volume)


def test_discard_never_follows_symlinks(volume: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    staged = staged_with(volume, "x")
    os.symlink(outside, staged / "link")
    discard_stage(staged)
    assert not staged.exists() and (outside / "keep.txt").read_text() == "keep"


def test_extract_into_stage_then_swap(volume: Path, tmp_path: Path) -> None:
    """The staging dir takes the archived volume root's owner and mode, so
    the swapped-in _data is the archived volume exactly."""
    source = tmp_path / "source"
    make_tree(source)
    os.chown(source, 999, 998)
    os.chmod(source, 0o1777)
    out = io.BytesIO()
    write_archive(out, {"wp_data": source})
    staged = stage_dir_for(volume / "_data")
    extract_volumes(stream(out), {"wp_data": staged})
    handle = swap_in(volume / "_data", staged)
    handle.commit()
    data = os.lstat(volume / "_data")
    assert (stat.S_IMODE(data.st_mode), data.st_uid, data.st_gid) == (0o1777, 999, 998)
    assert snapshot(volume / "_data") == snapshot(source) and leftovers(volume) == []


def test_commit_makes_the_new_data_durable_before_dropping_the_old(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = swap_in(volume / "_data", staged_with(volume, "restored"))
    events: list[str] = []
    monkeypatch.setattr(os, "sync", lambda: events.append("sync"))
    real_rename = os.rename

    def rename(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        events.append(f"rename {Path(src).name[:8]}")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    handle.commit()
    assert events[:2] == ["sync", "rename _data.ol"]


def test_old_data_that_cannot_be_deleted_keeps_the_decision(volume: Path) -> None:
    """A file with the append-only attribute (chattr +a) cannot be unlinked:
    the old data is given up (trash) but stays; a new swap is not refused
    because of it, and recover_volume finishes it once the file can go."""
    stuck = volume / "_data" / "audit.log"
    stuck.write_text("append only\n")
    subprocess.run(["chattr", "+a", str(stuck)], check=True)
    try:
        handle = swap_in(volume / "_data", staged_with(volume, "restored"))
        handle.keep()
        assert handle.state == "committed" and not handle.old.exists()
        with pytest.raises(PermissionError):
            handle.remove_old()
        assert leftovers(volume) == [handle.trash.name]
        second = swap_in(volume / "_data", staged_with(volume, "again"))  # not refused
        second.rollback()
        assert (volume / "_data/new.txt").read_text() == "restored"
    finally:
        for path in volume.glob("*/audit.log"):
            subprocess.run(["chattr", "-a", str(path)], check=True)
    assert recover_volume(volume) == "finished_commit"
    assert leftovers(volume) == [] and os.listdir(volume / "_data") == ["new.txt"]


def test_remove_old_also_finishes_an_earlier_restores_trash(volume: Path) -> None:
    earlier = volume / f"{TRASH_PREFIX}earlier"
    earlier.mkdir()
    (earlier / "left.txt").write_text("from a restore that could not delete it")
    handle = swap_in(volume / "_data", staged_with(volume, "restored"))
    handle.commit()
    assert leftovers(volume) == []
